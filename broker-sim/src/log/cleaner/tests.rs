use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, RecordBatchDecoder};

use crate::log::batch::{self, BatchHeader, ControlType};
use crate::log::{LogConfig, PartitionLog};

const MAP: usize = 1 << 20;

fn compact(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        compact: true,
        delete_enabled: false,
        delete_retention_ms: 1_000,
        ..LogConfig::default()
    }
}

/// One batch of `(key, value)` records (`None` value: a tombstone), timestamps `ts, ts+1, ...`,
/// from an optional producer `(id, epoch, first sequence, transactional)`.
fn keyed(
    pairs: &[(&str, Option<&str>)],
    ts: i64,
    compression: Compression,
    producer: Option<batch::Writer>,
) -> BytesMut {
    let records = pairs
        .iter()
        .enumerate()
        .map(|(i, (k, v))| (Bytes::from(k.to_string()), v.map(|v| Bytes::from(v.to_string())), ts + i as i64));
    batch::encode(records, producer, compression).unwrap()
}

fn put(log: &mut PartitionLog, pairs: &[(&str, Option<&str>)], now: i64) -> i64 {
    log.append(&mut keyed(pairs, now, Compression::None, None), 0, now).unwrap().base_offset
}

/// What a reader from the log start sees through the fetch path: `(offset, key, value)` of
/// every data record, and the offsets of the markers.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    records: Vec<(i64, String, Option<String>)>,
    markers: Vec<i64>,
    batches: usize,
}

fn read(log: &PartitionLog) -> Seen {
    let mut seen = Seen::default();
    let mut from = log.log_start_offset();
    let leo = log.log_end_offset();
    while from < leo {
        let bytes = log.plan_fetch(from, 1 << 20, leo).unwrap().execute().unwrap();
        assert!(!bytes.is_empty(), "a fetch at {from} below the log end {leo} returns something");
        for (p, h) in batch::iter_batches(&bytes) {
            let whole = &bytes[p..p + h.total_len()];
            batch::validate(whole).expect("every batch the cleaner wrote has a valid CRC");
            seen.batches += 1;
            let mut b = Bytes::copy_from_slice(whole);
            let set = RecordBatchDecoder::decode(&mut b).expect("a client decoder reads the batch");
            for r in set.records {
                if r.control {
                    seen.markers.push(r.offset);
                } else if r.offset >= from {
                    let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                    seen.records.push((r.offset, key, r.value.map(|v| String::from_utf8(v.to_vec()).unwrap())));
                }
            }
            from = h.last_offset() + 1;
        }
    }
    seen
}

fn latest(seen: &Seen) -> std::collections::BTreeMap<String, Option<String>> {
    seen.records.iter().map(|(_, k, v)| (k.clone(), v.clone())).collect()
}

/// 20 rounds of updates to 10 keys, one segment per round, then an active segment.
fn updated_log(dir: Option<crate::storage::Dir>) -> PartitionLog {
    let mut log = PartitionLog::open(dir, compact(1 << 20), 0).unwrap();
    for round in 0..20 {
        for k in 0..10 {
            let v = format!("v{round}");
            put(&mut log, &[(&format!("k{k}"), Some(&v))], 0);
        }
        log.roll(0).unwrap();
    }
    put(&mut log, &[("k0", Some("active"))], 0);
    log
}

