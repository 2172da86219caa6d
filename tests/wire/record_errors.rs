//! Per-record errors (KIP-467): a batch refused for some of its records names each of them.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use moldau_tests::{admin, init_logging, must_start_cluster};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;

use crate::raw::{call, connect};

const INVALID_RECORD: i16 = 87;

/// One batch of plain records, (key, timestamp) each, with values `v<i>`.
fn encode_batch(records: &[(Option<Bytes>, i64)], compression: Compression) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, ts))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: *ts,
            key: key.clone(),
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, records.iter(), &RecordEncodeOptions { version: 2, compression }).unwrap();
    buf.freeze()
}

fn key(i: usize) -> Option<Bytes> {
    Some(Bytes::from(format!("k{i}")))
}

/// One batch whose records have a key unless their index is in `keyless`.
fn batch(n: usize, keyless: &[usize]) -> Bytes {
    let records: Vec<_> = (0..n).map(|i| ((!keyless.contains(&i)).then(|| key(i)).flatten(), 1)).collect();
    encode_batch(&records, Compression::None)
}

fn produce_v8(conn: &mut std::net::TcpStream, topic: &str, records: Bytes) -> ProduceResponse {
    let req =
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(records))])]);
    call(conn, ApiKey::Produce, 8, &req)
}

/// Keyless records on a compacted topic: the batch is refused with INVALID_RECORD, the
/// response lists exactly the keyless records' indexes, each with a message, and a top-level
/// message; nothing of the batch is written, and a good batch after it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_name_each_keyless_record_of_a_refused_batch_on_a_compacted_topic() {
    init_logging();
    let cluster = must_start_cluster(1);
    let admin = admin(cluster.bootstrap_servers());
    let topic = NewTopic::new("compacted", 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    assert!(admin.create_topics([&topic], &opts).await.unwrap()[0].is_ok());
    let mut conn = connect(&cluster);
    let r = produce_v8(&mut conn, "compacted", batch(5, &[1, 3]));
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, INVALID_RECORD);
    let indexes: Vec<i32> = p.record_errors.iter().map(|e| e.batch_index).collect();
    assert_eq!(indexes, vec![1, 3], "each keyless record is named: {:?}", p.record_errors);
    for e in &p.record_errors {
        let msg = e.batch_index_error_message.as_ref().map(|m| m.to_string()).unwrap_or_default();
        assert!(msg.contains("key"), "record {} says why: {msg:?}", e.batch_index);
    }
    let top = p.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default();
    assert!(top.contains("2 record"), "the top-level message counts the refused records: {top:?}");
    let ok = produce_v8(&mut conn, "compacted", batch(2, &[]));
    let p = &ok.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0), "nothing of the refused batch was written");
    // A real client sees the refusal as INVALID_RECORD on the delivery.
    let producer: FutureProducer = moldau_tests::client_config(cluster.bootstrap_servers()).create().unwrap();
    let err = producer
        .send(FutureRecord::<(), _>::to("compacted").payload("no key"), Duration::from_secs(10))
        .await
        .expect_err("a keyless record is refused");
    assert!(format!("{:?}", err.0).contains("InvalidRecord"), "{err:?}");
    drop((producer, admin));
    cluster.shutdown();
}

/// One lz4 batch of keyed records with the given timestamps.
fn batch_at(timestamps: &[i64]) -> Bytes {
    let records: Vec<_> = timestamps.iter().enumerate().map(|(i, ts)| (key(i), *ts)).collect();
    encode_batch(&records, Compression::Lz4)
}

const INVALID_TIMESTAMP: i16 = 32;

/// `message.timestamp.before.max.ms` / `after.max.ms` (and the deprecated
/// `difference.max.ms`, which stands for both when they are not set) bound CreateTime
/// timestamps: a batch holding records outside them is refused with INVALID_TIMESTAMP and
/// record errors naming those records (compressed batches too); timestamps inside pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_refuse_records_whose_timestamps_are_out_of_the_topics_bounds() {
    init_logging();
    let cluster = must_start_cluster(1);
    let admin = admin(cluster.bootstrap_servers());
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let hour = 3_600_000i64;
    let bounded = NewTopic::new("bounded", 1, TopicReplication::Fixed(1))
        .set("message.timestamp.before.max.ms", "3600000")
        .set("message.timestamp.after.max.ms", "60000");
    let legacy = NewTopic::new("legacy-bounded", 1, TopicReplication::Fixed(1))
        .set("message.timestamp.difference.max.ms", "3600000");
    for r in admin.create_topics([&bounded, &legacy], &opts).await.unwrap() {
        assert!(r.is_ok(), "{r:?}");
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut conn = connect(&cluster);
    let r = produce_v8(&mut conn, "bounded", batch_at(&[now, now - 2 * hour, now + 10_000, now + hour]));
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, INVALID_TIMESTAMP);
    let indexes: Vec<i32> = p.record_errors.iter().map(|e| e.batch_index).collect();
    assert_eq!(indexes, vec![1, 3], "too old and too far ahead: {:?}", p.record_errors);
    let ok = produce_v8(&mut conn, "bounded", batch_at(&[now, now - hour / 2, now + 10_000]));
    assert_eq!(ok.responses[0].partition_responses[0].error_code, 0, "timestamps inside the bounds pass");
    let r = produce_v8(&mut conn, "legacy-bounded", batch_at(&[now + 2 * hour, now]));
    let p = &r.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.record_errors.len()), (INVALID_TIMESTAMP, 1), "difference.max.ms bounds both sides");
    drop(admin);
    cluster.shutdown();
}
