use super::*;

/// Records what the coordinator persisted and which markers it wrote; can be told to fail.
/// (producer id, epoch, marker, partitions) of one `write_markers` call.
type Markers = (i64, i16, ControlType, Vec<(String, i32)>);

#[derive(Default)]
struct FakeIo {
    persisted: Vec<TxnMeta>,
    markers: Vec<Markers>,
    fail_markers: bool,
}

impl TxnIo for FakeIo {
    fn persist(&mut self, meta: &TxnMeta) -> Result<(), String> {
        self.persisted.push(meta.clone());
        Ok(())
    }
    fn write_markers(
        &mut self,
        producer_id: i64,
        epoch: i16,
        kind: ControlType,
        partitions: &BTreeSet<(String, i32)>,
    ) -> Result<(), String> {
        if self.fail_markers {
            return Err("disk full".into());
        }
        self.markers.push((producer_id, epoch, kind, partitions.iter().cloned().collect()));
        Ok(())
    }
}

const FENCED: i16 = codes::PRODUCER_FENCED;

fn coordinator() -> TxnCoordinator {
    TxnCoordinator::new(ProducerIdAllocator::open(None), 900_000)
}

fn init(c: &mut TxnCoordinator, io: &mut FakeIo, id: &str, expected: Option<(i64, i16)>) -> Result<(i64, i16), i16> {
    c.init_producer_id(io, 0, InitRequest { txn_id: Some(id), timeout_ms: 60_000, expected, fenced: FENCED })
        .map_err(|e| e.0)
}

fn who(txn_id: &str, producer_id: i64, epoch: i16) -> Caller<'_> {
    Caller { txn_id, producer_id, epoch, fenced: FENCED }
}

fn p(t: &str, i: i32) -> (String, i32) {
    (t.to_string(), i)
}

#[test]
fn should_hand_idempotent_producers_distinct_ids() {
    let (mut c, mut io) = (coordinator(), FakeIo::default());
    let req = InitRequest { txn_id: None, timeout_ms: 0, expected: None, fenced: FENCED };
    let a = c.init_producer_id(&mut io, 0, req).unwrap();
    let b = c.init_producer_id(&mut io, 0, req).unwrap();
    assert_ne!(a.0, b.0);
    assert_eq!((a.1, b.1), (0, 0));
    assert!(io.persisted.is_empty(), "idempotent producers are not in the transaction log");
}

#[test]
fn should_refuse_empty_ids_and_timeouts_above_the_maximum() {
    let (mut c, mut io) = (coordinator(), FakeIo::default());
    assert_eq!(init(&mut c, &mut io, "", None), Err(codes::INVALID_REQUEST));
    let req = InitRequest { txn_id: Some("t"), timeout_ms: 900_001, expected: None, fenced: FENCED };
    assert_eq!(c.init_producer_id(&mut io, 0, req).map_err(|e| e.0), Err(codes::INVALID_TRANSACTION_TIMEOUT));
}

#[test]
fn should_commit_writing_markers_to_every_added_partition() {
    let (mut c, mut io) = (coordinator(), FakeIo::default());
    let (pid, epoch) = init(&mut c, &mut io, "t", None).unwrap();
    c.add_partitions(&mut io, 1, who("t", pid, epoch), &[p("a", 0), p("a", 1)]).unwrap();
    c.add_partitions(&mut io, 2, who("t", pid, epoch), &[p("__consumer_offsets", 7)]).unwrap();
    c.end_txn(&mut io, 3, who("t", pid, epoch), true).unwrap();
    assert_eq!(
        io.markers,
        vec![(pid, epoch, ControlType::Commit, vec![p("__consumer_offsets", 7), p("a", 0), p("a", 1)])]
    );
    let states: Vec<TxnState> = io.persisted.iter().map(|m| m.state).collect();
    assert_eq!(
        states,
        vec![TxnState::Empty, TxnState::Ongoing, TxnState::Ongoing, TxnState::PrepareCommit, TxnState::CompleteCommit]
    );
    // A retried commit succeeds; an abort of the committed transaction does not.
    assert!(c.end_txn(&mut io, 4, who("t", pid, epoch), true).is_ok());
    assert_eq!(c.end_txn(&mut io, 4, who("t", pid, epoch), false).map_err(|e| e.0), Err(codes::INVALID_TXN_STATE));
    assert_eq!(io.markers.len(), 1);
}

#[test]
fn should_answer_errors_for_wrong_ids_epochs_and_states() {
    let (mut c, mut io) = (coordinator(), FakeIo::default());
    let (pid, epoch) = init(&mut c, &mut io, "t", None).unwrap();
    let end = |c: &mut TxnCoordinator, io: &mut FakeIo, pid, epoch, fenced| {
        c.end_txn(io, 1, Caller { txn_id: "t", producer_id: pid, epoch, fenced }, true).map_err(|e| e.0)
    };
    assert_eq!(end(&mut c, &mut io, pid, epoch, FENCED), Err(codes::INVALID_TXN_STATE), "nothing open");
    assert_eq!(end(&mut c, &mut io, pid + 1, epoch, FENCED), Err(codes::INVALID_PRODUCER_ID_MAPPING));
    assert_eq!(end(&mut c, &mut io, pid, epoch + 1, FENCED), Err(FENCED));
    assert_eq!(end(&mut c, &mut io, pid, epoch + 1, codes::INVALID_PRODUCER_EPOCH), Err(codes::INVALID_PRODUCER_EPOCH));
    let r = c.add_partitions(&mut io, 1, who("nope", pid, epoch), &[p("a", 0)]).map_err(|e| e.0);
    assert_eq!(r, Err(codes::INVALID_PRODUCER_ID_MAPPING));
}

