//! The stream thread's commit cycle, every commit interval:
//!
//! 1. flush store caches and send what is still pending;
//! 2. wait until the producer has every record acknowledged;
//! 3. exactly-once: add the consumed offsets to the transaction (with the consumer's group
//!    metadata) and commit it; at-least-once: commit the offsets;
//! 4. only then commit each store locally, with the next changelog offset and the input
//!    offsets (DESIGN.md decision 5), so a store is never ahead of Kafka.
//!
//! Under exactly-once, steps 2 and 3 run on a helper thread while this one processes the
//! next transaction's records: the stores are sealed at step 1 (their later writes belong to
//! the next transaction), and the output, changelog and dead-letter records wait in the tasks
//! until the commit has ended, as the producer has one transaction at a time. At a 100 ms
//! interval the wait for the broker was most of the cost of exactly-once. A failed commit
//! rolls both transactions back.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::commit_plan::{CommitPlan, StorePosition, TaskPlan};
use super::core::{Core, Io, DRAIN_TIMEOUT, PERSIST_INTERVAL};
use super::io::{Clock, Consumer, Deliveries, Producer, Purge};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::kafka::ErrorHandler;
use crate::processor::TaskId;

impl<I: Io> Core<I> {
    /// The commit cycle (see the module documentation), to its end.
    pub(crate) fn commit(&mut self) -> Result<()> {
        self.start_commit()?;
        self.finish_commit()
    }

    /// Starts the commit cycle (after ending one under way): under exactly-once the Kafka
    /// commit goes on on a helper thread, and [`Self::finish_commit`] ends it; at-least-once
    /// commits in line.
    pub(super) fn start_commit(&mut self) -> Result<()> {
        self.finish_commit()?;
        self.start_restored()?;
        self.last_commit = self.clock.now();
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in &ids {
            self.tasks.get_mut(id).expect("task exists").task.flush()?;
            for (_, store) in self.tasks[id].task.stores() {
                store.borrow_mut().flush_cache().map_err(|e| Error::of_task_store(*id, e))?;
            }
            self.send_pending(*id)?;
        }
        let plan = self.commit_plan();
        let logged = self.tasks.values().any(|e| e.dirty);
        if plan.is_empty() && !logged && !self.producer.in_txn() {
            // Nothing new: the commits the stores still hold in memory go to RocksDB once due,
            // so what reads the stores (interactive queries, a restart) is not left a commit
            // behind while the input is quiet.
            return self.persist_if_due();
        }
        for entry in self.tasks.values_mut() {
            for (_, store) in entry.task.stores() {
                store.borrow_mut().seal().map_err(|e| Error::of_task_store(entry.task.id(), e))?;
            }
            for q in &mut entry.queues {
                q.sealed = q.consumed;
            }
            entry.dirty = false;
        }
        if self.eos {
            let group = self.consumer.group_metadata().ok_or_else(|| Error::TaskMigrated {
                op: "starting a commit".into(),
                source: "the consumer has no group metadata".into(),
            })?;
            return self.producer.start_commit(plan, group, DRAIN_TIMEOUT);
        }
        self.producer.drain(DRAIN_TIMEOUT)?;
        let deliveries = self.producer.take_deliveries();
        if let Some(error) = &deliveries.error {
            match self.spec.config.production_handler {
                ErrorHandler::Fail => return Err(Error::kafka("producing", error.clone())),
                ErrorHandler::LogAndContinue => {
                    tracing::warn!(%error, failed = deliveries.failed, "records were not delivered; going on");
                }
            }
        }
        if !plan.is_empty() {
            self.consumer.commit(&plan.offsets(&deliveries.changelog))?;
        }
        self.commit_stores(&deliveries)
    }

    /// What this commit writes: the offsets of every task that consumed or logged something
    /// since the last commit, with its stream time and changelog positions (the positions of
    /// this commit's records are filled in once they are acknowledged).
    fn commit_plan(&self) -> CommitPlan {
        let mut plan = CommitPlan::default();
        for (id, entry) in &self.tasks {
            let moved = entry.queues.iter().any(|q| q.consumed.is_some() && q.consumed != q.committed);
            if !moved && !entry.dirty {
                continue;
            }
            let partitions: Vec<_> =
                entry.queues.iter().filter_map(|q| q.consumed.map(|o| (q.physical.clone(), q.partition, o))).collect();
            if partitions.is_empty() {
                // Nothing consumed and no committed offset to carry the metadata.
                continue;
            }
            let stores = entry
                .task
                .stores()
                .filter(|(name, _)| self.logged.contains(*name))
                .map(|(name, store)| StorePosition {
                    name: name.to_string(),
                    topic: self.spec.names.changelog(name),
                    partition: id.partition,
                    previous: store.borrow().checkpoint().changelog_offset,
                })
                .collect();
            plan.tasks.push(TaskPlan { partitions, stream_time: entry.task.stream_time(), stores });
        }
        plan
    }

