//! The simulated clients: state machines that speak the Kafka protocol to the cluster core,
//! one request outstanding each (a request not answered in time is sent again, unchanged).
//!
//! - [`Idempotent`]: an idempotent producer writing batches of 1 to 3 records with sequences;
//! - [`Transactional`]: a transactional producer (begin, add partitions, produce, commit or
//!   abort); two of them may share a transactional id, each fencing the other in turn;
//! - [`Reader`]: a read_committed consumer from the start of every partition, filtering aborted
//!   transactions as Kafka's clients do;
//! - [`Committer`]: a consumer committing ever larger offsets for its group.

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, ApiKey, EndTxnRequest, FetchRequest, GroupId, InitProducerIdRequest,
    OffsetCommitRequest, ProduceRequest, ProducerId, RequestKind, ResponseKind, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

use super::check::Checker;
use super::rng::Rng;
use crate::cluster::ClusterCore;
use crate::log::{batch, records};
use crate::protocol::codes;

/// A request to send: its API, version and body.
pub(crate) type Request = (ApiKey, i16, RequestKind);

/// What every simulated client does.
pub(crate) trait SimClient {
    /// A short name, for traces.
    fn name(&self) -> String;
    /// The next request, if the client has one now.
    fn next(&mut self, now: i64, rng: &mut Rng) -> Option<Request>;
    /// The answer to its request.
    fn answer(&mut self, resp: ResponseKind, core: &ClusterCore, ck: &mut Checker, rng: &mut Rng);
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// One batch of `(key, value)` records.
fn encode(
    pairs: &[(Bytes, Option<Bytes>)],
    now: i64,
    (pid, epoch, seq): (i64, i16, i32),
    transactional: bool,
) -> Bytes {
    let records = pairs.iter().map(|(k, v)| (k.clone(), v.clone(), now));
    // Encoding records we built ourselves does not fail; an empty batch would be refused.
    batch::encode(records, Some((pid, epoch, seq, transactional)), Compression::None).unwrap_or_default().freeze()
}

fn produce(topic: &str, p: i32, txn: Option<&str>, records: Bytes) -> Request {
    let req = ProduceRequest::default()
        .with_transactional_id(txn.map(|t| TransactionalId(StrBytes::from_string(t.to_string()))))
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default().with_index(p).with_records(Some(records))])]);
    (ApiKey::Produce, 9, RequestKind::Produce(req))
}

fn init(txn: Option<&str>, timeout_ms: i32) -> Request {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(txn.map(|t| TransactionalId(StrBytes::from_string(t.to_string()))))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    (ApiKey::InitProducerId, 4, RequestKind::InitProducerId(req))
}

/// `(error, base offset)` of a one-partition produce response.
fn produce_result(resp: &ResponseKind) -> (i16, i64) {
    match resp {
        ResponseKind::Produce(r) => r
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .map_or((codes::UNKNOWN_SERVER_ERROR, -1), |p| (p.error_code, p.base_offset)),
        _ => (codes::UNKNOWN_SERVER_ERROR, -1),
    }
}

/// An idempotent producer to `topic` (`partitions` partitions), keys `k0..k{keys}`, a tenth
/// of its records tombstones when `tombstones`.
#[derive(Debug)]
pub(crate) struct Idempotent {
    pub(crate) id: usize,
    pub(crate) topic: &'static str,
    pub(crate) partitions: i32,
    pub(crate) keys: u64,
    pub(crate) tombstones: bool,
    producer: Option<(i64, i16)>,
    next_seq: Vec<i32>,
    /// The batch in flight: partition, first sequence, records.
    sending: Option<(i32, i32, i32)>,
    written: u64,
}

impl Idempotent {
    /// A producer that has not initialized yet.
    pub(crate) fn new(id: usize, topic: &'static str, partitions: i32, keys: u64, tombstones: bool) -> Self {
        Idempotent {
            id,
            topic,
            partitions,
            keys,
            tombstones,
            producer: None,
            next_seq: vec![0; partitions as usize],
            sending: None,
            written: 0,
        }
    }
}

impl SimClient for Idempotent {
    fn name(&self) -> String {
        format!("idempotent-{}", self.id)
    }

