//! The log cleaner: compaction of `cleanup.policy=compact` partitions, as Kafka's
//! `LogCleaner` does it (with KIP-58's minimum lag, KIP-354's maximum lag and KIP-534's
//! delete horizon).
//!
//! A log is split at its cleaner checkpoint (`cleaner-offset-checkpoint` in its directory):
//! below it the clean section, compacted before; from it to the first uncleanable offset the
//! dirty section. The first uncleanable offset is the earliest of the active segment's base
//! (the active segment is never cleaned), the last stable offset (no open transaction is
//! touched) and the first segment younger than `min.compaction.lag.ms`; the pass cleans whole
//! segments below it. A log is due when its dirty ratio (dirty bytes over clean plus dirty
//! bytes) reaches `min.cleanable.dirty.ratio`, or when its first dirty segment is older than
//! `max.compaction.lag.ms`.
//!
//! One pass, in two steps over a snapshot of the segments (read without the partition lock:
//! segments below the active one never change):
//! 1. the offset map: the latest offset of every key in the dirty section, keyed by a 128-bit
//!    hash of the key, skipping markers and aborted data. It holds at most the entries that fit
//!    `log.cleaner.dedupe.buffer.size`; when full, the pass ends at that segment.
//! 2. the rewrite: every segment from the log start to the end of the pass, in groups that fit
//!    `segment.bytes`, into new segments. A record stays if no later record of its key is in the
//!    map; a batch keeps its base offset, last offset delta, producer id, epoch and sequence
//!    (so offsets and the producer state survive), its codec and its order; the producer's last
//!    batch stays even when emptied. Tombstones get a delete horizon (`delete.retention.ms`
//!    after the pass that first keeps them) and go in the first pass after it. Batches of
//!    aborted transactions go; a marker stays while data of its transaction is left, then gets
//!    a horizon the same way.
//!
//! The new segments are swapped in under the lock (`swap.rs`): a crash leaves the old
//! segments or the new ones, never a mix.

mod rewrite;
pub(crate) mod swap;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::batch::BatchHeader;
use super::segment::{Segment, SegmentSnapshot};
use super::PartitionLog;
use crate::error::Result;
use crate::log::records::{self, MAX_DECOMPRESSED_BYTES};
use crate::storage::Dir;
use rewrite::{Fate, Pass};

/// The file holding a partition's cleaner checkpoint (the end of its clean section).
pub(crate) const CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

/// Bytes an offset map entry takes from the dedupe buffer, as Kafka counts them (a 16-byte
/// key hash and an 8-byte offset).
pub(crate) const MAP_ENTRY_BYTES: usize = 24;

/// Bytes gathered before they are written to a new segment.
const WRITE_CHUNK: usize = 1 << 20;

/// Counters of the log cleaner, summed over its passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanerStats {
    /// Cleaning passes completed (one partition each).
    pub passes: u64,
    /// Segment bytes read by the rewrite step.
    pub bytes_read: u64,
    /// Segment bytes written.
    pub bytes_written: u64,
    /// Records read by the rewrite step (markers included).
    pub records_read: u64,
    /// Records kept.
    pub records_kept: u64,
    /// Tombstones removed after their delete horizon.
    pub tombstones_removed: u64,
    /// Records of aborted transactions removed.
    pub aborted_removed: u64,
    /// Transaction markers removed (no data of their transaction left, horizon passed).
    pub markers_removed: u64,
    /// Milliseconds spent cleaning (by the cleaner's clock).
    pub busy_ms: u64,
}

impl CleanerStats {
    /// Adds `other`'s counters to these.
    pub fn add(&mut self, other: &CleanerStats) {
        self.passes += other.passes;
        self.bytes_read += other.bytes_read;
        self.bytes_written += other.bytes_written;
        self.records_read += other.records_read;
        self.records_kept += other.records_kept;
        self.tombstones_removed += other.tombstones_removed;
        self.aborted_removed += other.aborted_removed;
        self.markers_removed += other.markers_removed;
        self.busy_ms += other.busy_ms;
    }
}

/// A key hash that is already uniform: the map uses its low 64 bits as the hash.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

/// Key hash -> latest offset of that key in the dirty section. A hash map (the one in the
/// crate): it is only looked up, never iterated, so its order cannot leak into the result.
#[allow(clippy::disallowed_types)]
pub(crate) type OffsetMap = std::collections::HashMap<u128, i64, BuildHasherDefault<PassThrough>>;

