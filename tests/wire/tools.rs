//! Running external Kafka clients (kcat, python3) from the wire tests.
//!
//! A missing tool fails the test with a pointer to `scripts/setup.sh`: these tests never skip.

use std::io::ErrorKind;
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// What to do when a tool is missing.
pub(crate) const SETUP_HINT: &str = "run scripts/setup.sh (it installs kcat, kafka-python 3 and confluent-kafka)";

/// Runs `cmd` to completion with `stdin` as its standard input (closed when written) and
/// returns its output. `limit` is only a safety net against a hung client: the child is killed
/// and the test fails if it is reached. Panics, naming [`SETUP_HINT`], if the program is missing.
pub(crate) async fn run(mut cmd: Command, stdin: Option<Vec<u8>>, limit: Duration) -> Output {
    let shown = format!("{:?}", cmd.as_std());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("{shown}: program not found ({e}); {SETUP_HINT}")
        }
        Err(e) => panic!("{shown}: could not start: {e}"),
    };
    // Feed stdin concurrently with waiting, so that a child which stops reading cannot block
    // us while its own output fills up; dropping the pipe sends EOF.
    let pipe = stdin.map(|input| (child.stdin.take().expect("piped stdin"), input));
    let feed = async move {
        if let Some((mut pipe, input)) = pipe {
            let _ = pipe.write_all(&input).await;
        }
    };
    let (_, waited) = tokio::join!(feed, tokio::time::timeout(limit, child.wait_with_output()));
    match waited {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("{shown}: waiting for it failed: {e}"),
        // Dropping the future drops the child, which kills it (kill_on_drop).
        Err(_) => panic!("{shown}: still running after the {limit:?} safety limit; killed"),
    }
}

/// stdout and stderr of `out`, for failure messages.
pub(crate) fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
