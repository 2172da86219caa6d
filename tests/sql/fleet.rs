//! A fleet of two SQL servers (child processes of one service id) running a windowed CTAS
//! exactly-once while a driver produces: each server is SIGKILLed three times at random
//! moments while it processes and restarted on its state directory; then one is killed for
//! good and the other takes over every task. The committed output is exact: per key and
//! window, the running count goes 1, 2, … with no repeat and no gap, and ends at the exact
//! count and sum.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moldau_sql::client::Client;
use moldau_tests::child::ChildLines;
use moldau_tests::streams_util::{produce, read_topic};
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::persistent::start;

const KEYS: usize = 20;
/// Input records at least: the driver produces until the kills are over.
const MIN_RECORDS: usize = 10_000;
const KILLS_PER_SERVER: usize = 3;
/// Record time of record `i`: 100 records per second, so 1,000 per 10-second window.
const fn time_of(i: usize) -> i64 {
    6_000_000 + i as i64 * 10
}

/// A server process.
struct ServerProc {
    child: Child,
    client: Client,
}

impl ServerProc {
    fn spawn(bootstrap: &str, dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sql-server"))
            .args([bootstrap, &dir.display().to_string(), "fleet"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the server starts");
        let lines = ChildLines::new(child.stdout.take().expect("stdout"));
        let addr = lines
            .wait_for(Duration::from_secs(120), |l| l.strip_prefix("listening ").map(str::to_string))
            .expect("the server listens within 120 s");
        ServerProc { child, client: Client::new(&addr).unwrap() }
    }

    /// Records this incarnation processed and the tasks it runs, from DESCRIBE EXTENDED.
    fn progress(&self) -> (u64, usize) {
        let (status, v) = self.client.statements("DESCRIBE per_window EXTENDED;", &json!({})).unwrap();
        assert_eq!(status, 200, "{v}");
        let text = v[0]["text"].as_str().unwrap_or_default().to_string();
        let processed = text
            .split(" records processed")
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let tasks = text
            .split("tasks here [")
            .nth(1)
            .and_then(|s| s.split(']').next())
            .map_or(0, |t| t.split(", ").filter(|t| !t.is_empty()).count());
        (processed, tasks)
    }

    /// Waits (up to 120 s) until the server runs tasks and processes records.
    fn must_be_processing(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let (mut before, _) = self.progress();
        loop {
            assert!(self.child.try_wait().unwrap().is_none(), "a server exited on its own");
            std::thread::sleep(Duration::from_millis(200));
            let (now, tasks) = self.progress();
            if tasks > 0 && now > before {
                return;
            }
            before = now;
            assert!(Instant::now() < deadline, "the server never processed with tasks of its own");
        }
    }

    fn must_kill(mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "a server exited on its own before it was killed");
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn produce_range(bootstrap: &str, range: std::ops::Range<usize>) {
    let records: Vec<(String, String, i64)> =
        range.map(|i| (format!("k{:02}", i % KEYS), format!(r#"{{"v":{i}}}"#), time_of(i))).collect();
    let rs: Vec<_> = records.iter().map(|(k, v, t)| (Some(k.as_bytes()), Some(v.as_bytes()), Some(*t))).collect();
    produce(bootstrap, "views", &rs);
}

#[test]
fn should_keep_a_windowed_ctas_exact_through_server_kills_and_a_takeover() {
    let (cluster, bootstrap, root, x) = start();
    drop(x);
    let dirs = [root.path().join("a"), root.path().join("b")];
    let mut servers: Vec<Option<ServerProc>> = vec![Some(ServerProc::spawn(&bootstrap, &dirs[0]))];
    let (status, v) = servers[0]
        .as_ref()
        .unwrap()
        .client
        .statements(
            "CREATE STREAM views (k STRING KEY, v BIGINT) WITH (kafka_topic='views', value_format='JSON', partitions=4);
             CREATE TABLE per_window AS SELECT k, COUNT(*) AS n, SUM(v) AS total FROM views
               WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY k;",
            &json!({}),
        )
        .unwrap();
    assert_eq!(status, 200, "{v}");
    servers.push(Some(ServerProc::spawn(&bootstrap, &dirs[1])));

    let killed = Arc::new(AtomicBool::new(false));
    let driver = {
        let (bootstrap, killed) = (bootstrap.clone(), Arc::clone(&killed));
        std::thread::spawn(move || {
            let mut n = 0;
            while n < MIN_RECORDS || !killed.load(Ordering::Relaxed) {
                produce_range(&bootstrap, n..n + 100);
                n += 100;
                std::thread::sleep(Duration::from_millis(100));
            }
            n
        })
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut order: Vec<usize> = (0..2).flat_map(|s| std::iter::repeat_n(s, KILLS_PER_SERVER)).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    for s in order {
        // Killed while it processes (the premise), at a random moment.
        servers[s].as_mut().unwrap().must_be_processing();
        std::thread::sleep(Duration::from_millis(rng.random_range(0..=1_500)));
        servers[s].take().unwrap().must_kill();
        eprintln!("killed server {s}");
        servers[s] = Some(ServerProc::spawn(&bootstrap, &dirs[s]));
    }
    killed.store(true, Ordering::Relaxed);
    let mut records = driver.join().expect("the driver finished");

    // One server goes for good while it processes the last input: the other takes over every
    // task and finishes it.
    let last = {
        let bootstrap = bootstrap.clone();
        std::thread::spawn(move || {
            for chunk in (records..records + 5_000).step_by(250) {
                produce_range(&bootstrap, chunk..chunk + 250);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    servers[0].as_mut().unwrap().must_be_processing();
    servers[0].take().unwrap().must_kill();
    last.join().expect("the last input went out");
    records += 5_000;
    let survivor = servers[1].as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    // One sub-topology of 4 tasks: grouped by the source's own key, the windowed count reads
    // the source partitions directly (no repartition).
    while survivor.progress().1 < 4 {
        assert!(Instant::now() < deadline, "the surviving server took over all 4 tasks");
        std::thread::sleep(Duration::from_millis(200));
    }

    let out = read_topic(&bootstrap, "PER_WINDOW", records, Duration::from_secs(300), Duration::from_secs(3));
    // Per key and window (the output key: the group key, then window start and end).
    let mut seen: BTreeMap<(String, i64), Vec<(i64, i64)>> = BTreeMap::new();
    for r in &out {
        let key = r.key.as_deref().unwrap();
        let (group, window) = key.split_at(key.len() - 16);
        let start = i64::from_be_bytes(window[..8].try_into().unwrap());
        let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
        let entry = seen.entry((String::from_utf8(group.to_vec()).unwrap(), start)).or_default();
        entry.push((v["n"].as_i64().unwrap(), v["total"].as_i64().unwrap()));
    }
    let mut expected: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
    for i in 0..records {
        let e = expected.entry((format!("k{:02}", i % KEYS), time_of(i) - time_of(i).rem_euclid(10_000))).or_default();
        e.0 += 1;
        e.1 += i as i64;
    }
    assert_eq!(seen.len(), expected.len(), "every key and window has output");
    for (kw, (count, total)) in &expected {
        let updates = &seen[kw];
        let counts: Vec<i64> = updates.iter().map(|u| u.0).collect();
        assert_eq!(counts, (1..=*count).collect::<Vec<_>>(), "{kw:?}: each record counted once, in order");
        assert_eq!(updates.last().unwrap().1, *total, "{kw:?}: the exact sum");
    }
    assert_eq!(out.len(), records, "one committed update per input record");
    drop(servers);
    cluster.shutdown();
}
