//! The window store's conformance suite, run against RocksDB and the in-memory store.

mod common;

use common::{commit_all, restore_all, s, Backend};
use moldau_state_store::{
    BincodeSerde, RawStore, StateStore, StoreOptions, StringSerde, Window, WindowSpec, WindowStore, Windowed,
};

type Ws = WindowStore<String, u64>;

fn ws(raw: Box<dyn RawStore>, spec: WindowSpec, options: StoreOptions) -> Ws {
    WindowStore::new(raw, Box::new(StringSerde), Box::new(BincodeSerde::<u64>::default()), spec, options).unwrap()
}

/// Windows of 10 ms kept for 100 ms in segments of 50 ms.
fn spec() -> WindowSpec {
    WindowSpec::new(10, 100).with_segment_interval(50)
}

fn each(check: impl Fn(&mut Ws)) {
    for b in Backend::all() {
        for (i, options) in
            [StoreOptions::default(), StoreOptions::default().with_cache(1 << 20)].into_iter().enumerate()
        {
            for persist in [true, false] {
                // Deferred: commits stay in memory until persisted, and reads merge them.
                let mut st = ws(b.open(&format!("w{i}{}", if persist { "" } else { "-deferred" })), spec(), options);
                st.set_persist_on_commit(persist);
                check(&mut st);
            }
        }
    }
}

fn w(key: &str, start: i64) -> Windowed<String> {
    Windowed { key: s(key), window: Window { start, end: start + 10 } }
}

#[test]
fn should_fetch_one_key_over_a_time_range_across_segments() {
    each(|st| {
        let mut log = Vec::new();
        for start in [0, 10, 40, 50, 60, 90] {
            assert!(st.put(&s("a"), &(start as u64), start, start).unwrap());
        }
        st.put(&s("ab"), &999, 10, 10).unwrap();
        st.put(&s(""), &998, 10, 10).unwrap();
        commit_all(st, &mut log);
        st.put(&s("a"), &70, 70, 70).unwrap(); // pending
        st.put(&s("a"), &11, 10, 10).unwrap(); // pending update of a committed window
        assert_eq!(st.fetch(&s("a"), 10).unwrap(), Some(11));
        assert_eq!(st.fetch(&s("a"), 20).unwrap(), None);
        assert_eq!(
            st.fetch_range(&s("a"), 10, 70).unwrap(),
            vec![(10, 11), (40, 40), (50, 50), (60, 60), (70, 70)],
            "by start, pending and committed merged, 'ab' not mixed in"
        );
        assert_eq!(st.fetch_range(&s("ab"), 0, 100).unwrap(), vec![(10, 999)]);
        assert_eq!(st.fetch_range(&s(""), 0, 100).unwrap(), vec![(10, 998)]);
        assert!(st.fetch_range(&s("a"), 70, 10).unwrap().is_empty(), "inverted range");
        st.delete(&s("a"), 40, 70).unwrap();
        assert_eq!(st.fetch(&s("a"), 40).unwrap(), None);
        commit_all(st, &mut log);
        assert_eq!(st.fetch_range(&s("a"), 0, 55).unwrap(), vec![(0, 0), (10, 11), (50, 50)]);
    });
}

#[test]
fn should_fetch_all_keys_over_a_time_range() {
    each(|st| {
        let mut log = Vec::new();
        st.put(&s("b"), &1, 0, 0).unwrap();
        st.put(&s("a"), &2, 0, 0).unwrap();
        st.put(&s("a"), &3, 60, 60).unwrap();
        commit_all(st, &mut log);
        st.put(&s("c"), &4, 20, 60).unwrap();
        assert_eq!(st.fetch_all(0, 30).unwrap(), vec![(w("a", 0), 2), (w("b", 0), 1), (w("c", 20), 4)]);
        assert_eq!(st.fetch_all(10, 100).unwrap(), vec![(w("c", 20), 4), (w("a", 60), 3)]);
        assert_eq!(st.all().unwrap().len(), 4);
    });
}

#[test]
fn should_drop_windows_past_retention_and_ignore_late_writes() {
    each(|st| {
        let mut log = Vec::new();
        for start in [0, 60, 120] {
            st.put(&s("k"), &(start as u64), start, start).unwrap();
        }
        commit_all(st, &mut log);
        assert_eq!(
            st.fetch_range(&s("k"), 0, 200).unwrap(),
            vec![(60, 60), (120, 120)],
            "stream time 120 keeps starts >= 21"
        );
        st.put(&s("k"), &250, 250, 250).unwrap();
        assert_eq!(st.stream_time(), 250);
        // Retained: starts >= 151. The window at 120 is gone at once, even before the commit.
        assert_eq!(st.fetch_range(&s("k"), 0, 300).unwrap(), vec![(250, 250)]);
        assert!(!st.put(&s("k"), &100, 100, 250).unwrap(), "a write to an expired window is dropped");
        assert_eq!(st.expired_drops(), 1);
        commit_all(st, &mut log);
        assert_eq!(st.all().unwrap(), vec![(w("k", 250), 250)]);
    });
}

