//! Reading the records inside a magic-2 record batch without trusting any length in it.
//!
//! Client batches are stored as sent, but a few requests need the records themselves: the
//! produce path checks that every record on a compacted topic has a key, and ListOffsets by
//! timestamp looks for the first record at or after a time. Both go through
//! [`for_each_record`], which
//! - never reserves memory from a count or length read from the batch: the record count must
//!   fit the bytes present (each record takes at least [`MIN_RECORD_LEN`] bytes), every length
//!   is checked against the bytes that remain, and records are handed out as borrowed views;
//! - decompresses into a buffer with a hard cap: producing more than the cap is an error (a
//!   decompression bomb), never a silent truncation;
//! - returns an error, never panics, whatever the bytes.
//!
//! Record layout (Kafka magic 2; varints are zigzag-encoded signed integers):
//!
//! ```text
//! length varint | attributes int8 | timestampDelta varlong | offsetDelta varint
//! keyLength varint (-1 = null) | key | valueLength varint (-1 = null) | value
//! headerCount varint | headerCount × (keyLength varint | key | valueLength varint | value)
//! ```

use std::io::Read;

use super::batch::{BatchError, BatchHeader, ATTR_LOG_APPEND_TIME, HEADER_LEN};

/// Most bytes a client batch's records may decompress to: 64 MiB. The produce path passes
/// [`client_batch_cap`], which is also bounded by [`MAX_COMPRESSION_RATIO`]; reads of the
/// broker's own log pass this constant.
pub(crate) const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

/// Largest accepted ratio of decompressed records to whole batch bytes for a client batch.
/// With it, a small request cannot make the broker inflate megabytes.
pub(crate) const MAX_COMPRESSION_RATIO: usize = 64;

/// The decompression cap for a client batch of `batch_len` bytes (header included):
/// [`MAX_COMPRESSION_RATIO`] times its size, but at most [`MAX_DECOMPRESSED_BYTES`].
pub(crate) fn client_batch_cap(batch_len: usize) -> usize {
    batch_len.saturating_mul(MAX_COMPRESSION_RATIO).min(MAX_DECOMPRESSED_BYTES)
}

/// Fewest bytes a record can take: length, attributes, timestamp delta, offset delta, key
/// length, value length and header count, one byte each.
pub(crate) const MIN_RECORD_LEN: usize = 7;

/// Fewest bytes a record header can take: key length and value length, one byte each.
const MIN_HEADER_LEN: usize = 2;

/// Largest zstd window (log2 bytes) accepted: 2^27 = 128 MiB, zstd's own default limit, which
/// covers every compression level a producer can choose. The window is reserved, not written;
/// what is written is bounded by the output cap.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// First eight bytes of a snappy-java ("xerial") framed stream, as Java producers send it.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";

/// Length of the xerial stream header: magic, version (int32) and compatible version (int32).
const XERIAL_HEADER_LEN: usize = 16;

/// A record inside a batch, borrowed from the (decompressed) records payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordView<'a> {
    /// Absolute offset: the batch base offset plus the record's offset delta.
    pub(crate) offset: i64,
    /// Timestamp: the batch base timestamp plus the record's delta, or the batch max timestamp
    /// for every record when the batch uses log-append time.
    pub(crate) timestamp: i64,
    /// Key, `None` when null.
    pub(crate) key: Option<&'a [u8]>,
    /// Value, `None` when null (a tombstone).
    pub(crate) value: Option<&'a [u8]>,
    /// Number of headers (each was checked to lie within the record).
    pub(crate) header_count: usize,
}

/// Why a batch's records could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordsError {
    /// The batch header is unusable: shorter than a header, a `batchLength` that disagrees with
    /// the bytes given, or a magic other than 2.
    Header(BatchError),
    /// The record count is negative, or larger than the records payload could hold.
    RecordCount {
        /// Count in the batch header.
        count: i32,
        /// Bytes of (decompressed) records payload.
        available: usize,
    },
    /// A record, or one of its fields, runs past the bytes available to it.
    TruncatedRecord {
        /// Position of the record in the batch, from 0.
        index: usize,
    },
    /// A varint has more bytes than its type allows (5 for varint, 10 for varlong).
    VarintOverflow {
        /// Position of the record in the batch, from 0.
        index: usize,
    },
    /// A length or count is negative where that is not allowed (only -1, null, is, and only
    /// for keys and values).
    NegativeLength {
        /// Position of the record in the batch, from 0.
        index: usize,
        /// Which field.
        field: &'static str,
        /// The value read.
        value: i32,
    },
    /// A record claims more headers than its remaining bytes could hold.
    HeaderCount {
        /// Position of the record in the batch, from 0.
        index: usize,
        /// Header count in the record.
        count: usize,
        /// Bytes left in the record after the count.
        available: usize,
    },
    /// A record's `length` disagrees with the bytes its fields span.
    RecordLength {
        /// Position of the record in the batch, from 0.
        index: usize,
        /// Length in the record.
        declared: usize,
        /// Bytes its fields took.
        actual: usize,
    },
    /// Bytes remain after the last record the header counts.
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// Decompressing would produce more than the cap.
    DecompressedTooLarge {
        /// Codec name.
        codec: &'static str,
        /// The cap, in bytes.
        limit: usize,
    },
    /// The attributes name a compression codec other than 0 to 4.
    UnknownCodec(i16),
    /// The decompressor rejected the compressed payload.
    Codec {
        /// Codec name.
        codec: &'static str,
        /// What it reported.
        message: String,
    },
}

