//! The typed key-value store: serdes over the transactional [`Core`].

use std::ops::Bound;

use crate::core::Core;
use crate::error::{Error, Result};
use crate::options::StoreOptions;
use crate::raw::{RawStore, Space};
use crate::serde::Serde;
use crate::typed::{Change, Codec};

/// A typed key-value store (Kafka Streams' `KeyValueStore`).
///
/// Writes since the last [`commit`](Self::commit) sit in an overlay that reads see (behind an
/// optional record cache); `commit` applies them with the changelog offset and input offsets in
/// one atomic write, and `abort` drops them. Every write yields a changelog record that the
/// engine takes with `drain_changelog` (see [`StateStore`]).
///
/// Ranges and prefixes follow the byte order of the serialized keys: use a serde whose encoding
/// sorts like the keys (strings, big-endian integers) when order matters.
pub struct KeyValueStore<K, V> {
    core: Core,
    codec: Codec<K, V>,
}

impl<K, V> std::fmt::Debug for KeyValueStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValueStore").field("core", &self.core).finish()
    }
}

crate::store::impl_state_store!(KeyValueStore);

impl<K, V> KeyValueStore<K, V> {
    /// A store over `raw` with these serdes and options.
    pub fn new(
        raw: Box<dyn RawStore>,
        keys: Box<dyn Serde<K>>,
        values: Box<dyn Serde<V>>,
        options: StoreOptions,
    ) -> Self {
        KeyValueStore { core: Core::new(raw, options, None), codec: Codec::new(keys, values) }
    }

    /// The value of `key`, including this transaction's writes.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let k = self.codec.key(self.core.name(), key)?;
        match self.core.get(Space::Main, &k)? {
            Some(v) => Ok(Some(self.codec.decode_value(self.core.name(), &k, &v)?)),
            None => Ok(None),
        }
    }

    /// Sets `key` to `value` at `timestamp`.
    pub fn put(&mut self, key: &K, value: &V, timestamp: i64) -> Result<()> {
        let k = self.codec.key(self.core.name(), key)?;
        let v = self.codec.value(self.core.name(), &k, value)?;
        self.core.write(k, Some(v), timestamp)?;
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
        let k = self.codec.key(self.core.name(), key)?;
        let old = match self.core.get(Space::Main, &k)? {
            Some(v) => Some(self.codec.decode_value(self.core.name(), &k, &v)?),
            None => None,
        };
        self.core.write(k, None, timestamp)?;
        Ok(old)
    }

    /// Deletes `key` without reading its previous value (cheaper than [`delete`](Self::delete),
    /// and it works when that value no longer deserializes).
    pub fn remove(&mut self, key: &K, timestamp: i64) -> Result<()> {
        let k = self.codec.key(self.core.name(), key)?;
        self.core.write(k, None, timestamp)?;
        Ok(())
    }

    fn collect(&self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<Vec<(K, V)>> {
        let mut out = Vec::new();
        let name = self.core.name();
        self.core.scan(Space::Main, from, to, &mut |k, v| {
            out.push((self.codec.decode_key(name, k)?, self.codec.decode_value(name, k, v)?));
            Ok(true)
        })?;
        Ok(out)
    }

    /// Entries with keys in `[from, to]` (inclusive, by serialized key order).
    pub fn range(&self, from: &K, to: &K) -> Result<Vec<(K, V)>> {
        let (a, b) = (self.codec.key(self.core.name(), from)?, self.codec.key(self.core.name(), to)?);
        self.collect(Bound::Included(&a), Bound::Included(&b))
    }

    /// Calls `f` with each entry from `from` on (inclusive; `None`: from the first key), in key
    /// order, until it returns `false`. Nothing is collected.
    pub fn for_each_from(&self, from: Option<&K>, f: &mut dyn FnMut(K, V) -> bool) -> Result<()> {
        let start = from.map(|k| self.codec.key(self.core.name(), k)).transpose()?;
        let lower = start.as_deref().map_or(Bound::Unbounded, Bound::Included);
        let name = self.core.name();
        self.core.scan(Space::Main, lower, Bound::Unbounded, &mut |k, v| {
            Ok(f(self.codec.decode_key(name, k)?, self.codec.decode_value(name, k, v)?))
        })
    }

    /// Entries whose serialized key starts with the serialized `prefix`.
    pub fn prefix_scan<P>(&self, prefix: &P, serde: &dyn Serde<P>) -> Result<Vec<(K, V)>> {
        let mut p = Vec::new();
        serde.serialize(prefix, &mut p).map_err(|source| Error::Serde {
            store: self.core.name().to_string(),
            what: "key",
            dir: "serialize",
            key: "(prefix)".into(),
            source,
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

    /// An estimate of the number of keys (committed estimate plus pending writes).
    pub fn approximate_count(&self) -> Result<u64> {
        self.core.approximate_count()
    }

    /// Takes the changes to forward downstream (see [`crate::Changes`]).
    pub fn take_changes(&mut self) -> Result<Vec<Change<K, V>>> {
        let changes = self.core.take_changes();
        self.codec.decode_changes(self.core.name(), changes, |k| self.codec.decode_key(self.core.name(), k))
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
