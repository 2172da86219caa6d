//! The RocksDB store: one RocksDB instance per store. The main keyspace is the default column
//! family, each time segment its own column family (so retention drops a segment with one
//! `drop_cf`), and the checkpoint sits in `moldau_meta`; one `WriteBatch` writes them all.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, FlushOptions, Options, ReadOptions,
    WriteBatch, WriteOptions, DB,
};

use crate::budget::MemoryBudget;
use crate::error::{Error, Result};
use crate::raw::{Checkpoint, RawBatch, RawStore, Space, WriteMode};

const META_CF: &str = "moldau_meta";
const SEGMENT_PREFIX: &str = "segment.";
const CHECKPOINT_KEY: &[u8] = b"checkpoint";

/// A [`RawStore`] on RocksDB.
pub struct RocksStore {
    name: String,
    path: PathBuf,
    db: DB,
    cf_options: Options,
    segments: Vec<i64>,
    checkpoint: Option<Checkpoint>,
    /// Restore writes skipped the WAL and are not durable until flushed.
    unflushed_restore: bool,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore").field("name", &self.name).field("path", &self.path).finish()
    }
}

fn options(budget: &MemoryBudget) -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    // Every flush persists all column families at one point, so the checkpoint on disk never
    // describes data that a crash during a WAL-less restore lost.
    o.set_atomic_flush(true);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&budget.cache);
    table.set_bloom_filter(10.0, false);
    table.set_cache_index_and_filter_blocks(true);
    o.set_block_based_table_factory(&table);
    o.set_write_buffer_manager(&budget.write_buffers);
    o.set_write_buffer_size(16 << 20);
    o.set_max_write_buffer_number(3);
    o.set_compression_type(DBCompressionType::Lz4);
    o
}

fn segment_cf(id: i64) -> String {
    format!("{SEGMENT_PREFIX}{id}")
}

impl RocksStore {
    /// Opens (or creates) the store `name` in directory `path`. A directory that does not exist
    /// becomes an empty store with no checkpoint: restore its changelog from the beginning.
    ///
    /// A directory that exists but is not a readable RocksDB, or a store with data but no
    /// checkpoint, is [`Error::Corrupted`]: [`RocksStore::open_or_rebuild`] wipes it so that it
    /// is restored from the changelog.
    pub fn open(path: &Path, name: &str, budget: &MemoryBudget) -> Result<Self> {
        let corrupted = |reason: String| Error::Corrupted { store: name.to_string(), reason };
        if path.exists() && !path.join("CURRENT").exists() {
            let empty = std::fs::read_dir(path).map(|mut d| d.next().is_none()).unwrap_or(false);
            if !empty {
                return Err(corrupted(format!("{} holds no RocksDB CURRENT file", path.display())));
            }
        }
        if !path.exists() {
            std::fs::create_dir_all(path).map_err(|e| Error::Io {
                store: name.to_string(),
                op: "creating the store directory",
                source: e,
            })?;
        }
        let cf_options = options(budget);
        let mut names = vec![rocksdb::DEFAULT_COLUMN_FAMILY_NAME.to_string(), META_CF.to_string()];
        if path.join("CURRENT").exists() {
            let existing = DB::list_cf(&cf_options, path).map_err(|e| {
                corrupted(format!("RocksDB cannot list the column families of {}: {e}", path.display()))
            })?;
            for cf in existing {
                if !names.contains(&cf) {
                    names.push(cf);
                }
            }
        }
        let mut segments = Vec::new();
        for cf in &names[2..] {
            let id = cf.strip_prefix(SEGMENT_PREFIX).and_then(|s| s.parse::<i64>().ok());
            match id {
                Some(id) => segments.push(id),
                None => return Err(corrupted(format!("unknown column family '{cf}'"))),
            }
        }
        segments.sort_unstable();
        let cfs = names.iter().map(|n| ColumnFamilyDescriptor::new(n, cf_options.clone()));
        let db = DB::open_cf_descriptors(&cf_options, path, cfs).map_err(|e| {
            if matches!(e.kind(), rocksdb::ErrorKind::Corruption | rocksdb::ErrorKind::InvalidArgument) {
                corrupted(format!("RocksDB cannot open {}: {e}", path.display()))
            } else {
                Error::Rocks { store: name.to_string(), op: "open", source: e }
            }
        })?;
        let mut store = RocksStore {
            name: name.to_string(),
            path: path.to_path_buf(),
            db,
            cf_options,
            segments,
            checkpoint: None,
            unflushed_restore: false,
        };
        let raw = store.db.get_cf(store.meta()?, CHECKPOINT_KEY).map_err(|e| store.rocks("read checkpoint", e))?;
        store.checkpoint = match raw {
            Some(bytes) => Some(
                serde_json::from_slice(&bytes).map_err(|e| corrupted(format!("its checkpoint does not parse: {e}")))?,
            ),
            None => {
                let mut it = store.db.raw_iterator();
                it.seek_to_first();
                if it.valid() || !store.segments.is_empty() {
                    return Err(corrupted("it holds data but no checkpoint".into()));
                }
                None
            }
        };
        Ok(store)
    }

