//! The record cache: repeated updates merge into one changelog record and one downstream change
//! per key per flush; a full cache flushes itself; an abort drops it. Run on both backends.

mod common;

use common::{commit_all, kv, s, Backend};
use moldau_state_store::{
    BincodeSerde, Change, Changes, StateStore, StoreOptions, StringSerde, Window, WindowSpec, WindowStore, Windowed,
};

#[test]
fn should_merge_repeated_updates_into_one_record_per_key_per_flush() {
    for b in Backend::all() {
        let opts = StoreOptions::default().with_cache(1 << 20).with_changes(Changes::New);
        let mut st = kv(b.open("cached"), opts);
        for i in 0..1000u64 {
            st.put(&format!("k{}", i % 10), &i, i as i64).unwrap();
        }
        assert!(st.take_changes().unwrap().is_empty(), "nothing leaves the cache before a flush");
        assert_eq!(st.get(&s("k3")).unwrap(), Some(993), "reads see cached writes");
        st.flush_cache().unwrap();
        let log = st.drain_changelog();
        assert_eq!(log.len(), 10, "{}: one changelog record per key", b.kind);
        let changes = st.take_changes().unwrap();
        assert_eq!(changes.len(), 10);
        assert_eq!(changes[3], Change { key: s("k3"), value: Some(993), old: None, timestamp: 993 });
        st.commit(10, &[]).unwrap();
        assert_eq!(st.get(&s("k9")).unwrap(), Some(999));

        // Without the cache every update is logged and forwarded.
        let mut plain = kv(b.open("plain"), StoreOptions::default().with_changes(Changes::New));
        for i in 0..1000u64 {
            plain.put(&format!("k{}", i % 10), &i, i as i64).unwrap();
        }
        assert_eq!(plain.drain_changelog().len(), 1000);
        assert_eq!(plain.take_changes().unwrap().len(), 1000);
    }
}

#[test]
fn should_flush_by_itself_when_full() {
    for b in Backend::all() {
        let mut st = kv(b.open("small"), StoreOptions::default().with_cache(4096).with_changes(Changes::New));
        for i in 0..500u64 {
            st.put(&format!("key-{i:05}"), &i, 0).unwrap();
        }
        let early = st.take_changes().unwrap();
        assert!(!early.is_empty(), "{}: a 4 KiB cache cannot hold 500 entries", b.kind);
        st.flush_cache().unwrap();
        let log = st.drain_changelog();
        assert_eq!(log.len(), 500, "every key reaches the changelog exactly once");
        assert_eq!(early.len() + st.take_changes().unwrap().len(), 500);
        st.commit(500, &[]).unwrap();
        assert_eq!(st.all().unwrap().len(), 500);
    }
}

#[test]
fn should_forward_old_values_when_asked() {
    for b in Backend::all() {
        let mut st = kv(b.open("old"), StoreOptions::default().with_cache(1 << 16).with_changes(Changes::NewAndOld));
        let mut log = Vec::new();
        st.put(&s("a"), &1, 1).unwrap();
        commit_all(&mut st, &mut log);
        assert_eq!(st.take_changes().unwrap(), vec![Change { key: s("a"), value: Some(1), old: None, timestamp: 1 }]);
        st.put(&s("a"), &2, 2).unwrap();
        st.put(&s("a"), &3, 3).unwrap();
        st.delete(&s("b"), 3).unwrap();
        commit_all(&mut st, &mut log);
        assert_eq!(
            st.take_changes().unwrap(),
            vec![
                Change { key: s("a"), value: Some(3), old: Some(1), timestamp: 3 },
                Change { key: s("b"), value: None, old: None, timestamp: 3 },
            ],
            "{}",
            b.kind
        );
    }
}

#[test]
fn should_drop_cached_writes_on_abort() {
    for b in Backend::all() {
        let mut st = kv(b.open("abort"), StoreOptions::default().with_cache(1 << 16).with_changes(Changes::New));
        st.put(&s("a"), &1, 1).unwrap();
        st.abort();
        st.flush_cache().unwrap();
        assert!(st.drain_changelog().is_empty());
        assert!(st.take_changes().unwrap().is_empty());
        assert_eq!(st.get(&s("a")).unwrap(), None);
    }
}

#[test]
fn should_cache_window_stores_and_forward_windowed_changes() {
    for b in Backend::all() {
        let spec = WindowSpec::new(10, 1000).with_segment_interval(100);
        let opts = StoreOptions::default().with_cache(1 << 16).with_changes(Changes::NewAndOld);
        let mut st: WindowStore<String, u64> =
            WindowStore::new(b.open("wc"), Box::new(StringSerde), Box::new(BincodeSerde::default()), spec, opts)
                .unwrap();
        for i in 0..100u64 {
            st.put(&s("a"), &i, 0, i as i64).unwrap();
            st.put(&s("a"), &(i * 2), 10, i as i64).unwrap();
        }
        assert_eq!(st.fetch_range(&s("a"), 0, 10).unwrap(), vec![(0, 99), (10, 198)]);
        st.flush_cache().unwrap();
        assert_eq!(st.drain_changelog().len(), 2, "{}", b.kind);
        let changes = st.take_changes().unwrap();
        assert_eq!(
            changes[1],
            Change {
                key: Windowed { key: s("a"), window: Window { start: 10, end: 20 } },
                value: Some(198),
                old: None,
                timestamp: 99
            }
        );
    }
}
