//! Restoring stores from their changelog topics: from each store's checkpoint up to the
//! changelog position committed with the task's input offsets (see
//! [`TaskMeta`](crate::runtime::offset_meta::TaskMeta)), or to the end of its changelog
//! partition (the last stable offset: the consumer reads committed data only, so an aborted or
//! still-open transaction never reaches a store) when no position was committed.
//!
//! Records past the committed position were written after the last commit (at-least-once
//! sends changelog records as it goes) and their input is processed again: they are not
//! applied, and each key they name is logged again with its restored value, so that any later
//! replay of the changelog ends at the state the task resumes from.
//!
//! The committed position can lie past the partition's readable end: a transaction left open
//! by a killed producer holds the last stable offset back at its first record, and the
//! records committed after it (by the task's next owner) stay unreadable until the broker
//! aborts it at its transaction timeout. A store that reached the readable end short of its
//! committed position waits for the rest (its task does not start on a short store, which
//! broke exactly-once), asking the broker for the last stable offset about once a second: once
//! that is at or past the committed position, what is missing was aborted or compacted away
//! and the store is whole.
//!
//! A restore is incremental: the stream thread calls [`Restorer::step`] once per turn of its
//! loop, which reads a bounded slice of records (applied to the stores in batches of
//! `RESTORE_BATCH` per partition), so the thread keeps polling its
//! group consumer (no eviction past `max.poll.interval.ms`), processing and committing its
//! running tasks, and handling rebalances while a large store restores. A consumer error
//! (the brokers unreachable, a coordinator moving) is logged and the next step fetches again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moldau_state_store::ChangelogRecord;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::config::StreamsConfig;
use super::retry::until_answered;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::processor::TaskId;
use crate::runtime::io::{Clock, Restore};
use crate::runtime::restore::{RestoreWork, Restored};

/// Records applied per store write during a restore (a partition's records wait in memory
/// across steps until this many, or its end, are read).
const RESTORE_BATCH: usize = 10_000;
/// The most records one [`Restorer::step`] reads.
const STEP_RECORDS: usize = 20_000;
/// The longest one [`Restorer::step`] runs (it stops at the first record past it).
const STEP_TIME: Duration = Duration::from_millis(50);
/// How often a store held short of its committed position asks for the last stable offset.
const HELD_CHECK: Duration = Duration::from_secs(1);
/// How often a store still held short of its committed position says so again.
const HELD_WARN: Duration = Duration::from_secs(30);

/// Client context of the restore consumer: end-of-partition events are how it knows a
/// restore is done, not errors worth logging.
#[derive(Debug, Default)]
pub(crate) struct RestoreContext;

impl rdkafka::ClientContext for RestoreContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_))
            && error.rdkafka_error_code() != Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        {
            tracing::error!(%error, reason, "restore consumer error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for RestoreContext {}

/// A consumer outside the group that reads changelog partitions by assignment, each from its
/// own queue (an end-of-partition event names only the partition, its queue the topic), and
/// the stores restoring from them.
///
/// A partition's queue is split off before the partition is assigned: split after, the
/// records fetched in between went to the consumer's own queue and were read after newer ones
/// from the partition's queue, so older values overwrote newer ones in the store.
pub(crate) struct Restorer {
    consumer: Arc<BaseConsumer<RestoreContext>>,
    /// Reads uncommitted offsets: a changelog's high watermark (the restore consumer's end
    /// offsets are last stable offsets).
    offsets: BaseConsumer,
    /// The partitions restoring (changelog topic, partition), each with its queue once
    /// assigned.
    active: BTreeMap<(String, i32), Pending>,
}

impl std::fmt::Debug for Restorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restorer").field("tasks", &self.tasks()).finish()
    }
}

