//! A raw kafka-protocol client for wire tests that need exact frames, codes and batches.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use moldau_broker_sim::Cluster;

/// Correlation id of every request built by [`request`].
pub const CORRELATION_ID: i32 = 7;

/// A connection to the cluster's first broker, with a 10 s read timeout.
pub fn connect(cluster: &Cluster) -> TcpStream {
    let port = cluster.brokers()[0].1;
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends raw bytes as one frame (size prefix added).
pub fn send_frame(s: &mut TcpStream, body: &[u8]) {
    let mut out = (body.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    s.write_all(&out).expect("write");
}

/// Reads one response frame; `None` when the broker closed the connection.
pub fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut size = [0u8; 4];
    s.read_exact(&mut size).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut body).ok()?;
    Some(body)
}

/// A request frame body: header (correlation id [`CORRELATION_ID`]) and `req`.
pub fn request<R: Encodable>(key: ApiKey, version: i16, req: &R) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(CORRELATION_ID)
        .with_client_id(Some(StrBytes::from_static_str("moldau-wire-test")))
        .encode(&mut buf, key.request_header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    buf.to_vec()
}

/// Sends `req` and decodes the response.
pub fn call<Rq: Encodable, Rs: Decodable>(s: &mut TcpStream, key: ApiKey, version: i16, req: &Rq) -> Rs {
    send_frame(s, &request(key, version, req));
    let mut body = Bytes::from(read_frame(s).expect("response"));
    ResponseHeader::decode(&mut body, key.response_header_version(version)).unwrap();
    Rs::decode(&mut body, version).unwrap()
}

/// Produce v7 of `records` to partition 0 of `topic`: (error code, base offset).
pub fn produce(s: &mut TcpStream, topic: &str, acks: i16, records: Vec<u8>) -> (i16, i64) {
    let req = ProduceRequest::default().with_acks(acks).with_timeout_ms(5000).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(StrBytes::from_string(topic.into()))).with_partition_data(
            vec![PartitionProduceData::default().with_index(0).with_records(Some(records.into()))],
        ),
    ]);
    let r: ProduceResponse = call(s, ApiKey::Produce, 7, &req);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// One uncompressed batch of `n` records (key `k`, `value_len` bytes of value), from producer
/// `(id, epoch, base sequence, transactional)` if given.
pub fn record_batch(n: usize, value_len: usize, producer: Option<(i64, i16, i32, bool)>) -> Vec<u8> {
    let (producer_id, producer_epoch, seq0, transactional) = producer.unwrap_or((-1, -1, 0, false));
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever offset - sequence changes.
            sequence: seq0 + i as i32,
            timestamp: 1,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from(vec![1u8; value_len])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions { version: 2, compression: Compression::None },
    )
    .unwrap();
    buf.to_vec()
}
