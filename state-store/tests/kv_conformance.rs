//! One conformance suite for the key-value store, run against RocksDB and the in-memory store.

mod common;

use common::{commit_all, kv, restore_all, s, Backend, Kv};
use moldau_state_store::{Error, StateStore, StoreOptions, StringSerde};

/// Runs `check` against a fresh store on every backend, without and with a record cache.
fn each(check: impl Fn(&mut Kv)) {
    for b in Backend::all() {
        for (i, options) in
            [StoreOptions::default(), StoreOptions::default().with_cache(1 << 20)].into_iter().enumerate()
        {
            for persist in [true, false] {
                // Deferred: commits stay in memory until persisted, and reads merge them.
                let mut st = kv(b.open(&format!("kv{i}{}", if persist { "" } else { "-deferred" })), options);
                st.set_persist_on_commit(persist);
                check(&mut st);
            }
        }
    }
}

#[test]
fn should_read_own_writes_before_commit_and_forget_them_on_abort() {
    each(|st| {
        st.put(&s("a"), &1, 10).unwrap();
        assert_eq!(st.get(&s("a")).unwrap(), Some(1));
        st.abort();
        assert_eq!(st.get(&s("a")).unwrap(), None);
        st.flush_cache().unwrap();
        assert!(st.drain_changelog().is_empty(), "an abort drops the changelog records too");
        st.put(&s("a"), &2, 11).unwrap();
        st.flush_cache().unwrap();
        assert_eq!(st.drain_changelog().len(), 1);
        st.commit(1, &[("in".into(), 0, 5)]).unwrap();
        assert_eq!(st.get(&s("a")).unwrap(), Some(2));
        assert_eq!(st.checkpoint().changelog_offset, 1);
        assert_eq!(st.checkpoint().input_offsets["in"][&0], 5);
    });
}

#[test]
fn should_put_if_absent_and_delete_returning_old_values() {
    each(|st| {
        let mut log = Vec::new();
        assert_eq!(st.put_if_absent(&s("k"), &1, 0).unwrap(), None);
        assert_eq!(st.put_if_absent(&s("k"), &2, 0).unwrap(), Some(1));
        commit_all(st, &mut log);
        assert_eq!(st.delete(&s("k"), 0).unwrap(), Some(1));
        assert_eq!(st.get(&s("k")).unwrap(), None, "the pending delete hides the committed value");
        assert_eq!(st.delete(&s("k"), 0).unwrap(), None);
        commit_all(st, &mut log);
        assert_eq!(st.get(&s("k")).unwrap(), None);
        assert_eq!(log.last().unwrap().value, None, "a delete is logged as a tombstone");
    });
}

#[test]
fn should_merge_pending_writes_over_committed_state_in_scans() {
    each(|st| {
        let mut log = Vec::new();
        for (k, v) in [("a", 1), ("b", 2), ("c", 3), ("d", 4), ("pa", 5), ("pb", 6)] {
            st.put(&s(k), &v, 0).unwrap();
        }
        commit_all(st, &mut log);
        st.delete(&s("b"), 0).unwrap();
        st.put(&s("c"), &30, 0).unwrap();
        st.put(&s("bb"), &22, 0).unwrap();
        st.put(&s("e"), &5, 0).unwrap();
        let keys = |v: Vec<(String, u64)>| v.into_iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>();
        assert_eq!(keys(st.range(&s("a"), &s("d")).unwrap()), vec!["a=1", "bb=22", "c=30", "d=4"]);
        // Half of the pending writes in the overlay, half still cached.
        st.flush_cache().unwrap();
        st.put(&s("c"), &300, 0).unwrap();
        st.delete(&s("bb"), 0).unwrap();
        st.put(&s("pc"), &7, 0).unwrap();
        assert_eq!(keys(st.range(&s("a"), &s("d")).unwrap()), vec!["a=1", "c=300", "d=4"]);
        assert_eq!(keys(st.prefix_scan(&s("p"), &StringSerde).unwrap()), vec!["pa=5", "pb=6", "pc=7"]);
        assert_eq!(keys(st.all().unwrap()), vec!["a=1", "c=300", "d=4", "e=5", "pa=5", "pb=6", "pc=7"]);
        assert!(st.range(&s("d"), &s("a")).unwrap().is_empty(), "an inverted range is empty, not a panic");
        let mut seen = Vec::new();
        st.for_each_from(Some(&s("d")), &mut |k, _| {
            seen.push(k);
            seen.len() < 2
        })
        .unwrap();
        assert_eq!(seen, vec![s("d"), s("e")], "iteration stops when the callback says so");
        assert!(st.approximate_count().unwrap() >= 6);
    });
}

