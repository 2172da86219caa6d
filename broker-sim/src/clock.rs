//! Time, injected: the cluster core takes `now` as an argument and only this module reads the
//! system clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A source of wall-clock milliseconds since the Unix epoch.
#[derive(Debug, Clone)]
pub(crate) enum Clock {
    /// The system clock.
    System,
    /// A manual clock for tests.
    #[allow(dead_code)]
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// Milliseconds since the Unix epoch.
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn now_ms(&self) -> i64 {
        match self {
            Clock::System => {
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
            }
            Clock::Manual(t) => t.load(Ordering::Relaxed),
        }
    }
}
