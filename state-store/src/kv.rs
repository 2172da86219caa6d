//! The typed key-value store: serdes over a [`RawStore`], a transaction overlay the task reads
//! its own writes from, a changelog buffer, and atomic commit of state plus offsets.

use std::ops::Bound;

use crate::changelog::ChangelogRecord;
use crate::error::{hex, Error, Result};
use crate::raw::{Checkpoint, RawStore, WriteMode, WriteSet};
use crate::serde::Serde;

/// A typed key-value store (Kafka Streams' `KeyValueStore`).
///
/// Writes since the last [`commit`](Self::commit) sit in an overlay that reads see; `commit`
/// applies them with the changelog offset and input offsets in one atomic write, and
/// [`abort`](Self::abort) drops them. Every write also appends a [`ChangelogRecord`] that the
/// engine takes with [`drain_changelog`](Self::drain_changelog).
pub struct KeyValueStore<K, V> {
    raw: Box<dyn RawStore>,
    keys: Box<dyn Serde<K>>,
    values: Box<dyn Serde<V>>,
    overlay: WriteSet,
    changelog: Vec<ChangelogRecord>,
    logging: bool,
    checkpoint: Checkpoint,
}

impl<K, V> std::fmt::Debug for KeyValueStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValueStore").field("name", &self.raw.name()).field("pending", &self.overlay.len()).finish()
    }
}

impl<K, V> KeyValueStore<K, V> {
    /// A store over `raw` with these serdes; change logging on.
    pub fn new(raw: Box<dyn RawStore>, keys: Box<dyn Serde<K>>, values: Box<dyn Serde<V>>) -> Self {
        let checkpoint = raw.checkpoint().unwrap_or_default();
        KeyValueStore { raw, keys, values, overlay: WriteSet::new(), changelog: Vec::new(), logging: true, checkpoint }
    }

    /// Turns change logging off (a store that is not backed by a changelog topic).
    pub fn without_logging(mut self) -> Self {
        self.logging = false;
        self
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        self.raw.name()
    }