/// The 128-bit hash the offset map keys records by (a collision would need 2^64 keys to be
/// likely; Kafka uses MD5's 128 bits the same way).
pub(crate) fn key_hash(key: &[u8]) -> u128 {
    twox_hash::XxHash3_128::oneshot(key)
}

/// Aborted transactions' ranges `(first offset, marker offset)`, by producer.
#[derive(Debug, Default)]
pub(crate) struct Aborted(BTreeMap<i64, Vec<(i64, i64)>>);

impl Aborted {
    /// Whether `h` is a transactional batch inside one of its producer's aborted ranges.
    pub(crate) fn holds(&self, h: &BatchHeader<'_>) -> bool {
        h.is_transactional()
            && self
                .0
                .get(&h.producer_id())
                .is_some_and(|ranges| ranges.iter().any(|(first, last)| (*first..=*last).contains(&h.base_offset())))
    }
}

/// What a log offers the cleaner now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cleanable {
    /// The cleaner checkpoint: the dirty section starts here.
    pub(crate) first_dirty: i64,
    /// The first uncleanable offset, rounded down to a segment base.
    pub(crate) end: i64,
    /// Bytes of the clean section.
    pub(crate) clean_bytes: u64,
    /// Bytes of the dirty section (below `end`).
    pub(crate) dirty_bytes: u64,
    /// The first dirty segment is older than `max.compaction.lag.ms`.
    pub(crate) forced: bool,
}

impl Cleanable {
    /// Dirty bytes over all cleanable bytes.
    pub(crate) fn dirty_ratio(&self) -> f64 {
        let total = self.clean_bytes + self.dirty_bytes;
        if total == 0 {
            0.0
        } else {
            self.dirty_bytes as f64 / total as f64
        }
    }

    /// Whether the log should be cleaned now with `min.cleanable.dirty.ratio` (millionths).
    pub(crate) fn due(&self, min_ratio_ppm: u32) -> bool {
        self.dirty_bytes > 0 && (self.forced || self.dirty_ratio() * 1e6 >= f64::from(min_ratio_ppm))
    }
}

/// One pass over one log, prepared under the partition lock and run without it.
#[derive(Debug)]
pub(crate) struct CleanJob {
    dir: Option<Dir>,
    /// The segments from the log start to `end`, with their last append times.
    segments: Vec<(SegmentSnapshot, i64)>,
    first_dirty: i64,
    end: i64,
    aborted: Aborted,
    producer_last: BTreeMap<i64, i64>,
    now_ms: i64,
    delete_retention_ms: i64,
    segment_bytes: u64,
    max_map_entries: usize,
}

/// A group of old segments and the new segment that replaces them.
#[derive(Debug)]
pub(crate) struct CleanedGroup {
    /// `(base offset, size)` of each replaced segment: the swap checks they are unchanged.
    replaced: Vec<(i64, u64)>,
    /// The end of the offsets the group covers (the next segment's base).
    end: i64,
    /// The new segment (its files carry the `.cleaned` suffix until the swap).
    segment: Segment,
}

/// What a pass produced, to swap in.
#[derive(Debug)]
pub(crate) struct CleanOutput {
    groups: Vec<CleanedGroup>,
    /// The new cleaner checkpoint.
    pub(crate) end: i64,
    /// What the pass did.
    pub(crate) stats: CleanerStats,
}

impl CleanOutput {
    /// Deletes the new segments' files (the pass is abandoned).
    pub(crate) fn discard(self) {
        for g in self.groups {
            g.segment.delete_cleaned_files();
        }
    }
}

