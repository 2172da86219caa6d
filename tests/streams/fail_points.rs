//! Exactly-once under kills at named points (the exactly-once issue's crash matrix): the
//! crash-test application's processes abort themselves through `moldau_engine::failpoint`
//! between the Kafka commit and the stores' commit, after a commit kept in memory only
//! (deferred store writes not yet persisted), in the middle of a restore (after its state
//! directory was deleted), and as a third process joins and partitions move to it. Each kill
//! proves it hit its point (the process died of SIGABRT after naming the point); the output is
//! exact.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use moldau_tests::eos_app::{App, RunOptions};
use moldau_tests::streams_util::read_topic;

use crate::apps::{produce_eos_records, start_eos_app_cluster};
use crate::crash::{assert_exact, read_uncommitted_count, spawn, Instance, Reported};

const RECORDS: usize = 100_000;
const KEYS: usize = 100;
const EOS: &str = "exactly_once_v2";

#[test]
fn should_produce_exactly_once_output_when_killed_at_named_points() {
    let (cluster, bootstrap) = start_eos_app_cluster();
    // Commits every 100 ms: stores persist once a second, so most commits are in memory only.
    let options =
        RunOptions { app: App::Agg, threads: 2, repartition: true, commit_interval: Duration::from_millis(100) };
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..3).map(|i| root.path().join(format!("child-{i}"))).collect();
    let driver = {
        let bootstrap = bootstrap.clone();
        std::thread::spawn(move || {
            for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(1_000) {
                produce_eos_records(&bootstrap, chunk.iter().copied(), KEYS, |i| Some(1_000_000 + i as i64));
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };
    let mut reported = Reported::default();
    let start = |i: usize, points: &str| spawn(&bootstrap, EOS, &dirs[i], &options, points);

    // Between the Kafka commit and the stores' commit, and after a commit kept in memory.
    let first = start(0, "commit.after_kafka=abort@5");
    let second = start(1, "commit.deferred=abort@12");
    reported.add(first.must_abort_at("commit.after_kafka"));
    let first = start(0, "");
    reported.add(second.must_abort_at("commit.deferred"));
    let second = start(1, "");

    // During a restore: the first process loses its state directory and dies restoring.
    first.must_be_processing();
    second.must_be_processing();
    std::thread::sleep(Duration::from_secs(2));
    reported.add(first.must_kill());
    std::fs::remove_dir_all(&dirs[0]).expect("state directory deleted");
    reported.add(start(0, "restore.batch=abort@2").must_abort_at("restore.batch"));
    let first = start(0, "");

    // A third process joins and dies as partitions move to it; then it joins for good.
    first.must_be_processing();
    reported.add(start(2, "rebalance.assign=abort@1").must_abort_at("rebalance.assign"));
    let third = start(2, "");

    driver.join().expect("the driver finished");
    let settle = Duration::from_secs(3);
    let echo = read_topic(&bootstrap, "echo", RECORDS, Duration::from_secs(300), settle);
    let agg_records = read_topic(&bootstrap, "agg", RECORDS, Duration::from_secs(300), settle);
    let uncommitted = read_uncommitted_count(&bootstrap, "echo");
    let mut last: Vec<Instance> = vec![first, second, third];
    for i in last.drain(..) {
        reported.add(i.must_kill());
    }
    cluster.shutdown();

    let echo: Vec<(String, u64)> = echo
        .iter()
        .map(|r| (r.key_str(), u64::from_be_bytes(r.value.as_deref().unwrap_or_default().try_into().expect("u64"))))
        .collect();
    let mut agg: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in agg_records {
        agg.entry(r.key_str()).or_default().push(r.value_str());
    }
    assert_exact(&echo, &agg, RECORDS, KEYS);
    assert!(reported.restored > 0, "no restore ran: {reported:?}");
    eprintln!("fail points: {} aborted echo records, {reported:?}", uncommitted.saturating_sub(RECORDS));
}
