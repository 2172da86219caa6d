//! The 61-byte header of a magic-2 record batch: parse, validate and patch.
//!
//! The broker stores batches exactly as clients send them. On append it checks the header
//! (length, magic, CRC-32C over attributes..end) and rewrites only the fields the CRC does not
//! cover: the base offset and the partition leader epoch. Records are never re-encoded on the
//! produce or fetch path.

/// Size of the fixed batch header, in bytes.
pub(crate) const HEADER_LEN: usize = 61;
/// Bytes before `batchLength` ends: baseOffset (8) + batchLength (4).
pub(crate) const LOG_OVERHEAD: usize = 12;

const MAGIC_POS: usize = 16;
const CRC_POS: usize = 17;
const ATTR_POS: usize = 21;
const LAST_OFFSET_DELTA_POS: usize = 23;
const BASE_TS_POS: usize = 27;
const MAX_TS_POS: usize = 35;
const PRODUCER_ID_POS: usize = 43;
const PRODUCER_EPOCH_POS: usize = 51;
const BASE_SEQ_POS: usize = 53;
const RECORDS_COUNT_POS: usize = 57;

/// Attribute bit: timestamps are log-append time.
pub(crate) const ATTR_LOG_APPEND_TIME: i16 = 0x08;
/// Attribute bit: the batch belongs to a transaction.
pub(crate) const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Attribute bit: the batch holds a control record.
pub(crate) const ATTR_CONTROL: i16 = 0x20;
/// Attribute bit: the base timestamp is the batch's delete horizon (KIP-534): once the clock
/// passes it, the log cleaner removes the batch's tombstones, or the batch if it is a marker
/// with no data of its transaction left.
pub(crate) const ATTR_DELETE_HORIZON: i16 = 0x40;

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BatchError {
    /// Fewer bytes than a header, or than the batch length claims.
    Truncated,
    /// `batchLength` is negative or too small to hold a header.
    BadLength(i32),
    /// Magic byte other than 2 (message sets v0/v1 are not supported).
    BadMagic(i8),
    /// Stored CRC does not match the computed CRC-32C.
    BadCrc {
        /// CRC in the header.
        stored: u32,
        /// CRC computed over attributes..end.
        computed: u32,
    },
    /// The record count is negative or the offsets do not fit.
    BadCount(i32),
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchError::Truncated => write!(f, "record batch is truncated"),
            BatchError::BadLength(l) => write!(f, "record batch length {l} is invalid"),
            BatchError::BadMagic(m) => write!(f, "record batch magic {m} is not supported (only 2)"),
            BatchError::BadCrc { stored, computed } => {
                write!(f, "record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")
            }
            BatchError::BadCount(c) => write!(f, "record batch count {c} is invalid"),
        }
    }
}

fn be_i16(b: &[u8], pos: usize) -> i16 {
    i16::from_be_bytes([b[pos], b[pos + 1]])
}
fn be_i32(b: &[u8], pos: usize) -> i32 {
    i32::from_be_bytes([b[pos], b[pos + 1], b[pos + 2], b[pos + 3]])
}
fn be_i64(b: &[u8], pos: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[pos..pos + 8]);
    i64::from_be_bytes(a)
}

/// A read-only view of a batch header. Construct with [`BatchHeader::parse`], which checks
/// that at least [`HEADER_LEN`] bytes are present, so the accessors never go out of bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchHeader<'a> {
    bytes: &'a [u8],
}