impl Restorer {
    pub(crate) fn new(config: &StreamsConfig, client_id: &str) -> Result<Self> {
        let group = format!("{}-restore", config.application_id);
        let settings = [
            ("group.id", group.as_str()),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", "earliest"),
            ("isolation.level", "read_committed"),
            // As for the stream thread's consumer: no 1 s pause once the local queue is full.
            ("fetch.queue.backoff.ms", "10"),
        ];
        let cc = config.rdkafka_config(
            "consumer",
            client_id,
            &settings,
            &["group.id", "isolation.level", "enable.partition.eof"],
        );
        let consumer: BaseConsumer<RestoreContext> =
            cc.create_with_context(RestoreContext).map_err(|e| Error::kafka("creating the restore consumer", e))?;
        let offsets: BaseConsumer = config
            .rdkafka_config("consumer", client_id, &[("isolation.level", "read_uncommitted")], &["isolation.level"])
            .create()
            .map_err(|e| Error::kafka("creating the changelog offsets reader", e))?;
        Ok(Restorer { consumer: Arc::new(consumer), offsets, active: BTreeMap::new() })
    }

    /// The first and next offsets of changelog partition `topic`-`partition` (its log start
    /// and high watermark, transactions still open included), waiting for the cluster while
    /// it cannot be reached.
    pub(crate) fn watermarks(&self, topic: &str, partition: i32, shutdown: &AtomicBool) -> Result<(i64, i64)> {
        until_answered(&format!("reading the offsets of {topic}-{partition}"), shutdown, || {
            self.offsets.fetch_watermarks(topic, partition, Duration::from_secs(10))
        })
    }

    /// Adds stores to restore.
    pub(crate) fn add(&mut self, work: Vec<RestoreWork>) {
        for w in work {
            let next = w.store.borrow().checkpoint().changelog_offset.max(0);
            let key = (w.topic.clone(), w.partition);
            self.active.insert(
                key,
                Pending {
                    work: w,
                    queue: None,
                    next,
                    ended: false,
                    held: None,
                    buf: Vec::new(),
                    last: -1,
                    tail: BTreeMap::new(),
                },
            );
        }
    }

    /// The tasks with stores still to restore.
    pub(crate) fn tasks(&self) -> BTreeSet<TaskId> {
        self.active.values().map(|p| p.work.task).collect()
    }

    /// Whether nothing is left to restore.
    pub(crate) fn is_idle(&self) -> bool {
        self.active.is_empty()
    }

    /// Drops the stores of task `id` (closed before its restore ended; each store's checkpoint
    /// says how far it got).
    pub(crate) fn cancel(&mut self, id: TaskId) {
        let gone: Vec<(String, i32)> =
            self.active.iter().filter(|(_, p)| p.work.task == id).map(|(k, _)| k.clone()).collect();
        for key in &gone {
            if let Some(p) = self.active.remove(key) {
                self.unassign(key, p.queue.is_some());
            }
        }
    }

