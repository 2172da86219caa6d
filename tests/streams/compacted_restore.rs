//! The engine restores from compacted changelogs: broker-sim's cleaner compacts the word
//! count's changelog, so a task that loses its state directory restores about one record per
//! key instead of replaying every update.

use std::time::{Duration, Instant};

use moldau_engine::{KafkaStreams, ProcessingGuarantee};
use moldau_tests::client_config;
use moldau_tests::streams_util::{produce, streams_config, Produce};
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::apps::{count_updates, wait_until, word_count};

const WORDS: usize = 10_000;
const UPDATES: usize = 1_000_000;
const PER_LINE: usize = 10;

/// Produces `UPDATES` words, every word `UPDATES / WORDS` times, in lines of ten.
fn produce_words(bootstrap: &str, lines: std::ops::Range<usize>) {
    let text: Vec<String> = lines
        .map(|l| (0..PER_LINE).map(|i| format!("w{}", (l * PER_LINE + i) % WORDS)).collect::<Vec<_>>().join(" "))
        .collect();
    let records: Vec<Produce<'_>> = text.iter().map(|t| (None, Some(t.as_bytes()), None)).collect();
    produce(bootstrap, "text", &records);
}

fn high_watermark(bootstrap: &str, topic: &str) -> i64 {
    let c: BaseConsumer = client_config(bootstrap).create().expect("consumer");
    c.fetch_watermarks(topic, 0, Duration::from_secs(10)).expect("watermarks").1
}

/// 1,000,000 updates to 10,000 keys, the cleaner lets run, the state directory deleted: the
/// restarted app restores about one changelog record per key (from its restore metrics), and
/// every word's counts come out 1, 2, ..., 101 exactly once across both runs.
#[test]
fn should_restore_about_one_record_per_key_from_a_compacted_changelog() {
    moldau_tests::init_logging();
    let cluster = moldau_tests::cluster_builder()
        // Small segments so the changelog rolls and the cleaner reaches all but the last
        // 64 KiB; clean as soon as anything is dirty.
        .config("log.segment.bytes", "65536")
        .config("log.cleaner.min.cleanable.ratio", "0.01")
        .config("log.cleaner.backoff.ms", "50")
        .start()
        .expect("cluster starts");
    let bootstrap = cluster.bootstrap_servers().to_string();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    for topic in ["text", "counts"] {
        rt.block_on(moldau_tests::must_create_topic(&bootstrap, topic, 1, 1));
    }
    let config = |dir: &std::path::Path| {
        streams_config("compacted", &bootstrap, dir, ProcessingGuarantee::ExactlyOnceV2)
            .with_commit_interval(Duration::from_millis(200))
    };
    let lines = UPDATES / PER_LINE;

    let dir = tempfile::tempdir().unwrap();
    let mut app = KafkaStreams::new(word_count(), config(dir.path())).unwrap();
    app.start().unwrap();
    produce_words(&bootstrap, 0..lines);
    let deadline = Instant::now() + Duration::from_secs(600);
    while app.metrics().processed < (lines + UPDATES) as u64 {
        assert!(Instant::now() < deadline, "the first run did not process everything: {:?}", app.metrics());
        std::thread::sleep(Duration::from_millis(100));
    }
    app.close().unwrap();
    let changelog = "compacted-counts-changelog";
    let written = high_watermark(&bootstrap, changelog);
    // The premise: every update went to the changelog (and its markers).
    assert!(written >= UPDATES as i64, "the changelog holds {written} offsets");

    // The cleaner compacts up to the active segment; wait until it has nothing left to do.
    let mut last = cluster.cleaner_stats();
    let mut quiet_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    while quiet_since.elapsed() < Duration::from_secs(1) || last.passes == 0 {
        assert!(Instant::now() < deadline, "the cleaner never went quiet: {last:?}");
        std::thread::sleep(Duration::from_millis(50));
        let now = cluster.cleaner_stats();
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
    assert!(last.records_read >= UPDATES as u64 / 2, "the cleaner read the changelog: {last:?}");

    // A new state directory: the store restores from the compacted changelog.
    drop(dir);
    let dir = tempfile::tempdir().unwrap();
    let mut app = KafkaStreams::new(word_count(), config(dir.path())).unwrap();
    app.start().unwrap();
    wait_until("the restore ended", || {
        let m = app.metrics();
        m.restored > 0 && m.restoring.values().all(Vec::is_empty) && !m.tasks.values().all(Vec::is_empty)
    });
    let restored = app.metrics().restored;
    eprintln!(
        "changelog offsets {written}, restored {restored} records for {WORDS} keys ({:.2} per key, {:.1}x fewer)",
        restored as f64 / WORDS as f64,
        written as f64 / restored as f64
    );
    assert!(restored >= WORDS as u64, "every key restored: {restored}");
    assert!(restored < WORDS as u64 * 3 / 2, "about one record per key: {restored} for {WORDS} keys");

    // One more occurrence of every word counts on from the restored state.
    produce_words(&bootstrap, lines..lines + WORDS / PER_LINE);
    let total = UPDATES + WORDS;
    let updates = count_updates(&bootstrap, total);
    app.close().unwrap();
    assert_eq!(updates.len(), WORDS);
    let per_word = (total / WORDS) as u64;
    for (word, counts) in &updates {
        assert_eq!(counts, &(1..=per_word).collect::<Vec<_>>(), "the counts of {word}, exactly once");
    }
    cluster.shutdown();
}
