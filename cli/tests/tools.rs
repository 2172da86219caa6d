//! `moldau broker`, `moldau perf`, `moldau completions` and `--help`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{cluster, moldau, on};

/// A free port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `moldau broker` on fixed ports serves Kafka clients there and stops cleanly on SIGINT.
#[test]
fn should_run_broker_sim_on_fixed_ports_and_stop_on_sigint() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_moldau"))
        .args(["broker", "--brokers", "1", "--port", &port.to_string(), "--config", "num.partitions=4"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut bootstrap = None;
    while bootstrap.is_none() {
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("the broker prints its bootstrap line");
        bootstrap = line.strip_prefix("bootstrap.servers=").map(str::to_string);
    }
    let bootstrap = bootstrap.unwrap();
    assert_eq!(bootstrap, format!("127.0.0.1:{port}"));
    let out = moldau(&["topics", "--bootstrap-server", &bootstrap, "--create", "--topic", "t"], "").ok();
    assert_eq!(out.trim(), "Created topic t.");
    let out = moldau(&["topics", "--bootstrap-server", &bootstrap, "--describe", "--topic", "t"], "").ok();
    assert!(out.starts_with("Topic: t  PartitionCount: 4"), "the --config reached the broker: {out}");
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let exit = done_rx.recv_timeout(Duration::from_secs(60)).expect("the broker stops within a minute").unwrap();
    assert!(exit.success(), "a clean stop: {exit:?}");
    let mut rest = Vec::new();
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(5)) {
        rest.push(l);
    }
    assert!(rest.iter().any(|l| l == "shutting down"), "{rest:?}");
}

#[test]
fn should_measure_producing_and_consuming_with_percentiles() {
    let c = cluster(1);
    on(&c, "topics", &["--create", "--topic", "bench", "--partitions", "2"], "").ok();
    let perf = |args: &[&str]| {
        let mut all = vec!["perf", args[0], "--bootstrap-server", c.bootstrap_servers()];
        all.extend_from_slice(&args[1..]);
        moldau(&all, "")
    };
    let out = perf(&[
        "produce",
        "--topic",
        "bench",
        "--num-records",
        "20000",
        "--record-size",
        "100",
        "--throughput",
        "40000",
        "--reporting-interval-ms",
        "200",
    ])
    .ok();
    let lines: Vec<&str> = out.lines().collect();
    let last = lines.last().unwrap();
    assert!(last.starts_with("20000 records sent, "), "{out}");
    for part in ["records/sec", "MB/sec", "ms avg latency", "ms 50th", "ms 95th", "ms 99th", "ms 99.9th"] {
        assert!(last.contains(part), "{part} in {last}");
    }
    assert!(lines.len() >= 2, "progress lines while it runs (capped at 40k/s, it takes about 0.5 s): {out}");
    let out = perf(&["consume", "--topic", "bench", "--messages", "20000"]).ok();
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with("20000 records consumed, 1.91 MB, ") && last.contains("MB/sec") && last.contains("ms 99.9th"),
        "{out}"
    );
    let err = perf(&["consume", "--topic", "bench", "--messages", "20001", "--timeout-ms", "1000"]).err();
    assert!(err.contains("after 20000 of 20001"), "{err}");
    c.shutdown();
}

#[test]
fn should_print_completions_and_help_with_examples() {
    let out = moldau(&["completions", "bash"], "").ok();
    assert!(out.contains("_moldau()") && out.contains("reset-offsets"), "a bash completion script");
    assert!(moldau(&["completions", "zsh"], "").ok().contains("#compdef moldau"));
    assert!(moldau(&["completions", "fish"], "").ok().contains("complete -c moldau"));
    for cmd in ["broker", "topics", "produce", "consume", "groups", "configs", "completions"] {
        let out = moldau(&[cmd, "--help"], "").ok();
        assert!(out.contains("Example"), "{cmd} --help has an example: {out}");
    }
    for cmd in ["produce", "consume"] {
        assert!(moldau(&["perf", cmd, "--help"], "").ok().contains("Example"));
    }
}
