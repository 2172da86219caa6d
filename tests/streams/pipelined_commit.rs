//! Exactly-once commits overlap processing: while a transaction commits on a helper thread,
//! the stream thread processes the next records and holds their output. The output must still
//! be the input exactly once, in order per key, with nothing rolled back.

use std::collections::BTreeMap;
use std::time::Duration;

use moldau_engine::{KafkaStreams, ProcessingGuarantee, StreamsState};
use moldau_tests::eos_app;
use moldau_tests::streams_util::{read_topic, streams_config};

use crate::apps::{expected_agg, produce_eos_records, start_eos_app_cluster};

const RECORDS: usize = 30_000;
const KEYS: usize = 50;

#[test]
fn should_process_while_a_commit_is_under_way_and_stay_exactly_once() {
    let (cluster, bootstrap) = start_eos_app_cluster();
    produce_eos_records(&bootstrap, 0..RECORDS, KEYS, |i| Some(1_000_000 + i as i64));

    // Commits every 10 ms over a backlog: most commits find records waiting.
    let dir = tempfile::tempdir().unwrap();
    let config = streams_config("pipelined", &bootstrap, dir.path(), ProcessingGuarantee::ExactlyOnceV2)
        .with_commit_interval(Duration::from_millis(10));
    let mut app = KafkaStreams::new(eos_app::topology(), config).unwrap();
    app.start().unwrap();
    let echo = read_topic(&bootstrap, "echo", RECORDS, Duration::from_secs(120), Duration::from_secs(1));
    let agg = read_topic(&bootstrap, "agg", RECORDS, Duration::from_secs(120), Duration::from_secs(1));
    let m = app.metrics();
    assert_eq!(app.state(), StreamsState::Running, "{:?}", app.errors());
    app.close().unwrap();
    cluster.shutdown();

    assert_eq!(m.recoveries, 0, "no commit failed: {m:?}");
    assert!(m.commits >= 10, "{m:?}");
    assert!(m.processed_while_committing > 0, "records were processed while commits were under way: {m:?}");
    let mut echoed: Vec<u64> = echo
        .iter()
        .map(|r| u64::from_be_bytes(r.value.as_deref().unwrap_or_default().try_into().expect("u64")))
        .collect();
    echoed.sort_unstable();
    assert_eq!(echoed, (0..RECORDS as u64).collect::<Vec<_>>(), "every input echoed exactly once");
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &agg {
        got.entry(r.key_str()).or_default().push(r.value_str());
    }
    assert!(got == expected_agg(RECORDS, KEYS), "the running count:sum per key is not exact");
}
