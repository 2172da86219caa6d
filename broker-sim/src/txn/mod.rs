//! The transaction coordinator (KIP-98, KIP-360; transaction version 1).
//!
//! A state machine over [`TxnMeta`] per transactional id that takes `now` as an argument and
//! does its I/O through [`TxnIo`]: every state change is persisted to the transaction log
//! before it is applied in memory or answered, and markers are written synchronously between
//! the durable `Prepare*` state and the durable `Complete*` state. A crash in between leaves a
//! `Prepare*` state that [`TxnCoordinator::recover`] completes at start-up; a marker write that
//! fails is retried by [`TxnCoordinator::tick`], and the transactional id answers
//! CONCURRENT_TRANSACTIONS until then.
//!
//! Fencing errors depend on the request version: `fenced` arguments carry PRODUCER_FENCED for
//! versions that define it and INVALID_PRODUCER_EPOCH otherwise (the handler decides).

pub(crate) mod log;
pub(crate) mod pid;
pub(crate) mod state;

use std::collections::{BTreeMap, BTreeSet};

use crate::log::batch::ControlType;
use crate::protocol::codes;
use pid::ProducerIdAllocator;
pub(crate) use state::{epoch_exhausted, TxnMeta, TxnState};

/// The coordinator's side effects.
pub(crate) trait TxnIo {
    /// Durably records `meta` in the transaction log.
    fn persist(&mut self, meta: &TxnMeta) -> Result<(), String>;
    /// Writes a `kind` marker of `(producer_id, epoch)` to every partition (and completes the
    /// pending transactional offset commits of groups on `__consumer_offsets` partitions).
    fn write_markers(
        &mut self,
        producer_id: i64,
        epoch: i16,
        kind: ControlType,
        partitions: &BTreeSet<(String, i32)>,
    ) -> Result<(), String>;
}

/// A refusal: Kafka error code and a message for logs and `error_message`.
pub(crate) type TxnError = (i16, String);

fn err(code: i16, msg: impl Into<String>) -> TxnError {
    (code, msg.into())
}

/// What InitProducerId asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InitRequest<'a> {
    /// Transactional id, or `None` for an idempotent producer.
    pub(crate) txn_id: Option<&'a str>,
    /// `transaction.timeout.ms`.
    pub(crate) timeout_ms: i32,
    /// KIP-360: the producer id and epoch the client has (v3+), if any.
    pub(crate) expected: Option<(i64, i16)>,
    /// The fencing error for this request version.
    pub(crate) fenced: i16,
}

/// The transactional producer a request comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller<'a> {
    /// Transactional id.
    pub(crate) txn_id: &'a str,
    /// Producer id the client holds.
    pub(crate) producer_id: i64,
    /// Epoch the client holds.
    pub(crate) epoch: i16,
    /// The fencing error for this request version.
    pub(crate) fenced: i16,
}

/// All transactional ids of the cluster.
#[derive(Debug)]
pub(crate) struct TxnCoordinator {
    txns: BTreeMap<String, TxnMeta>,
    by_pid: BTreeMap<i64, String>,
    pids: ProducerIdAllocator,
    max_timeout_ms: i32,
}

impl TxnCoordinator {
    /// A coordinator with no transactional ids.
    pub(crate) fn new(pids: ProducerIdAllocator, max_timeout_ms: i32) -> Self {
        TxnCoordinator { txns: BTreeMap::new(), by_pid: BTreeMap::new(), pids, max_timeout_ms }
    }

    /// Loads the last state of every transactional id (replayed from the transaction log).
    pub(crate) fn load(&mut self, metas: impl IntoIterator<Item = TxnMeta>) {
        for m in metas {
            self.pids.ensure_above(m.producer_id.max(m.last_producer_id));
            self.by_pid.insert(m.producer_id, m.id.clone());
            self.txns.insert(m.id.clone(), m);
        }
    }

