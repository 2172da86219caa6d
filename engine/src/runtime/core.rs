//! The runtime core: one stream thread's tasks, their input queues, consumed offsets, held
//! output and restores, and the commit cycle, as a state machine driven one turn at a time
//! ([`Core::turn`]) through the traits of [`io`](super::io). It owns no thread and reads no
//! clock of its own: `kafka::thread` drives it with rdkafka clients.
//!
//! One turn polls records into per-partition queues, handles rebalance events, processes
//! each task in timestamp order, sends output and the stores' changelog records (to the
//! task's partition) as they are produced, restores a slice of the restoring stores, and
//! commits every commit interval (see [`commit`](super::commit)).
//!
//! Rebalances are handled by the core, not in the consumer's callback: the consumer records
//! the event and waits for the core to assign or unassign. Before giving up partitions the
//! core commits, so the next owner starts exactly where this one stopped.
//!
//! The protocol is cooperative (incremental) when every sub-topology reads one topic: a
//! rebalance then takes away only the partitions that move, and the core closes only their
//! tasks while the others keep their stores, queues and position. A sub-topology reading
//! several co-partitioned topics (a join) needs partition `n` of each on one thread, which only
//! the `range` assignor guarantees; such topologies rebalance eagerly (every task is closed and
//! the new assignment opened).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moldau_state_store::{ChangelogRecord, MemoryBudget, StoreReader};
use parking_lot::Mutex;

use super::collector::OutputRecord;
use super::io::{Clock, Consumer, Partition, Producer, Purge, Restore, Stores};
use super::routes::Routes;
use super::task::StreamTask;
use crate::error::{Error, Recovery, Result};
use crate::kafka::{ProcessingGuarantee, StreamsConfig};
use crate::processor::TaskId;
use crate::topology::InputRecord;
use crate::Topology;

/// How long to wait for acknowledgements at commit.
pub(super) const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How often stores write their commits to RocksDB when commits come more often: a crash
/// restores at most about this much from the changelogs, and an aggregation's keys updated
/// commit after commit are written once per interval instead of once per commit.
pub(super) const PERSIST_INTERVAL: Duration = Duration::from_secs(1);
/// How long a turn sleeps, with nothing to process, while a commit is under way.
const COMMIT_WAIT_STEP: Duration = Duration::from_micros(200);

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
    pub(crate) assignments_lost: AtomicU64,
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
    pub(crate) names: Arc<crate::kafka::TopicNames>,
    pub(crate) config: Arc<StreamsConfig>,
    pub(crate) budget: MemoryBudget,
    pub(crate) process_id: String,
    pub(crate) shared: Arc<Shared>,
}

/// The world a core runs in: its clients' types, and how to make a new producer (the old
/// one fenced or broken).
pub(crate) trait Io {
    /// The group metadata a transactional commit carries from consumer to producer.
    type Group;
    /// The group consumer.
    type Consumer: Consumer<Group = Self::Group>;
    /// The producer.
    type Producer: Producer<Group = Self::Group>;
    /// The changelog reader that restores stores.
    type Restore: Restore;
    /// The purging of consumed repartition records.
    type Purge: Purge;
    /// The clock.
    type Clock: Clock;
    /// Where the tasks' stores live.
    type Stores: Stores;

    /// A new producer, replacing a fenced or broken one (under exactly-once it fences the
    /// old one's transactions).
    fn new_producer(&mut self) -> Result<Self::Producer>;
}

/// The clients and clock a core starts with.
pub(crate) struct Parts<I: Io> {
    pub(crate) io: I,
    pub(crate) consumer: I::Consumer,
    pub(crate) producer: I::Producer,
    pub(crate) restorer: I::Restore,
    pub(crate) purger: I::Purge,
    pub(crate) clock: I::Clock,
    pub(crate) stores: I::Stores,
}

