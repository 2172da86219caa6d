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
