//! Each example checks its own output and exits non-zero when it is wrong: run them all, each
//! on its own embedded cluster, and check their exit status and closing line.

use std::process::Command;

/// Runs example binary `bin` and returns its standard output; panics naming it when it fails.
fn must_run(bin: &str) -> String {
    let out = Command::new(bin).env("RUST_LOG", "error").output().unwrap_or_else(|e| panic!("{bin} starts: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{bin} failed ({}):\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
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
