//! Transaction metadata: one entry per transactional id.

use std::collections::BTreeSet;

/// Where a transactional id's current transaction stands (Kafka's `TransactionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnState {
    /// No transaction open.
    Empty,
    /// Partitions have been added; data may be written.
    Ongoing,
    /// Commit decided and durable; markers being written.
    PrepareCommit,
    /// Abort decided and durable; markers being written.
    PrepareAbort,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted.
    CompleteAbort,
}

impl TxnState {
    /// Kafka's numeric id, used in the transaction log.
    pub(crate) fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
        }
    }

    /// The state with Kafka's numeric id `id`.
    pub(crate) fn from_id(id: i8) -> Option<Self> {
        Some(match id {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            _ => return None,
        })
    }

    /// Kafka's name (DescribeTransactions, logs).
    pub(crate) fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }
}

/// The coordinator's record of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxnMeta {
    /// Transactional id.
    pub(crate) id: String,
    /// Current producer id.
    pub(crate) producer_id: i64,
    /// Producer id before the last rotation (epoch exhaustion), or -1.
    pub(crate) last_producer_id: i64,
    /// Current epoch.
    pub(crate) epoch: i16,
    /// Epoch before the last client-requested bump (KIP-360 retries), or -1.
    pub(crate) last_epoch: i16,
    /// `transaction.timeout.ms` of the producer.
    pub(crate) timeout_ms: i32,
    /// State.
    pub(crate) state: TxnState,
    /// Partitions in the open (or completing) transaction.
    pub(crate) partitions: BTreeSet<(String, i32)>,
    /// When the open transaction started (first AddPartitions/AddOffsets), or -1.
    pub(crate) start_ms: i64,
    /// Last change.
    pub(crate) update_ms: i64,
}

/// Whether an epoch can no longer be bumped (Kafka rotates the producer id then).
pub(crate) fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}
