//! Config behaviours clients and tools rely on: topic configs Kafka 3.x deprecated but still
//! accepts, and broker configs changed at run time.

use std::time::Duration;

use moldau_tests::{admin, init_logging, must_start_cluster};
use rdkafka::admin::{AdminOptions, AlterConfig, ConfigSource, NewTopic, ResourceSpecifier, TopicReplication};

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))
}

/// `message.format.version` and the other topic configs Kafka 3.x deprecated are accepted
/// and kept (DescribeConfigs shows them as set on the topic), with their values still
/// checked; they change nothing (broker-sim writes record batches v2, as Kafka 3 does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_accept_and_show_deprecated_topic_configs() {
    init_logging();
    let cluster = must_start_cluster(1);
    let admin = admin(cluster.bootstrap_servers());
    let topic = NewTopic::new("legacy", 1, TopicReplication::Fixed(1))
        .set("message.format.version", "2.8")
        .set("message.downconversion.enable", "false");
    let created = admin.create_topics([&topic], &opts()).await.unwrap();
    assert!(created[0].is_ok(), "deprecated configs are accepted: {created:?}");
    let described = admin.describe_configs([&ResourceSpecifier::Topic("legacy")], &opts()).await.unwrap();
    let r = described[0].as_ref().expect("describe");
    for (k, v) in [("message.format.version", "2.8"), ("message.downconversion.enable", "false")] {
        let e = r.get(k).unwrap_or_else(|| panic!("{k} is described"));
        assert_eq!((e.value.as_deref(), &e.source), (Some(v), &ConfigSource::DynamicTopic), "{k}");
    }
    let alter = AlterConfig::new(ResourceSpecifier::Topic("legacy")).set("message.format.version", "3.0-IV1");
    let altered = admin.alter_configs([&alter], &opts()).await.unwrap();
    assert!(altered[0].is_ok(), "{altered:?}");
    let bad = NewTopic::new("legacy-bad", 1, TopicReplication::Fixed(1)).set("message.format.version", "banana");
    let bad = admin.create_topics([&bad], &opts()).await.unwrap();
    let msg = format!("{bad:?}");
    assert!(bad[0].is_err() && msg.contains("InvalidConfig"), "a bad version is still refused: {msg}");
    drop(admin);
    cluster.shutdown();
}
