//! Bad input: corrupted or missing directories and checkpoints say the store will be rebuilt
//! from its changelog (and `open_or_rebuild` does it); undecodable values and malformed
//! changelog records are errors naming the store and key, never panics.

mod common;

use common::{commit_all, kv, restore_all, s, Backend};
use moldau_state_store::{
    BincodeSerde, ChangelogRecord, Error, InMemoryStore, MemoryBudget, RawBatch, RawStore, RocksStore, SessionSpec,
    SessionStore, Space, StateStore, StoreOptions, StringSerde, WindowSpec, WindowStore, WriteMode, WriteSet,
};

/// A RocksDB store at `b.path("kv")` with three committed keys; returns its changelog.
fn committed_store(b: &Backend) -> Vec<ChangelogRecord> {
    let mut st = kv(b.open("kv"), StoreOptions::default());
    for (k, v) in [("a", 1), ("b", 2), ("c", 3)] {
        st.put(&s(k), &v, 0).unwrap();
    }
    let mut log = Vec::new();
    commit_all(&mut st, &mut log);
    log
}

fn assert_rebuild(err: Error) {
    assert!(err.requires_restore(), "{err}");
    assert!(err.to_string().contains("it will be rebuilt from its changelog"), "{err}");
    assert!(err.to_string().contains("'kv'"), "names the store: {err}");
}

/// Opens with `open_or_rebuild`, restores `log` and checks the state is back.
fn rebuild_and_check(b: &Backend, log: &[ChangelogRecord]) {
    let budget = MemoryBudget::new(16 << 20, 0.25);
    let (raw, repaired) = RocksStore::open_or_rebuild(&b.path("kv"), "kv", &budget).unwrap();
    assert!(repaired.is_some_and(|e| e.requires_restore()), "the repair is reported");
    let mut st = kv(Box::new(raw), StoreOptions::default());
    assert_eq!(st.checkpoint().changelog_offset, 0, "restore from the start of the changelog");
    restore_all(&mut st, log, 10);
    assert_eq!(st.all().unwrap(), vec![(s("a"), 1), (s("b"), 2), (s("c"), 3)]);
}

#[test]
fn should_rebuild_a_directory_that_is_not_a_rocksdb() {
    let b = Backend::rocks();
    std::fs::create_dir_all(b.path("kv")).unwrap();
    std::fs::write(b.path("kv").join("garbage"), b"not rocksdb").unwrap();
    assert_rebuild(RocksStore::open(&b.path("kv"), "kv", &MemoryBudget::default()).unwrap_err());
    let (raw, repaired) = RocksStore::open_or_rebuild(&b.path("kv"), "kv", &MemoryBudget::default()).unwrap();
    assert!(repaired.is_some());
    assert!(raw.checkpoint().is_none());
}

#[test]
fn should_rebuild_a_store_whose_current_file_is_gone() {
    let b = Backend::rocks();
    let log = committed_store(&b);
    std::fs::remove_file(b.path("kv").join("CURRENT")).unwrap();
    assert_rebuild(RocksStore::open(&b.path("kv"), "kv", &MemoryBudget::default()).unwrap_err());
    rebuild_and_check(&b, &log);
}

#[test]
fn should_rebuild_a_store_whose_files_are_corrupted() {
    let b = Backend::rocks();
    let log = committed_store(&b);
    for entry in std::fs::read_dir(b.path("kv")).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("MANIFEST") {
            std::fs::write(&p, b"\x00garbage manifest").unwrap();
        }
    }
    assert_rebuild(RocksStore::open(&b.path("kv"), "kv", &MemoryBudget::default()).unwrap_err());
    rebuild_and_check(&b, &log);
}

#[test]
fn should_rebuild_a_store_with_data_but_no_checkpoint() {
    let b = Backend::rocks();
    let log = committed_store(&b);
    {
        let cfs = ["default", "moldau_meta", "moldau_segments"];
        let mut o = rocksdb::Options::default();
        o.set_atomic_flush(true);
        let db = rocksdb::DB::open_cf(&o, b.path("kv"), cfs).unwrap();
        db.delete_cf(db.cf_handle("moldau_meta").unwrap(), b"checkpoint").unwrap();
    }
    let err = RocksStore::open(&b.path("kv"), "kv", &MemoryBudget::default()).unwrap_err();
    assert!(err.to_string().contains("holds data but no checkpoint"), "{err}");
    assert_rebuild(err);
    rebuild_and_check(&b, &log);
}

