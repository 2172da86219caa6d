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

mod compress;

use std::io::Read;

pub(crate) use compress::compress;

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
    /// The record's attributes byte (unused by Kafka, kept as written).
    pub(crate) attributes: u8,
    /// Offset relative to the batch base offset.
    pub(crate) offset_delta: i32,
    /// The record's bytes from its key length to its end (key, value and headers as
    /// written), for re-encoding it unchanged under another batch header.
    pub(crate) tail: &'a [u8],
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
    f: impl FnMut(RecordView<'_>) -> bool,
) -> Result<(), RecordsError> {
    let (h, records) = records_payload(batch, max_decompressed)?;
    for_each_in_payload(&h, &records, f)
}

/// The header of one complete magic-2 batch and its records payload, decompressed into at
/// most `max_decompressed` bytes (borrowed when the batch is not compressed).
pub(crate) fn records_payload(
    batch: &[u8],
    max_decompressed: usize,
) -> Result<(BatchHeader<'_>, std::borrow::Cow<'_, [u8]>), RecordsError> {
    let h = BatchHeader::parse(batch).map_err(RecordsError::Header)?;
    if h.total_len() != batch.len() {
        return Err(RecordsError::Header(BatchError::Truncated));
    }
    if h.magic() != 2 {
        return Err(RecordsError::Header(BatchError::BadMagic(h.magic())));
    }
    let payload = batch.get(HEADER_LEN..).ok_or(RecordsError::Header(BatchError::Truncated))?;
    match h.compression() {
        0 => Ok((h, std::borrow::Cow::Borrowed(payload))),
        codec => Ok((h, std::borrow::Cow::Owned(decompress(codec, payload, max_decompressed)?))),
    }
}

/// Calls `f` for each record of `records`, the (decompressed) payload of the batch with
/// header `h`, as [`for_each_record`] does.
pub(crate) fn for_each_in_payload<'p>(
    h: &BatchHeader<'_>,
    records: &'p [u8],
    mut f: impl FnMut(RecordView<'p>) -> bool,
) -> Result<(), RecordsError> {
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
            attributes: raw.attributes,
            offset_delta: raw.offset_delta,
            tail: raw.tail,
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
    /// Attributes byte.
    attributes: u8,
    /// Bytes from the key length to the end of the record.
    tail: &'a [u8],
}

/// Reads one record at the cursor, checking its length against what its fields span.
fn read_record<'a>(cur: &mut Cursor<'a>) -> Result<RawRecord<'a>, RecordsError> {
    let index = cur.index;
    let declared = cur.length("record length")?;
    let body = cur.bytes(declared)?;
    let mut b = Cursor { buf: body, pos: 0, index };
    let attributes = b.byte()?;
    let timestamp_delta = b.varlong()?;
    let offset_delta = b.varint()?;
    let tail_start = b.pos;
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
    let tail = body.get(tail_start..).unwrap_or_default();
    Ok(RawRecord { timestamp_delta, offset_delta, key, value, header_count, attributes, tail })
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
pub(crate) fn decompress(codec: i16, payload: &[u8], max: usize) -> Result<Vec<u8>, RecordsError> {
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
mod tests;
