//! The byte-level transactional core every typed store sits on: the record cache, the
//! transaction overlay, the changelog buffer, retention of time segments, atomic commit of
//! state plus offsets, and restore.
//!
//! Reads see, newest first: the cache, the overlay (this transaction's flushed writes), the
//! committed writes not yet written to the raw store (see [`Core::persist`]), then the raw
//! store.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use crate::cache::RecordCache;
use crate::changelog::ChangelogRecord;
use crate::error::{hex, Error, Result};
use crate::options::{Changes, StoreOptions};
use crate::raw::{Checkpoint, RawBatch, RawStore, Space, WriteMode, WriteSet};

/// How a segmented store finds a record's time in its key bytes, and how long it keeps it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segmenting {
    /// Milliseconds of record time per segment.
    pub(crate) interval: i64,
    /// Records older than stream time minus this are dropped.
    pub(crate) retention: i64,
    /// The 8-byte big-endian time sits this many bytes before the end of the key.
    pub(crate) time_from_end: usize,
}

impl Segmenting {
    /// The record time encoded in `key`, if the key is long enough to hold one.
    pub(crate) fn time_of(&self, key: &[u8]) -> Option<i64> {
        let at = key.len().checked_sub(self.time_from_end)?;
        let bytes: [u8; 8] = key.get(at..at + 8)?.try_into().ok()?;
        Some(decode_time(bytes))
    }

    pub(crate) fn segment_of(&self, time: i64) -> i64 {
        time.div_euclid(self.interval)
    }
}

/// Encodes a time so that byte order is numeric order (sign bit flipped, big-endian).
pub(crate) fn encode_time(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// The inverse of [`encode_time`].
pub(crate) fn decode_time(b: [u8; 8]) -> i64 {
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

/// A write the downstream should see (when the store forwards changes): key bytes, the new
/// value (or `None` for a delete), the value it replaced if asked for, and the timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawChange {
    pub(crate) key: Vec<u8>,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) old: Option<Vec<u8>>,
    pub(crate) timestamp: i64,
}

/// A scan callback: takes key and value bytes, returns whether to go on.
pub(crate) type Visitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// The most writes of one commit kept for reads after it (see `Core::recent`): beyond this a
/// commit's writes are dropped once written, so a long at-least-once interval over many keys
/// does not hold its whole write set twice.
const RECENT_MAX_ENTRIES: usize = 100_000;

/// The transactional core of a store.
pub(crate) struct Core {
    raw: Box<dyn RawStore>,
    options: StoreOptions,
    cache: Option<RecordCache>,
    overlay: BTreeMap<Space, WriteSet>,
    /// The writes of a transaction whose Kafka commit is under way (see [`Core::seal`]); the
    /// overlay then holds the next transaction's.
    sealed: RawBatch,
    /// Stream time when the sealed transaction ended; `Some` while one is sealed.
    sealed_time: Option<i64>,
    /// Committed writes not yet handed to the raw store, the newest per key, when commits do
    /// not persist (see [`Core::set_persist_on_commit`]), with the checkpoint of the last
    /// commit they hold.
    unwritten: RawBatch,
    unwritten_cp: Option<Checkpoint>,
    /// Whether each commit writes to the raw store (the default).
    persist_on_commit: bool,
    /// The writes of the last commit, kept for reads: they are in the raw store too (or on
    /// their way there: the RocksDB store applies a commit in the background), but a stream
    /// that touches the same keys commit after commit (an aggregation at a short commit
    /// interval) finds them here instead of paying a RocksDB lookup for each key after every
    /// commit. Replaced at each commit; scans need not merge it.
    recent: Arc<RawBatch>,
    changelog: Vec<ChangelogRecord>,
    changes: Vec<RawChange>,
    checkpoint: Checkpoint,
    segmenting: Option<Segmenting>,
    /// Records dropped because their segment had expired.
    expired_drops: u64,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("name", &self.raw.name())
            .field("pending", &self.overlay.values().map(BTreeMap::len).sum::<usize>())
            .field("cached", &self.cache.as_ref().map_or(0, RecordCache::len))
            .finish()
    }
}