impl CleanJob {
    /// Runs the pass: builds the offset map, then writes the new segments.
    pub(crate) fn run(self) -> Result<CleanOutput> {
        let mut stats = CleanerStats { passes: 1, ..Default::default() };
        let (map, end) = self.build_map()?;
        let segs: Vec<&(SegmentSnapshot, i64)> = self.segments.iter().filter(|(s, _)| s.base_offset < end).collect();
        let mut pass = Pass {
            map: &map,
            now_ms: self.now_ms,
            delete_retention_ms: self.delete_retention_ms,
            aborted: &self.aborted,
            producer_last: &self.producer_last,
            open_txns: BTreeMap::new(),
        };
        let mut groups: Vec<CleanedGroup> = Vec::new();
        let mut i = 0;
        while i < segs.len() {
            let first = i;
            let mut bytes = segs[i].0.size;
            i += 1;
            while i < segs.len()
                && bytes + segs[i].0.size <= self.segment_bytes
                && segs[i].0.next_offset - segs[first].0.base_offset < i64::from(i32::MAX)
            {
                bytes += segs[i].0.size;
                i += 1;
            }
            let group_end = segs.get(i).map_or(end, |(s, _)| s.base_offset);
            match self.clean_group(&segs[first..i], group_end, &mut pass, &mut stats) {
                Ok(g) => groups.push(g),
                Err(e) => {
                    CleanOutput { groups, end, stats }.discard();
                    return Err(e);
                }
            }
        }
        Ok(CleanOutput { groups, end, stats })
    }

    /// The offset map over the dirty section, and where the pass ends (earlier than `end` when
    /// the map fills up; never before the first dirty segment's end).
    fn build_map(&self) -> Result<(OffsetMap, i64)> {
        let mut map = OffsetMap::default();
        let mut end = self.end;
        let mut first = true;
        for (s, _) in self.segments.iter().filter(|(s, _)| s.next_offset > self.first_dirty) {
            if !first && map.len() >= self.max_map_entries {
                end = s.base_offset;
                break;
            }
            first = false;
            s.for_each_batch(0, |h, bytes| {
                if h.is_control() || self.aborted.holds(&h) {
                    return Ok(true);
                }
                let res = records::for_each_record(bytes, MAX_DECOMPRESSED_BYTES, |r| {
                    if let Some(k) = r.key {
                        if r.offset >= self.first_dirty {
                            map.insert(key_hash(k), r.offset);
                        }
                    }
                    true
                });
                if let Err(e) = res {
                    tracing::warn!(offset = h.base_offset(), error = %e, "log cleaner skips a batch it cannot read");
                }
                Ok(true)
            })?;
        }
        Ok((map, end))
    }

    /// Writes the kept batches of `group` into one new segment.
    fn clean_group(
        &self,
        group: &[&(SegmentSnapshot, i64)],
        end: i64,
        pass: &mut Pass<'_>,
        stats: &mut CleanerStats,
    ) -> Result<CleanedGroup> {
        let base = group[0].0.base_offset;
        let mut seg = Segment::create_cleaned(self.dir.as_ref(), base, self.now_ms)?;
        let written = (|| -> Result<()> {
            let mut out: Vec<u8> = Vec::with_capacity(WRITE_CHUNK + (64 << 10));
            for (s, _) in group {
                s.for_each_batch(0, |h, bytes| {
                    stats.bytes_read += bytes.len() as u64;
                    match pass.filter(&h, bytes, stats) {
                        Fate::Keep => out.extend_from_slice(bytes),
                        Fate::Rebuilt(b) => out.extend_from_slice(&b),
                        Fate::Drop => {}
                    }
                    if out.len() >= WRITE_CHUNK {
                        stats.bytes_written += out.len() as u64;
                        seg.append(&out, self.now_ms)?;
                        out.clear();
                    }
                    Ok(true)
                })?;
            }
            stats.bytes_written += out.len() as u64;
            seg.append(&out, self.now_ms)?;
            seg.flush()
        })();
        if let Err(e) = written {
            seg.delete_cleaned_files();
            return Err(e);
        }
        // `next_offset` stays after the last batch kept: a fetch in the gap after it (or at an
        // emptied segment's base) moves on to the next segment instead of reading nothing.
        seg.last_append_ms = group.iter().map(|(_, t)| *t).max().unwrap_or(self.now_ms);
        seg.created_ms = seg.last_append_ms;
        Ok(CleanedGroup { replaced: group.iter().map(|(s, _)| (s.base_offset, s.size)).collect(), end, segment: seg })
    }
}