/// One input partition of a task.
pub(super) struct PartitionQueue {
    pub(super) logical: Arc<str>,
    pub(super) physical: Arc<str>,
    pub(super) partition: i32,
    pub(super) records: VecDeque<InputRecord>,
    /// Next offset to commit (after the last record processed).
    pub(super) consumed: Option<i64>,
    /// `consumed` when the transaction being committed was sealed.
    pub(super) sealed: Option<i64>,
    pub(super) committed: Option<i64>,
}

pub(super) struct TaskEntry {
    pub(super) task: StreamTask,
    pub(super) queues: Vec<PartitionQueue>,
    pub(super) idle_since: Option<Instant>,
    /// Whether changelog records went out since the transaction was last sealed or aborted
    /// (a commit then carries the task's new changelog positions, even with no input
    /// consumed).
    pub(super) dirty: bool,
    /// Read-only views of its stores (interactive queries), by store name.
    pub(super) readers: Vec<(String, StoreReader)>,
}

/// An input partition of a task: topology name, cluster name, partition.
pub(super) type TaskPartition = (Arc<str>, Arc<str>, i32);

/// One stream thread's runtime.
pub(crate) struct Core<I: Io> {
    pub(crate) spec: ThreadSpec,
    pub(super) io: I,
    pub(super) clock: I::Clock,
    pub(super) consumer: I::Consumer,
    pub(super) producer: I::Producer,
    pub(super) restorer: I::Restore,
    pub(super) purger: I::Purge,
    pub(super) stores: I::Stores,
    /// The tasks running: processed and committed.
    pub(super) tasks: BTreeMap<TaskId, TaskEntry>,
    /// The tasks whose stores are restoring (a slice per turn, see [`Restore::step`]): their
    /// partitions are paused, and they join `tasks` once restored.
    pub(super) restoring: BTreeMap<TaskId, TaskEntry>,
    /// Restoring tasks whose stores are all restored: they start running once no commit is
    /// under way (a commit covers the tasks that were running when it was sealed).
    pub(super) restored: BTreeSet<TaskId>,
    /// Where each consumed partition's records go.
    pub(super) routes: Routes,
    /// Output drained from a task, reused between sends.
    pub(super) out: Vec<OutputRecord>,
    /// Changelog records drained from a store, reused between sends.
    pub(super) changelog_buf: Vec<ChangelogRecord>,
    /// The partitions assigned to this thread (cluster topic, partition).
    pub(super) assigned: BTreeSet<Partition>,
    pub(super) last_commit: Instant,
    /// When the stores last wrote their commits to RocksDB.
    pub(super) last_persist: Instant,
    /// Commits since then that the stores hold in memory only (see `commit_stores`).
    pub(super) unpersisted: bool,
    /// When consumed repartition records were last purged, and up to where.
    pub(super) last_purge: Instant,
    pub(super) purged: BTreeMap<(Arc<str>, i32), i64>,
    pub(super) buffered: usize,
    /// Tasks found corrupted ([`Error::TaskCorrupted`]): their stores are wiped before they
    /// are opened again.
    pub(super) corrupted: BTreeSet<TaskId>,
    /// Records processed since the commit under way started (their output is held).
    pub(super) held: u64,
    pub(super) eos: bool,
    pub(super) logged: BTreeSet<String>,
}

impl<I: Io> Core<I> {
    /// A core for thread `spec` with `parts`; no task yet (they come with assignments).
    pub(crate) fn new(spec: ThreadSpec, parts: Parts<I>) -> Self {
        let Parts { io, consumer, producer, restorer, purger, clock, stores } = parts;
        let config = &spec.config;
        let eos = config.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2;
        let logged = spec.topology.stores.values().filter(|s| s.logged()).map(|s| s.name().to_string()).collect();
        let now = clock.now();
        Core {
            spec,
            io,
            clock,
            consumer,
            producer,
            restorer,
            purger,
            stores,
            tasks: BTreeMap::new(),
            restoring: BTreeMap::new(),
            restored: BTreeSet::new(),
            routes: Routes::default(),
            out: Vec::new(),
            changelog_buf: Vec::new(),
            assigned: BTreeSet::new(),
            last_commit: now,
            last_persist: now,
            unpersisted: false,
            last_purge: now,
            purged: BTreeMap::new(),
            buffered: 0,
            corrupted: BTreeSet::new(),
            held: 0,
            eos,
            logged,
        }
    }