impl Core {
    pub(crate) fn new(raw: Box<dyn RawStore>, options: StoreOptions, segmenting: Option<Segmenting>) -> Self {
        let checkpoint = raw.checkpoint().unwrap_or_default();
        let cache = (options.cache_bytes > 0).then(|| RecordCache::new(options.cache_bytes));
        Core {
            raw,
            options,
            cache,
            overlay: BTreeMap::new(),
            sealed: RawBatch::new(),
            sealed_time: None,
            unwritten: RawBatch::new(),
            unwritten_cp: None,
            persist_on_commit: true,
            recent: Arc::default(),
            changelog: Vec::new(),
            changes: Vec::new(),
            checkpoint,
            segmenting,
            expired_drops: 0,
        }
    }

    pub(crate) fn name(&self) -> &str {
        self.raw.name()
    }

    pub(crate) fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    pub(crate) fn stream_time(&self) -> i64 {
        self.checkpoint.stream_time
    }

    pub(crate) fn expired_drops(&self) -> u64 {
        self.expired_drops
    }

    /// The smallest record time still retained (segmented stores), or `i64::MIN`.
    pub(crate) fn retained_from(&self) -> i64 {
        self.retained_from_at(self.checkpoint.stream_time)
    }

    /// The smallest record time retained at `stream_time` (segmented stores), or `i64::MIN`.
    fn retained_from_at(&self, stream_time: i64) -> i64 {
        match self.segmenting {
            Some(s) if stream_time >= 0 => stream_time.saturating_sub(s.retention).saturating_add(1),
            _ => i64::MIN,
        }
    }

    /// The keyspace of a key, or `None` when its segment has expired. Advances stream time.
    fn place(&mut self, key: &[u8]) -> Result<Option<Space>> {
        let Some(seg) = self.segmenting else { return Ok(Some(Space::Main)) };
        let time = seg.time_of(key).ok_or_else(|| Error::BadChangelog {
            store: self.name().to_string(),
            key: hex(key),
            reason: format!("a segmented key needs at least {} bytes", seg.time_from_end),
        })?;
        if time > self.checkpoint.stream_time {
            self.checkpoint.stream_time = time;
        }
        if time < self.retained_from() {
            self.expired_drops += 1;
            return Ok(None);
        }
        Ok(Some(Space::Segment(seg.segment_of(time))))
    }