#[test]
fn should_keep_the_latest_value_of_every_key_with_offsets_and_order_kept() {
    for on_disk in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = updated_log(on_disk.then(|| crate::storage::Dir::real(dir.path())));
        let before = read(&log);
        assert_eq!(before.records.len(), 201);
        let c = log.cleanable(0).unwrap();
        assert_eq!((c.first_dirty, c.end), (0, 200), "the active segment (from 200) is not cleaned");
        assert!(c.due(500_000));
        let stats = log.clean_now(0, MAP).unwrap().expect("a pass ran");
        let after = read(&log);
        assert_eq!(latest(&after), latest(&before), "every key keeps its latest value");
        let offsets: Vec<i64> = after.records.iter().map(|r| r.0).collect();
        assert_eq!(offsets, (190..201).collect::<Vec<_>>(), "the last round and the active record, at their offsets");
        assert_eq!(stats.records_read, 200);
        assert_eq!(stats.records_kept, 10);
        assert!(stats.bytes_written < stats.bytes_read / 10, "{stats:?}");
        assert_eq!(log.log_end_offset(), 201);
        assert_eq!(log.log_start_offset(), 0);
        assert!(log.segment_count() < 5, "segments merged: {}", log.segment_count());
        // Offsets inside removed ranges read from the next record kept.
        let bytes = log.plan_fetch(57, 1 << 20, 201).unwrap().execute().unwrap();
        assert_eq!(batch::iter_batches(&bytes).next().unwrap().1.base_offset(), 190);
        // Appends go on at the log end.
        assert_eq!(put(&mut log, &[("k1", Some("new"))], 0), 201);
        assert_eq!(log.cleanable(0).unwrap().dirty_bytes, 0, "nothing dirty before the active segment");
        if on_disk {
            drop(log);
            let log = PartitionLog::open(Some(crate::storage::Dir::real(dir.path())), compact(1 << 20), 0).unwrap();
            let reopened = read(&log);
            assert_eq!(reopened.records.len(), 12, "{reopened:?}");
            assert_eq!(log.cleanable(0).unwrap().first_dirty, 200, "the checkpoint survives a restart");
        }
    }
}

#[test]
fn should_clean_only_when_the_dirty_ratio_reaches_the_minimum() {
    let mut log = updated_log(None);
    log.clean_now(0, MAP).unwrap();
    // One more round: 10 dirty records over a clean section of 10.
    put(&mut log, &[("k5", Some("x"))], 0);
    log.roll(0).unwrap();
    put(&mut log, &[("k6", Some("y"))], 0);
    let c = log.cleanable(0).unwrap();
    assert!(c.dirty_ratio() > 0.0 && c.dirty_ratio() < 0.5, "{c:?}");
    assert!(!c.due(500_000), "below min.cleanable.dirty.ratio 0.5");
    assert!(c.due(10_000), "above 0.01");
}

#[test]
fn should_remove_tombstones_only_after_delete_retention() {
    let mut log = PartitionLog::open(None, compact(1 << 20), 0).unwrap();
    put(&mut log, &[("a", Some("1")), ("b", Some("1"))], 0);
    put(&mut log, &[("a", None)], 0);
    log.roll(0).unwrap();
    put(&mut log, &[("c", Some("1"))], 0);
    log.clean_now(100, MAP).unwrap();
    let seen = read(&log);
    assert_eq!(
        seen.records,
        vec![(1, "b".into(), Some("1".into())), (2, "a".into(), None), (3, "c".into(), Some("1".into()))],
        "the tombstone stays"
    );
    // The tombstone's batch now carries a delete horizon of 100 + delete.retention.ms.
    let bytes = log.plan_fetch(2, 1 << 20, 3).unwrap().execute().unwrap();
    let h = BatchHeader::parse(&bytes).unwrap();
    assert_eq!(h.delete_horizon(), Some(1_100));
    let mut b = bytes.slice(0..h.total_len());
    let set = RecordBatchDecoder::decode(&mut b).unwrap();
    assert_eq!(set.records[0].timestamp, 0, "record timestamps survive the new base timestamp");
    // A pass before the horizon keeps it, one after removes it.
    put(&mut log, &[("c", Some("2"))], 200);
    log.roll(200).unwrap();
    put(&mut log, &[("d", Some("1"))], 200);
    log.clean_now(1_099, MAP).unwrap();
    assert!(read(&log).records.iter().any(|r| r.1 == "a"));
    put(&mut log, &[("c", Some("3"))], 1_200);
    log.roll(1_200).unwrap();
    put(&mut log, &[("d", Some("2"))], 1_200);
    let stats = log.clean_now(1_100, MAP).unwrap().unwrap();
    assert_eq!(stats.tombstones_removed, 1);
    assert!(!read(&log).records.iter().any(|r| r.1 == "a"), "{:?}", read(&log));
}

