//! Exactly-once and at-least-once under crashes (after Kafka Streams' EosTest): the crash-test
//! application runs as two child processes with one application id on a 6-partition input;
//! while a driver produces 200,000 records, each child is SIGKILLed three times at random
//! moments and restarted on its state directory. Exactly-once: the committed output equals
//! the expected per-key running counts and sums exactly, every input echoed once.
//! At-least-once: nothing is lost (duplicates are counted).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use moldau_engine::ProcessingGuarantee;
use moldau_tests::streams_util::{produce, read_topic, Produce};
use rand::{Rng, SeedableRng};

use crate::apps::{eos_record, expected_agg, start_eos_app_cluster};

const RECORDS: usize = 200_000;
const KEYS: usize = 100;
const KILLS_PER_CHILD: usize = 3;

fn spawn(bootstrap: &str, guarantee: &str, dir: &Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eos-app"))
        .args([bootstrap, guarantee, dir.to_str().expect("utf-8 path")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("eos-app starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.trim() == "started" => break,
            Some(Ok(_)) => {}
            _ => panic!("eos-app exited before it started"),
        }
    }
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

/// The value of record `i` and its key.
fn record(i: usize) -> (String, u64) {
    eos_record(i, KEYS)
}

struct Outcome {
    echo: Vec<(String, u64)>,
    agg: BTreeMap<String, Vec<String>>,
}

fn run(guarantee: ProcessingGuarantee, seed: u64) -> Outcome {
    let (cluster, bootstrap) = start_eos_app_cluster();
    let g = match guarantee {
        ProcessingGuarantee::AtLeastOnce => "at_least_once",
        ProcessingGuarantee::ExactlyOnceV2 => "exactly_once_v2",
    };
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..2).map(|i| root.path().join(format!("child-{i}"))).collect();
    let mut children: Vec<Child> = dirs.iter().map(|d| spawn(&bootstrap, g, d)).collect();

    // The driver: produce in chunks in the background.
    let producer = {
        let bootstrap = bootstrap.clone();
        std::thread::spawn(move || {
            for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(2_000) {
                let owned: Vec<(String, [u8; 8])> =
                    chunk.iter().map(|&i| record(i)).map(|(k, v)| (k, v.to_be_bytes())).collect();
                let rs: Vec<Produce<'_>> = owned
                    .iter()
                    .zip(chunk)
                    .map(|((k, v), &i)| (Some(k.as_bytes()), Some(&v[..]), Some(1_000_000 + i as i64)))
                    .collect();
                produce(&bootstrap, "data", &rs);
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut kills: Vec<usize> = (0..2).flat_map(|c| std::iter::repeat_n(c, KILLS_PER_CHILD)).collect();
    for i in (1..kills.len()).rev() {
        kills.swap(i, rng.random_range(0..=i));
    }
    for c in kills {
        std::thread::sleep(Duration::from_millis(rng.random_range(1_000..4_000)));
        children[c].kill().expect("SIGKILL");
        children[c].wait().expect("reaped");
        children[c] = spawn(&bootstrap, g, &dirs[c]);
    }
    producer.join().expect("the driver finished");

    let settle = Duration::from_secs(3);
    let echo = read_topic(&bootstrap, "echo", RECORDS, Duration::from_secs(300), settle);
    let agg_records = read_topic(&bootstrap, "agg", RECORDS, Duration::from_secs(300), settle);
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
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
    Outcome { echo, agg }
}

#[test]
fn should_produce_exactly_once_output_when_instances_are_killed() {
    let started = Instant::now();
    let out = run(ProcessingGuarantee::ExactlyOnceV2, 7);
    eprintln!("exactly-once crash run took {:?}", started.elapsed());
    let mut echo = out.echo.clone();
    echo.sort_by_key(|(_, v)| *v);
    let expected: Vec<(String, u64)> = (0..RECORDS).map(record).collect();
    assert_eq!(echo.len(), RECORDS, "every input echoed exactly once");
    assert!(echo == expected, "the echo topic is not the input exactly once");
    let want = expected_agg(RECORDS, KEYS);
    for (k, updates) in &want {
        let got = out.agg.get(k).map_or(&[][..], Vec::as_slice);
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
    assert_eq!(out.agg.len(), KEYS);
}

#[test]
fn should_lose_nothing_at_least_once_when_instances_are_killed() {
    let out = run(ProcessingGuarantee::AtLeastOnce, 11);
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for (k, v) in &out.echo {
        assert_eq!(*k, record(*v as usize).0, "echo key of {v}");
        *seen.entry(*v).or_default() += 1;
    }
    let missing: Vec<u64> = (0..RECORDS as u64).filter(|i| !seen.contains_key(i)).take(10).collect();
    assert!(missing.is_empty(), "lost inputs (first 10): {missing:?}");
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!("at-least-once: {} echoed, {duplicates} duplicates", out.echo.len());
    // Re-processing repeats output, but state is never applied twice: every aggregate value is
    // one an exact run produces (a true prefix of the key's input), and the last is the full
    // count (hole 10 of the exactly-once issue: a restore past the committed input offsets made
    // values like `6892:15` where the 15th value of the key is `6349:15`).
    let mut repeats = 0;
    for (k, updates) in expected_agg(RECORDS, KEYS) {
        let got = out.agg.get(&k).expect("an aggregate per key");
        let exact: std::collections::BTreeSet<&String> = updates.iter().collect();
        if let Some(bad) = got.iter().find(|v| !exact.contains(v)) {
            panic!("key {k}: {bad} is no prefix value of the input (state applied twice)");
        }
        assert_eq!(got.last(), updates.last(), "key {k}: the last value is the full aggregate");
        repeats += got.len().saturating_sub(updates.len());
    }
    eprintln!("at-least-once: {repeats} repeated aggregate updates");
}
