//! Named fail points, for crash tests: places in the runtime where a test makes the process
//! die (or slow down) at the moment it means to hit, instead of killing it at a random time
//! and hoping. Inert unless configured, at the cost of one relaxed atomic load per point.
//!
//! A configuration is a list of `point=action` separated by `;`, from the environment variable
//! `MOLDAU_FAIL_POINTS` (read when an application starts) or [`configure`]. Actions:
//!
//! - `abort`: the process aborts at the first hit, as if killed (nothing is flushed or
//!   closed; the test sees the signal in the exit status);
//! - `abort@N`: the process aborts at the `N`-th hit (counted from 1);
//! - `sleep(MS)`: every hit sleeps `MS` milliseconds;
//! - `fail@N`: the `N`-th hit fails the way the point's row below says (points that cannot
//!   fail ignore it);
//! - `off`: nothing.
//!
//! The points:
//!
//! | point | where |
//! |---|---|
//! | `restore.batch` | before a batch of changelog records is applied to a store during a restore |
//! | `restore.assigned` | after changelog partitions joined the restore consumer's assignment |
//! | `commit.after_kafka` | after Kafka has a commit (the transaction or the offsets), before the stores commit; `fail@N`: the first task with stores finds one corrupted ([`Error::TaskCorrupted`](crate::Error::TaskCorrupted)) |
//! | `commit.deferred` | after the stores committed in memory only (their writes wait for the next persist) |
//! | `rebalance.assign` | when newly assigned partitions are about to be opened |

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::{Error, Result};

/// The environment variable read by [`configure_from_env`].
pub const ENV: &str = "MOLDAU_FAIL_POINTS";

/// The points a configuration may name.
pub const POINTS: [&str; 5] =
    ["restore.batch", "restore.assigned", "commit.after_kafka", "commit.deferred", "rebalance.assign"];

static ACTIVE: AtomicBool = AtomicBool::new(false);
static CONFIG: Mutex<Option<HashMap<String, Point>>> = Mutex::new(None);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Off,
    Abort { at: u64 },
    Fail { at: u64 },
    Sleep(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Point {
    action: Action,
    hits: u64,
}

/// Replaces the configuration with `spec` (see the module documentation); an empty `spec`
/// turns every point off. A point or action that does not parse is an [`Error::Config`]
/// naming it, and leaves the configuration as it was.
pub fn configure(spec: &str) -> Result<()> {
    let mut points = HashMap::new();
    for item in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = |why: &str| Error::Config(format!("fail point '{item}': {why}"));
        let (name, action) = item.split_once('=').ok_or_else(|| bad("expected point=action"))?;
        let name = name.trim();
        if !POINTS.contains(&name) {
            return Err(bad(&format!("unknown point (known: {})", POINTS.join(", "))));
        }
        points.insert(name.to_string(), Point { action: parse_action(action.trim()).map_err(|w| bad(&w))?, hits: 0 });
    }
    ACTIVE.store(!points.is_empty(), Ordering::Relaxed);
    *CONFIG.lock() = Some(points);
    Ok(())
}

/// [`configure`] from the environment variable [`ENV`], if it is set.
pub fn configure_from_env() -> Result<()> {
    match std::env::var(ENV) {
        Ok(spec) => configure(&spec),
        Err(std::env::VarError::NotPresent) => Ok(()),
        Err(e) => Err(Error::Config(format!("{ENV}: {e}"))),
    }
}

fn parse_action(s: &str) -> std::result::Result<Action, String> {
    if s == "off" {
        return Ok(Action::Off);
    }
    if s == "abort" {
        return Ok(Action::Abort { at: 1 });
    }
    if let Some(n) = s.strip_prefix("abort@") {
        return match n.parse::<u64>() {
            Ok(at) if at > 0 => Ok(Action::Abort { at }),
            _ => Err(format!("abort@N needs a hit number from 1, not '{n}'")),
        };
    }
    if let Some(n) = s.strip_prefix("fail@") {
        return match n.parse::<u64>() {
            Ok(at) if at > 0 => Ok(Action::Fail { at }),
            _ => Err(format!("fail@N needs a hit number from 1, not '{n}'")),
        };
    }
    if let Some(ms) = s.strip_prefix("sleep(").and_then(|r| r.strip_suffix(')')) {
        return ms
            .parse::<u64>()
            .map(|ms| Action::Sleep(Duration::from_millis(ms)))
            .map_err(|e| format!("sleep({ms}): {e}"));
    }
    Err(format!("unknown action '{s}' (abort, abort@N, fail@N, sleep(MS), off)"))
}

/// Passes fail point `name`: does what its configuration says.
pub(crate) fn hit(name: &'static str) {
    let _ = fails(name);
}

/// Passes fail point `name` as [`hit`] does, and says whether the caller must fail here
/// (`fail@N`, at its `N`-th hit).
pub(crate) fn fails(name: &'static str) -> bool {
    if !ACTIVE.load(Ordering::Relaxed) {
        return false;
    }
    let action = {
        let mut config = CONFIG.lock();
        let Some(point) = config.as_mut().and_then(|c| c.get_mut(name)) else { return false };
        point.hits += 1;
        match point.action {
            Action::Abort { at } | Action::Fail { at } if point.hits != at => Action::Off,
            a => a,
        }
    };
    match action {
        Action::Off => false,
        Action::Fail { .. } => {
            tracing::warn!(point = name, "fail point: failing here");
            true
        }
        Action::Sleep(d) => {
            std::thread::sleep(d);
            false
        }
        Action::Abort { .. } => {
            eprintln!("fail point {name}: aborting the process");
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_parse_actions_and_name_what_is_wrong() {
        assert_eq!(parse_action("abort"), Ok(Action::Abort { at: 1 }));
        assert_eq!(parse_action("abort@3"), Ok(Action::Abort { at: 3 }));
        assert_eq!(parse_action("sleep(25)"), Ok(Action::Sleep(Duration::from_millis(25))));
        assert_eq!(parse_action("off"), Ok(Action::Off));
        assert_eq!(parse_action("fail@2"), Ok(Action::Fail { at: 2 }));
        assert!(parse_action("fail@x").unwrap_err().contains("from 1"));
        assert!(parse_action("abort@0").unwrap_err().contains("from 1"));
        assert!(parse_action("sleep(x)").unwrap_err().contains("sleep(x)"));
        assert!(parse_action("explode").unwrap_err().contains("unknown action 'explode'"));
        let e = configure("no.such.point=abort").unwrap_err().to_string();
        assert!(e.contains("no.such.point") && e.contains("unknown point"), "{e}");
        let e = configure("restore.batch").unwrap_err().to_string();
        assert!(e.contains("point=action"), "{e}");
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // measures the sleep
    fn should_sleep_at_every_hit_of_a_configured_point_only() {
        configure("restore.batch=sleep(30)").unwrap();
        let t = std::time::Instant::now();
        hit("restore.batch");
        hit("restore.batch");
        assert!(t.elapsed() >= Duration::from_millis(60));
        let t = std::time::Instant::now();
        hit("commit.after_kafka");
        assert!(t.elapsed() < Duration::from_millis(30));
        configure("").unwrap();
        assert!(!ACTIVE.load(Ordering::Relaxed));
    }
}
