//! Exactly-once and at-least-once under crashes (after Kafka Streams' EosTest): the crash-test
//! application runs as two child processes of two stream threads each, with one application id
//! on a 6-partition input;
//! while a driver produces 200,000 records, each child is SIGKILLed three times at random
//! moments and restarted on its state directory. Exactly-once: the committed output equals
//! the expected per-key running counts and sums exactly, every input echoed once.
//! At-least-once: nothing is lost, and every aggregate value is one an exact run produces
//! (repeats counted, state never applied twice). Each run proves its premise: kills hit open
//! transactions, restores ran, and at-least-once restores met changelog records past the
//! committed position.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use moldau_engine::ProcessingGuarantee;
use moldau_tests::child::ChildLines;
use moldau_tests::eos_app::{App, RunOptions};
use moldau_tests::streams_util::read_topic;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::apps::{eos_record, expected_agg, produce_eos_records, start_eos_app_cluster, wait_until};

/// Input records at least: the driver produces until the kills are over.
const MIN_RECORDS: usize = 100_000;
const KEYS: usize = 100;
const KILLS_PER_CHILD: usize = 3;
/// Stream threads per process.
const THREADS: usize = 2;

/// What a child reported last (its metrics lines), per incarnation.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Reported {
    pub(crate) restored: u64,
    pub(crate) relogged: u64,
    pub(crate) recoveries: u64,
    pub(crate) rebalances: u64,
    pub(crate) commits: u64,
}

impl Reported {
    /// Adds another incarnation's report.
    pub(crate) fn add(&mut self, r: Reported) {
        self.restored += r.restored;
        self.relogged += r.relogged;
        self.recoveries += r.recoveries;
        self.rebalances += r.rebalances;
        self.commits += r.commits;
    }
}

/// A running child and what it reports.
pub(crate) struct Instance {
    child: Child,
    reported: Arc<Mutex<Reported>>,
    /// The fail points it said it aborted at (see `moldau_engine::failpoint`).
    aborted_at: Arc<Mutex<Vec<String>>>,
}

impl Instance {
    /// Waits (up to 60 s) until the child has committed three more times: it is processing
    /// now (not waiting for a rebalance to end).
    pub(crate) fn must_be_processing(&self) {
        let from = self.commits();
        wait_until("a child has committed three more times", || self.commits() >= from + 3);
    }

    /// Commits the child has reported since it started.
    pub(crate) fn commits(&self) -> u64 {
        self.reported.lock().unwrap().commits
    }

    /// Panics if the child has exited (the application failed).
    pub(crate) fn must_be_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("child status") {
            panic!("an application process exited on its own ({status})");
        }
    }

    /// SIGKILLs the child, after checking it had not exited on its own (a crash of the
    /// application, which the test must not mistake for one of its kills); returns its report.
    pub(crate) fn must_kill(mut self) -> Reported {
        if let Some(status) = self.child.try_wait().expect("child status") {
            panic!("an application process exited on its own ({status}) before it was killed");
        }
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
        *self.reported.lock().unwrap()
    }

    /// Waits (up to two minutes) for the child to abort at fail point `point`: it must die of
    /// SIGABRT after saying it reached that point (the premise of a fail-point kill); returns
    /// its report.
    pub(crate) fn must_abort_at(mut self, point: &str) -> Reported {
        use std::os::unix::process::ExitStatusExt;
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                break status;
            }
            assert!(Instant::now() < deadline, "the child never reached fail point {point}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.signal(), Some(6), "the child died of SIGABRT at {point}, not {status}");
        // Its last words may still be in the pipe.
        wait_until("the child's abort message read", || !self.aborted_at.lock().unwrap().is_empty());
        assert_eq!(*self.aborted_at.lock().unwrap(), vec![point.to_string()], "where the child aborted");
        *self.reported.lock().unwrap()
    }
}

