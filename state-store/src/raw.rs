//! Byte-level stores: what RocksDB and the in-memory implementation share, so one typed layer
//! and one conformance suite run over both.
//!
//! A store holds a main keyspace (key-value stores) and any number of time segments (window and
//! session stores): separate keyspaces so that retention drops a whole segment at once.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use crate::error::Result;

/// Writes to apply at once: key to new value, or `None` to delete.
pub type WriteSet = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A keyspace of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Space {
    /// The one keyspace of a key-value store.
    Main,
    /// Time segment `id` of a window or session store (`id = time / segment interval`).
    Segment(i64),
}

/// Writes to several keyspaces, applied atomically.
pub type RawBatch = BTreeMap<Space, WriteSet>;

/// Where a store stands: the changelog offset to restore from and the input offsets committed
/// with the same state. Written atomically with the state it describes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// The next changelog offset not reflected in the store (restore starts here).
    pub changelog_offset: i64,
    /// Input `(topic, partition) -> next offset` committed with this state.
    pub input_offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    /// The largest record time a segmented store has seen (drives retention); -1 if none.
    #[serde(default = "no_time")]
    pub stream_time: i64,
}

fn no_time() -> i64 {
    -1
}

impl Default for Checkpoint {
    fn default() -> Self {
        Checkpoint { changelog_offset: 0, input_offsets: BTreeMap::new(), stream_time: -1 }
    }
}

/// Whether a write is a normal commit or part of a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// A transaction's commit: durable through the write-ahead log.
    Commit,
    /// Bulk restore from the changelog: no write-ahead log, made durable by
    /// [`RawStore::flush`] at the end of the restore.
    Restore,
}

/// A byte-level ordered key-value store with time segments and an atomic checkpoint.
pub trait RawStore: Send {
    /// The store's name (for errors and logs).
    fn name(&self) -> &str;
    /// The value of `key` in `space`.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Calls `f` with each entry of `space` in `[from, to)` bounds order until it returns
    /// `false`. A segment that does not exist is empty.
    fn scan(
        &self,
        space: Space,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()>;
    /// The segments that exist, in ascending order.
    fn segments(&self) -> Vec<i64>;
    /// Applies `writes` (creating the segments they name) and `checkpoint` atomically.
    fn write(&mut self, writes: &RawBatch, checkpoint: &Checkpoint, mode: WriteMode) -> Result<()>;
    /// A commit: applies `writes` and `checkpoint` and drops the `expired` segments, possibly
    /// in the background. Reads see the writes at once. A failure may surface later, at the
    /// next write, scan or flush, as [`Error::Corrupted`](crate::Error::Corrupted) (the store
    /// is then behind its changelog). The default applies it in line, the drops after the
    /// write; the RocksDB store applies both in one atomic batch.
    fn write_shared(&mut self, writes: Arc<RawBatch>, checkpoint: &Checkpoint, expired: &[i64]) -> Result<()> {
        self.write(&writes, checkpoint, WriteMode::Commit)?;
        self.drop_segments(expired)
    }
    /// Drops whole segments (retention). Not atomic with [`write`](Self::write): a segment that
    /// survives a crash here is dropped again by the next retention pass.
    fn drop_segments(&mut self, segments: &[i64]) -> Result<()>;
    /// The last checkpoint written, if any.
    fn checkpoint(&self) -> Option<Checkpoint>;
    /// An estimate of the number of keys in all keyspaces.
    fn approximate_count(&self) -> Result<u64>;
    /// Makes every write durable (ends a restore).
    fn flush(&mut self) -> Result<()>;
}

/// Whether `[from, to)` can hold no key (so a scan returns nothing instead of panicking on an
/// inverted range).
pub(crate) fn is_empty_range(from: Bound<&[u8]>, to: Bound<&[u8]>) -> bool {
    match (from, to) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b))
        | (Bound::Excluded(a), Bound::Excluded(b)) => a >= b,
        _ => false,
    }
}
