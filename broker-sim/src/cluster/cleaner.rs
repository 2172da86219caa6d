//! The cluster's log cleaner: picks the dirtiest compacted partition that is due and cleans
//! it, one pass at a time (Kafka's `LogCleanerManager.grabFilthiestCompactedLog`). The pass
//! runs outside the partition lock; only its snapshot and its swap take it.
//!
//! Settings are read at each pass, so AlterConfigs on them takes effect at the next one:
//! `log.cleaner.enable`, `log.cleaner.backoff.ms` (the sleep when nothing is due),
//! `log.cleaner.dedupe.buffer.size` and `log.cleaner.io.buffer.load.factor` (how many keys
//! one pass may map).

use std::sync::Arc;

use super::{ClusterCore, Partition};
use crate::log::cleaner::{CleanerStats, MAP_ENTRY_BYTES};

impl ClusterCore {
    /// Whether the cleaner runs (`log.cleaner.enable`).
    pub(crate) fn cleaner_enabled(&self) -> bool {
        self.with_view(None, |v| v.broker_value("log.cleaner.enable").0.trim() == "true")
    }

    /// `log.cleaner.backoff.ms`.
    pub(crate) fn cleaner_backoff_ms(&self) -> u64 {
        self.with_view(None, |v| v.broker_value("log.cleaner.backoff.ms").0.trim().parse().unwrap_or(15_000))
    }

    /// Keys one pass may hold in its offset map.
    fn cleaner_map_entries(&self) -> usize {
        self.with_view(None, |v| {
            let buffer: f64 =
                v.broker_value("log.cleaner.dedupe.buffer.size").0.trim().parse().unwrap_or(134_217_728.0);
            let load: f64 = v.broker_value("log.cleaner.io.buffer.load.factor").0.trim().parse().unwrap_or(0.9);
            ((buffer * load.clamp(0.01, 1.0)) as usize / MAP_ENTRY_BYTES).max(1)
        })
    }

    /// The cleaner's counters so far.
    pub(crate) fn cleaner_stats(&self) -> CleanerStats {
        *self.cleaner_stats.lock()
    }

    /// Cleans the dirtiest partition that is due, if any; returns whether it cleaned one.
    /// A pass that fails is logged and its partition left as it was.
    pub(crate) fn clean_dirtiest(&self) -> bool {
        let now = self.clock.now_ms();
        let mut best: Option<(f64, String, Arc<Partition>)> = None;
        for t in self.topics() {
            for p in &t.partitions {
                let log = p.log.lock();
                let Some(c) = log.cleanable(now) else { continue };
                if !c.due(log.config.min_cleanable_ratio_ppm) {
                    continue;
                }
                // A log past its maximum lag goes first.
                let score = if c.forced { 2.0 } else { c.dirty_ratio() };
                if best.as_ref().is_none_or(|(s, ..)| score > *s) {
                    best = Some((score, t.name.clone(), Arc::clone(p)));
                }
            }
        }
        let Some((_, topic, p)) = best else { return false };
        let job = p.log.lock().prepare_clean(now, self.cleaner_map_entries());
        let Some(job) = job else { return false };
        let out = match job.run() {
            Ok(out) => out,
            Err(e) => {
                tracing::warn!(%topic, partition = p.index, error = %e, "log cleaning failed");
                return false;
            }
        };
        let finished = p.log.lock().finish_clean(out);
        match finished {
            Ok(mut stats) => {
                stats.busy_ms = self.clock.now_ms().saturating_sub(now).max(0) as u64;
                tracing::debug!(%topic, partition = p.index, ?stats, "cleaned a log");
                self.cleaner_stats.lock().add(&stats);
                true
            }
            Err(e) => {
                tracing::warn!(%topic, partition = p.index, error = %e, "swapping cleaned segments failed");
                false
            }
        }
    }
}