impl<'a> BatchHeader<'a> {
    /// Views the header at the start of `bytes` (which may hold more data).
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, BatchError> {
        if bytes.len() < HEADER_LEN {
            return Err(BatchError::Truncated);
        }
        let h = BatchHeader { bytes };
        let len = h.batch_length();
        if len < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::BadLength(len));
        }
        Ok(h)
    }

    /// First offset of the batch.
    pub(crate) fn base_offset(&self) -> i64 {
        be_i64(self.bytes, 0)
    }
    /// `batchLength`: bytes after the length field.
    pub(crate) fn batch_length(&self) -> i32 {
        be_i32(self.bytes, 8)
    }
    /// Whole batch size on the wire, header included.
    pub(crate) fn total_len(&self) -> usize {
        self.batch_length().max(0) as usize + LOG_OVERHEAD
    }
    /// Magic byte (2 for record batches).
    pub(crate) fn magic(&self) -> i8 {
        self.bytes[MAGIC_POS] as i8
    }
    /// Stored CRC-32C.
    pub(crate) fn crc(&self) -> u32 {
        be_i32(self.bytes, CRC_POS) as u32
    }
    /// Attribute bits.
    pub(crate) fn attributes(&self) -> i16 {
        be_i16(self.bytes, ATTR_POS)
    }
    /// Offset of the last record relative to the base offset.
    pub(crate) fn last_offset_delta(&self) -> i32 {
        be_i32(self.bytes, LAST_OFFSET_DELTA_POS)
    }
    /// Last offset of the batch.
    pub(crate) fn last_offset(&self) -> i64 {
        self.base_offset() + i64::from(self.last_offset_delta())
    }
    /// Timestamp of the first record.
    pub(crate) fn base_timestamp(&self) -> i64 {
        be_i64(self.bytes, BASE_TS_POS)
    }
    /// Largest timestamp in the batch.
    pub(crate) fn max_timestamp(&self) -> i64 {
        be_i64(self.bytes, MAX_TS_POS)
    }
    /// Producer id, or -1.
    pub(crate) fn producer_id(&self) -> i64 {
        be_i64(self.bytes, PRODUCER_ID_POS)
    }
    /// Producer epoch, or -1.
    pub(crate) fn producer_epoch(&self) -> i16 {
        be_i16(self.bytes, PRODUCER_EPOCH_POS)
    }
    /// First sequence number, or -1.
    pub(crate) fn base_sequence(&self) -> i32 {
        be_i32(self.bytes, BASE_SEQ_POS)
    }
    /// Number of records.
    pub(crate) fn records_count(&self) -> i32 {
        be_i32(self.bytes, RECORDS_COUNT_POS)
    }
    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub(crate) fn compression(&self) -> i16 {
        self.attributes() & 0x07
    }
    /// Whether the batch is a control batch.
    pub(crate) fn is_control(&self) -> bool {
        self.attributes() & ATTR_CONTROL != 0
    }
    /// Whether the batch is transactional.
    pub(crate) fn is_transactional(&self) -> bool {
        self.attributes() & ATTR_TRANSACTIONAL != 0
    }
    /// The delete horizon the log cleaner set (the base timestamp), if it set one.
    pub(crate) fn delete_horizon(&self) -> Option<i64> {
        (self.attributes() & ATTR_DELETE_HORIZON != 0).then(|| self.base_timestamp())
    }
}

/// Builds a batch that keeps a stored batch's identity (`header`: its first [`HEADER_LEN`]
/// bytes; base offset, leader epoch, last offset delta, producer id, epoch, base sequence and
/// the attribute bits are kept) around a new records `payload`, already compressed with the
/// codec `codec`, of `count` records. Sets the codec, the base and max timestamps, the
/// delete-horizon bit when `delete_horizon` is true, the length and the CRC.
pub(crate) fn rebuild(
    header: &[u8],
    payload: &[u8],
    count: i32,
    (base_ts, max_ts): (i64, i64),
    delete_horizon: bool,
    codec: i16,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_LEN + payload.len());
    b.extend_from_slice(&header[..HEADER_LEN]);
    b.extend_from_slice(payload);
    let len = (b.len() - LOG_OVERHEAD) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let mut attrs = (be_i16(&b, ATTR_POS) & !0x07) | (codec & 0x07);
    if delete_horizon {
        attrs |= ATTR_DELETE_HORIZON;
    }
    b[ATTR_POS..ATTR_POS + 2].copy_from_slice(&attrs.to_be_bytes());
    b[BASE_TS_POS..BASE_TS_POS + 8].copy_from_slice(&base_ts.to_be_bytes());
    b[MAX_TS_POS..MAX_TS_POS + 8].copy_from_slice(&max_ts.to_be_bytes());
    b[RECORDS_COUNT_POS..RECORDS_COUNT_POS + 4].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&b[ATTR_POS..]);
    b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Checks one complete batch (exactly `bytes.len()` long): length, magic, count and CRC.
pub(crate) fn validate(bytes: &[u8]) -> Result<BatchHeader<'_>, BatchError> {
    let h = BatchHeader::parse(bytes)?;
    if h.total_len() != bytes.len() {
        return Err(BatchError::Truncated);
    }
    if h.magic() != 2 {
        return Err(BatchError::BadMagic(h.magic()));
    }
    let count = h.records_count();
    if count < 0 || h.last_offset_delta() < 0 {
        return Err(BatchError::BadCount(count));
    }
    let computed = crc32c::crc32c(&bytes[ATTR_POS..]);
    if computed != h.crc() {
        return Err(BatchError::BadCrc { stored: h.crc(), computed });
    }
    Ok(h)
}

