//! Committed offsets in the internal compacted `__consumer_offsets` topic.
//!
//! Records use Kafka's layout: key `int16 version(1), string group, string topic, int32
//! partition`; value `int16 version(3), int64 offset, int32 leader_epoch, string metadata,
//! int64 commit_timestamp`; a deleted offset is a tombstone (null value). Replaying the topic
//! at start-up rebuilds every group's offsets.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::records::Record;

use super::state::OffsetEntry;
use crate::error::Result;
use crate::log::internal::{self, get_str, put_str, TxnProducer};

/// One change to a committed offset.
#[derive(Debug, Clone)]
pub(crate) struct OffsetRecord {
    /// Group id.
    pub(crate) group: String,
    /// Topic.
    pub(crate) topic: String,
    /// Partition.
    pub(crate) partition: i32,
    /// New value, or `None` to delete.
    pub(crate) value: Option<OffsetEntry>,
}

/// Encodes offset records as one record batch; transactional when `producer` is given
/// (TxnOffsetCommit: pending until the producer's marker on this partition).
pub(crate) fn encode_batch(records: &[OffsetRecord], now_ms: i64, producer: TxnProducer) -> Result<BytesMut> {
    let pairs = records
        .iter()
        .map(|r| {
            let mut key = BytesMut::new();
            key.put_i16(1);
            put_str(&mut key, &r.group);
            put_str(&mut key, &r.topic);
            key.put_i32(r.partition);
            let value = r.value.as_ref().map(|v| {
                let mut b = BytesMut::new();
                b.put_i16(3);
                b.put_i64(v.offset);
                b.put_i32(v.leader_epoch);
                put_str(&mut b, &v.metadata);
                b.put_i64(v.commit_ms);
                b.freeze()
            });
            (key.freeze(), value)
        })
        .collect();
    internal::encode(pairs, now_ms, producer)
}

/// Decodes one record of the offsets topic; `None` for records that are not offset commits
/// (group metadata) or are unreadable.
pub(crate) fn decode_record(key: Option<&Bytes>, value: Option<&Bytes>) -> Option<OffsetRecord> {
    let mut k = key?.clone();
    if k.remaining() < 2 {
        return None;
    }
    let version = k.get_i16();
    if version > 1 {
        return None;
    }
    let group = get_str(&mut k)?;
    let topic = get_str(&mut k)?;
    if k.remaining() < 4 {
        return None;
    }
    let partition = k.get_i32();
    let value = match value {
        None => None,
        Some(v) => {
            let mut v = v.clone();
            if v.remaining() < 2 + 8 {
                return None;
            }
            let vv = v.get_i16();
            let offset = v.get_i64();
            let leader_epoch = if vv >= 3 && v.remaining() >= 4 { v.get_i32() } else { -1 };
            let metadata = get_str(&mut v)?;
            let commit_ms = if v.remaining() >= 8 { v.get_i64() } else { 0 };
            Some(OffsetEntry { offset, leader_epoch, metadata, commit_ms })
        }
    };
    Some(OffsetRecord { group, topic, partition, value })
}

/// Converts a decoded log record for replay.
pub(crate) fn from_log_record(r: &Record) -> Option<OffsetRecord> {
    decode_record(r.key.as_ref(), r.value.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn should_round_trip_offsets_and_tombstones_through_a_batch() {
        let recs = vec![
            OffsetRecord {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(OffsetEntry { offset: 42, leader_epoch: 0, metadata: "meta".into(), commit_ms: 7 }),
            },
            OffsetRecord { group: "g".into(), topic: "t".into(), partition: 4, value: None },
        ];
        let buf = encode_batch(&recs, 7, None).unwrap();
        let set = RecordBatchDecoder::decode(&mut buf.freeze()).unwrap();
        let back: Vec<OffsetRecord> = set.records.iter().filter_map(from_log_record).collect();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].value.as_ref().unwrap().metadata, "meta");
        assert_eq!(back[0].value.as_ref().unwrap().offset, 42);
        assert!(back[1].value.is_none());
    }

    #[test]
    fn should_skip_unreadable_keys() {
        assert!(decode_record(Some(&Bytes::from_static(&[0, 1, 0x7f, 0xff])), None).is_none());
        assert!(decode_record(None, None).is_none());
    }
}
