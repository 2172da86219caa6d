//! Rolling back to the last commit: the open transaction aborted, every task closed and
//! reopened from its stores (a corrupted task's wiped first and restored from their
//! changelogs), the consumer rewound to the committed offsets, and a fenced or broken producer
//! replaced.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::core::{Core, Io};
use super::io::{Clock, Consumer, Partition, Producer, Stores};
use crate::error::{Error, Recovery, Result};

impl<I: Io> Core<I> {
    /// [`Self::recover`] from `cause`, again and again while it fails on Kafka (the cluster
    /// unreachable: an application stays up through an outage of any length), backing off up
    /// to 5 s between attempts, until the application closes.
    pub(super) fn recover_until_done(&mut self, cause: Error) -> Result<()> {
        self.note_corrupted(&cause);
        let reason = cause.to_string();
        let mut new_producer = cause.recovery() == Recovery::NewProducer;
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.recover(&reason, new_producer) {
                Ok(()) => return Ok(()),
                Err(e) if e.recovery() != Recovery::Stop && !self.shutting_down() => {
                    tracing::warn!(thread = self.spec.index, error = %e, ?backoff, "rolling back failed; retrying");
                    self.note_corrupted(&e);
                    // Whatever failed, the producer may be the broken part: a fresh one fences
                    // this thread's earlier transactions too.
                    new_producer = new_producer || self.eos;
                    self.clock.sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// [`Self::recover`] from error `e` (its task wiped and restored if it was corrupted).
    pub(super) fn recover_from(&mut self, e: &Error) -> Result<()> {
        self.note_corrupted(e);
        self.recover(&e.to_string(), e.recovery() == Recovery::NewProducer)
    }

    /// Remembers the task error `e` found corrupted: its stores are wiped when it is next
    /// opened (restored from their changelogs) or when the thread closes.
    pub(super) fn note_corrupted(&mut self, e: &Error) {
        if let Recovery::RestoreTask(task) = e.recovery() {
            tracing::warn!(thread = self.spec.index, %task, error = %e, "task corrupted: its stores will be restored");
            self.corrupted.insert(task);
        }
    }

    /// Rolls back to the last commit: aborts, reopens the assigned tasks from their stores
    /// (restoring what the changelog has beyond them) and rewinds the consumer to the
    /// committed offsets. No state is wiped, except a corrupted task's.
    fn recover(&mut self, reason: &str, new_producer: bool) -> Result<()> {
        tracing::warn!(thread = self.spec.index, %reason, new_producer, "rolling back to the last commit");
        self.spec.shared.recoveries.fetch_add(1, Ordering::Relaxed);
        self.abort_all();
        self.close_tasks();
        // Whatever failed first (a record's delivery, say), a fenced or broken producer is
        // replaced now, not after another roll-back.
        let new_producer = new_producer || self.producer.is_fatal();
        if new_producer {
            // The old producer's count goes with it otherwise.
            self.spec.shared.sent.fetch_add(self.producer.take_sent(), Ordering::Relaxed);
            self.producer = self.io.new_producer()?;
        }
        if self.assigned.is_empty() {
            return Ok(());
        }
        let assigned: Vec<Partition> = self.assigned.iter().cloned().collect();
        // A partition without a committed offset starts from the beginning (auto.offset.reset).
        let rewind = self.open_tasks(&assigned)?;
        // Partitions paused earlier run again unless their task restores.
        self.consumer.resume(&assigned)?;
        self.consumer.seek(&rewind)?;
        self.pause_restoring()
    }

    /// Wipes the stores of the tasks found corrupted and not opened again (closing): whoever
    /// opens them next restores them from their changelogs. Best effort: a store that cannot
    /// be wiped is said in the log.
    pub(super) fn wipe_corrupted(&mut self) {
        for id in std::mem::take(&mut self.corrupted) {
            for store in self.spec.topology.stores_of(id.subtopology) {
                if let Err(e) = self.stores.wipe(id, store.name()) {
                    tracing::warn!(task = %id, store = store.name(), error = %e, "could not wipe a corrupted store");
                }
            }
        }
    }
}