impl Drop for Instance {
    /// A test that fails leaves no process behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the crash-test application as a child process with `fail_points` (see
/// `moldau_engine::failpoint`; "" for none) and waits until it is running.
pub(crate) fn spawn(bootstrap: &str, guarantee: &str, dir: &Path, options: &RunOptions, fail_points: &str) -> Instance {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eos-app"))
        .args([bootstrap, guarantee, dir.to_str().expect("utf-8 path")])
        .args(options.to_args())
        .env("RUST_LOG", "warn")
        .env(moldau_engine::failpoint::ENV, fail_points)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("eos-app starts");
    let aborted_at = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().expect("stderr");
    let into = aborted_at.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(std::result::Result::ok) {
            eprintln!("[child] {line}");
            if let Some(point) = line.strip_prefix("fail point ").and_then(|l| l.strip_suffix(": aborting the process"))
            {
                into.lock().unwrap().push(point.to_string());
            }
        }
    });
    let lines = ChildLines::new(child.stdout.take().expect("stdout"));
    if lines.wait_for(Duration::from_secs(60), |l| (l.trim() == "started").then_some(())).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("eos-app did not start within 60 s (or exited first)");
    }
    // Keep draining its output (so it never blocks on a full pipe), and keep its last metrics.
    let reported = Arc::new(Mutex::new(Reported::default()));
    let into = reported.clone();
    let lines = lines.into_receiver();
    std::thread::spawn(move || {
        for line in lines {
            let Some(rest) = line.strip_prefix("metrics ") else {
                // The child's log, for a failure's diagnosis.
                eprintln!("[child] {line}");
                continue;
            };
            let field = |name: &str| {
                rest.split(' ').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse::<u64>().ok())
            };
            let mut r = into.lock().unwrap();
            r.restored = field("restored").unwrap_or(r.restored);
            r.relogged = field("relogged").unwrap_or(r.relogged);
            r.recoveries = field("recoveries").unwrap_or(r.recoveries);
            r.rebalances = field("rebalances").unwrap_or(r.rebalances);
            r.commits = field("commits").unwrap_or(r.commits);
        }
    });
    Instance { child, reported, aborted_at }
}

/// The value of record `i` and its key.
pub(crate) fn record(i: usize) -> (String, u64) {
    eos_record(i, KEYS)
}

struct Outcome {
    /// Input records produced.
    records: usize,
    echo: Vec<(String, u64)>,
    /// Records on `echo` read uncommitted: more than read committed when kills hit open
    /// transactions (their records are there, aborted).
    echo_uncommitted: usize,
    agg: BTreeMap<String, Vec<String>>,
    /// What each killed or final incarnation reported, summed.
    reported: Reported,
}

/// Produces chunks of `chunk` input records (`produce(range)`) every 100 ms (a steady flow: most
/// of the time a transaction is open) until `killed` is
/// set and at least `min` went out, starting after `delay`; returns how many went out.
pub(crate) fn drive(
    killed: Arc<AtomicBool>,
    min: usize,
    delay: Duration,
    chunk: usize,
    produce: impl Fn(std::ops::Range<usize>) + Send + 'static,
) -> JoinHandle<usize> {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let mut n = 0;
        while n < min || !killed.load(Ordering::Relaxed) {
            produce(n..n + chunk);
            n += chunk;
            std::thread::sleep(Duration::from_millis(100));
        }
        n
    })
}

/// The child processes' name for `guarantee`.
pub(crate) fn guarantee_arg(guarantee: ProcessingGuarantee) -> &'static str {
    match guarantee {
        ProcessingGuarantee::AtLeastOnce => "at_least_once",
        ProcessingGuarantee::ExactlyOnceV2 => "exactly_once_v2",
    }
}

/// How [`run_with_kills`] kills.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kills {
    /// Seeds the order of the kills and their moments.
    pub(crate) seed: u64,
    /// Each kill comes at a random moment up to this long after the child was seen processing.
    pub(crate) max_delay: Duration,
    /// Whether the first restart is on an empty state directory (a full restore).
    pub(crate) wipe_first: bool,
}

impl Kills {
    /// Kills up to 1.5 s after processing was seen, seeded by `seed`, state kept.
    pub(crate) fn seeded(seed: u64) -> Self {
        Kills { seed, max_delay: Duration::from_millis(1_500), wipe_first: false }
    }
}