impl PartitionLog {
    /// What the cleaner could clean now, or `None` for a log that is not compacted.
    pub(crate) fn cleanable(&self, now_ms: i64) -> Option<Cleanable> {
        if !self.config.compact {
            return None;
        }
        let first_dirty = self.cleaned_to.max(self.log_start_offset);
        let min_lag = self.config.min_compaction_lag_ms;
        let lag_bound = self
            .segments
            .values()
            .filter(|s| s.next_offset > first_dirty)
            .find(|s| {
                let newest = if s.max_timestamp >= 0 { s.max_timestamp } else { s.last_append_ms };
                min_lag > 0 && newest > now_ms.saturating_sub(min_lag)
            })
            .map_or(i64::MAX, |s| s.base_offset);
        let limit = self.active().base_offset.min(self.last_stable_offset()).min(lag_bound);
        // Whole segments only: the pass ends at the first segment reaching past the limit.
        let end = self.segments.values().find(|s| s.next_offset > limit).map_or(limit, |s| s.base_offset);
        let end = end.min(self.active().base_offset);
        let (mut clean_bytes, mut dirty_bytes) = (0u64, 0u64);
        let mut forced = false;
        let mut first_dirty_seen = false;
        for s in self.segments.values().take_while(|s| s.base_offset < end) {
            if s.next_offset <= first_dirty {
                clean_bytes += s.size;
            } else {
                dirty_bytes += s.size;
                if !first_dirty_seen && s.size > 0 {
                    first_dirty_seen = true;
                    forced = now_ms.saturating_sub(s.created_ms) > self.config.max_compaction_lag_ms;
                }
            }
        }
        Some(Cleanable { first_dirty, end, clean_bytes, dirty_bytes, forced })
    }

    /// Prepares a pass over the log as it is now (`None` when there is nothing dirty to
    /// clean), with an offset map of at most `max_map_entries` keys.
    pub(crate) fn prepare_clean(&self, now_ms: i64, max_map_entries: usize) -> Option<CleanJob> {
        let c = self.cleanable(now_ms)?;
        if c.dirty_bytes == 0 {
            return None;
        }
        Some(CleanJob {
            dir: self.dir.clone(),
            segments: self
                .segments
                .values()
                .take_while(|s| s.base_offset < c.end)
                .map(|s| (s.snapshot(), s.last_append_ms))
                .collect(),
            first_dirty: c.first_dirty,
            end: c.end,
            aborted: Aborted(self.producers.aborted_by_producer()),
            producer_last: self.producers.last_batch_offsets(),
            now_ms,
            delete_retention_ms: self.config.delete_retention_ms,
            segment_bytes: self.config.segment_bytes,
            max_map_entries: max_map_entries.max(1),
        })
    }

    /// Swaps a finished pass in: each group whose old segments are all still there, unchanged
    /// and below the active segment replaces them; a group that no longer matches (retention or
    /// DeleteRecords removed a segment meanwhile) is dropped. Moves the cleaner checkpoint.
    pub(crate) fn finish_clean(&mut self, out: CleanOutput) -> Result<CleanerStats> {
        let active = self.active().base_offset;
        let mut swapped_all = true;
        let mut groups = out.groups.into_iter();
        while let Some(g) = groups.next() {
            let intact = g
                .replaced
                .iter()
                .all(|(base, size)| *base < active && self.segments.get(base).is_some_and(|s| s.size == *size));
            if !intact {
                swapped_all = false;
                g.segment.delete_cleaned_files();
                continue;
            }
            let old: Vec<Segment> = g.replaced.iter().filter_map(|(b, _)| self.segments.remove(b)).collect();
            if let Some(dir) = &self.dir {
                if let Err(e) = swap::swap_in(dir, g.segment.base_offset, g.end, &old) {
                    // The files are where recovery expects them; put the old segments back
                    // in memory so the log stays readable, and give up on the rest.
                    for s in old {
                        self.segments.insert(s.base_offset, s);
                    }
                    g.segment.delete_cleaned_files();
                    for rest in groups {
                        rest.segment.delete_cleaned_files();
                    }
                    return Err(e);
                }
            }
            self.segments.insert(g.segment.base_offset, g.segment);
        }
        if swapped_all && out.end > self.cleaned_to {
            self.cleaned_to = out.end;
            if let Some(dir) = &self.dir {
                dir.write_atomic(CHECKPOINT_FILE, out.end.to_string().as_bytes())?;
            }
        }
        Ok(out.stats)
    }

    /// Runs one whole pass now, holding the log (tests and the simulation).
    #[cfg(test)]
    pub(crate) fn clean_now(&mut self, now_ms: i64, max_map_entries: usize) -> Result<Option<CleanerStats>> {
        let Some(job) = self.prepare_clean(now_ms, max_map_entries) else { return Ok(None) };
        let out = job.run()?;
        self.finish_clean(out).map(Some)
    }
}
