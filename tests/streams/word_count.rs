//! Word count end to end, at-least-once and exactly-once, through a repartition topic and a
//! changelogged store; a restart restores the counts.

use std::collections::BTreeMap;

use moldau_engine::{KafkaStreams, ProcessingGuarantee, StreamsState};
use moldau_tests::streams_util::{produce_strings, streams_config};

use crate::apps::{count_updates, start_word_count_cluster, word_count};

/// Produces the four lines of text the word counts below come from.
fn produce_lines(bootstrap: &str) {
    let lines = ["the cat sat", "the dog sat", "The end", "cat and dog and cat"];
    let records: Vec<(&str, &str, i64)> =
        lines.iter().enumerate().map(|(i, l)| (["a", "b", "c", "d"][i], *l, 1_000 + i as i64)).collect();
    produce_strings(bootstrap, "text", &records);
}

/// Every count update of [`produce_lines`]' words, in order, per word.
fn expected_counts() -> BTreeMap<String, Vec<u64>> {
    [
        ("and", vec![1, 2]),
        ("cat", vec![1, 2, 3]),
        ("dog", vec![1, 2]),
        ("end", vec![1]),
        ("sat", vec![1, 2]),
        ("the", vec![1, 2, 3]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn run(guarantee: ProcessingGuarantee) {
    let (cluster, bootstrap) = start_word_count_cluster(3, 3);
    let dir = tempfile::tempdir().unwrap();
    produce_lines(&bootstrap);

    let mut app = KafkaStreams::new(word_count(), streams_config("wc", &bootstrap, dir.path(), guarantee)).unwrap();
    app.start().unwrap();
    let got = count_updates(&bootstrap, 13);
    let m = app.metrics();
    assert_eq!(m.processed, 4 + 13, "{m:?}");
    assert_eq!(m.tasks.values().map(Vec::len).sum::<usize>(), 6, "{m:?}");
    assert_eq!(app.state(), StreamsState::Running, "{:?}", app.errors());
    app.close().unwrap();
    assert_eq!(got, expected_counts());

    // A second run on the same state directory finds the counts in its stores: nothing to
    // restore, and it goes on.
    produce_strings(&bootstrap, "text", &[("e", "cat", 2_000)]);
    let mut app = KafkaStreams::new(word_count(), streams_config("wc", &bootstrap, dir.path(), guarantee)).unwrap();
    app.start().unwrap();
    let got = count_updates(&bootstrap, 14);
    let m = app.metrics();
    assert_eq!(m.processed, 2, "{m:?}");
    assert_eq!(m.restored, 0, "the stores were closed at their last commit: {m:?}");
    app.close().unwrap();
    assert_eq!(got["cat"], vec![1, 2, 3, 4]);
    assert_eq!(got.values().map(Vec::len).sum::<usize>(), 14);

    // A third on an empty state directory restores every count from the changelogs (one record
    // per update: 14) and goes on exactly.
    produce_strings(&bootstrap, "text", &[("f", "cat dog", 3_000)]);
    let fresh = tempfile::tempdir().unwrap();
    let mut app = KafkaStreams::new(word_count(), streams_config("wc", &bootstrap, fresh.path(), guarantee)).unwrap();
    app.start().unwrap();
    let got = count_updates(&bootstrap, 16);
    let m = app.metrics();
    assert_eq!(m.processed, 3, "{m:?}");
    assert_eq!(m.restored, 14, "a full restore from the changelog: {m:?}");
    app.close().unwrap();
    assert_eq!(got["cat"], vec![1, 2, 3, 4, 5]);
    assert_eq!(got["dog"], vec![1, 2, 3]);
    cluster.shutdown();
}

#[test]
fn should_count_words_at_least_once() {
    run(ProcessingGuarantee::AtLeastOnce);
}

#[test]
fn should_count_words_exactly_once() {
    run(ProcessingGuarantee::ExactlyOnceV2);
}

/// A commit has the producer send what it still holds at once: with `linger.ms` (10 minutes)
/// far longer than a commit waits for acknowledgements (a minute), exactly-once commits still
/// complete, without a roll-back, and the counts come out whole. (The message and transaction
/// timeouts must exceed the linger for librdkafka to accept it.)
#[test]
fn should_commit_without_waiting_out_the_producers_linger() {
    let (cluster, bootstrap) = start_word_count_cluster(3, 3);
    let dir = tempfile::tempdir().unwrap();
    produce_lines(&bootstrap);
    let config = streams_config("wc-linger", &bootstrap, dir.path(), ProcessingGuarantee::ExactlyOnceV2)
        .with_property("producer.linger.ms", "600000")
        .with_property("producer.message.timeout.ms", "900000")
        .with_property("producer.transaction.timeout.ms", "900000");
    let mut app = KafkaStreams::new(word_count(), config).unwrap();
    app.start().unwrap();
    let got = count_updates(&bootstrap, 13);
    let m = app.metrics();
    assert_eq!(app.state(), StreamsState::Running, "{:?}", app.errors());
    app.close().unwrap();
    assert_eq!(got, expected_counts());
    assert!(m.commits > 0, "{m:?}");
    assert_eq!(m.recoveries, 0, "no commit timed out: {m:?}");
    cluster.shutdown();
}