#[test]
fn should_rebuild_exactly_the_same_state_from_the_changelog() {
    for b in Backend::all() {
        let mut st = kv(b.open("orig"), StoreOptions::default());
        let mut log = Vec::new();
        for i in 0..2000u64 {
            st.put(&format!("k{:03}", i % 97), &i, i as i64).unwrap();
            if i % 7 == 0 {
                st.delete(&format!("k{:03}", (i * 3) % 97), i as i64).unwrap();
            }
            if i % 300 == 0 {
                commit_all(&mut st, &mut log);
            }
        }
        commit_all(&mut st, &mut log);
        let mut fresh = kv(b.open("restored"), StoreOptions::default());
        restore_all(&mut fresh, &log, 256);
        assert_eq!(fresh.all().unwrap(), st.all().unwrap(), "{}", b.kind);
        assert_eq!(fresh.checkpoint().changelog_offset, log.len() as i64);
        assert!(fresh.drain_changelog().is_empty(), "a restore logs nothing");
    }
}

#[test]
fn should_refuse_to_commit_writes_whose_changelog_was_not_taken() {
    each(|st| {
        st.put(&s("a"), &1, 0).unwrap();
        st.flush_cache().unwrap();
        let err = st.commit(1, &[]).unwrap_err();
        assert!(matches!(err, Error::InvalidUse { .. }), "{err}");
        assert!(err.to_string().contains("changelog records were not drained"), "{err}");
        assert_eq!(st.get(&s("a")).unwrap(), Some(1), "nothing was lost");
        st.drain_changelog();
        st.commit(1, &[]).unwrap();
        assert_eq!(st.get(&s("a")).unwrap(), Some(1));
    });
}

#[test]
fn should_not_log_when_logging_is_off() {
    for b in Backend::all() {
        let mut st = kv(b.open("nolog"), StoreOptions::default().without_logging());
        st.put(&s("a"), &1, 0).unwrap();
        assert!(st.drain_changelog().is_empty());
        st.commit(0, &[]).unwrap();
        assert_eq!(st.get(&s("a")).unwrap(), Some(1));
    }
}

#[test]
fn should_reopen_rocksdb_at_the_last_commit() {
    let b = Backend::rocks();
    {
        let mut st = kv(b.open("kv"), StoreOptions::default());
        st.put(&s("a"), &1, 0).unwrap();
        st.drain_changelog();
        st.commit(7, &[("in".into(), 2, 40)]).unwrap();
        st.put(&s("b"), &2, 0).unwrap(); // never committed
    }
    let st = kv(b.open("kv"), StoreOptions::default());
    assert_eq!(st.all().unwrap(), vec![(s("a"), 1)]);
    assert_eq!(st.checkpoint().changelog_offset, 7);
    assert_eq!(st.checkpoint().input_offsets["in"][&2], 40);
}

#[test]
fn should_share_one_memory_budget_between_stores() {
    let dir = tempfile::tempdir().unwrap();
    let budget = moldau_state_store::MemoryBudget::new(8 << 20, 0.5);
    let mut stores: Vec<Kv> = (0..4)
        .map(|i| {
            let raw = moldau_state_store::RocksStore::open(&dir.path().join(format!("s{i}")), "s", &budget).unwrap();
            kv(Box::new(raw), StoreOptions::default())
        })
        .collect();
    let before = budget.usage_bytes();
    for st in &mut stores {
        for i in 0..2000u64 {
            st.put(&format!("key-{i:06}-{}", "x".repeat(200)), &i, 0).unwrap();
        }
        st.drain_changelog();
        st.commit(1, &[]).unwrap();
    }
    let after = budget.usage_bytes();
    assert!(after > before, "memtables of every store are charged to the one budget ({before} -> {after})");
    assert!(after <= budget.total_bytes() + (1 << 20), "and stay within it: {after}");
}

