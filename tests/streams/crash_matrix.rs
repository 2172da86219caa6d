//! The rest of the exactly-once crash matrix: the crash-test application's window and join
//! variants (`moldau_tests::eos_app::App`) as two child processes of two stream threads, each
//! SIGKILLed three times at random moments and restarted on its state directory while a driver
//! produces, as in `crash.rs`.
//!
//! - Windows: out-of-order records (within grace) and late ones (past grace) across the kills;
//!   the final tumbling-window counts (emit on close) and the suppressed session counts must be
//!   exactly those of a run of the same topology over the same input without kills: every
//!   final result once, none missing, late records dropped exactly as there.
//! - Join: every order enriched exactly once with its customer; the first restart is on an
//!   empty state directory, so the customers table is restored from its changelog.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moldau_engine::{KafkaStreams, ProcessingGuarantee};
use moldau_tests::eos_app::{windows_topology, App, RunOptions};
use moldau_tests::streams_util::{produce_strings, read_topic, streams_config};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::apps::{produce_eos_records, start_cluster_with};
use crate::crash::{drive, read_uncommitted_count, run_with_kills, Kills};

/// Event time of the first record: a multiple of the 1 s window.
const BASE: i64 = 1_700_000_000_000;

/// Whether input record `i` of the windows run is late: 5 s behind its neighbours, past every
/// window's grace whichever keys share its partition (the key's own record ten before it is
/// at most 50 ms older, and no event-time jump lies between them).
fn is_late(i: usize) -> bool {
    i >= 1_000 && i % 97 == 50 && i % JUMP_EVERY >= 20
}

/// Input records of the windows run between two event-time jumps.
const JUMP_EVERY: usize = 1_000;

/// Event time of input record `i` of the windows run: 5 ms apart, a 10 s jump every 1,000
/// records (sessions end there), every 7th record 300 ms out of order (within grace), and the
/// late ones 5 s behind.
fn event_time(i: usize) -> i64 {
    let t = BASE + i as i64 * 5 + (i / JUMP_EVERY) as i64 * 10_000;
    if is_late(i) {
        t - 5_000
    } else if i % 7 == 3 {
        t - 300
    } else {
        t
    }
}

/// `topic`'s records as sorted `(key, value)` strings, read until `n` arrived and then for 3 s.
fn sorted(bootstrap: &str, topic: &str, n: usize) -> Vec<(String, String)> {
    let read = read_topic(bootstrap, topic, n, Duration::from_secs(300), Duration::from_secs(3));
    let mut out: Vec<(String, String)> = read.iter().map(|r| (r.key_str(), r.value_str())).collect();
    out.sort();
    // A value twice: where each copy sits (the same offset twice would be the reader's fault,
    // two offsets the application's).
    for d in duplicates(&out) {
        let copies: Vec<_> =
            read.iter().filter(|r| (r.key_str(), r.value_str()) == *d).map(|r| (r.partition, r.offset)).collect();
        eprintln!("{topic}: {d:?} at (partition, offset) {copies:?}");
    }
    out
}

/// A record as key and value strings.
type Kv = (String, String);

/// Up to five records only in `a` and up to five only in `b`.
fn diff(a: &[Kv], b: &[Kv]) -> (Vec<Kv>, Vec<Kv>) {
    let (sa, sb): (BTreeSet<_>, BTreeSet<_>) = (a.iter().cloned().collect(), b.iter().cloned().collect());
    (sa.difference(&sb).take(5).cloned().collect(), sb.difference(&sa).take(5).cloned().collect())
}

/// The records `v` (sorted) holds more than once.
fn duplicates(v: &[Kv]) -> Vec<&Kv> {
    v.windows(2).filter(|w| w[0] == w[1]).map(|w| &w[0]).collect()
}