    /// Ends the exactly-once commit under way, if any: waits for Kafka's, commits the stores,
    /// then sends what the tasks held meanwhile (the next transaction).
    pub(super) fn finish_commit(&mut self) -> Result<()> {
        if !self.producer.committing() {
            return Ok(());
        }
        self.held = 0;
        self.producer.finish_commit()?;
        let deliveries = self.producer.take_deliveries();
        self.commit_stores(&deliveries)?;
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            self.send_pending(id)?;
        }
        Ok(())
    }

    /// Kafka has the sealed transaction: commits each store with its next changelog offset
    /// and the sealed input offsets, and writes the stores' commits to RocksDB once per
    /// `PERSIST_INTERVAL`.
    fn commit_stores(&mut self, deliveries: &Deliveries) -> Result<()> {
        if failpoint::fails("commit.after_kafka") {
            if let Some(entry) = self.tasks.values().find(|e| e.task.stores().next().is_some()) {
                let (name, _) = entry.task.stores().next().expect("has a store");
                let reason = "fail point commit.after_kafka".to_string();
                let source = moldau_state_store::Error::Corrupted { store: name.to_string(), reason };
                return Err(Error::TaskCorrupted { task: entry.task.id(), source: Box::new(source) });
            }
        }
        for entry in self.tasks.values_mut() {
            let id = entry.task.id();
            let partition = id.partition;
            let inputs: Vec<(String, i32, i64)> =
                entry.queues.iter().filter_map(|q| q.sealed.map(|o| (q.logical.to_string(), q.partition, o))).collect();
            for (name, store) in entry.task.stores() {
                let mut store = store.borrow_mut();
                let next = deliveries
                    .changelog
                    .get(&self.spec.names.changelog(name))
                    .and_then(|p| p.get(&partition))
                    .map(|o| o + 1)
                    .unwrap_or(store.checkpoint().changelog_offset);
                store.commit(next, &inputs).map_err(|e| Error::of_task_store(id, e))?;
            }
            for q in &mut entry.queues {
                q.committed = q.sealed;
            }
        }
        self.unpersisted = true;
        if self.clock.now().duration_since(self.last_persist) >= PERSIST_INTERVAL {
            self.persist_if_due()?;
        } else if !self.tasks.is_empty() && self.spec.config.effective_commit_interval() < PERSIST_INTERVAL {
            failpoint::hit("commit.deferred");
        }
        self.spec.shared.commits.fetch_add(1, Ordering::Relaxed);
        self.spec.shared.sent.fetch_add(self.producer.take_sent(), Ordering::Relaxed);
        Ok(())
    }

    /// Writes the stores' commits held in memory to RocksDB, when there are some and
    /// `PERSIST_INTERVAL` has passed since the last time.
    fn persist_if_due(&mut self) -> Result<()> {
        if !self.unpersisted || self.clock.now().duration_since(self.last_persist) < PERSIST_INTERVAL {
            return Ok(());
        }
        self.last_persist = self.clock.now();
        self.unpersisted = false;
        for entry in self.tasks.values() {
            for (_, store) in entry.task.stores() {
                store.borrow_mut().persist().map_err(|e| Error::of_task_store(entry.task.id(), e))?;
            }
        }
        Ok(())
    }

    /// Asks for the records of repartition topics before the committed offsets to be deleted
    /// (see `purge`).
    pub(super) fn purge_repartition_topics(&mut self) {
        let mut before = BTreeMap::new();
        for q in self.tasks.values().flat_map(|e| &e.queues) {
            let Some(offset) = q.committed else { continue };
            if !self.spec.topology.is_internal_topic(&q.logical) {
                continue;
            }
            let key = (q.physical.clone(), q.partition);
            if self.purged.get(&key).is_none_or(|p| *p < offset) {
                self.purged.insert(key.clone(), offset);
                before.insert(key, offset);
            }
        }
        if !before.is_empty() {
            self.purger.purge(before);
        }
    }

    /// Drops the open transaction and every store's uncommitted writes.
    pub(super) fn abort_all(&mut self) {
        self.held = 0;
        // A commit under way ends first: committed or not, the stores drop the sealed
        // transaction, and if Kafka has it, the restore from the changelog brings it back.
        self.producer.abort_txn();
        for entry in self.tasks.values_mut() {
            entry.dirty = false;
            for (_, store) in entry.task.stores() {
                store.borrow_mut().abort();
            }
            for q in &mut entry.queues {
                q.consumed = q.committed;
            }
        }
    }
}