    /// Stops reading partition `key` (assigned: it was in the assignment), leaving the others'
    /// fetches alone.
    fn unassign(&mut self, key: &(String, i32), assigned: bool) {
        if self.active.is_empty() {
            let _ = self.consumer.unassign();
            return;
        }
        if assigned {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&key.0, key.1);
            if let Err(e) = self.consumer.incremental_unassign(&tpl) {
                tracing::warn!(topic = key.0, partition = key.1, error = %e, "restore consumer: unassigning failed");
            }
        }
    }

    /// Starts partition `key`'s restore again from its store's checkpoint (what the store
    /// has applied): a record or end of it reached the consumer's own queue, out of order
    /// with its partition's queue.
    fn restart(&mut self, key: &(String, i32)) {
        let Some(p) = self.active.get_mut(key) else { return };
        let assigned = p.queue.take().is_some();
        p.next = p.work.store.borrow().checkpoint().changelog_offset.max(0);
        p.buf.clear();
        p.last = -1;
        p.tail.clear();
        p.held = None;
        p.ended = false;
        tracing::warn!(topic = key.0, partition = key.1, from = p.next, "restore: reading the partition again");
        self.unassign(key, assigned);
    }

    /// Drops everything (every task closed).
    pub(crate) fn clear(&mut self) {
        if !self.active.is_empty() {
            self.active.clear();
            let _ = self.consumer.unassign();
        }
    }

    /// Restores the next slice: reads up to `STEP_RECORDS` records or for about `STEP_TIME`,
    /// from every restoring partition in turn, waiting up to `wait` when none has any. A store
    /// whose changelog partition reached its end is finished; the tasks whose stores are all
    /// finished are returned.
    pub(crate) fn step(&mut self, wait: Duration, clock: &dyn Clock) -> Result<Restored> {
        let mut out = Restored::default();
        if self.active.is_empty() {
            return Ok(out);
        }
        if self.active.values().any(|p| p.queue.is_none()) {
            self.assign_new()?;
        }
        let start = clock.now();
        let mut read = 0;
        let mut waited = false;
        while read < STEP_RECORDS && clock.now().duration_since(start) < STEP_TIME {
            let mut any = false;
            for (key, p) in &mut self.active {
                if p.ended {
                    continue;
                }
                let Some(queue) = p.queue.take() else { continue };
                // A share per partition per round, so each progresses.
                let polled = p.drain(&queue, key, 1_000, Duration::ZERO, &mut out, start);
                p.queue = Some(queue);
                let n = polled?;
                read += n;
                any |= n > 0;
            }
            // The consumer's own queue serves its callbacks. Every partition's queue is split
            // off before it is assigned, so it holds no records; if one came, its order with
            // the partition's queue is unknown and the partition is read again.
            match self.consumer.poll(Duration::ZERO) {
                None => {}
                Some(Ok(m)) => {
                    let key = (m.topic().to_string(), m.partition());
                    tracing::warn!(
                        topic = key.0,
                        partition = key.1,
                        offset = m.offset(),
                        "restore: a record outside its partition's queue"
                    );
                    self.restart(&key);
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    tracing::warn!(partition, "restore: an end of partition outside its partition's queue");
                    let keys: Vec<_> = self.active.keys().filter(|k| k.1 == partition).cloned().collect();
                    for key in &keys {
                        self.restart(key);
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "restore consumer error; retrying"),
            }
            if any || self.active.values().any(|p| p.ended) {
                continue;
            }
            // Nothing fetched yet: wait (once per step) on one partition's queue, which wakes
            // as soon as its next fetch lands (the partitions of a broker are fetched together).
            if waited || wait.is_zero() {
                break;
            }
            waited = true;
            if let Some((key, p)) = self.active.iter_mut().find(|(_, p)| p.queue.is_some()) {
                let queue = p.queue.take().expect("found with a queue");
                let polled = p.drain(&queue, key, 1, wait, &mut out, start);
                p.queue = Some(queue);
                read += polled?;
            }
        }
        self.check_held(clock);
        let ended: Vec<(String, i32)> = self.active.iter().filter(|(_, p)| p.ended).map(|(k, _)| k.clone()).collect();
        for key in ended {
            let Some(mut p) = self.active.remove(&key) else { continue };
            let (applied, relogged) = p.finish(&key.0, key.1)?;
            out.applied += applied;
            out.relogged += relogged;
            let task = p.work.task;
            drop(p);
            self.unassign(&key, true);
            if !self.active.values().any(|p| p.work.task == task) {
                out.done.push(task);
            }
        }
        Ok(out)
    }

    /// Asks the broker for the last stable offset of each partition that reached its readable
    /// end short of its committed position (at most once per `HELD_CHECK`). One at or past the
    /// committed position means the rest is readable now: the partition is assigned again from
    /// where it stands, so that its next end of partition comes from a fetch that saw that
    /// offset (an earlier fetch's could be in flight), and that end ends its restore even
    /// short of the committed position (what is missing was aborted or compacted away).
    /// Otherwise it goes on waiting for the transaction that holds it back to end.
    fn check_held(&mut self, clock: &dyn Clock) {
        let now = clock.now();
        let mut readable = Vec::new();
        for ((topic, partition), p) in &mut self.active {
            let Some(held) = &mut p.held else { continue };
            if !held.at_end || now < held.next_check {
                continue;
            }
            held.next_check = now + HELD_CHECK;
            let until = p.work.until.unwrap_or(0);
            // The restore consumer reads committed records: its end offset is the last stable
            // offset.
            match self.consumer.fetch_watermarks(topic, *partition, HELD_CHECK) {
                Ok((_, stable)) if stable >= until => {
                    tracing::info!(
                        topic,
                        partition,
                        at = p.next,
                        committed_position = until,
                        stable,
                        waited_ms = now.duration_since(held.since).as_millis() as u64,
                        "restore: the changelog is readable past the committed position; reading on"
                    );
                    held.readable = true;
                    held.at_end = false;
                    readable.push((topic.clone(), *partition));
                }
                Ok((_, stable)) => {
                    if now >= held.next_warn {
                        held.next_warn = now + HELD_WARN;
                        tracing::warn!(
                            topic,
                            partition,
                            at = p.next,
                            committed_position = until,
                            stable,
                            waiting_ms = now.duration_since(held.since).as_millis() as u64,
                            "restore waits: an open transaction holds the changelog's last stable offset short of the \
                             committed position (a killed producer's transaction, aborted at its timeout)"
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(topic, partition, error = %e, "restore: reading the last stable offset failed; retrying")
                }
            }
        }
        for key in readable {
            let assigned = self.active.get_mut(&key).and_then(|p| p.queue.take()).is_some();
            self.unassign(&key, assigned);
        }
    }

    /// Adds the partitions not yet assigned to the assignment, each from its next offset and
    /// with its own queue, split off before the assignment (see [`Restorer`]); the others'
    /// fetches go on undisturbed.
    fn assign_new(&mut self) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), p) in &mut self.active {
            if p.queue.is_some() {
                continue;
            }
            let queue = self.consumer.split_partition_queue(topic, *partition).ok_or_else(|| {
                Error::Config(format!("restoring {topic}-{partition}: the consumer has no queue for the partition"))
            })?;
            p.queue = Some(queue);
            tpl.add_partition_offset(topic, *partition, Offset::Offset(p.next))
                .map_err(|e| Error::kafka(format!("restoring {topic}"), e))?;
        }
        if let Err(e) = self.consumer.incremental_assign(&tpl) {
            // Split again, and assigned, on the next step.
            for e in tpl.elements() {
                if let Some(p) = self.active.get_mut(&(e.topic().to_string(), e.partition())) {
                    p.queue = None;
                }
            }
            return Err(Error::kafka("assigning changelogs for restore", e));
        }
        failpoint::hit("restore.assigned");
        Ok(())
    }
}

