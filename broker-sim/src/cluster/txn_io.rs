//! The transaction coordinator's I/O against the cluster: its state records go to
//! `__transaction_state`, its markers to the partitions of each transaction.

use std::collections::{BTreeMap, BTreeSet};

use super::{ClusterCore, Topic, OFFSETS_TOPIC, TXN_TOPIC};
use crate::error::Result;
use crate::log::batch::ControlType;
use crate::log::internal;
use crate::txn::{log as txn_log, TxnIo, TxnMeta};

/// [`TxnIo`] over the cluster's logs, at time `now`.
pub(crate) struct CoreTxnIo<'a> {
    core: &'a ClusterCore,
    now: i64,
}

impl<'a> CoreTxnIo<'a> {
    /// I/O for one coordinator call at `now`.
    pub(crate) fn new(core: &'a ClusterCore, now: i64) -> Self {
        CoreTxnIo { core, now }
    }
}

impl TxnIo for CoreTxnIo<'_> {
    fn persist(&mut self, meta: &TxnMeta) -> std::result::Result<(), String> {
        let (_, index) = self.core.txn_coordinator_for(&meta.id);
        let partition =
            self.core.partition(TXN_TOPIC, index).ok_or_else(|| format!("{TXN_TOPIC}-{index} is missing (bug)"))?;
        let (key, value) = txn_log::encode(meta);
        let mut batch = internal::encode(vec![(key, value)], self.now, None).map_err(|e| e.to_string())?;
        partition.log.lock().append(&mut batch, partition.leader_epoch, self.now).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn write_markers(
        &mut self,
        producer_id: i64,
        epoch: i16,
        kind: ControlType,
        partitions: &BTreeSet<(String, i32)>,
    ) -> std::result::Result<(), String> {
        let mut failed = None;
        for (topic, index) in partitions {
            // A topic deleted during the transaction has nothing left to mark.
            let Some(p) = self.core.partition(topic, *index) else { continue };
            let res = p.log.lock().append_marker(producer_id, epoch, kind, 0, p.leader_epoch, self.now);
            match res {
                Ok(_) if topic == OFFSETS_TOPIC => {
                    self.core.groups.lock().complete_txn(producer_id, kind == ControlType::Commit, *index)
                }
                Ok(_) => {}
                Err(e) => failed = Some(format!("marker on {topic}-{index}: {e}")),
            }
        }
        self.core.notify_append();
        failed.map_or(Ok(()), Err)
    }
}

/// Replays `__transaction_state`: the last record of each transactional id.
pub(crate) fn load_txn_log(topic: &Topic) -> Result<Vec<TxnMeta>> {
    let mut last: BTreeMap<String, Option<TxnMeta>> = BTreeMap::new();
    for p in &topic.partitions {
        let log = p.log.lock();
        for rec in log.read_all_records(log.log_start_offset())? {
            match txn_log::decode(rec.key.as_ref(), rec.value.as_ref()) {
                Some(meta) => {
                    last.insert(meta.id.clone(), Some(meta));
                }
                None => tracing::warn!(
                    partition = p.index,
                    offset = rec.offset,
                    "skipping an unreadable transaction record"
                ),
            }
        }
    }
    let metas: Vec<TxnMeta> = last.into_values().flatten().collect();
    if !metas.is_empty() {
        tracing::info!(transactional_ids = metas.len(), "loaded transaction state");
    }
    Ok(metas)
}