    /// Writes `key` (a delete when `value` is `None`). Returns `false` when a segmented store
    /// dropped the write because its time is past retention.
    pub(crate) fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>, timestamp: i64) -> Result<bool> {
        let Some(space) = self.place(&key)? else { return Ok(false) };
        match &mut self.cache {
            Some(cache) => {
                if cache.put(space, key, value, timestamp) {
                    self.flush_cache()?;
                }
            }
            None => self.apply(space, key, value, timestamp)?,
        }
        Ok(true)
    }

    /// Moves one write into the overlay, logging it and recording the change.
    fn apply(&mut self, space: Space, key: Vec<u8>, value: Option<Vec<u8>>, timestamp: i64) -> Result<()> {
        if self.options.logging {
            self.changelog.push(ChangelogRecord { key: key.clone(), value: value.clone(), timestamp });
        }
        match self.options.changes {
            Changes::Off => {}
            Changes::New => {
                self.changes.push(RawChange { key: key.clone(), value: value.clone(), old: None, timestamp });
            }
            Changes::NewAndOld => {
                let old = self.get_flushed(space, &key)?;
                self.changes.push(RawChange { key: key.clone(), value: value.clone(), old, timestamp });
            }
        }
        self.overlay.entry(space).or_default().insert(key, value);
        Ok(())
    }

    /// Flushes the cache: every cached write goes to the overlay, the changelog and the change
    /// stream, one per key.
    pub(crate) fn flush_cache(&mut self) -> Result<()> {
        let Some(cache) = &mut self.cache else { return Ok(()) };
        if cache.is_empty() {
            return Ok(());
        }
        for (space, entries) in cache.take() {
            for (key, e) in entries {
                self.apply(space, key, e.value, e.timestamp)?;
            }
        }
        Ok(())
    }

    /// The in-memory write layers below the cache, newest first: the overlay, the sealed
    /// transaction, the commits not yet persisted.
    fn layers(&self) -> [&RawBatch; 3] {
        [&self.overlay, &self.sealed, &self.unwritten]
    }

    /// The value of `key` below the cache (the layers, the last persisted commit, then the raw
    /// store).
    fn get_flushed(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        for layer in self.layers().into_iter().chain([&*self.recent]) {
            if let Some(v) = layer.get(&space).and_then(|o| o.get(key)) {
                return Ok(v.clone());
            }
        }
        self.raw.get(space, key)
    }

    /// The current value of `key` in `space`.
    pub(crate) fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(e) = self.cache.as_ref().and_then(|c| c.get(space, key)) {
            return Ok(e.value.clone());
        }
        self.get_flushed(space, key)
    }

    /// The keyspaces that may hold data: committed segments and those with pending writes.
    pub(crate) fn spaces(&self) -> Vec<Space> {
        let mut out: Vec<Space> = self.raw.segments().into_iter().map(Space::Segment).collect();
        out.extend(self.layers().into_iter().flat_map(BTreeMap::keys).copied());
        if let Some(c) = &self.cache {
            out.extend(c.spaces());
        }
        if self.segmenting.is_none() {
            out.push(Space::Main);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Calls `f` with every live entry of `space` in `[from, to)` bounds, in key order, the
    /// cache and the overlay merged over the committed state, until `f` returns `false`.
    pub(crate) fn scan(&self, space: Space, from: Bound<&[u8]>, to: Bound<&[u8]>, f: &mut Visitor<'_>) -> Result<()> {
        if crate::raw::is_empty_range(from, to) {
            return Ok(());
        }
        let pending = self.pending(space, from, to);
        let mut i = 0usize;
        // Ok(true): keep going; Ok(false): the callback stopped; Err: it failed.
        let mut state: Result<bool> = Ok(true);
        self.raw.scan(space, from, to, &mut |k, v| {
            // Pending entries before this committed key come first.
            while i < pending.len() && pending[i].0 < k {
                let (pk, pv) = pending[i];
                i += 1;
                if !visit(f, &mut state, pk, pv) {
                    return false;
                }
            }
            if i < pending.len() && pending[i].0 == k {
                let pv = pending[i].1;
                i += 1;
                visit(f, &mut state, k, pv)
            } else {
                visit(f, &mut state, k, Some(v))
            }
        })?;
        if matches!(state, Ok(true)) {
            for (k, v) in &pending[i..] {
                if !visit(f, &mut state, k, *v) {
                    break;
                }
            }
        }
        state.map(|_| ())
    }

    /// The cache's, the overlay's, the sealed transaction's and the unwritten commits' entries
    /// of `space` in range, merged (the newer layer wins), in key order.
    fn pending<'a>(&'a self, space: Space, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Vec<(&'a [u8], Option<&'a [u8]>)> {
        let range = |layer: &'a RawBatch| {
            layer
                .get(&space)
                .into_iter()
                .flat_map(move |o| o.range::<[u8], _>((from, to)))
                .map(|(k, v)| (k.as_slice(), v.as_deref()))
        };
        let committing = MergeNewer::new(range(&self.unwritten), range(&self.sealed));
        let below_cache = MergeNewer::new(committing, range(&self.overlay));
        let cached = self
            .cache
            .as_ref()
            .and_then(|c| c.space(space))
            .into_iter()
            .flat_map(|c| c.range::<[u8], _>((from, to)))
            .map(|(k, e)| (k.as_slice(), e.value.as_deref()));
        MergeNewer::new(below_cache, cached).collect()
    }

    /// An estimate of the number of keys (committed estimate plus pending inserts).
    pub(crate) fn approximate_count(&self) -> Result<u64> {
        let pending = self
            .layers()
            .into_iter()
            .flat_map(BTreeMap::values)
            .flat_map(|o| o.values())
            .filter(|v| v.is_some())
            .count()
            + self.cache.as_ref().map_or(0, RecordCache::len);
        Ok(self.raw.approximate_count()? + pending as u64)
    }

    /// Moves the changelog records produced since the last call to the end of `out` (see
    /// [`StateStore::drain_changelog_into`](crate::StateStore::drain_changelog_into)).
    pub(crate) fn drain_changelog_into(&mut self, out: &mut Vec<ChangelogRecord>) {
        if out.is_empty() {
            std::mem::swap(&mut self.changelog, out);
        } else {
            out.append(&mut self.changelog);
        }
    }

    /// Takes the changes produced since the last call.
    pub(crate) fn take_changes(&mut self) -> Vec<RawChange> {
        std::mem::take(&mut self.changes)
    }

    /// Whether writes wait in the cache, the changelog buffer or the change buffer.
    fn unflushed(&self) -> Option<String> {
        let cached = self.cache.as_ref().map_or(0, RecordCache::len);
        if cached > 0 {
            return Some(format!("{cached} cached writes were not flushed"));
        }
        if !self.changelog.is_empty() {
            return Some(format!("{} changelog records were not drained", self.changelog.len()));
        }
        None
    }

    /// Whether each commit writes to the raw store (the default) or commits stay in memory,
    /// readable, until [`persist`](Self::persist), until more than `RECENT_MAX_ENTRIES` keys
    /// wait, or until the store is dropped (expired segments are dropped then too). Only a
    /// store with a changelog defers: a crash then loses the unwritten commits from the raw
    /// store, and the restore from the changelog (which starts at the raw store's checkpoint)
    /// brings them back. At a short commit interval an aggregation updates the same keys commit after
    /// commit, and deferring writes each key once per persist instead of once per commit.
    pub(crate) fn set_persist_on_commit(&mut self, on: bool) {
        self.persist_on_commit = on || !self.options.logging;
    }

    /// Ends the current transaction here: the writes so far become the one to commit, and
    /// later writes belong to the next (readable on top of it, dropped with it by an abort).
    /// The engine seals, then processes on while Kafka commits. Sealing again before the
    /// commit adds the writes since to the sealed transaction. The cache must have been
    /// flushed and the changelog drained.
    pub(crate) fn seal(&mut self) -> Result<()> {
        if let Some(reason) = self.unflushed() {
            return Err(Error::InvalidUse {
                store: self.name().to_string(),
                reason: format!("commit before the transaction's changelog was sent: {reason}"),
            });
        }
        merge_into(&mut self.sealed, std::mem::take(&mut self.overlay));
        self.sealed_time = Some(self.checkpoint.stream_time);
        Ok(())
    }

    /// Commits the sealed transaction (sealing first when none is) with `changelog_offset`
    /// and the input offsets: written to the raw store in one atomic write with them (see
    /// [`Self::persist`]) now, or later when commits are deferred.
    pub(crate) fn commit(&mut self, changelog_offset: i64, input_offsets: &[(String, i32, i64)]) -> Result<()> {
        if self.sealed_time.is_none() {
            self.seal()?;
        }
        let stream_time = self.sealed_time.take().unwrap_or(self.checkpoint.stream_time);
        let mut cp = self.checkpoint.clone();
        cp.changelog_offset = changelog_offset;
        cp.stream_time = stream_time;
        for (topic, partition, offset) in input_offsets {
            cp.input_offsets.entry(topic.clone()).or_default().insert(*partition, *offset);
        }
        merge_into(&mut self.unwritten, std::mem::take(&mut self.sealed));
        // Stream time runs on with the writes after the seal.
        self.checkpoint = Checkpoint { stream_time: self.checkpoint.stream_time, ..cp.clone() };
        self.unwritten_cp = Some(cp);
        if self.persist_on_commit || batch_len(&self.unwritten) > RECENT_MAX_ENTRIES {
            return self.persist();
        }
        Ok(())
    }

    /// Writes the commits not yet written to the raw store with the last one's checkpoint, in
    /// one atomic write that also drops the expired segments (see [`RawStore::write_shared`]);
    /// more than `RECENT_MAX_ENTRIES` keys are written in line and their drops follow.
    pub(crate) fn persist(&mut self) -> Result<()> {
        let Some(cp) = self.unwritten_cp.take() else { return Ok(()) };
        // The committed stream time, not the running one: the writes after the seal may still
        // be aborted, and the committed state needs every segment its own time retains.
        let expired = self.expired_segments(cp.stream_time);
        let mut batch = std::mem::take(&mut self.unwritten);
        batch.retain(|space, _| !matches!(space, Space::Segment(id) if expired.contains(id)));
        if batch_len(&batch) > RECENT_MAX_ENTRIES {
            // Too large to keep for reads: applied in line and dropped.
            if let Err(e) = self.raw.write(&batch, &cp, WriteMode::Commit) {
                self.restore_unwritten(batch, cp);
                return Err(e);
            }
            self.recent = Arc::default();
            return self.raw.drop_segments(&expired);
        }
        let batch = Arc::new(batch);
        if let Err(e) = self.raw.write_shared(batch.clone(), &cp, &expired) {
            self.restore_unwritten(Arc::try_unwrap(batch).unwrap_or_else(|b| (*b).clone()), cp);
            return Err(e);
        }
        self.recent = batch;
        Ok(())
    }

    /// Puts back the writes a failed persist took.
    fn restore_unwritten(&mut self, batch: RawBatch, cp: Checkpoint) {
        self.unwritten = batch;
        self.unwritten_cp = Some(cp);
    }

    /// Committed segments whose newest time is older than retention keeps at `stream_time`
    /// (a committed one: see [`Self::persist`]).
    fn expired_segments(&self, stream_time: i64) -> Vec<i64> {
        let Some(seg) = self.segmenting else { return Vec::new() };
        let from = self.retained_from_at(stream_time);
        let mut ids: Vec<i64> = self.raw.segments();
        ids.extend(self.layers().into_iter().flat_map(BTreeMap::keys).filter_map(|s| match s {
            Space::Segment(id) => Some(*id),
            Space::Main => None,
        }));
        ids.retain(|id| id.saturating_add(1).saturating_mul(seg.interval).saturating_sub(1) < from);
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Drops this transaction's writes (and a sealed one's), changelog records and changes;
    /// stream time goes back to the last commit.
    pub(crate) fn abort(&mut self) {
        self.overlay.clear();
        self.sealed.clear();
        self.sealed_time = None;
        if let Some(c) = &mut self.cache {
            c.clear();
        }
        self.changelog.clear();
        self.changes.clear();
        self.checkpoint.stream_time = match &self.unwritten_cp {
            Some(cp) => cp.stream_time,
            None => self.raw.checkpoint().map_or(-1, |c| c.stream_time),
        };
    }

    /// Applies changelog records read back from the changelog topic, the last at offset
    /// `last_offset`, in one bulk write without the write-ahead log.
    pub(crate) fn restore(
        &mut self,
        records: impl IntoIterator<Item = ChangelogRecord>,
        last_offset: i64,
    ) -> Result<()> {
        if !self.overlay.is_empty()
            || self.sealed_time.is_some()
            || self.cache.as_ref().is_some_and(|c| !c.is_empty())
            || self.unwritten_cp.is_some()
        {
            return Err(Error::InvalidUse {
                store: self.name().to_string(),
                reason: "restore while the store has uncommitted writes or commits not yet persisted".into(),
            });
        }
        self.recent = Arc::default();
        let mut batch = RawBatch::new();
        let mut main = WriteSet::new();
        for r in records {
            if self.segmenting.is_none() {
                main.insert(r.key, r.value);
                continue;
            }
            if let Some(space) = self.place(&r.key)? {
                batch.entry(space).or_default().insert(r.key, r.value);
            }
        }
        if !main.is_empty() {
            batch.insert(Space::Main, main);
        }
        let mut cp = self.checkpoint.clone();
        cp.changelog_offset = cp.changelog_offset.max(last_offset + 1);
        let expired = self.expired_segments(cp.stream_time);
        batch.retain(|space, _| !matches!(space, Space::Segment(id) if expired.contains(id)));
        self.raw.write(&batch, &cp, WriteMode::Restore)?;
        self.checkpoint = cp;
        self.raw.drop_segments(&expired)
    }

    /// Ends a restore: makes the restored state durable.
    pub(crate) fn finish_restore(&mut self) -> Result<()> {
        self.raw.flush()
    }

    /// Logs `key`'s current value (a tombstone when absent or expired) again (see
    /// [`StateStore::relog`](crate::StateStore::relog)).
    pub(crate) fn relog(&mut self, key: Vec<u8>, timestamp: i64) -> Result<()> {
        let space = match self.segmenting {
            None => Space::Main,
            Some(seg) => {
                let time = seg.time_of(&key).ok_or_else(|| Error::BadChangelog {
                    store: self.name().to_string(),
                    key: hex(&key),
                    reason: format!("a segmented key needs at least {} bytes", seg.time_from_end),
                })?;
                if time < self.retained_from() {
                    self.changelog.push(ChangelogRecord { key, value: None, timestamp });
                    return Ok(());
                }
                Space::Segment(seg.segment_of(time))
            }
        };
        let value = self.get(space, &key)?;
        self.changelog.push(ChangelogRecord { key, value, timestamp });
        Ok(())
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // A closed store keeps every commit: the unwritten ones are written now.
        if let Err(e) = self.persist() {
            tracing::warn!(
                store = self.name(),
                error = %e,
                "writing the last commits at close failed; the changelog restore brings them back"
            );
        }
    }
}

