//! The background commit with the writer held busy, so the commit is certainly in flight.

use std::ops::Bound;
use std::sync::mpsc::sync_channel;
use std::sync::Arc;

use super::{writer, RocksStore};
use crate::budget::MemoryBudget;
use crate::raw::{Checkpoint, RawBatch, RawStore, Space};

#[test]
fn should_serve_a_commit_from_its_batch_until_the_writer_applies_it() {
    let dir = tempfile::tempdir().unwrap();
    let budget = MemoryBudget::new(16 << 20, 0.25);
    let path = dir.path().join("s");
    let mut store = RocksStore::open(&path, "s", &budget).unwrap();
    let (release, gate) = sync_channel::<()>(0);
    let blocker = writer::submit(Box::new(move || {
        gate.recv_timeout(std::time::Duration::from_secs(60))
            .map_err(|e| format!("the test never released the writer: {e}"))
    }));

    let mut batch = RawBatch::new();
    batch.entry(Space::Main).or_default().insert(b"k".to_vec(), Some(b"v".to_vec()));
    batch.entry(Space::Segment(3)).or_default().insert(b"s".to_vec(), Some(b"w".to_vec()));
    let cp = Checkpoint { changelog_offset: 9, ..Checkpoint::default() };
    store.write_shared(Arc::new(batch), &cp, &[]).unwrap();

    // The writer is busy: RocksDB does not have the commit yet, and the store serves it.
    assert_eq!(store.db.get_cf(store.main_cf().unwrap(), b"k").unwrap(), None);
    assert_eq!(store.get(Space::Main, b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(store.get(Space::Segment(3), b"s").unwrap(), Some(b"w".to_vec()));
    assert_eq!(store.get(Space::Main, b"other").unwrap(), None);
    assert_eq!(store.segments(), vec![3]);
    assert_eq!(store.checkpoint().map(|c| c.changelog_offset), Some(9));

    release.send(()).unwrap();
    blocker.wait().unwrap();
    let mut seen = Vec::new();
    store
        .scan(Space::Main, Bound::Unbounded, Bound::Unbounded, &mut |k, v| {
            seen.push((k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
    assert_eq!(seen, vec![(b"k".to_vec(), b"v".to_vec())], "a scan waits for the commit and reads it");

    drop(store);
    let store = RocksStore::open(&path, "s", &budget).unwrap();
    assert_eq!(store.get(Space::Main, b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(store.get(Space::Segment(3), b"s").unwrap(), Some(b"w".to_vec()));
    assert_eq!(store.checkpoint().map(|c| c.changelog_offset), Some(9));
}

#[test]
fn should_read_what_a_store_persisted_from_another_thread_until_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    let budget = MemoryBudget::new(16 << 20, 0.25);
    let mut store = RocksStore::open(&dir.path().join("r"), "r", &budget).unwrap();
    let mut batch = RawBatch::new();
    for k in ["a", "b", "c", "d"] {
        batch.entry(Space::Main).or_default().insert(k.as_bytes().to_vec(), Some(format!("v{k}").into_bytes()));
    }
    for (seg, k) in [(1, "x1"), (1, "y1"), (2, "x2"), (2, "y2")] {
        batch.entry(Space::Segment(seg)).or_default().insert(k.as_bytes().to_vec(), Some(b"w".to_vec()));
    }
    store.write(&batch, &Checkpoint::default(), crate::raw::WriteMode::Commit).unwrap();
    let reader = store.reader();
    let seen = std::thread::spawn(move || {
        let mut range = Vec::new();
        reader
            .scan(Bound::Included(b"b"), Bound::Excluded(b"d"), &mut |k, v| {
                range.push(format!("{}={}", String::from_utf8_lossy(k), String::from_utf8_lossy(v)));
                true
            })
            .unwrap();
        let mut xs = Vec::new();
        reader
            .scan_segments(b"x", &mut |k, _| {
                xs.push(String::from_utf8_lossy(k).into_owned());
                true
            })
            .unwrap();
        (reader.get(b"a").unwrap(), reader.get(b"z").unwrap(), range, xs, reader)
    })
    .join()
    .unwrap();
    assert_eq!(seen.0, Some(b"va".to_vec()));
    assert_eq!(seen.1, None);
    assert_eq!(seen.2, ["b=vb", "c=vc"], "the range [b, d)");
    assert_eq!(seen.3, ["x1", "x2"], "keys with the prefix, segment by segment");
    drop(store);
    let e = seen.4.get(b"a").unwrap_err();
    assert!(matches!(e, crate::Error::Closed { .. }), "a closed store is not kept open by its reader: {e}");
}