    /// Completes transactions caught between their `Prepare*` and `Complete*` states.
    pub(crate) fn recover(&mut self, io: &mut dyn TxnIo, now: i64) {
        let pending: Vec<String> = self
            .txns
            .values()
            .filter(|m| matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort))
            .map(|m| m.id.clone())
            .collect();
        for id in pending {
            if let Err(e) = self.complete(io, now, &id) {
                tracing::warn!(txn = %id, error = %e.1, "completing a prepared transaction failed; will retry");
            }
        }
    }

    /// The transaction metadata of `txn_id`.
    #[cfg(test)]
    pub(crate) fn get(&self, txn_id: &str) -> Option<&TxnMeta> {
        self.txns.get(txn_id)
    }

    fn put(&mut self, io: &mut dyn TxnIo, meta: TxnMeta) -> Result<(), TxnError> {
        io.persist(&meta).map_err(|e| err(codes::COORDINATOR_NOT_AVAILABLE, format!("transaction log write: {e}")))?;
        if let Some(old) = self.txns.get(&meta.id) {
            if old.producer_id != meta.producer_id {
                self.by_pid.remove(&old.producer_id);
            }
        }
        self.by_pid.insert(meta.producer_id, meta.id.clone());
        self.txns.insert(meta.id.clone(), meta);
        Ok(())
    }

    /// InitProducerId: a new producer id for an idempotent producer; for a transactional id
    /// an epoch bump that fences older producers (aborting their open transaction first).
    pub(crate) fn init_producer_id(
        &mut self,
        io: &mut dyn TxnIo,
        now: i64,
        req: InitRequest<'_>,
    ) -> Result<(i64, i16), TxnError> {
        let Some(txn_id) = req.txn_id else {
            let pid = self.pids.next_id().map_err(|e| err(codes::UNKNOWN_SERVER_ERROR, e.to_string()))?;
            return Ok((pid, 0));
        };
        if txn_id.is_empty() {
            return Err(err(codes::INVALID_REQUEST, "transactional id is empty"));
        }
        if req.timeout_ms <= 0 || req.timeout_ms > self.max_timeout_ms {
            return Err(err(
                codes::INVALID_TRANSACTION_TIMEOUT,
                format!(
                    "transaction timeout {} ms is not within 1..={} (transaction.max.timeout.ms)",
                    req.timeout_ms, self.max_timeout_ms
                ),
            ));
        }
        let Some(current) = self.txns.get(txn_id).cloned() else {
            let pid = self.pids.next_id().map_err(|e| err(codes::UNKNOWN_SERVER_ERROR, e.to_string()))?;
            let meta = TxnMeta {
                id: txn_id.to_string(),
                producer_id: pid,
                last_producer_id: -1,
                epoch: 0,
                last_epoch: -1,
                timeout_ms: req.timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                start_ms: -1,
                update_ms: now,
            };
            self.put(io, meta)?;
            return Ok((pid, 0));
        };
        if let Some((pid, epoch)) = req.expected {
            let valid = pid == current.producer_id || (pid == current.last_producer_id && epoch_exhausted(epoch));
            if !valid {
                return Err(err(req.fenced, format!("producer {pid} is not the current producer of '{txn_id}'")));
            }
        }
        match current.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(err(codes::CONCURRENT_TRANSACTIONS, format!("'{txn_id}' is completing a transaction")))
            }
            TxnState::Ongoing => {
                // Fence the current producer: bump the epoch and abort its transaction with the
                // new epoch, then make the client retry (the retry bumps once more).
                let mut meta = current;
                if !epoch_exhausted(meta.epoch) {
                    meta.epoch += 1;
                }
                meta.last_epoch = -1;
                self.begin_end(io, now, meta, ControlType::Abort)?;
                Err(err(codes::CONCURRENT_TRANSACTIONS, format!("aborted the open transaction of '{txn_id}'; retry")))
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let mut meta = current;
                let expected_epoch = req.expected.map(|e| e.1);
                if epoch_exhausted(meta.epoch) && expected_epoch.is_none_or(|e| e == meta.epoch) {
                    let pid = self.pids.next_id().map_err(|e| err(codes::UNKNOWN_SERVER_ERROR, e.to_string()))?;
                    meta.last_producer_id = meta.producer_id;
                    meta.last_epoch = meta.epoch;
                    meta.producer_id = pid;
                    meta.epoch = 0;
                } else {
                    match expected_epoch {
                        None | Some(-1) => {
                            meta.last_epoch = meta.epoch;
                            meta.epoch += 1;
                        }
                        Some(e) if e == meta.epoch => {
                            meta.last_epoch = meta.epoch;
                            meta.epoch += 1;
                        }
                        // A retry of a bump whose answer the client never got.
                        Some(e) if e == meta.last_epoch => return Ok((meta.producer_id, meta.epoch)),
                        Some(e) => {
                            return Err(err(
                                req.fenced,
                                format!("epoch {e} of '{txn_id}' is neither the current {} nor the last", meta.epoch),
                            ))
                        }
                    }
                }
                meta.state = TxnState::Empty;
                meta.partitions.clear();
                meta.timeout_ms = req.timeout_ms;
                meta.start_ms = -1;
                meta.update_ms = now;
                let out = (meta.producer_id, meta.epoch);
                self.put(io, meta)?;
                Ok(out)
            }
        }
    }

    /// Looks up the caller's transactional id and checks its producer id and epoch.
    fn checked(&self, caller: Caller<'_>) -> Result<&TxnMeta, TxnError> {
        let Caller { txn_id, producer_id, epoch, fenced } = caller;
        let meta = self.txns.get(txn_id).ok_or_else(|| {
            err(codes::INVALID_PRODUCER_ID_MAPPING, format!("transactional id '{txn_id}' is unknown"))
        })?;
        if meta.producer_id != producer_id {
            return Err(err(
                codes::INVALID_PRODUCER_ID_MAPPING,
                format!("producer {producer_id} does not own '{txn_id}' (producer {})", meta.producer_id),
            ));
        }
        if meta.epoch != epoch {
            return Err(err(fenced, format!("epoch {epoch} of '{txn_id}' is fenced by epoch {}", meta.epoch)));
        }
        Ok(meta)
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: adds partitions to the open transaction, opening
    /// one if none is.
    pub(crate) fn add_partitions(
        &mut self,
        io: &mut dyn TxnIo,
        now: i64,
        caller: Caller<'_>,
        partitions: &[(String, i32)],
    ) -> Result<(), TxnError> {
        let txn_id = caller.txn_id;
        let current = self.checked(caller)?;
        match current.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return Err(err(codes::CONCURRENT_TRANSACTIONS, format!("'{txn_id}' is completing a transaction")))
            }
            TxnState::Ongoing if partitions.iter().all(|p| current.partitions.contains(p)) => return Ok(()),
            _ => {}
        }
        let mut meta = current.clone();
        if meta.state != TxnState::Ongoing {
            meta.state = TxnState::Ongoing;
            meta.partitions.clear();
            meta.start_ms = now;
        }
        meta.partitions.extend(partitions.iter().cloned());
        meta.update_ms = now;
        self.put(io, meta)
    }

    /// EndTxn: commits or aborts the open transaction. Idempotent for retries of the same
    /// decision.
    pub(crate) fn end_txn(
        &mut self,
        io: &mut dyn TxnIo,
        now: i64,
        caller: Caller<'_>,
        commit: bool,
    ) -> Result<(), TxnError> {
        let txn_id = caller.txn_id;
        let current = self.checked(caller)?;
        let word = if commit { "commit" } else { "abort" };
        match (current.state, commit) {
            (TxnState::Ongoing, _) => {
                let meta = current.clone();
                let kind = if commit { ControlType::Commit } else { ControlType::Abort };
                self.begin_end(io, now, meta, kind)
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(()),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(err(codes::CONCURRENT_TRANSACTIONS, format!("'{txn_id}' is still writing its markers")))
            }
            (state, _) => {
                Err(err(codes::INVALID_TXN_STATE, format!("cannot {word} '{txn_id}' in state {}", state.name())))
            }
        }
    }

    /// Persists the `Prepare*` state of `meta`, then writes markers and completes.
    fn begin_end(
        &mut self,
        io: &mut dyn TxnIo,
        now: i64,
        mut meta: TxnMeta,
        kind: ControlType,
    ) -> Result<(), TxnError> {
        meta.state = match kind {
            ControlType::Commit => TxnState::PrepareCommit,
            ControlType::Abort => TxnState::PrepareAbort,
        };
        meta.update_ms = now;
        let id = meta.id.clone();
        self.put(io, meta)?;
        if let Err(e) = self.complete(io, now, &id) {
            // The decision is durable: markers are retried by `tick`; meanwhile the id answers
            // CONCURRENT_TRANSACTIONS.
            tracing::warn!(txn = %id, error = %e.1, "writing transaction markers failed; will retry");
        }
        Ok(())
    }

    /// Writes the markers of a `Prepare*` transaction and persists its `Complete*` state.
    fn complete(&mut self, io: &mut dyn TxnIo, now: i64, txn_id: &str) -> Result<(), TxnError> {
        let Some(meta) = self.txns.get(txn_id) else { return Ok(()) };
        let (kind, done) = match meta.state {
            TxnState::PrepareCommit => (ControlType::Commit, TxnState::CompleteCommit),
            TxnState::PrepareAbort => (ControlType::Abort, TxnState::CompleteAbort),
            _ => return Ok(()),
        };
        io.write_markers(meta.producer_id, meta.epoch, kind, &meta.partitions)
            .map_err(|e| err(codes::COORDINATOR_NOT_AVAILABLE, e))?;
        let mut meta = meta.clone();
        meta.state = done;
        meta.partitions.clear();
        meta.start_ms = -1;
        meta.update_ms = now;
        self.put(io, meta)
    }

    /// Checks a transactional batch before it is appended: its producer must own an open
    /// transaction holding the partition (so a late batch can never open a transaction that no
    /// marker will close).
    pub(crate) fn verify_produce(
        &self,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), TxnError> {
        let meta = self.by_pid.get(&producer_id).and_then(|id| self.txns.get(id)).ok_or_else(|| {
            err(codes::INVALID_PRODUCER_ID_MAPPING, format!("producer {producer_id} has no transactional id"))
        })?;
        if epoch < meta.epoch {
            return Err(err(
                codes::INVALID_PRODUCER_EPOCH,
                format!("producer {producer_id} epoch {epoch} is fenced by epoch {}", meta.epoch),
            ));
        }
        if meta.state != TxnState::Ongoing || !meta.partitions.contains(&(topic.to_string(), partition)) {
            return Err(err(
                codes::INVALID_TXN_STATE,
                format!("{topic}-{partition} is not part of an open transaction of '{}'", meta.id),
            ));
        }
        Ok(())
    }

    /// Aborts transactions open longer than their timeout (bumping the epoch so the producer is
    /// fenced) and retries unfinished completions. Returns how many transactions it aborted.
    pub(crate) fn tick(&mut self, io: &mut dyn TxnIo, now: i64) -> usize {
        self.recover(io, now);
        let expired: Vec<TxnMeta> = self
            .txns
            .values()
            .filter(|m| m.state == TxnState::Ongoing && now - m.start_ms > i64::from(m.timeout_ms))
            .cloned()
            .collect();
        let mut aborted = 0;
        for mut meta in expired {
            tracing::info!(txn = %meta.id, producer = meta.producer_id, timeout_ms = meta.timeout_ms, "aborting a timed-out transaction");
            if !epoch_exhausted(meta.epoch) {
                meta.epoch += 1;
            }
            meta.last_epoch = -1;
            match self.begin_end(io, now, meta, ControlType::Abort) {
                Ok(()) => aborted += 1,
                Err(e) => tracing::warn!(error = %e.1, "aborting a timed-out transaction failed"),
            }
        }
        aborted
    }
}

#[cfg(test)]
mod tests;
