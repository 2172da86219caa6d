//! The crash matrix's broker kills: broker-sim runs as its own process, on its data directory,
//! and is SIGKILLed and restarted on the same ports and data twice while the crash-test
//! application runs exactly-once as two processes of two stream threads (a repartition topic
//! and an aggregate). The application processes must ride out both outages (the test fails
//! if one exits), and the output is exact.

use std::collections::BTreeMap;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use moldau_engine::ProcessingGuarantee;
use moldau_tests::child::ChildLines;
use moldau_tests::eos_app::{App, RunOptions};
use moldau_tests::streams_util::read_topic;

use crate::apps::{produce_eos_records, wait_until};
use crate::crash::{assert_exact, guarantee_arg, spawn, Reported};
use crate::recovery::{free_ports, now_ms};

/// The `broker-sim` binary, built beside this test's executable.
fn broker_sim_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let bin = dir.join("broker-sim");
    assert!(bin.exists(), "{} is built by `cargo build --workspace`", bin.display());
    bin
}

/// A broker-sim process of three brokers on ports `port..port + 3`, keeping its data in
/// `data`.
struct BrokerProcess {
    child: Child,
}

impl BrokerProcess {
    /// Starts it and waits until it serves.
    fn start(port: u16, data: &Path) -> Self {
        let mut child = Command::new(broker_sim_binary())
            .args(["--brokers", "3", "--port", &port.to_string(), "--config", "group.initial.rebalance.delay.ms=0"])
            .arg("--data-dir")
            .arg(data)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("broker-sim starts");
        let lines = ChildLines::new(child.stdout.take().expect("stdout"));
        if lines.wait_for(Duration::from_secs(60), |l| l.starts_with("bootstrap.servers=").then_some(())).is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("broker-sim did not serve within 60 s (or exited first)");
        }
        // Keep draining its output.
        let lines = lines.into_receiver();
        std::thread::spawn(move || lines.into_iter().for_each(drop));
        BrokerProcess { child }
    }

    /// SIGKILLs it, checking it was running and died of the signal.
    fn kill(mut self) {
        assert!(self.child.try_wait().expect("status").is_none(), "broker-sim exited on its own");
        self.child.kill().expect("SIGKILL");
        let status = self.child.wait().expect("reaped");
        assert_eq!(status.signal(), Some(9), "broker-sim died of SIGKILL: {status}");
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn should_produce_exactly_once_output_when_the_broker_process_is_killed_twice() {
    const RECORDS: usize = 30_000;
    const KEYS: usize = 20;
    let data = tempfile::tempdir().unwrap();
    let port = free_ports(3);
    let mut broker = Some(BrokerProcess::start(port, data.path()));
    let bootstrap = format!("127.0.0.1:{port}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    for t in ["data", "echo", "agg"] {
        rt.block_on(moldau_tests::must_create_topic(&bootstrap, t, 6, 3));
    }
    let root = tempfile::tempdir().unwrap();
    let options = RunOptions { threads: 2, ..RunOptions::new(App::Agg) };
    let eos = guarantee_arg(ProcessingGuarantee::ExactlyOnceV2);
    let mut children: Vec<_> =
        (0..2).map(|i| spawn(&bootstrap, eos, &root.path().join(format!("child-{i}")), &options, "")).collect();

    // Current timestamps: a restarted broker deletes closed segments past its 7-day retention.
    let t0 = now_ms();
    let driver = {
        let bootstrap = bootstrap.clone();
        std::thread::spawn(move || {
            for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(1_000) {
                produce_eos_records(&bootstrap, chunk.iter().copied(), KEYS, |i| Some(t0 + i as i64));
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    for _ in 0..2 {
        // Both processes are processing: they committed three times since they (re)joined.
        let before: Vec<u64> = children.iter().map(|c| c.commits()).collect();
        for (c, b) in children.iter().zip(&before) {
            wait_until("the application committed three more times", || c.commits() >= b + 3);
        }
        broker.take().expect("running").kill();
        std::thread::sleep(Duration::from_secs(3));
        for c in &mut children {
            c.must_be_running();
        }
        broker = Some(BrokerProcess::start(port, data.path()));
    }
    driver.join().expect("the driver finished");

    let settle = Duration::from_secs(3);
    let echo = read_topic(&bootstrap, "echo", RECORDS, Duration::from_secs(300), settle);
    let agg_records = read_topic(&bootstrap, "agg", RECORDS, Duration::from_secs(300), settle);
    let mut reported = Reported::default();
    for c in children {
        reported.add(c.must_kill());
    }
    drop(broker);
    let echo: Vec<(String, u64)> = echo
        .iter()
        .map(|r| (r.key_str(), u64::from_be_bytes(r.value.as_deref().unwrap_or_default().try_into().expect("u64"))))
        .collect();
    let mut agg: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in agg_records {
        agg.entry(r.key_str()).or_default().push(r.value_str());
    }
    assert_exact(&echo, &agg, RECORDS, KEYS);
    // The premise: the outages reached the application (it rolled back and went on).
    assert!(reported.recoveries > 0, "no roll-back: {reported:?}");
    eprintln!("broker kills: {reported:?}");
}
