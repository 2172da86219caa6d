//! The RocksDB store: one RocksDB instance per store. The main keyspace is the default column
//! family; time segments share the `moldau_segments` column family, each key prefixed by its
//! segment id (8 bytes, order-preserving), so retention drops a segment with one range delete;
//! the checkpoint and the list of live segments sit in `moldau_meta`. One `WriteBatch` writes
//! them all.
//!
//! A column family per segment (the first layout) cost a MANIFEST and OPTIONS file write with
//! fsync for every segment created or dropped: 5-12 ms each, on the commit path of every task
//! whenever stream time crossed a segment boundary. A store in that layout is rebuilt from its
//! changelog when opened.

mod reader;
mod writer;

pub use reader::StoreReader;

use std::cell::RefCell;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, FlushOptions, Options, ReadOptions,
    WriteBatch, WriteOptions, DB,
};

use crate::budget::MemoryBudget;
use crate::core::{decode_time, encode_time};
use crate::error::{Error, Result};
use crate::raw::{Checkpoint, RawBatch, RawStore, Space, WriteMode};

const META_CF: &str = "moldau_meta";
const SEGMENTS_CF: &str = "moldau_segments";
/// The column families of the first layout, one per segment.
const OLD_SEGMENT_PREFIX: &str = "segment.";
const CHECKPOINT_KEY: &[u8] = b"checkpoint";
/// Meta key prefix marking a live segment (followed by its 8-byte id).
const SEGMENT_KEY: &[u8] = b"segment/";

/// A commit handed to the background writer.
struct Inflight {
    writes: Arc<RawBatch>,
    ticket: Arc<writer::Ticket>,
}

/// A [`RawStore`] on RocksDB.
pub struct RocksStore {
    name: String,
    path: PathBuf,
    db: Arc<DB>,
    /// The last commit, while the background writer may still be applying it (see
    /// [`RawStore::write_shared`]): its writes are served from here, scans wait for it.
    inflight: Option<Inflight>,
    /// Live segments, ascending.
    segments: Vec<i64>,
    checkpoint: Option<Checkpoint>,
    /// Restore writes skipped the WAL and are not durable until flushed.
    unflushed_restore: bool,
    /// The options of every point lookup: made once, as the default ones cost an allocation
    /// per `get`.
    reads: ReadOptions,
    /// The segment-prefixed key of a point lookup, reused so that `get` does not allocate.
    lookup_key: RefCell<Vec<u8>>,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore").field("name", &self.name).field("path", &self.path).finish()
    }
}

/// Column family `name` of `db`, or why it is missing.
fn cf_handle<'a>(db: &'a DB, name: &str) -> std::result::Result<&'a ColumnFamily, String> {
    db.cf_handle(name).ok_or_else(|| format!("it has no '{name}' column family"))
}

/// One `WriteBatch`: `writes` with markers for the `created` segments, the encoded checkpoint
/// `cp` (none when empty) and range deletes of the `drops` segments.
fn build(
    db: &DB,
    writes: &RawBatch,
    created: &[i64],
    cp: &[u8],
    drops: &[i64],
) -> std::result::Result<WriteBatch, String> {
    let cf = |name| cf_handle(db, name);
    let (main, meta, segments) = (cf(rocksdb::DEFAULT_COLUMN_FAMILY_NAME)?, cf(META_CF)?, cf(SEGMENTS_CF)?);
    let mut batch = WriteBatch::default();
    let mut key = Vec::new();
    for (space, set) in writes {
        match *space {
            Space::Main => {
                for (k, v) in set {
                    match v {
                        Some(v) => batch.put_cf(main, k, v),
                        None => batch.delete_cf(main, k),
                    }
                }
            }
            Space::Segment(id) => {
                for (k, v) in set {
                    segment_key_into(id, k, &mut key);
                    match v {
                        Some(v) => batch.put_cf(segments, &key, v),
                        None => batch.delete_cf(segments, &key),
                    }
                }
            }
        }
    }
    for &id in created {
        batch.put_cf(meta, segment_marker(id), []);
    }
    if !cp.is_empty() {
        batch.put_cf(meta, CHECKPOINT_KEY, cp);
    }
    for &id in drops {
        match segment_end(id) {
            Some(end) => batch.delete_range_cf(segments, segment_prefix(id), end),
            None => batch.delete_range_cf(segments, &segment_prefix(id)[..], &[0xff; 9][..]),
        }
        batch.delete_cf(meta, segment_marker(id));
    }
    Ok(batch)
}