    /// The last committed checkpoint: restore the changelog from its `changelog_offset`.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    fn key_bytes(&self, key: &K) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(16);
        self.keys.serialize(key, &mut out).map_err(|reason| Error::Serde {
            store: self.name().to_string(),
            what: "key",
            dir: "serialize",
            key: "?".into(),
            reason,
        })?;
        Ok(out)
    }

    fn decode_value(&self, key: &[u8], bytes: &[u8]) -> Result<V> {
        self.values.deserialize(bytes).map_err(|reason| Error::Serde {
            store: self.name().to_string(),
            what: "value",
            dir: "deserialize",
            key: hex(key),
            reason,
        })
    }

    fn decode_key(&self, key: &[u8]) -> Result<K> {
        self.keys.deserialize(key).map_err(|reason| Error::Serde {
            store: self.name().to_string(),
            what: "key",
            dir: "deserialize",
            key: hex(key),
            reason,
        })
    }

    fn get_bytes(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.overlay.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.raw.get(key),
        }
    }

    /// The value of `key`, including this transaction's writes.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let k = self.key_bytes(key)?;
        match self.get_bytes(&k)? {
            Some(v) => Ok(Some(self.decode_value(&k, &v)?)),
            None => Ok(None),
        }
    }

    fn write_bytes(&mut self, key: Vec<u8>, value: Option<Vec<u8>>, timestamp: i64) {
        if self.logging {
            self.changelog.push(ChangelogRecord { key: key.clone(), value: value.clone(), timestamp });
        }
        self.overlay.insert(key, value);
    }

    /// Sets `key` to `value` at `timestamp`.
    pub fn put(&mut self, key: &K, value: &V, timestamp: i64) -> Result<()> {
        let k = self.key_bytes(key)?;
        let mut v = Vec::with_capacity(64);
        self.values.serialize(value, &mut v).map_err(|reason| Error::Serde {
            store: self.name().to_string(),
            what: "value",
            dir: "serialize",
            key: hex(&k),
            reason,
        })?;
        self.write_bytes(k, Some(v), timestamp);
        Ok(())
    }

    /// Sets `key` to `value` unless it has a value; returns the existing value if any.
    pub fn put_if_absent(&mut self, key: &K, value: &V, timestamp: i64) -> Result<Option<V>> {
        match self.get(key)? {
            Some(existing) => Ok(Some(existing)),
            None => {
                self.put(key, value, timestamp)?;
                Ok(None)
            }
        }
    }

    /// Deletes `key`; returns its previous value.
    pub fn delete(&mut self, key: &K, timestamp: i64) -> Result<Option<V>> {
        let old = self.get(key)?;
        let k = self.key_bytes(key)?;
        self.write_bytes(k, None, timestamp);
        Ok(old)
    }

    /// Calls `f` with every (key bytes, value bytes) in `[from, to)`, this transaction's writes
    /// merged over the committed state, in key order, until `f` returns `false`.
    fn scan_bytes(
        &self,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        f: &mut dyn FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        if crate::raw::is_empty_range(from, to) {
            return Ok(());
        }
        let pending: Vec<(&Vec<u8>, &Option<Vec<u8>>)> = self.overlay.range::<[u8], _>((from, to)).collect();
        let mut i = 0usize;
        let mut result = Ok(());
        let mut stopped = false;
        self.raw.scan(from, to, &mut |k, v| {
            // Overlay entries before this committed key come first.
            while i < pending.len() && pending[i].0.as_slice() < k {
                if let Some(pv) = pending[i].1 {
                    match f(pending[i].0, pv) {
                        Ok(true) => {}
                        Ok(false) => {
                            stopped = true;
                            return false;
                        }
                        Err(e) => {
                            result = Err(e);
                            return false;
                        }
                    }
                }
                i += 1;
            }
            let overridden = i < pending.len() && pending[i].0.as_slice() == k;
            let out = if overridden {
                let entry = pending[i];
                i += 1;
                match entry.1 {
                    Some(pv) => f(k, pv),
                    None => Ok(true),
                }
            } else {
                f(k, v)
            };
            match out {
                Ok(true) => true,
                Ok(false) => {
                    stopped = true;
                    false
                }
                Err(e) => {
                    result = Err(e);
                    false
                }
            }
        })?;
        result?;
        if !stopped {
            for (k, v) in &pending[i..] {
                if let Some(v) = v {
                    if !f(k, v)? {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    fn collect(&self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<Vec<(K, V)>> {
        let mut out = Vec::new();
        self.scan_bytes(from, to, &mut |k, v| {
            out.push((self.decode_key(k)?, self.decode_value(k, v)?));
            Ok(true)
        })?;
        Ok(out)
    }

    /// Entries with keys in `[from, to]` (inclusive, by serialized key order).
    pub fn range(&self, from: &K, to: &K) -> Result<Vec<(K, V)>> {
        let (a, b) = (self.key_bytes(from)?, self.key_bytes(to)?);
        self.collect(Bound::Included(&a), Bound::Included(&b))
    }

    /// Entries whose serialized key starts with the serialized `prefix`.
    pub fn prefix_scan<P>(&self, prefix: &P, serde: &dyn Serde<P>) -> Result<Vec<(K, V)>> {
        let mut p = Vec::new();
        serde.serialize(prefix, &mut p).map_err(|reason| Error::Serde {
            store: self.name().to_string(),
            what: "key",
            dir: "serialize",
            key: "prefix".into(),
            reason,
        })?;
        match prefix_end(&p) {
            Some(end) => self.collect(Bound::Included(&p), Bound::Excluded(&end)),
            None => self.collect(Bound::Included(&p), Bound::Unbounded),
        }
    }

    /// Every entry, in key order.
    pub fn all(&self) -> Result<Vec<(K, V)>> {
        self.collect(Bound::Unbounded, Bound::Unbounded)
    }

    /// An estimate of the number of keys (committed estimate plus pending inserts).
    pub fn approximate_count(&self) -> Result<u64> {
        let pending = self.overlay.values().filter(|v| v.is_some()).count() as u64;
        Ok(self.raw.approximate_count()? + pending)
    }

    /// Takes the changelog records written since the last call, for the engine to send in the
    /// current Kafka transaction.
    pub fn drain_changelog(&mut self) -> Vec<ChangelogRecord> {
        std::mem::take(&mut self.changelog)
    }

    /// After the Kafka transaction committed: applies this transaction's writes together with
    /// `changelog_offset` (the next offset after its changelog records) and the input offsets,
    /// in one atomic write.
    pub fn commit(&mut self, changelog_offset: i64, input_offsets: &[(String, i32, i64)]) -> Result<()> {
        let mut cp = self.checkpoint.clone();
        cp.changelog_offset = changelog_offset;
        for (topic, partition, offset) in input_offsets {
            cp.input_offsets.entry(topic.clone()).or_default().insert(*partition, *offset);
        }
        self.raw.write(&self.overlay, &cp, WriteMode::Commit)?;
        self.overlay.clear();
        self.checkpoint = cp;
        Ok(())
    }

    /// Drops this transaction's writes and changelog records (the Kafka transaction aborted).
    pub fn abort(&mut self) {
        self.overlay.clear();
        self.changelog.clear();
    }

    /// Applies changelog records read back from the changelog topic, up to offset
    /// `last_offset`, in bulk (no write-ahead log until [`finish_restore`](Self::finish_restore)).
    pub fn restore(&mut self, records: impl IntoIterator<Item = ChangelogRecord>, last_offset: i64) -> Result<()> {
        let mut batch = WriteSet::new();
        for r in records {
            batch.insert(r.key, r.value);
        }
        let mut cp = self.checkpoint.clone();
        cp.changelog_offset = cp.changelog_offset.max(last_offset + 1);
        self.raw.write(&batch, &cp, WriteMode::Restore)?;
        self.checkpoint = cp;
        Ok(())
    }

    /// Ends a restore: makes the restored state durable.
    pub fn finish_restore(&mut self) -> Result<()> {
        self.raw.flush()
    }
}

/// The smallest byte string greater than every string starting with `prefix`, if any.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}
