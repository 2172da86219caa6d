//! What the cleaner does with one stored batch: keep it as it is, rebuild it with fewer
//! records (or a delete horizon), or drop it.

use std::collections::BTreeMap;

use super::{key_hash, Aborted, CleanerStats, OffsetMap};
use crate::log::batch::{self, BatchHeader, HEADER_LEN};
use crate::log::records::{self, RecordView, MAX_DECOMPRESSED_BYTES};

/// What one pass knows while it rewrites the log from its start.
pub(super) struct Pass<'a> {
    /// Latest offset of every key in the dirty section.
    pub(super) map: &'a OffsetMap,
    /// The cleaner's clock.
    pub(super) now_ms: i64,
    /// `delete.retention.ms`.
    pub(super) delete_retention_ms: i64,
    /// Aborted transactions' ranges.
    pub(super) aborted: &'a Aborted,
    /// Last offset of each producer's last data batch (kept, maybe empty).
    pub(super) producer_last: &'a BTreeMap<i64, i64>,
    /// Transactions whose data the pass has met and whose marker it has not: whether any of
    /// their data was kept.
    pub(super) open_txns: BTreeMap<i64, bool>,
}

/// The fate of a batch.
#[derive(Debug)]
pub(super) enum Fate {
    /// Copy it unchanged.
    Keep,
    /// Write these bytes instead (same base offset and last offset delta).
    Rebuilt(Vec<u8>),
    /// Leave it out.
    Drop,
}

