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

mod args;
mod clock;
mod cluster;
mod config;
mod embedded;
mod error;
mod group;
mod ids;
mod log;
mod net;
mod partitioner;
mod protocol;
pub mod sim;
pub mod storage;
mod txn;

pub use args::BrokerArgs;
pub use embedded::{Cluster, ClusterBuilder};
pub use error::{Error, Result};
pub use log::cleaner::CleanerStats;
pub use partitioner::{murmur2, partition_for_key};

/// Entry points for the fuzz targets in `broker-sim/fuzz` (not a stable API).
#[doc(hidden)]
pub mod fuzzing {
    /// Runs a request frame body (the bytes after the size prefix) through the frame checks,
    /// the length guard and the decoder, exactly as the network layer does. Returns whether it
    /// decoded. Must never panic or abort, whatever the bytes.
    pub fn decode_request_frame(frame: &[u8]) -> bool {
        crate::protocol::decode_frame(bytes::Bytes::copy_from_slice(frame)).is_ok()
    }

    /// Runs a record batch through validation and the bounded record reader.
    pub fn read_record_batch(batch: &[u8]) -> bool {
        crate::log::batch::split_batches(batch).is_ok_and(|ranges| {
            ranges.into_iter().all(|r| crate::log::records::for_each_record(&batch[r], 1 << 20, |_| true).is_ok())
        })
    }
}