    fn next(&mut self, now: i64, rng: &mut Rng) -> Option<Request> {
        let Some((pid, epoch)) = self.producer else { return Some(init(None, 60_000)) };
        let p = rng.below(self.partitions as u64) as i32;
        let n = rng.between(1, 3) as i32;
        let seq = self.next_seq[p as usize];
        let pairs: Vec<(Bytes, Option<Bytes>)> = (0..n)
            .map(|i| {
                let key = Bytes::from(format!("k{}", rng.below(self.keys)));
                let value = (!self.tombstones || !rng.chance(100))
                    .then(|| Bytes::from(format!("{}:{pid}:{}", self.name(), self.written + i as u64)));
                (key, value)
            })
            .collect();
        self.sending = Some((p, seq, n));
        Some(produce(self.topic, p, None, encode(&pairs, now, (pid, epoch, seq), false)))
    }

    fn answer(&mut self, resp: ResponseKind, _core: &ClusterCore, ck: &mut Checker, _rng: &mut Rng) {
        if let ResponseKind::InitProducerId(r) = &resp {
            if r.error_code == codes::NONE {
                self.producer = Some((r.producer_id.0, r.producer_epoch));
                self.next_seq.iter_mut().for_each(|s| *s = 0);
            }
            return;
        }
        let (Some(producer), Some((p, seq, n))) = (self.producer, self.sending.take()) else { return };
        match produce_result(&resp) {
            (codes::NONE, base) => {
                ck.acked(producer, self.topic, p, seq, base);
                self.next_seq[p as usize] = seq + n;
                self.written += n as u64;
            }
            // The producer's state is not what it thinks: start over as a new producer.
            (codes::OUT_OF_ORDER_SEQUENCE_NUMBER | codes::INVALID_PRODUCER_EPOCH, _) => self.producer = None,
            _ => {}
        }
    }
}

/// Where a transactional producer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnStep {
    Init,
    Begin,
    Send { left: u32 },
    End { commit: bool },
}

/// A transactional producer (instance `instance` of transactional id `txn_id`).
#[derive(Debug)]
pub(crate) struct Transactional {
    pub(crate) txn_id: String,
    pub(crate) instance: usize,
    pub(crate) topic: &'static str,
    pub(crate) partitions: i32,
    producer: Option<(i64, i16)>,
    step: TxnStep,
    added: Vec<i32>,
    next_seq: Vec<i32>,
    sending: Option<(i32, i32, i32)>,
    txns: u64,
}

impl Transactional {
    /// An instance that has not initialized yet.
    pub(crate) fn new(txn_id: &str, instance: usize, topic: &'static str, partitions: i32) -> Self {
        Transactional {
            txn_id: txn_id.to_string(),
            instance,
            topic,
            partitions,
            producer: None,
            step: TxnStep::Init,
            added: Vec::new(),
            next_seq: vec![0; partitions as usize],
            sending: None,
            txns: 0,
        }
    }

    fn fenced(&mut self) {
        self.producer = None;
        self.step = TxnStep::Init;
    }
}

impl SimClient for Transactional {
    fn name(&self) -> String {
        format!("{}#{}", self.txn_id, self.instance)
    }