    /// Opens the store, or when it is [`Error::Corrupted`] wipes it and opens it empty (no
    /// checkpoint, so it is restored from the start of its changelog). Returns the corruption
    /// that was repaired, for the caller to log.
    pub fn open_or_rebuild(path: &Path, name: &str, budget: &MemoryBudget) -> Result<(Self, Option<Error>)> {
        match Self::open(path, name, budget) {
            Ok(store) => Ok((store, None)),
            Err(e) if e.requires_restore() => {
                Self::destroy(path, name)?;
                Ok((Self::open(path, name, budget)?, Some(e)))
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes the store's files (before rebuilding it from its changelog).
    pub fn destroy(path: &Path, name: &str) -> Result<()> {
        if !path.exists() {
            return Ok(());
        }
        std::fs::remove_dir_all(path).map_err(|e| Error::Io {
            store: name.to_string(),
            op: "removing the store directory",
            source: e,
        })
    }

    fn rocks(&self, op: &'static str, source: rocksdb::Error) -> Error {
        Error::Rocks { store: self.name.clone(), op, source }
    }

    fn meta(&self) -> Result<&ColumnFamily> {
        self.db.cf_handle(META_CF).ok_or_else(|| Error::Corrupted {
            store: self.name.clone(),
            reason: "it has no metadata column family".into(),
        })
    }

    /// The column family of `space`, or `None` for a segment that does not exist.
    fn cf(&self, space: Space) -> Option<&ColumnFamily> {
        match space {
            Space::Main => self.db.cf_handle(rocksdb::DEFAULT_COLUMN_FAMILY_NAME),
            Space::Segment(id) => self.db.cf_handle(&segment_cf(id)),
        }
    }
}

impl RawStore for RocksStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(cf) = self.cf(space) else { return Ok(None) };
        self.db.get_cf(cf, key).map_err(|e| self.rocks("get", e))
    }

    fn scan(
        &self,
        space: Space,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        if crate::raw::is_empty_range(from, to) {
            return Ok(());
        }
        let Some(cf) = self.cf(space) else { return Ok(()) };
        let mut ro = ReadOptions::default();
        if let Bound::Excluded(end) = to {
            ro.set_iterate_upper_bound(end.to_vec());
        }
        let mut it = self.db.raw_iterator_cf_opt(cf, ro);
        match from {
            Bound::Included(k) | Bound::Excluded(k) => it.seek(k),
            Bound::Unbounded => it.seek_to_first(),
        }
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else { break };
            if let Bound::Excluded(start) = from {
                if k == start {
                    it.next();
                    continue;
                }
            }
            if let Bound::Included(end) = to {
                if k > end {
                    break;
                }
            }
            if !f(k, v) {
                return Ok(());
            }
            it.next();
        }
        it.status().map_err(|e| self.rocks("scan", e))
    }

    fn segments(&self) -> Vec<i64> {
        self.segments.clone()
    }

    fn write(&mut self, writes: &RawBatch, checkpoint: &Checkpoint, mode: WriteMode) -> Result<()> {
        if mode == WriteMode::Commit && self.unflushed_restore {
            // WAL writes must never overtake restore writes that are not yet durable.
            self.flush()?;
        }
        for space in writes.keys() {
            if let Space::Segment(id) = *space {
                if let Err(at) = self.segments.binary_search(&id) {
                    self.db.create_cf(segment_cf(id), &self.cf_options).map_err(|e| self.rocks("create segment", e))?;
                    self.segments.insert(at, id);
                }
            }
        }
        let mut batch = WriteBatch::default();
        for (space, set) in writes {
            let cf = self.cf(*space).ok_or_else(|| Error::Corrupted {
                store: self.name.clone(),
                reason: format!("column family of {space:?} vanished"),
            })?;
            for (k, v) in set {
                match v {
                    Some(v) => batch.put_cf(cf, k, v),
                    None => batch.delete_cf(cf, k),
                }
            }
        }
        let cp = serde_json::to_vec(checkpoint).map_err(|e| Error::Corrupted {
            store: self.name.clone(),
            reason: format!("its checkpoint does not serialize: {e}"),
        })?;
        batch.put_cf(self.meta()?, CHECKPOINT_KEY, cp);
        let mut wo = WriteOptions::default();
        if mode == WriteMode::Restore {
            wo.disable_wal(true);
            self.unflushed_restore = true;
        }
        self.db.write_opt(batch, &wo).map_err(|e| self.rocks("write", e))?;
        self.checkpoint = Some(checkpoint.clone());
        Ok(())
    }

    fn drop_segments(&mut self, segments: &[i64]) -> Result<()> {
        for id in segments {
            if let Ok(at) = self.segments.binary_search(id) {
                self.db.drop_cf(&segment_cf(*id)).map_err(|e| self.rocks("drop segment", e))?;
                self.segments.remove(at);
            }
        }
        Ok(())
    }

    fn checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoint.clone()
    }

    fn approximate_count(&self) -> Result<u64> {
        let mut total = 0;
        let spaces = std::iter::once(Space::Main).chain(self.segments.iter().map(|id| Space::Segment(*id)));
        for space in spaces {
            if let Some(cf) = self.cf(space) {
                let n = self
                    .db
                    .property_int_value_cf(cf, "rocksdb.estimate-num-keys")
                    .map_err(|e| self.rocks("count", e))?;
                total += n.unwrap_or(0);
            }
        }
        Ok(total)
    }

    fn flush(&mut self) -> Result<()> {
        let spaces = std::iter::once(Space::Main).chain(self.segments.iter().map(|id| Space::Segment(*id)));
        let mut cfs: Vec<&ColumnFamily> = spaces.filter_map(|s| self.cf(s)).collect();
        cfs.push(self.meta()?);
        self.db.flush_cfs_opt(&cfs, &FlushOptions::default()).map_err(|e| self.rocks("flush", e))?;
        self.unflushed_restore = false;
        Ok(())
    }
}
