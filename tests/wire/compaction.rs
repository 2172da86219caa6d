//! Log compaction seen by real clients: rdkafka producers (plain, idempotent with lz4,
//! transactional) and consumers reading compacted topics from the start, and the internal
//! offsets log compacted and replayed after a restart.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use moldau_broker_sim::{CleanerStats, Cluster};
use moldau_tests::{admin, client_config, cluster_builder, init_logging};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

async fn create_compacted(bootstrap: &str, name: &str, partitions: i32) {
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("segment.bytes", "16384");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for r in admin(bootstrap).create_topics([&topic], &opts).await.expect("create_topics request") {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

/// Waits (bounded) until the cleaner has done `enough`.
fn wait_for_cleaner(cluster: &Cluster, what: &str, enough: impl Fn(&CleanerStats) -> bool) -> CleanerStats {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = cluster.cleaner_stats();
        if enough(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "the cleaner did not {what} in 60 s: {stats:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every record of `topic` from its start to its high watermark: (partition, offset, key,
/// value; `None` for a tombstone).
fn read_from_start(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    isolation: &str,
) -> Vec<(i32, i64, String, Option<String>)> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "compaction-reader")
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut at_end = 0;
    let deadline = Instant::now() + TIMEOUT;
    while at_end < partitions {
        assert!(Instant::now() < deadline, "timed out reading {topic}");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push((
                m.partition(),
                m.offset(),
                String::from_utf8_lossy(m.key().expect("compacted records have keys")).into_owned(),
                m.payload().map(|v| String::from_utf8_lossy(v).into_owned()),
            )),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => at_end += 1,
            Some(Err(e)) => panic!("consume: {e}"),
            None => {}
        }
    }
    out
}

fn latest(records: &[(i32, i64, String, Option<String>)]) -> BTreeMap<String, Option<String>> {
    records.iter().map(|(_, _, k, v)| (k.clone(), v.clone())).collect()
}

/// An idempotent lz4 producer updates 500 keys 100 times each and deletes 50 of them; the
/// cleaner compacts the topic in the background; a reader from the start then sees, for
/// every key, its latest value (a tombstone for the deleted ones), in offset order, and far
/// fewer records than were written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_show_a_reader_the_latest_value_of_every_key_after_compaction() {
    init_logging();
    let cluster = cluster_builder().config("log.cleaner.backoff.ms", "20").start().unwrap();
    let bs = cluster.bootstrap_servers().to_string();
    create_compacted(&bs, "profiles", 2).await;
    let producer: BaseProducer = client_config(&bs)
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut expected = BTreeMap::new();
    let mut written = 0;
    for round in 0..100 {
        for k in 0..500 {
            let (key, value) = (format!("user-{k}"), format!("round-{round}-{}", "x".repeat(20)));
            producer.send(BaseRecord::to("profiles").key(&key).payload(&value)).expect("enqueue");
            producer.poll(Duration::ZERO);
            expected.insert(key, Some(value));
            written += 1;
        }
    }
    for k in 0..50 {
        let key = format!("user-{k}");
        producer.send(BaseRecord::<String, str>::to("profiles").key(&key)).expect("enqueue tombstone");
        expected.insert(key, None);
        written += 1;
    }
    producer.flush(TIMEOUT).expect("flush");
    let stats = wait_for_cleaner(&cluster, "compact both partitions", |s| s.passes >= 2 && s.records_read > 10_000);
    assert!(stats.records_kept < stats.records_read / 5, "most records were superseded: {stats:?}");
    let bs2 = bs.clone();
    let seen =
        tokio::task::spawn_blocking(move || read_from_start(&bs2, "profiles", 2, "read_uncommitted")).await.unwrap();
    assert_eq!(latest(&seen), expected, "every key's latest value, tombstones included");
    assert!(seen.len() < written / 4, "the reader saw {} of {written} records", seen.len());
    for p in 0..2 {
        let offsets: Vec<i64> = seen.iter().filter(|r| r.0 == p).map(|r| r.1).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "partition {p} offsets increase");
    }
    // The producer goes on after compaction: its sequence state survived.
    producer.send(BaseRecord::to("profiles").key("user-1").payload("back")).expect("enqueue");
    producer.flush(TIMEOUT).expect("flush after compaction");
}