    fn next(&mut self, now: i64, rng: &mut Rng) -> Option<Request> {
        let txn = self.txn_id.clone();
        let Some((pid, epoch)) = self.producer else { return Some(init(Some(&txn), 2_000)) };
        match self.step {
            TxnStep::Init => Some(init(Some(&txn), 2_000)),
            TxnStep::Begin => {
                let mut parts: Vec<i32> = (0..self.partitions).filter(|_| rng.chance(500)).collect();
                if parts.is_empty() {
                    parts.push(rng.below(self.partitions as u64) as i32);
                }
                self.added = parts.clone();
                let req = AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_string(txn)))
                    .with_v3_and_below_producer_id(ProducerId(pid))
                    .with_v3_and_below_producer_epoch(epoch)
                    .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                        .with_name(name(self.topic))
                        .with_partitions(parts)]);
                Some((ApiKey::AddPartitionsToTxn, 3, RequestKind::AddPartitionsToTxn(req)))
            }
            TxnStep::Send { .. } => {
                let p = self.added[rng.below(self.added.len() as u64) as usize];
                let seq = self.next_seq[p as usize];
                let n = rng.between(1, 3) as i32;
                let pairs: Vec<(Bytes, Option<Bytes>)> = (0..n)
                    .map(|i| {
                        (Bytes::from(format!("t{i}")), Some(Bytes::from(format!("{}:{}:{i}", self.name(), self.txns))))
                    })
                    .collect();
                self.sending = Some((p, seq, n));
                Some(produce(self.topic, p, Some(&txn), encode(&pairs, now, (pid, epoch, seq), true)))
            }
            TxnStep::End { commit } => {
                let req = EndTxnRequest::default()
                    .with_transactional_id(TransactionalId(StrBytes::from_string(txn)))
                    .with_producer_id(ProducerId(pid))
                    .with_producer_epoch(epoch)
                    .with_committed(commit);
                Some((ApiKey::EndTxn, 3, RequestKind::EndTxn(req)))
            }
        }
    }

    fn answer(&mut self, resp: ResponseKind, core: &ClusterCore, ck: &mut Checker, rng: &mut Rng) {
        let fenced_code = |c: i16| matches!(c, codes::PRODUCER_FENCED | codes::INVALID_PRODUCER_EPOCH);
        match resp {
            ResponseKind::InitProducerId(r) if r.error_code == codes::NONE => {
                ck.fenced(core, r.producer_id.0, r.producer_epoch);
                self.producer = Some((r.producer_id.0, r.producer_epoch));
                self.next_seq.iter_mut().for_each(|s| *s = 0);
                self.step = TxnStep::Begin;
            }
            ResponseKind::AddPartitionsToTxn(r) => {
                let codes_: Vec<i16> = r
                    .results_by_topic_v3_and_below
                    .iter()
                    .flat_map(|t| t.results_by_partition.iter().map(|p| p.partition_error_code))
                    .collect();
                if codes_.iter().all(|c| *c == codes::NONE) {
                    self.step = TxnStep::Send { left: rng.between(1, 4) as u32 };
                } else if codes_.iter().any(|c| fenced_code(*c)) {
                    self.fenced();
                }
            }
            ResponseKind::Produce(_) => {
                let Some(producer) = self.producer else { return };
                let Some((p, seq, n)) = self.sending.take() else { return };
                match produce_result(&resp) {
                    (codes::NONE, base) => {
                        ck.acked(producer, self.topic, p, seq, base);
                        self.next_seq[p as usize] = seq + n;
                        if let TxnStep::Send { left } = self.step {
                            self.step = if left <= 1 {
                                TxnStep::End { commit: rng.chance(700) }
                            } else {
                                TxnStep::Send { left: left - 1 }
                            };
                        }
                    }
                    (c, _)
                        if fenced_code(c)
                            || c == codes::OUT_OF_ORDER_SEQUENCE_NUMBER
                            || c == codes::INVALID_TXN_STATE =>
                    {
                        self.fenced()
                    }
                    _ => {}
                }
            }
            ResponseKind::EndTxn(r) => match r.error_code {
                codes::NONE | codes::INVALID_TXN_STATE => {
                    self.txns += 1;
                    self.step = TxnStep::Begin;
                }
                c if fenced_code(c) => self.fenced(),
                _ => {}
            },
            _ => {}
        }
    }
}

/// A read_committed consumer of every partition of `topic`, from its start.
#[derive(Debug)]
pub(crate) struct Reader {
    pub(crate) topic: &'static str,
    positions: Vec<i64>,
    /// Records given to the application.
    pub(crate) delivered: u64,
}

impl Reader {
    /// A reader at the start of every partition.
    pub(crate) fn new(topic: &'static str, partitions: i32) -> Self {
        Reader { topic, positions: vec![0; partitions as usize], delivered: 0 }
    }
}

impl SimClient for Reader {
    fn name(&self) -> String {
        format!("reader-{}", self.topic)
    }

