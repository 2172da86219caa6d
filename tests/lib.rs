//! Shared helpers for Moldau's cross-crate end-to-end tests.

use std::time::Duration;

use moldau_broker_sim::{Cluster, ClusterBuilder};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// A cluster builder for tests: Kafka's defaults except `group.initial.rebalance.delay.ms=0`
/// (as Kafka's own test clusters), so a group's first rebalance does not wait 3 s.
pub fn cluster_builder() -> ClusterBuilder {
    Cluster::builder().config("group.initial.rebalance.delay.ms", "0")
}

/// Starts an in-memory cluster of `brokers` brokers on free ports; panics on failure.
pub fn must_start_cluster(brokers: usize) -> Cluster {
    cluster_builder().brokers(brokers).start().expect("broker-sim cluster starts")
}

/// A client config pointing at `bootstrap`, with quiet logging.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap).set("log_level", "3");
    c
}

/// An admin client.
pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    client_config(bootstrap).create().expect("admin client")
}

/// Creates a topic with `partitions` partitions and replication factor `rf`; panics on failure.
pub async fn must_create_topic(bootstrap: &str, name: &str, partitions: i32, rf: i32) {
    let admin = admin(bootstrap);
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(rf));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for r in admin.create_topics([&topic], &opts).await.expect("create_topics request") {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

/// Initialises test logging once (RUST_LOG controls it).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

pub mod child;
pub mod copier;
pub mod eos_app;
pub mod streams_util;
