//! The in-memory store: a `BTreeMap` with the same behaviour as RocksDB (no durability).

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::error::Result;
use crate::raw::{Checkpoint, RawStore, WriteMode, WriteSet};

/// An in-memory [`RawStore`].
#[derive(Debug, Default)]
pub struct InMemoryStore {
    name: String,
    data: BTreeMap<Vec<u8>, Vec<u8>>,
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

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.data.get(key).cloned())
    }

    fn scan(&self, from: Bound<&[u8]>, to: Bound<&[u8]>, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        if crate::raw::is_empty_range(from, to) {
            return Ok(());
        }
        for (k, v) in self.data.range::<[u8], _>((from, to)) {
            if !f(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn write(&mut self, writes: &WriteSet, checkpoint: &Checkpoint, _mode: WriteMode) -> Result<()> {
        for (k, v) in writes {
            match v {
                Some(v) => {
                    self.data.insert(k.clone(), v.clone());
                }
                None => {
                    self.data.remove(k);
                }
            }
        }
        self.checkpoint = Some(checkpoint.clone());
        Ok(())
    }

    fn checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoint.clone()
    }

    fn approximate_count(&self) -> Result<u64> {
        Ok(self.data.len() as u64)
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}
