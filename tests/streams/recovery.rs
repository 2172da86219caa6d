//! Exactly-once under faults, one hole at a time (the exactly-once issue's list): stream time
//! across restarts, repartition topics and time retention, a checkpoint the changelog cannot
//! serve, and a broker outage. Each test failed on the runtime before its fix.

use std::collections::BTreeMap;
use std::time::Duration;

use moldau_dsl::state::{StringSerde, U64Serde};
use moldau_dsl::{Consumed, Grouped, Produced, StreamsBuilder, TimeWindows};
use moldau_engine::{failpoint, KafkaStreams, ProcessingGuarantee, StreamsState, Topology};
use moldau_tests::streams_util::{produce_strings, read_topic, streams_config};
use moldau_tests::{admin, client_config, init_logging};
use rdkafka::admin::{AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::apps::{count_updates, expected_agg, produce_eos_records, start_cluster_with, wait_until, word_count};

/// Event time of the window tests: a multiple of the 10 s window (0 would mean "now" to the
/// producer).
const BASE: i64 = 1_700_000_000_000;

/// Counts per key in tumbling 10 s windows without grace, emitted on every update as
/// `key@start` → count on `win-counts`.
fn window_count() -> Topology {
    let b = StreamsBuilder::new();
    b.stream_keyed("events", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .windowed_by(TimeWindows::of_size_with_no_grace(10_000))
        .count("win")
        .to_stream()
        .map(|w, n: Option<u64>| (format!("{}@{}", w.key, w.window.start - BASE), n.unwrap_or(0)))
        .to("win-counts", Produced::with(StringSerde, U64Serde));
    b.build().expect("the window count builds")
}

fn window_updates(bootstrap: &str, n: usize) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in read_topic(bootstrap, "win-counts", n, Duration::from_secs(60), Duration::from_secs(1)) {
        let v = u64::from_be_bytes(r.value.as_deref().unwrap_or_default().try_into().expect("8-byte count"));
        out.entry(r.key_str()).or_default().push(v);
    }
    out
}

/// Hole 2: stream time survives a restart. A record too late for its window is dropped before
/// the restart and after it alike; before the fix, the restarted task began at stream time -1,
/// accepted the late record, read its expired window as empty and emitted `a@0 → 1` for a
/// window that held 9.
#[test]
fn should_drop_a_late_record_after_a_restart_as_before_it() {
    let (cluster, bootstrap) = start_cluster_with(1, &["events", "win-counts"], 1);
    let dir = tempfile::tempdir().unwrap();
    let mut first: Vec<(&str, &str, i64)> = (0..9).map(|i| ("a", "x", BASE + i * 1_000)).collect();
    first.push(("b", "x", BASE + 100_000));
    first.push(("a", "late", BASE + 5_000));
    produce_strings(&bootstrap, "events", &first);
    let config = || streams_config("late", &bootstrap, dir.path(), ProcessingGuarantee::ExactlyOnceV2);
    let mut app = KafkaStreams::new(window_count(), config()).unwrap();
    app.start().unwrap();
    let got = window_updates(&bootstrap, 10);
    assert_eq!(got["a@0"], (1..=9).collect::<Vec<u64>>(), "the late record is dropped: {got:?}");
    wait_until("all 11 records processed", || app.metrics().processed == 11);
    app.close().unwrap();

    // The same late record again, then a record that shows processing got past it.
    produce_strings(&bootstrap, "events", &[("a", "late", BASE + 5_000), ("b", "x", BASE + 101_000)]);
    let mut app = KafkaStreams::new(window_count(), config()).unwrap();
    app.start().unwrap();
    let got = window_updates(&bootstrap, 11);
    app.close().unwrap();
    assert_eq!(got["b@100000"], vec![1, 2], "{got:?}");
    assert_eq!(got["a@0"], (1..=9).collect::<Vec<u64>>(), "the late record was accepted after the restart: {got:?}");
    assert_eq!(got.len(), 2, "{got:?}");
    cluster.shutdown();
}

/// Hole 1: repartition topics never expire by time and are purged once consumed. The broker
/// checks retention every 100 ms and rolls segments every 16 KiB, and the records are 30 days
/// old (a backfill): under the broker's 7-day default, closed segments of the repartition topic
/// were deleted before the downstream sub-topology read them.
#[test]
fn should_lose_no_repartitioned_record_to_time_retention_and_purge_what_was_consumed() {
    init_logging();
    let cluster = moldau_tests::cluster_builder()
        .brokers(1)
        .config("log.retention.check.interval.ms", "100")
        .config("log.segment.bytes", "16384")
        .start()
        .expect("cluster");
    let bootstrap = cluster.bootstrap_servers().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin = admin(&bootstrap);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    // The input and the output (which keeps the input's timestamps) must not expire before
    // they are read: only the repartition topic is left to the broker's default.
    let topics = [
        NewTopic::new("text", 2, TopicReplication::Fixed(1)).set("retention.ms", "-1"),
        NewTopic::new("counts", 2, TopicReplication::Fixed(1)).set("retention.ms", "-1"),
    ];
    for r in rt.block_on(admin.create_topics(&topics, &opts)).unwrap() {
        r.unwrap();
    }
    let old = now_ms() - 30 * 24 * 3_600_000;
    const LINES: usize = 20_000;
    let lines: Vec<(String, String)> =
        (0..LINES).map(|i| (format!("l{i}"), format!("w{} w{}", i % 50, i % 7))).collect();
    let records: Vec<(&str, &str, i64)> =
        lines.iter().enumerate().map(|(i, (k, v))| (k.as_str(), v.as_str(), old + i as i64)).collect();
    let dir = tempfile::tempdir().unwrap();
    let config = streams_config("purge", &bootstrap, dir.path(), ProcessingGuarantee::ExactlyOnceV2)
        .with_repartition_purge_interval(Duration::from_millis(500));
    let mut app = KafkaStreams::new(word_count(), config).unwrap();
    app.start().unwrap();
    produce_strings(&bootstrap, "text", &records);
    let got = count_updates(&bootstrap, 2 * LINES);
    let finals: BTreeMap<String, u64> = got.iter().map(|(k, v)| (k.clone(), *v.last().unwrap())).collect();
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for (_, line) in &lines {
        for w in line.split_whitespace() {
            *want.entry(w.to_string()).or_default() += 1;
        }
    }
    assert_eq!(finals, want, "every repartitioned word counted");
    assert_eq!(app.state(), StreamsState::Running, "{:?}", app.errors());

    let topic = "purge-words-repartition";
    let configs =
        rt.block_on(admin.describe_configs(&[ResourceSpecifier::Topic(topic)], &opts)).unwrap().remove(0).unwrap();
    let retention = configs.get("retention.ms").and_then(|e| e.value.clone());
    assert_eq!(retention.as_deref(), Some("-1"), "repartition topics never expire by time");
    // What the downstream sub-topology consumed and committed is deleted: everything but the
    // last transaction's commit marker, which the committed offset (the next record's) never
    // passes.
    let consumer: BaseConsumer = client_config(&bootstrap).create().unwrap();
    wait_until("the repartition topic is purged up to its end", || {
        (0..2).all(|p| {
            let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(5)).unwrap();
            high > 1 && high - low <= 1
        })
    });
    app.close().unwrap();
    cluster.shutdown();
}

