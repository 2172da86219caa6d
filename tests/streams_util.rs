//! Helpers for the streams tests: produce records, read a topic back (read_committed).

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use moldau_engine::{ProcessingGuarantee, StreamsConfig};

use crate::client_config;

/// A streams configuration for tests: state under `dir`, a 100 ms commit interval, and group
/// timings short enough that a killed member's partitions move within seconds.
pub fn streams_config(app: &str, bootstrap: &str, dir: &Path, guarantee: ProcessingGuarantee) -> StreamsConfig {
    StreamsConfig::new(app, bootstrap)
        .with_guarantee(guarantee)
        .with_state_dir(dir)
        .with_commit_interval(Duration::from_millis(100))
        .with_property("consumer.session.timeout.ms", "6000")
        .with_property("consumer.heartbeat.interval.ms", "500")
}

/// One record read back: partition, offset, key, value, timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Timestamp (ms).
    pub timestamp: i64,
    /// Headers.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Read {
    /// The key as UTF-8 (empty when null).
    pub fn key_str(&self) -> String {
        String::from_utf8_lossy(self.key.as_deref().unwrap_or_default()).into_owned()
    }

    /// The value as UTF-8 (empty when null).
    pub fn value_str(&self) -> String {
        String::from_utf8_lossy(self.value.as_deref().unwrap_or_default()).into_owned()
    }
}

/// A record to produce: key, value, timestamp (ms).
pub type Produce<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, Option<i64>);

/// Produces `(key, value, timestamp)` records to `topic` (partitioned by key with murmur2, as
/// Kafka's Java client does), idempotently, and waits for all acknowledgements.
pub fn produce(bootstrap: &str, topic: &str, records: &[Produce<'_>]) {
    let producer: BaseProducer = client_config(bootstrap)
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    for (k, v, ts) in records {
        let mut r = BaseRecord::<[u8], [u8]>::to(topic);
        if let Some(k) = k {
            r = r.key(*k);
        }
        if let Some(v) = v {
            r = r.payload(*v);
        }
        if let Some(ts) = ts {
            r = r.timestamp(*ts);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match producer.send(r) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    assert!(Instant::now() < deadline, "a record to {topic} found the queue full for 60 s");
                    producer.poll(Duration::from_millis(5));
                    r = back;
                }
                Err((e, _)) => panic!("producing to {topic}: {e}"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("every record acknowledged");
}

/// Produces string records `(key, value, timestamp ms)`.
pub fn produce_strings(bootstrap: &str, topic: &str, records: &[(&str, &str, i64)]) {
    let rs: Vec<Produce<'_>> =
        records.iter().map(|(k, v, t)| (Some(k.as_bytes()), Some(v.as_bytes()), Some(*t))).collect();
    produce(bootstrap, topic, &rs);
}

/// Reads `topic` (read_committed, every partition from the start) until `n` records arrived
/// or `timeout` passed, then reads on for `settle` to catch records beyond `n`.
pub fn read_topic(bootstrap: &str, topic: &str, n: usize, timeout: Duration, settle: Duration) -> Vec<Read> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "moldau-test-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let mut partitions = 0;
    for _ in 0..100 {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
        partitions = md.topics().first().filter(|t| t.error().is_none()).map_or(0, |t| t.partitions().len());
        if partitions > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(partitions > 0, "topic {topic} does not exist");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let start = Instant::now();
    let mut reached: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if out.len() >= n && reached.is_none() {
            reached = Some(now);
        }
        if reached.is_some_and(|r| now.duration_since(r) >= settle) || now.duration_since(start) >= timeout {
            return out;
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            out.push(Read {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                timestamp: m.timestamp().to_millis().unwrap_or(-1),
                headers: m
                    .headers()
                    .map(|h| h.iter().map(|x| (x.key.to_string(), x.value.map(<[u8]>::to_vec))).collect())
                    .unwrap_or_default(),
            });
        }
    }
}
