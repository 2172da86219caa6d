//! Rebalances and the task set: partitions assigned (their tasks opened, restoring first when
//! they have stores) and revoked (committed first, then closed), and restored tasks started.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::core::{Core, Io, TaskEntry};
use super::io::{Clock, Consumer, Partition, Producer, Rebalance, Restore};
use crate::error::{Error, Recovery, Result};
use crate::failpoint;
use crate::processor::TaskId;

impl<I: Io> Core<I> {
    pub(super) fn handle_rebalances(&mut self) -> Result<()> {
        if !self.consumer.has_rebalance_events() {
            return Ok(());
        }
        // A rebalance waits for the commit under way, never for more: the next one starts
        // only after the rebalance is handled, so a commit as long as the interval cannot keep
        // a rebalance waiting until the member is evicted. A revocation then commits again, in
        // line.
        self.finish_commit()?;
        let events = self.consumer.take_rebalance_events();
        for event in events {
            self.spec.shared.rebalances.fetch_add(1, Ordering::Relaxed);
            let cooperative = self.consumer.is_cooperative();
            match event {
                Rebalance::Revoke(partitions) => self.revoke(&partitions, cooperative)?,
                Rebalance::Assign(partitions) => {
                    // The kept tasks' work so far is committed first: opening the new tasks
                    // reads committed offsets and changelog ends, round trips a transaction
                    // need not wait for.
                    let committed = self.commit();
                    let rolled_back = self.abort_if_failed(committed)?;
                    failpoint::hit("rebalance.assign");
                    let positions = self.open_tasks(&partitions)?;
                    self.consumer.assign(&positions, cooperative)?;
                    if !cooperative {
                        self.assigned.clear();
                        self.last_commit = self.clock.now();
                    }
                    self.pause_restoring()?;
                    self.assigned.extend(partitions);
                    if let Some(e) = rolled_back {
                        // The kept tasks' records since the last commit were rolled back.
                        self.recover_from(&e)?;
                    }
                }
                Rebalance::Failed(reason) => {
                    tracing::warn!(%reason, "rebalance failed");
                    self.abort_all();
                    self.close_tasks();
                    let all: Vec<Partition> = std::mem::take(&mut self.assigned).into_iter().collect();
                    let _ = self.consumer.unassign(&all, cooperative);
                }
            }
        }
        Ok(())
    }

