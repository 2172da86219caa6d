//! `moldau sql` driven in a pseudo-terminal end to end (the script is `sql_shell.py`, on
//! Python's standard `pty` module): a statement over two lines, a CTAS, a push query with a
//! limit, a push query cancelled with Ctrl-C while the shell goes on, error messages, exit.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn should_run_statements_push_queries_and_ctrl_c_in_the_shell() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sql_shell.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_moldau"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    // The script bounds each wait to 60 s; this bounds the whole.
    let deadline = Instant::now() + Duration::from_secs(240);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the shell test did not finish in 240 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stdout.contains("ok"), "stdout:\n{stdout}\nstderr:\n{stderr}");
}