#[test]
fn should_remove_aborted_data_and_keep_markers_while_their_data_is_left() {
    let mut log = PartitionLog::open(None, compact(1 << 20), 0).unwrap();
    let txn = |seq| Some((7, 0, seq, true));
    // A committed transaction, then an aborted one, both over keys x and y.
    log.append(&mut keyed(&[("x", Some("c1")), ("y", Some("c1"))], 0, Compression::None, txn(0)), 0, 0).unwrap();
    log.append_marker(7, 0, ControlType::Commit, 0, 0, 0).unwrap(); // offset 2
    log.append(&mut keyed(&[("x", Some("a1")), ("y", Some("a1"))], 0, Compression::None, txn(2)), 0, 0).unwrap();
    log.append_marker(7, 0, ControlType::Abort, 0, 0, 0).unwrap(); // offset 5
    log.roll(0).unwrap();
    put(&mut log, &[("z", Some("1"))], 0);
    let stats = log.clean_now(0, MAP).unwrap().unwrap();
    let seen = read(&log);
    assert_eq!(
        seen.records,
        vec![(0, "x".into(), Some("c1".into())), (1, "y".into(), Some("c1".into())), (6, "z".into(), Some("1".into()))],
        "the aborted records are gone, the committed ones (the latest committed values) stay"
    );
    assert_eq!(stats.aborted_removed, 2);
    // The aborted batch was the producer's last: kept empty, so is its marker (data left).
    assert_eq!(seen.markers, vec![2, 5]);
    // The committed values are superseded outside a transaction: the commit marker loses its
    // data, gets a horizon, and goes after it.
    log.append(&mut keyed(&[("x", Some("plain")), ("y", Some("plain"))], 0, Compression::None, None), 0, 0).unwrap();
    log.roll(0).unwrap();
    put(&mut log, &[("z", Some("2"))], 0);
    log.clean_now(10, MAP).unwrap();
    assert_eq!(read(&log).markers, vec![2, 5], "the commit marker waits for its horizon");
    put(&mut log, &[("z", Some("3"))], 0);
    log.roll(0).unwrap();
    put(&mut log, &[("z", Some("4"))], 0);
    let stats = log.clean_now(2_000, MAP).unwrap().unwrap();
    assert_eq!(stats.markers_removed, 1);
    assert_eq!(read(&log).markers, vec![5], "the abort marker stays: its empty batch is still the producer's last");
    // The producer's sequence survives a rebuild of its state from the cleaned log: its next
    // batch in sequence is accepted, a replay of its last one is a duplicate.
    let mut states = crate::log::producers::ProducerStates::default();
    for seg in log.segments.values() {
        log.scan_segment(seg, 0, |h, bytes| {
            super::super::observe(&mut states, &h, bytes, 0);
            true
        })
        .unwrap();
    }
    let next = keyed(&[("x", Some("n"))], 0, Compression::None, txn(4));
    assert_eq!(states.check(&BatchHeader::parse(&next).unwrap()), Ok(crate::log::producers::Verdict::Append));
    let replay = keyed(&[("x", Some("a1")), ("y", Some("a1"))], 0, Compression::None, txn(2));
    assert!(matches!(
        states.check(&BatchHeader::parse(&replay).unwrap()),
        Ok(crate::log::producers::Verdict::Duplicate { first_offset: 3 })
    ));
    assert_eq!(states.last_stable_offset(100), 100, "no transaction left open");
}

#[test]
fn should_recompress_rewritten_batches_with_their_codec() {
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let mut log = PartitionLog::open(None, compact(1 << 20), 0).unwrap();
        let pairs: Vec<(String, String)> = (0..50).map(|i| (format!("k{}", i % 10), format!("value-{i}"))).collect();
        let refs: Vec<(&str, Option<&str>)> = pairs.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))).collect();
        log.append(&mut keyed(&refs, 0, codec, None), 0, 0).unwrap();
        log.roll(0).unwrap();
        put(&mut log, &[("other", Some("1"))], 0);
        log.clean_now(0, MAP).unwrap();
        let seen = read(&log);
        let offsets: Vec<i64> = seen.records.iter().map(|r| r.0).collect();
        assert_eq!(offsets, (40..51).collect::<Vec<_>>(), "{codec:?}");
        assert_eq!(seen.records[0].2.as_deref(), Some("value-40"));
        let bytes = log.plan_fetch(0, 1 << 20, 51).unwrap().execute().unwrap();
        let h = BatchHeader::parse(&bytes).unwrap();
        assert_eq!(h.compression(), codec as i16, "{codec:?}");
        assert_eq!((h.base_offset(), h.last_offset()), (0, 49), "base offset and last offset delta kept");
    }
}