impl Pass<'_> {
    /// Decides what happens to one batch, counting what it removes.
    pub(super) fn filter(&mut self, h: &BatchHeader<'_>, bytes: &[u8], stats: &mut CleanerStats) -> Fate {
        if h.is_control() {
            return self.filter_marker(h, bytes, stats);
        }
        let fate = self.filter_data(h, bytes, stats);
        if h.is_transactional() {
            let kept = !matches!(fate, Fate::Drop);
            *self.open_txns.entry(h.producer_id()).or_default() |= kept;
        }
        fate
    }

    /// A transaction marker stays while data of its transaction is left; once there is none,
    /// it gets a delete horizon and goes when the clock passes it, so a reader that saw the
    /// data still sees the marker.
    fn filter_marker(&mut self, h: &BatchHeader<'_>, bytes: &[u8], stats: &mut CleanerStats) -> Fate {
        stats.records_read += 1;
        let has_data = self.open_txns.remove(&h.producer_id()).unwrap_or(false);
        let fate = match h.delete_horizon() {
            _ if has_data => Fate::Keep,
            Some(horizon) if self.now_ms >= horizon => {
                stats.markers_removed += 1;
                return Fate::Drop;
            }
            Some(_) => Fate::Keep,
            None => {
                match self.rebuild(h, bytes, |_| true, Some(self.now_ms.saturating_add(self.delete_retention_ms))) {
                    Ok(Some(b)) => Fate::Rebuilt(b),
                    Ok(None) | Err(()) => Fate::Keep,
                }
            }
        };
        stats.records_kept += 1;
        fate
    }

    fn filter_data(&mut self, h: &BatchHeader<'_>, bytes: &[u8], stats: &mut CleanerStats) -> Fate {
        let aborted = self.aborted.holds(h);
        let horizon_passed = h.delete_horizon().is_some_and(|t| self.now_ms >= t);
        let map = self.map;
        let keep = |r: &RecordView<'_>| {
            !aborted
                && r.key.is_none_or(|k| map.get(&key_hash(k)).is_none_or(|latest| r.offset >= *latest))
                && !(r.value.is_none() && horizon_passed)
        };
        let (mut total, mut kept, mut tombstones_kept, mut tombstones_dropped) = (0u64, 0u64, false, 0u64);
        let counted = records::for_each_record(bytes, MAX_DECOMPRESSED_BYTES, |r| {
            total += 1;
            if keep(&r) {
                kept += 1;
                tombstones_kept |= r.value.is_none();
            } else if r.value.is_none() && horizon_passed {
                tombstones_dropped += 1;
            }
            true
        });
        if let Err(e) = counted {
            tracing::warn!(offset = h.base_offset(), error = %e, "log cleaner keeps a batch whose records it cannot read");
            return Fate::Keep;
        }
        stats.records_read += total;
        stats.records_kept += kept;
        if aborted {
            stats.aborted_removed += total;
        } else {
            stats.tombstones_removed += tombstones_dropped;
        }
        let new_horizon = (tombstones_kept && h.delete_horizon().is_none())
            .then(|| self.now_ms.saturating_add(self.delete_retention_ms));
        if kept == total && new_horizon.is_none() {
            return Fate::Keep;
        }
        if kept == 0 && self.producer_last.get(&h.producer_id()) != Some(&h.last_offset()) {
            return Fate::Drop;
        }
        match self.rebuild(h, bytes, keep, new_horizon) {
            Ok(Some(b)) => Fate::Rebuilt(b),
            Ok(None) => Fate::Drop,
            Err(()) => Fate::Keep,
        }
    }

    /// Re-encodes the records `keep` accepts under `h`'s identity, with timestamps relative to
    /// `new_horizon` when one is set. An empty result is an uncompressed batch of no records
    /// (the last batch of its producer, kept for the sequence). `Err` when the records cannot
    /// be read or written again (the batch is then kept as it is).
    fn rebuild(
        &self,
        h: &BatchHeader<'_>,
        bytes: &[u8],
        keep: impl Fn(&RecordView<'_>) -> bool,
        new_horizon: Option<i64>,
    ) -> Result<Option<Vec<u8>>, ()> {
        let (_, payload) = records::records_payload(bytes, MAX_DECOMPRESSED_BYTES).map_err(|_| ())?;
        let base_ts = new_horizon.unwrap_or(h.base_timestamp());
        let log_append_time = h.attributes() & batch::ATTR_LOG_APPEND_TIME != 0;
        let mut out = Vec::with_capacity(payload.len());
        let (mut count, mut max_ts) = (0i32, i64::MIN);
        records::for_each_in_payload(h, &payload, |r| {
            if keep(&r) {
                count += 1;
                max_ts = max_ts.max(r.timestamp);
                encode_record(&mut out, &r, base_ts);
            }
            true
        })
        .map_err(|_| ())?;
        if log_append_time || count == 0 {
            max_ts = h.max_timestamp();
        }
        let codec = if count == 0 { 0 } else { h.compression() };
        let payload = match codec {
            0 => out,
            c => records::compress(c, &out).map_err(|e| {
                tracing::warn!(offset = h.base_offset(), error = %e, "log cleaner cannot recompress a batch");
            })?,
        };
        let header = &bytes[..HEADER_LEN];
        let horizon = new_horizon.is_some();
        Ok(Some(batch::rebuild(header, &payload, count, (base_ts, max_ts), horizon, codec)))
    }
}

/// Appends one record, its timestamp relative to `base_ts` and everything else as written.
fn encode_record(out: &mut Vec<u8>, r: &RecordView<'_>, base_ts: i64) {
    let mut head = [0u8; 1 + 10 + 5];
    head[0] = r.attributes;
    let mut n = 1;
    n += put_varlong(&mut head[n..], r.timestamp.wrapping_sub(base_ts));
    n += put_varlong(&mut head[n..], i64::from(r.offset_delta));
    let len = (n + r.tail.len()) as i64;
    let mut len_buf = [0u8; 10];
    let l = put_varlong(&mut len_buf, len);
    out.extend_from_slice(&len_buf[..l]);
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(r.tail);
}

/// Writes `v` zig-zag encoded as a varint into `buf` (room for 10 bytes); returns its length.
fn put_varlong(buf: &mut [u8], v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut i = 0;
    while z >= 0x80 {
        buf[i] = (z as u8) | 0x80;
        z >>= 7;
        i += 1;
    }
    buf[i] = z as u8;
    i + 1
}
