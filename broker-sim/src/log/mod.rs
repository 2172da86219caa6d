//! Partition logs: an ordered set of segments with offsets, retention and a leader-epoch cache.
//!
//! State and invariants of a [`PartitionLog`]:
//! - segments are keyed by base offset, contiguous in offsets except where records were
//!   deleted; the last one is the active segment and is the only one appended to;
//! - `log_start_offset <= log_end_offset()`; retention and DeleteRecords only move the start
//!   forward and only delete whole segments;
//! - the leader-epoch cache holds `(epoch, first offset)` pairs with strictly increasing epochs
//!   and non-decreasing offsets.

pub(crate) mod batch;
mod chunked;
pub(crate) mod cleaner;
pub(crate) mod internal;
pub(crate) mod producers;
pub(crate) mod records;
pub(crate) mod segment;

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;

use crate::error::{Error, Result};
use crate::storage::Dir;
use batch::{BatchHeader, ControlType};
use producers::ProducerStates;
use segment::{ReadPlan, Segment};

/// The log settings of one partition (a view of its topic config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogConfig {
    /// `segment.bytes`: roll when the active segment would grow past this.
    pub(crate) segment_bytes: u64,
    /// `segment.ms`: roll when the active segment is older than this.
    pub(crate) segment_ms: i64,
    /// `retention.ms`: delete segments whose newest record is older (-1 = forever).
    pub(crate) retention_ms: i64,
    /// `retention.bytes`: delete old segments while the log is larger (-1 = unlimited).
    pub(crate) retention_bytes: i64,
    /// `cleanup.policy` contains `delete`.
    pub(crate) delete_enabled: bool,
    /// `cleanup.policy` contains `compact`.
    pub(crate) compact: bool,
    /// `delete.retention.ms`: how long the cleaner keeps tombstones and data-less markers
    /// after it first sees them.
    pub(crate) delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`, in millionths.
    pub(crate) min_cleanable_ratio_ppm: u32,
    /// `min.compaction.lag.ms`: a record stays uncompacted at least this long.
    pub(crate) min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a log whose oldest dirty record is older is cleaned whatever
    /// its dirty ratio.
    pub(crate) max_compaction_lag_ms: i64,
    /// `flush.messages`: sync the log once this many records were appended since the last
    /// sync (1: before every append is acknowledged).
    pub(crate) flush_messages: i64,
    /// `flush.ms`: sync the log when its oldest unsynced record is this old.
    pub(crate) flush_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3_600_000,
            retention_ms: 7 * 24 * 3_600_000,
            retention_bytes: -1,
            delete_enabled: true,
            compact: false,
            delete_retention_ms: 86_400_000,
            min_cleanable_ratio_ppm: 500_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
        }
    }
}

/// Where appended batches landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AppendInfo {
    /// Offset of the first record appended.
    pub(crate) base_offset: i64,
    /// Offset of the last record appended.
    pub(crate) last_offset: i64,
}

/// Why a fetch could not be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The offset is below the log start or above the log end.
    OffsetOutOfRange,
}

/// A planned fetch: the I/O runs outside the partition lock.
#[derive(Debug)]
pub(crate) struct FetchPlan {
    read: Option<ReadPlan>,
    fetch_offset: i64,
    upper: i64,
    max_bytes: usize,
}

impl FetchPlan {
    /// Reads and trims to whole batches containing or following the fetch offset, below the
    /// upper bound, within `max_bytes` except that the first batch is always whole (KIP-74).
    pub(crate) fn execute(self) -> Result<Bytes> {
        let Some(read) = self.read else { return Ok(Bytes::new()) };
        let again = match &read {
            ReadPlan::File { file, pos, .. } => Some((std::sync::Arc::clone(file), *pos)),
            ReadPlan::Ready(_) => None,
        };
        let chunk = read.read()?;
        match select_batches(&chunk, self.fetch_offset, self.upper, self.max_bytes) {
            Selection::Range(start, end) => Ok(chunk.slice(start..end)),
            // A file read covers the index interval before the fetch offset.
            Selection::AllBefore => Ok(Bytes::new()),
            Selection::NeedWhole { start, len } => match again {
                Some((file, pos)) => ReadPlan::File { file, pos: pos + start as u64, len }.read(),
                None => Ok(Bytes::new()),
            },
        }
    }
}

enum Selection {
    Range(usize, usize),
    NeedWhole {
        start: usize,
        len: usize,
    },
    /// Every batch read ends before the fetch offset: read on after them.
    AllBefore,
}

fn select_batches(chunk: &[u8], fetch_offset: i64, upper: i64, max_bytes: usize) -> Selection {
    let mut start = None;
    let mut end = 0usize;
    let mut pos = 0usize;
    while pos < chunk.len() {
        let Ok(h) = BatchHeader::parse(&chunk[pos..]) else { break };
        let total = h.total_len();
        if h.base_offset() >= upper {
            break;
        }
        if h.last_offset() < fetch_offset {
            pos += total;
            continue;
        }
        match start {
            None => {
                if pos + total > chunk.len() {
                    return Selection::NeedWhole { start: pos, len: total };
                }
                start = Some(pos);
                end = pos + total;
            }
            Some(s) => {
                if pos + total > chunk.len() || pos + total - s > max_bytes {
                    break;
                }
                end = pos + total;
            }
        }
        pos += total;
    }
    match start {
        Some(s) => Selection::Range(s, end),
        None if pos > 0 && pos == chunk.len() => Selection::AllBefore,
        None => Selection::Range(0, 0),
    }
}

/// The log of one partition.
#[derive(Debug)]
pub(crate) struct PartitionLog {
    dir: Option<Dir>,
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    epochs: Vec<(i32, i64)>,
    /// Idempotent and transactional producer state (rebuilt from the log on open).
    pub(crate) producers: ProducerStates,
    /// Settings; replaced by [`PartitionLog::set_config`].
    pub(crate) config: LogConfig,
    /// The cleaner checkpoint: offsets below it were compacted by the last pass.
    cleaned_to: i64,
    /// Records appended since the last sync, and when the first of them was.
    unflushed: (i64, i64),
}

const EPOCH_FILE: &str = "leader-epoch-checkpoint";
const START_FILE: &str = "log-start-offset";

impl PartitionLog {
    /// Opens (or creates) the log in `dir`; `None` keeps it in memory.
    pub(crate) fn open(dir: Option<Dir>, config: LogConfig, now_ms: i64) -> Result<Self> {
        let mut log = PartitionLog {
            dir,
            segments: BTreeMap::new(),
            log_start_offset: 0,
            epochs: Vec::new(),
            producers: ProducerStates::default(),
            config,
            cleaned_to: 0,
            unflushed: (0, 0),
        };
        if let Some(dir) = log.dir.clone() {
            dir.create()?;
            cleaner::swap::recover(&dir)?;
            let listed = segment::list_segments(&dir)?;
            let last = listed.last().map(|(b, _)| *b);
            for (base, mtime) in listed {
                let (seg, truncated) = Segment::open(&dir, base, mtime, Some(base) == last)?;
                if truncated > 0 {
                    tracing::warn!(?dir, base, truncated, "truncated a torn segment tail");
                }
                log.segments.insert(base, seg);
            }
            log.epochs = read_epochs(dir.read_string(EPOCH_FILE));
            if let Some(first) = log.segments.keys().next() {
                log.log_start_offset = *first;
            }
            if let Some(s) = dir.read_string(START_FILE) {
                if let Ok(v) = s.trim().parse::<i64>() {
                    log.log_start_offset = log.log_start_offset.max(v);
                }
            }
            if let Some(last) = log.segments.values().next_back() {
                let leo = last.next_offset;
                log.log_start_offset = log.log_start_offset.min(leo);
                log.epochs.retain(|(_, off)| *off <= leo);
                if let Some(s) = dir.read_string(cleaner::CHECKPOINT_FILE) {
                    log.cleaned_to = s.trim().parse::<i64>().unwrap_or(0).clamp(0, leo);
                }
            }
        }
        if log.segments.is_empty() {
            let seg = Segment::create(log.dir.as_ref(), log.log_start_offset, now_ms)?;
            log.segments.insert(log.log_start_offset, seg);
        }
        log.rebuild_producers(now_ms)?;
        Ok(log)
    }

    /// Replays every batch header (and marker) to rebuild the producer state after a restart.
    fn rebuild_producers(&mut self, now_ms: i64) -> Result<()> {
        let mut states = ProducerStates::default();
        for seg in self.segments.values() {
            self.scan_segment(seg, 0, |h, bytes| {
                observe(&mut states, &h, bytes, now_ms);
                true
            })?;
        }
        states.truncate_before(self.log_start_offset);
        self.producers = states;
        Ok(())
    }

    /// The last stable offset: below it every transaction is decided (read_committed bound).
    pub(crate) fn last_stable_offset(&self) -> i64 {
        self.producers.last_stable_offset(self.log_end_offset())
    }

    /// Appends a transaction marker for `producer_id`; returns its offset.
    pub(crate) fn append_marker(
        &mut self,
        producer_id: i64,
        epoch: i16,
        kind: ControlType,
        coordinator_epoch: i32,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<i64> {
        let mut b = batch::control_batch(producer_id, epoch, kind, coordinator_epoch, now_ms);
        Ok(self.append(&mut b, leader_epoch, now_ms)?.base_offset)
    }

    fn active(&self) -> &Segment {
        self.segments.values().next_back().expect("a log always has an active segment")
    }

    /// Offset the next appended record gets.
    pub(crate) fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    /// First offset still in the log.
    pub(crate) fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// Total bytes of all segments.
    pub(crate) fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }

    /// Number of segments.
    #[cfg(test)]
    pub(crate) fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Latest leader epoch written, or -1.
    pub(crate) fn latest_epoch(&self) -> i32 {
        self.epochs.last().map_or(-1, |e| e.0)
    }

    /// Replaces the settings.
    pub(crate) fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// Appends validated batches (back to back in `batches`): assigns offsets by patching each
    /// base offset and the leader epoch, rolls the active segment when needed, and writes.
    pub(crate) fn append(&mut self, batches: &mut [u8], leader_epoch: i32, now_ms: i64) -> Result<AppendInfo> {
        let base_offset = self.log_end_offset();
        let mut next = base_offset;
        let mut pos = 0usize;
        while pos < batches.len() {
            let (total, delta) = {
                let h = BatchHeader::parse(&batches[pos..])
                    .map_err(|e| Error::internal(format!("append of unvalidated batch: {e}")))?;
                (h.total_len(), h.last_offset_delta())
            };
            batch::patch_offset_and_epoch(&mut batches[pos..pos + total], next, leader_epoch);
            if let Ok(h) = BatchHeader::parse(&batches[pos..pos + total]) {
                observe(&mut self.producers, &h, &batches[pos..pos + total], now_ms);
            }
            next += i64::from(delta) + 1;
            pos += total;
        }
        self.maybe_roll(batches.len() as u64, now_ms)?;
        if leader_epoch > self.latest_epoch() {
            self.epochs.push((leader_epoch, base_offset));
            self.write_epochs()?;
        }
        let active = self.segments.values_mut().next_back().expect("active segment");
        active.append(batches, now_ms)?;
        if self.unflushed.0 == 0 {
            self.unflushed.1 = now_ms;
        }
        self.unflushed.0 += next - base_offset;
        if self.unflushed.0 >= self.config.flush_messages {
            self.flush()?;
        }
        Ok(AppendInfo { base_offset, last_offset: next - 1 })
    }

    fn maybe_roll(&mut self, incoming: u64, now_ms: i64) -> Result<()> {
        let active = self.active();
        let full = active.size > 0 && active.size + incoming > self.config.segment_bytes;
        let old = active.size > 0 && now_ms - active.created_ms >= self.config.segment_ms;
        let index_limit = active.size + incoming > u64::from(u32::MAX) - 1;
        // A compacted log rolls when its active segment holds records older than
        // max.compaction.lag.ms, so that the cleaner can reach them (KIP-354).
        let lagging = self.config.compact
            && active.size > 0
            && now_ms.saturating_sub(active.created_ms) >= self.config.max_compaction_lag_ms;
        if full || old || index_limit || lagging {
            self.roll(now_ms)?;
        }
        Ok(())
    }

    /// Starts a new active segment at the log end offset.
    pub(crate) fn roll(&mut self, now_ms: i64) -> Result<()> {
        let base = self.log_end_offset();
        if self.active().base_offset == base {
            return Ok(());
        }
        self.flush()?;
        let seg = Segment::create(self.dir.as_ref(), base, now_ms)?;
        self.segments.insert(base, seg);
        Ok(())
    }

    /// Plans a read of whole batches from `offset`, below `upper` (the high watermark or the
    /// last stable offset), of about `max_bytes`.
    pub(crate) fn plan_fetch(
        &self,
        offset: i64,
        max_bytes: usize,
        upper: i64,
    ) -> std::result::Result<FetchPlan, ReadError> {
        let leo = self.log_end_offset();
        if offset < self.log_start_offset || offset > leo {
            return Err(ReadError::OffsetOutOfRange);
        }
        let empty = FetchPlan { read: None, fetch_offset: offset, upper, max_bytes };
        if offset >= upper {
            return Ok(empty);
        }
        // The segment holding `offset`, or if it falls in a gap (records the cleaner removed,
        // a segment it emptied) the next one that holds anything.
        let seg = self
            .segments
            .range(..=offset)
            .next_back()
            .map(|(_, s)| s)
            .filter(|s| offset < s.next_offset)
            .or_else(|| self.segments.range(offset + 1..).map(|(_, s)| s).find(|s| s.size > 0));
        let Some(seg) = seg else { return Ok(empty) };
        let pos = seg.index_lookup(offset);
        let len = max_bytes.saturating_add(segment::INDEX_INTERVAL_BYTES as usize * 2);
        let plan = seg.plan_read(pos, len);
        let plan = match plan {
            ReadPlan::Ready(mut bytes) => {
                // In memory: trim now so a large first batch is never cut. A read ends with
                // the chunk holding its start, which may come before the fetch offset's batch.
                let mut at = pos;
                let trimmed = loop {
                    match select_batches(&bytes, offset, upper, max_bytes) {
                        Selection::Range(s, e) => break bytes.slice(s..e),
                        Selection::NeedWhole { start, len } => {
                            break seg.read_now(at + start as u64, len).map_err(|_| ReadError::OffsetOutOfRange)?
                        }
                        Selection::AllBefore => {
                            at += bytes.len() as u64;
                            bytes = seg.read_now(at, len).map_err(|_| ReadError::OffsetOutOfRange)?;
                        }
                    }
                };
                return Ok(FetchPlan {
                    read: Some(ReadPlan::Ready(trimmed)),
                    fetch_offset: i64::MIN,
                    upper: i64::MAX,
                    max_bytes: usize::MAX,
                });
            }
            file => file,
        };
        Ok(FetchPlan { read: Some(plan), fetch_offset: offset, upper, max_bytes })
    }

    /// Calls `f` with each batch from position `pos` (a batch start) of `seg` on, until it
    /// returns `false`.
    fn scan_segment(&self, seg: &Segment, pos: u64, mut f: impl FnMut(BatchHeader<'_>, &[u8]) -> bool) -> Result<()> {
        seg.snapshot().for_each_batch(pos, |h, bytes| Ok(f(h, bytes)))
    }

    /// First offset whose record timestamp is >= `ts`, with that timestamp (ListOffsets by time).
    pub(crate) fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>> {
        for seg in self.segments.values() {
            if seg.max_timestamp < ts {
                continue;
            }
            let mut found = None;
            let start = seg.time_lookup(ts);
            self.scan_segment(seg, start, |h, bytes| {
                if h.max_timestamp() < ts || h.last_offset() < self.log_start_offset {
                    return true;
                }
                found = first_record_at_or_after(bytes, ts, self.log_start_offset);
                found.is_none()
            })?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Offset and timestamp of the record with the largest timestamp (ListOffsets -3).
    pub(crate) fn max_timestamp_offset(&self) -> Result<Option<(i64, i64)>> {
        let Some(seg) = self.segments.values().filter(|s| s.size > 0).max_by_key(|s| s.max_timestamp) else {
            return Ok(None);
        };
        let target = seg.max_timestamp;
        let mut found = None;
        self.scan_segment(seg, 0, |h, bytes| {
            if h.max_timestamp() == target {
                found =
                    first_record_at_or_after(bytes, target, self.log_start_offset).or(Some((h.last_offset(), target)));
                return false;
            }
            true
        })?;
        Ok(found)
    }

    /// End offset of `epoch` per the leader-epoch cache: `(epoch found, end offset)`.
    pub(crate) fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let leo = self.log_end_offset();
        match self.epochs.iter().rposition(|(e, _)| *e <= epoch) {
            None => (-1, -1),
            Some(i) => {
                let found = self.epochs[i].0;
                let end = self.epochs.get(i + 1).map_or(leo, |(_, off)| *off);
                (found, end)
            }
        }
    }

    /// Moves the log start to `offset` (DeleteRecords), deleting segments entirely below it.
    pub(crate) fn delete_records_before(&mut self, offset: i64, now_ms: i64) -> Result<i64> {
        let offset = offset.min(self.log_end_offset());
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.log_start_offset = offset;
        if let Some(dir) = &self.dir {
            dir.write_atomic(START_FILE, offset.to_string().as_bytes())?;
        }
        self.producers.truncate_before(offset);
        self.drop_segments_below(offset, now_ms)?;
        Ok(self.log_start_offset)
    }

    fn drop_segments_below(&mut self, offset: i64, now_ms: i64) -> Result<()> {
        let doomed: Vec<i64> = self
            .segments
            .values()
            .filter(|s| s.next_offset <= offset && s.base_offset < offset)
            .map(|s| s.base_offset)
            .collect();
        for base in doomed {
            if self.segments.len() == 1 {
                // Keep an active segment: start a fresh one at the log end first.
                let leo = self.log_end_offset();
                let seg = Segment::create(self.dir.as_ref(), leo, now_ms)?;
                self.segments.insert(leo, seg);
            }
            if let Some(seg) = self.segments.remove(&base) {
                seg.delete_files();
            }
        }
        Ok(())
    }

    /// Applies `retention.ms` and `retention.bytes`: deletes whole old segments (never the
    /// active one unless it has expired, in which case the log rolls first). Returns how many
    /// segments were deleted.
    pub(crate) fn apply_retention(&mut self, now_ms: i64) -> Result<usize> {
        if !self.config.delete_enabled {
            return Ok(0);
        }
        let mut deleted = 0;
        if self.config.retention_ms >= 0 {
            let retention_ms = self.config.retention_ms;
            let expired = move |s: &Segment| {
                let newest = if s.max_timestamp >= 0 { s.max_timestamp } else { s.last_append_ms };
                s.size > 0 && now_ms - newest > retention_ms
            };
            if expired(self.active()) {
                self.roll(now_ms)?;
            }
            let doomed: Vec<i64> = self
                .segments
                .values()
                .take(self.segments.len() - 1)
                .take_while(|s| expired(s))
                .map(|s| s.base_offset)
                .collect();
            deleted += doomed.len();
            for base in doomed {
                self.remove_oldest(base)?;
            }
        }
        if self.config.retention_bytes >= 0 {
            let mut excess = self.size_bytes() as i64 - self.config.retention_bytes;
            while self.segments.len() > 1 {
                let first = self.segments.values().next().expect("segments");
                if excess - (first.size as i64) < 0 {
                    break;
                }
                excess -= first.size as i64;
                let base = first.base_offset;
                self.remove_oldest(base)?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    fn remove_oldest(&mut self, base: i64) -> Result<()> {
        if let Some(seg) = self.segments.remove(&base) {
            seg.delete_files();
        }
        let first = self.segments.values().next().map_or(self.log_end_offset(), |s| s.base_offset);
        if first > self.log_start_offset {
            self.log_start_offset = first;
            self.producers.truncate_before(first);
            if let Some(dir) = &self.dir {
                dir.write_atomic(START_FILE, first.to_string().as_bytes())?;
            }
        }
        Ok(())
    }

    /// Syncs the records appended since the last sync (older segments were synced when they
    /// rolled).
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.active().flush()?;
        self.unflushed = (0, 0);
        Ok(())
    }

    /// Syncs if the oldest unsynced record is older than `flush.ms`; returns whether it did.
    pub(crate) fn flush_if_due(&mut self, now_ms: i64) -> Result<bool> {
        let (count, since) = self.unflushed;
        if count == 0 || now_ms.saturating_sub(since) < self.config.flush_ms {
            return Ok(false);
        }
        self.flush().map(|()| true)
    }

    /// Deletes the log directory (topic deletion).
    pub(crate) fn delete(self) {
        if let Some(dir) = &self.dir {
            let _ = dir.fs.remove_dir_all(&dir.path);
        }
    }

    /// Reads every record (decoded) from `from` on; used to replay internal topics at start-up.
    pub(crate) fn read_all_records(&self, from: i64) -> Result<Vec<kafka_protocol::records::Record>> {
        let mut out = Vec::new();
        for seg in self.segments.values() {
            if seg.next_offset <= from {
                continue;
            }
            let mut err = None;
            self.scan_segment(seg, 0, |_h, bytes| {
                let mut buf = Bytes::copy_from_slice(bytes);
                match RecordBatchDecoder::decode(&mut buf) {
                    Ok(set) => out.extend(set.records.into_iter().filter(|r| r.offset >= from)),
                    Err(e) => err = Some(e.to_string()),
                }
                err.is_none()
            })?;
            if let Some(e) = err {
                return Err(Error::Corrupt(format!("internal log batch does not decode: {e}")));
            }
        }
        Ok(out)
    }

    fn write_epochs(&self) -> Result<()> {
        if let Some(dir) = &self.dir {
            let mut s = String::from("0\n");
            s.push_str(&format!("{}\n", self.epochs.len()));
            for (e, off) in &self.epochs {
                s.push_str(&format!("{e} {off}\n"));
            }
            dir.write_atomic(EPOCH_FILE, s.as_bytes())?;
        }
        Ok(())
    }
}

/// Feeds one stored batch (offsets assigned) to the producer state.
fn observe(states: &mut ProducerStates, h: &BatchHeader<'_>, bytes: &[u8], now_ms: i64) {
    if h.producer_id() < 0 {
        return;
    }
    if h.is_control() {
        if let Some(kind) = batch::control_type(bytes) {
            states.on_marker(h.producer_id(), h.producer_epoch(), kind, h.base_offset(), now_ms);
        }
    } else {
        states.on_batch(h, now_ms);
    }
}

/// Finds the first record at or after `ts` (and at or after `min_offset`) in a stored batch,
/// reading its records in place or decompressing them into at most
/// [`records::MAX_DECOMPRESSED_BYTES`]. A batch whose records cannot be read yields `None`.
fn first_record_at_or_after(bytes: &[u8], ts: i64, min_offset: i64) -> Option<(i64, i64)> {
    let mut found = None;
    let res = records::for_each_record(bytes, records::MAX_DECOMPRESSED_BYTES, |r| {
        if r.timestamp >= ts && r.offset >= min_offset {
            found = Some((r.offset, r.timestamp));
            return false;
        }
        true
    });
    if let Err(e) = res {
        tracing::warn!(error = %e, "cannot read the records of a stored batch");
    }
    found
}

fn read_epochs(text: Option<String>) -> Vec<(i32, i64)> {
    let Some(s) = text else { return Vec::new() };
    s.lines()
        .skip(2)
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests;