#[test]
fn should_leave_segments_younger_than_the_minimum_lag_dirty() {
    let mut cfg = compact(1 << 20);
    cfg.min_compaction_lag_ms = 1_000;
    let mut log = PartitionLog::open(None, cfg, 0).unwrap();
    put(&mut log, &[("a", Some("1"))], 0);
    log.roll(0).unwrap();
    put(&mut log, &[("a", Some("2"))], 500);
    log.roll(500).unwrap();
    put(&mut log, &[("a", Some("3"))], 900);
    let c = log.cleanable(1_200).unwrap();
    assert_eq!(c.end, 1, "the segment written at 500 is younger than 1 s at 1200");
    log.clean_now(1_200, MAP).unwrap();
    assert_eq!(read(&log).records.len(), 3, "nothing older of key a in the cleanable part to remove");
    log.clean_now(1_600, MAP).unwrap();
    assert_eq!(read(&log).records.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2]);
}

#[test]
fn should_force_a_pass_and_roll_after_the_maximum_lag() {
    let mut cfg = compact(1 << 20);
    cfg.max_compaction_lag_ms = 1_000;
    let mut log = PartitionLog::open(None, cfg, 0).unwrap();
    for i in 0..10 {
        put(&mut log, &[("a", Some(&i.to_string()))], 0);
    }
    put(&mut log, &[("a", Some("late"))], 1_000);
    assert_eq!(log.segment_count(), 2, "the active segment rolled: its records were older than the maximum lag");
    put(&mut log, &[("b", Some("1"))], 1_001);
    let c = log.cleanable(1_001).unwrap();
    assert!(c.forced && c.due(1_000_000), "{c:?}");
}

#[test]
fn should_end_a_pass_early_when_the_offset_map_is_full_and_go_on_in_the_next() {
    let mut log = PartitionLog::open(None, compact(1 << 20), 0).unwrap();
    for seg in 0..4 {
        for k in 0..10 {
            put(&mut log, &[(&format!("s{seg}k{k}"), Some("1"))], 0);
            put(&mut log, &[(&format!("s{seg}k{k}"), Some("2"))], 0);
        }
        log.roll(0).unwrap();
    }
    put(&mut log, &[("end", Some("1"))], 0);
    let stats = log.clean_now(0, 15).unwrap().unwrap();
    assert_eq!(log.cleanable(0).unwrap().first_dirty, 40, "the map filled after two segments");
    assert_eq!(stats.records_kept, 20);
    log.clean_now(0, 15).unwrap();
    log.clean_now(0, 15).unwrap();
    assert_eq!(read(&log).records.len(), 41);
}

#[test]
fn should_leave_the_old_segments_when_a_pass_is_abandoned_before_its_swap() {
    let dir = tempfile::tempdir().unwrap();
    let log = updated_log(Some(crate::storage::Dir::real(dir.path())));
    let before = read(&log);
    let out = log.prepare_clean(0, MAP).unwrap().run().unwrap();
    assert!(std::fs::read_dir(dir.path()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".cleaned")));
    std::mem::forget(out); // the process dies here
    drop(log);
    let log = PartitionLog::open(Some(crate::storage::Dir::real(dir.path())), compact(1 << 20), 0).unwrap();
    assert_eq!(read(&log), before, "the old segments, whole");
    assert!(!std::fs::read_dir(dir.path()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".cleaned")));
}

