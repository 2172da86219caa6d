//! A stream thread: one group consumer, one producer, the tasks of the partitions assigned to
//! it. The loop polls records into per-partition queues, processes each task in timestamp
//! order, sends output and the stores' changelog records (to the task's partition) as they
//! are produced, and commits every commit interval (see [`commit`]).
//!
//! Rebalances are handled by the loop, not in the callback: the consumer context records the
//! event and librdkafka waits for the loop to call `assign`/`unassign`. Before giving up
//! partitions the thread commits, so the next owner starts exactly where this one stopped.
//!
//! The protocol is cooperative (incremental) when every sub-topology reads one topic: a
//! rebalance then takes away only the partitions that move, and the thread closes only their
//! tasks while the others keep their stores, queues and position. A sub-topology reading
//! several co-partitioned topics (a join) needs partition `n` of each on one thread, which only
//! the `range` assignor guarantees; such topologies rebalance eagerly (every task is closed and
//! the new assignment opened).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moldau_state_store::{ChangelogRecord, MemoryBudget, StoreReader};
use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers as _, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::clock::SystemClock;
use super::config::{DeserializationHandler, ErrorHandler, ProcessingGuarantee, StreamsConfig};
use super::group::{assignment_strategy, is_cooperative, GroupContext, Rebalance};
use super::producer::{Committing, OutputProducer, Produce, CHANGELOG, OUTPUT};
use super::purge::Purger;
use super::queue::pick;
use super::restore::Restorer;
use super::routes::Routes;
use super::topics::TopicNames;
use crate::error::{Error, Recovery, Result};
use crate::failpoint;
use crate::processor::{Headers, TaskId};
use crate::runtime::collector::OutputRecord;
use crate::runtime::task::StreamTask;
use crate::topology::InputRecord;
use crate::Topology;

mod commit;
mod open;

/// Messages taken from the consumer per loop iteration at most.
const POLL_BATCH: usize = 2_000;
/// How long to wait for acknowledgements at commit.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How often stores write their commits to RocksDB when commits come more often: a crash
/// restores at most about this much from the changelogs, and an aggregation's keys updated
/// commit after commit are written once per interval instead of once per commit.
const PERSIST_INTERVAL: Duration = Duration::from_secs(1);
/// How long the loop sleeps, with nothing to process, while a commit is under way.
const COMMIT_WAIT_STEP: Duration = Duration::from_micros(200);

/// How long a closing thread serves its consumer after its assignment emptied, for librdkafka
/// to send LeaveGroup (it does once the revoke completes, a moment after).
const LEAVE_SETTLE: Duration = Duration::from_millis(100);

/// The longest a closing thread waits for its revoke to complete.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A running task's store: its name, the task's partition, and a read-only view of it.
pub(crate) type StoreView = (String, i32, StoreReader);

/// State shared by the threads of one application and its handle.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) shutdown: AtomicBool,
    pub(crate) processed: AtomicU64,
    pub(crate) processed_while_committing: AtomicU64,
    pub(crate) commit_stalls: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) restored: AtomicU64,
    pub(crate) relogged: AtomicU64,
    pub(crate) stores_wiped: AtomicU64,
    pub(crate) rebalances: AtomicU64,
    pub(crate) recoveries: AtomicU64,
    pub(crate) tasks_created: AtomicU64,
    pub(crate) tasks: Mutex<BTreeMap<usize, Vec<TaskId>>>,
    pub(crate) restoring: Mutex<BTreeMap<usize, Vec<TaskId>>>,
    pub(crate) errors: Mutex<Vec<Arc<Error>>>,
    /// Per thread, the stores of its running tasks: store name, partition, reader.
    pub(crate) stores: Mutex<BTreeMap<usize, Vec<StoreView>>>,
}

/// What one thread needs.
#[derive(Debug, Clone)]
pub(crate) struct ThreadSpec {
    pub(crate) index: usize,
    pub(crate) topology: Arc<Topology>,
    pub(crate) names: Arc<TopicNames>,
    pub(crate) config: Arc<StreamsConfig>,
    pub(crate) budget: MemoryBudget,
    pub(crate) process_id: String,
    pub(crate) shared: Arc<Shared>,
    pub(crate) purger: Arc<Purger>,
}

