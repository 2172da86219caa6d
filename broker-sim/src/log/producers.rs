//! Producer state of one partition: idempotent sequence checks, open transactions, the last
//! stable offset and the aborted-transaction index.
//!
//! The rules follow Kafka 3.x/4.x (`ProducerAppendInfo`, `UnifiedLog.analyzeAndValidateProducerState`):
//! - a batch whose epoch and sequence range match one of the producer's last
//!   [`RETAINED_BATCHES`] batches is a duplicate and is answered with its original offsets;
//! - an older epoch is INVALID_PRODUCER_EPOCH;
//! - a newer epoch must start at sequence 0, the same epoch must continue at last sequence + 1
//!   (wrapping at `i32::MAX`), else OUT_OF_ORDER_SEQUENCE_NUMBER;
//! - a producer the partition has no state for is accepted at any sequence (Kafka stopped
//!   answering UNKNOWN_PRODUCER_ID here in 2.x: its records may have been deleted by retention);
//! - a non-transactional batch from a producer with an open transaction is INVALID_TXN_STATE.
//!
//! The state is rebuilt from the log's batch headers and markers when the log is opened, so it
//! survives a restart.

use std::collections::{BTreeMap, VecDeque};

use super::batch::{BatchHeader, ControlType};
use crate::protocol::codes;

/// Batches remembered per producer for duplicate detection (Kafka's `NUM_BATCHES_TO_RETAIN`).
pub(crate) const RETAINED_BATCHES: usize = 5;

/// Sequence and offset range of one appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    first_offset: i64,
    last_offset: i64,
}

/// What the partition knows about one producer.
#[derive(Debug, Clone, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    txn_first_offset: Option<i64>,
    last_append_ms: i64,
}

/// An aborted transaction's range on this partition (for read_committed fetches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AbortedTxn {
    /// Producer id.
    pub(crate) producer_id: i64,
    /// First offset the transaction wrote here.
    pub(crate) first_offset: i64,
    /// Offset of its abort marker.
    pub(crate) last_offset: i64,
}

/// The outcome of checking a client batch against the producer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Append it.
    Append,
    /// Already appended: answer with these offsets and append nothing.
    Duplicate {
        /// Offset of its first record.
        first_offset: i64,
    },
}

/// A refused batch: Kafka error code and message.
pub(crate) type Rejection = (i16, String);

/// Producer state of one partition.
#[derive(Debug, Default)]
pub(crate) struct ProducerStates {
    producers: BTreeMap<i64, ProducerEntry>,
    /// Open transactions: first offset -> producer id.
    ongoing: BTreeMap<i64, i64>,
    /// Aborted transactions in marker order (so sorted by `last_offset`).
    aborted: Vec<AbortedTxn>,
}

fn last_seq_of(first_seq: i32, last_offset_delta: i32) -> i32 {
    ((i64::from(first_seq) + i64::from(last_offset_delta)) % (i64::from(i32::MAX) + 1)) as i32
}

fn in_sequence(last_seq: i32, next_seq: i32) -> bool {
    i64::from(next_seq) == i64::from(last_seq) + 1 || (next_seq == 0 && last_seq == i32::MAX)
}

impl ProducerStates {
    /// Checks a client batch that carries a producer id (`h.producer_id() >= 0`).
    pub(crate) fn check(&self, h: &BatchHeader<'_>) -> Result<Verdict, Rejection> {
        let pid = h.producer_id();
        let epoch = h.producer_epoch();
        let first_seq = h.base_sequence();
        if epoch < 0 || first_seq < 0 {
            return Err((
                codes::INVALID_RECORD,
                format!("batch of producer {pid} has epoch {epoch} and base sequence {first_seq}; both must be >= 0"),
            ));
        }
        let Some(e) = self.producers.get(&pid) else { return Ok(Verdict::Append) };
        if epoch == e.epoch {
            let last_seq = last_seq_of(first_seq, h.last_offset_delta());
            if let Some(b) = e.batches.iter().find(|b| b.first_seq == first_seq && b.last_seq == last_seq) {
                return Ok(Verdict::Duplicate { first_offset: b.first_offset });
            }
        }
        if epoch < e.epoch {
            return Err((
                codes::INVALID_PRODUCER_EPOCH,
                format!("producer {pid} epoch {epoch} is older than the current epoch {}", e.epoch),
            ));
        }
        if e.txn_first_offset.is_some() && !h.is_transactional() {
            return Err((
                codes::INVALID_TXN_STATE,
                format!("producer {pid} has an open transaction here; a non-transactional batch is not allowed"),
            ));
        }
        if epoch != e.epoch {
            if first_seq != 0 {
                return Err((
                    codes::OUT_OF_ORDER_SEQUENCE_NUMBER,
                    format!("producer {pid} starts new epoch {epoch} at sequence {first_seq}; expected 0"),
                ));
            }
        } else {
            let last = e.batches.back().map_or(-1, |b| b.last_seq);
            if !in_sequence(last, first_seq) {
                return Err((
                    codes::OUT_OF_ORDER_SEQUENCE_NUMBER,
                    format!(
                        "producer {pid} epoch {epoch}: sequence {first_seq} does not follow {last}; expected {}",
                        if last == i32::MAX { 0 } else { last + 1 }
                    ),
                ));
            }
        }
        Ok(Verdict::Append)
    }

