//! rdkafka admin client against broker-sim: create, describe and alter configs, add
//! partitions, delete records and topics.

use std::time::Duration;

use moldau_tests::{admin, client_config, init_logging, must_create_topic, must_start_cluster};
use rdkafka::admin::{
    AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::consumer::{BaseConsumer, Consumer};

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_round_trip_create_describe_alter_and_delete() {
    init_logging();
    let cluster = must_start_cluster(3);
    let bs = cluster.bootstrap_servers().to_string();
    let admin = admin(&bs);

    let topic = NewTopic::new("admin-t", 3, TopicReplication::Fixed(2)).set("retention.ms", "12345");
    let res = admin.create_topics([&topic], &opts()).await.unwrap();
    assert!(res[0].is_ok(), "{res:?}");
    let dup = admin.create_topics([&topic], &opts()).await.unwrap();
    assert!(format!("{dup:?}").contains("TopicAlreadyExists"), "{dup:?}");
    let bad = NewTopic::new("admin-bad", 1, TopicReplication::Fixed(1)).set("retention.ms", "soon");
    let bad = admin.create_topics([&bad], &opts()).await.unwrap();
    assert!(format!("{bad:?}").contains("InvalidConfig"), "invalid config is refused: {bad:?}");

    let described = admin.describe_configs([&ResourceSpecifier::Topic("admin-t")], &opts()).await.unwrap();
    let resource = described[0].as_ref().expect("describe ok");
    let entries = resource.entry_map();
    let retention = entries["retention.ms"];
    assert_eq!(retention.value.as_deref(), Some("12345"));
    assert_eq!(retention.source, ConfigSource::DynamicTopic);
    let segment = entries["segment.bytes"];
    assert_eq!(segment.value.as_deref(), Some("1073741824"));
    assert_eq!(segment.source, ConfigSource::Default);
    assert!(entries.contains_key("cleanup.policy") && entries.contains_key("min.insync.replicas"));

    let alter = AlterConfig::new(ResourceSpecifier::Topic("admin-t"))
        .set("cleanup.policy", "compact")
        .set("retention.ms", "999");
    let altered = admin.alter_configs([&alter], &opts()).await.unwrap();
    assert!(altered[0].is_ok(), "{altered:?}");
    let described = admin.describe_configs([&ResourceSpecifier::Topic("admin-t")], &opts()).await.unwrap();
    let resource = described[0].as_ref().unwrap();
    assert_eq!(resource.get("cleanup.policy").unwrap().value.as_deref(), Some("compact"));
    assert_eq!(resource.get("retention.ms").unwrap().value.as_deref(), Some("999"));

    let grown = admin.create_partitions([&NewPartitions::new("admin-t", 5)], &opts()).await.unwrap();
    assert!(grown[0].is_ok(), "{grown:?}");
    let shrink = admin.create_partitions([&NewPartitions::new("admin-t", 2)], &opts()).await.unwrap();
    assert!(shrink[0].is_err(), "shrinking is refused");
    let consumer: BaseConsumer = client_config(&bs).create().unwrap();
    let md = consumer.fetch_metadata(Some("admin-t"), Duration::from_secs(5)).unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 5);
    assert_eq!(md.brokers().len(), 3);
    let leaders: std::collections::BTreeSet<i32> = md.topics()[0].partitions().iter().map(|p| p.leader()).collect();
    assert!(leaders.len() > 1, "leaders spread across brokers: {leaders:?}");

    let deleted = admin.delete_topics(&["admin-t"], &opts()).await.unwrap();
    assert!(deleted[0].is_ok(), "{deleted:?}");
    let md = consumer.fetch_metadata(None, Duration::from_secs(5)).unwrap();
    assert!(md.topics().iter().all(|t| t.name() != "admin-t"), "deleted topic is gone from metadata");
    let again = admin.delete_topics(&["admin-t"], &opts()).await.unwrap();
    assert!(again[0].is_err());
    drop(consumer);
    drop(admin);
    cluster.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_describe_broker_configs_with_sources() {
    init_logging();
    let cluster = moldau_tests::cluster_builder().brokers(1).config("log.retention.ms", "60000").start().unwrap();
    let bs = cluster.bootstrap_servers().to_string();
    must_create_topic(&bs, "t", 1, 1).await;
    let admin = admin(&bs);
    let described = admin.describe_configs([&ResourceSpecifier::Topic("t")], &opts()).await.unwrap();
    let r = described[0].as_ref().unwrap();
    let e = r.get("retention.ms").unwrap();
    assert_eq!(e.value.as_deref(), Some("60000"));
    assert_eq!(e.source, ConfigSource::StaticBroker);
    let described = admin.describe_configs([&ResourceSpecifier::Broker(1)], &opts()).await.unwrap();
    let r = described[0].as_ref().unwrap();
    assert_eq!(r.get("log.retention.ms").unwrap().value.as_deref(), Some("60000"));
    assert_eq!(r.get("num.partitions").unwrap().source, ConfigSource::Default);
    drop(admin);
    cluster.shutdown();
}
