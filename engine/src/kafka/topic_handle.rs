//! Producing through librdkafka topic handles.
//!
//! rdkafka's `BaseProducer::send` names the topic of each record: it allocates a C string and
//! librdkafka then looks the topic up under the client's write lock, once per record. At two
//! sends per input record that lock was contended by librdkafka's own threads (most under
//! exactly-once, whose transaction manager takes it too), and the stream thread slept on it.
//! A stream thread sends to a handful of topics, so it keeps one handle per topic and produces
//! with it, taking no lock.

use std::ffi::{c_void, CString};
use std::ptr::{null_mut, NonNull};

use rdkafka::bindings as rdsys;
use rdkafka::bindings::rd_kafka_vtype_t::{
    RD_KAFKA_VTYPE_END, RD_KAFKA_VTYPE_KEY, RD_KAFKA_VTYPE_MSGFLAGS, RD_KAFKA_VTYPE_OPAQUE, RD_KAFKA_VTYPE_PARTITION,
    RD_KAFKA_VTYPE_RKT, RD_KAFKA_VTYPE_TIMESTAMP, RD_KAFKA_VTYPE_VALUE,
};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rustc_hash::FxHashMap;

use super::producer::DeliveryContext;
use crate::runtime::io::Produce;

/// librdkafka's `RD_KAFKA_PARTITION_UA`: the partitioner picks the partition.
const PARTITION_UNASSIGNED: i32 = -1;

/// One application reference to a librdkafka topic, released on drop.
struct TopicHandle(NonNull<rdsys::rd_kafka_topic_t>);

// SAFETY: librdkafka's topic handles may be released from any thread.
unsafe impl Send for TopicHandle {}

impl Drop for TopicHandle {
    fn drop(&mut self) {
        // SAFETY: the handle came from `rd_kafka_topic_new` and is released once, before its
        // client (see `TopicHandles`).
        unsafe { rdsys::rd_kafka_topic_destroy(self.0.as_ptr()) };
    }
}

/// The topic handles of one producer, by topic name. They must be dropped before the
/// producer's client is destroyed: the owner drops them first.
#[derive(Default)]
pub(crate) struct TopicHandles {
    by_name: FxHashMap<String, TopicHandle>,
}

impl std::fmt::Debug for TopicHandles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicHandles").field("topics", &self.by_name.len()).finish()
    }
}

impl TopicHandles {
    /// Produces `record` (the bytes copied) with `producer`; returns librdkafka's error code
    /// when it was not queued, such as `QueueFull`.
    pub(crate) fn produce(
        &mut self,
        producer: &BaseProducer<DeliveryContext>,
        record: &Produce<'_>,
    ) -> Result<(), RDKafkaErrorCode> {
        let client = producer.client().native_ptr();
        let rkt = match self.by_name.get(record.topic) {
            Some(h) => h.0.as_ptr(),
            None => {
                let name = CString::new(record.topic).map_err(|_| RDKafkaErrorCode::InvalidArgument)?;
                // SAFETY: `client` is alive (borrowed through `producer`); a null topic
                // configuration takes the client's default.
                let rkt = unsafe { rdsys::rd_kafka_topic_new(client, name.as_ptr(), null_mut()) };
                let Some(rkt) = NonNull::new(rkt) else {
                    // SAFETY: reads the calling thread's last librdkafka error.
                    return Err(RDKafkaErrorCode::from(unsafe { rdsys::rd_kafka_last_error() }));
                };
                self.by_name.insert(record.topic.to_string(), TopicHandle(rkt));
                rkt.as_ptr()
            }
        };
        let (value, value_len) = bytes(record.value);
        let (key, key_len) = bytes(record.key);
        // SAFETY: the arguments follow `rd_kafka_producev`'s (type, value...) pairs, ended by
        // END; with MSG_F_COPY librdkafka copies key and value before returning; the opaque
        // is a plain integer that the delivery report hands back.
        let err = unsafe {
            rdsys::rd_kafka_producev(
                client,
                RD_KAFKA_VTYPE_RKT,
                rkt,
                RD_KAFKA_VTYPE_PARTITION,
                record.partition.unwrap_or(PARTITION_UNASSIGNED),
                RD_KAFKA_VTYPE_MSGFLAGS,
                rdsys::RD_KAFKA_MSG_F_COPY,
                RD_KAFKA_VTYPE_VALUE,
                value,
                value_len,
                RD_KAFKA_VTYPE_KEY,
                key,
                key_len,
                RD_KAFKA_VTYPE_OPAQUE,
                record.opaque as *mut c_void,
                RD_KAFKA_VTYPE_TIMESTAMP,
                record.timestamp.max(0),
                RD_KAFKA_VTYPE_END,
            )
        };
        match RDKafkaErrorCode::from(err) {
            RDKafkaErrorCode::NoError => Ok(()),
            code => Err(code),
        }
    }

    /// Releases every handle.
    pub(crate) fn clear(&mut self) {
        self.by_name.clear();
    }
}

fn bytes(b: Option<&[u8]>) -> (*mut c_void, usize) {
    b.map_or((null_mut(), 0), |b| (b.as_ptr().cast_mut().cast(), b.len()))
}