/// Splits a produce request's `records` into complete batches, validating each.
/// Returns the byte ranges of the batches.
pub(crate) fn split_batches(records: &[u8]) -> Result<Vec<std::ops::Range<usize>>, BatchError> {
    let mut out = Vec::with_capacity(1);
    let mut pos = 0usize;
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() < LOG_OVERHEAD {
            return Err(BatchError::Truncated);
        }
        let h = BatchHeader::parse(rest)?;
        let total = h.total_len();
        if total > rest.len() {
            return Err(BatchError::Truncated);
        }
        validate(&rest[..total])?;
        out.push(pos..pos + total);
        pos += total;
    }
    Ok(out)
}

/// Rewrites the base offset and partition leader epoch of a batch in place. Neither is covered
/// by the CRC.
pub(crate) fn patch_offset_and_epoch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Switches a batch to log-append time: sets the timestamp-type bit and the max timestamp,
/// then recomputes the CRC (both fields are covered by it).
pub(crate) fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attrs = be_i16(batch, ATTR_POS) | ATTR_LOG_APPEND_TIME;
    batch[ATTR_POS..ATTR_POS + 2].copy_from_slice(&attrs.to_be_bytes());
    batch[MAX_TS_POS..MAX_TS_POS + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTR_POS..]);
    batch[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
}

/// What a transaction marker (control record) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ControlType {
    /// The producer's open transaction on this partition is aborted.
    Abort,
    /// The producer's open transaction on this partition is committed.
    Commit,
}

