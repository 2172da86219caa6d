//! Deserialization error handlers against broker-sim: a record whose value does not decode is
//! sent to the dead-letter topic with its origin and the error in headers while good records
//! keep flowing; with `LogAndFail` the application stops with an error naming the record.

use std::time::Duration;

use moldau_dsl::state::{StringSerde, U64Serde};
use moldau_dsl::{Consumed, Produced, StreamsBuilder};
use moldau_engine::kafka::DeserializationHandler;
use moldau_engine::{KafkaStreams, ProcessingGuarantee, StreamsState, Topology};
use moldau_tests::streams_util::{produce, read_topic};
use moldau_tests::{init_logging, must_create_topic, must_start_cluster};

use moldau_tests::streams_util::streams_config;

fn doubler() -> Topology {
    let b = StreamsBuilder::new();
    b.stream_keyed("numbers", Consumed::with(StringSerde, U64Serde))
        .map_values(|n: u64| n * 2)
        .to("doubled", Produced::with(StringSerde, U64Serde));
    b.build().unwrap()
}

fn setup() -> (moldau_broker_sim::Cluster, String) {
    init_logging();
    let cluster = must_start_cluster(1);
    let bootstrap = cluster.bootstrap_servers().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(must_create_topic(&bootstrap, "numbers", 1, 1));
    rt.block_on(must_create_topic(&bootstrap, "doubled", 1, 1));
    let (one, two, three) = (1u64.to_be_bytes(), 2u64.to_be_bytes(), 3u64.to_be_bytes());
    produce(
        &bootstrap,
        "numbers",
        &[
            (Some(b"a"), Some(&one[..]), Some(10)),
            (Some(b"b"), Some(&two[..]), Some(11)),
            (Some(b"bad"), Some(b"xyz"), Some(12)),
            (Some(b"c"), Some(&three[..]), Some(13)),
        ],
    );
    (cluster, bootstrap)
}

#[test]
fn should_send_undecodable_records_to_the_dead_letter_topic_and_go_on() {
    let (cluster, bootstrap) = setup();
    let dir = tempfile::tempdir().unwrap();
    let mut c = streams_config("dlq-app", &bootstrap, dir.path(), ProcessingGuarantee::ExactlyOnceV2);
    c.deserialization_handler = DeserializationHandler::DeadLetter("numbers-dlq".into());
    let mut app = KafkaStreams::new(doubler(), c).unwrap();
    app.start().unwrap();
    let out = read_topic(&bootstrap, "doubled", 3, Duration::from_secs(60), Duration::from_millis(300));
    let dead = read_topic(&bootstrap, "numbers-dlq", 1, Duration::from_secs(60), Duration::from_millis(300));
    assert_eq!(app.metrics().skipped, 1);
    app.close().unwrap();
    let values: Vec<(String, u64)> = out
        .iter()
        .map(|r| (r.key_str(), u64::from_be_bytes(r.value.as_deref().unwrap().try_into().unwrap())))
        .collect();
    assert_eq!(values, vec![("a".into(), 2), ("b".into(), 4), ("c".into(), 6)]);
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!((d.key_str().as_str(), d.value_str().as_str(), d.timestamp), ("bad", "xyz", 12));
    let header = |k: &str| {
        d.headers.iter().find(|(n, _)| n == k).and_then(|(_, v)| v.clone()).map(|v| String::from_utf8(v).unwrap())
    };
    assert_eq!(header("__moldau.origin.topic").as_deref(), Some("numbers"));
    assert_eq!(header("__moldau.origin.partition").as_deref(), Some("0"));
    assert_eq!(header("__moldau.origin.offset").as_deref(), Some("2"));
    let error = header("__moldau.error").unwrap();
    assert!(error.contains("cannot deserialize the value of numbers-0@2"), "{error}");
    cluster.shutdown();
}

#[test]
fn should_stop_with_an_error_naming_the_record_when_told_to_fail() {
    let (cluster, bootstrap) = setup();
    let dir = tempfile::tempdir().unwrap();
    let mut c = streams_config("fail-app", &bootstrap, dir.path(), ProcessingGuarantee::AtLeastOnce);
    c.deserialization_handler = DeserializationHandler::LogAndFail;
    let mut app = KafkaStreams::new(doubler(), c).unwrap();
    app.start().unwrap();
    for _ in 0..600 {
        if app.state() == StreamsState::Error {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(app.state(), StreamsState::Error);
    // The error that stopped the thread, typed, with its cause.
    let errors = app.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let stopped = &*errors[0];
    assert!(stopped.is_fatal(), "{stopped}");
    assert_eq!(stopped.recovery(), moldau_engine::Recovery::Stop);
    match stopped {
        moldau_engine::Error::Deserialization { what: "value", topic, partition: 0, offset: 2, source, .. } => {
            assert_eq!(topic, "numbers");
            let cause = std::error::Error::source(stopped).expect("the serde's error is kept as the source");
            assert_eq!(cause.to_string(), source.to_string());
        }
        other => panic!("expected a deserialization error, got {other:?}"),
    }
    let closed = app.close().unwrap_err();
    assert!(matches!(&closed, moldau_engine::Error::ThreadStopped(_)), "{closed:?}");
    let e = closed.to_string();
    assert!(e.contains("cannot deserialize the value of numbers-0@2"), "{e}");
    // The records before the bad one were processed and, at-least-once, their output is
    // delivered as the thread stops (their offsets are not committed).
    let out = read_topic(&bootstrap, "doubled", 2, Duration::from_secs(30), Duration::from_millis(500));
    let values: Vec<(String, u64)> = out
        .iter()
        .map(|r| (r.key_str(), u64::from_be_bytes(r.value.as_deref().unwrap().try_into().unwrap())))
        .collect();
    assert_eq!(values, vec![("a".into(), 2), ("b".into(), 4)]);
    cluster.shutdown();
}
