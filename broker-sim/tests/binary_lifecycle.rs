//! The `broker-sim` binary: brokers on consecutive ports, answering the Kafka protocol, and a
//! clean shutdown on Ctrl-C (SIGINT) that keeps the data directory.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::channel;
use std::time::Duration;

/// Kills the child when the test ends, whichever way.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to `timeout` for `child` to exit; panics naming `what` past it (the caller's
/// guard kills it).
fn exit_within(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    const STEP: Duration = Duration::from_millis(20);
    for _ in 0..timeout.as_millis() / STEP.as_millis() {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        std::thread::sleep(STEP);
    }
    child.try_wait().expect("try_wait").unwrap_or_else(|| panic!("{what}: still running after {timeout:?}"))
}

/// Sends ApiVersions v0 and returns the response's error code.
fn api_versions_error(addr: &str) -> i16 {
    let mut s = TcpStream::connect(addr).expect("connect to broker");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // size, api key 18, version 0, correlation id 42, null client id
    let mut req = Vec::new();
    req.extend_from_slice(&10i32.to_be_bytes());
    req.extend_from_slice(&18i16.to_be_bytes());
    req.extend_from_slice(&0i16.to_be_bytes());
    req.extend_from_slice(&42i32.to_be_bytes());
    req.extend_from_slice(&(-1i16).to_be_bytes());
    s.write_all(&req).unwrap();
    let mut size = [0u8; 4];
    s.read_exact(&mut size).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut body).unwrap();
    assert_eq!(&body[0..4], &42i32.to_be_bytes(), "correlation id echoed");
    i16::from_be_bytes([body[4], body[5]])
}

#[test]
fn should_serve_consecutive_ports_and_exit_cleanly_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    // Port 0: the kernel picks; a fixed --port P gives P, P+1, ...
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_broker-sim"))
            .args(["--brokers", "2", "--port", "0", "--data-dir"])
            .arg(dir.path())
            .args(["--config", "num.partitions=2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start broker-sim"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(b) = line.strip_prefix("bootstrap.servers=") {
                let _ = tx.send(b.to_string());
            }
        }
    });
    let bootstrap =
        rx.recv_timeout(Duration::from_secs(60)).expect("broker-sim prints its bootstrap servers within 60 s");
    let addrs: Vec<&str> = bootstrap.split(',').collect();
    assert_eq!(addrs.len(), 2);
    for a in &addrs {
        assert!(a.starts_with("127.0.0.1:"), "advertises an IPv4 literal: {a}");
        assert_eq!(api_versions_error(a), 0);
    }
    let status = Command::new("kill").args(["-INT", &child.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = exit_within(&mut child.0, Duration::from_secs(30), "broker-sim after SIGINT");
    assert!(exit.success(), "clean exit on SIGINT: {exit:?}");
    assert!(dir.path().join("meta.properties").exists(), "the data directory keeps the cluster id");
}

#[test]
fn should_refuse_a_bad_config_with_a_clear_message() {
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_broker-sim"))
            .args(["--port", "0", "--config", "num.partitions=many"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let status = exit_within(&mut child.0, Duration::from_secs(30), "broker-sim with num.partitions=many");
    assert!(!status.success());
    let mut err = String::new();
    child.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("num.partitions"), "names the bad key: {err}");
}
