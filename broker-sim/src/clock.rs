//! Time, injected: the cluster core takes `now` as an argument and only this module reads the
//! system clock or sleeps on it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A source of wall-clock milliseconds since the Unix epoch.
#[derive(Debug, Clone)]
pub(crate) enum Clock {
    /// The system clock.
    System,
    /// A manual clock, moved by its owner (tests and the simulation).
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

impl Clock {
    /// Waits until the clock reads `deadline_ms` or later. On the system clock this is a tokio
    /// timer; on a manual clock the future is ready once the clock has been moved past the
    /// deadline and it is polled again (the simulation polls every waiting request after each
    /// step; nothing else waits on a manual clock).
    pub(crate) async fn sleep_until(&self, deadline_ms: i64) {
        match self {
            Clock::System => {
                let left = deadline_ms.saturating_sub(self.now_ms()).max(0) as u64;
                tokio::time::sleep(std::time::Duration::from_millis(left)).await;
            }
            Clock::Manual(t) => ManualSleep { clock: Arc::clone(t), deadline_ms }.await,
        }
    }
}

/// A wait on a manual clock (see [`Clock::sleep_until`]).
struct ManualSleep {
    clock: Arc<AtomicI64>,
    deadline_ms: i64,
}

impl std::future::Future for ManualSleep {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, _cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.clock.load(Ordering::Relaxed) >= self.deadline_ms {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }
}