#[test]
fn should_finish_a_swap_a_crash_interrupted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = updated_log(Some(crate::storage::Dir::real(dir.path())));
    let out = log.prepare_clean(0, MAP).unwrap().run().unwrap();
    assert_eq!(out.groups.len(), 1);
    let g = &out.groups[0];
    // The crash comes after step 1 (renamed to .swap) and part of step 2 (one old segment
    // deleted).
    let name = |b: i64, ext: &str| crate::log::segment::file_name(b, ext);
    std::fs::rename(
        dir.path().join(name(0, "log") + ".cleaned"),
        dir.path().join(format!("{:020}-{:020}.log.swap", 0, g.end)),
    )
    .unwrap();
    std::fs::remove_file(dir.path().join(name(g.replaced[3].0, "log"))).unwrap();
    std::mem::forget(out);
    drop(log);
    let log = PartitionLog::open(Some(crate::storage::Dir::real(dir.path())), compact(1 << 20), 0).unwrap();
    let seen = read(&log);
    assert_eq!(seen.records.iter().map(|r| r.0).collect::<Vec<_>>(), (190..201).collect::<Vec<_>>(), "the new segment");
    let files: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert!(files.iter().all(|f| !f.contains("swap") && !f.contains("cleaned")), "{files:?}");
    assert_eq!(
        files.iter().filter(|f| f.ends_with(".log")).count(),
        2,
        "the cleaned segment and the active one: {files:?}"
    );
}

#[test]
fn should_drop_a_group_whose_segments_changed_during_the_pass() {
    let mut log = updated_log(None);
    let out = log.prepare_clean(0, MAP).unwrap().run().unwrap();
    log.delete_records_before(25, 0).unwrap();
    let stats = log.finish_clean(out).unwrap();
    assert_eq!(stats.passes, 1);
    assert_eq!(read(&log).records.len(), 201 - 25, "the old segments stay after DeleteRecords removed two");
    assert_eq!(log.cleanable(0).unwrap().first_dirty, 25, "the checkpoint did not move");
}

/// A group whose every record was superseded comes out as an empty segment; later passes
/// must still see the dirty segments after it (they once stopped at the empty segment).
#[test]
fn should_go_on_cleaning_after_a_group_came_out_empty() {
    let big = "v".repeat(150);
    let mut log = PartitionLog::open(None, compact(200), 0).unwrap();
    for _ in 0..2 {
        put(&mut log, &[("k", Some(&big))], 0);
        log.roll(0).unwrap();
    }
    put(&mut log, &[("other", Some("1"))], 0);
    log.clean_now(0, MAP).unwrap().unwrap();
    assert_eq!(log.segments.values().next().unwrap().size, 0, "the first group came out empty");
    for _ in 0..2 {
        put(&mut log, &[("k", Some(&big))], 0);
        log.roll(0).unwrap();
    }
    put(&mut log, &[("other", Some("2"))], 0);
    let c = log.cleanable(0).unwrap();
    assert!(c.due(500_000), "{c:?}");
    log.clean_now(0, MAP).unwrap().expect("a second pass");
    assert_eq!(read(&log).records.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 4, 5]);
}

/// `cleanup.policy=compact,delete`: retention deletes whole old segments by time and the
/// cleaner compacts what is left; neither undoes the other.
#[test]
fn should_compact_and_apply_retention_on_compact_delete_topics() {
    let mut cfg = compact(1 << 20);
    cfg.delete_enabled = true;
    cfg.retention_ms = 1_000;
    let mut log = PartitionLog::open(None, cfg, 0).unwrap();
    // Old records at time 0, newer ones at 5,000, each round in its own segment.
    for (round, ts) in [(0, 0), (1, 0), (2, 5_000), (3, 5_000)] {
        for k in 0..5 {
            let v = format!("r{round}");
            log.append(&mut keyed(&[(&format!("k{k}"), Some(&v))], ts, Compression::None, None), 0, ts).unwrap();
        }
        log.roll(ts).unwrap();
    }
    put(&mut log, &[("k0", Some("active"))], 5_000);
    assert_eq!(log.apply_retention(5_500).unwrap(), 2, "the two segments written at 0 expired");
    assert_eq!(log.log_start_offset(), 10);
    log.clean_now(5_500, MAP).unwrap().expect("a pass over what retention left");
    let seen = read(&log);
    assert_eq!(seen.records.iter().map(|r| r.0).collect::<Vec<_>>(), (15..21).collect::<Vec<_>>());
    assert_eq!(latest(&seen).get("k3"), Some(&Some("r3".to_string())));
    assert_eq!(log.log_start_offset(), 10, "cleaning never moves the log start");
}
