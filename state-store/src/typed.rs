//! What the typed stores share: serdes applied with errors that name the store and key, and
//! the typed change and window types they hand out.

use crate::core::RawChange;
use crate::error::{hex, Error, Result};
use crate::serde::Serde;

/// A key's and a value's serdes.
pub(crate) struct Codec<K, V> {
    keys: Box<dyn Serde<K>>,
    values: Box<dyn Serde<V>>,
}

impl<K, V> Codec<K, V> {
    pub(crate) fn new(keys: Box<dyn Serde<K>>, values: Box<dyn Serde<V>>) -> Self {
        Codec { keys, values }
    }

    /// Appends the encoding of `key` to `out`.
    pub(crate) fn key_into(&self, store: &str, key: &K, out: &mut Vec<u8>) -> Result<()> {
        self.keys.serialize(key, out).map_err(|source| Error::Serde {
            store: store.to_string(),
            what: "key",
            dir: "serialize",
            key: "(unserializable)".into(),
            source,
        })
    }

    pub(crate) fn key(&self, store: &str, key: &K) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(24);
        self.key_into(store, key, &mut out)?;
        Ok(out)
    }

    pub(crate) fn value(&self, store: &str, key_bytes: &[u8], value: &V) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(64);
        self.values.serialize(value, &mut out).map_err(|source| Error::Serde {
            store: store.to_string(),
            what: "value",
            dir: "serialize",
            key: hex(key_bytes),
            source,
        })?;
        Ok(out)
    }

    pub(crate) fn decode_key(&self, store: &str, bytes: &[u8]) -> Result<K> {
        self.keys.deserialize(bytes).map_err(|source| Error::Serde {
            store: store.to_string(),
            what: "key",
            dir: "deserialize",
            key: hex(bytes),
            source,
        })
    }

    pub(crate) fn decode_value(&self, store: &str, key_bytes: &[u8], bytes: &[u8]) -> Result<V> {
        self.values.deserialize(bytes).map_err(|source| Error::Serde {
            store: store.to_string(),
            what: "value",
            dir: "deserialize",
            key: hex(key_bytes),
            source,
        })
    }

    /// Decodes raw changes, the key bytes with `key` (which knows the store's key layout).
    pub(crate) fn decode_changes<KO>(
        &self,
        store: &str,
        changes: Vec<RawChange>,
        key: impl Fn(&[u8]) -> Result<KO>,
    ) -> Result<Vec<Change<KO, V>>> {
        changes
            .into_iter()
            .map(|c| {
                Ok(Change {
                    key: key(&c.key)?,
                    value: self.decode_opt(store, &c.key, c.value.as_deref())?,
                    old: self.decode_opt(store, &c.key, c.old.as_deref())?,
                    timestamp: c.timestamp,
                })
            })
            .collect()
    }

    pub(crate) fn decode_opt(&self, store: &str, key_bytes: &[u8], bytes: Option<&[u8]>) -> Result<Option<V>> {
        bytes.map(|b| self.decode_value(store, key_bytes, b)).transpose()
    }
}

/// A change a store hands downstream: the key, the new value (`None`: deleted), the value it
/// replaced when the store forwards old values, and the timestamp of the write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<K, V> {
    /// The key.
    pub key: K,
    /// The new value, or `None` for a delete.
    pub value: Option<V>,
    /// The replaced value ([`crate::Changes::NewAndOld`] only).
    pub old: Option<V>,
    /// Timestamp of the (newest) write.
    pub timestamp: i64,
}

/// A time window: `[start, end)` for time windows, `[start, end]` for sessions (whose start and
/// end are the first and last record times).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// Start time (ms).
    pub start: i64,
    /// End time (ms).
    pub end: i64,
}

/// A key of a window or session store: the record key and its window.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Windowed<K> {
    /// The record key.
    pub key: K,
    /// The window.
    pub window: Window,
}