/// Runs two children of the crash-test application with `options` (state directories under
/// `root`) while a driver produces, SIGKILLing each `KILLS_PER_CHILD` times as `kills` says,
/// and restarting it on its state directory; then sets `killed` (a driver that produces until
/// then keeps every child processing through the kills). Returns the children, still running,
/// and what the killed incarnations reported.
pub(crate) fn run_with_kills(
    bootstrap: &str,
    guarantee: ProcessingGuarantee,
    options: &RunOptions,
    kills: Kills,
    root: &Path,
    killed: &AtomicBool,
) -> (Vec<Instance>, Reported) {
    let g = guarantee_arg(guarantee);
    let dirs: Vec<PathBuf> = (0..2).map(|i| root.join(format!("child-{i}"))).collect();
    let mut children: Vec<Option<Instance>> = dirs.iter().map(|d| Some(spawn(bootstrap, g, d, options, ""))).collect();
    let mut reported = Reported::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(kills.seed);
    let mut order: Vec<usize> = (0..2).flat_map(|c| std::iter::repeat_n(c, KILLS_PER_CHILD)).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    for (n, c) in order.into_iter().enumerate() {
        // Kill a child that is processing (it committed since it started), at a random moment.
        children[c].as_ref().expect("running").must_be_processing();
        std::thread::sleep(Duration::from_millis(rng.random_range(0..=kills.max_delay.as_millis() as u64)));
        let r = children[c].take().expect("running").must_kill();
        eprintln!("killed child {c} after {} commits", r.commits);
        reported.add(r);
        if kills.wipe_first && n == 0 {
            std::fs::remove_dir_all(&dirs[c]).expect("state directory deleted");
        }
        children[c] = Some(spawn(bootstrap, g, &dirs[c], options, ""));
    }
    killed.store(true, Ordering::Relaxed);
    (children.into_iter().map(|c| c.expect("running")).collect(), reported)
}

fn run(guarantee: ProcessingGuarantee, seed: u64, options: &RunOptions) -> Outcome {
    let (cluster, bootstrap) = start_eos_app_cluster();
    let root = tempfile::tempdir().unwrap();
    // The driver: produce in chunks in the background, through the kills.
    let killed = Arc::new(AtomicBool::new(false));
    let driver = {
        let bootstrap = bootstrap.clone();
        drive(killed.clone(), MIN_RECORDS, Duration::ZERO, 1_000, move |range| {
            produce_eos_records(&bootstrap, range, KEYS, |i| Some(1_000_000 + i as i64))
        })
    };
    let (children, mut reported) =
        run_with_kills(&bootstrap, guarantee, options, Kills::seeded(seed), root.path(), &killed);
    let records = driver.join().expect("the driver finished");

    let settle = Duration::from_secs(3);
    let echo = read_topic(&bootstrap, "echo", records, Duration::from_secs(300), settle);
    let agg_records = read_topic(&bootstrap, "agg", records, Duration::from_secs(300), settle);
    let echo_uncommitted = read_uncommitted_count(&bootstrap, "echo");
    for c in children {
        reported.add(c.must_kill());
    }
    cluster.shutdown();
    let echo = echo
        .iter()
        .map(|r| (r.key_str(), u64::from_be_bytes(r.value.as_deref().unwrap_or_default().try_into().expect("u64"))))
        .collect();
    let mut agg: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in agg_records {
        agg.entry(r.key_str()).or_default().push(r.value_str());
    }
    Outcome { records, echo, echo_uncommitted, agg, reported }
}

/// The records of every partition of `topic` up to its end, read uncommitted.
pub(crate) fn read_uncommitted_count(bootstrap: &str, topic: &str) -> usize {
    let consumer: BaseConsumer = moldau_tests::client_config(bootstrap)
        .set("group.id", "moldau-test-uncommitted")
        .set("isolation.level", "read_uncommitted")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..6 {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let (mut n, mut ended) = (0, 0);
    let start = Instant::now();
    while ended < 6 && start.elapsed() < Duration::from_secs(120) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => n += 1,
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => ended += 1,
            _ => {}
        }
    }
    assert_eq!(ended, 6, "read {topic} to its end");
    n
}