#[test]
fn should_rebuild_a_store_in_the_older_layout_with_a_column_family_per_segment() {
    let b = Backend::rocks();
    let log = committed_store(&b);
    {
        let mut o = rocksdb::Options::default();
        o.set_atomic_flush(true);
        let mut db = rocksdb::DB::open_cf(&o, b.path("kv"), ["default", "moldau_meta", "moldau_segments"]).unwrap();
        db.create_cf("segment.42", &o).unwrap();
    }
    let err = RocksStore::open(&b.path("kv"), "kv", &MemoryBudget::default()).unwrap_err();
    assert!(err.to_string().contains("older layout"), "{err}");
    assert_rebuild(err);
    rebuild_and_check(&b, &log);
}

#[test]
fn should_rebuild_a_store_whose_checkpoint_does_not_parse() {
    let b = Backend::rocks();
    let log = committed_store(&b);
    {
        let mut o = rocksdb::Options::default();
        o.set_atomic_flush(true);
        let db = rocksdb::DB::open_cf(&o, b.path("kv"), ["default", "moldau_meta", "moldau_segments"]).unwrap();
        db.put_cf(db.cf_handle("moldau_meta").unwrap(), b"checkpoint", b"{not json").unwrap();
    }
    let err = RocksStore::open(&b.path("kv"), "kv", &MemoryBudget::default()).unwrap_err();
    assert!(err.to_string().contains("checkpoint does not parse"), "{err}");
    assert_rebuild(err);
    rebuild_and_check(&b, &log);
}

#[test]
fn should_start_a_missing_directory_empty_and_restore_from_offset_zero() {
    let b = Backend::rocks();
    let st = kv(b.open("never-existed"), StoreOptions::default());
    assert_eq!(st.checkpoint().changelog_offset, 0);
    assert!(st.all().unwrap().is_empty());
}

#[test]
fn should_name_the_store_and_key_when_a_value_does_not_deserialize() {
    for b in Backend::all() {
        let mut raw = b.open("bad");
        let mut batch = RawBatch::new();
        let mut writes = WriteSet::new();
        writes.insert(b"key".to_vec(), Some(vec![0xff; 11]));
        writes.insert(b"\xff\xfe".to_vec(), Some(vec![1]));
        batch.insert(Space::Main, writes);
        raw.write(&batch, &Default::default(), WriteMode::Commit).unwrap();
        let st = kv(raw, StoreOptions::default());
        let err = st.get(&s("key")).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Serde { .. }), "{msg}");
        assert!(msg.contains("'bad'") && msg.contains("6b6579") && msg.contains("value"), "names store and key: {msg}");
        let err = st.all().unwrap_err().to_string();
        assert!(err.contains("value for key 6b6579"), "a scan fails on the first bad entry: {err}");
        let mut st = st;
        st.remove(&s("key"), 0).unwrap();
        let err = st.all().unwrap_err().to_string();
        assert!(err.contains("key for key fffe does not deserialize"), "a key that is not UTF-8: {err}");
    }
}

#[test]
fn should_refuse_malformed_changelog_records_on_restore() {
    let raw: Box<dyn RawStore> = Box::new(InMemoryStore::new("w"));
    let spec = WindowSpec::new(10, 100);
    let mut st: WindowStore<String, u64> =
        WindowStore::new(raw, Box::new(StringSerde), Box::new(BincodeSerde::default()), spec, StoreOptions::default())
            .unwrap();
    let bad = ChangelogRecord { key: vec![1, 2, 3], value: Some(vec![1]), timestamp: 0 };
    let err = StateStore::restore(&mut st, vec![bad], 0).unwrap_err();
    assert!(matches!(err, Error::BadChangelog { .. }), "{err}");
    assert!(err.to_string().contains("010203") && err.to_string().contains("'w'"), "{err}");
}

#[test]
fn should_refuse_specs_that_make_no_sense() {
    let raw = || -> Box<dyn RawStore> { Box::new(InMemoryStore::new("x")) };
    let e = WindowStore::<String, u64>::new(
        raw(),
        Box::new(StringSerde),
        Box::new(BincodeSerde::default()),
        WindowSpec::new(0, 100),
        StoreOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("must be positive"), "{e}");
    let e = SessionStore::<String, u64>::new(
        raw(),
        Box::new(StringSerde),
        Box::new(BincodeSerde::default()),
        SessionSpec::new(100).with_segment_interval(-1),
        StoreOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("must be positive"), "{e}");
}

#[test]
fn should_say_the_lock_is_held_when_another_handle_has_the_store_open() {
    let dir = tempfile::tempdir().unwrap();
    let budget = MemoryBudget::new(16 << 20, 0.25);
    let first = RocksStore::open(&dir.path().join("s"), "s", &budget).unwrap();
    let e = RocksStore::open(&dir.path().join("s"), "s", &budget).expect_err("locked");
    assert!(e.is_lock_held(), "{e} / {e:?}");
    drop(first);
    RocksStore::open(&dir.path().join("s"), "s", &budget).unwrap();
}
