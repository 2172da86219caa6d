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
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::apps::{start_cluster_with, wait_until};

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
    let cluster = moldau_tests::cluster_builder()
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

/// Counts per key of `in` → `out` (store `cnt`).
fn one_count() -> Topology {
    let b = StreamsBuilder::new();
    b.stream_keyed("in", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .count("cnt")
        .to_stream()
        .map_values(|n: Option<u64>| n.unwrap_or(0))
        .to("out", Produced::with(StringSerde, U64Serde));
    b.build().expect("the count builds")
}

/// The `(read_committed, read_uncommitted)` end offsets of partition 0 of `topic`: the last
/// stable offset and the high watermark.
fn stable_and_high(bootstrap: &str, topic: &str) -> (i64, i64) {
    let end = |isolation: &str| {
        let c: BaseConsumer = client_config(bootstrap).set("isolation.level", isolation).create().expect("consumer");
        c.fetch_watermarks(topic, 0, Duration::from_secs(10)).expect("watermarks").1
    };
    (end("read_committed"), end("read_uncommitted"))
}

/// The count a record of `out` holds.
fn count_of(m: &impl Message) -> u64 {
    u64::from_be_bytes(m.payload().unwrap_or_default().try_into().expect("8-byte count"))
}

/// A store's restore that reaches the changelog's readable end (its last stable offset, held
/// back by a transaction still open, as a killed producer leaves it) short of the changelog
/// position committed with the task's offsets waits for the rest instead of starting the task
/// on a short store (which counted on from 5 where 10 was committed, and broke exactly-once
/// in the crash tests). It resumes as soon as the transaction is aborted.
#[test]
fn should_wait_for_the_committed_changelog_position_held_back_by_an_open_transaction() {
    let (cluster, bootstrap) = start_cluster_with(1, &["in", "out"], 1);
    let changelog = "held-cnt-changelog";
    let config = |dir: &std::path::Path| streams_config("held", &bootstrap, dir, ProcessingGuarantee::ExactlyOnceV2);
    let run = |dir: &std::path::Path, from: i64, n: i64| {
        let mut app = KafkaStreams::new(one_count(), config(dir)).unwrap();
        app.start().unwrap();
        let records: Vec<(&str, &str, i64)> = (from..from + n).map(|i| ("k", "x", 1_000 + i)).collect();
        produce_strings(&bootstrap, "in", &records);
        wait_until("the run processed its records", || app.metrics().processed == n as u64);
        app.close().unwrap();
    };

    // Five counts committed, then a transaction left open on the changelog (the zombie), then
    // five more counts committed past it.
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), 0, 5);
    let zombie: BaseProducer = client_config(&bootstrap)
        .set("transactional.id", "a-killed-instance")
        .set("transaction.timeout.ms", "300000")
        .create()
        .expect("producer");
    zombie.init_transactions(Duration::from_secs(30)).expect("init");
    zombie.begin_transaction().expect("begin");
    zombie.send(BaseRecord::to(changelog).partition(0).key("k").payload(&99u64.to_be_bytes()[..])).expect("send");
    zombie.flush(Duration::from_secs(30)).expect("the open transaction's record is written");
    run(dir.path(), 5, 5);
    // The premise: the changelog's committed records past the open transaction are not
    // readable.
    let (stable, high) = stable_and_high(&bootstrap, changelog);
    assert!(high >= stable + 6, "five committed counts past the open transaction: stable {stable}, high {high}");

    // A new state directory: the store restores while the transaction is open.
    let fresh = tempfile::tempdir().unwrap();
    let mut app = KafkaStreams::new(one_count(), config(fresh.path())).unwrap();
    app.start().unwrap();
    wait_until("the task assigned", || app.metrics().rebalances > 0);
    produce_strings(&bootstrap, "in", &[("k", "x", 2_000)]);
    let reader = tail(&bootstrap, "out");
    let mut outputs = Vec::new();
    let held_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < held_until {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(50)) {
            outputs.push(count_of(&m));
        }
    }
    let m = app.metrics();
    assert_eq!(outputs.len(), 10, "no count while the store is short of its committed state: {outputs:?}");
    assert!(m.restoring.values().any(|t| !t.is_empty()), "the task waits in its restore: {m:?}");

    // The open transaction aborted: the restore reads on and the count goes on from 10.
    zombie.abort_transaction(Duration::from_secs(30)).expect("abort");
    let deadline = Instant::now() + Duration::from_secs(60);
    while outputs.len() < 11 {
        assert!(Instant::now() < deadline, "no count after the abort: {outputs:?} {:?}", app.metrics());
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(50)) {
            outputs.push(count_of(&m));
        }
    }
    assert_eq!(outputs, (1..=11).collect::<Vec<u64>>(), "exactly the counts of a run without the open transaction");
    assert_eq!(app.metrics().restored, 10, "the ten committed counts restored, the aborted record not");
    app.close().unwrap();
    cluster.shutdown();
}

