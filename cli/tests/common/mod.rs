//! Running the `moldau` binary against an embedded broker-sim in tests.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use moldau_broker_sim::Cluster;

/// A limit on any one command; they take well under a second normally.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// What a command printed and how it ended.
#[derive(Debug)]
pub(crate) struct Run {
    /// The arguments.
    pub(crate) args: Vec<String>,
    /// Exit code (`None`: killed by a signal).
    pub(crate) code: Option<i32>,
    /// Standard output.
    pub(crate) stdout: String,
    /// Standard error.
    pub(crate) stderr: String,
    /// How long it ran.
    pub(crate) took: Duration,
}

impl Run {
    /// Fails the test unless the command succeeded; returns stdout.
    pub(crate) fn ok(self) -> String {
        assert_eq!(self.code, Some(0), "command failed: {self:?}");
        self.stdout
    }

    /// Fails the test unless the command failed with exit code 1 and one `error:` line on
    /// stderr without a backtrace; returns that line.
    pub(crate) fn err(self) -> String {
        assert_eq!(self.code, Some(1), "command should fail: {self:?}");
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {self:?}");
        assert!(lines[0].starts_with("error: "), "{self:?}");
        assert!(!self.stderr.contains("backtrace") && !self.stderr.contains("panicked"), "{self:?}");
        lines[0].to_string()
    }
}

/// Runs `moldau args...` with `stdin`; killed (and failing the test) past a minute.
pub(crate) fn moldau(args: &[&str], stdin: &str) -> Run {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_moldau"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("moldau starts");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.as_bytes().to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(COMMAND_LIMIT) {
        Ok(out) => out.expect("moldau output"),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("moldau {args:?} ran past {COMMAND_LIMIT:?}");
        }
    };
    let _ = writer.join();
    Run {
        args: args.iter().map(|a| a.to_string()).collect(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: start.elapsed(),
    }
}

/// A cluster for one test (`group.initial.rebalance.delay.ms=0`, as Kafka's test clusters).
pub(crate) fn cluster(brokers: usize) -> Cluster {
    Cluster::builder()
        .brokers(brokers)
        .config("group.initial.rebalance.delay.ms", "0")
        .start()
        .expect("broker-sim starts")
}

/// `moldau <cmd> --bootstrap-server <cluster> args...`.
pub(crate) fn on(cluster: &Cluster, cmd: &str, args: &[&str], stdin: &str) -> Run {
    let mut all = vec![cmd, "--bootstrap-server", cluster.bootstrap_servers()];
    all.extend_from_slice(args);
    moldau(&all, stdin)
}

/// The rows of an aligned table (split on whitespace), header first.
pub(crate) fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .filter(|r: &Vec<String>| !r.is_empty())
        .collect()
}