/// One input partition of a task.
struct PartitionQueue {
    logical: Arc<str>,
    physical: Arc<str>,
    partition: i32,
    records: VecDeque<InputRecord>,
    /// Next offset to commit (after the last record processed).
    consumed: Option<i64>,
    /// `consumed` when the transaction being committed was sealed.
    sealed: Option<i64>,
    committed: Option<i64>,
}

struct TaskEntry {
    task: StreamTask,
    queues: Vec<PartitionQueue>,
    idle_since: Option<Instant>,
    /// Whether changelog records went out since the transaction was last sealed or aborted
    /// (a commit then carries the task's new changelog positions, even with no input
    /// consumed).
    dirty: bool,
    /// Read-only views of its stores (interactive queries), by store name.
    readers: Vec<(String, StoreReader)>,
}

/// An input partition of a task: topology name, cluster name, partition.
type TaskPartition = (Arc<str>, Arc<str>, i32);

/// What a turn of the loop returns: an error says how to recover ([`Error::recovery`]).
type CycleResult<T = ()> = Result<T>;

/// Runs thread `spec` until shutdown; records a fatal error in the shared state.
pub(crate) fn run(spec: ThreadSpec) {
    let shared = spec.shared.clone();
    let index = spec.index;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        StreamThread::new(spec).and_then(|mut t| {
            let r = t.run_loop();
            t.close(r.is_ok());
            // Closed mid-way (a restore interrupted): the open transaction was rolled back, and
            // that is a clean stop, not an error.
            r.or_else(|e| if matches!(e, Error::ShuttingDown) { Ok(()) } else { Err(e) })
        })
    }))
    .unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Err(Error::processing("stream thread", format!("panicked: {what}")))
    });
    if let Err(e) = result {
        tracing::error!(thread = index, error = %e, "stream thread stopped");
        shared.errors.lock().push(Arc::new(e));
    }
    shared.tasks.lock().remove(&index);
    shared.restoring.lock().remove(&index);
}

struct StreamThread {
    spec: ThreadSpec,
    clock: SystemClock,
    consumer: BaseConsumer<GroupContext>,
    producer: OutputProducer,
    restorer: Restorer,
    /// The tasks running: processed and committed.
    tasks: BTreeMap<TaskId, TaskEntry>,
    /// The tasks whose stores are restoring (a slice per turn of the loop, see
    /// [`Restorer::step`]): their partitions are paused, and they join `tasks` once restored.
    restoring: BTreeMap<TaskId, TaskEntry>,
    /// Restoring tasks whose stores are all restored: they start running once no commit is
    /// under way (a commit covers the tasks that were running when it was sealed).
    restored: BTreeSet<TaskId>,
    /// Where each consumed partition's records go.
    routes: Routes,
    /// Output drained from a task, reused between sends.
    out: Vec<OutputRecord>,
    /// Changelog records drained from a store, reused between sends.
    changelog_buf: Vec<ChangelogRecord>,
    /// The partitions assigned to this thread (cluster topic, partition).
    assigned: BTreeSet<(String, i32)>,
    last_commit: Instant,
    /// When the stores last wrote their commits to RocksDB.
    last_persist: Instant,
    /// Commits since then that the stores hold in memory only (see `commit_stores`).
    unpersisted: bool,
    /// When consumed repartition records were last purged, and up to where.
    last_purge: Instant,
    purged: BTreeMap<(Arc<str>, i32), i64>,
    buffered: usize,
    /// The exactly-once commit under way, if any: nothing is sent until it has ended.
    committing: Option<Committing>,
    /// Tasks found corrupted ([`Error::TaskCorrupted`]): their stores are wiped before they
    /// are opened again.
    corrupted: BTreeSet<TaskId>,
    /// Records processed since that commit started (their output is held).
    held: u64,
    eos: bool,
    state_dir: PathBuf,
    logged: BTreeSet<String>,
}