/// A partition whose restore reached the readable end short of its committed position.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// When it first did.
    since: Instant,
    /// Whether it is at the readable end now (no record read since).
    at_end: bool,
    /// When to ask for the last stable offset next.
    next_check: Instant,
    /// When to say again that it waits.
    next_warn: Instant,
    /// Whether the last stable offset was seen at or past the committed position (the next
    /// end of partition ends the restore).
    readable: bool,
}

/// One partition being restored.
struct Pending {
    work: RestoreWork,
    /// Its records (and end) once assigned.
    queue: Option<PartitionQueue<RestoreContext>>,
    /// The offset to read from next (where an assignment starts).
    next: i64,
    /// Whether its end was reached (it is finished at the end of the step).
    ended: bool,
    /// Set once its readable end was reached short of the committed position.
    held: Option<Held>,
    /// Records read, not yet applied.
    buf: Vec<ChangelogRecord>,
    /// Offset of the last record in `buf`.
    last: i64,
    /// Keys of records past the committed position, with their newest timestamp.
    tail: BTreeMap<Vec<u8>, i64>,
}

impl Restore for Restorer {
    fn watermarks(&self, topic: &str, partition: i32, shutdown: &AtomicBool) -> Result<(i64, i64)> {
        Restorer::watermarks(self, topic, partition, shutdown)
    }
    fn add(&mut self, work: Vec<RestoreWork>) {
        Restorer::add(self, work)
    }
    fn is_idle(&self) -> bool {
        Restorer::is_idle(self)
    }
    fn cancel(&mut self, id: TaskId) {
        Restorer::cancel(self, id)
    }
    fn clear(&mut self) {
        Restorer::clear(self)
    }
    fn step(&mut self, wait: Duration, clock: &dyn Clock) -> Result<Restored> {
        Restorer::step(self, wait, clock)
    }
}

