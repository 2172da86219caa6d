//! The session store's conformance suite, run against RocksDB and the in-memory store.

mod common;

use common::{commit_all, restore_all, s, Backend};
use moldau_state_store::{
    BincodeSerde, Error, RawStore, SessionSpec, SessionStore, StateStore, StoreOptions, StringSerde, Window, Windowed,
};

type Ss = SessionStore<String, u64>;

fn ss(raw: Box<dyn RawStore>, options: StoreOptions) -> Ss {
    let spec = SessionSpec::new(100).with_segment_interval(50);
    SessionStore::new(raw, Box::new(StringSerde), Box::new(BincodeSerde::<u64>::default()), spec, options).unwrap()
}

fn each(check: impl Fn(&mut Ss)) {
    for b in Backend::all() {
        for (i, options) in
            [StoreOptions::default(), StoreOptions::default().with_cache(1 << 20)].into_iter().enumerate()
        {
            for persist in [true, false] {
                // Deferred: commits stay in memory until persisted, and reads merge them.
                let mut st = ss(b.open(&format!("s{i}{}", if persist { "" } else { "-deferred" })), options);
                st.set_persist_on_commit(persist);
                check(&mut st);
            }
        }
    }
}

fn win(start: i64, end: i64) -> Window {
    Window { start, end }
}

#[test]
fn should_find_the_sessions_a_record_merges_with() {
    each(|st| {
        let mut log = Vec::new();
        st.put(&s("a"), win(0, 10), &1, 10).unwrap();
        st.put(&s("a"), win(20, 30), &2, 30).unwrap();
        st.put(&s("ab"), win(22, 28), &9, 28).unwrap();
        commit_all(st, &mut log);
        st.put(&s("a"), win(55, 70), &3, 70).unwrap(); // pending, in the next segment
                                                       // A record at 25 with gap 5 merges with sessions ending >= 20 and starting <= 30.
        assert_eq!(st.find_sessions(&s("a"), 20, 30).unwrap(), vec![(win(20, 30), 2)]);
        assert_eq!(st.find_sessions(&s("a"), 5, 25).unwrap(), vec![(win(0, 10), 1), (win(20, 30), 2)]);
        assert_eq!(st.find_sessions(&s("a"), 31, 54).unwrap(), vec![], "the gap between sessions");
        assert_eq!(st.find_sessions(&s("a"), 31, 60).unwrap(), vec![(win(55, 70), 3)]);
        assert_eq!(st.fetch(&s("a")).unwrap().len(), 3);
        assert_eq!(st.fetch(&s("ab")).unwrap(), vec![(win(22, 28), 9)], "'a' not mixed in");
        assert_eq!(st.fetch_session(&s("a"), win(20, 30)).unwrap(), Some(2));
        assert_eq!(st.fetch_session(&s("a"), win(20, 31)).unwrap(), None);
    });
}

#[test]
fn should_merge_sessions_by_removing_and_putting() {
    each(|st| {
        let mut log = Vec::new();
        st.put(&s("a"), win(0, 10), &1, 10).unwrap();
        st.put(&s("a"), win(20, 30), &2, 30).unwrap();
        commit_all(st, &mut log);
        // A record at 15 with gap 10 bridges both sessions.
        let found = st.find_sessions(&s("a"), 5, 25).unwrap();
        assert_eq!(found.len(), 2);
        for (w, _) in &found {
            assert!(st.remove(&s("a"), *w, 15).unwrap());
        }
        st.put(&s("a"), win(0, 30), &4, 15).unwrap();
        assert_eq!(st.fetch(&s("a")).unwrap(), vec![(win(0, 30), 4)]);
        commit_all(st, &mut log);
        assert_eq!(st.all().unwrap(), vec![(Windowed { key: s("a"), window: win(0, 30) }, 4)]);
    });
}

#[test]
fn should_drop_sessions_that_ended_past_retention() {
    each(|st| {
        let mut log = Vec::new();
        st.put(&s("a"), win(0, 10), &1, 10).unwrap();
        st.put(&s("b"), win(5, 80), &2, 80).unwrap();
        commit_all(st, &mut log);
        st.put(&s("c"), win(150, 200), &3, 200).unwrap();
        // Retained: sessions ending >= 101.
        assert_eq!(st.fetch(&s("a")).unwrap(), vec![]);
        assert_eq!(st.fetch(&s("b")).unwrap(), vec![]);
        assert!(!st.put(&s("a"), win(90, 100), &5, 200).unwrap(), "a write to an expired session is dropped");
        commit_all(st, &mut log);
        assert_eq!(st.all().unwrap(), vec![(Windowed { key: s("c"), window: win(150, 200) }, 3)]);
    });
}

#[test]
fn should_restore_the_same_sessions_from_the_changelog() {
    for b in Backend::all() {
        let mut st = ss(b.open("orig"), StoreOptions::default());
        let mut log = Vec::new();
        for i in 0..400i64 {
            let key = format!("k{}", i % 7);
            let t = i * 2;
            let gap = if i % 5 == 0 { 20 } else { 10 };
            let found = st.find_sessions(&key, t - gap, t + gap).unwrap();
            let mut merged = win(t, t);
            let mut total = 1u64;
            for (w, v) in found {
                st.remove(&key, w, t).unwrap();
                merged = win(merged.start.min(w.start), merged.end.max(w.end));
                total += v;
            }
            st.put(&key, merged, &total, t).unwrap();
            if i % 40 == 0 {
                commit_all(&mut st, &mut log);
            }
        }
        commit_all(&mut st, &mut log);
        let mut fresh = ss(b.open("restored"), StoreOptions::default());
        restore_all(&mut fresh, &log, 64);
        assert_eq!(fresh.all().unwrap(), st.all().unwrap(), "{}", b.kind);
        assert!(!st.all().unwrap().is_empty());
    }
}

#[test]
fn should_refuse_a_session_that_ends_before_it_starts() {
    each(|st| {
        let err = st.put(&s("a"), win(10, 5), &1, 10).unwrap_err();
        assert!(matches!(err, Error::InvalidUse { .. }), "{err}");
        assert!(err.to_string().contains("cannot end before it starts"), "{err}");
    });
}
