//! Waiting for the cluster: a Kafka read the runtime cannot go on without (committed offsets,
//! a changelog's offsets) is retried with a backoff while the cluster cannot be reached, for
//! as long as an outage lasts, until the application closes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};

/// The first wait between attempts; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Calls `op` until it succeeds, logging each failure as `what` and backing off between
/// attempts; [`Error::ShuttingDown`] once `shutdown` is set.
pub(crate) fn until_answered<T, E: std::fmt::Display>(
    what: &str,
    shutdown: &AtomicBool,
    mut op: impl FnMut() -> std::result::Result<T, E>,
) -> Result<T> {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match op() {
            Ok(v) => return Ok(v),
            Err(e) => {
                if shutdown.load(Ordering::Relaxed) {
                    return Err(Error::ShuttingDown);
                }
                tracing::warn!(error = %e, ?backoff, "{what}; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
