use super::*;

/// A batch of `n` records with timestamps `ts0, ts0+1, ...`.
fn batch(n: usize, ts0: i64, value_len: usize) -> bytes::BytesMut {
    batch::test_batch(n, ts0, value_len)
}

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig { segment_bytes, ..LogConfig::default() }
}

/// Base offsets of every batch from `from` to the end (a fetch reads within one segment).
fn read_all(log: &PartitionLog, mut from: i64) -> Vec<i64> {
    let mut out = Vec::new();
    while from < log.log_end_offset() {
        let bytes = log.plan_fetch(from, 1 << 20, log.log_end_offset()).unwrap().execute().unwrap();
        let batches: Vec<(i64, i64)> =
            batch::iter_batches(&bytes).map(|(_, h)| (h.base_offset(), h.last_offset())).collect();
        assert!(!batches.is_empty(), "fetch at {from} made progress");
        out.extend(batches.iter().map(|b| b.0));
        from = batches.last().unwrap().1 + 1;
    }
    out
}

fn read_offsets(log: &PartitionLog, from: i64, max: usize) -> Vec<i64> {
    let bytes = log.plan_fetch(from, max, log.log_end_offset()).unwrap().execute().unwrap();
    batch::iter_batches(&bytes).map(|(_, h)| h.base_offset()).collect()
}

#[test]
fn should_assign_contiguous_offsets_and_return_the_batch_containing_the_fetch_offset() {
    let mut log = PartitionLog::open(None, LogConfig::default(), 0).unwrap();
    for _ in 0..3 {
        let info = log.append(&mut batch(10, 1_000, 10), 0, 0).unwrap();
        assert_eq!(info.last_offset - info.base_offset, 9);
    }
    assert_eq!(log.log_end_offset(), 30);
    // Offset 15 sits inside the second batch: that whole batch comes back first.
    assert_eq!(read_offsets(&log, 15, 1 << 20), vec![10, 20]);
    assert_eq!(read_offsets(&log, 30, 1 << 20), Vec::<i64>::new());
    assert_eq!(log.plan_fetch(31, 100, 30).unwrap_err(), ReadError::OffsetOutOfRange);
}

#[test]
fn should_return_one_whole_batch_when_it_exceeds_max_bytes() {
    let mut log = PartitionLog::open(None, LogConfig::default(), 0).unwrap();
    log.append(&mut batch(100, 0, 100), 0, 0).unwrap();
    log.append(&mut batch(100, 0, 100), 0, 0).unwrap();
    assert_eq!(read_offsets(&log, 0, 10), vec![0], "KIP-74: the first batch is whole");
}

#[test]
fn should_roll_segments_and_find_offsets_across_them_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(Some(Dir::real(dir.path())), config(4096), 0).unwrap();
    for i in 0..50 {
        log.append(&mut batch(5, i * 10, 100), 0, 0).unwrap();
    }
    assert!(log.segment_count() > 5, "segments rolled at segment.bytes");
    assert_eq!(read_offsets(&log, 123, 1)[0], 120);
    for off in [0, 7, 99, 248] {
        let first = read_offsets(&log, off, 1)[0];
        assert!(first <= off && off < first + 5, "fetch {off} starts at the batch containing it ({first})");
    }
    // By timestamp: the first record with ts >= 205 is at offset 5*20 + 5 - ... (batch 20 holds ts 200..204).
    assert_eq!(log.offset_for_timestamp(205).unwrap(), Some((105, 210)));
    assert_eq!(log.offset_for_timestamp(202).unwrap(), Some((102, 202)));
    assert_eq!(log.offset_for_timestamp(10_000).unwrap(), None);
    assert_eq!(log.max_timestamp_offset().unwrap(), Some((249, 494)));
    let files: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(files.iter().any(|f| f.ends_with(".index")) && files.iter().any(|f| f.ends_with(".timeindex")));
}

#[test]
fn should_recover_every_record_and_truncate_a_torn_tail_when_reopened() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = PartitionLog::open(Some(Dir::real(dir.path())), config(8192), 0).unwrap();
        for i in 0..30 {
            log.append(&mut batch(4, i, 50), 3, 0).unwrap();
        }
    }
    // Simulate a crash mid-write: half a batch at the end of the active segment.
    let mut segs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segs.sort();
    let last = segs.last().unwrap();
    let half = batch(4, 0, 50);
    let mut data = std::fs::read(last).unwrap();
    data.extend_from_slice(&half[..half.len() / 2]);
    std::fs::write(last, data).unwrap();

    let mut log = PartitionLog::open(Some(Dir::real(dir.path())), config(8192), 0).unwrap();
    assert_eq!(log.log_end_offset(), 120);
    assert_eq!(read_all(&log, 0), (0..30).map(|i| i * 4).collect::<Vec<i64>>());
    assert_eq!(log.latest_epoch(), 3);
    assert_eq!(log.end_offset_for_epoch(3), (3, 120));
    assert_eq!(log.end_offset_for_epoch(1), (-1, -1));
    log.append(&mut batch(1, 0, 1), 4, 0).unwrap();
    assert_eq!(log.end_offset_for_epoch(3), (3, 120));
    assert_eq!(log.end_offset_for_epoch(4), (4, 121));
}

