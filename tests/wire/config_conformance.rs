//! Config behaviours clients and tools rely on: topic configs Kafka 3.x deprecated but still
//! accepts, and broker configs changed at run time.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::time::Duration;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::{
    ApiKey, DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use moldau_tests::{admin, init_logging, must_start_cluster};
use rdkafka::admin::{AdminOptions, AlterConfig, ConfigSource, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::Consumer;

use crate::raw::{call, connect};

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

const BROKER: i8 = 4;
const INVALID_REQUEST: i16 = 42;
const INVALID_CONFIG: i16 = 40;

/// IncrementalAlterConfigs v1 SET of `configs` on broker resource `name` ("" = cluster-wide):
/// (error code, message).
fn set_broker_configs(conn: &mut TcpStream, name: &str, configs: &[(&str, &str)]) -> (i16, String) {
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(BROKER)
        .with_resource_name(StrBytes::from_string(name.into()))
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    AlterableConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_config_operation(0)
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        )]);
    let r: IncrementalAlterConfigsResponse = call(conn, ApiKey::IncrementalAlterConfigs, 1, &req);
    let r = &r.responses[0];
    (r.error_code, r.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default())
}

/// DescribeConfigs v4 of broker resource `name`: key → (value, source, read-only).
fn describe_broker(conn: &mut TcpStream, name: &str) -> BTreeMap<String, (String, i8, bool)> {
    let req = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
        .with_resource_type(BROKER)
        .with_resource_name(StrBytes::from_string(name.into()))
        .with_configuration_keys(None)]);
    let r: DescribeConfigsResponse = call(conn, ApiKey::DescribeConfigs, 4, &req);
    assert_eq!(r.results[0].error_code, 0, "{:?}", r.results[0].error_message);
    r.results[0]
        .configs
        .iter()
        .map(|c| {
            let v = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
            (c.name.to_string(), (v, c.config_source, c.read_only))
        })
        .collect()
}

const DYNAMIC_BROKER: i8 = 2;
const DYNAMIC_DEFAULT: i8 = 3;

/// Broker configs at run time: a per-broker value (rdkafka's AlterConfigs) and cluster-wide
/// defaults (IncrementalAlterConfigs on resource "") take effect at once (a topic without its
/// own retention inherits the new one; a topic created without a partition count gets the new
/// `num.partitions`), are described with their sources, refuse read-only keys naming them,
/// and survive a restart of the cluster on the same data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_change_broker_configs_at_run_time_and_keep_them_across_a_restart() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let cluster = moldau_tests::cluster_builder().data_dir(dir.path()).start().unwrap();
    let admin = admin(cluster.bootstrap_servers());
    let plain = NewTopic::new("plain", 1, TopicReplication::Fixed(1));
    assert!(admin.create_topics([&plain], &opts()).await.unwrap()[0].is_ok());
    let node = cluster.brokers()[0].0;

    let alter = AlterConfig::new(ResourceSpecifier::Broker(node)).set("log.retention.ms", "123456");
    let altered = admin.alter_configs([&alter], &opts()).await.unwrap();
    assert!(altered[0].is_ok(), "a per-broker dynamic config is accepted: {altered:?}");
    let mut conn = connect(&cluster);
    assert_eq!(set_broker_configs(&mut conn, "", &[("num.partitions", "3"), ("log.cleaner.threads", "2")]).0, 0);

    let described = describe_broker(&mut conn, &node.to_string());
    assert_eq!(described["log.retention.ms"], ("123456".into(), DYNAMIC_BROKER, false));
    assert_eq!(described["num.partitions"], ("3".into(), DYNAMIC_DEFAULT, false));
    assert_eq!(described["log.cleaner.threads"], ("2".into(), DYNAMIC_DEFAULT, false));
    assert!(described["offsets.topic.num.partitions"].2, "static keys are read-only");
    let default = describe_broker(&mut conn, "");
    assert_eq!(default.keys().collect::<Vec<_>>(), ["log.cleaner.threads", "num.partitions"], "{default:?}");

    // In effect: the topic inherits the broker's retention; a topic without a count gets 3.
    let topic = admin.describe_configs([&ResourceSpecifier::Topic("plain")], &opts()).await.unwrap();
    let retention = topic[0].as_ref().unwrap().get("retention.ms").unwrap();
    assert_eq!(retention.value.as_deref(), Some("123456"));
    assert_eq!(retention.source, ConfigSource::DynamicBroker);
    let defaulted = NewTopic::new("defaulted", -1, TopicReplication::Fixed(-1));
    assert!(admin.create_topics([&defaulted], &opts()).await.unwrap()[0].is_ok());
    let consumer: rdkafka::consumer::BaseConsumer =
        moldau_tests::client_config(cluster.bootstrap_servers()).create().unwrap();
    let md = consumer.fetch_metadata(Some("defaulted"), Duration::from_secs(10)).unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 3, "num.partitions changed at run time");

    // Refusals name the key; nothing of a refused request is applied.
    let (code, msg) =
        set_broker_configs(&mut conn, "", &[("log.retention.ms", "1"), ("offsets.topic.num.partitions", "3")]);
    assert_eq!(code, INVALID_REQUEST);
    assert!(msg.contains("offsets.topic.num.partitions") && msg.contains("read-only"), "{msg}");
    let (code, msg) = set_broker_configs(&mut conn, &node.to_string(), &[("num.partitions", "5")]);
    assert_eq!(code, INVALID_REQUEST, "num.partitions is cluster-wide only: {msg}");
    let (code, msg) = set_broker_configs(&mut conn, "", &[("log.retention.ms", "soon")]);
    assert!(code == INVALID_CONFIG && msg.contains("log.retention.ms"), "{code} {msg}");
    let (code, msg) = set_broker_configs(&mut conn, "", &[("no.such.config", "1")]);
    assert!(code == INVALID_CONFIG && msg.contains("no.such.config"), "{code} {msg}");
    let (code, _) = set_broker_configs(&mut conn, "99", &[("log.retention.ms", "1")]);
    assert_eq!(code, INVALID_REQUEST, "an unknown broker");
    assert!(!describe_broker(&mut conn, "").contains_key("log.retention.ms"), "the refused request changed nothing");

    drop((consumer, admin, conn));
    cluster.shutdown();
    let cluster = moldau_tests::cluster_builder().data_dir(dir.path()).start().unwrap();
    let mut conn = connect(&cluster);
    let described = describe_broker(&mut conn, &node.to_string());
    assert_eq!(described["log.retention.ms"], ("123456".into(), DYNAMIC_BROKER, false), "kept across a restart");
    assert_eq!(described["num.partitions"], ("3".into(), DYNAMIC_DEFAULT, false), "kept across a restart");
    drop(conn);
    cluster.shutdown();
}