/// Names the problem, with the record position where there is one.
impl std::fmt::Display for RecordsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordsError::Header(e) => write!(f, "{e}"),
            RecordsError::RecordCount { count, available } if *count < 0 => {
                write!(f, "record count {count} is negative ({available} bytes of records)")
            }
            RecordsError::RecordCount { count, available } => write!(
                f,
                "record count {count} is too large for {available} bytes of records \
                 (a record takes at least {MIN_RECORD_LEN} bytes)"
            ),
            RecordsError::TruncatedRecord { index } => write!(f, "record {index} is truncated"),
            RecordsError::VarintOverflow { index } => {
                write!(f, "varint overflow in record {index}: too many bytes")
            }
            RecordsError::NegativeLength { index, field, value } => {
                write!(f, "record {index} has invalid {field} {value}")
            }
            RecordsError::HeaderCount { index, count, available } => {
                write!(f, "record {index} header count {count} is too large for its remaining {available} bytes")
            }
            RecordsError::RecordLength { index, declared, actual } => {
                write!(f, "record {index} length {declared} does not match the {actual} bytes its fields span")
            }
            RecordsError::TrailingBytes { count } => {
                write!(f, "{count} bytes remain after the last record of the batch")
            }
            RecordsError::DecompressedTooLarge { codec, limit } => {
                write!(f, "{codec} records decompress to more than the limit of {limit} bytes")
            }
            RecordsError::UnknownCodec(c) => write!(f, "unknown compression codec {c}"),
            RecordsError::Codec { codec, message } => {
                write!(f, "{codec} decompression failed: {message}")
            }
        }
    }
}

/// So the error can travel as a `dyn Error`.
impl std::error::Error for RecordsError {}

/// Decodes the records of one complete, CRC-validated magic-2 batch (`batch` = whole batch
/// bytes incl. the 61-byte header), decompressing into at most `max_decompressed` bytes, and
/// calls `f` for each record in order; stops early when `f` returns false.
///
/// Records are checked one at a time, so `f` may have seen the records before a malformed
/// one when an error is returned. Uncompressed records are read in place and allocate nothing;
/// `max_decompressed` bounds only what a codec produces.
pub(crate) fn for_each_record(
    batch: &[u8],
    max_decompressed: usize,
    mut f: impl FnMut(RecordView<'_>) -> bool,
) -> Result<(), RecordsError> {
    let h = BatchHeader::parse(batch).map_err(RecordsError::Header)?;
    if h.total_len() != batch.len() {
        return Err(RecordsError::Header(BatchError::Truncated));
    }
    if h.magic() != 2 {
        return Err(RecordsError::Header(BatchError::BadMagic(h.magic())));
    }
    let payload = batch.get(HEADER_LEN..).ok_or(RecordsError::Header(BatchError::Truncated))?;
    let decompressed;
    let records: &[u8] = match h.compression() {
        0 => payload,
        codec => {
            decompressed = decompress(codec, payload, max_decompressed)?;
            &decompressed
        }
    };
    let count = h.records_count();
    let count_err = RecordsError::RecordCount { count, available: records.len() };
    let count = usize::try_from(count).map_err(|_| count_err.clone())?;
    if count > records.len() / MIN_RECORD_LEN {
        return Err(count_err);
    }
    let log_append_time = h.attributes() & ATTR_LOG_APPEND_TIME != 0;
    let mut cur = Cursor { buf: records, pos: 0, index: 0 };
    for index in 0..count {
        cur.index = index;
        let raw = read_record(&mut cur)?;
        let timestamp =
            if log_append_time { h.max_timestamp() } else { h.base_timestamp().wrapping_add(raw.timestamp_delta) };
        let view = RecordView {
            offset: h.base_offset().wrapping_add(i64::from(raw.offset_delta)),
            timestamp,
            key: raw.key,
            value: raw.value,
            header_count: raw.header_count,
        };
        if !f(view) {
            return Ok(());
        }
    }
    match cur.remaining() {
        0 => Ok(()),
        count => Err(RecordsError::TrailingBytes { count }),
    }
}

/// A record's fields before the batch header is applied.
struct RawRecord<'a> {
    /// Timestamp relative to the batch base timestamp.
    timestamp_delta: i64,
    /// Offset relative to the batch base offset.
    offset_delta: i32,
    /// Key, `None` when null.
    key: Option<&'a [u8]>,
    /// Value, `None` when null.
    value: Option<&'a [u8]>,
    /// Number of headers.
    header_count: usize,
}