/// A transactional producer commits and aborts alternately over the same keys; after the
/// cleaner ran, even a read_uncommitted reader sees no aborted record (they were removed), and
/// a read_committed reader sees the latest committed value of every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_remove_aborted_transactions_and_keep_committed_values() {
    init_logging();
    let cluster = cluster_builder().config("log.cleaner.backoff.ms", "20").start().unwrap();
    let bs = cluster.bootstrap_servers().to_string();
    create_compacted(&bs, "accounts", 1).await;
    let producer: BaseProducer = client_config(&bs).set("transactional.id", "compaction-txn").create().unwrap();
    producer.init_transactions(TIMEOUT).unwrap();
    let mut committed = BTreeMap::new();
    for txn in 0..60 {
        producer.begin_transaction().unwrap();
        let commit = txn % 2 == 0;
        for k in 0..20 {
            let key = format!("acct-{k}");
            let value = format!("{}-{txn}-{}", if commit { "committed" } else { "aborted" }, "y".repeat(40));
            producer.send(BaseRecord::to("accounts").key(&key).payload(&value)).expect("enqueue");
            if commit {
                committed.insert(key, Some(value));
            }
        }
        if commit {
            producer.commit_transaction(TIMEOUT).unwrap();
        } else {
            producer.flush(TIMEOUT).unwrap();
            producer.abort_transaction(TIMEOUT).unwrap();
        }
    }
    let stats = wait_for_cleaner(&cluster, "remove aborted records", |s| s.aborted_removed >= 400);
    assert!(stats.records_read > 0);
    let bs2 = bs.clone();
    let uncommitted =
        tokio::task::spawn_blocking(move || read_from_start(&bs2, "accounts", 1, "read_uncommitted")).await.unwrap();
    let aborted_left = uncommitted.iter().filter(|r| r.3.as_deref().is_some_and(|v| v.starts_with("aborted"))).count();
    // Only the active segment, never cleaned, may still hold aborted records.
    assert!(aborted_left <= 600 - 400, "{aborted_left} aborted records left of 600");
    let committed_view =
        tokio::task::spawn_blocking(move || read_from_start(&bs, "accounts", 1, "read_committed")).await.unwrap();
    assert_eq!(latest(&committed_view), committed);
    assert!(committed_view.iter().all(|r| r.3.as_deref().is_some_and(|v| v.starts_with("committed"))));
}

/// Offset commits go to the compacted `__consumer_offsets`: after 3,000 commits of one group
/// the cleaner compacts its partition, and a cluster restarted on the same data directory
/// replays the compacted log to the last committed offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_compact_the_offsets_log_and_replay_it_after_a_restart() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        cluster_builder()
            .data_dir(dir.path())
            .config("log.cleaner.backoff.ms", "20")
            .config("offsets.topic.segment.bytes", "16384")
            .config("offsets.topic.num.partitions", "1")
            .start()
            .unwrap()
    };
    let cluster = start();
    let bs = cluster.bootstrap_servers().to_string();
    moldau_tests::must_create_topic(&bs, "input", 1, 1).await;
    let consumer: BaseConsumer = client_config(&bs).set("group.id", "committer").create().unwrap();
    for i in 1..=3_000i64 {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("input", 0, Offset::Offset(i)).unwrap();
        consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    }
    let stats = wait_for_cleaner(&cluster, "compact __consumer_offsets", |s| s.records_read >= 2_000);
    assert!(stats.records_kept < stats.records_read / 10, "{stats:?}");
    drop(consumer);
    cluster.shutdown();
    let cluster = start();
    let bs = cluster.bootstrap_servers().to_string();
    let offsets_log = tokio::task::spawn_blocking({
        let bs = bs.clone();
        move || read_from_start(&bs, "__consumer_offsets", 1, "read_uncommitted")
    })
    .await
    .unwrap();
    assert!(offsets_log.len() < 1_000, "the offsets log holds {} records for 3,000 commits", offsets_log.len());
    let consumer: BaseConsumer = client_config(&bs).set("group.id", "committer").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("input", 0);
    let committed = consumer.committed_offsets(tpl, TIMEOUT).unwrap();
    assert_eq!(committed.find_partition("input", 0).unwrap().offset(), Offset::Offset(3_000));
}
