//! Transaction state records in the internal compacted `__transaction_state` topic.
//!
//! Key: `int16 version(0), string transactional_id`. Value (Kafka's v0 layout, then two fields
//! of ours): `int16 version(0), int64 producer_id, int16 producer_epoch, int32 timeout_ms,
//! int8 state, [string topic, [int32 partition]], int64 last_update_ms, int64 start_ms,
//! int64 last_producer_id, int16 last_producer_epoch`. The last record of a key is its state.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::state::{TxnMeta, TxnState};
use crate::log::internal::{get_str, put_str};

/// Key and value of `meta`'s record.
pub(crate) fn encode(meta: &TxnMeta) -> (Bytes, Option<Bytes>) {
    let mut key = BytesMut::with_capacity(4 + meta.id.len());
    key.put_i16(0);
    put_str(&mut key, &meta.id);
    let mut v = BytesMut::with_capacity(64);
    v.put_i16(0);
    v.put_i64(meta.producer_id);
    v.put_i16(meta.epoch);
    v.put_i32(meta.timeout_ms);
    v.put_i8(meta.state.id());
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (t, p) in &meta.partitions {
        match topics.last_mut() {
            Some((last, parts)) if *last == t.as_str() => parts.push(*p),
            _ => topics.push((t.as_str(), vec![*p])),
        }
    }
    v.put_i32(topics.len() as i32);
    for (t, parts) in topics {
        put_str(&mut v, t);
        v.put_i32(parts.len() as i32);
        for p in parts {
            v.put_i32(p);
        }
    }
    v.put_i64(meta.update_ms);
    v.put_i64(meta.start_ms);
    v.put_i64(meta.last_producer_id);
    v.put_i16(meta.last_epoch);
    (key.freeze(), Some(v.freeze()))
}

/// Decodes one record; `None` if unreadable (logged by the caller).
pub(crate) fn decode(key: Option<&Bytes>, value: Option<&Bytes>) -> Option<TxnMeta> {
    let mut k = key?.clone();
    if k.remaining() < 2 || k.get_i16() != 0 {
        return None;
    }
    let id = get_str(&mut k)?;
    let mut v = value?.clone();
    if v.remaining() < 2 + 8 + 2 + 4 + 1 + 4 || v.get_i16() != 0 {
        return None;
    }
    let producer_id = v.get_i64();
    let epoch = v.get_i16();
    let timeout_ms = v.get_i32();
    let state = TxnState::from_id(v.get_i8())?;
    let topics = v.get_i32();
    let mut partitions = std::collections::BTreeSet::new();
    for _ in 0..topics.max(0) {
        let t = get_str(&mut v)?;
        if v.remaining() < 4 {
            return None;
        }
        let n = v.get_i32();
        if n < 0 || v.remaining() < n as usize * 4 {
            return None;
        }
        for _ in 0..n {
            partitions.insert((t.clone(), v.get_i32()));
        }
    }
    if v.remaining() < 8 + 8 + 8 + 2 {
        return None;
    }
    let update_ms = v.get_i64();
    let start_ms = v.get_i64();
    let last_producer_id = v.get_i64();
    let last_epoch = v.get_i16();
    Some(TxnMeta {
        id,
        producer_id,
        last_producer_id,
        epoch,
        last_epoch,
        timeout_ms,
        state,
        partitions,
        start_ms,
        update_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_round_trip_transaction_metadata() {
        let meta = TxnMeta {
            id: "copier".into(),
            producer_id: 7,
            last_producer_id: -1,
            epoch: 3,
            last_epoch: 2,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [("a".to_string(), 0), ("a".to_string(), 2), ("b".to_string(), 1)].into_iter().collect(),
            start_ms: 10,
            update_ms: 11,
        };
        let (k, v) = encode(&meta);
        assert_eq!(decode(Some(&k), v.as_ref()), Some(meta));
    }

    #[test]
    fn should_refuse_truncated_or_foreign_records() {
        let meta = TxnMeta {
            id: "x".into(),
            producer_id: 1,
            last_producer_id: -1,
            epoch: 0,
            last_epoch: -1,
            timeout_ms: 1,
            state: TxnState::Empty,
            partitions: Default::default(),
            start_ms: -1,
            update_ms: 0,
        };
        let (k, v) = encode(&meta);
        let v = v.unwrap();
        for cut in 0..v.len() {
            assert!(decode(Some(&k), Some(&v.slice(..cut))).is_none(), "cut at {cut}");
        }
        assert!(decode(Some(&Bytes::from_static(&[0, 9])), Some(&v)).is_none());
    }
}