#[test]
fn should_keep_deferred_commits_readable_and_write_them_at_close() {
    let b = Backend::rocks();
    let mut log = Vec::new();
    {
        let mut st = kv(b.open("deferred"), StoreOptions::default());
        st.set_persist_on_commit(false);
        st.put(&s("a"), &1, 0).unwrap();
        commit_all(&mut st, &mut log);
        st.put(&s("a"), &2, 0).unwrap();
        st.put(&s("b"), &3, 0).unwrap();
        commit_all(&mut st, &mut log);
        st.delete(&s("b"), 0).unwrap();
        st.abort();
        assert_eq!(st.get(&s("a")).unwrap(), Some(2), "the newest commit wins");
        assert_eq!(st.get(&s("b")).unwrap(), Some(3), "an abort keeps the commits not yet written");
        assert_eq!(st.range(&s("a"), &s("z")).unwrap(), vec![(s("a"), 2), (s("b"), 3)]);
        assert_eq!(st.checkpoint().changelog_offset, 3);
    }
    // Closed: the deferred commits were written with their checkpoint.
    let st = kv(b.open("deferred"), StoreOptions::default());
    assert_eq!(st.checkpoint().changelog_offset, 3);
    assert_eq!(st.get(&s("a")).unwrap(), Some(2));
    assert_eq!(st.get(&s("b")).unwrap(), Some(3));
}

#[test]
fn should_commit_only_the_sealed_transaction_and_keep_later_writes_pending() {
    each(|st| {
        let mut log = Vec::new();
        st.put(&s("a"), &1, 0).unwrap();
        st.put(&s("b"), &2, 0).unwrap();
        st.flush_cache().unwrap();
        log.extend(st.drain_changelog());
        st.seal().unwrap();
        // The next transaction, written while the sealed one commits.
        st.put(&s("a"), &10, 0).unwrap();
        st.delete(&s("b"), 0).unwrap();
        st.put(&s("c"), &3, 0).unwrap();
        assert_eq!(st.get(&s("a")).unwrap(), Some(10), "later writes read over the sealed ones");
        assert_eq!(st.get(&s("b")).unwrap(), None);
        assert_eq!(st.range(&s("a"), &s("z")).unwrap(), vec![(s("a"), 10), (s("c"), 3)]);
        st.commit(2, &[("in".into(), 0, 7)]).unwrap();
        assert_eq!(st.checkpoint().changelog_offset, 2);
        assert_eq!(st.checkpoint().input_offsets["in"][&0], 7);
        assert_eq!(st.get(&s("a")).unwrap(), Some(10), "the commit leaves the next transaction's writes");
        st.abort();
        assert_eq!(st.get(&s("a")).unwrap(), Some(1), "an abort after the commit keeps only the sealed writes");
        assert_eq!(st.get(&s("b")).unwrap(), Some(2));
        assert_eq!(st.get(&s("c")).unwrap(), None);
        // An abort before the commit drops the sealed transaction too.
        st.put(&s("a"), &20, 0).unwrap();
        st.flush_cache().unwrap();
        log.extend(st.drain_changelog());
        st.seal().unwrap();
        st.abort();
        assert_eq!(st.get(&s("a")).unwrap(), Some(1));
        st.put(&s("d"), &4, 0).unwrap();
        commit_all(st, &mut log);
        assert_eq!(st.range(&s("a"), &s("z")).unwrap(), vec![(s("a"), 1), (s("b"), 2), (s("d"), 4)]);
    });
}

#[test]
fn should_refuse_to_seal_writes_whose_changelog_was_not_taken() {
    each(|st| {
        st.put(&s("a"), &1, 0).unwrap();
        st.flush_cache().unwrap();
        assert!(matches!(st.seal(), Err(Error::InvalidUse { .. })));
    });
}

#[test]
fn should_relog_the_current_value_of_a_key_or_a_tombstone_without_changing_state() {
    each(|st| {
        let mut log = Vec::new();
        st.put(&s("a"), &7, 10).unwrap();
        commit_all(st, &mut log);
        let key_a = log[0].key.clone();
        let mut key_b = key_a.clone();
        *key_b.last_mut().unwrap() = b'b';
        st.relog(key_a.clone(), 20).unwrap();
        st.relog(key_b.clone(), 21).unwrap();
        let relogged = st.drain_changelog();
        assert_eq!(relogged.len(), 2);
        assert_eq!(
            (relogged[0].key.clone(), relogged[0].value.clone(), relogged[0].timestamp),
            (key_a, log[0].value.clone(), 20)
        );
        assert_eq!(
            (relogged[1].key.clone(), relogged[1].value.clone()),
            (key_b, None),
            "a key the store lacks: a tombstone"
        );
        assert_eq!(st.get(&s("a")).unwrap(), Some(7));
        assert_eq!(st.get(&s("b")).unwrap(), None);
        // A replay that ends with the relogged records ends at the store's state.
        log.extend(relogged);
        let mut fresh = kv(Backend::memory().open("replay"), StoreOptions::default());
        restore_all(&mut fresh, &log, 10);
        assert_eq!(fresh.get(&s("a")).unwrap(), Some(7));
    });
}
