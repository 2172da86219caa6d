//! Time segments at the raw-store level, on every backend: a segment's keys never show through
//! another segment's reads (the same key lives in neighbouring segments), dropping a segment
//! removes it whole, and the live segments survive a reopen. A commit through `write_shared`
//! (applied in the background by RocksDB) is readable at once and durable once the store is
//! closed.

mod common;

use std::ops::Bound;
use std::sync::Arc;

use common::Backend;
use moldau_state_store::{Checkpoint, RawBatch, RawStore, Space, WriteMode, WriteSet};

/// A write: keyspace, key, value (`None`: delete).
type Entry<'a> = (Space, &'a [u8], Option<&'a [u8]>);

fn write(store: &mut dyn RawStore, entries: &[Entry<'_>]) {
    let mut batch = RawBatch::new();
    for (space, k, v) in entries {
        let set: &mut WriteSet = batch.entry(*space).or_default();
        set.insert(k.to_vec(), v.map(<[u8]>::to_vec));
    }
    store.write(&batch, &Checkpoint::default(), WriteMode::Commit).unwrap();
}

fn scan(store: &dyn RawStore, space: Space, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    store
        .scan(space, from, to, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
    out
}

fn kv(k: &[u8], v: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (k.to_vec(), v.to_vec())
}

#[test]
fn should_keep_segments_apart_drop_them_whole_and_remember_them() {
    for b in Backend::all() {
        let mut store = b.open("segments");
        let (a, c, z) = (Space::Segment(-1), Space::Segment(0), Space::Segment(1));
        write(
            &mut *store,
            &[
                (a, b"k", Some(b"a")),
                (c, b"", Some(b"c-empty")),
                (c, b"k", Some(b"c")),
                (c, b"l", Some(b"c2")),
                (z, b"k", Some(b"z")),
                (Space::Main, b"k", Some(b"main")),
            ],
        );
        assert_eq!(store.segments(), vec![-1, 0, 1], "{}", b.kind);
        for (space, want) in [(a, b"a".as_slice()), (c, b"c"), (z, b"z"), (Space::Main, b"main")] {
            assert_eq!(store.get(space, b"k").unwrap().as_deref(), Some(want), "{} {space:?}", b.kind);
        }
        assert_eq!(store.get(Space::Segment(7), b"k").unwrap(), None, "{}: a segment never written", b.kind);
        let all = scan(&*store, c, Bound::Unbounded, Bound::Unbounded);
        assert_eq!(all, vec![kv(b"", b"c-empty"), kv(b"k", b"c"), kv(b"l", b"c2")], "{}", b.kind);
        let upto = scan(&*store, c, Bound::Excluded(b"k"), Bound::Included(b"z"));
        assert_eq!(upto, vec![kv(b"l", b"c2")], "{}: the next segment does not show through", b.kind);
        let before = scan(&*store, c, Bound::Unbounded, Bound::Excluded(b"l"));
        assert_eq!(before, vec![kv(b"", b"c-empty"), kv(b"k", b"c")], "{}", b.kind);
        assert_eq!(scan(&*store, a, Bound::Included(b"a"), Bound::Unbounded), vec![kv(b"k", b"a")], "{}", b.kind);

        store.drop_segments(&[0, 5]).unwrap();
        assert_eq!(store.segments(), vec![-1, 1], "{}", b.kind);
        assert_eq!(store.get(c, b"k").unwrap(), None, "{}", b.kind);
        assert!(scan(&*store, c, Bound::Unbounded, Bound::Unbounded).is_empty(), "{}", b.kind);
        assert_eq!(store.get(z, b"k").unwrap().as_deref(), Some(b"z".as_slice()), "{}: neighbours stay", b.kind);

        if b.kind == "rocksdb" {
            drop(store);
            let store = b.open("segments");
            assert_eq!(store.segments(), vec![-1, 1], "live segments survive a reopen");
            assert_eq!(store.get(c, b"k").unwrap(), None);
            assert_eq!(store.get(a, b"k").unwrap().as_deref(), Some(b"a".as_slice()));
            let mut again = store;
            write(&mut *again, &[(c, b"n", Some(b"new"))]);
            assert_eq!(scan(&*again, c, Bound::Unbounded, Bound::Unbounded), vec![kv(b"n", b"new")], "recreated empty");
        }
    }
}

#[test]
fn should_read_a_background_commit_at_once_and_find_it_after_a_reopen() {
    for b in Backend::all() {
        let mut store = b.open("shared");
        write(&mut *store, &[(Space::Segment(0), b"old", Some(b"0")), (Space::Segment(1), b"k", Some(b"1"))]);
        // Large enough that RocksDB is still applying it when the reads below run.
        let mut batch = RawBatch::new();
        for i in 0..200_000u32 {
            batch
                .entry(Space::Segment(2))
                .or_default()
                .insert(i.to_be_bytes().to_vec(), Some(i.to_le_bytes().to_vec()));
        }
        batch.entry(Space::Segment(1)).or_default().insert(b"k".to_vec(), None);
        let cp = Checkpoint { changelog_offset: 42, ..Checkpoint::default() };
        store.write_shared(Arc::new(batch), &cp, &[0]).unwrap();
        let last = 199_999u32;
        assert_eq!(
            store.get(Space::Segment(2), &last.to_be_bytes()).unwrap(),
            Some(last.to_le_bytes().to_vec()),
            "{}: a key of the commit reads at once",
            b.kind
        );
        assert_eq!(store.get(Space::Segment(1), b"k").unwrap(), None, "{}: so does a delete", b.kind);
        assert_eq!(store.get(Space::Segment(0), b"old").unwrap(), None, "{}: the expired segment is gone", b.kind);
        assert_eq!(store.segments(), vec![1, 2], "{}", b.kind);
        assert_eq!(store.checkpoint().map(|c| c.changelog_offset), Some(42), "{}", b.kind);
        let n = scan(&*store, Space::Segment(2), Bound::Unbounded, Bound::Unbounded).len();
        assert_eq!(n, 200_000, "{}: a scan sees the whole commit", b.kind);

        if b.kind == "rocksdb" {
            // Closing waits for the writer: the next open finds the store unlocked and complete.
            drop(store);
            let store = b.open("shared");
            assert_eq!(store.checkpoint().map(|c| c.changelog_offset), Some(42));
            assert_eq!(store.segments(), vec![1, 2]);
            assert_eq!(store.get(Space::Segment(2), &last.to_be_bytes()).unwrap(), Some(last.to_le_bytes().to_vec()));
            assert_eq!(store.get(Space::Segment(1), b"k").unwrap(), None);
            assert_eq!(store.get(Space::Segment(0), b"old").unwrap(), None);
        }
    }
}

#[test]
fn should_read_segment_keys_of_every_length_and_not_their_neighbours() {
    // Short, middling and long keys: a lookup reuses one buffer for the prefixed key.
    let lengths = [0usize, 1, 119, 120, 121, 1_000];
    for b in Backend::all() {
        let mut store = b.open("lengths");
        let keys: Vec<Vec<u8>> = lengths.iter().map(|n| vec![b'k'; *n]).collect();
        let entries: Vec<Entry<'_>> =
            keys.iter().map(|k| (Space::Segment(3), k.as_slice(), Some(&k[..k.len().min(4)]))).collect();
        write(&mut *store, &entries);
        for k in &keys {
            let want = k[..k.len().min(4)].to_vec();
            assert_eq!(store.get(Space::Segment(3), k).unwrap(), Some(want), "{}: {} bytes", b.kind, k.len());
            assert_eq!(store.get(Space::Segment(4), k).unwrap(), None, "{}: another segment", b.kind);
        }
        let mut longer = keys[5].clone();
        longer.push(b'k');
        assert_eq!(store.get(Space::Segment(3), &longer).unwrap(), None, "{}: a longer key", b.kind);
        let mut shorter = keys[4].clone();
        shorter.pop();
        assert_eq!(store.get(Space::Segment(3), &shorter).unwrap(), Some(vec![b'k'; 4]), "{}: 120 bytes", b.kind);
    }
}