/// Every final tumbling window and session exactly once across kills. This test found the
/// restore's out-of-order bug (records fetched before a changelog partition's queue was split
/// off were applied after newer ones), seen as a session's prefix emitted as final besides the
/// whole session, or a final window emitted twice, in about one run in five.
#[test]
fn should_emit_every_final_window_and_session_once_when_instances_are_killed() {
    const KEYS: usize = 10;
    let (cluster, bootstrap) = start_cluster_with(3, &["data", "wins", "sessions", "ref-wins", "ref-sessions"], 6);
    let root = tempfile::tempdir().unwrap();
    let killed = Arc::new(AtomicBool::new(false));
    let driver = {
        let bootstrap = bootstrap.clone();
        drive(killed.clone(), 10_000, Duration::ZERO, 200, move |range| {
            produce_eos_records(&bootstrap, range, KEYS, |i| Some(event_time(i)))
        })
    };
    let options = RunOptions { threads: 2, ..RunOptions::new(App::Windows) };
    let (children, mut reported) = run_with_kills(
        &bootstrap,
        ProcessingGuarantee::ExactlyOnceV2,
        &options,
        Kills::seeded(23),
        root.path(),
        &killed,
    );
    let n = driver.join().expect("the driver finished");
    // One record per key a minute later: every partition's stream time passes every window and
    // session of the input, so all of them close and are emitted.
    produce_eos_records(&bootstrap, n..n + KEYS, KEYS, |_| Some(event_time(n) + 60_000));

    // The same topology over the same input, without kills.
    let dir = tempfile::tempdir().unwrap();
    let config = streams_config("crash-reference", &bootstrap, dir.path(), ProcessingGuarantee::ExactlyOnceV2);
    let mut reference = KafkaStreams::new(windows_topology("ref-"), config).unwrap();
    reference.start().unwrap();
    // A debug build processes this topology at a few thousand records a second.
    let t = std::time::Instant::now();
    while reference.metrics().processed < (n + KEYS) as u64 {
        assert!(t.elapsed() < Duration::from_secs(240), "the reference run is stuck: {:?}", reference.metrics());
        std::thread::sleep(Duration::from_millis(100));
    }
    reference.close().unwrap();
    let ref_wins = sorted(&bootstrap, "ref-wins", 1);
    let ref_sessions = sorted(&bootstrap, "ref-sessions", 1);

    let wins = sorted(&bootstrap, "wins", ref_wins.len());
    let sessions = sorted(&bootstrap, "sessions", ref_sessions.len());
    let uncommitted = read_uncommitted_count(&bootstrap, "data");
    for c in children {
        reported.add(c.must_kill());
    }
    cluster.shutdown();

    // The reference's premise: every accepted record is in exactly one final window, and the
    // late ones are not.
    let late = (0..n).filter(|i| is_late(*i)).count();
    let counted: u64 = ref_wins.iter().map(|(_, n)| n.parse::<u64>().expect("a count")).sum();
    assert_eq!(counted, (n - late) as u64, "the reference counted every record but the {late} late ones once");
    assert!(duplicates(&ref_wins).is_empty() && duplicates(&ref_sessions).is_empty());
    assert!(
        ref_sessions.len() >= KEYS * (n / JUMP_EVERY),
        "sessions end at each event-time jump: {}",
        ref_sessions.len()
    );

    assert!(duplicates(&wins).is_empty(), "final window results emitted twice: {:?}", duplicates(&wins));
    assert!(duplicates(&sessions).is_empty(), "final session results emitted twice: {:?}", duplicates(&sessions));
    assert!(wins == ref_wins, "final windows (extra, missing): {:?}", diff(&wins, &ref_wins));
    assert!(sessions == ref_sessions, "final sessions (extra, missing): {:?}", diff(&sessions, &ref_sessions));
    // The premise of the kills: restores ran and partitions moved.
    assert!(reported.restored > 0, "no restore ran: {reported:?}");
    assert!(reported.rebalances > 0, "no rebalance: {reported:?}");
    eprintln!(
        "windows: {} final windows, {} final sessions, {late} late records dropped, {uncommitted} input records, {reported:?}",
        wins.len(),
        sessions.len()
    );
}