    /// The group consumer (to leave the group once the core is closed).
    pub(crate) fn consumer_mut(&mut self) -> &mut I::Consumer {
        &mut self.consumer
    }

    /// The group consumer.
    #[cfg_attr(not(any(test, feature = "test-util")), allow(dead_code))]
    pub(crate) fn consumer(&self) -> &I::Consumer {
        &self.consumer
    }

    /// Tasks still restoring.
    #[cfg_attr(not(any(test, feature = "test-util")), allow(dead_code))]
    pub(crate) fn restoring(&self) -> usize {
        self.restoring.len()
    }

    /// Records polled and not processed yet.
    #[cfg_attr(not(any(test, feature = "test-util")), allow(dead_code))]
    pub(crate) fn buffered(&self) -> usize {
        self.buffered
    }

    /// The typed store `name` of whichever running task has it.
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn typed_store<S: 'static>(&self, name: &str) -> Option<std::rc::Rc<std::cell::RefCell<S>>> {
        self.tasks.values().find_map(|e| e.task.typed_store::<S>(name))
    }

    /// What is done with records that do not deserialize, or that processors reject, from now on.
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn set_deserialization_handler(&mut self, handler: crate::kafka::DeserializationHandler) {
        for entry in self.tasks.values_mut().chain(self.restoring.values_mut()) {
            entry.task.set_bad_input(handler.bad_input());
        }
        Arc::make_mut(&mut self.spec.config).deserialization_handler = handler;
    }

    pub(crate) fn shutting_down(&self) -> bool {
        self.spec.shared.shutdown.load(Ordering::Relaxed)
    }

    /// One turn, recovering from what failed in it: a failure that is not fatal rolls back to
    /// the last commit (see [`Error::recovery`]); a fatal one is returned.
    pub(crate) fn turn(&mut self) -> Result<()> {
        let interval = self.spec.config.effective_commit_interval();
        match self.cycle(interval) {
            Ok(()) => Ok(()),
            Err(e) if e.recovery() == Recovery::Stop => Err(e),
            // A Kafka operation failed (the cluster unreachable, a coordinator moving, a
            // request timing out), the tasks migrated, the producer was fenced, a store was
            // corrupted: roll back and go on once the cluster answers again.
            Err(e) => self.recover_until_done(e),
        }
    }

    /// One turn: poll, rebalance, process, restore, then end or start a commit.
    fn cycle(&mut self, interval: Duration) -> Result<()> {
        if self.producer.committing() && self.held >= self.spec.config.max_held_records {
            // Holding as much as it may: stop polling and processing until the commit ends.
            self.spec.shared.commit_stalls.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(thread = self.spec.index, held = self.held, "waiting for the commit under way");
            self.finish_commit()?;
        }
        let polled = self.poll()?;
        self.handle_rebalances()?;
        self.process()?;
        self.restore_step()?;
        if self.producer.commit_ended() {
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
        if self.producer.committing() && self.buffered == 0 && polled == 0 {
            // Nothing to process while the helper commits: give it the core.
            self.clock.sleep(COMMIT_WAIT_STEP);
        }
        Ok(())
    }

    /// The last commit, once the thread is told to stop: a failure that is not fatal rolls
    /// back (the next owner resumes from the last commit).
    pub(crate) fn final_commit(&mut self) -> Result<()> {
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

    /// Closes every task: a last commit was made when `clean`. Stopping on an error,
    /// exactly-once aborts what it did since the last commit, and at-least-once delivers the
    /// output of the records it processed (their offsets are not committed: the next owner
    /// processes them again). The caller leaves the group after.
    pub(crate) fn close(&mut self, clean: bool) {
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
    }

    /// Says in the shared state which tasks this thread runs and restores.
    pub(super) fn publish_tasks(&self) {
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
}