#[test]
fn should_delete_whole_old_segments_by_time_and_by_size() {
    let mut cfg = config(2048);
    cfg.retention_ms = 1_000;
    let mut log = PartitionLog::open(None, cfg, 0).unwrap();
    for i in 0..20 {
        // Timestamps 0..; the last batches are "new".
        log.append(&mut batch(5, if i < 15 { 0 } else { 10_000 }, 100), 0, 10_000).unwrap();
    }
    let before = log.segment_count();
    let deleted = log.apply_retention(10_500).unwrap();
    assert!(deleted > 0 && log.segment_count() < before);
    assert!(log.log_start_offset() > 0);
    assert_eq!(log.log_end_offset(), 100, "retention never moves the log end");
    assert_eq!(log.plan_fetch(0, 100, 100).unwrap_err(), ReadError::OffsetOutOfRange);

    let mut cfg = config(2048);
    cfg.retention_ms = -1;
    cfg.retention_bytes = 4096;
    let mut log = PartitionLog::open(None, cfg, 0).unwrap();
    for _ in 0..20 {
        log.append(&mut batch(5, 0, 100), 0, 0).unwrap();
    }
    log.apply_retention(0).unwrap();
    assert!(log.size_bytes() <= 4096 + 2048, "size retention keeps about retention.bytes: {}", log.size_bytes());
    assert!(log.log_start_offset() > 0);
}

#[test]
fn should_move_log_start_when_records_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(Some(Dir::real(dir.path())), config(1024), 0).unwrap();
    for _ in 0..10 {
        log.append(&mut batch(5, 0, 100), 0, 0).unwrap();
    }
    assert_eq!(log.delete_records_before(23, 0).unwrap(), 23);
    assert_eq!(log.plan_fetch(22, 100, 50).unwrap_err(), ReadError::OffsetOutOfRange);
    assert_eq!(read_offsets(&log, 23, 1), vec![20]);
    drop(log);
    let log = PartitionLog::open(Some(Dir::real(dir.path())), config(1024), 0).unwrap();
    assert_eq!(log.log_start_offset(), 23, "log start offset survives a restart");
}

#[test]
fn should_fetch_every_offset_when_its_batch_starts_a_new_chunk_after_the_index_entry() {
    // In memory a read ends with its chunk; the index entry for an offset can sit in the
    // chunk before the one holding its batch, and the fetch must read on into the next.
    let mut log = PartitionLog::open(None, LogConfig::default(), 0).unwrap();
    for i in 0..400 {
        log.append(&mut batch(3, i * 3, 150), 0, 0).unwrap();
    }
    let end = log.log_end_offset();
    for offset in 0..end {
        let bytes = log.plan_fetch(offset, 1000, end).unwrap().execute().unwrap();
        let first = batch::iter_batches(&bytes).next().map(|(_, h)| (h.base_offset(), h.last_offset()));
        let (base, last) = first.unwrap_or_else(|| panic!("fetch at {offset} returned no batch"));
        assert!(base <= offset && offset <= last, "fetch at {offset} began with batch {base}..={last}");
    }
    assert_eq!(read_all(&log, 0).len(), 400);
}

/// On the simulated disk a power loss keeps what was synced: with `flush.messages=1` every
/// appended batch survives; without it the unsynced tail is lost, and a torn last batch is cut
/// off on reopen so appends go on at a batch boundary.
#[test]
fn should_keep_synced_batches_and_cut_a_torn_tail_after_a_simulated_power_loss() {
    use crate::storage::{Dir, SimFs};
    for (flush_messages, torn) in [(1, true), (i64::MAX, false), (i64::MAX, true)] {
        let fs = std::sync::Arc::new(SimFs::new());
        let dir = Dir::new(fs.clone(), "/data/t-0");
        let cfg = LogConfig { flush_messages, ..config(1 << 20) };
        let mut log = PartitionLog::open(Some(dir.clone()), cfg.clone(), 0).unwrap();
        log.append(&mut batch(5, 0, 10), 0, 0).unwrap();
        log.flush().unwrap();
        log.append(&mut batch(5, 0, 10), 0, 0).unwrap();
        log.append(&mut batch(5, 0, 10), 0, 0).unwrap();
        let unsynced = fs.unsynced_bytes();
        assert_eq!(unsynced == 0, flush_messages == 1, "flush.messages={flush_messages}: {unsynced} unsynced");
        // A torn write keeps 40 bytes of the unsynced tail: part of a batch.
        let loss = fs.crash(|n| if torn { n.min(40) } else { 0 });
        drop(log);
        let log = PartitionLog::open(Some(dir), cfg, 0).unwrap();
        if flush_messages == 1 {
            assert_eq!(loss.bytes, 0);
            assert_eq!(log.log_end_offset(), 15, "every appended batch was synced");
        } else {
            assert!(loss.bytes > 0, "{loss:?}");
            assert_eq!(log.log_end_offset(), 5, "the unsynced batches are gone, a torn one cut off");
            assert_eq!(read_all(&log, 0), vec![0]);
        }
    }
}
