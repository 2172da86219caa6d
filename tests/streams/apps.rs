//! Topologies shared by the streams tests.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use moldau_dsl::state::{StringSerde, U64Serde};
use moldau_dsl::{Consumed, Grouped, Produced, StreamsBuilder};
use moldau_engine::Topology;
use moldau_tests::streams_util::{produce, read_topic, Produce};
use moldau_tests::{init_logging, must_create_topic, must_start_cluster};

/// A cluster of `brokers` brokers with `topics` of `partitions` partitions, replicated on
/// every broker; with its bootstrap servers.
pub fn start_cluster_with(brokers: usize, topics: &[&str], partitions: i32) -> (moldau_broker_sim::Cluster, String) {
    init_logging();
    let cluster = must_start_cluster(brokers);
    let bootstrap = cluster.bootstrap_servers().to_string();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    for topic in topics {
        rt.block_on(must_create_topic(&bootstrap, topic, partitions, brokers as i32));
    }
    (cluster, bootstrap)
}

/// A cluster of `brokers` brokers with the word count's `text` and `counts` topics of
/// `partitions` partitions.
pub fn start_word_count_cluster(brokers: usize, partitions: i32) -> (moldau_broker_sim::Cluster, String) {
    start_cluster_with(brokers, &["text", "counts"], partitions)
}

/// A 3-broker cluster with the crash-test application's (`moldau_tests::eos_app`) `data`,
/// `echo` and `agg` topics of 6 partitions.
pub fn start_eos_app_cluster() -> (moldau_broker_sim::Cluster, String) {
    start_cluster_with(3, &["data", "echo", "agg"], 6)
}

/// Input record `i` of the crash-test application over `keys` keys: its key and value.
pub fn eos_record(i: usize, keys: usize) -> (String, u64) {
    (format!("k{}", i % keys), i as u64)
}

/// Produces the crash-test application's input records `indices` over `keys` keys to `data`,
/// record `i` with timestamp `timestamp(i)` (`None`: the producer's clock).
pub fn produce_eos_records(
    bootstrap: &str,
    indices: impl IntoIterator<Item = usize>,
    keys: usize,
    timestamp: impl Fn(usize) -> Option<i64>,
) {
    let owned: Vec<(usize, String, [u8; 8])> = indices
        .into_iter()
        .map(|i| {
            let (k, v) = eos_record(i, keys);
            (i, k, v.to_be_bytes())
        })
        .collect();
    let rs: Vec<Produce<'_>> =
        owned.iter().map(|(i, k, v)| (Some(k.as_bytes()), Some(&v[..]), timestamp(*i))).collect();
    produce(bootstrap, "data", &rs);
}

/// Waits until `done` holds, failing after a minute with `what`.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The crash-test application's expected `count:sum` updates per key for input records
/// `0..records` over `keys` keys.
pub fn expected_agg(records: usize, keys: usize) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut state: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for i in 0..records {
        let (k, v) = eos_record(i, keys);
        let s = state.entry(k.clone()).or_default();
        *s = (s.0 + 1, s.1 + v);
        out.entry(k).or_default().push(format!("{}:{}", s.0, s.1));
    }
    out
}

/// Word count: lines of `text` → words → repartition by word → count → `counts`.
pub fn word_count() -> Topology {
    let b = StreamsBuilder::new();
    b.stream("text", Consumed::with(StringSerde, StringSerde))
        .flat_map_values(|line: String| line.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>())
        .group_by(|_, word: &String| word.clone(), Grouped::with(StringSerde, StringSerde).named("words"))
        .count("counts")
        .to_stream()
        .map_values(|n: Option<u64>| n.unwrap_or(0))
        .to("counts", Produced::with(StringSerde, U64Serde));
    b.build().expect("word count builds")
}

/// The word count's updates per word from topic `counts`, in output order, once `n` arrived.
pub fn count_updates(bootstrap: &str, n: usize) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in read_topic(bootstrap, "counts", n, Duration::from_secs(60), Duration::from_millis(500)) {
        let v = u64::from_be_bytes(r.value.as_deref().unwrap_or_default().try_into().expect("8-byte count"));
        out.entry(r.key_str()).or_default().push(v);
    }
    out
}