    /// Records an appended data batch (offsets already assigned).
    pub(crate) fn on_batch(&mut self, h: &BatchHeader<'_>, now_ms: i64) {
        let pid = h.producer_id();
        if pid < 0 {
            return;
        }
        let e = self
            .producers
            .entry(pid)
            .or_insert_with(|| ProducerEntry { epoch: h.producer_epoch(), ..Default::default() });
        if e.epoch != h.producer_epoch() {
            e.epoch = h.producer_epoch();
            e.batches.clear();
        }
        let first_seq = h.base_sequence();
        if first_seq >= 0 {
            e.batches.push_back(BatchMeta {
                first_seq,
                last_seq: last_seq_of(first_seq, h.last_offset_delta()),
                first_offset: h.base_offset(),
                last_offset: h.last_offset(),
            });
            if e.batches.len() > RETAINED_BATCHES {
                e.batches.pop_front();
            }
        }
        if h.is_transactional() && e.txn_first_offset.is_none() {
            e.txn_first_offset = Some(h.base_offset());
            self.ongoing.insert(h.base_offset(), pid);
        }
        e.last_append_ms = now_ms;
    }

    /// Records an appended transaction marker at `offset`.
    pub(crate) fn on_marker(&mut self, producer_id: i64, epoch: i16, kind: ControlType, offset: i64, now_ms: i64) {
        let e = self.producers.entry(producer_id).or_insert_with(|| ProducerEntry { epoch, ..Default::default() });
        if epoch > e.epoch {
            e.epoch = epoch;
            e.batches.clear();
        }
        e.last_append_ms = now_ms;
        if let Some(first) = e.txn_first_offset.take() {
            self.ongoing.remove(&first);
            if kind == ControlType::Abort {
                self.aborted.push(AbortedTxn { producer_id, first_offset: first, last_offset: offset });
            }
        }
    }

    /// The last stable offset: the first offset of the earliest open transaction, else `hw`.
    pub(crate) fn last_stable_offset(&self, hw: i64) -> i64 {
        self.ongoing.keys().next().map_or(hw, |first| (*first).min(hw))
    }

    /// Aborted transactions overlapping `[from, upper)`: those whose marker is at or after
    /// `from` and whose first offset is below `upper`.
    pub(crate) fn aborted_between(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted[start..].iter().filter(|a| a.first_offset < upper).copied().collect()
    }

    /// Every aborted transaction's range, by producer (for the log cleaner).
    pub(crate) fn aborted_by_producer(&self) -> BTreeMap<i64, Vec<(i64, i64)>> {
        let mut out: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
        for a in &self.aborted {
            out.entry(a.producer_id).or_default().push((a.first_offset, a.last_offset));
        }
        out
    }

    /// The last offset of each known producer's last data batch: the log cleaner keeps that
    /// batch, emptied if need be, so the producer's sequence survives a restart.
    pub(crate) fn last_batch_offsets(&self) -> BTreeMap<i64, i64> {
        self.producers.iter().filter_map(|(pid, e)| Some((*pid, e.batches.back()?.last_offset))).collect()
    }

    /// Forgets aborted ranges that end below the new log start.
    pub(crate) fn truncate_before(&mut self, log_start: i64) {
        let n = self.aborted.partition_point(|a| a.last_offset < log_start);
        self.aborted.drain(..n);
    }

    /// Forgets producers idle for longer than `expiration_ms` with no open transaction
    /// (`producer.id.expiration.ms`). Returns how many were removed.
    pub(crate) fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| e.txn_first_offset.is_some() || now_ms - e.last_append_ms <= expiration_ms);
        before - self.producers.len()
    }

    /// Number of producers with state here.
    #[cfg(test)]
    pub(crate) fn producer_count(&self) -> usize {
        self.producers.len()
    }
}

#[cfg(test)]
mod tests;
