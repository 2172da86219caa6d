//! Word count end to end, at-least-once and exactly-once, through a repartition topic and a
//! changelogged store; a restart restores the counts.

use std::collections::BTreeMap;

use moldau_engine::{KafkaStreams, ProcessingGuarantee, StreamsState};
use moldau_tests::streams_util::{produce_strings, streams_config};

use crate::apps::{count_updates, start_word_count_cluster, word_count};

fn run(guarantee: ProcessingGuarantee) {
    let (cluster, bootstrap) = start_word_count_cluster(3, 3);
    let dir = tempfile::tempdir().unwrap();
    let lines = ["the cat sat", "the dog sat", "The end", "cat and dog and cat"];
    let records: Vec<(&str, &str, i64)> =
        lines.iter().enumerate().map(|(i, l)| (["a", "b", "c", "d"][i], *l, 1_000 + i as i64)).collect();
    produce_strings(&bootstrap, "text", &records);

    let mut app = KafkaStreams::new(word_count(), streams_config("wc", &bootstrap, dir.path(), guarantee)).unwrap();
    app.start().unwrap();
    let got = count_updates(&bootstrap, 13);
    let m = app.metrics();
    assert_eq!(m.processed, 4 + 13, "{m:?}");
    assert_eq!(m.tasks.values().map(Vec::len).sum::<usize>(), 6, "{m:?}");
    assert_eq!(app.state(), StreamsState::Running, "{:?}", app.errors());
    app.close().unwrap();
    let expected: BTreeMap<String, Vec<u64>> = [
        ("and", vec![1, 2]),
        ("cat", vec![1, 2, 3]),
        ("dog", vec![1, 2]),
        ("end", vec![1]),
        ("sat", vec![1, 2]),
        ("the", vec![1, 2, 3]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(got, expected);

    // A second run restores the counts from the store (and its changelog) and goes on.
    produce_strings(&bootstrap, "text", &[("e", "cat", 2_000)]);
    let mut app = KafkaStreams::new(word_count(), streams_config("wc", &bootstrap, dir.path(), guarantee)).unwrap();
    app.start().unwrap();
    let got = count_updates(&bootstrap, 14);
    let m = app.metrics();
    assert_eq!(m.processed, 2, "{m:?}");
    assert!(m.restored <= 13, "{m:?}");
    app.close().unwrap();
    assert_eq!(got["cat"], vec![1, 2, 3, 4]);
    assert_eq!(got.values().map(Vec::len).sum::<usize>(), 14);
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