#[test]
fn should_fence_the_old_producer_and_abort_its_open_transaction_on_init() {
    let (mut c, mut io) = (coordinator(), FakeIo::default());
    let (pid, e0) = init(&mut c, &mut io, "t", None).unwrap();
    c.add_partitions(&mut io, 1, who("t", pid, e0), &[p("a", 0)]).unwrap();
    assert_eq!(init(&mut c, &mut io, "t", None), Err(codes::CONCURRENT_TRANSACTIONS));
    assert_eq!(io.markers, vec![(pid, e0 + 1, ControlType::Abort, vec![p("a", 0)])], "aborted with the bumped epoch");
    let (pid2, e2) = init(&mut c, &mut io, "t", None).unwrap();
    assert_eq!((pid2, e2), (pid, e0 + 2));
    assert_eq!(c.verify_produce(pid, e0, "a", 0).map_err(|e| e.0), Err(codes::INVALID_PRODUCER_EPOCH));
    assert_eq!(c.end_txn(&mut io, 2, who("t", pid, e0), true).map_err(|e| e.0), Err(FENCED));
}

#[test]
fn should_bump_on_kip360_requests_and_return_the_same_epoch_on_a_retry() {
    let (mut c, mut io) = (coordinator(), FakeIo::default());
    let (pid, e0) = init(&mut c, &mut io, "t", None).unwrap();
    assert_eq!(init(&mut c, &mut io, "t", Some((pid, e0))), Ok((pid, e0 + 1)));
    assert_eq!(init(&mut c, &mut io, "t", Some((pid, e0))), Ok((pid, e0 + 1)), "retry of the same bump");
    assert_eq!(init(&mut c, &mut io, "t", Some((pid, e0 + 5))), Err(FENCED));
    assert_eq!(init(&mut c, &mut io, "t", Some((pid + 100, 0))), Err(FENCED));
}

#[test]
fn should_rotate_the_producer_id_when_the_epoch_is_exhausted() {
    let (mut c, mut io) = (coordinator(), FakeIo::default());
    let (pid, _) = init(&mut c, &mut io, "t", None).unwrap();
    let mut meta = c.get("t").unwrap().clone();
    meta.epoch = i16::MAX - 1;
    c.load([meta]);
    let (pid2, e2) = init(&mut c, &mut io, "t", None).unwrap();
    assert_ne!(pid2, pid);
    assert_eq!(e2, 0);
    assert_eq!(c.get("t").unwrap().last_producer_id, pid);
}

#[test]
fn should_abort_timed_out_transactions_and_fence_their_producer() {
    let (mut c, mut io) = (coordinator(), FakeIo::default());
    let req = InitRequest { txn_id: Some("t"), timeout_ms: 1_000, expected: None, fenced: FENCED };
    let (pid, e0) = c.init_producer_id(&mut io, 0, req).unwrap();
    c.add_partitions(&mut io, 100, who("t", pid, e0), &[p("a", 0)]).unwrap();
    assert_eq!(c.tick(&mut io, 1_000), 0);
    assert_eq!(c.tick(&mut io, 1_101), 1);
    assert_eq!(c.get("t").unwrap().state, TxnState::CompleteAbort);
    assert_eq!(io.markers, vec![(pid, e0 + 1, ControlType::Abort, vec![p("a", 0)])]);
    assert_eq!(c.add_partitions(&mut io, 1_200, who("t", pid, e0), &[p("a", 0)]).map_err(|e| e.0), Err(FENCED));
    assert_eq!(init(&mut c, &mut io, "t", Some((pid, e0))), Err(FENCED), "KIP-360 cannot revive a fenced epoch");
}

#[test]
fn should_retry_markers_that_failed_and_answer_concurrent_transactions_meanwhile() {
    let (mut c, mut io) = (coordinator(), FakeIo::default());
    let (pid, e0) = init(&mut c, &mut io, "t", None).unwrap();
    c.add_partitions(&mut io, 1, who("t", pid, e0), &[p("a", 0)]).unwrap();
    io.fail_markers = true;
    c.end_txn(&mut io, 2, who("t", pid, e0), true).unwrap();
    assert_eq!(c.get("t").unwrap().state, TxnState::PrepareCommit);
    let r = c.add_partitions(&mut io, 3, who("t", pid, e0), &[p("a", 1)]).map_err(|e| e.0);
    assert_eq!(r, Err(codes::CONCURRENT_TRANSACTIONS));
    io.fail_markers = false;
    c.tick(&mut io, 4);
    assert_eq!(c.get("t").unwrap().state, TxnState::CompleteCommit);
    assert_eq!(io.markers.len(), 1);
}

#[test]
fn should_only_accept_transactional_batches_for_partitions_in_the_open_transaction() {
    let (mut c, mut io) = (coordinator(), FakeIo::default());
    let (pid, e0) = init(&mut c, &mut io, "t", None).unwrap();
    assert_eq!(c.verify_produce(pid, e0, "a", 0).map_err(|e| e.0), Err(codes::INVALID_TXN_STATE));
    c.add_partitions(&mut io, 1, who("t", pid, e0), &[p("a", 0)]).unwrap();
    assert!(c.verify_produce(pid, e0, "a", 0).is_ok());
    assert_eq!(c.verify_produce(pid, e0, "a", 1).map_err(|e| e.0), Err(codes::INVALID_TXN_STATE));
    assert_eq!(c.verify_produce(999, 0, "a", 0).map_err(|e| e.0), Err(codes::INVALID_PRODUCER_ID_MAPPING));
}
