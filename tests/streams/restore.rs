//! Incremental restore (the exactly-once issue's hole 4): a store restoring from a long
//! changelog does not block its stream thread. The thread restores a slice per turn of its
//! loop, so its other tasks run, its group consumer stays polled (no eviction past
//! `max.poll.interval.ms`), and the restoring task's input waits, paused, until its state is
//! whole.

use std::time::{Duration, Instant};

use moldau_dsl::state::{StringSerde, U64Serde};
use moldau_dsl::{Consumed, Grouped, Produced, StreamsBuilder};
use moldau_engine::{failpoint, KafkaStreams, ProcessingGuarantee, Topology};
use moldau_tests::streams_util::{produce, produce_strings, streams_config, Produce};
use moldau_tests::{client_config, init_logging, must_create_topic};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::apps::wait_until;

/// Two independent counts in one topology: `big` → `big-counts` and `small` → `small-counts`
/// (two sub-topologies, so one thread runs a task of each).
fn two_counts() -> Topology {
    let b = StreamsBuilder::new();
    for (input, store, output) in [("big", "big-store", "big-counts"), ("small", "small-store", "small-counts")] {
        b.stream_keyed(input, Consumed::with(StringSerde, StringSerde))
            .group_by_key(Grouped::with(StringSerde, StringSerde))
            .count(store)
            .to_stream()
            .map_values(|n: Option<u64>| n.unwrap_or(0))
            .to(output, Produced::with(StringSerde, U64Serde));
    }
    b.build().expect("the two counts build")
}

/// Reads committed records of one-partition `topic` as they come.
fn tail(bootstrap: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "restore-test-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).expect("tpl");
    consumer.assign(&tpl).expect("assign");
    consumer
}

/// A thread restoring a 100,000-record store (slowed by a fail point: at least ten batches of
/// 300 ms) keeps running its other task, whose output is committed during the restore; its
/// group membership survives a restore five times longer than `max.poll.interval.ms`
/// (1.5 s); the restored count then picks up where it was.
#[test]
fn should_run_other_tasks_and_stay_in_the_group_while_a_large_store_restores() {
    init_logging();
    let cluster = moldau_broker_sim::Cluster::builder()
        .brokers(1)
        .config("group.min.session.timeout.ms", "1000")
        .start()
        .expect("cluster starts");
    let bootstrap = cluster.bootstrap_servers().to_string();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    for topic in ["big", "small", "big-counts", "small-counts"] {
        rt.block_on(must_create_topic(&bootstrap, topic, 1, 1));
    }
    const BIG: usize = 100_000;
    let keys: Vec<String> = (0..BIG).map(|i| format!("k{i}")).collect();
    let records: Vec<Produce<'_>> = keys.iter().map(|k| (Some(k.as_bytes()), Some(&b"x"[..]), None)).collect();
    produce(&bootstrap, "big", &records);
    produce_strings(&bootstrap, "small", &[("s", "x", 1)]);
    let config = |dir: &std::path::Path| {
        streams_config("restore", &bootstrap, dir, ProcessingGuarantee::ExactlyOnceV2)
            .with_property("consumer.session.timeout.ms", "1500")
            .with_property("consumer.heartbeat.interval.ms", "300")
            .with_property("consumer.max.poll.interval.ms", "1500")
    };

    // A first run builds the big store and its changelog.
    let first_dir = tempfile::tempdir().unwrap();
    let mut app = KafkaStreams::new(two_counts(), config(first_dir.path())).unwrap();
    app.start().unwrap();
    wait_until("the first run processed every record", || app.metrics().processed == BIG as u64 + 1);
    app.close().unwrap();

    // A new state directory: both stores restore from their changelogs, the big one slowly.
    failpoint::configure("restore.batch=sleep(300)").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut app = KafkaStreams::new(two_counts(), config(dir.path())).unwrap();
    app.start().unwrap();
    wait_until("the big store restoring", || app.metrics().restoring.values().any(|t| !t.is_empty()));
    let restoring_since = Instant::now();
    produce_strings(&bootstrap, "small", &[("s", "x", 2)]);
    let reader = tail(&bootstrap, "small-counts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let during = loop {
        assert!(Instant::now() < deadline, "no second count of s: {:?}", app.metrics());
        // Read before the metrics: if the big store is still restoring after the output
        // arrived, it was restoring when the output was committed.
        let second = match reader.poll(Duration::from_millis(20)) {
            Some(Ok(m)) => m.payload() == Some(&2u64.to_be_bytes()[..]),
            _ => false,
        };
        if second {
            break app.metrics();
        }
    };
    let restoring: Vec<_> = during.restoring.values().flatten().collect();
    assert_eq!(restoring.len(), 1, "the big task was restoring when the small one's output came: {during:?}");
    assert!(during.restored < BIG as u64, "the restore was under way: {during:?}");

    wait_until("the restore ended", || app.metrics().restoring.values().all(Vec::is_empty));
    let m = app.metrics();
    assert_eq!(m.restored, BIG as u64 + 1, "both changelogs restored: {m:?}");
    // The premise: the restore outlasted max.poll.interval.ms twice over.
    assert!(restoring_since.elapsed() >= Duration::from_secs(3), "the restore took {:?}", restoring_since.elapsed());
    // One assignment and no other rebalance: the thread was never evicted from the group.
    assert_eq!(m.rebalances, 1, "the member left the group during the restore: {m:?}");
    failpoint::configure("").unwrap();

    // The big task runs from its restored state: a known key counts on.
    produce_strings(&bootstrap, "big", &[("k7", "x", 3)]);
    let big = tail(&bootstrap, "big-counts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while last.as_deref() != Some(&2u64.to_be_bytes()[..]) {
        assert!(Instant::now() < deadline, "no second count of k7");
        if let Some(Ok(m)) = big.poll(Duration::from_millis(50)) {
            if m.key() == Some(b"k7") {
                last = m.payload().map(<[u8]>::to_vec);
            }
        }
    }
    app.close().unwrap();
    cluster.shutdown();
}
