//! Polling and processing: records from the consumer into their task's queues, each task's
//! ready records processed in timestamp order, and what they produce sent as it comes (or
//! held while a commit is under way).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::core::{Core, Io, TaskEntry};
use super::io::{Clock, Consumer, Message, Produce, Producer, CHANGELOG, OUTPUT};
use super::queue::pick;
use crate::error::{Error, Result};
use crate::kafka::{DeserializationHandler, ErrorHandler};
use crate::processor::{Headers, TaskId};
use crate::topology::InputRecord;

/// Messages taken from the consumer per turn at most.
const POLL_BATCH: usize = 2_000;

impl<I: Io> Core<I> {
    /// Takes up to `POLL_BATCH` records from the consumer into the task queues; returns how
    /// many it took.
    pub(super) fn poll(&mut self) -> Result<usize> {
        self.producer.poll();
        let busy = self.buffered > 0 || self.producer.committing() || !self.restoring.is_empty();
        let mut timeout = if busy { Duration::ZERO } else { Duration::from_millis(20) };
        let mut taken = 0;
        let wall = self.clock.wall_ms();
        for _ in 0..POLL_BATCH {
            match self.consumer.poll(timeout) {
                None => break,
                Some(Ok(m)) => {
                    taken += 1;
                    if route(&mut self.tasks, &mut self.restoring, &mut self.routes, wall, &m) {
                        self.buffered += 1;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    break;
                }
            }
            timeout = Duration::ZERO;
            if self.consumer.has_rebalance_events() {
                break;
            }
        }
        Ok(taken)
    }

    /// Processes every ready record of every task, sending output as it comes (or holding it
    /// while a commit is under way).
    pub(super) fn process(&mut self) -> Result<()> {
        let now = self.clock.now();
        let wall = self.clock.wall_ms();
        let max_idle = self.spec.config.max_task_idle;
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            let mut n = 0u64;
            // Output is held while a commit is under way (a dead-letter record ends it).
            let during_commit = self.producer.committing();
            loop {
                let entry = self.tasks.get_mut(&id).expect("task exists");
                let heads = entry.queues.iter().map(|q| q.records.front().map(|r| r.timestamp));
                let Some(q) = pick(heads, now, max_idle, &mut entry.idle_since) else { break };
                let record = entry.queues[q].records.pop_front().expect("picked a non-empty queue");
                self.buffered -= 1;
                let result = entry.task.process(&record);
                entry.queues[q].consumed = Some(record.offset + 1);
                n += 1;
                if let Err(e) = result {
                    self.on_record_error(id, e, &record)?;
                }
                if n.is_multiple_of(1_000) && !self.producer.committing() {
                    self.send_pending(id)?;
                }
            }
            let entry = self.tasks.get_mut(&id).expect("task exists");
            // The queue ran dry: what processors hold back goes out now.
            entry.task.flush()?;
            entry.task.advance_wall_clock(wall)?;
            let rejected = entry.task.take_rejected();
            self.spec.shared.skipped.fetch_add(rejected, Ordering::Relaxed);
            if !self.producer.committing() {
                self.send_pending(id)?;
            }
            self.spec.shared.processed.fetch_add(n, Ordering::Relaxed);
            if during_commit {
                self.spec.shared.processed_while_committing.fetch_add(n, Ordering::Relaxed);
                self.held += n;
            }
            self.spec.shared.sent.fetch_add(self.producer.take_sent(), Ordering::Relaxed);
        }
        Ok(())
    }