/// Adds `newer`'s writes to `into`, replacing older writes of the same keys.
fn merge_into(into: &mut RawBatch, newer: RawBatch) {
    if into.is_empty() {
        *into = newer;
        return;
    }
    for (space, writes) in newer {
        match into.entry(space) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(writes);
            }
            std::collections::btree_map::Entry::Occupied(mut e) => {
                let older = std::mem::take(e.get_mut());
                *e.get_mut() = merge_sets(older, writes);
            }
        }
    }
}

/// `older` and `newer` merged, `newer` winning on equal keys. A commit's writes into the
/// commits not yet persisted, at each commit: inserting each key walked the tree and compared
/// keys ~log n times, while `BTreeMap::append` merges both sorted sets and builds the tree in
/// one pass, without the intermediate vector and sort of collecting an iterator.
fn merge_sets(mut older: WriteSet, mut newer: WriteSet) -> WriteSet {
    if newer.len().saturating_mul(8) < older.len() {
        // A few writes: inserting them beats rebuilding the whole set.
        older.extend(newer);
    } else {
        older.append(&mut newer);
    }
    older
}

/// Entries in a batch, over all its keyspaces.
fn batch_len(batch: &RawBatch) -> usize {
    batch.values().map(BTreeMap::len).sum()
}

/// Two key-ordered runs of entries merged in key order; on equal keys `newer`'s entry wins.
struct MergeNewer<'a, O: Iterator, N: Iterator> {
    older: std::iter::Peekable<O>,
    newer: std::iter::Peekable<N>,
    _entries: std::marker::PhantomData<&'a [u8]>,
}

