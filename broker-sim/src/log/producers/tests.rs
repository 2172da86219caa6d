use super::*;
use crate::log::batch::{self, test_producer_batch};
use crate::log::{LogConfig, PartitionLog};

/// Checks a producer batch and appends it when the verdict is `Append`; returns the verdict or
/// the error code.
fn produce(log: &mut PartitionLog, n: usize, pid: i64, epoch: i16, seq: i32, txn: bool) -> Result<Verdict, i16> {
    let mut b = test_producer_batch(n, 1_000, 4, Some((pid, epoch, seq, txn)));
    let h = BatchHeader::parse(&b).unwrap();
    let verdict = log.producers.check(&h).map_err(|(code, _)| code)?;
    if verdict == Verdict::Append {
        log.append(&mut b, 0, 0).unwrap();
    }
    Ok(verdict)
}

#[test]
fn should_answer_a_retried_batch_with_its_original_offset_and_append_nothing() {
    let mut log = PartitionLog::open(None, LogConfig::default(), 0).unwrap();
    for seq in [0, 3, 6] {
        assert_eq!(produce(&mut log, 3, 7, 0, seq, false), Ok(Verdict::Append));
    }
    assert_eq!(produce(&mut log, 3, 7, 0, 3, false), Ok(Verdict::Duplicate { first_offset: 3 }));
    assert_eq!(log.log_end_offset(), 9);
}

#[test]
fn should_only_remember_the_last_five_batches() {
    let mut log = PartitionLog::open(None, LogConfig::default(), 0).unwrap();
    for seq in 0..6 {
        produce(&mut log, 1, 7, 0, seq, false).unwrap();
    }
    assert_eq!(produce(&mut log, 1, 7, 0, 1, false), Ok(Verdict::Duplicate { first_offset: 1 }));
    // Sequence 0 fell out of the window: it is no longer a duplicate but out of order.
    assert_eq!(produce(&mut log, 1, 7, 0, 0, false), Err(codes::OUT_OF_ORDER_SEQUENCE_NUMBER));
}

#[test]
fn should_refuse_gaps_old_epochs_and_new_epochs_not_starting_at_zero() {
    let mut log = PartitionLog::open(None, LogConfig::default(), 0).unwrap();
    produce(&mut log, 2, 7, 1, 0, false).unwrap();
    assert_eq!(produce(&mut log, 1, 7, 1, 5, false), Err(codes::OUT_OF_ORDER_SEQUENCE_NUMBER));
    assert_eq!(produce(&mut log, 1, 7, 0, 2, false), Err(codes::INVALID_PRODUCER_EPOCH));
    assert_eq!(produce(&mut log, 1, 7, 2, 4, false), Err(codes::OUT_OF_ORDER_SEQUENCE_NUMBER));
    assert_eq!(produce(&mut log, 1, 7, 2, 0, false), Ok(Verdict::Append));
    assert_eq!(produce(&mut log, 1, 7, 2, 1, false), Ok(Verdict::Append));
}

#[test]
fn should_accept_any_sequence_from_a_producer_it_has_no_state_for() {
    let mut log = PartitionLog::open(None, LogConfig::default(), 0).unwrap();
    assert_eq!(produce(&mut log, 1, 9, 3, 999, false), Ok(Verdict::Append));
    assert_eq!(produce(&mut log, 1, 9, 3, 1000, false), Ok(Verdict::Append));
}

#[test]
fn should_wrap_sequences_at_i32_max() {
    let mut log = PartitionLog::open(None, LogConfig::default(), 0).unwrap();
    produce(&mut log, 1, 7, 0, i32::MAX, false).unwrap();
    assert_eq!(produce(&mut log, 1, 7, 0, 0, false), Ok(Verdict::Append));
}

#[test]
fn should_hold_the_lso_at_the_first_open_transaction_and_index_aborted_ranges() {
    let mut log = PartitionLog::open(None, LogConfig::default(), 0).unwrap();
    produce(&mut log, 2, 1, 0, 0, false).unwrap(); // 0..2 plain idempotent
    produce(&mut log, 3, 2, 0, 0, true).unwrap(); // 2..5 txn of producer 2
    produce(&mut log, 2, 3, 0, 0, true).unwrap(); // 5..7 txn of producer 3
    assert_eq!(log.last_stable_offset(), 2);
    assert_eq!(produce(&mut log, 1, 2, 0, 3, false), Err(codes::INVALID_TXN_STATE));
    let abort = log.append_marker(2, 0, ControlType::Abort, 0, 0, 0).unwrap();
    assert_eq!(abort, 7);
    assert_eq!(log.last_stable_offset(), 5, "producer 3 still open");
    log.append_marker(3, 0, ControlType::Commit, 0, 0, 0).unwrap();
    assert_eq!(log.last_stable_offset(), log.log_end_offset());
    assert_eq!(
        log.producers.aborted_between(0, 100),
        vec![AbortedTxn { producer_id: 2, first_offset: 2, last_offset: 7 }]
    );
    assert!(log.producers.aborted_between(8, 100).is_empty(), "the abort ended before offset 8");
    assert!(log.producers.aborted_between(0, 2).is_empty(), "the abort starts at 2");
}

#[test]
fn should_rebuild_producer_state_and_aborted_ranges_when_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let path = crate::storage::Dir::real(dir.path().join("t-0"));
    {
        let mut log = PartitionLog::open(Some(path.clone()), LogConfig::default(), 0).unwrap();
        produce(&mut log, 2, 1, 0, 0, false).unwrap();
        produce(&mut log, 2, 2, 4, 0, true).unwrap();
        log.append_marker(2, 4, ControlType::Abort, 0, 0, 0).unwrap();
        produce(&mut log, 1, 3, 0, 0, true).unwrap();
        log.flush().unwrap();
    }
    let mut log = PartitionLog::open(Some(path), LogConfig::default(), 0).unwrap();
    assert_eq!(log.producers.producer_count(), 3);
    assert_eq!(produce(&mut log, 2, 1, 0, 0, false), Ok(Verdict::Duplicate { first_offset: 0 }));
    assert_eq!(produce(&mut log, 1, 1, 0, 5, false), Err(codes::OUT_OF_ORDER_SEQUENCE_NUMBER));
    assert_eq!(log.last_stable_offset(), 5, "producer 3's transaction is still open");
    assert_eq!(
        log.producers.aborted_between(0, 100),
        vec![AbortedTxn { producer_id: 2, first_offset: 2, last_offset: 4 }]
    );
}

#[test]
fn should_forget_idle_producers_but_keep_those_with_open_transactions() {
    let mut log = PartitionLog::open(None, LogConfig::default(), 0).unwrap();
    produce(&mut log, 1, 1, 0, 0, false).unwrap();
    produce(&mut log, 1, 2, 0, 0, true).unwrap();
    assert_eq!(log.producers.expire(10_000, 1_000), 1);
    assert_eq!(log.producers.producer_count(), 1);
}

#[test]
fn should_round_trip_control_batches() {
    let b = batch::control_batch(42, 3, ControlType::Commit, 0, 5);
    let h = batch::validate(&b).unwrap();
    assert!(h.is_control() && h.is_transactional());
    assert_eq!((h.producer_id(), h.producer_epoch(), h.records_count()), (42, 3, 1));
    assert_eq!(batch::control_type(&b), Some(ControlType::Commit));
    let decoded = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes::Bytes::from(b)).unwrap();
    assert!(decoded.records[0].control);
}
