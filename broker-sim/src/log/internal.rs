//! Record batches the broker writes itself (offset commits, transaction state).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::records::Compression;

use super::batch;
use crate::error::{Error, Result};

/// Who writes an internal batch: `(producer id, epoch)` of a transactional producer, or `None`.
pub(crate) type TxnProducer = Option<(i64, i16)>;

/// Encodes `(key, value)` pairs (a `None` value is a tombstone) as one uncompressed batch.
/// With a producer the batch is transactional: it stays pending until that producer's marker.
pub(crate) fn encode(pairs: Vec<(Bytes, Option<Bytes>)>, now_ms: i64, producer: TxnProducer) -> Result<BytesMut> {
    let records = pairs.into_iter().map(|(k, v)| (k, v, now_ms));
    batch::encode(records, producer.map(|(pid, epoch)| (pid, epoch, 0, true)), Compression::None)
        .map_err(|e| Error::internal(format!("encoding an internal batch: {e}")))
}

/// Writes an `int16`-length string (Kafka's internal-topic layout), cut at `i16::MAX` bytes.
pub(crate) fn put_str(buf: &mut BytesMut, s: &str) {
    let len = s.len().min(i16::MAX as usize);
    buf.put_i16(len as i16);
    buf.put_slice(&s.as_bytes()[..len]);
}

/// Reads an `int16`-length string; `None` if short or not UTF-8.
pub(crate) fn get_str(buf: &mut Bytes) -> Option<String> {
    if buf.remaining() < 2 {
        return None;
    }
    let len = usize::try_from(buf.get_i16()).ok()?;
    if buf.remaining() < len {
        return None;
    }
    let b = buf.split_to(len);
    String::from_utf8(b.to_vec()).ok()
}
