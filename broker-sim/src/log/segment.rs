//! One log segment: a file (or a memory buffer) of record batches, with a sparse offset index
//! and a sparse time index beside it.
//!
//! Files are named after the base offset, as Kafka names them:
//! `00000000000000000000.log`, `.index` (8-byte entries: relative offset u32, position u32),
//! `.timeindex` (12-byte entries: timestamp i64, relative offset u32).
//!
//! Invariants: `size` is the number of valid bytes; every index entry points at the start of a
//! batch whose base offset is the entry's offset; time index timestamps never decrease.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::batch::{self, BatchHeader};
use super::chunked::ChunkedBytes;
use crate::error::{Error, Result};
use crate::storage::{Dir, FsFile, OpenMode};

/// Bytes of batches between two index entries (Kafka's `index.interval.bytes`).
pub(crate) const INDEX_INTERVAL_BYTES: u64 = 4096;

/// Where a segment's bytes live.
#[derive(Debug)]
enum Storage {
    /// On disk; index files are appended as entries are created (`index_len` and
    /// `time_index_len` are their lengths).
    File {
        log: Arc<dyn FsFile>,
        index: Arc<dyn FsFile>,
        time_index: Arc<dyn FsFile>,
        index_len: u64,
        time_index_len: u64,
        dir: Dir,
    },
    /// In memory (fast tests, demos and benchmarks).
    Memory(ChunkedBytes),
}

/// A slice of a segment to read: either already in memory or a range of a file.
#[derive(Debug)]
pub(crate) enum ReadPlan {
    /// Bytes of an in-memory segment, shared without a copy.
    Ready(Bytes),
    /// Read `len` bytes at `pos` from `file` outside the lock.
    File { file: Arc<dyn FsFile>, pos: u64, len: usize },
}

impl ReadPlan {
    /// Performs the read.
    pub(crate) fn read(self) -> Result<Bytes> {
        match self {
            ReadPlan::Ready(b) => Ok(b),
            ReadPlan::File { file, pos, len } => {
                let mut buf = BytesMut::zeroed(len);
                file.read_exact_at(&mut buf, pos).map_err(|e| Error::io("reading segment", e))?;
                Ok(buf.freeze())
            }
        }
    }
}

/// Index entries a batch produced: (offset, position) and maybe (timestamp, offset).
type IndexEntries = ((i64, u32), Option<(i64, i64)>);

/// One segment of a partition log.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Offset of the first batch (also the file name).
    pub(crate) base_offset: i64,
    /// Offset after the last batch.
    pub(crate) next_offset: i64,
    /// Valid bytes.
    pub(crate) size: u64,
    /// Largest batch max-timestamp, or -1.
    pub(crate) max_timestamp: i64,
    /// Wall-clock time (ms) of the first append, for `segment.ms`.
    pub(crate) created_ms: i64,
    /// Wall-clock time (ms) of the last append, for retention of segments without timestamps.
    pub(crate) last_append_ms: i64,
    offset_index: Vec<(i64, u32)>,
    time_index: Vec<(i64, i64)>,
    bytes_since_index: u64,
    storage: Storage,
}