    fn on_record_error(&mut self, id: TaskId, e: Error, record: &InputRecord) -> Result<()> {
        let config = self.spec.config.clone();
        match (&e, &config.deserialization_handler, config.processing_handler) {
            (Error::Deserialization { .. }, DeserializationHandler::LogAndContinue, _) => {
                tracing::warn!(error = %e, "skipping a record that does not deserialize");
            }
            (Error::Deserialization { .. }, DeserializationHandler::DeadLetter(topic), _) => {
                tracing::warn!(error = %e, topic, "sending a record that does not deserialize to the dead-letter topic");
                let headers = crate::runtime::collector::dead_letter_headers(
                    record.headers.clone(),
                    &e.to_string(),
                    &record.topic,
                    record.partition,
                    record.offset,
                );
                // Rare: rather than hold it, wait for the commit under way to end.
                self.finish_commit()?;
                let dead = Produce {
                    topic,
                    partition: None,
                    key: record.key.as_deref(),
                    value: record.value.as_deref(),
                    timestamp: record.timestamp,
                    opaque: OUTPUT,
                };
                self.producer.send(&dead, &headers)?;
            }
            (Error::Deserialization { .. }, DeserializationHandler::LogAndFail, _) => return Err(e),
            (Error::Processing { .. } | Error::Serialization { .. }, _, ErrorHandler::LogAndContinue) => {
                tracing::warn!(error = %e, "skipping a record whose processing failed");
            }
            (Error::Store(_), _, _) => {
                let Error::Store(e) = e else { unreachable!("matched a store error") };
                return Err(Error::of_task_store(id, e));
            }
            _ => return Err(e),
        }
        self.spec.shared.skipped.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Sends what task `id` has pending: its stores' changelog records, then its sinks'
    /// output.
    pub(super) fn send_pending(&mut self, id: TaskId) -> Result<()> {
        self.send_changelogs(id)?;
        self.send_output(id)
    }

    /// Sends the changelog records task `id`'s stores logged since the last call (to the
    /// task's partition). Sent as they come rather than at commit, so at-least-once does not
    /// hold a commit interval's changelog in memory and exactly-once does not end each
    /// transaction with a burst to wait for.
    fn send_changelogs(&mut self, id: TaskId) -> Result<()> {
        let stores: Vec<_> =
            self.tasks[&id].task.stores().map(|(n, s)| (self.logged.contains(n), n.to_string(), s)).collect();
        for (logged, name, store) in stores {
            store.borrow_mut().drain_changelog_into(&mut self.changelog_buf);
            let sent = if logged && !self.changelog_buf.is_empty() {
                let topic = self.spec.names.changelog(&name);
                let h = Headers::new();
                self.changelog_buf
                    .iter()
                    .try_for_each(|r| {
                        let record = Produce {
                            topic: &topic,
                            partition: Some(id.partition),
                            key: Some(&r.key),
                            value: r.value.as_deref(),
                            timestamp: r.timestamp,
                            opaque: CHANGELOG,
                        };
                        self.producer.send(&record, &h)
                    })
                    .map(|()| true)
            } else {
                Ok(false)
            };
            // Cleared, the buffer keeps its capacity for the next drain.
            self.changelog_buf.clear();
            if sent? {
                if let Some(entry) = self.tasks.get_mut(&id) {
                    entry.dirty = true;
                }
            }
        }
        Ok(())
    }

    /// Sends what task `id`'s sinks produced.
    pub(super) fn send_output(&mut self, id: TaskId) -> Result<()> {
        let entry = self.tasks.get_mut(&id).expect("task exists");
        entry.task.drain_output_into(&mut self.out);
        // An error drops the rest of the drained records with the iterator, as the transaction
        // is rolled back anyway.
        for r in self.out.drain(..) {
            let topic = self.spec.names.physical(&r.topic);
            let record = Produce {
                topic: &topic,
                partition: None,
                key: r.key.as_deref(),
                value: r.value.as_deref(),
                timestamp: r.timestamp,
                opaque: OUTPUT,
            };
            self.producer.send(&record, &r.headers)?;
        }
        Ok(())
    }
}

/// Queues message `m` in its task (running or restoring: a record fetched before its
/// partition was paused waits there); false if no task owns its partition any more. A record
/// without a timestamp takes the wall clock's `wall`.
fn route(
    running: &mut std::collections::BTreeMap<TaskId, TaskEntry>,
    restoring: &mut std::collections::BTreeMap<TaskId, TaskEntry>,
    routes: &mut super::routes::Routes,
    wall: i64,
    m: &impl Message,
) -> bool {
    let Some((task, q)) = routes.get(m) else { return false };
    let Some(entry) = running.get_mut(&task).or_else(|| restoring.get_mut(&task)) else { return false };
    let queue = &mut entry.queues[q];
    queue.records.push_back(InputRecord {
        topic: queue.logical.clone(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        timestamp: m.timestamp().unwrap_or(wall),
        headers: m.headers(),
    });
    true
}