    /// A commit made while handling a rebalance: if it failed, everything since the last
    /// commit is aborted, and the error returned for a roll-back ([`Self::recover`]) once the
    /// rebalance is handled.
    fn abort_if_failed(&mut self, committed: Result<()>) -> Result<Option<Error>> {
        match committed {
            Ok(()) => Ok(None),
            Err(e) if e.recovery() == Recovery::Stop => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "the commit before a rebalance failed; rolled back");
                self.abort_all();
                Ok(Some(e))
            }
        }
    }

    /// Gives up `partitions`: commits first (unless they were lost, and then nothing of
    /// theirs can be committed), closes their tasks, and hands them back. Under the cooperative
    /// protocol the other tasks stay open; if the commit failed they roll back to the last
    /// commit.
    fn revoke(&mut self, partitions: &[Partition], cooperative: bool) -> Result<()> {
        let lost = self.consumer.assignment_lost();
        tracing::info!(
            thread = self.spec.index,
            partitions = partitions.len(),
            cooperative,
            lost,
            "partitions revoked"
        );
        let committed = if lost {
            self.spec.shared.assignments_lost.fetch_add(1, Ordering::Relaxed);
            Err(Error::TaskMigrated { op: "revoking partitions".into(), source: "the assignment was lost".into() })
        } else {
            self.commit()
        };
        let rolled_back = self.abort_if_failed(committed)?;
        if !cooperative {
            self.close_tasks();
            self.assigned.clear();
            self.consumer.unassign(&[], false)?;
            return Ok(());
        }
        self.close_tasks_of(partitions);
        for p in partitions {
            self.assigned.remove(p);
        }
        self.consumer.unassign(partitions, true)?;
        if let Some(e) = rolled_back {
            // The remaining tasks' consumed records were rolled back: rewind them.
            self.recover_from(&e)?;
        }
        Ok(())
    }

    /// Closes the tasks reading any of `partitions`.
    fn close_tasks_of(&mut self, partitions: &[Partition]) {
        let gone: BTreeSet<(&str, i32)> = partitions.iter().map(|(t, p)| (t.as_str(), *p)).collect();
        let reads_gone = |e: &TaskEntry| e.queues.iter().any(|q| gone.contains(&(&*q.physical, q.partition)));
        let ids: Vec<TaskId> = self.tasks.iter().filter(|(_, e)| reads_gone(e)).map(|(id, _)| *id).collect();
        let restoring: Vec<TaskId> = self.restoring.iter().filter(|(_, e)| reads_gone(e)).map(|(id, _)| *id).collect();
        for id in restoring {
            // Its stores keep what they restored so far (their checkpoints say how far).
            self.restorer.cancel(id);
            self.restored.remove(&id);
            let entry = self.restoring.remove(&id).expect("listed");
            self.drop_task(entry);
        }
        for id in ids {
            let entry = self.tasks.remove(&id).expect("listed");
            self.drop_task(entry);
        }
        tracing::info!(thread = self.spec.index, tasks = ?self.tasks.keys().collect::<Vec<_>>(), "tasks kept");
        self.publish_tasks();
    }

    /// Closes a task that was taken out of `tasks` or `restoring`.
    fn drop_task(&mut self, mut entry: TaskEntry) {
        entry.task.close();
        for q in &entry.queues {
            self.buffered -= q.records.len();
            self.routes.remove(&q.physical, q.partition);
        }
    }

    /// Closes every task.
    pub(super) fn close_tasks(&mut self) {
        self.restorer.clear();
        self.restored.clear();
        for entry in self.tasks.values_mut().chain(self.restoring.values_mut()) {
            entry.task.close();
        }
        self.tasks.clear();
        self.restoring.clear();
        self.routes.clear();
        self.buffered = 0;
        self.spec.shared.tasks.lock().remove(&self.spec.index);
        self.spec.shared.restoring.lock().remove(&self.spec.index);
        self.spec.shared.stores.lock().remove(&self.spec.index);
    }

    /// The partitions of the tasks still restoring.
    fn restoring_partitions(&self) -> Vec<Partition> {
        self.restoring.values().flat_map(|e| &e.queues).map(|q| (q.physical.to_string(), q.partition)).collect()
    }

    /// Pauses the partitions of the tasks still restoring (after they were assigned or
    /// rewound): their records are fetched once the tasks run.
    pub(super) fn pause_restoring(&mut self) -> Result<()> {
        let partitions = self.restoring_partitions();
        self.consumer.pause(&partitions)
    }

    /// Restores the next slice of the restoring tasks' stores (see [`Restore::step`]); the
    /// tasks it finished start running, their partitions resumed, once no commit is under way.
    pub(super) fn restore_step(&mut self) -> Result<()> {
        if !self.restorer.is_idle() {
            // Nothing else to do: wait a little for the restore's records.
            let idle = self.buffered == 0 && !self.producer.committing();
            let wait = if idle { Duration::from_millis(10) } else { Duration::ZERO };
            let step = self.restorer.step(wait, &self.clock)?;
            self.spec.shared.restored.fetch_add(step.applied, Ordering::Relaxed);
            self.spec.shared.relogged.fetch_add(step.relogged, Ordering::Relaxed);
            self.restored.extend(step.done);
        }
        self.start_restored()
    }

    /// Starts the restored tasks, their partitions resumed, unless a commit is under way (it
    /// covers the tasks that were running when it was sealed). Called each turn and between
    /// one commit's end and the next one's start: when every commit outlasts the commit
    /// interval, that is the only moment with none under way.
    pub(super) fn start_restored(&mut self) -> Result<()> {
        if self.restored.is_empty() || self.producer.committing() {
            return Ok(());
        }
        let mut partitions = Vec::new();
        for id in std::mem::take(&mut self.restored) {
            let Some(entry) = self.restoring.remove(&id) else { continue };
            partitions.extend(entry.queues.iter().map(|q| (q.physical.to_string(), q.partition)));
            self.start_task(id, entry);
        }
        self.consumer.resume(&partitions)?;
        self.publish_tasks();
        Ok(())
    }
}