#[test]
fn should_enrich_every_order_once_when_instances_are_killed() {
    const CUSTOMERS: usize = 50;
    let (cluster, bootstrap) = start_cluster_with(3, &["customers", "orders", "enriched"], 6);
    let customers: Vec<(String, String)> = (0..CUSTOMERS).map(|c| (format!("c{c}"), format!("name-{c}"))).collect();
    let rows: Vec<(&str, &str, i64)> = customers.iter().map(|(k, v)| (k.as_str(), v.as_str(), BASE)).collect();
    produce_strings(&bootstrap, "customers", &rows);
    let root = tempfile::tempdir().unwrap();
    let killed = Arc::new(AtomicBool::new(false));
    // The orders start once the application has read the customers (which a restarted task
    // restores before it processes anything), so every order finds its customer; and they
    // come in a steady flow from one producer, a few every 10 ms, so that a transaction is
    // open nearly all the time.
    let driver = {
        let (bootstrap, killed) = (bootstrap.clone(), killed.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(5));
            let producer: BaseProducer = moldau_tests::client_config(&bootstrap)
                .set("partitioner", "murmur2_random")
                .set("enable.idempotence", "true")
                .set("linger.ms", "2")
                .create()
                .expect("producer");
            let mut n = 0;
            while n < 10_000 || !killed.load(Ordering::Relaxed) {
                for i in n..n + 20 {
                    let (key, value) = (format!("c{}", i % CUSTOMERS), (i as u64).to_be_bytes());
                    let record =
                        BaseRecord::to("orders").key(&key).payload(&value[..]).timestamp(BASE + 1_000 + i as i64);
                    producer.send(record).map_err(|(e, _)| e).expect("queued");
                }
                n += 20;
                producer.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_millis(10));
            }
            producer.flush(Duration::from_secs(60)).expect("every order acknowledged");
            n
        })
    };
    let options = RunOptions { threads: 2, ..RunOptions::new(App::Join) };
    // Kills within a commit interval of seeing the child commit: a join rebalances eagerly, and
    // every restart stalls both processes until the dead member's session ends.
    let kills = Kills { seed: 31, max_delay: Duration::from_millis(100), wipe_first: true };
    let (children, mut reported) =
        run_with_kills(&bootstrap, ProcessingGuarantee::ExactlyOnceV2, &options, kills, root.path(), &killed);
    let orders = driver.join().expect("the driver finished");
    let enriched = read_topic(&bootstrap, "enriched", orders, Duration::from_secs(300), Duration::from_secs(3));
    let uncommitted = read_uncommitted_count(&bootstrap, "enriched");
    for c in children {
        reported.add(c.must_kill());
    }
    cluster.shutdown();

    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &enriched {
        let value = r.value_str();
        let (order, name) = value.split_once(':').expect("order:name");
        let order: u64 = order.parse().expect("an order number");
        let customer = order as usize % CUSTOMERS;
        assert_eq!(r.key_str(), format!("c{customer}"), "the key of order {order}");
        assert_eq!(name, format!("name-{customer}"), "order {order} joined with its customer");
        *seen.entry(order).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).map(|(o, _)| *o).take(5).collect();
    assert!(twice.is_empty(), "orders enriched twice: {twice:?}");
    assert_eq!(seen.len(), orders, "every order enriched");
    // The premise: kills hit open transactions, restores ran, partitions moved.
    eprintln!("join: {orders} orders, {uncommitted} enriched records uncommitted, {reported:?}");
    assert!(uncommitted > orders, "no kill hit an open transaction: {uncommitted} records uncommitted");
    assert!(reported.restored > 0, "no restore ran: {reported:?}");
    assert!(reported.rebalances > 0, "no rebalance: {reported:?}");
}
