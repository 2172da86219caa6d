//! Bounded waits on child processes: their output lines are read on a thread, so a test waits
//! for a line, or for an exit, for a limited time and fails naming what it waited for.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ExitStatus};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The lines a child writes to one of its pipes, as they come.
#[derive(Debug)]
pub struct ChildLines {
    rx: Receiver<String>,
}

impl ChildLines {
    /// Reads `out` (a child's stdout or stderr) line by line on a thread until it ends.
    pub fn new(out: impl Read + Send + 'static) -> Self {
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildLines { rx }
    }

    /// The first line for which `f` gives a value, waiting up to `timeout`; `None` when the
    /// time is up or the output ended (the child exited) before one came.
    pub fn wait_for<T>(&self, timeout: Duration, mut f: impl FnMut(&str) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(v) = f(&line) {
                        return Some(v);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// The lines still to come (an iterator over them ends with the output).
    pub fn into_receiver(self) -> Receiver<String> {
        self.rx
    }
}

/// Waits up to `timeout` for `child` to exit; past it, kills it and panics naming `what`.
pub fn must_exit_within(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what}: still running after {timeout:?} (killed)");
            }
            Err(e) => panic!("{what}: waiting for the process failed: {e}"),
        }
    }
}