impl StreamThread {
    fn new(spec: ThreadSpec) -> Result<Self> {
        let config = &spec.config;
        let app = &config.application_id;
        let client_id = client_id(&spec);
        let settings = [
            ("group.id", app.as_str()),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("isolation.level", "read_committed"),
            ("partition.assignment.strategy", assignment_strategy(&spec.topology)),
            // librdkafka pauses a partition's fetching for this long once its local queue passes
            // `queued.min.messages` or `queued.max.messages.kbytes`; at the 1 s default a fast
            // stream thread drains the queue and then waits (4× less throughput measured).
            ("fetch.queue.backoff.ms", "10"),
            // Members learn that the group is rebalancing from heartbeat answers. Under
            // cooperative rebalancing the partitions a member gives up stay unowned until every
            // member has rejoined for the second round; at librdkafka's 3 s default a thread
            // joining its process's group left half the partitions idle for ~3.7 s (the
            // two-thread windowed benchmark: 115-130k rec/s, ~210k at 1 s).
            ("heartbeat.interval.ms", "1000"),
        ];
        // The runtime's correctness rests on these: a user's value is ignored.
        let fixed = [
            "group.id",
            "enable.auto.commit",
            "enable.auto.offset.store",
            "partition.assignment.strategy",
            "isolation.level",
        ];
        let consumer_id = super::hosts::consumer_client_id(&format!("{client_id}-consumer"), config);
        let cc = config.rdkafka_config("consumer", &consumer_id, &settings, &fixed);
        let consumer: BaseConsumer<GroupContext> =
            cc.create_with_context(GroupContext::default()).map_err(|e| Error::kafka("creating the consumer", e))?;
        let eos = config.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2;
        let producer = make_producer(&spec, eos)?;
        let restorer = Restorer::new(config, &format!("{client_id}-restore-consumer"))?;
        let topics = spec.names.consumed();
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&refs).map_err(|e| Error::kafka("subscribing", e))?;
        let logged = spec.topology.stores.values().filter(|s| s.logged()).map(|s| s.name().to_string()).collect();
        let clock = SystemClock;
        Ok(StreamThread {
            state_dir: config.state_dir.join(app),
            spec,
            clock,
            consumer,
            producer,
            restorer,
            tasks: BTreeMap::new(),
            restoring: BTreeMap::new(),
            restored: BTreeSet::new(),
            routes: Routes::default(),
            out: Vec::new(),
            changelog_buf: Vec::new(),
            assigned: BTreeSet::new(),
            last_commit: clock.now(),
            last_persist: clock.now(),
            unpersisted: false,
            last_purge: clock.now(),
            purged: BTreeMap::new(),
            buffered: 0,
            committing: None,
            corrupted: BTreeSet::new(),
            held: 0,
            eos,
            logged,
        })
    }

    fn shutting_down(&self) -> bool {
        self.spec.shared.shutdown.load(Ordering::Relaxed)
    }

    /// One turn of the loop: poll, rebalance, process, then end or start a commit.
    fn cycle(&mut self, interval: Duration) -> CycleResult {
        if self.committing.is_some() && self.held >= self.spec.config.max_held_records {
            // Holding as much as it may: stop polling and processing until the commit ends.
            self.spec.shared.commit_stalls.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(thread = self.spec.index, held = self.held, "waiting for the commit under way");
            self.finish_commit()?;
        }
        let polled = self.poll()?;
        self.handle_rebalances()?;
        self.process()?;
        self.restore_step()?;
        if self.committing.as_ref().is_some_and(Committing::is_finished) {
            self.finish_commit()?;
        }
        let now = self.clock.now();
        if now.duration_since(self.last_purge) >= self.spec.config.repartition_purge_interval {
            self.last_purge = now;
            self.purge_repartition_topics();
        }
        if now.duration_since(self.last_commit) >= interval {
            return self.start_commit();
        }
        if self.committing.is_some() && self.buffered == 0 && polled == 0 {
            // Nothing to process while the helper commits: give it the core.
            std::thread::sleep(COMMIT_WAIT_STEP);
        }
        Ok(())
    }

    fn run_loop(&mut self) -> Result<()> {
        let interval = self.spec.config.effective_commit_interval();
        while !self.shutting_down() {
            match self.cycle(interval) {
                Ok(()) => {}
                Err(e) if e.recovery() == Recovery::Stop => return Err(e),
                // A Kafka operation failed (the cluster unreachable, a coordinator moving, a
                // request timing out), the tasks migrated, the producer was fenced, a store was
                // corrupted: roll back and go on once the cluster answers again.
                Err(e) => self.recover_until_done(e)?,
            }
        }
        match self.commit() {
            Ok(()) => Ok(()),
            Err(e) if e.recovery() == Recovery::Stop => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "the final commit failed; the next owner resumes from the last commit");
                self.note_corrupted(&e);
                self.abort_all();
                Ok(())
            }
        }
    }

    /// Takes up to `POLL_BATCH` records from the consumer into the task queues; returns how
    /// many it took.
    fn poll(&mut self) -> CycleResult<usize> {
        self.producer.poll();
        let busy = self.buffered > 0 || self.committing.is_some() || !self.restoring.is_empty();
        let mut timeout = if busy { Duration::ZERO } else { Duration::from_millis(20) };
        let mut taken = 0;
        for _ in 0..POLL_BATCH {
            match self.consumer.poll(timeout) {
                None => break,
                Some(Ok(m)) => {
                    taken += 1;
                    if route([&mut self.tasks, &mut self.restoring], &mut self.routes, self.clock, &m) {
                        self.buffered += 1;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    break;
                }
            }
            timeout = Duration::ZERO;
            if !self.consumer.context().events.lock().is_empty() {
                break;
            }
        }
        Ok(taken)
    }

    /// Processes every ready record of every task, sending output as it comes (or holding it
    /// while a commit is under way).
    fn process(&mut self) -> CycleResult {
        let now = self.clock.now();
        let wall = self.clock.wall_ms();
        let max_idle = self.spec.config.max_task_idle;
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            let mut n = 0u64;
            // Output is held while a commit is under way (a dead-letter record ends it).
            let during_commit = self.committing.is_some();
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
                if n.is_multiple_of(1_000) && self.committing.is_none() {
                    self.send_pending(id)?;
                }
            }
            let entry = self.tasks.get_mut(&id).expect("task exists");
            // The queue ran dry: what processors hold back goes out now.
            entry.task.flush()?;
            entry.task.advance_wall_clock(wall)?;
            let rejected = entry.task.take_rejected();
            self.spec.shared.skipped.fetch_add(rejected, Ordering::Relaxed);
            if self.committing.is_none() {
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

    fn on_record_error(&mut self, id: TaskId, e: Error, record: &InputRecord) -> CycleResult {
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
    fn send_pending(&mut self, id: TaskId) -> CycleResult {
        self.send_changelogs(id)?;
        self.send_output(id)
    }

    /// Sends the changelog records task `id`'s stores logged since the last call (to the
    /// task's partition). Sent as they come rather than at
    /// commit, so at-least-once does not hold a commit interval's changelog in memory and
    /// exactly-once does not end each transaction with a burst to wait for.
    fn send_changelogs(&mut self, id: TaskId) -> CycleResult {
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
    fn send_output(&mut self, id: TaskId) -> CycleResult {
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

    fn handle_rebalances(&mut self) -> CycleResult {
        if self.consumer.context().events.lock().is_empty() {
            return Ok(());
        }
        // A rebalance waits for the commit under way, never for more: the next one starts
        // only after the rebalance is handled, so a commit as long as the interval cannot keep
        // a rebalance waiting until the member is evicted. A revocation then commits again, in
        // line.
        self.finish_commit()?;
        let events = std::mem::take(&mut *self.consumer.context().events.lock());
        for event in events {
            self.spec.shared.rebalances.fetch_add(1, Ordering::Relaxed);
            let cooperative = is_cooperative(&self.consumer);
            match event {
                Rebalance::Revoke(tpl) => self.revoke(&tpl, cooperative)?,
                Rebalance::Assign(tpl) => {
                    // The kept tasks' work so far is committed first: opening the new tasks
                    // reads committed offsets and changelog ends, round trips a transaction
                    // need not wait for.
                    let committed = self.commit();
                    let rolled_back = self.abort_if_failed(committed)?;
                    failpoint::hit("rebalance.assign");
                    let positions = self.open_tasks(&tpl)?;
                    if cooperative {
                        self.consumer.incremental_assign(&positions).map_err(|e| Error::kafka("assigning", e))?;
                    } else {
                        self.consumer.assign(&positions).map_err(|e| Error::kafka("assigning", e))?;
                        self.assigned.clear();
                        self.last_commit = self.clock.now();
                    }
                    self.pause_restoring()?;
                    self.assigned.extend(tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())));
                    if let Some(e) = rolled_back {
                        // The kept tasks' records since the last commit were rolled back.
                        self.recover_from(&e)?;
                    }
                }
                Rebalance::Failed(reason) => {
                    tracing::warn!(%reason, "rebalance failed");
                    self.abort_all();
                    self.close_tasks();
                    let all = self.assigned_list()?;
                    self.assigned.clear();
                    let _ =
                        if cooperative { self.consumer.incremental_unassign(&all) } else { self.consumer.unassign() };
                }
            }
        }
        Ok(())
    }

    /// A commit made while handling a rebalance: if it failed, everything since the last
    /// commit is aborted, and the reason returned for a roll-back ([`Self::recover`]) once the
    /// rebalance is handled.
    fn abort_if_failed(&mut self, committed: CycleResult) -> CycleResult<Option<Error>> {
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

    /// Gives up `tpl`'s partitions: commits first (unless they were lost, and then nothing of
    /// theirs can be committed), closes their tasks, and hands them back. Under the cooperative
    /// protocol the other tasks stay open; if the commit failed they roll back to the last
    /// commit.
    fn revoke(&mut self, tpl: &TopicPartitionList, cooperative: bool) -> CycleResult {
        let lost = self.consumer.assignment_lost();
        tracing::info!(thread = self.spec.index, partitions = tpl.count(), cooperative, lost, "partitions revoked");
        let committed = if lost {
            Err(Error::TaskMigrated { op: "revoking partitions".into(), source: "the assignment was lost".into() })
        } else {
            self.commit()
        };
        let rolled_back = self.abort_if_failed(committed)?;
        if !cooperative {
            self.close_tasks();
            self.assigned.clear();
            self.consumer.unassign().map_err(|e| Error::kafka("unassigning", e))?;
            return Ok(());
        }
        self.close_tasks_of(tpl);
        for e in tpl.elements() {
            self.assigned.remove(&(e.topic().to_string(), e.partition()));
        }
        self.consumer.incremental_unassign(tpl).map_err(|e| Error::kafka("unassigning", e))?;
        if let Some(e) = rolled_back {
            // The remaining tasks' consumed records were rolled back: rewind them.
            self.recover_from(&e)?;
        }
        Ok(())
    }

    /// The assignment as a list.
    fn assigned_list(&self) -> Result<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in &self.assigned {
            tpl.add_partition_offset(topic, *partition, Offset::Invalid)
                .map_err(|e| Error::kafka("listing the assignment", e))?;
        }
        Ok(tpl)
    }

    /// Closes the tasks reading any of `tpl`'s partitions.
    fn close_tasks_of(&mut self, tpl: &TopicPartitionList) {
        let elements = tpl.elements();
        let gone: BTreeSet<(&str, i32)> = elements.iter().map(|e| (e.topic(), e.partition())).collect();
        let ids: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, e)| e.queues.iter().any(|q| gone.contains(&(&*q.physical, q.partition))))
            .map(|(id, _)| *id)
            .collect();
        let restoring: Vec<TaskId> = self
            .restoring
            .iter()
            .filter(|(_, e)| e.queues.iter().any(|q| gone.contains(&(&*q.physical, q.partition))))
            .map(|(id, _)| *id)
            .collect();
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

    fn close_tasks(&mut self) {
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

    /// Says in the shared state which tasks this thread runs and restores.
    fn publish_tasks(&self) {
        let ids: Vec<TaskId> = self.tasks.keys().chain(self.restoring.keys()).copied().collect();
        self.spec.shared.tasks.lock().insert(self.spec.index, ids);
        let restoring: Vec<TaskId> = self.restoring.keys().copied().collect();
        self.spec.shared.restoring.lock().insert(self.spec.index, restoring);
        let stores = self
            .tasks
            .iter()
            .flat_map(|(id, e)| e.readers.iter().map(|(name, r)| (name.clone(), id.partition, r.clone())))
            .collect();
        self.spec.shared.stores.lock().insert(self.spec.index, stores);
    }

    /// Pauses the partitions of the tasks still restoring (after they were assigned or
    /// rewound): their records are fetched once the tasks run.
    fn pause_restoring(&self) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for q in self.restoring.values().flat_map(|e| &e.queues) {
            tpl.add_partition(&q.physical, q.partition);
        }
        if tpl.count() > 0 {
            self.consumer.pause(&tpl).map_err(|e| Error::kafka("pausing the partitions of restoring tasks", e))?;
        }
        Ok(())
    }

    /// Restores the next slice of the restoring tasks' stores (see [`Restorer::step`]); the
    /// tasks it finished start running, their partitions resumed, once no commit is under way.
    fn restore_step(&mut self) -> CycleResult {
        if !self.restorer.is_idle() {
            // Nothing else to do: wait a little for the restore's records.
            let idle = self.buffered == 0 && self.committing.is_none();
            let step = self.restorer.step(if idle { Duration::from_millis(10) } else { Duration::ZERO }, self.clock)?;
            self.spec.shared.restored.fetch_add(step.applied, Ordering::Relaxed);
            self.spec.shared.relogged.fetch_add(step.relogged, Ordering::Relaxed);
            self.restored.extend(step.done);
        }
        self.start_restored()
    }

    /// Starts the restored tasks, their partitions resumed, unless a commit is under way (it
    /// covers the tasks that were running when it was sealed). Called each turn of the loop
    /// and between one commit's end and the next one's start: when every commit outlasts the
    /// commit interval, that is the only moment with none under way.
    fn start_restored(&mut self) -> CycleResult {
        if self.restored.is_empty() || self.committing.is_some() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for id in std::mem::take(&mut self.restored) {
            let Some(entry) = self.restoring.remove(&id) else { continue };
            for q in &entry.queues {
                tpl.add_partition(&q.physical, q.partition);
            }
            self.start_task(id, entry);
        }
        self.consumer.resume(&tpl).map_err(|e| Error::kafka("resuming the partitions of restored tasks", e))?;
        self.publish_tasks();
        Ok(())
    }

    /// [`Self::recover`], again and again while it fails on Kafka (the cluster unreachable:
    /// an application stays up through an outage of any length), backing off up to 5 s
    /// between attempts, until the application closes.
    fn recover_until_done(&mut self, cause: Error) -> Result<()> {
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
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// [`Self::recover`] from error `e` (its task wiped and restored if it was corrupted).
    fn recover_from(&mut self, e: &Error) -> Result<()> {
        self.note_corrupted(e);
        self.recover(&e.to_string(), e.recovery() == Recovery::NewProducer)
    }

    /// Remembers the task error `e` found corrupted: its stores are wiped when it is next
    /// opened (restored from their changelogs) or when the thread closes.
    fn note_corrupted(&mut self, e: &Error) {
        if let Recovery::RestoreTask(task) = e.recovery() {
            tracing::warn!(thread = self.spec.index, %task, error = %e, "task corrupted: its stores will be restored");
            self.corrupted.insert(task);
        }
    }

    /// Rolls back to the last commit: aborts, reopens the assigned tasks from their stores
    /// (restoring what the changelog has beyond them) and rewinds the consumer to the
    /// committed offsets. No state is wiped.
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
            self.producer = make_producer(&self.spec, self.eos)?;
        }
        if self.assigned.is_empty() {
            return Ok(());
        }
        let tpl = self.assigned_list()?;
        // A partition without a committed offset starts from the beginning (auto.offset.reset).
        let rewind = self.open_tasks(&tpl)?;
        // Partitions paused earlier run again unless their task restores.
        self.consumer.resume(&tpl).map_err(|e| Error::kafka("resuming the assignment", e))?;
        self.consumer
            .seek_partitions(rewind, Duration::from_secs(30))
            .map_err(|e| Error::kafka("rewinding to the committed offsets", e))?;
        self.pause_restoring()
    }

    /// Leaves the group: a last commit when `clean`, then tasks closed and partitions handed
    /// back. Stopping on an error, exactly-once aborts what it did since the last commit, and
    /// at-least-once delivers the output of the records it processed (their offsets are not
    /// committed: the next owner processes them again).
    fn close(&mut self, clean: bool) {
        if !clean && !self.eos {
            let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
            let sent = ids.into_iter().try_for_each(|id| self.send_output(id));
            if sent.is_err() || self.producer.drain(DRAIN_TIMEOUT).is_err() {
                tracing::warn!(thread = self.spec.index, "the output of the last records could not all be delivered");
            }
        }
        if !clean {
            self.abort_all();
        }
        self.close_tasks();
        self.wipe_corrupted();
        self.consumer.context().closing.store(true, Ordering::Relaxed);
        // Cooperative: unsubscribing revokes the assignment through the rebalance callback,
        // which must find it still there (an incremental unassign of nothing fails and leaves
        // librdkafka waiting for one that succeeds).
        if !is_cooperative(&self.consumer) {
            let _ = self.consumer.unassign();
        }
        self.consumer.unsubscribe();
        self.await_leave();
    }

    /// Wipes the stores of the tasks found corrupted and not opened again (closing): whoever
    /// opens them next restores them from their changelogs. Best effort: a store that cannot
    /// be wiped is said in the log.
    fn wipe_corrupted(&mut self) {
        for id in std::mem::take(&mut self.corrupted) {
            for store in self.spec.topology.stores_of(id.subtopology) {
                let path = self.state_dir.join(id.to_string()).join(store.name());
                if let Err(e) = moldau_state_store::RocksStore::destroy(&path, store.name()) {
                    tracing::warn!(task = %id, store = store.name(), error = %e, "could not wipe a corrupted store");
                }
            }
        }
    }

    /// Serves the revoke that unsubscribing starts until the assignment is empty, then a
    /// little longer: librdkafka sends LeaveGroup only once that revoke completes, and a
    /// consumer closed before then ends without leaving (its session would have to time out
    /// before its partitions move).
    fn await_leave(&mut self) {
        let start = self.clock.now();
        let mut emptied = None;
        loop {
            let _ = self.consumer.poll(Duration::from_millis(10));
            let now = self.clock.now();
            if emptied.is_none() && self.consumer.assignment().map_or(true, |a| a.count() == 0) {
                emptied = Some(now);
            }
            let settled = emptied.is_some_and(|t| now.duration_since(t) >= LEAVE_SETTLE);
            if settled || now.duration_since(start) >= LEAVE_TIMEOUT {
                if emptied.is_none() {
                    tracing::warn!(thread = self.spec.index, "the revoke did not complete before closing");
                }
                return;
            }
        }
    }
}