/// The name of a segment file: the base offset, 20 digits, and the extension.
pub(crate) fn file_name(base: i64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

/// The extensions of a segment's files.
pub(crate) const EXTENSIONS: [&str; 3] = ["log", "index", "timeindex"];

/// Suffix of the files of a segment the log cleaner is writing (see `cleaner::swap`).
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";

impl Segment {
    /// Creates an empty segment, on disk under `dir` or in memory when `dir` is `None`.
    pub(crate) fn create(dir: Option<&Dir>, base_offset: i64, now_ms: i64) -> Result<Self> {
        Self::create_named(dir, base_offset, now_ms, "")
    }

    /// Creates the empty segment the log cleaner writes into: its files carry
    /// [`CLEANED_SUFFIX`] until the cleaner swaps them in.
    pub(crate) fn create_cleaned(dir: Option<&Dir>, base_offset: i64, now_ms: i64) -> Result<Self> {
        Self::create_named(dir, base_offset, now_ms, CLEANED_SUFFIX)
    }

    fn create_named(dir: Option<&Dir>, base_offset: i64, now_ms: i64, suffix: &str) -> Result<Self> {
        let storage = match dir {
            None => Storage::Memory(ChunkedBytes::default()),
            Some(dir) => {
                let open = |ext: &str| {
                    dir.open(&(file_name(base_offset, ext) + suffix), OpenMode::CreateTruncate, "creating segment file")
                };
                Storage::File {
                    log: open("log")?,
                    index: open("index")?,
                    time_index: open("timeindex")?,
                    index_len: 0,
                    time_index_len: 0,
                    dir: dir.clone(),
                }
            }
        };
        Ok(Segment {
            base_offset,
            next_offset: base_offset,
            size: 0,
            max_timestamp: -1,
            created_ms: now_ms,
            last_append_ms: now_ms,
            offset_index: Vec::new(),
            time_index: Vec::new(),
            bytes_since_index: INDEX_INTERVAL_BYTES,
            storage,
        })
    }

    /// Opens an existing segment file, scanning it in 1 MiB chunks (never the whole file at
    /// once) to rebuild its indexes. With `verify` (the active segment, which an unclean
    /// shutdown may have left half-written) every batch's CRC is checked and a torn or corrupt
    /// tail is cut off. Returns the segment and the number of bytes truncated.
    pub(crate) fn open(dir: &Dir, base_offset: i64, mtime_ms: i64, verify: bool) -> Result<(Self, u64)> {
        const CHUNK: usize = 1 << 20;
        let file = dir.open(&file_name(base_offset, "log"), OpenMode::Existing, "opening segment file")?;
        let file_len = file.len().map_err(|e| Error::io("reading segment size", e))?;
        let mut seg = Segment::create(None, base_offset, mtime_ms)?;
        let mut valid: u64 = 0;
        let mut buf = Vec::new();
        'scan: while valid < file_len {
            let want = CHUNK.min((file_len - valid) as usize);
            buf.resize(want, 0);
            file.read_exact_at(&mut buf, valid).map_err(|e| Error::io("reading segment file", e))?;
            let mut consumed = 0usize;
            for (pos, h) in batch::iter_batches(&buf) {
                let whole = &buf[pos..pos + h.total_len()];
                if (verify && batch::validate(whole).is_err()) || h.magic() != 2 {
                    valid += pos as u64;
                    break 'scan;
                }
                seg.note_batch(valid + pos as u64, &h);
                consumed = pos + h.total_len();
            }
            if consumed == 0 {
                // A batch larger than the chunk, or a torn header at the end.
                let Ok(h) = BatchHeader::parse(&buf) else { break };
                let len = h.total_len() as u64;
                if valid + len > file_len {
                    break;
                }
                let mut whole = vec![0u8; len as usize];
                file.read_exact_at(&mut whole, valid).map_err(|e| Error::io("reading segment file", e))?;
                let Ok(h) = (if verify { batch::validate(&whole) } else { BatchHeader::parse(&whole) }) else { break };
                seg.note_batch(valid, &h);
                consumed = len as usize;
            }
            valid += consumed as u64;
        }
        let truncated = file_len - valid;
        if truncated > 0 {
            file.set_len(valid).map_err(|e| Error::io("truncating segment", e))?;
        }
        let rewrite = |ext: &str, bytes: Vec<u8>| -> Result<Arc<dyn FsFile>> {
            let f = dir.open(&file_name(base_offset, ext), OpenMode::CreateTruncate, "writing index file")?;
            f.write_all_at(&bytes, 0).map_err(|e| Error::io("writing index file", e))?;
            Ok(f)
        };
        let (index_bytes, time_bytes) = (seg.encode_offset_index(), seg.encode_time_index());
        let (index_len, time_index_len) = (index_bytes.len() as u64, time_bytes.len() as u64);
        let index = rewrite("index", index_bytes)?;
        let time_index = rewrite("timeindex", time_bytes)?;
        seg.storage = Storage::File { log: file, index, time_index, index_len, time_index_len, dir: dir.clone() };
        seg.last_append_ms = mtime_ms;
        Ok((seg, truncated))
    }

    fn encode_offset_index(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.offset_index.len() * 8);
        for (off, pos) in &self.offset_index {
            out.extend_from_slice(&((off - self.base_offset) as u32).to_be_bytes());
            out.extend_from_slice(&pos.to_be_bytes());
        }
        out
    }

    fn encode_time_index(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.time_index.len() * 12);
        for (ts, off) in &self.time_index {
            out.extend_from_slice(&ts.to_be_bytes());
            out.extend_from_slice(&((off - self.base_offset) as u32).to_be_bytes());
        }
        out
    }

    /// Records a batch that now sits at `pos`: advances offsets, timestamps and the indexes.
    /// Returns the new index entries, if any.
    fn note_batch(&mut self, pos: u64, h: &BatchHeader<'_>) -> Option<IndexEntries> {
        let len = h.total_len() as u64;
        self.next_offset = h.last_offset() + 1;
        self.size = pos + len;
        let mut entry = None;
        if self.bytes_since_index >= INDEX_INTERVAL_BYTES {
            let off_entry = (h.base_offset(), pos as u32);
            self.offset_index.push(off_entry);
            let ts = h.max_timestamp();
            let time_entry = if ts > self.time_index.last().map_or(-1, |e| e.0) {
                self.time_index.push((ts, h.base_offset()));
                Some((ts, h.base_offset()))
            } else {
                None
            };
            self.bytes_since_index = 0;
            entry = Some((off_entry, time_entry));
        }
        self.bytes_since_index += len;
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp());
        entry
    }

    /// Appends batches (already validated and patched) whose headers are `headers`.
    /// `bytes` holds the batches back to back in the same order.
    pub(crate) fn append(&mut self, bytes: &[u8], now_ms: i64) -> Result<()> {
        let start = self.size;
        match &mut self.storage {
            Storage::Memory(v) => v.extend_from_slice(bytes),
            Storage::File { log, .. } => {
                log.write_all_at(bytes, start).map_err(|e| Error::io("appending to segment", e))?;
            }
        }
        if self.size == 0 {
            self.created_ms = now_ms;
        }
        self.last_append_ms = now_ms;
        let mut new_off = Vec::new();
        let mut new_time = Vec::new();
        for (pos, h) in batch::iter_batches(bytes) {
            if let Some((o, t)) = self.note_batch(start + pos as u64, &h) {
                new_off.push(o);
                new_time.extend(t);
            }
        }
        if let Storage::File { index, time_index, index_len, time_index_len, .. } = &mut self.storage {
            if !new_off.is_empty() {
                let mut buf = Vec::with_capacity(new_off.len() * 8);
                for (off, pos) in new_off {
                    buf.extend_from_slice(&((off - self.base_offset) as u32).to_be_bytes());
                    buf.extend_from_slice(&pos.to_be_bytes());
                }
                index.write_all_at(&buf, *index_len).map_err(|e| Error::io("appending offset index", e))?;
                *index_len += buf.len() as u64;
            }
            if !new_time.is_empty() {
                let mut buf = Vec::with_capacity(new_time.len() * 12);
                for (ts, off) in new_time {
                    buf.extend_from_slice(&ts.to_be_bytes());
                    buf.extend_from_slice(&((off - self.base_offset) as u32).to_be_bytes());
                }
                time_index.write_all_at(&buf, *time_index_len).map_err(|e| Error::io("appending time index", e))?;
                *time_index_len += buf.len() as u64;
            }
        }
        Ok(())
    }

    /// Position of the last index entry at or before `offset` (0 if none).
    pub(crate) fn index_lookup(&self, offset: i64) -> u64 {
        match self.offset_index.partition_point(|(o, _)| *o <= offset) {
            0 => 0,
            i => u64::from(self.offset_index[i - 1].1),
        }
    }

    /// Position of the first batch that may contain a timestamp >= `ts`, per the time index.
    pub(crate) fn time_lookup(&self, ts: i64) -> u64 {
        let i = self.time_index.partition_point(|(t, _)| *t < ts);
        if i == 0 {
            return 0;
        }
        // The entry before holds a smaller max timestamp: start scanning at its batch.
        self.index_lookup(self.time_index[i - 1].1)
    }

    /// Plans a read of `len` bytes at `pos`. In memory the read ends early, with the chunk
    /// holding `pos`: whole batches all the same (a batch never spans chunks); read on from
    /// where it ended for more.
    pub(crate) fn plan_read(&self, pos: u64, len: usize) -> ReadPlan {
        let len = len.min(self.size.saturating_sub(pos) as usize);
        match &self.storage {
            Storage::Memory(v) => ReadPlan::Ready(v.read_range(pos as usize, len)),
            Storage::File { log, .. } => ReadPlan::File { file: Arc::clone(log), pos, len },
        }
    }

    /// Reads `len` bytes at `pos` now (fewer in memory: see [`Self::plan_read`]).
    pub(crate) fn read_now(&self, pos: u64, len: usize) -> Result<Bytes> {
        self.plan_read(pos, len).read()
    }

    /// Deletes the segment's files (no-op in memory).
    pub(crate) fn delete_files(&self) {
        self.delete_files_named("");
    }

    /// Deletes the files of a cleaned segment that was not swapped in.
    pub(crate) fn delete_cleaned_files(&self) {
        self.delete_files_named(CLEANED_SUFFIX);
    }

    fn delete_files_named(&self, suffix: &str) {
        if let Storage::File { dir, .. } = &self.storage {
            for ext in EXTENSIONS {
                dir.remove(&(file_name(self.base_offset, ext) + suffix));
            }
        }
    }

    /// A read-only view of the segment's bytes as they are now, readable without the
    /// partition lock: a segment below the active one is never appended to again.
    pub(crate) fn snapshot(&self) -> SegmentSnapshot {
        let source = match &self.storage {
            Storage::File { log, .. } => Source::File(Arc::clone(log)),
            Storage::Memory(v) => Source::Memory(v.chunks()),
        };
        SegmentSnapshot { base_offset: self.base_offset, next_offset: self.next_offset, size: self.size, source }
    }

    /// Flushes file contents to disk.
    pub(crate) fn flush(&self) -> Result<()> {
        if let Storage::File { log, index, time_index, .. } = &self.storage {
            log.sync().map_err(|e| Error::io("syncing segment", e))?;
            index.sync().map_err(|e| Error::io("syncing index", e))?;
            time_index.sync().map_err(|e| Error::io("syncing time index", e))?;
        }
        Ok(())
    }
}

