//! The in-memory store: `BTreeMap`s with the same behaviour as RocksDB (no durability).

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::error::Result;
use crate::raw::{Checkpoint, RawBatch, RawStore, Space, WriteMode};

/// An in-memory [`RawStore`].
#[derive(Debug, Default)]
pub struct InMemoryStore {
    name: String,
    spaces: BTreeMap<Space, BTreeMap<Vec<u8>, Vec<u8>>>,
    checkpoint: Option<Checkpoint>,
}

impl InMemoryStore {
    /// An empty store called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        InMemoryStore { name: name.into(), ..Default::default() }
    }
}

impl RawStore for InMemoryStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.spaces.get(&space).and_then(|s| s.get(key)).cloned())
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
        let Some(data) = self.spaces.get(&space) else { return Ok(()) };
        for (k, v) in data.range::<[u8], _>((from, to)) {
            if !f(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn segments(&self) -> Vec<i64> {
        self.spaces
            .keys()
            .filter_map(|s| match s {
                Space::Segment(id) => Some(*id),
                Space::Main => None,
            })
            .collect()
    }

    fn write(&mut self, writes: &RawBatch, checkpoint: &Checkpoint, _mode: WriteMode) -> Result<()> {
        for (space, set) in writes {
            let data = self.spaces.entry(*space).or_default();
            for (k, v) in set {
                match v {
                    Some(v) => {
                        data.insert(k.clone(), v.clone());
                    }
                    None => {
                        data.remove(k);
                    }
                }
            }
        }
        self.checkpoint = Some(checkpoint.clone());
        Ok(())
    }

    fn drop_segments(&mut self, segments: &[i64]) -> Result<()> {
        for id in segments {
            self.spaces.remove(&Space::Segment(*id));
        }
        Ok(())
    }

    fn checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoint.clone()
    }

    fn approximate_count(&self) -> Result<u64> {
        Ok(self.spaces.values().map(|s| s.len() as u64).sum())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}