/// Hole 6: a store checkpoint beyond the end of its changelog (the changelog topic was
/// recreated) marks the task corrupted: the store is wiped and restored from the changelog's
/// start. Before the fix, the restore fell back to the earliest offset and replayed over the
/// stale store, so counts the changelog no longer had survived.
#[test]
fn should_wipe_and_restore_a_store_whose_checkpoint_is_past_its_changelog_end() {
    let (cluster, bootstrap) = start_cluster_with(1, &["text", "counts"], 1);
    let dir = tempfile::tempdir().unwrap();
    let config = || streams_config("lost", &bootstrap, dir.path(), ProcessingGuarantee::ExactlyOnceV2);
    produce_strings(&bootstrap, "text", &[("1", "x y", BASE)]);
    let mut app = KafkaStreams::new(word_count(), config()).unwrap();
    app.start().unwrap();
    assert_eq!(count_updates(&bootstrap, 2).len(), 2);
    wait_until("a line and its two words processed", || app.metrics().processed == 3);
    app.close().unwrap();

    // The changelog is lost: recreated empty.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin = admin(&bootstrap);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let changelog = "lost-counts-changelog";
    for r in rt.block_on(admin.delete_topics(&[changelog], &opts)).unwrap() {
        r.unwrap();
    }
    let recreated = NewTopic::new(changelog, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    wait_until("the changelog is recreated", || {
        rt.block_on(admin.create_topics([&recreated], &opts)).is_ok_and(|r| r.iter().all(Result::is_ok))
    });

    produce_strings(&bootstrap, "text", &[("2", "y", BASE + 1)]);
    let mut app = KafkaStreams::new(word_count(), config()).unwrap();
    app.start().unwrap();
    let got = count_updates(&bootstrap, 3);
    app.close().unwrap();
    assert_eq!(got["y"], vec![1, 1], "the store follows its (recreated, empty) changelog: {got:?}");
    cluster.shutdown();
}

/// Hole 9: an application stays up through broker outages. The whole cluster is stopped twice
/// for a few seconds while an exactly-once application (2 stream threads, a repartition topic
/// and an aggregate) runs; it must resume on its own, never stop with an error, and its output
/// must be exact.
#[test]
fn should_ride_out_broker_outages_exactly_once() {
    init_logging();
    const RECORDS: usize = 6_000;
    const KEYS: usize = 20;
    let data = tempfile::tempdir().unwrap();
    let port = free_ports(3);
    let start = || {
        moldau_tests::cluster_builder()
            .brokers(3)
            .port(port)
            .data_dir(data.path())
            .start()
            .expect("the cluster (re)starts on its ports and data")
    };
    let mut cluster = Some(start());
    let bootstrap = cluster.as_ref().unwrap().bootstrap_servers().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for t in ["data", "echo", "agg"] {
        rt.block_on(moldau_tests::must_create_topic(&bootstrap, t, 4, 3));
    }
    let dir = tempfile::tempdir().unwrap();
    let config = streams_config("outage", &bootstrap, dir.path(), ProcessingGuarantee::ExactlyOnceV2).with_threads(2);
    let mut app = KafkaStreams::new(moldau_tests::eos_app::topology(), config).unwrap();
    app.start().unwrap();
    // Current timestamps: a restarted broker deletes closed segments older than its 7-day
    // retention.
    let t0 = now_ms();
    let chunks: Vec<Vec<usize>> = (0..RECORDS).collect::<Vec<_>>().chunks(RECORDS / 6).map(<[usize]>::to_vec).collect();
    for (n, chunk) in chunks.iter().enumerate() {
        produce_eos_records(&bootstrap, chunk.iter().copied(), KEYS, |i| Some(t0 + i as i64));
        if n == 1 || n == 3 {
            std::thread::sleep(Duration::from_millis(500));
            cluster.take().unwrap().shutdown();
            std::thread::sleep(Duration::from_secs(4));
            assert!(app.errors().is_empty(), "the application stopped during the outage: {:?}", app.errors());
            cluster = Some(start());
        }
    }
    let echo = read_topic(&bootstrap, "echo", RECORDS, Duration::from_secs(120), Duration::from_secs(2));
    let agg = read_topic(&bootstrap, "agg", RECORDS, Duration::from_secs(120), Duration::from_secs(2));
    assert_eq!(app.state(), StreamsState::Running, "{:?}", app.errors());
    app.close().unwrap();
    let mut echoed: Vec<u64> =
        echo.iter().map(|r| u64::from_be_bytes(r.value.as_deref().unwrap().try_into().unwrap())).collect();
    echoed.sort_unstable();
    assert_eq!(echoed, (0..RECORDS as u64).collect::<Vec<_>>(), "every input echoed exactly once");
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in agg {
        got.entry(r.key_str()).or_default().push(r.value_str());
    }
    assert!(got == expected_agg(RECORDS, KEYS), "the aggregate is not exact");
    cluster.unwrap().shutdown();
}

/// `n` consecutive free ports on 127.0.0.1; returns the first.
pub(crate) fn free_ports(n: u16) -> u16 {
    for _ in 0..100 {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if first > u16::MAX - n {
            continue;
        }
        let held: Vec<_> = (first..first + n).map(|p| std::net::TcpListener::bind(("127.0.0.1", p))).collect();
        if held.iter().all(Result::is_ok) {
            return first;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Two instances on one state directory would share transactional ids and fence each other
/// forever: the second is refused at start, naming the directory, and starts once the first
/// has closed.
#[test]
fn should_refuse_a_second_instance_on_the_same_state_directory() {
    let (cluster, bootstrap) = start_cluster_with(1, &["text", "counts"], 1);
    let dir = tempfile::tempdir().unwrap();
    let config = || streams_config("shared-dir", &bootstrap, dir.path(), ProcessingGuarantee::ExactlyOnceV2);
    let mut first = KafkaStreams::new(word_count(), config()).unwrap();
    first.start().unwrap();
    let mut second = KafkaStreams::new(word_count(), config()).unwrap();
    let e = second.start().unwrap_err().to_string();
    assert!(e.contains("in use by another running instance"), "{e}");
    first.close().unwrap();
    let mut third = KafkaStreams::new(word_count(), config()).unwrap();
    third.start().unwrap();
    third.close().unwrap();
    cluster.shutdown();
}

/// A repartition topic an older version created with the broker's time retention is switched
/// to `retention.ms=-1` at start, keeping its other topic configs.
#[test]
fn should_switch_an_existing_repartition_topic_to_no_time_retention() {
    let (cluster, bootstrap) = start_cluster_with(1, &["text", "counts"], 2);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin = admin(&bootstrap);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let topic = "upgrade-words-repartition";
    let old = NewTopic::new(topic, 2, TopicReplication::Fixed(1)).set("max.message.bytes", "2000000");
    for r in rt.block_on(admin.create_topics([&old], &opts)).unwrap() {
        r.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = streams_config("upgrade", &bootstrap, dir.path(), ProcessingGuarantee::ExactlyOnceV2);
    let mut app = KafkaStreams::new(word_count(), config).unwrap();
    app.start().unwrap();
    produce_strings(&bootstrap, "text", &[("1", "x y x", BASE)]);
    let got = count_updates(&bootstrap, 3);
    app.close().unwrap();
    assert_eq!(got["x"], vec![1, 2]);
    let described =
        rt.block_on(admin.describe_configs(&[ResourceSpecifier::Topic(topic)], &opts)).unwrap().remove(0).unwrap();
    let value = |k: &str| described.get(k).and_then(|e| e.value.clone());
    assert_eq!(value("retention.ms").as_deref(), Some("-1"), "no time retention on a repartition topic");
    assert_eq!(value("max.message.bytes").as_deref(), Some("2000000"), "its other configs are kept");
    cluster.shutdown();
}

/// A task found corrupted while it runs recovers without stopping the application: its
/// stores are wiped and restored from their changelogs, and the thread rolls back to the last
/// commit (Kafka Streams' `TaskCorruptedException`). A fail point makes the store report
/// itself corrupted right after Kafka has a transaction, before the store commits it: the
/// restored store must hold that transaction (it is in the changelog) and the counts go on
/// exactly, with nothing counted twice.
#[test]
fn should_restore_a_task_found_corrupted_and_go_on_exactly_once() {
    init_logging();
    let (cluster, bootstrap) = start_cluster_with(1, &["text", "counts"], 1);
    let dir = tempfile::tempdir().unwrap();
    let config = streams_config("corrupted", &bootstrap, dir.path(), ProcessingGuarantee::ExactlyOnceV2);
    let mut app = KafkaStreams::new(word_count(), config).unwrap();
    app.start().unwrap();
    produce_strings(&bootstrap, "text", &[("1", "a b", BASE)]);
    assert_eq!(count_updates(&bootstrap, 2).len(), 2, "the first line counted");
    let before = app.metrics();
    assert_eq!((before.stores_wiped, before.recoveries), (0, 0), "{before:?}");
    // The next commit's store commit finds the store corrupted.
    failpoint::configure("commit.after_kafka=fail@1").unwrap();
    produce_strings(&bootstrap, "text", &[("2", "a c", BASE + 1)]);
    wait_until("the corrupted task restored", || app.metrics().stores_wiped > 0 && app.metrics().restored > 0);
    produce_strings(&bootstrap, "text", &[("3", "a d", BASE + 2)]);
    let counts = count_updates(&bootstrap, 6);
    let after = app.metrics();
    assert!(app.errors().is_empty(), "the application went on: {:?}", app.errors());
    assert_eq!(app.state(), StreamsState::Running);
    app.close().unwrap();
    let expected: BTreeMap<String, Vec<u64>> = [("a", vec![1, 2, 3]), ("b", vec![1]), ("c", vec![1]), ("d", vec![1])]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(counts, expected, "exactly once across the corruption");
    assert_eq!(after.recoveries, 1, "one roll-back: {after:?}");
    assert_eq!(after.stores_wiped, 1, "the corrupted task's store was wiped: {after:?}");
    // At least the first line's counts (the second line's, too, if the count task had
    // processed it when the fail point fired).
    assert!(after.restored >= 2, "the store was restored from its changelog: {after:?}");
    cluster.shutdown();
}

/// A close is bounded: with the stream thread stuck in a commit (a fail point sleeps 5 s after
/// each Kafka commit), `close_timeout` of 500 ms fails naming the thread still running
/// instead of waiting for it.
#[test]
fn should_fail_a_close_whose_thread_does_not_stop_in_time() {
    init_logging();
    let (cluster, bootstrap) = start_cluster_with(1, &["text", "counts"], 1);
    let dir = tempfile::tempdir().unwrap();
    let config = streams_config("slow-close", &bootstrap, dir.path(), ProcessingGuarantee::ExactlyOnceV2);
    let mut app = KafkaStreams::new(word_count(), config).unwrap();
    app.start().unwrap();
    produce_strings(&bootstrap, "text", &[("1", "a b", BASE)]);
    wait_until("the first line counted", || app.metrics().commits > 0 && app.metrics().processed > 0);
    failpoint::configure("commit.after_kafka=sleep(5000)").unwrap();
    let (commits, processed) = (app.metrics().commits, app.metrics().processed);
    produce_strings(&bootstrap, "text", &[("2", "c", BASE + 1)]);
    // The thread enters the commit of the second line within a commit interval of
    // processing it, and stays there (each commit takes 5 s now).
    wait_until("the second line processed", || app.metrics().processed > processed);
    std::thread::sleep(Duration::from_millis(300));
    let err = app.close_timeout(Duration::from_millis(500)).expect_err("the close gives up");
    assert!(err.to_string().contains("still running"), "{err}");
    assert!(app.metrics().commits <= commits + 1, "the thread was stuck in a commit: {:?}", app.metrics());
    assert_eq!(app.state(), StreamsState::NotRunning);
    cluster.shutdown();
}