/// Builds the control batch the transaction coordinator writes to end a transaction: one
/// uncompressed control record with key `(version 0, type)` and value `(version 0,
/// coordinator epoch)`, transactional and control bits set, no sequence.
pub(crate) fn control_batch(
    producer_id: i64,
    epoch: i16,
    kind: ControlType,
    coordinator_epoch: i32,
    ts: i64,
) -> Vec<u8> {
    // Record body: attributes, timestamp delta, offset delta, key length + key, value length +
    // value, header count. All varints are zig-zag; 0 -> 0x00, 4 -> 0x08, 6 -> 0x0c.
    let kind_code: u8 = match kind {
        ControlType::Abort => 0,
        ControlType::Commit => 1,
    };
    let ce = coordinator_epoch.to_be_bytes();
    let body: [u8; 16] = [0, 0, 0, 0x08, 0, 0, 0, kind_code, 0x0c, 0, 0, ce[0], ce[1], ce[2], ce[3], 0];
    let mut b = Vec::with_capacity(HEADER_LEN + 1 + body.len());
    b.extend_from_slice(&0i64.to_be_bytes()); // base offset, patched on append
    b.extend_from_slice(&((HEADER_LEN - LOG_OVERHEAD + 1 + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch, patched on append
    b.push(2); // magic
    b.extend_from_slice(&[0; 4]); // crc, below
    b.extend_from_slice(&(ATTR_TRANSACTIONAL | ATTR_CONTROL).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    b.extend_from_slice(&ts.to_be_bytes());
    b.extend_from_slice(&ts.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&epoch.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&1i32.to_be_bytes()); // record count
    b.push((body.len() as u8) << 1); // record length (zig-zag varint)
    b.extend_from_slice(&body);
    let crc = crc32c::crc32c(&b[ATTR_POS..]);
    b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Reads the marker type of a stored control batch; `None` if it is not a readable marker.
pub(crate) fn control_type(batch: &[u8]) -> Option<ControlType> {
    let mut kind = None;
    let _ = super::records::for_each_record(batch, super::records::MAX_DECOMPRESSED_BYTES, |r| {
        kind = match r.key {
            Some(k) if k.len() >= 4 => match i16::from_be_bytes([k[2], k[3]]) {
                0 => Some(ControlType::Abort),
                1 => Some(ControlType::Commit),
                _ => None,
            },
            _ => None,
        };
        false
    });
    kind
}

/// Iterates over the complete batches at the start of `bytes`, stopping at the first
/// incomplete or malformed one. Yields `(position, header)`.
pub(crate) fn iter_batches(bytes: &[u8]) -> impl Iterator<Item = (usize, BatchHeader<'_>)> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let rest = bytes.get(pos..)?;
        let h = BatchHeader::parse(rest).ok()?;
        let total = h.total_len();
        if total > rest.len() {
            return None;
        }
        let at = pos;
        pos += total;
        Some((at, h))
    })
}

/// Who writes a batch built by [`encode`]: producer id, epoch, first sequence, and whether
/// the batch is transactional.
pub(crate) type Writer = (i64, i16, i32, bool);

/// Encodes keyed records `(key, value, timestamp)` (a `None` value is a tombstone) as one
/// magic-2 batch from `writer` (`None`: no producer id), with `compression`.
pub(crate) fn encode(
    records: impl IntoIterator<Item = (bytes::Bytes, Option<bytes::Bytes>, i64)>,
    writer: Option<Writer>,
    compression: kafka_protocol::records::Compression,
) -> Result<bytes::BytesMut, String> {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let (pid, epoch, seq0, transactional) = writer.unwrap_or((-1, -1, 0, false));
    let records: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(i, (key, value, timestamp))| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever offset - sequence changes.
            sequence: seq0.wrapping_add(i as i32),
            timestamp,
            key: Some(key),
            value,
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, records.iter(), &RecordEncodeOptions { version: 2, compression })
        .map_err(|e| e.to_string())?;
    Ok(buf)
}

/// A plain (uncompressed, non-idempotent) batch of `n` records with keys `k0..`, values of
/// `value_len` bytes and timestamps `ts0, ts0+1, ...`, for tests.
#[cfg(test)]
pub(crate) fn test_batch(n: usize, ts0: i64, value_len: usize) -> bytes::BytesMut {
    test_producer_batch(n, ts0, value_len, None)
}

/// Like [`test_batch`], from producer `(id, epoch, base sequence, transactional)` if given.
#[cfg(test)]
pub(crate) fn test_producer_batch(n: usize, ts0: i64, value_len: usize, producer: Option<Writer>) -> bytes::BytesMut {
    let records = (0..n).map(|i| {
        (bytes::Bytes::from(format!("k{i}")), Some(bytes::Bytes::from(vec![b'v'; value_len])), ts0 + i as i64)
    });
    encode(records, producer, kafka_protocol::records::Compression::None).expect("encoding a test batch")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_batch(n: usize) -> Vec<u8> {
        test_batch(n, 1_000, 2).to_vec()
    }

    #[test]
    fn should_parse_header_fields_when_batch_is_valid() {
        let b = sample_batch(3);
        let h = validate(&b).unwrap();
        assert_eq!(h.records_count(), 3);
        assert_eq!(h.last_offset_delta(), 2);
        assert_eq!(h.base_timestamp(), 1_000);
        assert_eq!(h.max_timestamp(), 1_002);
        assert_eq!(h.total_len(), b.len());
    }

    #[test]
    fn should_reject_when_crc_is_wrong() {
        let mut b = sample_batch(2);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert!(matches!(validate(&b), Err(BatchError::BadCrc { .. })));
    }

    #[test]
    fn should_reject_when_magic_is_not_two() {
        let mut b = sample_batch(1);
        b[MAGIC_POS] = 1;
        assert_eq!(validate(&b).unwrap_err(), BatchError::BadMagic(1));
    }

    #[test]
    fn should_keep_crc_valid_when_offset_and_epoch_are_patched() {
        let mut b = sample_batch(2);
        patch_offset_and_epoch(&mut b, 12345, 7);
        let h = validate(&b).unwrap();
        assert_eq!(h.base_offset(), 12345);
        assert_eq!(h.last_offset(), 12346);
    }

    #[test]
    fn should_recompute_crc_when_log_append_time_is_set() {
        let mut b = sample_batch(2);
        set_log_append_time(&mut b, 99_999);
        let h = validate(&b).unwrap();
        assert_eq!(h.max_timestamp(), 99_999);
        assert_ne!(h.attributes() & ATTR_LOG_APPEND_TIME, 0);
    }

    #[test]
    fn should_split_concatenated_batches_and_reject_truncated_tail() {
        let mut all = sample_batch(2);
        let second = sample_batch(3);
        all.extend_from_slice(&second);
        let ranges = split_batches(&all).unwrap();
        assert_eq!(ranges.len(), 2);
        all.truncate(all.len() - 5);
        assert_eq!(split_batches(&all).unwrap_err(), BatchError::Truncated);
        assert!(split_batches(&[0u8; 5]).is_err());
    }
}
