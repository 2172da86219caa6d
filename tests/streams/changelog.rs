//! Changelog records leave as they are written, not at commit: at-least-once commits every 30 s
//! by default, and holding that long a stream of store updates in memory would grow without
//! bound at high rates.

use std::collections::BTreeMap;
use std::time::Duration;

use moldau_engine::{KafkaStreams, ProcessingGuarantee};
use moldau_tests::streams_util::{produce_strings, read_topic, streams_config};

use crate::apps::{count_updates, start_word_count_cluster, word_count};

#[test]
fn should_send_changelog_records_before_the_commit() {
    let (cluster, bootstrap) = start_word_count_cluster(1, 2);
    let dir = tempfile::tempdir().unwrap();
    let config = streams_config("eager-log", &bootstrap, dir.path(), ProcessingGuarantee::AtLeastOnce)
        .with_commit_interval(Duration::from_secs(600));
    produce_strings(&bootstrap, "text", &[("a", "the cat sat", 1_000), ("b", "the cat", 1_001)]);
    let mut app = KafkaStreams::new(word_count(), config).unwrap();
    app.start().unwrap();

    assert_eq!(count_updates(&bootstrap, 5).values().map(Vec::len).sum::<usize>(), 5);
    let log = read_topic(&bootstrap, "eager-log-counts-changelog", 5, Duration::from_secs(30), Duration::ZERO);
    let m = app.metrics();
    assert_eq!(m.commits, 0, "no commit yet at a 10-minute interval: {m:?}");
    assert_eq!(m.sent, 15, "5 words repartitioned, 5 counts and 5 changelog records sent: {m:?}");
    let mut latest: BTreeMap<String, u64> = BTreeMap::new();
    for r in &log {
        let n = u64::from_be_bytes(r.value.as_deref().unwrap_or_default().try_into().expect("8-byte count"));
        latest.insert(r.key_str(), n);
    }
    let expected: BTreeMap<String, u64> =
        [("cat", 2), ("sat", 1), ("the", 2)].into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    assert_eq!(latest, expected, "the store's updates are on the changelog before any commit");
    app.close().unwrap();
    cluster.shutdown();
}
