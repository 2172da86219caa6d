//! Read-only access to a RocksDB store from other threads (interactive queries): the state
//! its last persisted commit left, never a transaction in progress. The reader holds the
//! database weakly, so a store that closes (its task revoked, the application stopping) is
//! not kept open: reads then fail with [`Error::Closed`].

use std::ops::Bound;
use std::sync::{Arc, Weak};

use rocksdb::{ReadOptions, DB};

use super::{cf_handle, segment_end, segment_prefix, META_CF, SEGMENTS_CF, SEGMENT_KEY};
use crate::core::decode_time;
use crate::error::{Error, Result};

/// A read-only view of a store's committed, persisted state.
#[derive(Clone)]
pub struct StoreReader {
    name: Arc<str>,
    db: Weak<DB>,
}

impl std::fmt::Debug for StoreReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreReader").field("name", &self.name).field("open", &(self.db.strong_count() > 0)).finish()
    }
}

impl StoreReader {
    pub(super) fn new(name: &str, db: &Arc<DB>) -> Self {
        StoreReader { name: name.into(), db: Arc::downgrade(db) }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn db(&self) -> Result<Arc<DB>> {
        self.db.upgrade().ok_or_else(|| Error::Closed { store: self.name.to_string() })
    }

    fn rocks(&self, op: &'static str, source: rocksdb::Error) -> Error {
        Error::Rocks { store: self.name.to_string(), op, source }
    }

    fn corrupted(&self, reason: String) -> Error {
        Error::Corrupted { store: self.name.to_string(), reason }
    }

    /// The value of `key` in the main keyspace (a key-value store's).
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let db = self.db()?;
        let cf = cf_handle(&db, rocksdb::DEFAULT_COLUMN_FAMILY_NAME).map_err(|r| self.corrupted(r))?;
        db.get_cf(cf, key).map_err(|e| self.rocks("get", e))
    }

    /// Calls `f` with each entry of the main keyspace within the bounds, in key byte order,
    /// until it returns `false`. One consistent snapshot.
    pub fn scan(&self, from: Bound<&[u8]>, to: Bound<&[u8]>, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        if crate::raw::is_empty_range(from, to) {
            return Ok(());
        }
        let db = self.db()?;
        let cf = cf_handle(&db, rocksdb::DEFAULT_COLUMN_FAMILY_NAME).map_err(|r| self.corrupted(r))?;
        let mut ro = ReadOptions::default();
        if let Bound::Excluded(end) = to {
            ro.set_iterate_upper_bound(end.to_vec());
        }
        let mut it = db.raw_iterator_cf_opt(cf, ro);
        match from {
            Bound::Included(k) | Bound::Excluded(k) => it.seek(k),
            Bound::Unbounded => it.seek_to_first(),
        }
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if matches!(from, Bound::Excluded(start) if k == start) {
                it.next();
                continue;
            }
            if matches!(to, Bound::Included(end) if k > end) {
                break;
            }
            if !f(k, v) {
                return Ok(());
            }
            it.next();
        }
        it.status().map_err(|e| self.rocks("scan", e))
    }

    /// Calls `f` with each entry of the time segments (a window or session store's) whose key
    /// starts with `prefix`, segment by segment, until it returns `false`. One consistent
    /// snapshot.
    pub fn scan_segments(&self, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        let db = self.db()?;
        let snapshot = db.snapshot();
        let meta = cf_handle(&db, META_CF).map_err(|r| self.corrupted(r))?;
        let segments = cf_handle(&db, SEGMENTS_CF).map_err(|r| self.corrupted(r))?;
        let mut ids = Vec::new();
        {
            let mut ro = ReadOptions::default();
            ro.set_snapshot(&snapshot);
            let mut it = db.raw_iterator_cf_opt(meta, ro);
            it.seek(SEGMENT_KEY);
            while let Some(k) = it.key() {
                let Some(id) = k.strip_prefix(SEGMENT_KEY) else { break };
                let id: [u8; 8] = id.try_into().map_err(|_| self.corrupted("a malformed segment marker".into()))?;
                ids.push(decode_time(id));
                it.next();
            }
            it.status().map_err(|e| self.rocks("read segments", e))?;
        }
        for id in ids {
            let mut ro = ReadOptions::default();
            ro.set_snapshot(&snapshot);
            if let Some(end) = segment_end(id) {
                ro.set_iterate_upper_bound(end.to_vec());
            }
            let mut it = db.raw_iterator_cf_opt(segments, ro);
            let mut start = segment_prefix(id).to_vec();
            start.extend_from_slice(prefix);
            it.seek(&start);
            while let (Some(k), Some(v)) = (it.key(), it.value()) {
                if !k.starts_with(&start) {
                    break;
                }
                if !f(&k[8..], v) {
                    return Ok(());
                }
                it.next();
            }
            it.status().map_err(|e| self.rocks("scan segments", e))?;
        }
        Ok(())
    }
}
