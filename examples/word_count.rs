//! Word count, exactly-once, on an embedded 3-broker broker-sim cluster: lines go in, running
//! counts per word come out and are printed as they arrive; at the end the final counts are
//! checked against a count made here.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use moldau_engine::{KafkaStreams, ProcessingGuarantee, StreamsConfig};
use moldau_examples as ex;

const LINES: [&str; 8] = [
    "All streams flow to the sea",
    "yet the sea is not full",
    "a stream is a table in motion",
    "a table is a stream at rest",
    "exactly once means once",
    "the log is the truth",
    "the table is a cache of the log",
    "streams and tables are two sides of one coin",
];

fn main() -> anyhow::Result<()> {
    ex::init_logging();
    let cluster = ex::start_cluster(3)?;
    let bootstrap = cluster.bootstrap_servers().to_string();
    println!("broker-sim: 3 brokers at {bootstrap}");
    ex::create_topics(&bootstrap, &[("text-lines", 3), ("word-counts", 3)], 3)?;
    let state = tempfile::tempdir()?;
    let config = StreamsConfig::new("word-count", &bootstrap)
        .with_guarantee(ProcessingGuarantee::ExactlyOnceV2)
        .with_state_dir(state.path());
    let topology = ex::word_count()?;
    println!("{}", topology.describe());
    let mut app = KafkaStreams::new(topology, config)?;
    app.start()?;
    println!("word-count running (exactly_once_v2, commit every 100 ms)\n");

    let producer = ex::producer(&bootstrap)?;
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for (i, line) in LINES.iter().enumerate() {
        ex::send(&producer, "text-lines", format!("line-{i}").as_bytes(), line.as_bytes(), None)?;
        for w in line.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            *expected.entry(w.to_lowercase()).or_default() += 1;
        }
    }
    ex::flush(&producer)?;
    println!("produced {} lines to text-lines; counts as they arrive on word-counts:", LINES.len());

    let updates: u64 = expected.values().sum();
    let reader = ex::reader(&bootstrap, "word-count-demo-reader", &["word-counts"])?;
    let mut latest: BTreeMap<String, u64> = BTreeMap::new();
    ex::read_until(
        &reader,
        Duration::from_secs(60),
        |k, v| {
            let word = String::from_utf8_lossy(k.unwrap_or_default()).into_owned();
            let n = v.and_then(|v| v.try_into().ok()).map_or(0, u64::from_be_bytes);
            println!("  {word:>10} → {n}");
            latest.insert(word, n);
        },
        |n| n as u64 >= updates,
    );
    let metrics = app.metrics();
    app.close().context("closing the application")?;
    drop(reader);
    drop(producer);
    cluster.shutdown();
    println!("\nfinal counts: {latest:?}");
    println!("processed {} records in {} commits", metrics.processed, metrics.commits);
    if latest != expected {
        bail!("the counts differ from the expected {expected:?}");
    }
    println!("all {} words counted exactly once", expected.len());
    Ok(())
}
