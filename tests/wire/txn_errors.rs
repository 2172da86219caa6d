//! The idempotence and transaction error codes clients rely on, checked request by request on
//! the wire (a raw kafka-protocol client against a one-broker cluster, so that broker
//! coordinates every group and transactional id).

use std::net::TcpStream;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use moldau_broker_sim::Cluster;
use moldau_tests::{init_logging, must_create_topic};

use crate::raw::{self, record_batch};

/// A blocking raw client on one connection.
struct Raw(TcpStream);

impl Raw {
    fn connect(cluster: &Cluster) -> Self {
        Raw(raw::connect(cluster))
    }

    fn call<Rq: Encodable, Rs: Decodable>(&mut self, key: ApiKey, version: i16, req: &Rq) -> Rs {
        raw::call(&mut self.0, key, version, req)
    }

    fn init(&mut self, version: i16, txn: Option<&str>, timeout_ms: i32, expected: (i64, i16)) -> (i16, i64, i16) {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(txn.map(|t| TransactionalId(StrBytes::from_string(t.into()))))
            .with_transaction_timeout_ms(timeout_ms)
            .with_producer_id(ProducerId(expected.0))
            .with_producer_epoch(expected.1);
        let r: InitProducerIdResponse = self.call(ApiKey::InitProducerId, version, &req);
        (r.error_code, r.producer_id.0, r.producer_epoch)
    }

    /// AddPartitionsToTxn: (topic, partition, error) per partition.
    fn add_partitions(
        &mut self,
        version: i16,
        txn: &str,
        pid: i64,
        epoch: i16,
        parts: &[(&str, i32)],
    ) -> Vec<(String, i32, i16)> {
        let topics = parts
            .iter()
            .map(|(t, p)| {
                AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_string(t.to_string())))
                    .with_partitions(vec![*p])
            })
            .collect();
        let req = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_string(txn.into())))
            .with_v3_and_below_producer_id(ProducerId(pid))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(topics);
        let r: AddPartitionsToTxnResponse = self.call(ApiKey::AddPartitionsToTxn, version, &req);
        r.results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| {
                t.results_by_partition.iter().map(|p| (t.name.to_string(), p.partition_index, p.partition_error_code))
            })
            .collect()
    }

    fn end(&mut self, version: i16, txn: &str, pid: i64, epoch: i16, commit: bool) -> i16 {
        let req = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(txn.into())))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_committed(commit);
        let r: EndTxnResponse = self.call(ApiKey::EndTxn, version, &req);
        r.error_code
    }

    /// Produce v7 of one batch to `topic`-0 with acks=all: (error, base offset).
    fn produce(&mut self, topic: &str, records: Vec<u8>) -> (i16, i64) {
        raw::produce(&mut self.0, topic, -1, records)
    }

    /// ListOffsets latest of `topic`-0 with the isolation level.
    fn latest(&mut self, topic: &str, isolation: i8) -> i64 {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(isolation)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1)])]);
        let r: ListOffsetsResponse = self.call(ApiKey::ListOffsets, 5, &req);
        r.topics[0].partitions[0].offset
    }

    /// OffsetFetch v7 of `topic`-0 for `group`: (partition error, offset).
    fn committed(&mut self, group: &str, topic: &str, require_stable: bool) -> (i16, i64) {
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_require_stable(require_stable)
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partition_indexes(vec![0])]));
        let r: OffsetFetchResponse = self.call(ApiKey::OffsetFetch, 7, &req);
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.committed_offset)
    }
}

/// One batch of `n` records from producer `(pid, epoch)` starting at sequence `seq`.
fn batch(n: usize, pid: i64, epoch: i16, seq: i32, transactional: bool) -> Vec<u8> {
    record_batch(n, 1, Some((pid, epoch, seq, transactional)))
}

const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
const CONCURRENT_TRANSACTIONS: i16 = 51;
const OPERATION_NOT_ATTEMPTED: i16 = 55;
const UNSTABLE_OFFSET_COMMIT: i16 = 88;
const PRODUCER_FENCED: i16 = 90;

