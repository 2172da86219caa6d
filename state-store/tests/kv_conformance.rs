//! One conformance suite for the key-value store, run against RocksDB and the in-memory store.

use moldau_state_store::{
    BincodeSerde, Error, InMemoryStore, KeyValueStore, MemoryBudget, RawStore, RocksStore, StringSerde,
};

type Store = KeyValueStore<String, u64>;

fn typed(raw: Box<dyn RawStore>) -> Store {
    KeyValueStore::new(raw, Box::new(StringSerde), Box::new(BincodeSerde::<u64>::default()))
}

/// Runs `check` against a fresh in-memory store and a fresh RocksDB store.
fn both(check: impl Fn(&mut Store)) {
    let mut mem = typed(Box::new(InMemoryStore::new("mem")));
    check(&mut mem);
    let dir = tempfile::tempdir().unwrap();
    let budget = MemoryBudget::new(32 << 20, 0.25);
    let mut rocks = typed(Box::new(RocksStore::open(&dir.path().join("kv"), "rocks", &budget).unwrap()));
    check(&mut rocks);
}

fn s(x: &str) -> String {
    x.to_string()
}

#[test]
fn should_read_own_writes_before_commit_and_forget_them_on_abort() {
    both(|st| {
        st.put(&s("a"), &1, 10).unwrap();
        assert_eq!(st.get(&s("a")).unwrap(), Some(1));
        st.abort();
        assert_eq!(st.get(&s("a")).unwrap(), None);
        assert!(st.drain_changelog().is_empty(), "an abort drops the changelog records too");
        st.put(&s("a"), &2, 11).unwrap();
        st.commit(1, &[("in".into(), 0, 5)]).unwrap();
        assert_eq!(st.get(&s("a")).unwrap(), Some(2));
        assert_eq!(st.checkpoint().changelog_offset, 1);
        assert_eq!(st.checkpoint().input_offsets["in"][&0], 5);
    });
}

#[test]
fn should_put_if_absent_and_delete_returning_old_values() {
    both(|st| {
        assert_eq!(st.put_if_absent(&s("k"), &1, 0).unwrap(), None);
        assert_eq!(st.put_if_absent(&s("k"), &2, 0).unwrap(), Some(1));
        st.commit(0, &[]).unwrap();
        assert_eq!(st.delete(&s("k"), 0).unwrap(), Some(1));
        assert_eq!(st.get(&s("k")).unwrap(), None, "the pending delete hides the committed value");
        st.commit(0, &[]).unwrap();
        assert_eq!(st.get(&s("k")).unwrap(), None);
    });
}

#[test]
fn should_merge_pending_writes_over_committed_state_in_scans() {
    both(|st| {
        for (k, v) in [("a", 1), ("b", 2), ("c", 3), ("d", 4), ("pa", 5), ("pb", 6)] {
            st.put(&s(k), &v, 0).unwrap();
        }
        st.commit(0, &[]).unwrap();
        st.delete(&s("b"), 0).unwrap();
        st.put(&s("c"), &30, 0).unwrap();
        st.put(&s("bb"), &22, 0).unwrap();
        st.put(&s("e"), &5, 0).unwrap();
        let keys = |v: Vec<(String, u64)>| v.into_iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>();
        assert_eq!(keys(st.range(&s("a"), &s("d")).unwrap()), vec!["a=1", "bb=22", "c=30", "d=4"]);
        assert_eq!(keys(st.prefix_scan(&s("p"), &StringSerde).unwrap()), vec!["pa=5", "pb=6"]);
        assert_eq!(st.all().unwrap().len(), 7);
        assert!(st.range(&s("d"), &s("a")).unwrap().is_empty(), "an inverted range is empty, not a panic");
        assert!(st.approximate_count().unwrap() >= 6);
    });
}

#[test]
fn should_rebuild_exactly_the_same_state_from_the_changelog() {
    both(|st| {
        for i in 0..500u64 {
            st.put(&format!("k{:03}", i % 97), &i, i as i64).unwrap();
            if i % 7 == 0 {
                st.delete(&format!("k{:03}", (i * 3) % 97), i as i64).unwrap();
            }
        }
        let log = st.drain_changelog();
        assert!(log.iter().any(|r| r.value.is_none()), "deletes are logged as tombstones");
        st.commit(log.len() as i64, &[]).unwrap();
        let mut fresh = typed(Box::new(InMemoryStore::new("restored")));
        let n = log.len() as i64;
        fresh.restore(log, n - 1).unwrap();
        fresh.finish_restore().unwrap();
        assert_eq!(fresh.all().unwrap(), st.all().unwrap());
        assert_eq!(fresh.checkpoint().changelog_offset, n);
    });
}

#[test]
fn should_name_the_store_and_key_when_a_value_does_not_deserialize() {
    let mut raw = InMemoryStore::new("bad");
    let mut writes = moldau_state_store::WriteSet::new();
    writes.insert(b"key".to_vec(), Some(vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
    raw.write(&writes, &Default::default(), moldau_state_store::WriteMode::Commit).unwrap();
    let st = typed(Box::new(raw));
    let err = st.get(&s("key")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Serde { .. }), "{msg}");
    assert!(msg.contains("'bad'") && msg.contains("6b6579"), "names store and key: {msg}");
}

#[test]
fn should_reopen_rocksdb_at_the_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv");
    let budget = MemoryBudget::default();
    {
        let mut st = typed(Box::new(RocksStore::open(&path, "kv", &budget).unwrap()));
        st.put(&s("a"), &1, 0).unwrap();
        st.commit(7, &[("in".into(), 2, 40)]).unwrap();
        st.put(&s("b"), &2, 0).unwrap(); // never committed
    }
    let st = typed(Box::new(RocksStore::open(&path, "kv", &budget).unwrap()));
    assert_eq!(st.all().unwrap(), vec![(s("a"), 1)]);
    assert_eq!(st.checkpoint().changelog_offset, 7);
    assert_eq!(st.checkpoint().input_offsets["in"][&2], 40);
}

#[test]
fn should_report_a_corrupted_directory_as_rebuild_from_changelog() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("garbage"), b"not rocksdb").unwrap();
    let err = RocksStore::open(&path, "kv", &MemoryBudget::default()).unwrap_err();
    assert!(err.requires_restore(), "{err}");
    assert!(err.to_string().contains("rebuilt from its changelog"), "{err}");
    RocksStore::destroy(&path, "kv").unwrap();
    let st = RocksStore::open(&path, "kv", &MemoryBudget::default()).unwrap();
    assert!(st.checkpoint().is_none());
}