impl Drop for RocksStore {
    fn drop(&mut self) {
        // The writer holds the DB open until the last commit is applied; whoever opens the
        // store next must find it closed and complete.
        if let Err(e) = self.settle() {
            // The store on disk stays at its previous checkpoint: the next open restores the
            // rest from the changelog.
            tracing::warn!(error = %e, "closing a store whose last commit failed to write");
        }
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

/// Segment `id` as an 8-byte prefix whose byte order is numeric order.
fn segment_prefix(id: i64) -> [u8; 8] {
    encode_time(id)
}

/// Writes `key` as stored in segment `id` to `out` (cleared first).
fn segment_key_into(id: i64, key: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&segment_prefix(id));
    out.extend_from_slice(key);
}

/// `key` stored in segment `id`.
fn segment_key(id: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    segment_key_into(id, key, &mut k);
    k
}

/// The meta key marking segment `id` as live.
fn segment_marker(id: i64) -> Vec<u8> {
    let mut k = SEGMENT_KEY.to_vec();
    k.extend_from_slice(&segment_prefix(id));
    k
}

/// The first key after segment `id`'s keys, or `None` for the last possible segment.
fn segment_end(id: i64) -> Option<[u8; 8]> {
    let next = u64::from_be_bytes(segment_prefix(id)).checked_add(1)?;
    Some(next.to_be_bytes())
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
        let names = [rocksdb::DEFAULT_COLUMN_FAMILY_NAME, META_CF, SEGMENTS_CF];
        if path.join("CURRENT").exists() {
            let existing = DB::list_cf(&cf_options, path).map_err(|e| {
                corrupted(format!("RocksDB cannot list the column families of {}: {e}", path.display()))
            })?;
            for cf in existing {
                if cf.starts_with(OLD_SEGMENT_PREFIX) {
                    return Err(corrupted(format!(
                        "it has the older layout with a column family per segment ('{cf}')"
                    )));
                }
                if !names.contains(&cf.as_str()) {
                    return Err(corrupted(format!("unknown column family '{cf}'")));
                }
            }
        }
        let cfs = names.iter().map(|n| ColumnFamilyDescriptor::new(*n, cf_options.clone()));
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
            db: Arc::new(db),
            inflight: None,
            segments: Vec::new(),
            checkpoint: None,
            unflushed_restore: false,
            reads: ReadOptions::default(),
            lookup_key: RefCell::new(Vec::new()),
        };
        store.segments = store.read_segments()?;
        let raw = store.db.get_cf(store.meta()?, CHECKPOINT_KEY).map_err(|e| store.rocks("read checkpoint", e))?;
        store.checkpoint = match raw {
            Some(bytes) => Some(
                serde_json::from_slice(&bytes).map_err(|e| corrupted(format!("its checkpoint does not parse: {e}")))?,
            ),
            None => {
                let mut main = store.db.raw_iterator_cf(store.main_cf()?);
                main.seek_to_first();
                let mut segments = store.db.raw_iterator_cf(store.segments_cf()?);
                segments.seek_to_first();
                if main.valid() || segments.valid() || !store.segments.is_empty() {
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

    /// Waits for the commit the background writer may still be applying; its failure (the
    /// store on disk is then behind what this handle served) means a rebuild from the changelog.
    fn settle(&self) -> Result<()> {
        match &self.inflight {
            Some(i) => self.outcome(&i.ticket),
            None => Ok(()),
        }
    }

    /// Waits for `ticket`'s write; its failure as the store's error.
    fn outcome(&self, ticket: &writer::Ticket) -> Result<()> {
        ticket.wait().map_err(|reason| self.corrupted(format!("a commit's background write failed: {reason}")))
    }

    /// [`settle`](Self::settle), then forgets the commit.
    fn settle_mut(&mut self) -> Result<()> {
        let r = self.settle();
        self.inflight = None;
        r
    }

    /// The segments `writes` creates.
    fn created(&self, writes: &RawBatch) -> Vec<i64> {
        writes
            .keys()
            .filter_map(|s| match *s {
                Space::Segment(id) if !self.has(*s) => Some(id),
                _ => None,
            })
            .collect()
    }

    /// The checkpoint as stored.
    fn encode_checkpoint(&self, checkpoint: &Checkpoint) -> Result<Vec<u8>> {
        serde_json::to_vec(checkpoint).map_err(|e| self.corrupted(format!("its checkpoint does not serialize: {e}")))
    }

    /// The live ones among `segments`, forgotten (their range deletes are the caller's).
    fn take_live(&mut self, segments: &[i64]) -> Vec<i64> {
        let live: Vec<i64> = segments.iter().copied().filter(|id| self.segments.binary_search(id).is_ok()).collect();
        self.segments.retain(|id| !live.contains(id));
        live
    }

    /// Records what a write made true.
    fn written(&mut self, created: Vec<i64>, checkpoint: &Checkpoint) {
        for id in created {
            if let Err(at) = self.segments.binary_search(&id) {
                self.segments.insert(at, id);
            }
        }
        self.checkpoint = Some(checkpoint.clone());
    }

    fn corrupted(&self, reason: String) -> Error {
        Error::Corrupted { store: self.name.clone(), reason }
    }

    fn rocks(&self, op: &'static str, source: rocksdb::Error) -> Error {
        Error::Rocks { store: self.name.clone(), op, source }
    }

    fn meta(&self) -> Result<&ColumnFamily> {
        cf_handle(&self.db, META_CF).map_err(|reason| self.corrupted(reason))
    }

    fn segments_cf(&self) -> Result<&ColumnFamily> {
        cf_handle(&self.db, SEGMENTS_CF).map_err(|reason| self.corrupted(reason))
    }

    fn main_cf(&self) -> Result<&ColumnFamily> {
        cf_handle(&self.db, rocksdb::DEFAULT_COLUMN_FAMILY_NAME).map_err(|reason| self.corrupted(reason))
    }

    /// The live segments recorded in the meta column family.
    fn read_segments(&self) -> Result<Vec<i64>> {
        let mut it = self.db.raw_iterator_cf(self.meta()?);
        it.seek(SEGMENT_KEY);
        let mut out = Vec::new();
        while let Some(k) = it.key() {
            let Some(id) = k.strip_prefix(SEGMENT_KEY) else { break };
            let id: [u8; 8] =
                id.try_into().map_err(|_| self.corrupted(format!("a segment marker of {} bytes", k.len())))?;
            out.push(decode_time(id));
            it.next();
        }
        it.status().map_err(|e| self.rocks("read segments", e))?;
        Ok(out)
    }

    /// A read-only view of what this store has persisted, for other threads.
    pub fn reader(&self) -> StoreReader {
        StoreReader::new(&self.name, &self.db)
    }

    /// Whether `space` exists (the main keyspace always does).
    fn has(&self, space: Space) -> bool {
        match space {
            Space::Main => true,
            Space::Segment(id) => self.segments.binary_search(&id).is_ok(),
        }
    }
}

impl RawStore for RocksStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if !self.has(space) {
            return Ok(None);
        }
        if let Some(v) = self.inflight.as_ref().and_then(|i| i.writes.get(&space)).and_then(|w| w.get(key)) {
            return Ok(v.clone());
        }
        let got = match space {
            Space::Main => self.db.get_pinned_cf_opt(self.main_cf()?, key, &self.reads),
            Space::Segment(id) => {
                let mut k = self.lookup_key.borrow_mut();
                segment_key_into(id, key, &mut k);
                self.db.get_pinned_cf_opt(self.segments_cf()?, &*k, &self.reads)
            }
        };
        got.map(|v| v.map(|v| v.to_vec())).map_err(|e| self.rocks("get", e))
    }

    fn scan(
        &self,
        space: Space,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        if crate::raw::is_empty_range(from, to) || !self.has(space) {
            return Ok(());
        }
        self.settle()?;
        // Segment keys carry an 8-byte prefix: bounds gain it, visited keys lose it.
        let (cf, skip) = match space {
            Space::Main => (self.main_cf()?, 0),
            Space::Segment(_) => (self.segments_cf()?, 8),
        };
        let with_prefix = |k: &[u8]| match space {
            Space::Main => k.to_vec(),
            Space::Segment(id) => segment_key(id, k),
        };
        let mut ro = ReadOptions::default();
        match (to, space) {
            (Bound::Excluded(end), _) => ro.set_iterate_upper_bound(with_prefix(end)),
            // The iterator must not run on into the next segment.
            (_, Space::Segment(id)) => {
                if let Some(end) = segment_end(id) {
                    ro.set_iterate_upper_bound(end.to_vec());
                }
            }
            (_, Space::Main) => {}
        }
        let mut it = self.db.raw_iterator_cf_opt(cf, ro);
        match (from, space) {
            (Bound::Included(k) | Bound::Excluded(k), _) => it.seek(with_prefix(k)),
            (Bound::Unbounded, Space::Main) => it.seek_to_first(),
            (Bound::Unbounded, Space::Segment(id)) => it.seek(segment_prefix(id)),
        }
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else { break };
            let k = &k[skip..];
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
        self.settle_mut()?;
        if mode == WriteMode::Commit && self.unflushed_restore {
            // WAL writes must never overtake restore writes that are not yet durable.
            self.flush()?;
        }
        let created = self.created(writes);
        let cp = self.encode_checkpoint(checkpoint)?;
        let batch = build(&self.db, writes, &created, &cp, &[]).map_err(|reason| self.corrupted(reason))?;
        let mut wo = WriteOptions::default();
        if mode == WriteMode::Restore {
            wo.disable_wal(true);
            self.unflushed_restore = true;
        }
        self.db.write_opt(batch, &wo).map_err(|e| self.rocks("write", e))?;
        self.written(created, checkpoint);
        Ok(())
    }

    fn write_shared(&mut self, writes: Arc<RawBatch>, checkpoint: &Checkpoint, expired: &[i64]) -> Result<()> {
        // The last commit must have landed (normally long since: a commit interval ago) and not
        // failed; its batch goes with this job, to be freed on the writer's thread.
        let previous = self.inflight.take();
        if let Some(p) = &previous {
            self.outcome(&p.ticket)?;
        }
        if self.unflushed_restore {
            self.flush()?;
        }
        let created = self.created(&writes);
        let cp = self.encode_checkpoint(checkpoint)?;
        self.written(created.clone(), checkpoint);
        let drops = self.take_live(expired);
        let (db, shared) = (self.db.clone(), writes.clone());
        let ticket = writer::submit(Box::new(move || {
            let batch = build(&db, &shared, &created, &cp, &drops)?;
            // WAL on, no fsync: a commit a crash loses leaves the store behind Kafka, never
            // ahead of it, and the changelog restore brings it forward.
            db.write(batch).map_err(|e| e.into_string())?;
            drop((shared, previous));
            Ok(())
        }));
        self.inflight = Some(Inflight { writes, ticket });
        Ok(())
    }

    fn drop_segments(&mut self, segments: &[i64]) -> Result<()> {
        self.settle_mut()?;
        let live = self.take_live(segments);
        if live.is_empty() {
            return Ok(());
        }
        let batch = build(&self.db, &RawBatch::new(), &[], &[], &live).map_err(|reason| self.corrupted(reason))?;
        self.db.write(batch).map_err(|e| self.rocks("drop segments", e))
    }

    fn checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoint.clone()
    }

    fn approximate_count(&self) -> Result<u64> {
        let mut total = 0;
        for cf in [self.main_cf()?, self.segments_cf()?] {
            let n =
                self.db.property_int_value_cf(cf, "rocksdb.estimate-num-keys").map_err(|e| self.rocks("count", e))?;
            total += n.unwrap_or(0);
        }
        Ok(total)
    }

    fn flush(&mut self) -> Result<()> {
        self.settle_mut()?;
        let cfs = [self.main_cf()?, self.segments_cf()?, self.meta()?];
        self.db.flush_cfs_opt(&cfs, &FlushOptions::default()).map_err(|e| self.rocks("flush", e))?;
        self.unflushed_restore = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
