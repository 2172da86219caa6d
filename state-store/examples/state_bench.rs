//! State-store benchmark: puts, gets and range scans per second through the typed
//! `KeyValueStore` (16-byte keys, 100-byte values) on RocksDB, with the record cache on and off,
//! and restore speed from changelog records. Prints figures, asserts nothing.
//!
//! Run: `cargo run --release -p moldau-state-store --example state-bench [-- --records N]`

// A benchmark measures wall-clock time.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use moldau_state_store::{
    BytesSerde, ChangelogRecord, KeyValueStore, MemoryBudget, RawStore, RocksStore, StateStore, StoreOptions,
};

const KEY: usize = 16;
const VALUE: usize = 100;
/// Writes per transaction: an engine committing every 100 ms at ~100k records/s.
const COMMIT_EVERY: usize = 10_000;
/// Distinct keys in the cached-put run: a hot set (aggregation state) that the cache absorbs.
const HOT_KEYS: u64 = 10_000;
/// Kafka Streams' default cache size (`statestore.cache.max.bytes`).
const CACHE_BYTES: usize = 10 << 20;

type Store = KeyValueStore<Vec<u8>, Vec<u8>>;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn key(n: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(KEY);
    k.extend_from_slice(&n.to_be_bytes());
    k.extend_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    k
}

fn open(dir: &std::path::Path, name: &str, budget: &MemoryBudget, options: StoreOptions) -> Store {
    let raw = RocksStore::open(&dir.join(name), name, budget).expect("open");
    KeyValueStore::new(Box::new(raw), Box::new(BytesSerde), Box::new(BytesSerde), options)
}

/// Flushes, drains and commits as the engine does after a Kafka commit.
fn commit(st: &mut Store, offset: &mut i64) {
    st.flush_cache().expect("flush");
    *offset += st.drain_changelog().len() as i64;
    st.commit(*offset, &[("input".to_string(), 0, *offset)]).expect("commit");
}

fn rate(n: usize, started: Instant) -> f64 {
    n as f64 / started.elapsed().as_secs_f64()
}

/// `n` puts of keys drawn from `0..space`, committing every `COMMIT_EVERY`.
fn puts(st: &mut Store, n: usize, space: u64, seed: u64) -> (f64, i64) {
    let mut rng = Rng(seed);
    let value = vec![7u8; VALUE];
    let mut offset = 0;
    let t = Instant::now();
    for i in 0..n {
        st.put(&key(rng.next() % space), &value, i as i64).expect("put");
        if (i + 1) % COMMIT_EVERY == 0 {
            commit(st, &mut offset);
        }
    }
    commit(st, &mut offset);
    (rate(n, t), offset)
}

/// Raw RocksDB single puts with the WAL (db_bench fillrandom), the reference.
fn rocksdb_fillrandom(dir: &std::path::Path, n: usize) -> f64 {
    let budget = MemoryBudget::default();
    let mut raw = RocksStore::open(&dir.join("fillrandom"), "fillrandom", &budget).expect("open");
    let mut rng = Rng(42);
    let value = vec![7u8; VALUE];
    let t = Instant::now();
    for _ in 0..n {
        let mut batch = moldau_state_store::RawBatch::new();
        batch
            .entry(moldau_state_store::Space::Main)
            .or_default()
            .insert(key(rng.next() % n as u64), Some(value.clone()));
        raw.write(&batch, &Default::default(), moldau_state_store::WriteMode::Commit).expect("write");
    }
    rate(n, t)
}

fn main() {
    let mut n = 1_000_000usize;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--records") {
        n = args.get(i + 1).and_then(|v| v.parse().ok()).expect("--records N");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let budget = MemoryBudget::default();
    println!("state-bench: {n} operations, {KEY}-byte keys, {VALUE}-byte values, commit every {COMMIT_EVERY}");
    println!(
        "memory budget {} MiB (block cache + write buffers); record cache {} MiB",
        budget.total_bytes() >> 20,
        CACHE_BYTES >> 20
    );

    let mut plain = open(dir.path(), "plain", &budget, StoreOptions::default());
    let (uncached, logged) = puts(&mut plain, n, n as u64, 1);
    println!("put  uncached, random over {n} keys     {uncached:>12.0} ops/s  ({logged} changelog records)");

    let mut cached = open(dir.path(), "cached", &budget, StoreOptions::default().with_cache(CACHE_BYTES));
    let (hot, hot_logged) = puts(&mut cached, n, HOT_KEYS, 2);
    println!("put  cached,   random over {HOT_KEYS} keys      {hot:>12.0} ops/s  ({hot_logged} changelog records)");
    let mut cached_wide = open(dir.path(), "cached-wide", &budget, StoreOptions::default().with_cache(CACHE_BYTES));
    let (wide, wide_logged) = puts(&mut cached_wide, n, n as u64, 3);
    println!("put  cached,   random over {n} keys     {wide:>12.0} ops/s  ({wide_logged} changelog records)");

    let fill_n = (n / 4).max(1);
    let fill = rocksdb_fillrandom(dir.path(), fill_n);
    println!("RocksDB single puts with WAL (fillrandom) {fill:>10.0} ops/s  ({fill_n} puts)");

    for (label, st) in [("uncached", &plain), ("cached", &cached_wide)] {
        let mut rng = Rng(9);
        let t = Instant::now();
        let mut found = 0usize;
        for _ in 0..n {
            found += st.get(&key(rng.next() % n as u64)).expect("get").is_some() as usize;
        }
        println!("get  {label:<9} random                    {:>12.0} ops/s  ({found} hits)", rate(n, t));
    }
    let scans = (n / 100).max(1);
    for (label, st) in [("uncached", &plain), ("cached", &cached_wide)] {
        let mut rng = Rng(11);
        let t = Instant::now();
        let mut entries = 0usize;
        for _ in 0..scans {
            let from = key(rng.next() % n as u64);
            st.for_each_from(Some(&from), &mut |_, _| {
                entries += 1;
                !entries.is_multiple_of(100)
            })
            .expect("scan");
        }
        let r = rate(scans, t);
        println!("range {label:<9} 100 entries each           {r:>12.0} ops/s  ({:.0} entries/s)", r * 100.0);
    }

    // Restore: the uncached run's changelog shape, replayed in batches of 10 000 (a consumer
    // poll's worth) into an empty store.
    let mut rng = Rng(5);
    let log: Vec<ChangelogRecord> = (0..n)
        .map(|i| ChangelogRecord {
            key: key(rng.next() % n as u64),
            value: Some(vec![7u8; VALUE]),
            timestamp: i as i64,
        })
        .collect();
    let bytes = n * (KEY + VALUE);
    let mut restored = open(dir.path(), "restored", &budget, StoreOptions::default());
    let mut batches = Vec::new();
    let mut rest = log.into_iter();
    loop {
        let batch: Vec<ChangelogRecord> = rest.by_ref().take(10_000).collect();
        if batch.is_empty() {
            break;
        }
        batches.push(batch);
    }
    let t = Instant::now();
    let mut offset = -1i64;
    for batch in batches {
        offset += batch.len() as i64;
        restored.restore(batch, offset).expect("restore");
    }
    restored.finish_restore().expect("finish restore");
    let secs = t.elapsed().as_secs_f64();
    println!(
        "restore {n} records in batches of 10000    {:>10.0} records/s  {:.1} MB/s",
        n as f64 / secs,
        bytes as f64 / secs / 1e6
    );
    println!("ratios: uncached put / fillrandom {:.2}; cached (hot) / uncached {:.2}", uncached / fill, hot / uncached);
}