    fn next(&mut self, _now: i64, rng: &mut Rng) -> Option<Request> {
        let partitions = self
            .positions
            .iter()
            .enumerate()
            .map(|(p, at)| {
                FetchPartition::default()
                    .with_partition(p as i32)
                    .with_fetch_offset(*at)
                    .with_partition_max_bytes(64 << 10)
                    .with_current_leader_epoch(-1)
                    .with_log_start_offset(-1)
            })
            .collect();
        let req = FetchRequest::default()
            // A long poll half the time: the core holds it until data or its deadline.
            .with_max_wait_ms(if rng.chance(500) { rng.between(10, 250) as i32 } else { 0 })
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_isolation_level(1)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default().with_topic(name(self.topic)).with_partitions(partitions)]);
        Some((ApiKey::Fetch, 12, RequestKind::Fetch(req)))
    }

    fn answer(&mut self, resp: ResponseKind, _core: &ClusterCore, ck: &mut Checker, _rng: &mut Rng) {
        let ResponseKind::Fetch(r) = resp else { return };
        for pd in r.responses.iter().flat_map(|t| t.partitions.iter()) {
            let p = pd.partition_index;
            let Some(pos) = self.positions.get_mut(p as usize) else { continue };
            if pd.error_code == codes::OFFSET_OUT_OF_RANGE {
                *pos = 0;
                continue;
            }
            let Some(bytes) = &pd.records else { continue };
            // Kafka's client rule: an aborted transaction's producer is skipped from its first
            // offset until its abort marker.
            let mut aborted: Vec<(i64, i64)> =
                pd.aborted_transactions.iter().flatten().map(|a| (a.first_offset, a.producer_id.0)).collect();
            aborted.sort_unstable();
            let mut skipping: Vec<i64> = Vec::new();
            for (at, h) in batch::iter_batches(bytes) {
                let whole = &bytes[at..at + h.total_len()];
                while let Some((first, pid)) = aborted.first().copied() {
                    if first > h.last_offset() {
                        break;
                    }
                    skipping.push(pid);
                    aborted.remove(0);
                }
                if h.last_offset() >= *pos {
                    if h.is_control() {
                        skipping.retain(|pid| {
                            *pid != h.producer_id() || batch::control_type(whole) != Some(batch::ControlType::Abort)
                        });
                    } else if !(h.is_transactional() && skipping.contains(&h.producer_id())) {
                        let start = *pos;
                        let _ = records::for_each_record(whole, records::MAX_DECOMPRESSED_BYTES, |rec| {
                            if rec.offset >= start {
                                self.delivered += 1;
                                if h.is_transactional() {
                                    ck.delivered(self.topic, p, rec.offset, h.producer_id());
                                }
                            }
                            true
                        });
                    }
                    *pos = h.last_offset() + 1;
                }
            }
        }
    }
}

/// A consumer committing ever larger offsets of `topic` for group `group` (outside any
/// generation, as a consumer that assigns itself partitions does).
#[derive(Debug)]
pub(crate) struct Committer {
    pub(crate) group: &'static str,
    pub(crate) topic: &'static str,
    next: Vec<i64>,
    sending: Option<(i32, i64)>,
}

impl Committer {
    /// A committer that has committed nothing.
    pub(crate) fn new(group: &'static str, topic: &'static str, partitions: i32) -> Self {
        Committer { group, topic, next: vec![0; partitions as usize], sending: None }
    }
}

impl SimClient for Committer {
    fn name(&self) -> String {
        format!("committer-{}", self.group)
    }

    fn next(&mut self, _now: i64, rng: &mut Rng) -> Option<Request> {
        let p = rng.below(self.next.len() as u64) as i32;
        let offset = self.next[p as usize] + rng.between(1, 5);
        self.sending = Some((p, offset));
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.group.to_string())))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::from_static_str(""))
            .with_topics(vec![OffsetCommitRequestTopic::default().with_name(name(self.topic)).with_partitions(vec![
                OffsetCommitRequestPartition::default()
                    .with_partition_index(p)
                    .with_committed_offset(offset)
                    .with_committed_leader_epoch(-1),
            ])]);
        Some((ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(req)))
    }

    fn answer(&mut self, resp: ResponseKind, _core: &ClusterCore, ck: &mut Checker, _rng: &mut Rng) {
        let ResponseKind::OffsetCommit(r) = resp else { return };
        let Some((p, offset)) = self.sending.take() else { return };
        let ok = r.topics.iter().flat_map(|t| &t.partitions).all(|x| x.error_code == codes::NONE);
        if ok {
            ck.committed(self.group, self.topic, p, offset);
            self.next[p as usize] = offset;
        }
    }
}