/// Reads one record at the cursor, checking its length against what its fields span.
fn read_record<'a>(cur: &mut Cursor<'a>) -> Result<RawRecord<'a>, RecordsError> {
    let index = cur.index;
    let declared = cur.length("record length")?;
    let body = cur.bytes(declared)?;
    let mut b = Cursor { buf: body, pos: 0, index };
    let _attributes = b.byte()?;
    let timestamp_delta = b.varlong()?;
    let offset_delta = b.varint()?;
    let key = b.nullable_bytes("key length")?;
    let value = b.nullable_bytes("value length")?;
    let header_count = b.length("header count")?;
    if header_count > b.remaining() / MIN_HEADER_LEN {
        return Err(RecordsError::HeaderCount { index, count: header_count, available: b.remaining() });
    }
    for _ in 0..header_count {
        let key_len = b.length("header key length")?;
        b.bytes(key_len)?;
        b.nullable_bytes("header value length")?;
    }
    if b.remaining() != 0 {
        return Err(RecordsError::RecordLength { index, declared, actual: b.pos });
    }
    Ok(RawRecord { timestamp_delta, offset_delta, key, value, header_count })
}

/// A read position in a byte slice; `pos <= buf.len()` always. `index` names the record being
/// read in errors.
struct Cursor<'a> {
    /// The bytes read from.
    buf: &'a [u8],
    /// Bytes consumed so far.
    pos: usize,
    /// Position in the batch of the record being read, for errors.
    index: usize,
}

impl<'a> Cursor<'a> {
    /// Bytes not yet read.
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes, if that many remain.
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], RecordsError> {
        if n > self.remaining() {
            return Err(RecordsError::TruncatedRecord { index: self.index });
        }
        let slice = self.buf.get(self.pos..self.pos + n).unwrap_or_default();
        self.pos += n;
        Ok(slice)
    }

    /// The next byte.
    fn byte(&mut self) -> Result<u8, RecordsError> {
        let b = *self.buf.get(self.pos).ok_or(RecordsError::TruncatedRecord { index: self.index })?;
        self.pos += 1;
        Ok(b)
    }

    /// An unsigned base-128 varint of at most `max_bytes` bytes; bits past 64 are dropped.
    fn unsigned_varint(&mut self, max_bytes: u32) -> Result<u64, RecordsError> {
        let mut value = 0u64;
        for i in 0..max_bytes {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f).checked_shl(7 * i).unwrap_or(0);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordsError::VarintOverflow { index: self.index })
    }

    /// A zigzag-encoded varint (int32, at most 5 bytes).
    fn varint(&mut self) -> Result<i32, RecordsError> {
        let v = self.unsigned_varint(5)? as u32;
        Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
    }

    /// A zigzag-encoded varlong (int64, at most 10 bytes).
    fn varlong(&mut self) -> Result<i64, RecordsError> {
        let v = self.unsigned_varint(10)?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// A varint that must not be negative.
    fn length(&mut self, field: &'static str) -> Result<usize, RecordsError> {
        let value = self.varint()?;
        usize::try_from(value).map_err(|_| RecordsError::NegativeLength { index: self.index, field, value })
    }

    /// A varint length (-1 = null) followed by that many bytes.
    fn nullable_bytes(&mut self, field: &'static str) -> Result<Option<&'a [u8]>, RecordsError> {
        let value = self.varint()?;
        if value == -1 {
            return Ok(None);
        }
        let n = usize::try_from(value).map_err(|_| RecordsError::NegativeLength { index: self.index, field, value })?;
        self.bytes(n).map(Some)
    }
}

/// Name of a codec id, for errors.
fn codec_name(codec: i16) -> &'static str {
    match codec {
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        _ => "unknown",
    }
}

/// A [`RecordsError::Codec`] from any error a codec crate returns.
fn codec_err(codec: &'static str, e: impl std::fmt::Display) -> RecordsError {
    RecordsError::Codec { codec, message: e.to_string() }
}

/// Decompresses a records payload with codec `codec` (1 to 4) into at most `max` bytes.
fn decompress(codec: i16, payload: &[u8], max: usize) -> Result<Vec<u8>, RecordsError> {
    let name = codec_name(codec);
    match codec {
        1 => read_capped(name, flate2::read::GzDecoder::new(payload), max).map(|(out, _)| out),
        2 => snappy(payload, max),
        3 => {
            let decoder = lz4::Decoder::new(payload).map_err(|e| codec_err(name, e))?;
            let (out, decoder) = read_capped(name, decoder, max)?;
            // The decoder reports a cut-off frame as the end of input; `finish` tells them apart.
            let (_, done) = decoder.finish();
            done.map_err(|_| RecordsError::Codec { codec: name, message: "incomplete LZ4 frame".into() })?;
            Ok(out)
        }
        4 => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(payload).map_err(|e| codec_err(name, e))?;
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(|e| codec_err(name, e))?;
            read_capped(name, decoder, max).map(|(out, _)| out)
        }
        other => Err(RecordsError::UnknownCodec(other)),
    }
}

