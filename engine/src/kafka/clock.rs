//! The runtime's clock: the one place the engine reads real time (everything below it takes
//! time as an argument).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::runtime::io::Clock;

/// Monotonic time for intervals and wall-clock milliseconds for punctuation.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemClock;

impl SystemClock {
    /// Monotonic now.
    #[allow(clippy::disallowed_methods)] // the runtime's single source of real time
    pub(crate) fn now(&self) -> Instant {
        Instant::now()
    }

    /// Milliseconds since the Unix epoch.
    #[allow(clippy::disallowed_methods)] // the runtime's single source of real time
    pub(crate) fn wall_ms(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        SystemClock::now(self)
    }
    fn wall_ms(&self) -> i64 {
        SystemClock::wall_ms(self)
    }
    fn sleep(&self, d: std::time::Duration) {
        std::thread::sleep(d)
    }
}
