//! A fenced producer: another producer initializes the application's transactional id (as a
//! new incarnation of the instance would), so the running instance's producer is fenced. The
//! instance must roll back to its last commit, make a new producer, and go on exactly-once
//! with its state intact: no output lost or repeated, nothing wiped.

use std::collections::BTreeMap;
use std::time::Duration;

use moldau_engine::{KafkaStreams, ProcessingGuarantee, StreamsState};
use moldau_tests::client_config;
use moldau_tests::streams_util::{produce_strings, streams_config};
use rdkafka::producer::{BaseProducer, Producer};

use crate::apps::{count_updates, start_word_count_cluster, word_count};

#[test]
fn should_recover_from_a_fenced_producer_without_losing_or_repeating_output() {
    let (cluster, bootstrap) = start_word_count_cluster(1, 2);
    let dir = tempfile::tempdir().unwrap();
    produce_strings(&bootstrap, "text", &[("a", "the cat sat", 1_000), ("b", "the dog sat", 1_001)]);
    let config = streams_config("fence", &bootstrap, dir.path(), ProcessingGuarantee::ExactlyOnceV2);
    let mut app = KafkaStreams::new(word_count(), config).unwrap();
    app.start().unwrap();
    assert_eq!(count_updates(&bootstrap, 6).values().map(Vec::len).sum::<usize>(), 6);

    // A second producer takes over the stream thread's transactional id: the thread's
    // producer is fenced the next time it produces.
    let process_id = std::fs::read_to_string(dir.path().join("fence").join("process-id")).unwrap();
    let zombie: BaseProducer =
        client_config(&bootstrap).set("transactional.id", format!("fence-{}-0", process_id.trim())).create().unwrap();
    zombie.init_transactions(Duration::from_secs(30)).unwrap();
    drop(zombie);

    produce_strings(&bootstrap, "text", &[("c", "the cat ran", 2_000), ("d", "cat", 2_001)]);
    let got = count_updates(&bootstrap, 10);
    assert_eq!(app.state(), StreamsState::Running, "{:?}", app.errors());
    let m = app.metrics();
    app.close().unwrap();
    let expected: BTreeMap<String, Vec<u64>> =
        [("cat", vec![1, 2, 3]), ("dog", vec![1]), ("ran", vec![1]), ("sat", vec![1, 2]), ("the", vec![1, 2, 3])]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    assert_eq!(got, expected, "{m:?}");
    assert_eq!(m.recoveries, 1, "the fenced producer was noticed and replaced at the first roll-back: {m:?}");
    cluster.shutdown();
}
