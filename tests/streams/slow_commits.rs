//! Exactly-once with slow commits: the brokers hold every EndTxn response (broker-sim's
//! `Cluster::delay_responses`), so each commit lasts longer than the commit interval.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moldau_engine::kafka::StreamsMetrics;
use moldau_engine::{KafkaStreams, ProcessingGuarantee, StreamsState};
use moldau_tests::streams_util::{read_topic, streams_config};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::apps::{eos_record, expected_agg, produce_eos_records, start_cluster_with, wait_until};

/// EndTxn's API key.
const END_TXN: i16 = 26;
const KEYS: usize = 20;

/// Checks the echo and aggregate topics hold exactly records `0..n`'s output.
fn assert_exact(bootstrap: &str, n: usize) {
    let echo = read_topic(bootstrap, "echo", n, Duration::from_secs(120), Duration::from_secs(2));
    let mut echoed: Vec<u64> =
        echo.iter().map(|r| u64::from_be_bytes(r.value.as_deref().unwrap().try_into().unwrap())).collect();
    echoed.sort_unstable();
    assert!(echoed == (0..n as u64).collect::<Vec<_>>(), "{} echoed, {n} expected, each once", echoed.len());
    let mut agg: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for r in read_topic(bootstrap, "agg", n, Duration::from_secs(120), Duration::from_secs(2)) {
        agg.entry(r.key_str()).or_default().push(r.value_str());
    }
    assert!(agg == expected_agg(n, KEYS), "the aggregate is not exact");
}

/// Steady input: a record every millisecond or so from one producer until `stop`, so every
/// commit has records to commit and the next one starts as soon as one ends. Returns how many
/// records it produced (all acknowledged).
fn steady_input(bootstrap: &str, stop: &Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    let (bootstrap, stop) = (bootstrap.to_string(), stop.clone());
    std::thread::spawn(move || {
        let producer: BaseProducer = moldau_tests::client_config(&bootstrap)
            .set("partitioner", "murmur2_random")
            .set("enable.idempotence", "true")
            .set("linger.ms", "1")
            .create()
            .expect("producer");
        let mut next = 0;
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..10 {
                let (k, v) = eos_record(next, KEYS);
                let v = v.to_be_bytes();
                producer.send(BaseRecord::to("data").key(k.as_bytes()).payload(&v[..])).expect("queued");
                next += 1;
            }
            producer.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_millis(10));
        }
        producer.flush(Duration::from_secs(60)).expect("every record acknowledged");
        next
    })
}