impl Pending {
    /// Takes up to `max` records from `queue` (the partition's), waiting up to `wait` for the
    /// first; notes the partition's end. Returns the records taken.
    fn drain(
        &mut self,
        queue: &PartitionQueue<RestoreContext>,
        key: &(String, i32),
        max: usize,
        wait: Duration,
        out: &mut Restored,
        now: Instant,
    ) -> Result<usize> {
        let mut timeout = wait;
        let mut taken = 0;
        while taken < max {
            match queue.poll(timeout) {
                None => break,
                Some(Ok(m)) => {
                    taken += 1;
                    if let Some(held) = &mut self.held {
                        held.at_end = false;
                    }
                    self.take(&m)?;
                    if self.buf.len() >= RESTORE_BATCH {
                        out.applied += self.flush()?;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    match self.work.until.filter(|u| self.next < *u) {
                        // Short of the committed state: `Restorer::check_held` finds out why.
                        Some(until) => {
                            if self.held.is_some_and(|h| h.readable) {
                                tracing::info!(
                                    topic = key.0,
                                    partition = key.1,
                                    at = self.next,
                                    committed_position = until,
                                    "restore: the changelog read to its end; the records short of the committed \
                                     position were aborted or compacted away"
                                );
                                self.ended = true;
                                break;
                            }
                            let held = self.held.get_or_insert_with(|| {
                                tracing::info!(
                                    topic = key.0,
                                    partition = key.1,
                                    at = self.next,
                                    committed_position = until,
                                    "restore reached the changelog's readable end short of the committed position"
                                );
                                Held { since: now, at_end: true, next_check: now, next_warn: now, readable: false }
                            });
                            held.at_end = true;
                        }
                        None => self.ended = true,
                    }
                    break;
                }
                // The cluster unreachable, a leader moving: librdkafka reconnects and fetches
                // again.
                Some(Err(e)) => {
                    tracing::warn!(topic = key.0, partition = key.1, error = %e, "restore consumer error; retrying");
                    break;
                }
            }
            timeout = Duration::ZERO;
        }
        Ok(taken)
    }

    /// Takes record `m`: buffered to apply, or its key noted to relog when past the committed
    /// position.
    fn take(&mut self, m: &BorrowedMessage<'_>) -> Result<()> {
        if m.offset() < self.next {
            // Read already (a fetch from before the partition was last assigned).
            return Ok(());
        }
        self.next = m.offset() + 1;
        let Some(key) = m.key() else {
            return Err(Error::Store(moldau_state_store::Error::BadChangelog {
                store: self.work.store.borrow().name().to_string(),
                key: String::new(),
                reason: format!(
                    "the record at offset {} of {}-{} has a null key",
                    m.offset(),
                    self.work.topic,
                    self.work.partition
                ),
            }));
        };
        let timestamp = m.timestamp().to_millis().unwrap_or(-1);
        if self.work.until.is_some_and(|u| m.offset() >= u) {
            self.tail.insert(key.to_vec(), timestamp);
        } else {
            self.buf.push(ChangelogRecord { key: key.to_vec(), value: m.payload().map(<[u8]>::to_vec), timestamp });
            self.last = m.offset();
        }
        Ok(())
    }

    /// Applies the buffered records.
    fn flush(&mut self) -> Result<u64> {
        if self.buf.is_empty() {
            return Ok(0);
        }
        failpoint::hit("restore.batch");
        let n = self.buf.len() as u64;
        self.work.store.borrow_mut().restore(std::mem::take(&mut self.buf), self.last)?;
        Ok(n)
    }

    /// Ends the store's restore at the end of its partition: applies what is buffered, makes
    /// it durable and relogs the keys past the committed position; returns the records applied
    /// and the keys relogged.
    fn finish(&mut self, topic: &str, partition: i32) -> Result<(u64, u64)> {
        let applied = self.flush()?;
        let mut store = self.work.store.borrow_mut();
        store.finish_restore()?;
        if !self.tail.is_empty() {
            tracing::info!(
                store = store.name(),
                topic,
                partition,
                keys = self.tail.len(),
                "changelog records past the committed position: relogging their keys"
            );
        }
        let relogged = self.tail.len() as u64;
        for (key, timestamp) in std::mem::take(&mut self.tail) {
            store.relog(key, timestamp)?;
        }
        Ok((applied, relogged))
    }
}