async fn cluster_with_topic() -> Cluster {
    init_logging();
    let cluster = moldau_tests::cluster_builder().start().unwrap();
    must_create_topic(cluster.bootstrap_servers(), "t", 1, 1).await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_deduplicate_retries_and_refuse_bad_sequences_and_epochs() {
    let cluster = cluster_with_topic().await;
    let mut c = Raw::connect(&cluster);
    let (err, pid, epoch) = c.init(4, None, 0, (-1, -1));
    assert_eq!((err, epoch), (0, 0));
    assert_eq!(c.produce("t", batch(3, pid, 0, 0, false)), (0, 0));
    assert_eq!(c.produce("t", batch(2, pid, 0, 3, false)), (0, 3));
    assert_eq!(c.produce("t", batch(3, pid, 0, 0, false)), (0, 0), "a retry gets its original offset");
    assert_eq!(c.latest("t", 0), 5, "and is not appended again");
    assert_eq!(c.produce("t", batch(1, pid, 0, 9, false)).0, OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert_eq!(c.produce("t", batch(1, pid, 1, 4, false)).0, OUT_OF_ORDER_SEQUENCE_NUMBER, "new epoch starts at 0");
    assert_eq!(c.produce("t", batch(1, pid, 1, 0, false)), (0, 5));
    assert_eq!(c.produce("t", batch(1, pid, 0, 5, false)).0, INVALID_PRODUCER_EPOCH);
    cluster.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_answer_transaction_errors_with_the_codes_of_each_request_version() {
    let cluster = cluster_with_topic().await;
    let mut c = Raw::connect(&cluster);
    assert_eq!(c.init(4, Some("x"), 1_000_000_000, (-1, -1)).0, INVALID_TRANSACTION_TIMEOUT);
    let (err, pid, e) = c.init(4, Some("x"), 60_000, (-1, -1));
    assert_eq!(err, 0);
    assert_eq!(c.end(1, "x", pid, e, true), INVALID_TXN_STATE, "nothing to commit");
    // A stale epoch: INVALID_PRODUCER_EPOCH before v2, PRODUCER_FENCED from v2.
    assert_eq!(c.add_partitions(1, "x", pid, e + 1, &[("t", 0)])[0].2, INVALID_PRODUCER_EPOCH);
    assert_eq!(c.add_partitions(2, "x", pid, e + 1, &[("t", 0)])[0].2, PRODUCER_FENCED);
    assert_eq!(c.end(1, "x", pid, e + 1, true), INVALID_PRODUCER_EPOCH);
    assert_eq!(c.end(2, "x", pid, e + 1, true), PRODUCER_FENCED);
    assert_eq!(c.add_partitions(0, "x", pid + 1, e, &[("t", 0)])[0].2, INVALID_PRODUCER_ID_MAPPING);
    // One unknown partition: the others are not attempted.
    let r = c.add_partitions(0, "x", pid, e, &[("t", 0), ("missing", 0)]);
    assert_eq!(r, vec![("t".into(), 0, OPERATION_NOT_ATTEMPTED), ("missing".into(), 0, 3)]);
    // A transactional batch before its partition is added is refused.
    assert_eq!(c.produce("t", batch(1, pid, e, 0, true)).0, INVALID_TXN_STATE);
    assert_eq!(c.add_partitions(0, "x", pid, e, &[("t", 0)])[0].2, 0);
    assert_eq!(c.produce("t", batch(2, pid, e, 0, true)), (0, 0));
    assert_eq!((c.latest("t", 1), c.latest("t", 0)), (0, 2), "read_committed latest is the LSO");
    assert_eq!(c.produce("t", batch(1, pid, e, 2, false)).0, INVALID_TXN_STATE, "no plain batch inside a transaction");
    // KIP-360 with a producer id that is not the current one: fenced by version.
    assert_eq!(c.init(3, Some("x"), 60_000, (pid + 7, 0)).0, INVALID_PRODUCER_EPOCH);
    assert_eq!(c.init(4, Some("x"), 60_000, (pid + 7, 0)).0, PRODUCER_FENCED);
    // A new producer aborts the open transaction first.
    assert_eq!(c.init(4, Some("x"), 60_000, (-1, -1)).0, CONCURRENT_TRANSACTIONS);
    assert_eq!(c.latest("t", 1), 3, "the abort marker at 2 released the LSO");
    let (err, pid2, e2) = c.init(4, Some("x"), 60_000, (-1, -1));
    assert_eq!((err, pid2), (0, pid));
    assert!(e2 > e + 1);
    assert_eq!(c.end(2, "x", pid, e, false), PRODUCER_FENCED, "the old producer is fenced");
    cluster.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_answer_unstable_offset_commit_until_the_transaction_commits() {
    let cluster = cluster_with_topic().await;
    let mut c = Raw::connect(&cluster);
    let (_, pid, e) = c.init(4, Some("o"), 60_000, (-1, -1));
    let add = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_static_str("o")))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(e)
        .with_group_id(GroupId(StrBytes::from_static_str("g")));
    let r: AddOffsetsToTxnResponse = c.call(ApiKey::AddOffsetsToTxn, 0, &add);
    assert_eq!(r.error_code, 0);
    let commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_static_str("o")))
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(e)
        .with_generation_id(-1)
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(5)])]);
    let r: TxnOffsetCommitResponse = c.call(ApiKey::TxnOffsetCommit, 3, &commit);
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    assert_eq!(c.committed("g", "t", true), (UNSTABLE_OFFSET_COMMIT, -1));
    assert_eq!(c.committed("g", "t", false), (0, -1), "not committed before the marker");
    // A TxnOffsetCommit with a generation the group never had is refused (KIP-447).
    let stale: TxnOffsetCommitResponse = c.call(
        ApiKey::TxnOffsetCommit,
        3,
        &commit.clone().with_generation_id(9).with_member_id(StrBytes::from_static_str("m")),
    );
    assert_ne!(stale.topics[0].partitions[0].error_code, 0);
    assert_eq!(c.end(1, "o", pid, e, true), 0);
    assert_eq!(c.committed("g", "t", true), (0, 5));
    assert_eq!(c.end(1, "o", pid, e, true), 0, "a retried commit succeeds");
    assert_eq!(c.end(1, "o", pid, e, false), INVALID_TXN_STATE, "but cannot turn into an abort");
    cluster.shutdown();
}
