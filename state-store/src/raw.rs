//! Byte-level stores: what RocksDB and the in-memory implementation share, so one typed layer
//! and one conformance suite run over both.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::error::Result;

/// Writes to apply at once: key to new value, or `None` to delete.
pub type WriteSet = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Where a store stands: the changelog offset to restore from and the input offsets committed
/// with the same state. Written atomically with the state it describes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// The next changelog offset not reflected in the store (restore starts here).
    pub changelog_offset: i64,
    /// Input `(topic, partition) -> next offset` committed with this state.
    pub input_offsets: BTreeMap<String, BTreeMap<i32, i64>>,
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

/// A byte-level ordered key-value store with an atomic checkpoint.
pub trait RawStore: Send {
    /// The store's name (for errors and logs).
    fn name(&self) -> &str;
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Calls `f` with each entry in `[from, to)` bounds order until it returns `false`.
    fn scan(&self, from: Bound<&[u8]>, to: Bound<&[u8]>, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()>;
    /// Applies `writes` and `checkpoint` atomically.
    fn write(&mut self, writes: &WriteSet, checkpoint: &Checkpoint, mode: WriteMode) -> Result<()>;
    /// The last checkpoint written, if any.
    fn checkpoint(&self) -> Option<Checkpoint>;
    /// An estimate of the number of keys.
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
