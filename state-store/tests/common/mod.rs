//! Backends the conformance suites run against: every check runs on the in-memory store and on
//! RocksDB and must behave identically.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use moldau_state_store::{
    BincodeSerde, ChangelogRecord, InMemoryStore, KeyValueStore, MemoryBudget, RawStore, RocksStore, StateStore,
    StoreOptions, StringSerde,
};

/// A way to get raw stores: fresh in memory, or RocksDB directories under one temp dir.
pub struct Backend {
    pub kind: &'static str,
    dir: Option<tempfile::TempDir>,
    budget: MemoryBudget,
}

impl Backend {
    pub fn all() -> Vec<Backend> {
        vec![Backend::memory(), Backend::rocks()]
    }

    pub fn memory() -> Backend {
        Backend { kind: "memory", dir: None, budget: MemoryBudget::default() }
    }

    pub fn rocks() -> Backend {
        Backend { kind: "rocksdb", dir: Some(tempfile::tempdir().unwrap()), budget: MemoryBudget::new(64 << 20, 0.25) }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.as_ref().expect("a RocksDB backend").path().join(name)
    }

    /// A raw store called `name`: a new one in memory, or (re)opened from its directory.
    pub fn open(&self, name: &str) -> Box<dyn RawStore> {
        match &self.dir {
            None => Box::new(InMemoryStore::new(name)),
            Some(d) => Box::new(RocksStore::open(&d.path().join(name), name, &self.budget).unwrap()),
        }
    }
}

pub type Kv = KeyValueStore<String, u64>;

pub fn kv(raw: Box<dyn RawStore>, options: StoreOptions) -> Kv {
    KeyValueStore::new(raw, Box::new(StringSerde), Box::new(BincodeSerde::<u64>::default()), options)
}

pub fn s(x: &str) -> String {
    x.to_string()
}

/// Flushes, drains and commits `st` as the engine does; returns the changelog records and the
/// next changelog offset (`next` counts the whole log so far).
pub fn commit_all(st: &mut dyn StateStore, log: &mut Vec<ChangelogRecord>) {
    st.flush_cache().unwrap();
    log.extend(st.drain_changelog());
    st.commit(log.len() as i64, &[]).unwrap();
}

/// Restores `log` into `st` in batches of `batch`, as the engine does from the changelog topic.
pub fn restore_all(st: &mut dyn StateStore, log: &[ChangelogRecord], batch: usize) {
    let mut offset = 0i64;
    for chunk in log.chunks(batch.max(1)) {
        offset += chunk.len() as i64;
        st.restore(chunk.to_vec(), offset - 1).unwrap();
    }
    st.finish_restore().unwrap();
}
