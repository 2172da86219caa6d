//! The record cache: a bounded write-back buffer in front of a store (Kafka Streams' caching
//! layer). Repeated updates to a key between flushes merge into one entry, so the changelog and
//! the downstream see one record per key per flush instead of one per update.

use std::collections::BTreeMap;

use crate::raw::Space;

/// Bookkeeping bytes charged per cached entry on top of its key and value.
const ENTRY_OVERHEAD: usize = 48;

/// A cached write: the newest value (or delete) of a key and its timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheEntry {
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) timestamp: i64,
}

/// Dirty entries per keyspace, with their total size.
#[derive(Debug)]
pub(crate) struct RecordCache {
    spaces: BTreeMap<Space, BTreeMap<Vec<u8>, CacheEntry>>,
    bytes: usize,
    max_bytes: usize,
    entries: usize,
}

impl RecordCache {
    /// An empty cache holding at most `max_bytes` (keys, values and bookkeeping).
    pub(crate) fn new(max_bytes: usize) -> Self {
        RecordCache { spaces: BTreeMap::new(), bytes: 0, max_bytes, entries: 0 }
    }

    fn size(key: &[u8], value: &Option<Vec<u8>>) -> usize {
        key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD
    }

    /// Records a write; returns whether the cache is now over its bound (flush it).
    pub(crate) fn put(&mut self, space: Space, key: Vec<u8>, value: Option<Vec<u8>>, timestamp: i64) -> bool {
        let added = Self::size(&key, &value);
        let entries = self.spaces.entry(space).or_default();
        match entries.get_mut(key.as_slice()) {
            Some(e) => {
                self.bytes = self.bytes + value.as_ref().map_or(0, Vec::len) - e.value.as_ref().map_or(0, Vec::len);
                *e = CacheEntry { value, timestamp };
            }
            None => {
                entries.insert(key, CacheEntry { value, timestamp });
                self.bytes += added;
                self.entries += 1;
            }
        }
        self.bytes > self.max_bytes
    }

    /// The cached write of `key`, if any.
    pub(crate) fn get(&self, space: Space, key: &[u8]) -> Option<&CacheEntry> {
        self.spaces.get(&space).and_then(|m| m.get(key))
    }

    /// The cached writes of `space` (for merging into scans).
    pub(crate) fn space(&self, space: Space) -> Option<&BTreeMap<Vec<u8>, CacheEntry>> {
        self.spaces.get(&space)
    }

    /// The keyspaces holding cached writes.
    pub(crate) fn spaces(&self) -> impl Iterator<Item = Space> + '_ {
        self.spaces.keys().copied()
    }

    /// Takes every entry, in keyspace then key order, leaving the cache empty.
    pub(crate) fn take(&mut self) -> BTreeMap<Space, BTreeMap<Vec<u8>, CacheEntry>> {
        self.bytes = 0;
        self.entries = 0;
        std::mem::take(&mut self.spaces)
    }

    /// Drops every entry without flushing it (the transaction aborted).
    pub(crate) fn clear(&mut self) {
        self.take();
    }

    /// Whether the cache holds no writes.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Number of cached entries.
    pub(crate) fn len(&self) -> usize {
        self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_merge_updates_to_a_key_and_report_when_full() {
        let mut c = RecordCache::new(200);
        assert!(!c.put(Space::Main, b"k".to_vec(), Some(vec![1; 10]), 1));
        assert!(!c.put(Space::Main, b"k".to_vec(), Some(vec![2; 20]), 2));
        assert_eq!(c.len(), 1, "a second write to a key replaces the first");
        assert_eq!(c.get(Space::Main, b"k"), Some(&CacheEntry { value: Some(vec![2; 20]), timestamp: 2 }));
        assert!(!c.put(Space::Segment(3), b"k".to_vec(), None, 3));
        assert!(c.put(Space::Main, b"big".to_vec(), Some(vec![0; 100]), 4), "over 200 bytes");
        let taken = c.take();
        assert_eq!(taken.len(), 2);
        assert!(c.is_empty());
        assert!(!c.put(Space::Main, b"k".to_vec(), None, 5), "the byte count restarts at zero");
    }
}