#[test]
fn should_keep_duplicates_when_asked() {
    for b in Backend::all() {
        let mut st = ws(b.open("dups"), spec().with_duplicates(), StoreOptions::default());
        st.put(&s("a"), &1, 10, 10).unwrap();
        st.put(&s("a"), &2, 10, 11).unwrap();
        st.put(&s("a"), &3, 20, 12).unwrap();
        assert_eq!(st.fetch_range(&s("a"), 0, 20).unwrap(), vec![(10, 1), (10, 2), (20, 3)], "{}", b.kind);
        assert!(!st.delete(&s("a"), 10, 12).unwrap(), "no delete with duplicates");
        let mut log = Vec::new();
        commit_all(&mut st, &mut log);
        let mut fresh = ws(b.open("dups2"), spec().with_duplicates(), StoreOptions::default());
        restore_all(&mut fresh, &log, 2);
        assert_eq!(fresh.fetch_range(&s("a"), 0, 20).unwrap(), vec![(10, 1), (10, 2), (20, 3)]);
    }
}

#[test]
fn should_restore_the_same_windows_and_retention_from_the_changelog() {
    for b in Backend::all() {
        let mut st = ws(b.open("orig"), spec(), StoreOptions::default());
        let mut log = Vec::new();
        for i in 0..600i64 {
            let start = (i / 3) * 5;
            st.put(&format!("k{}", i % 13), &(i as u64), start, start).unwrap();
            if i % 50 == 0 {
                commit_all(&mut st, &mut log);
            }
        }
        commit_all(&mut st, &mut log);
        let mut fresh = ws(b.open("restored"), spec(), StoreOptions::default());
        restore_all(&mut fresh, &log, 100);
        assert_eq!(fresh.all().unwrap(), st.all().unwrap(), "{}", b.kind);
        assert_eq!(fresh.stream_time(), st.stream_time());
        assert!(fresh.all().unwrap().iter().all(|(w, _)| w.window.start > st.stream_time() - 100));
    }
}

#[test]
fn should_reopen_rocksdb_with_its_segments_and_stream_time() {
    let b = Backend::rocks();
    {
        let mut st = ws(b.open("w"), spec(), StoreOptions::default());
        let mut log = Vec::new();
        for start in [0, 60, 120] {
            st.put(&s("k"), &(start as u64), start, start).unwrap();
        }
        commit_all(&mut st, &mut log);
    }
    let mut st = ws(b.open("w"), spec(), StoreOptions::default());
    assert_eq!(st.stream_time(), 120);
    assert_eq!(st.fetch_range(&s("k"), 0, 200).unwrap(), vec![(60, 60), (120, 120)], "start 0 < 120 - 100 + 1");
    assert!(!st.put(&s("k"), &1, 10, 10).unwrap(), "start 10 < 120 - 100 + 1 after the reopen too");
}

#[test]
fn should_commit_the_stream_time_of_the_sealed_transaction() {
    let b = Backend::rocks();
    {
        let mut st = ws(b.open("sealed"), spec(), StoreOptions::default());
        let mut log = Vec::new();
        st.put(&s("k"), &1, 60, 60).unwrap();
        st.flush_cache().unwrap();
        log.extend(st.drain_changelog());
        st.seal().unwrap();
        // The next transaction moves stream time on before the sealed one commits.
        st.put(&s("k"), &2, 120, 120).unwrap();
        st.commit(log.len() as i64, &[]).unwrap();
        assert_eq!(st.stream_time(), 120, "stream time runs on with the later writes");
        st.abort();
        assert_eq!(st.stream_time(), 60, "an abort goes back to the committed stream time");
        assert_eq!(st.fetch_range(&s("k"), 0, 200).unwrap(), vec![(60, 1)]);
    }
    let st = ws(b.open("sealed"), spec(), StoreOptions::default());
    assert_eq!(st.stream_time(), 60, "the later writes' time was not committed");
    assert_eq!(st.fetch_range(&s("k"), 0, 200).unwrap(), vec![(60, 1)]);
}

#[test]
fn should_keep_committed_windows_when_an_aborted_transaction_moved_stream_time_past_them() {
    // Hole 5 of the exactly-once issue: retention must follow the committed stream time only.
    // The next transaction's writes move stream time far on while the sealed one commits; if it
    // aborts, the committed windows it would have expired must still be there, after persist
    // and after a reopen.
    for persist in [true, false] {
        let b = Backend::rocks();
        {
            let mut st = ws(b.open("sealed"), spec(), StoreOptions::default());
            st.set_persist_on_commit(persist);
            let mut log = Vec::new();
            st.put(&s("k"), &1, 60, 60).unwrap();
            st.flush_cache().unwrap();
            log.extend(st.drain_changelog());
            st.seal().unwrap();
            // Retention keeps starts >= 151 at stream time 250: the window at 60 would expire.
            st.put(&s("k"), &2, 250, 250).unwrap();
            st.commit(log.len() as i64, &[]).unwrap();
            st.persist().unwrap();
            st.abort();
            assert_eq!(st.stream_time(), 60);
            assert_eq!(st.fetch_range(&s("k"), 0, 300).unwrap(), vec![(60, 1)], "persist on commit: {persist}");
        }
        let st = ws(b.open("sealed"), spec(), StoreOptions::default());
        assert_eq!(st.stream_time(), 60);
        assert_eq!(st.fetch_range(&s("k"), 0, 300).unwrap(), vec![(60, 1)], "reopened, persist on commit: {persist}");
    }
}