/// Reads `reader` to its end into a new buffer, failing once it yields more than `max` bytes.
/// Returns the reader too, for codecs that check completion afterwards.
fn read_capped<R: Read>(codec: &'static str, reader: R, max: usize) -> Result<(Vec<u8>, R), RecordsError> {
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let mut limited = reader.take(limit);
    limited.read_to_end(&mut out).map_err(|e| codec_err(codec, e))?;
    if out.len() > max {
        return Err(RecordsError::DecompressedTooLarge { codec, limit: max });
    }
    Ok((out, limited.into_inner()))
}

/// Decompresses snappy records: the xerial framing snappy-java writes (magic header, then
/// blocks each prefixed by a big-endian u32 length) or, without the magic, one raw block, as
/// snappy-java itself falls back to.
fn snappy(payload: &[u8], max: usize) -> Result<Vec<u8>, RecordsError> {
    let mut out = Vec::new();
    if !(payload.len() >= XERIAL_HEADER_LEN && payload.starts_with(XERIAL_MAGIC)) {
        snappy_block(payload, &mut out, max)?;
        return Ok(out);
    }
    let bad = |what: &str| RecordsError::Codec { codec: "snappy", message: what.to_string() };
    let mut rest = payload;
    while !rest.is_empty() {
        if rest.len() >= XERIAL_HEADER_LEN && rest.starts_with(XERIAL_MAGIC) {
            // A stream header: the first one, or one of concatenated streams (snappy-java
            // skips those too).
            rest = rest.get(XERIAL_HEADER_LEN..).unwrap_or_default();
            continue;
        }
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(|| bad("truncated xerial chunk length"))?;
        let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| bad("xerial chunk too long"))?;
        let (chunk, tail) = tail.split_at_checked(len).ok_or_else(|| bad("truncated xerial chunk"))?;
        snappy_block(chunk, &mut out, max)?;
        rest = tail;
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, checking its declared length against the cap before
/// reserving anything.
fn snappy_block(block: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), RecordsError> {
    let len = snap::raw::decompress_len(block).map_err(|e| codec_err("snappy", e))?;
    let start = out.len();
    if len > max.saturating_sub(start) {
        return Err(RecordsError::DecompressedTooLarge { codec: "snappy", limit: max });
    }
    out.resize(start + len, 0);
    let dst = out.get_mut(start..).unwrap_or_default();
    let written = snap::raw::Decoder::new().decompress(block, dst).map_err(|e| codec_err("snappy", e))?;
    out.truncate(start + written);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    use std::io::Write;

    /// A test-only global allocator that tracks, per thread, the live heap bytes and their
    /// peak, so tests can bound what one call allocates.
    mod probe {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        /// Forwards to [`System`] and counts this thread's bytes.
        pub(super) struct Probe;

        thread_local! {
            /// Live heap bytes allocated by this thread.
            static LIVE: Cell<usize> = const { Cell::new(0) };
            /// Highest [`LIVE`] since the last reset.
            static PEAK: Cell<usize> = const { Cell::new(0) };
        }

        /// Adds `n` live bytes and raises the peak.
        fn grow(n: usize) {
            let _ = LIVE.try_with(|live| {
                let now = live.get().saturating_add(n);
                live.set(now);
                let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
            });
        }

        /// Removes `n` live bytes.
        fn shrink(n: usize) {
            let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(n)));
        }

        // SAFETY: every call forwards to `System` unchanged; the counters only use
        // const-initialised thread locals, which never allocate.
        unsafe impl GlobalAlloc for Probe {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                grow(layout.size());
                unsafe { System.alloc(layout) }
            }
            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                grow(layout.size());
                unsafe { System.alloc_zeroed(layout) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                shrink(layout.size());
                unsafe { System.dealloc(ptr, layout) }
            }
            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                grow(new_size);
                shrink(layout.size());
                unsafe { System.realloc(ptr, layout, new_size) }
            }
        }

        /// The test binary's allocator.
        #[global_allocator]
        static GLOBAL: Probe = Probe;

        /// Runs `f` and returns its result with the peak of this thread's live heap bytes
        /// during the call, above the level at its start.
        pub(super) fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
            let start = LIVE.with(Cell::get);
            PEAK.with(|p| p.set(start));
            let out = f();
            let peak = PEAK.with(Cell::get);
            (out, peak.saturating_sub(start))
        }
    }

    /// Every codec a magic-2 batch can use.
    const CODECS: [Compression; 5] =
        [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    /// What a record should read back as: (offset, timestamp, key, value, header count).
    type Expected = (i64, i64, Option<Vec<u8>>, Option<Vec<u8>>, usize);

    /// A record at `offset` with `headers` headers (every other one with a null value).
    fn record(offset: i64, timestamp: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: usize) -> Record {
        let mut r = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            // The encoder starts a new batch when offset - sequence changes.
            sequence: offset as i32,
            timestamp,
            key: key.map(Bytes::copy_from_slice),
            value: value.map(Bytes::copy_from_slice),
            headers: Default::default(),
        };
        for h in 0..headers {
            let v = if h % 2 == 0 { Some(Bytes::from(format!("hv{h}"))) } else { None };
            r.headers.insert(StrBytes::from_string(format!("h{h}")), v);
        }
        r
    }

    /// Mixed records: null and empty keys and values, headers, timestamps out of order.
    fn sample_records() -> Vec<Record> {
        vec![
            record(100, 5_000, None, Some(b""), 0),
            record(101, 4_000, Some(b""), None, 1),
            record(102, 9_000, Some(b"key"), Some(b"value"), 3),
            record(103, 5_000, Some(b"k\x00\xff"), Some(&[7u8; 300]), 2),
            record(104, 6_000, None, None, 0),
        ]
    }

    /// Encodes `records` as one batch with kafka-protocol's encoder.
    fn encode(records: &[Record], compression: Compression) -> Vec<u8> {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(&mut buf, records.iter(), &RecordEncodeOptions { version: 2, compression }).unwrap();
        let h = batch::validate(&buf).unwrap();
        assert_eq!(h.total_len(), buf.len(), "the encoder made one batch");
        buf.to_vec()
    }

    /// What `records` should read back as.
    fn expected(records: &[Record]) -> Vec<Expected> {
        records
            .iter()
            .map(|r| {
                let key = r.key.as_ref().map(|k| k.to_vec());
                (r.offset, r.timestamp, key, r.value.as_ref().map(|v| v.to_vec()), r.headers.len())
            })
            .collect()
    }

    /// Reads every record of `batch` into owned tuples.
    fn read_all(batch: &[u8], cap: usize) -> Result<Vec<Expected>, RecordsError> {
        let mut out = Vec::new();
        for_each_record(batch, cap, |r| {
            out.push((r.offset, r.timestamp, r.key.map(<[u8]>::to_vec), r.value.map(<[u8]>::to_vec), r.header_count));
            true
        })?;
        Ok(out)
    }

    /// A batch with the header of `template` but `payload` as records, codec `codec` and
    /// record count `count`; length and CRC recomputed.
    fn with_payload(template: &[u8], codec: i16, count: i32, payload: &[u8]) -> Vec<u8> {
        let mut b = template[..HEADER_LEN].to_vec();
        b.extend_from_slice(payload);
        let len = (b.len() - batch::LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        let attrs = (i16::from_be_bytes([b[21], b[22]]) & !0x07) | codec;
        b[21..23].copy_from_slice(&attrs.to_be_bytes());
        b[57..61].copy_from_slice(&count.to_be_bytes());
        fix_crc(&mut b);
        b
    }

    /// Recomputes the CRC-32C over bytes 21.. and stores it at 17..21.
    fn fix_crc(b: &mut [u8]) {
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    /// Encodes `v` as a zigzag varint.
    fn zigzag(v: i64) -> Vec<u8> {
        let mut n = ((v << 1) ^ (v >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    /// A record with the given raw body, prefixed by its (correct) length.
    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = zigzag(body.len() as i64);
        out.extend_from_slice(body);
        out
    }

    /// The uncompressed records payload (no header) of `records`.
    fn uncompressed_payload(records: &[Record]) -> Vec<u8> {
        encode(records, Compression::None)[HEADER_LEN..].to_vec()
    }

    /// Gzip-compresses `data`.
    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// Compresses `data` as one LZ4 frame.
    fn lz4_frame(data: &[u8]) -> Vec<u8> {
        let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
        e.write_all(data).unwrap();
        let (out, res) = e.finish();
        res.unwrap();
        out
    }

    #[test]
    fn should_round_trip_every_field_for_every_codec() {
        let records = sample_records();
        for codec in CODECS {
            let b = encode(&records, codec);
            assert_eq!(read_all(&b, 1 << 20).unwrap(), expected(&records), "{codec:?}");
        }
    }

    #[test]
    fn should_read_many_records_across_codec_blocks() {
        // Over 32 KiB (xerial chunk size) and 64 KiB (LZ4 block size) of records.
        let records: Vec<Record> = (0..400)
            .map(|i| {
                let value = format!("value-{i}-").repeat(30);
                record(i, 1_000 + i, Some(format!("k{i}").as_bytes()), Some(value.as_bytes()), (i % 3) as usize)
            })
            .collect();
        for codec in CODECS {
            let b = encode(&records, codec);
            assert_eq!(read_all(&b, 4 << 20).unwrap(), expected(&records), "{codec:?}");
        }
    }

    #[test]
    fn should_read_raw_snappy_and_concatenated_xerial_streams() {
        let records = sample_records();
        let template = encode(&records, Compression::None);
        let plain = uncompressed_payload(&records);
        let raw = snap::raw::Encoder::new().compress_vec(&plain).unwrap();
        let b = with_payload(&template, 2, records.len() as i32, &raw);
        assert_eq!(read_all(&b, 1 << 20).unwrap(), expected(&records));

        // Two xerial streams back to back, splitting the records payload in two.
        let (first, second) = plain.split_at(plain.len() / 2);
        let mut xerial = Vec::new();
        for part in [first, second] {
            xerial.extend_from_slice(b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01");
            let block = snap::raw::Encoder::new().compress_vec(part).unwrap();
            xerial.extend_from_slice(&(block.len() as u32).to_be_bytes());
            xerial.extend_from_slice(&block);
        }
        let b = with_payload(&template, 2, records.len() as i32, &xerial);
        assert_eq!(read_all(&b, 1 << 20).unwrap(), expected(&records));
    }

    #[test]
    fn should_use_max_timestamp_for_every_record_when_log_append_time() {
        for codec in CODECS {
            let mut b = encode(&sample_records(), codec);
            batch::set_log_append_time(&mut b, 77_777);
            let got = read_all(&b, 1 << 20).unwrap();
            assert!(got.iter().all(|r| r.1 == 77_777), "{codec:?}");
            assert_eq!(got.len(), 5);
        }
    }

    #[test]
    fn should_stop_when_callback_returns_false() {
        let b = encode(&sample_records(), Compression::Zstd);
        let mut seen = Vec::new();
        for_each_record(&b, 1 << 20, |r| {
            seen.push(r.offset);
            seen.len() < 2
        })
        .unwrap();
        assert_eq!(seen, vec![100, 101]);
    }

    #[test]
    fn should_reject_when_record_count_exceeds_payload() {
        for codec in CODECS {
            let mut b = encode(&sample_records(), codec);
            b[57..61].copy_from_slice(&0x7fff_ffffi32.to_be_bytes());
            fix_crc(&mut b);
            batch::validate(&b).unwrap();
            let (res, peak) = probe::peak_during(|| for_each_record(&b, 1 << 20, |_| true));
            assert!(matches!(res, Err(RecordsError::RecordCount { count: 0x7fff_ffff, .. })), "{codec:?}: {res:?}");
            if codec == Compression::None {
                assert_eq!(peak, 0, "an uncompressed batch is read without allocating");
            } else {
                assert!(peak < 1 << 20, "{codec:?} allocated {peak} bytes");
            }
        }
    }

    #[test]
    fn should_reject_when_record_count_is_negative_or_wrong() {
        let records = sample_records();
        let template = encode(&records, Compression::None);
        let payload = uncompressed_payload(&records);
        let b = with_payload(&template, 0, -1, &payload);
        assert!(matches!(read_all(&b, 1 << 20), Err(RecordsError::RecordCount { count: -1, .. })));
        let b = with_payload(&template, 0, 4, &payload);
        let trailing = payload.len() - trailing_start(&payload, 4);
        assert_eq!(read_all(&b, 1 << 20), Err(RecordsError::TrailingBytes { count: trailing }));
        let b = with_payload(&template, 0, 6, &payload);
        assert_eq!(read_all(&b, 1 << 20), Err(RecordsError::TruncatedRecord { index: 5 }));
    }

    /// Where record `n` starts in an uncompressed payload.
    fn trailing_start(payload: &[u8], n: usize) -> usize {
        let mut cur = Cursor { buf: payload, pos: 0, index: 0 };
        for _ in 0..n {
            read_record(&mut cur).unwrap();
        }
        cur.pos
    }

    #[test]
    fn should_reject_when_header_count_exceeds_record() {
        let template = encode(&sample_records(), Compression::None);
        // attributes, ts delta 0, offset delta 0, null key, null value, 1000 headers, then 2 bytes.
        let mut body = vec![0u8, 0, 0, 1, 1];
        body.extend(zigzag(1000));
        body.extend([0, 1]);
        let b = with_payload(&template, 0, 1, &framed(&body));
        assert_eq!(read_all(&b, 1 << 20), Err(RecordsError::HeaderCount { index: 0, count: 1000, available: 2 }));
        // One header, key "a", null value: accepted.
        let mut body = vec![0u8, 0, 0, 1, 1, 2, 2, b'a', 1];
        let b = with_payload(&template, 0, 1, &framed(&body));
        assert_eq!(read_all(&b, 1 << 20).unwrap()[0].4, 1);
        // Negative header count and negative header key length.
        body[5] = 3; // zigzag -2
        let b = with_payload(&template, 0, 1, &framed(&body));
        assert!(matches!(read_all(&b, 1 << 20), Err(RecordsError::NegativeLength { field: "header count", .. })));
        body[5] = 2;
        body[6] = 1; // header key length -1
        let b = with_payload(&template, 0, 1, &framed(&body));
        assert!(matches!(read_all(&b, 1 << 20), Err(RecordsError::NegativeLength { field: "header key length", .. })));
    }

    #[test]
    fn should_reject_when_record_length_does_not_match_fields() {
        let template = encode(&sample_records(), Compression::None);
        // Valid minimal record plus one stray byte inside the declared length.
        let body = [0u8, 0, 0, 1, 1, 0, 9];
        let b = with_payload(&template, 0, 1, &framed(&body));
        assert_eq!(read_all(&b, 1 << 20), Err(RecordsError::RecordLength { index: 0, declared: 7, actual: 6 }));
        // Key length past the declared record length.
        let body = [0u8, 0, 0, 20, 1, 0, 0];
        let b = with_payload(&template, 0, 1, &framed(&body));
        assert_eq!(read_all(&b, 1 << 20), Err(RecordsError::TruncatedRecord { index: 0 }));
        // Key length -2.
        let body = [0u8, 0, 0, 3, 1, 0, 0];
        let b = with_payload(&template, 0, 1, &framed(&body));
        assert!(matches!(read_all(&b, 1 << 20), Err(RecordsError::NegativeLength { value: -2, .. })));
        // Negative record length.
        let payload = [3u8, 0, 0, 0, 1, 1, 0, 0];
        let b = with_payload(&template, 0, 1, &payload);
        assert!(matches!(read_all(&b, 1 << 20), Err(RecordsError::NegativeLength { field: "record length", .. })));
    }

    #[test]
    fn should_reject_when_varint_overflows() {
        let template = encode(&sample_records(), Compression::None);
        // Record length varint of six bytes.
        let payload = [0xffu8, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0, 0, 0];
        let b = with_payload(&template, 0, 1, &payload);
        assert_eq!(read_all(&b, 1 << 20), Err(RecordsError::VarintOverflow { index: 0 }));
        // Timestamp delta varlong of eleven bytes.
        let mut body = vec![0u8];
        body.extend([0xff; 10]);
        body.extend([0x01, 0, 1, 1, 0]);
        let b = with_payload(&template, 0, 1, &framed(&body));
        assert_eq!(read_all(&b, 1 << 20), Err(RecordsError::VarintOverflow { index: 0 }));
        // Extreme but well-formed deltas wrap instead of overflowing.
        let mut body = vec![0u8];
        body.extend(zigzag(i64::MAX));
        body.extend(zigzag(i64::from(i32::MIN)));
        body.extend([1, 1, 0]);
        let b = with_payload(&template, 0, 1, &framed(&body));
        assert_eq!(read_all(&b, 1 << 20).unwrap().len(), 1);
    }

    #[test]
    fn should_reject_unknown_codec() {
        let records = sample_records();
        let template = encode(&records, Compression::None);
        for codec in 5..8 {
            let b = with_payload(&template, codec, 5, &uncompressed_payload(&records));
            assert_eq!(read_all(&b, 1 << 20), Err(RecordsError::UnknownCodec(codec)));
        }
    }

    #[test]
    fn should_reject_bad_header() {
        let b = encode(&sample_records(), Compression::None);
        assert!(matches!(read_all(&b[..40], 1 << 20), Err(RecordsError::Header(_))));
        assert!(matches!(read_all(&b[..b.len() - 1], 1 << 20), Err(RecordsError::Header(BatchError::Truncated))));
        let mut m = b.clone();
        m[16] = 1;
        assert_eq!(read_all(&m, 1 << 20), Err(RecordsError::Header(BatchError::BadMagic(1))));
    }

    #[test]
    fn should_reject_gzip_bomb_over_cap() {
        let template = encode(&sample_records(), Compression::None);
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let zeros = vec![0u8; 1 << 16];
        for _ in 0..(50_000_000 / zeros.len()) {
            e.write_all(&zeros).unwrap();
        }
        let bomb = e.finish().unwrap();
        let b = with_payload(&template, 1, 1, &bomb);
        let (res, peak) = probe::peak_during(|| for_each_record(&b, 1 << 20, |_| true));
        assert_eq!(res, Err(RecordsError::DecompressedTooLarge { codec: "gzip", limit: 1 << 20 }));
        // The probe sees the capped output buffer (so it is live), and nothing near 50 MB.
        assert!(peak > 1 << 20 && peak < 4 << 20, "gzip bomb allocated {peak} bytes");
    }

    #[test]
    fn should_reject_bombs_over_cap_for_every_codec() {
        let template = encode(&sample_records(), Compression::None);
        let zeros = vec![0u8; 50_000_000];
        let xerial = {
            let mut x = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
            for chunk in zeros.chunks(1 << 20) {
                let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
                x.extend_from_slice(&(block.len() as u32).to_be_bytes());
                x.extend_from_slice(&block);
            }
            x
        };
        let bombs: [(i16, &str, Vec<u8>); 4] = [
            (2, "snappy", snap::raw::Encoder::new().compress_vec(&zeros).unwrap()),
            (2, "snappy", xerial),
            (3, "lz4", lz4_frame(&zeros)),
            (4, "zstd", zstd::bulk::compress(&zeros, 3).unwrap()),
        ];
        for (codec, name, bomb) in bombs {
            let b = with_payload(&template, codec, 1, &bomb);
            let (res, peak) = probe::peak_during(|| for_each_record(&b, 1 << 20, |_| true));
            assert_eq!(res, Err(RecordsError::DecompressedTooLarge { codec: name, limit: 1 << 20 }));
            assert!(peak < 8 << 20, "{name} bomb allocated {peak} bytes");
        }
    }

    #[test]
    fn should_accept_output_exactly_at_cap() {
        let records = sample_records();
        let template = encode(&records, Compression::None);
        let plain = uncompressed_payload(&records);
        let payloads: [(i16, Vec<u8>); 4] = [
            (1, gzip(&plain)),
            (2, snap::raw::Encoder::new().compress_vec(&plain).unwrap()),
            (3, lz4_frame(&plain)),
            (4, zstd::bulk::compress(&plain, 3).unwrap()),
        ];
        for (codec, payload) in payloads {
            let b = with_payload(&template, codec, 5, &payload);
            assert_eq!(read_all(&b, plain.len()).unwrap(), expected(&records), "codec {codec}");
            assert!(
                matches!(read_all(&b, plain.len() - 1), Err(RecordsError::DecompressedTooLarge { .. })),
                "codec {codec}"
            );
        }
    }

    #[test]
    fn should_not_panic_on_any_truncation() {
        let records = sample_records();
        for codec in CODECS {
            let b = encode(&records, codec);
            for n in 0..=b.len() {
                let _ = read_all(&b[..n], 1 << 20);
                if n >= HEADER_LEN {
                    // Same prefix with the batch length (and CRC) patched to match, so the
                    // records payload itself is cut short.
                    let mut p = b[..n].to_vec();
                    p[8..12].copy_from_slice(&((n - batch::LOG_OVERHEAD) as i32).to_be_bytes());
                    fix_crc(&mut p);
                    let res = read_all(&p, 1 << 20);
                    if n < b.len() {
                        assert!(res.is_err(), "{codec:?}: prefix {n} of {} accepted", b.len());
                    }
                }
            }
        }
    }

    #[test]
    fn should_not_panic_on_garbage() {
        let records = sample_records();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for codec in CODECS {
            let b = encode(&records, codec);
            // Random byte mutations in the records payload.
            for _ in 0..2_000 {
                let mut m = b.clone();
                for _ in 0..(1 + next() % 4) {
                    let pos = HEADER_LEN + (next() as usize) % (m.len() - HEADER_LEN);
                    m[pos] = next() as u8;
                }
                let _ = read_all(&m, 1 << 20);
            }
            // Entirely random payloads of random sizes, with random record counts.
            for _ in 0..500 {
                let len = (next() % 600) as usize;
                let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                let count = (next() % 200) as i32;
                let m = with_payload(&b, codec as i16, count, &payload);
                let _ = read_all(&m, 1 << 20);
            }
        }
        // Random payloads behind a valid xerial header, so the chunk parser is exercised.
        for _ in 0..1_000 {
            let mut payload = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
            let len = (next() % 200) as usize;
            payload.extend((0..len).map(|_| next() as u8));
            if len >= 4 && next() % 2 == 0 {
                let chunk = ((len - 4) as u32).to_be_bytes();
                payload[16..20].copy_from_slice(&chunk);
            }
            let m = with_payload(&encode(&records, Compression::None), 2, 3, &payload);
            let _ = read_all(&m, 1 << 20);
        }
    }

    #[test]
    fn should_cap_client_batches_by_ratio_and_absolute_limit() {
        assert_eq!(client_batch_cap(1_000), 64_000);
        assert_eq!(client_batch_cap(10 << 20), MAX_DECOMPRESSED_BYTES);
        assert_eq!(client_batch_cap(usize::MAX), MAX_DECOMPRESSED_BYTES);
    }

    #[test]
    fn should_display_the_problem() {
        let e = RecordsError::RecordCount { count: 0x7fff_ffff, available: 10 };
        assert!(e.to_string().contains("record count 2147483647"));
        assert!(RecordsError::VarintOverflow { index: 2 }.to_string().contains("varint overflow"));
        assert!(RecordsError::DecompressedTooLarge { codec: "gzip", limit: 5 }.to_string().contains("limit of 5"));
    }
}