/// A restore applies a changelog's records in their order: records fetched before the
/// partition's own queue was split off (slowed here by a fail point) went to the consumer's
/// queue and were applied after newer ones, so a key's older count overwrote its newer one
/// (the exactly-once crash tests' counts came out behind, the restore "ending" short of its
/// committed position).
#[test]
fn should_apply_a_changelog_in_order_when_records_are_fetched_while_the_restore_assigns() {
    let changelog = "ordered-cnt-changelog";
    let (cluster, bootstrap) = start_cluster_with(1, &["in", "out", changelog], 1);
    // A changelog written as the count would write it, uncached: keys k0..k2 in turn, each
    // record the key's count so far, 10,000 each.
    const KEYS: usize = 3;
    const RECORDS: usize = 30_000;
    let keys: Vec<String> = (0..KEYS).map(|k| format!("k{k}")).collect();
    let values: Vec<[u8; 8]> = (0..RECORDS).map(|i| ((i / KEYS + 1) as u64).to_be_bytes()).collect();
    // Small batches, so that a fetch holds a few of them.
    let producer: BaseProducer = client_config(&bootstrap)
        .set("enable.idempotence", "true")
        .set("batch.num.messages", "100")
        .create()
        .expect("producer");
    for i in 0..RECORDS {
        let mut record = BaseRecord::to(changelog).partition(0).key(&keys[i % KEYS]).payload(&values[i][..]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err((e, back)) = producer.send(record) {
            assert!(Instant::now() < deadline, "changelog record {i} not queued within 60 s: {e}");
            producer.poll(Duration::from_millis(5));
            record = back;
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("every changelog record acknowledged");

    // Restore with small fetches, stalled right after the changelog partition is assigned.
    failpoint::configure("restore.assigned=sleep(3)").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = streams_config("ordered", &bootstrap, dir.path(), ProcessingGuarantee::ExactlyOnceV2)
        .with_property("consumer.max.partition.fetch.bytes", "8192");
    let mut app = KafkaStreams::new(one_count(), config).unwrap();
    app.start().unwrap();
    wait_until("the restore ended", || {
        let m = app.metrics();
        m.rebalances > 0 && m.restoring.values().all(Vec::is_empty) && !m.tasks.is_empty()
    });
    failpoint::configure("").unwrap();
    assert_eq!(app.metrics().restored, RECORDS as u64, "the whole changelog restored");

    // Each key counts on from 10,000.
    let input: Vec<(&str, &str, i64)> = keys.iter().map(|k| (k.as_str(), "x", 1_000)).collect();
    produce_strings(&bootstrap, "in", &input);
    let reader = tail(&bootstrap, "out");
    let mut counts = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while counts.len() < KEYS {
        assert!(Instant::now() < deadline, "not every key counted: {counts:?}");
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(50)) {
            let n = count_of(&m);
            counts.insert(String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(), n);
        }
    }
    let expected: std::collections::BTreeMap<String, u64> =
        keys.iter().map(|k| (k.clone(), (RECORDS / KEYS) as u64 + 1)).collect();
    assert_eq!(counts, expected, "every key's count goes on from its newest restored value");
    app.close().unwrap();
    cluster.shutdown();
}

/// A task's committed offsets are read before its stores restore, and read stable (the
/// exactly-once issue's hole 7): a transaction holding offsets for the task's input (a killed
/// instance's) is waited for, so the task resumes from those offsets with the changelog
/// records of the same transaction restored, instead of redoing the input from the older
/// offsets (its output would be there twice once the transaction commits).
#[test]
fn should_wait_for_a_pending_transactional_offset_commit_before_opening_a_task() {
    let (cluster, bootstrap) = start_cluster_with(1, &["in", "out"], 1);
    let dir = tempfile::tempdir().unwrap();
    let config = || streams_config("pending", &bootstrap, dir.path(), ProcessingGuarantee::ExactlyOnceV2);
    let mut app = KafkaStreams::new(one_count(), config()).unwrap();
    app.start().unwrap();
    let records: Vec<(&str, &str, i64)> = (0..5).map(|i| ("k", "x", 1_000 + i)).collect();
    produce_strings(&bootstrap, "in", &records);
    wait_until("five records processed", || app.metrics().processed == 5);
    app.close().unwrap();

    // A sixth record, processed by an instance killed before its transaction ended: the
    // count's output and changelog record, and the input offset after the record.
    produce_strings(&bootstrap, "in", &[("k", "x", 1_005)]);
    let group: BaseConsumer = client_config(&bootstrap).set("group.id", "pending").create().expect("consumer");
    let zombie: BaseProducer = client_config(&bootstrap)
        .set("transactional.id", "pending-killed-instance")
        .set("transaction.timeout.ms", "300000")
        .create()
        .expect("producer");
    zombie.init_transactions(Duration::from_secs(30)).expect("init");
    zombie.begin_transaction().expect("begin");
    let six = 6u64.to_be_bytes();
    for topic in ["out", "pending-cnt-changelog"] {
        zombie.send(BaseRecord::to(topic).partition(0).key("k").payload(&six[..])).expect("send");
    }
    zombie.flush(Duration::from_secs(30)).expect("flushed");
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset("in", 0, Offset::Offset(6)).unwrap();
    let metadata = group.group_metadata().expect("group metadata");
    zombie.send_offsets_to_transaction(&offsets, &metadata, Duration::from_secs(30)).expect("offsets added");
    // The premise: the group's offset of `in` is unstable (a stable read waits).
    let reader: BaseConsumer = client_config(&bootstrap)
        .set("group.id", "pending")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("in", 0);
    assert!(reader.committed_offsets(tpl, Duration::from_secs(1)).is_err(), "the offset commit is pending");

    let mut app = KafkaStreams::new(one_count(), config()).unwrap();
    app.start().unwrap();
    let out = tail(&bootstrap, "out");
    let mut outputs = Vec::new();
    let read = |outputs: &mut Vec<u64>| {
        if let Some(Ok(m)) = out.poll(Duration::from_millis(50)) {
            outputs.push(count_of(&m));
        }
    };
    let held_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < held_until {
        read(&mut outputs);
    }
    assert_eq!(outputs, vec![1, 2, 3, 4, 5], "nothing while the offsets are pending");
    assert_eq!(app.metrics().processed, 0, "the record of the pending transaction is not processed again");

    zombie.commit_transaction(Duration::from_secs(30)).expect("commit");
    produce_strings(&bootstrap, "in", &[("k", "x", 1_006)]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while outputs.len() < 7 {
        assert!(Instant::now() < deadline, "no count after the commit: {outputs:?} {:?}", app.metrics());
        read(&mut outputs);
    }
    let settle = Instant::now() + Duration::from_millis(500);
    while Instant::now() < settle {
        read(&mut outputs);
    }
    assert_eq!(outputs, (1..=7).collect::<Vec<u64>>(), "the sixth count once, the seventh from the restored six");
    assert_eq!(app.metrics().processed, 1, "only the record after the committed offsets");
    app.close().unwrap();
    cluster.shutdown();
}
