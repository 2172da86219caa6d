//! Compressing a records payload, for the log cleaner: a batch it rewrites keeps the codec its
//! producer chose.
//!
//! The framing is what Kafka's clients read: gzip members, snappy in the xerial framing
//! snappy-java writes (Java consumers need it; librdkafka reads it too), LZ4 frames and zstd
//! frames.

use std::io::Write;

use super::{codec_err, RecordsError, XERIAL_MAGIC};

/// Uncompressed bytes per xerial snappy block (snappy-java's default block size).
const XERIAL_BLOCK: usize = 32 << 10;

/// Compresses `records` with codec `codec` (1 gzip, 2 snappy, 3 lz4, 4 zstd).
pub(crate) fn compress(codec: i16, records: &[u8]) -> Result<Vec<u8>, RecordsError> {
    match codec {
        1 => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(records).map_err(|e| codec_err("gzip", e))?;
            enc.finish().map_err(|e| codec_err("gzip", e))
        }
        2 => {
            let mut out = Vec::with_capacity(records.len() / 2 + 32);
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut enc = snap::raw::Encoder::new();
            for block in records.chunks(XERIAL_BLOCK) {
                let packed = enc.compress_vec(block).map_err(|e| codec_err("snappy", e))?;
                let len = u32::try_from(packed.len()).map_err(|e| codec_err("snappy", e))?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&packed);
            }
            Ok(out)
        }
        3 => {
            let mut enc = lz4::EncoderBuilder::new()
                .block_size(lz4::BlockSize::Max64KB)
                .build(Vec::new())
                .map_err(|e| codec_err("lz4", e))?;
            enc.write_all(records).map_err(|e| codec_err("lz4", e))?;
            let (out, done) = enc.finish();
            done.map_err(|e| codec_err("lz4", e))?;
            Ok(out)
        }
        4 => zstd::bulk::compress(records, 3).map_err(|e| codec_err("zstd", e)),
        other => Err(RecordsError::UnknownCodec(other)),
    }
}
