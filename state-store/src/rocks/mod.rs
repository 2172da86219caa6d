//! The RocksDB store: data in the default column family, the checkpoint in `moldau_meta`,
//! both written by one `WriteBatch`.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DBCompressionType, Direction, IteratorMode, Options, ReadOptions,
    WriteBatch, WriteOptions, DB,
};

use crate::budget::MemoryBudget;
use crate::error::{Error, Result};
use crate::raw::{Checkpoint, RawStore, WriteMode, WriteSet};

const META_CF: &str = "moldau_meta";
const CHECKPOINT_KEY: &[u8] = b"checkpoint";

/// A [`RawStore`] on RocksDB.
pub struct RocksStore {
    name: String,
    path: PathBuf,
    db: DB,
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
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&budget.cache);
    o.set_block_based_table_factory(&table);
    o.set_write_buffer_manager(&budget.write_buffers);
    o.set_write_buffer_size(16 << 20);
    o.set_max_write_buffer_number(3);
    o.set_compression_type(DBCompressionType::Lz4);
    o
}

impl RocksStore {
    /// Opens (or creates) the store `name` in directory `path`.
    ///
    /// A directory that exists but is not a readable RocksDB, or a store with data but no
    /// checkpoint, is [`Error::Corrupted`]: wipe it with [`RocksStore::destroy`] and restore
    /// it from the changelog.
    pub fn open(path: &Path, name: &str, budget: &MemoryBudget) -> Result<Self> {
        let corrupted = |reason: String| Error::Corrupted { store: name.to_string(), reason };
        let existed = path.exists();
        if existed && !path.join("CURRENT").exists() && std::fs::read_dir(path).map(|mut d| d.next().is_some()).unwrap_or(true) {
            return Err(corrupted(format!("{} holds no RocksDB CURRENT file", path.display())));
        }
        let opts = options(budget);
        let cfs = [
            ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, options(budget)),
            ColumnFamilyDescriptor::new(META_CF, options(budget)),
        ];
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| {
            if matches!(e.kind(), rocksdb::ErrorKind::Corruption | rocksdb::ErrorKind::InvalidArgument) {
                corrupted(format!("RocksDB cannot open {}: {e}", path.display()))
            } else {
                Error::Rocks { store: name.to_string(), op: "open", source: e }
            }
        })?;
        let mut store = RocksStore { name: name.to_string(), path: path.to_path_buf(), db, checkpoint: None, unflushed_restore: false };
        let meta = store.db.cf_handle(META_CF).ok_or_else(|| corrupted("no metadata column family".into()))?;
        let raw = store.db.get_cf(meta, CHECKPOINT_KEY).map_err(|e| store.rocks("read checkpoint", e))?;
        store.checkpoint = match raw {
            Some(bytes) => Some(
                serde_json::from_slice(&bytes).map_err(|e| corrupted(format!("checkpoint does not parse: {e}")))?,
            ),
            None => {
                let mut it = store.db.iterator(IteratorMode::Start);
                if it.next().is_some() {
                    return Err(corrupted("the store holds data but no checkpoint".into()));
                }
                None
            }
        };
        Ok(store)
    }

    /// Deletes the store's files (before rebuilding it from its changelog).
    pub fn destroy(path: &Path, name: &str) -> Result<()> {
        if !path.exists() {
            return Ok(());
        }
        std::fs::remove_dir_all(path).map_err(|e| Error::Io { store: name.to_string(), op: "removing the store directory", source: e })
    }

    fn rocks(&self, op: &'static str, source: rocksdb::Error) -> Error {
        Error::Rocks { store: self.name.clone(), op, source }
    }
}

impl RawStore for RocksStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get(key).map_err(|e| self.rocks("get", e))
    }

    fn scan(&self, from: Bound<&[u8]>, to: Bound<&[u8]>, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        if crate::raw::is_empty_range(from, to) {
            return Ok(());
        }
        let mut ro = ReadOptions::default();
        if let Bound::Excluded(end) = to {
            ro.set_iterate_upper_bound(end.to_vec());
        }
        let mut it = self.db.raw_iterator_opt(ro);
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

    fn write(&mut self, writes: &WriteSet, checkpoint: &Checkpoint, mode: WriteMode) -> Result<()> {
        if mode == WriteMode::Commit && self.unflushed_restore {
            // WAL writes must never overtake restore writes that are not yet durable.
            self.flush()?;
        }
        let meta = self.db.cf_handle(META_CF).ok_or_else(|| Error::Corrupted {
            store: self.name.clone(),
            reason: "no metadata column family".into(),
        })?;
        let mut batch = WriteBatch::default();
        for (k, v) in writes {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            }
        }
        let cp = serde_json::to_vec(checkpoint).expect("a checkpoint always serializes");
        batch.put_cf(meta, CHECKPOINT_KEY, cp);
        let mut wo = WriteOptions::default();
        if mode == WriteMode::Restore {
            wo.disable_wal(true);
            self.unflushed_restore = true;
        }
        self.db.write_opt(batch, &wo).map_err(|e| self.rocks("write", e))?;
        self.checkpoint = Some(checkpoint.clone());
        Ok(())
    }

    fn checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoint.clone()
    }

    fn approximate_count(&self) -> Result<u64> {
        Ok(self.db.property_int_value("rocksdb.estimate-num-keys").map_err(|e| self.rocks("count", e))?.unwrap_or(0))
    }

    fn flush(&mut self) -> Result<()> {
        self.db.flush().map_err(|e| self.rocks("flush", e))?;
        if let Some(meta) = self.db.cf_handle(META_CF) {
            self.db.flush_cf(meta).map_err(|e| self.rocks("flush", e))?;
        }
        self.unflushed_restore = false;
        Ok(())
    }
}