/// Checks the echo and aggregate outputs are exactly those of inputs `0..records` over
/// `keys` keys: every input echoed once, every key's running aggregate in order.
pub(crate) fn assert_exact(echo: &[(String, u64)], agg: &BTreeMap<String, Vec<String>>, records: usize, keys: usize) {
    let mut echo = echo.to_vec();
    echo.sort_by_key(|(_, v)| *v);
    let expected: Vec<(String, u64)> = (0..records).map(|i| eos_record(i, keys)).collect();
    assert_eq!(echo.len(), records, "every input echoed exactly once");
    assert!(echo == expected, "the echo topic is not the input exactly once");
    let want = expected_agg(records, keys);
    for (k, updates) in &want {
        let got = agg.get(k).map_or(&[][..], Vec::as_slice);
        if got != updates.as_slice() {
            let first = got.iter().zip(updates).position(|(a, b)| a != b).unwrap_or(got.len().min(updates.len()));
            panic!(
                "key {k}: {} updates, {} expected; first difference at update {first}: got {:?}, expected {:?}",
                got.len(),
                updates.len(),
                got.get(first),
                updates.get(first)
            );
        }
    }
    assert_eq!(agg.len(), keys);
}

#[test]
fn should_produce_exactly_once_output_when_instances_are_killed() {
    let started = Instant::now();
    // Through a repartition topic; transactions of half a second, so that a kill at a random
    // moment finds one open.
    let options =
        RunOptions { app: App::Agg, threads: THREADS, repartition: true, commit_interval: Duration::from_millis(500) };
    let out = run(ProcessingGuarantee::ExactlyOnceV2, 7, &options);
    eprintln!("exactly-once crash run took {:?}", started.elapsed());
    assert_exact(&out.echo, &out.agg, out.records, KEYS);
    // The premise: the kills hit open transactions (aborted records sit in the topic), the
    // restarted instances restored state, and partitions moved.
    assert!(
        out.echo_uncommitted > out.records,
        "no kill hit an open transaction: {} records uncommitted",
        out.echo_uncommitted
    );
    assert!(out.reported.restored > 0, "no restore ran: {:?}", out.reported);
    assert!(out.reported.rebalances > 0, "no rebalance: {:?}", out.reported);
    eprintln!("exactly-once: {} aborted echo records, {:?}", out.echo_uncommitted - out.records, out.reported);
}

#[test]
fn should_lose_nothing_at_least_once_when_instances_are_killed() {
    // The aggregate reads the input directly: records an at-least-once upstream repeats in a
    // repartition topic are input no downstream can tell from new records.
    let options =
        RunOptions { app: App::Agg, threads: THREADS, repartition: false, commit_interval: Duration::from_millis(100) };
    let out = run(ProcessingGuarantee::AtLeastOnce, 11, &options);
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for (k, v) in &out.echo {
        assert_eq!(*k, record(*v as usize).0, "echo key of {v}");
        *seen.entry(*v).or_default() += 1;
    }
    let missing: Vec<u64> = (0..out.records as u64).filter(|i| !seen.contains_key(i)).take(10).collect();
    assert!(missing.is_empty(), "lost inputs (first 10): {missing:?}");
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!("at-least-once: {} echoed, {duplicates} duplicates", out.echo.len());
    // Re-processing repeats output, but state is never applied twice: every aggregate value is
    // one an exact run produces (a true prefix of the key's input), and the last is the full
    // count (hole 10 of the exactly-once issue: a restore past the committed input offsets made
    // values like `6892:15` where the 15th value of the key is `6349:15`).
    let mut repeats = 0;
    for (k, updates) in expected_agg(out.records, KEYS) {
        let got = out.agg.get(&k).expect("an aggregate per key");
        let exact: std::collections::BTreeSet<&String> = updates.iter().collect();
        if let Some(bad) = got.iter().find(|v| !exact.contains(v)) {
            panic!("key {k}: {bad} is no prefix value of the input (state applied twice)");
        }
        assert_eq!(got.last(), updates.last(), "key {k}: the last value is the full aggregate");
        repeats += got.len().saturating_sub(updates.len());
    }
    eprintln!("at-least-once: {repeats} repeated aggregate updates, {:?}", out.reported);
    assert!(out.reported.restored > 0, "no restore ran: {:?}", out.reported);
    assert!(
        out.reported.relogged > 0,
        "no restore met changelog records past the committed position: {:?}",
        out.reported
    );
}