/// The client id prefix of thread `spec`.
fn client_id(spec: &ThreadSpec) -> String {
    format!("{}-{}-StreamThread-{}", spec.config.application_id, spec.process_id, spec.index)
}

/// Thread `spec`'s producer: transactional under exactly-once, with the transactional id
/// `<application.id>-<process id>-<thread>` (stable across restarts of the instance).
fn make_producer(spec: &ThreadSpec, eos: bool) -> Result<OutputProducer> {
    let txn_id = format!("{}-{}-{}", spec.config.application_id, spec.process_id, spec.index);
    OutputProducer::new(&spec.config, &format!("{}-producer", client_id(spec)), eos.then_some(txn_id.as_str()))
}

/// Queues message `m` in its task (running or restoring: a record fetched before its
/// partition was paused waits there); false if no task owns its partition any more.
fn route(
    tasks: [&mut BTreeMap<TaskId, TaskEntry>; 2],
    routes: &mut Routes,
    clock: SystemClock,
    m: &BorrowedMessage<'_>,
) -> bool {
    let Some((task, q)) = routes.get(m) else { return false };
    let [running, restoring] = tasks;
    let Some(entry) = running.get_mut(&task).or_else(|| restoring.get_mut(&task)) else { return false };
    let queue = &mut entry.queues[q];
    let mut headers = Headers::new();
    if let Some(h) = m.headers() {
        for x in h.iter() {
            headers.add(x.key, x.value.map(<[u8]>::to_vec));
        }
    }
    let timestamp = m.timestamp().to_millis().unwrap_or_else(|| clock.wall_ms());
    queue.records.push_back(InputRecord {
        topic: queue.logical.clone(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        timestamp,
        headers,
    });
    true
}
