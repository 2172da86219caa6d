//! Each example checks its own output and exits non-zero when it is wrong: run them all, each
//! on its own embedded cluster, and check their exit status and closing line.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest an example may run.
const LIMIT: Duration = Duration::from_secs(300);

/// Runs example binary `bin` and returns its standard output; panics naming it when it fails
/// or runs longer than `LIMIT` (it is killed then).
fn must_run(bin: &str) -> String {
    let mut child = Command::new(bin)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin} starts: {e}"));
    // Read on threads, so a full pipe never blocks the example.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{bin} still running after {LIMIT:?} (killed)");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    assert!(status.success(), "{bin} failed ({status}):\n{stdout}\n{stderr}");
    stdout
}

#[test]
fn should_count_every_word_exactly_once_in_the_word_count_demo() {
    let out = must_run(env!("CARGO_BIN_EXE_word-count"));
    assert!(out.contains("counted exactly once"), "{out}");
}

#[test]
fn should_emit_each_page_view_window_once_with_its_final_count() {
    let out = must_run(env!("CARGO_BIN_EXE_page-views"));
    assert!(out.contains("each emitted once with its final count"), "{out}");
}

#[test]
fn should_enrich_every_order_in_the_join_example() {
    must_run(env!("CARGO_BIN_EXE_order-enrichment"));
}

#[test]
fn should_run_the_broker_quick_start() {
    must_run(env!("CARGO_BIN_EXE_broker-quickstart"));
}