/// Where a [`SegmentSnapshot`] reads from.
#[derive(Debug, Clone)]
enum Source {
    /// The segment's file.
    File(Arc<dyn FsFile>),
    /// The chunks of an in-memory segment (each holds whole batches).
    Memory(Vec<Bytes>),
}

/// A segment's bytes up to `size`, readable outside the partition lock (the log cleaner reads
/// it so; the log's own scans too).
#[derive(Debug, Clone)]
pub(crate) struct SegmentSnapshot {
    /// Base offset of the segment.
    pub(crate) base_offset: i64,
    /// Offset after its last batch.
    pub(crate) next_offset: i64,
    /// Valid bytes.
    pub(crate) size: u64,
    source: Source,
}

impl SegmentSnapshot {
    /// Calls `f` with every whole batch from position `from` (a batch start) on, in order,
    /// until it returns `false`. Files are read in 1 MiB chunks (a larger batch is read whole);
    /// a torn batch at the end ends the scan.
    pub(crate) fn for_each_batch(
        &self,
        from: u64,
        mut f: impl FnMut(BatchHeader<'_>, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        match &self.source {
            Source::Memory(chunks) => {
                let mut start = 0usize;
                for chunk in chunks {
                    let skip = (from as usize).saturating_sub(start);
                    start += chunk.len();
                    let Some(rest) = chunk.get(skip..) else { continue };
                    for (p, h) in batch::iter_batches(rest) {
                        if !f(h, &rest[p..p + h.total_len()])? {
                            return Ok(());
                        }
                    }
                }
                Ok(())
            }
            Source::File(file) => {
                const CHUNK: usize = 1 << 20;
                let mut pos = from;
                let mut buf = Vec::new();
                while pos < self.size {
                    let want = CHUNK.min((self.size - pos) as usize);
                    buf.resize(want, 0);
                    file.read_exact_at(&mut buf, pos).map_err(|e| Error::io("reading segment", e))?;
                    let mut consumed = 0usize;
                    for (p, h) in batch::iter_batches(&buf) {
                        let total = h.total_len();
                        if !f(h, &buf[p..p + total])? {
                            return Ok(());
                        }
                        consumed = p + total;
                    }
                    if consumed == 0 {
                        let Ok(h) = BatchHeader::parse(&buf) else { return Ok(()) };
                        let len = h.total_len();
                        if pos + len as u64 > self.size {
                            return Ok(());
                        }
                        let mut whole = vec![0u8; len];
                        file.read_exact_at(&mut whole, pos).map_err(|e| Error::io("reading segment", e))?;
                        let Ok(h) = BatchHeader::parse(&whole) else { return Ok(()) };
                        if !f(h, &whole)? {
                            return Ok(());
                        }
                        consumed = len;
                    }
                    pos += consumed as u64;
                }
                Ok(())
            }
        }
    }
}

/// Lists the base offsets of the segment files in `dir` with their modification times, sorted.
pub(crate) fn list_segments(dir: &Dir) -> Result<Vec<(i64, i64)>> {
    let mut out: Vec<(i64, i64)> = dir
        .list()?
        .into_iter()
        .filter_map(|(name, mtime)| Some((name.strip_suffix(".log")?.parse::<i64>().ok()?, mtime)))
        .collect();
    out.sort_unstable();
    Ok(out)
}
