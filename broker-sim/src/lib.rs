//! # broker-sim
//!
//! A Kafka cluster in one process that speaks the Kafka wire protocol over TCP, so real,
//! unmodified clients (librdkafka/rdkafka, kcat, kafka-python, confluent-kafka) work against
//! it. It is Moldau's embedded default cluster for development, demos and tests.
//!
//! ```text
//!   clients ──TCP──▶ net (one listener per broker, one task per connection)
//!                     │  frame checks ▸ length guard ▸ kafka-protocol decode
//!                     ▼
//!                  protocol::handlers ──▶ cluster::ClusterCore
//!                                           ├─ topics ▸ partitions ▸ log (segments + indexes)
//!                                           └─ group coordinator ▸ __consumer_offsets
//! ```
//!
//! ```no_run
//! let cluster = moldau_broker_sim::Cluster::builder().brokers(3).start()?;
//! println!("bootstrap.servers={}", cluster.bootstrap_servers());
//! cluster.shutdown();
//! # Ok::<(), moldau_broker_sim::Error>(())
//! ```

mod clock;
mod cluster;
mod config;
mod embedded;
mod error;
mod group;
mod log;
mod net;
mod partitioner;
mod protocol;

pub use embedded::{Cluster, ClusterBuilder};
pub use error::{Error, Result};
pub use partitioner::{murmur2, partition_for_key};
