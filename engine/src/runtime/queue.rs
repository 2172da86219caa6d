//! Choosing which input partition of a task to process next: the head record with the lowest
//! timestamp, so a task sees its partitions merged in timestamp order (stream time). When a
//! partition has nothing buffered, the task waits up to `max.task.idle.ms` for it before going
//! on with the others. A pure function of the heads, the time and the idle state.

use std::time::{Duration, Instant};

/// The queue to take the next record from, or `None` to wait. `heads` holds the timestamp of
/// each queue's head record (`None`: empty). `idle_since` remembers since when the task has
/// been waiting for an empty partition.
pub(crate) fn pick(
    heads: impl Iterator<Item = Option<i64>>,
    now: Instant,
    max_idle: Duration,
    idle_since: &mut Option<Instant>,
) -> Option<usize> {
    let mut best: Option<(usize, i64)> = None;
    let mut any_empty = false;
    let mut n = 0;
    for (i, h) in heads.enumerate() {
        n += 1;
        match h {
            Some(ts) if best.is_none_or(|(_, b)| ts < b) => best = Some((i, ts)),
            Some(_) => {}
            None => any_empty = true,
        }
    }
    let (i, _) = best?;
    if any_empty && n > 1 && !max_idle.is_zero() {
        let since = *idle_since.get_or_insert(now);
        if now.duration_since(since) < max_idle {
            return None;
        }
        return Some(i);
    }
    *idle_since = None;
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // any instant will do as the origin
    fn should_pick_the_lowest_timestamp_and_wait_for_empty_partitions_up_to_max_idle() {
        let t0 = Instant::now();
        let mut idle = None;
        let zero = Duration::ZERO;
        assert_eq!(pick([Some(5), Some(3), Some(9)].into_iter(), t0, zero, &mut idle), Some(1));
        assert_eq!(pick([None, None].into_iter(), t0, zero, &mut idle), None);
        // max idle 0: an empty partition does not hold the others back.
        assert_eq!(pick([None, Some(7)].into_iter(), t0, zero, &mut idle), Some(1));
        // max idle 100 ms: wait, then go on.
        let max = Duration::from_millis(100);
        assert_eq!(pick([None, Some(7)].into_iter(), t0, max, &mut idle), None);
        assert_eq!(pick([None, Some(7)].into_iter(), t0 + Duration::from_millis(50), max, &mut idle), None);
        assert_eq!(pick([None, Some(7)].into_iter(), t0 + Duration::from_millis(100), max, &mut idle), Some(1));
        // Every partition has data again: the idle clock resets.
        assert_eq!(pick([Some(8), Some(7)].into_iter(), t0 + Duration::from_millis(200), max, &mut idle), Some(1));
        assert_eq!(idle, None);
        assert_eq!(pick([None, Some(7)].into_iter(), t0 + Duration::from_millis(300), max, &mut idle), None);
        // A single-partition task never waits.
        assert_eq!(pick([Some(1)].into_iter(), t0, max, &mut idle), Some(0));
    }
}