/// Hole 3: a rebalance is handled between commits even when every commit lasts longer than
/// the interval under steady input. Before the fix the thread started the next commit as soon
/// as one ended and handled rebalances only with no commit under way, so it never answered the
/// rebalance: it was evicted and its partitions taken away as lost (a roll-back), instead of
/// handed over after a commit.
#[test]
fn should_hand_partitions_over_while_every_commit_outlasts_the_interval() {
    let (cluster, bootstrap) = start_cluster_with(1, &["data", "echo", "agg"], 6);
    cluster.delay_responses(END_TXN, Duration::from_millis(300));
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let config =
        |i: usize| streams_config("slow-commits", &bootstrap, dirs[i].path(), ProcessingGuarantee::ExactlyOnceV2);
    let mut first = KafkaStreams::new(moldau_tests::eos_app::topology(), config(0)).unwrap();
    first.start().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let driver = steady_input(&bootstrap, &stop);
    wait_until("the first instance has committed 5 times", || first.metrics().commits >= 5);
    let mut second = KafkaStreams::new(moldau_tests::eos_app::topology(), config(1)).unwrap();
    second.start().unwrap();
    let joined = Instant::now();
    while second.metrics().tasks.values().map(Vec::len).sum::<usize>() == 0 {
        assert!(
            joined.elapsed() < Duration::from_secs(60),
            "the second instance got no partitions in 60 s: {:?}",
            first.metrics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("partitions handed over after {:?}", joined.elapsed());
    // Handed over by a cooperative revocation (commit, then give up), not taken away from an
    // evicted member whose assignment was lost. (A commit under way when the join completes
    // carries the old generation and is refused, a roll-back as in Kafka Streams; that is not
    // what this checks.)
    let m = first.metrics();
    assert_eq!(m.assignments_lost, 0, "the first instance lost its assignment instead of handing it over: {m:?}");
    assert!(m.recoveries <= 1, "at most the one commit refused for its generation: {m:?}");
    stop.store(true, Ordering::Relaxed);
    let produced = driver.join().unwrap();
    assert_exact(&bootstrap, produced);
    assert_eq!(first.state(), StreamsState::Running, "{:?}", first.errors());
    assert_eq!(second.state(), StreamsState::Running, "{:?}", second.errors());
    first.close().unwrap();
    second.close().unwrap();
    cluster.shutdown();
}

/// Hole 8: what a thread holds while a commit is under way is bounded. Each commit takes 2 s
/// and 100,000 records wait: the thread processes on while a commit runs until it holds
/// `max.held.records` records' output, then stops polling and processing until the commit
/// ends (`commit_stalls`), and the output is still exact. The bound is 5,000 here, not the
/// default 50,000: a debug build on a loaded 2-core machine processed 15,000–20,000 records
/// per 2-s commit, never reaching 50,000, and the test could not show the bound at work.
#[test]
fn should_bound_what_it_holds_while_a_slow_commit_runs() {
    // Each commit takes 2 s and covers about the bound's worth of records of each
    // sub-topology: the test makes about 2 × RECORDS / BOUND commits.
    const RECORDS: usize = 100_000;
    let (cluster, bootstrap) = start_cluster_with(1, &["data", "echo", "agg"], 2);
    produce_eos_records(&bootstrap, 0..RECORDS, KEYS, |_| None);
    cluster.delay_responses(END_TXN, Duration::from_secs(2));
    let dir = tempfile::tempdir().unwrap();
    const BOUND: u64 = 5_000;
    let mut config = streams_config("held", &bootstrap, dir.path(), ProcessingGuarantee::ExactlyOnceV2);
    config.max_held_records = BOUND;
    let mut app = KafkaStreams::new(moldau_tests::eos_app::topology(), config).unwrap();
    app.start().unwrap();
    assert_exact(&bootstrap, RECORDS);
    let m = app.metrics();
    eprintln!("{m:?}");
    app.close().unwrap();
    assert!(m.commit_stalls > 0, "the thread never waited for a commit: {m:?}");
    // Each wait comes after at most the bound plus one pass over the polled records.
    assert!(m.processed_while_committing <= (m.commits + 1) * (BOUND + 10_000), "{m:?}");
    cluster.shutdown();
}

/// An exactly-once run of the crash-test application on a fresh one-broker cluster with
/// 2-partition topics, under steady input.
struct SteadyRun {
    cluster: moldau_broker_sim::Cluster,
    bootstrap: String,
    _dir: tempfile::TempDir,
    app: KafkaStreams,
    stop: Arc<AtomicBool>,
    driver: std::thread::JoinHandle<usize>,
}

impl SteadyRun {
    /// Starts application `id` (every EndTxn answered `delay` late from the start, if given)
    /// and returns after its third commit.
    fn start(id: &str, delay: Option<Duration>) -> SteadyRun {
        let (cluster, bootstrap) = start_cluster_with(1, &["data", "echo", "agg"], 2);
        if let Some(delay) = delay {
            cluster.delay_responses(END_TXN, delay);
        }
        let dir = tempfile::tempdir().unwrap();
        let config = streams_config(id, &bootstrap, dir.path(), ProcessingGuarantee::ExactlyOnceV2);
        let stop = Arc::new(AtomicBool::new(false));
        let driver = steady_input(&bootstrap, &stop);
        let mut app = KafkaStreams::new(moldau_tests::eos_app::topology(), config).unwrap();
        app.start().unwrap();
        wait_until("the application has committed 3 times", || app.metrics().commits >= 3);
        SteadyRun { cluster, bootstrap, _dir: dir, app, stop, driver }
    }

    /// Stops the input, checks the output is exactly the input's and the application still
    /// runs, and closes it; returns its metrics from before the close.
    fn finish(mut self) -> StreamsMetrics {
        self.stop.store(true, Ordering::Relaxed);
        let produced = self.driver.join().unwrap();
        assert_exact(&self.bootstrap, produced);
        let metrics = self.app.metrics();
        assert_eq!(self.app.state(), StreamsState::Running, "{:?}", self.app.errors());
        self.app.close().unwrap();
        self.cluster.shutdown();
        metrics
    }
}

/// Restored tasks start running although every commit outlasts the interval. A task whose
/// stores are restored starts only with no commit under way (a commit covers the tasks that
/// were running when it was sealed); before the fix the next commit started in the same turn
/// of the loop as the last one ended, so under steady input there was never such a moment and
/// the aggregate's tasks (behind the repartition topic) stayed restoring as long as input came.
#[test]
fn should_start_restored_tasks_while_every_commit_outlasts_the_interval() {
    let run = SteadyRun::start("slow-restored", Some(Duration::from_millis(300)));
    // The premise: commits come back to back (each waits 300 ms on EndTxn, the interval is
    // 100 ms) while input flows.
    let started = Instant::now();
    loop {
        let m = run.app.metrics();
        let running: usize = m.tasks.values().map(Vec::len).sum();
        let restoring: usize = m.restoring.values().map(Vec::len).sum();
        if running == 4 && restoring == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "tasks still restoring after {} commits under steady input: {m:?}",
            m.commits
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("every task running {:?} after the third commit", started.elapsed());
    let _ = run.finish();
}

/// A commit whose EndTxn the broker holds for longer than the producer's commit call waits
/// (its outcome unknown) does not set the thread spinning. Before the fix, once the call timed
/// out its abort conflicted with the commit still running in librdkafka, so every roll-back
/// after it failed to begin a transaction on the same producer: hundreds of roll-backs a
/// minute until the broker answered. Now the producer whose abort failed is replaced.
#[test]
fn should_go_on_after_a_commit_outlasts_the_producers_timeout() {
    let run = SteadyRun::start("stuck-commit", None);
    let (cluster, app) = (&run.cluster, &run.app);
    // Longer than the broker's transaction timeout (10 s) and librdkafka's request timeout:
    // no EndTxn is answered in time while this holds.
    cluster.delay_responses(END_TXN, Duration::from_secs(15));
    let start = app.metrics();
    std::thread::sleep(Duration::from_secs(25));
    let mid = app.metrics();
    // The premise: commits are stuck (one may have been answered before the delay applied).
    assert!(mid.commits <= start.commits + 1, "commits went on: {start:?} {mid:?}");
    // Past the producer's 30 s commit call.
    std::thread::sleep(Duration::from_secs(15));
    let slow = app.metrics();
    assert!(slow.recoveries <= start.recoveries + 2, "the thread spins rolling back: {slow:?}");
    cluster.delay_responses(END_TXN, Duration::ZERO);
    let resumed = std::time::Instant::now();
    while app.metrics().commits < slow.commits + 3 {
        assert!(
            resumed.elapsed() < Duration::from_secs(90),
            "no commits since EndTxn is answered: {:?}",
            app.metrics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let end = run.finish();
    eprintln!("{start:?}\n{mid:?}\n{slow:?}\n{end:?}");
    assert!(end.recoveries <= start.recoveries + 3, "{end:?}");
}