type Entry<'a> = (&'a [u8], Option<&'a [u8]>);

impl<'a, O: Iterator<Item = Entry<'a>>, N: Iterator<Item = Entry<'a>>> MergeNewer<'a, O, N> {
    fn new(older: O, newer: N) -> Self {
        MergeNewer { older: older.peekable(), newer: newer.peekable(), _entries: std::marker::PhantomData }
    }
}

impl<'a, O: Iterator<Item = Entry<'a>>, N: Iterator<Item = Entry<'a>>> Iterator for MergeNewer<'a, O, N> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        match (self.older.peek(), self.newer.peek()) {
            (None, _) => self.newer.next(),
            (Some(_), None) => self.older.next(),
            (Some((ok, _)), Some((nk, _))) => {
                if ok < nk {
                    self.older.next()
                } else {
                    if ok == nk {
                        self.older.next();
                    }
                    self.newer.next()
                }
            }
        }
    }
}

/// Hands a live entry (`v` is `None` for a pending delete, skipped) to `f`; returns whether to
/// go on, recording a stop or an error in `state`.
fn visit(f: &mut Visitor<'_>, state: &mut Result<bool>, k: &[u8], v: Option<&[u8]>) -> bool {
    let Some(v) = v else { return true };
    match f(k, v) {
        Ok(true) => true,
        Ok(false) => {
            *state = Ok(false);
            false
        }
        Err(e) => {
            *state = Err(e);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(entries: &[(&str, Option<&str>)]) -> WriteSet {
        entries.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec()))).collect()
    }

    #[test]
    fn should_merge_sets_with_the_newer_write_winning_whichever_way_it_merges() {
        let older: Vec<(String, Option<String>)> =
            (0..20).map(|i| (format!("k{i:02}"), Some(format!("old{i}")))).collect();
        let older: Vec<(&str, Option<&str>)> = older.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
        // One newer write (inserted) and many (rebuilt in one pass) must give the same result.
        for newer in
            [set(&[("k05", None)]), set(&[("a", Some("new")), ("k05", None), ("k07", Some("new")), ("z", None)])]
        {
            let merged = merge_sets(set(&older), newer.clone());
            let mut expected = set(&older);
            expected.extend(newer);
            assert_eq!(merged, expected);
            assert_eq!(merged.get(b"k05".as_slice()), Some(&None), "a newer delete wins");
        }
    }
}
