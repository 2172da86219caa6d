//! What the runtime core needs from the world, as small traits: the group consumer, the
//! producer, the changelog reader that restores stores, the purging of consumed repartition
//! records, and a clock. `kafka` implements them with rdkafka; the test driver with memory.
//! The core owns no threads and reads no clock of its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::processor::{Headers, TaskId};
use crate::runtime::commit_plan::CommitPlan;
use crate::runtime::offset_meta::TaskMeta;
use crate::runtime::restore::{RestoreWork, Restored};

/// Time, for intervals (monotonic) and punctuation (wall clock).
pub(crate) trait Clock {
    /// Monotonic now.
    fn now(&self) -> Instant;
    /// Milliseconds since the Unix epoch.
    fn wall_ms(&self) -> i64;
    /// Waits `d` (a backoff, or a pause while a commit runs elsewhere).
    fn sleep(&self, d: Duration);
}

/// A partition of a topic, by its name in the cluster.
pub(crate) type Partition = (String, i32);

/// Where the consumer starts reading a partition: an offset, or `None` for its beginning.
pub(crate) type Position = (String, i32, Option<i64>);

/// Each partition's committed offset and task metadata (`None`: none committed, or not ours).
pub(crate) type Committed = BTreeMap<Partition, (Option<i64>, Option<TaskMeta>)>;

/// One offset to commit, with the task metadata it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffsetCommit {
    /// Topic (cluster name).
    pub(crate) topic: Arc<str>,
    /// Partition.
    pub(crate) partition: i32,
    /// The next offset to read.
    pub(crate) offset: i64,
    /// [`TaskMeta`], encoded.
    pub(crate) metadata: Arc<str>,
}

/// A rebalance event the consumer recorded for the core to act on.
#[derive(Debug)]
pub(crate) enum Rebalance {
    /// Partitions given (cooperative: added to the assignment; eager: the whole assignment).
    Assign(Vec<Partition>),
    /// Partitions taken away (eager: the whole assignment).
    Revoke(Vec<Partition>),
    /// The rebalance failed.
    Failed(String),
}

/// A record the consumer fetched, borrowed from it.
pub(crate) trait Message {
    /// A cheap key for the record's topic, stable while the consumer lives (routes are cached
    /// by it, so the topic's name is looked at once).
    fn topic_key(&self) -> usize;
    /// The topic's name.
    fn topic(&self) -> &str;
    /// Partition.
    fn partition(&self) -> i32;
    /// Offset.
    fn offset(&self) -> i64;
    /// Key bytes.
    fn key(&self) -> Option<&[u8]>;
    /// Value bytes.
    fn payload(&self) -> Option<&[u8]>;
    /// Timestamp (ms), if it has one.
    fn timestamp(&self) -> Option<i64>;
    /// The record's headers (empty when it has none; allocates only when it has some).
    fn headers(&self) -> Headers;
}

/// The group consumer of one stream thread.
pub(crate) trait Consumer {
    /// The group metadata a transactional commit of offsets carries.
    type Group;
    /// A fetched record.
    type Message<'a>: Message
    where
        Self: 'a;

    /// The next record, waiting up to `timeout` for one; `Some(Err)` for a consumer error
    /// (logged by the caller, the next poll tries again).
    fn poll(&mut self, timeout: Duration) -> Option<Result<Self::Message<'_>>>;
    /// Whether rebalance events wait to be handled.
    fn has_rebalance_events(&self) -> bool;
    /// The rebalance events recorded since the last call.
    fn take_rebalance_events(&mut self) -> Vec<Rebalance>;
    /// Whether the group rebalances cooperatively (incrementally).
    fn is_cooperative(&self) -> bool;
    /// Whether the assignment being revoked was lost (the member was evicted).
    fn assignment_lost(&self) -> bool;
    /// Takes `positions` into the assignment (cooperative: adds them; eager: they become it).
    fn assign(&mut self, positions: &[Position], cooperative: bool) -> Result<()>;
    /// Gives `partitions` up (eager: the whole assignment).
    fn unassign(&mut self, partitions: &[Partition], cooperative: bool) -> Result<()>;
    /// Stops fetching `partitions`.
    fn pause(&mut self, partitions: &[Partition]) -> Result<()>;
    /// Fetches `partitions` again.
    fn resume(&mut self, partitions: &[Partition]) -> Result<()>;
    /// Moves the fetch positions of assigned partitions.
    fn seek(&mut self, positions: &[Position]) -> Result<()>;
    /// The committed offsets and task metadata of `partitions`, read stable (a transactional
    /// commit still pending is waited for); waits for the cluster while it cannot be reached,
    /// until `shutdown`.
    fn committed(&mut self, partitions: &[Partition], shutdown: &AtomicBool) -> Result<Committed>;
    /// Commits `offsets` (at-least-once), waiting for the answer.
    fn commit(&mut self, offsets: &[OffsetCommit]) -> Result<()>;
    /// The group metadata for a transactional commit, `None` while the consumer is in no
    /// group generation.
    fn group_metadata(&self) -> Option<Self::Group>;
}

/// What delivery reports said since they were last taken.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    /// Last offset written per changelog topic and partition.
    pub(crate) changelog: HashMap<String, HashMap<i32, i64>>,
    /// The first failure, if any.
    pub(crate) error: Option<String>,
    /// Failed records.
    pub(crate) failed: u64,
}

/// A record to send.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Produce<'a> {
    /// Topic (cluster name).
    pub(crate) topic: &'a str,
    /// Partition, or `None` for the partitioner's choice.
    pub(crate) partition: Option<i32>,
    /// Key bytes.
    pub(crate) key: Option<&'a [u8]>,
    /// Value bytes.
    pub(crate) value: Option<&'a [u8]>,
    /// Timestamp (ms; negative: none).
    pub(crate) timestamp: i64,
    /// [`CHANGELOG`] or [`OUTPUT`].
    pub(crate) opaque: usize,
}

/// Opaque marking a changelog record (its offset is recorded).
pub(crate) const CHANGELOG: usize = 1;
/// Opaque marking any other record.
pub(crate) const OUTPUT: usize = 0;

/// The producer of one stream thread: transactional under exactly-once, with at most one
/// commit under way, which goes on while the thread processes the next records.
pub(crate) trait Producer {
    /// The consumer's group metadata a transactional commit carries.
    type Group;

    /// Sends one record (in the open transaction, beginning one if needed), waiting while the
    /// local queue is full.
    fn send(&mut self, record: &Produce<'_>, headers: &Headers) -> Result<()>;
    /// Serves the delivery reports that are ready; returns the records still in flight.
    fn poll(&self) -> i32;
    /// Whether a transaction is open.
    fn in_txn(&self) -> bool;
    /// Waits until every record sent is acknowledged or failed, for `timeout` at most.
    fn drain(&self, timeout: Duration) -> Result<()>;
    /// Takes the delivery reports gathered since the last call.
    fn take_deliveries(&self) -> Deliveries;
    /// The records accepted since the last call.
    fn take_sent(&mut self) -> u64;
    /// Starts committing the open transaction (beginning one if none is open): waits for
    /// every record to be acknowledged, adds `plan`'s offsets with `group`, commits. The
    /// caller sends nothing until [`finish_commit`](Self::finish_commit).
    fn start_commit(&mut self, plan: CommitPlan, group: Self::Group, timeout: Duration) -> Result<()>;
    /// Whether a commit started by [`start_commit`](Self::start_commit) has not been finished.
    fn committing(&self) -> bool;
    /// Whether the commit under way has ended (committed or failed).
    fn commit_ended(&self) -> bool;
    /// Waits for the commit under way to end; `Ok` when there is none. After a failure the
    /// transaction is still open, for [`abort_txn`](Self::abort_txn).
    fn finish_commit(&mut self) -> Result<()>;
    /// Ends the commit under way, if any (its outcome does not matter: the caller drops the
    /// sealed transaction too), then aborts the open transaction, if any (best effort: a
    /// failure makes the producer fatal, see [`is_fatal`](Self::is_fatal)).
    fn abort_txn(&mut self);
    /// Whether the producer is fenced or broken for good and must be replaced.
    fn is_fatal(&self) -> bool;
}

/// Restores stores from their changelogs, a slice per call of [`step`](Self::step).
pub(crate) trait Restore {
    /// The first and next offsets of changelog partition `topic`-`partition` (its log start
    /// and high watermark, open transactions included), waiting for the cluster while it
    /// cannot be reached, until `shutdown`.
    fn watermarks(&self, topic: &str, partition: i32, shutdown: &AtomicBool) -> Result<(i64, i64)>;
    /// Adds stores to restore.
    fn add(&mut self, work: Vec<RestoreWork>);
    /// Whether nothing is left to restore.
    fn is_idle(&self) -> bool;
    /// Drops the stores of task `id` (closed before its restore ended).
    fn cancel(&mut self, id: TaskId);
    /// Drops everything (every task closed).
    fn clear(&mut self);
    /// Restores the next slice, waiting up to `wait` for records when none is there.
    fn step(&mut self, wait: Duration, clock: &dyn Clock) -> Result<Restored>;
}

/// Deletes repartition records that were consumed and committed: those before each
/// `(topic, partition)`'s offset. Never waits for the answer.
pub(crate) trait Purge {
    /// Asks for the records to be deleted.
    fn purge(&self, before: BTreeMap<(Arc<str>, i32), i64>);
}

impl<T: Purge + ?Sized> Purge for Arc<T> {
    fn purge(&self, before: BTreeMap<(Arc<str>, i32), i64>) {
        (**self).purge(before)
    }
}

/// A store a task opened: the store, a read-only view for interactive queries when it has
/// one, and why it had to be rebuilt empty, if it was (corrupted where it lives).
pub(crate) struct OpenedStore {
    /// The store.
    pub(crate) store: Box<dyn moldau_state_store::RawStore>,
    /// A reader other threads may use.
    pub(crate) reader: Option<moldau_state_store::StoreReader>,
    /// Why it was rebuilt empty.
    pub(crate) rebuilt: Option<moldau_state_store::Error>,
}

/// Where tasks' stores live (RocksDB under the state directory, or memory).
pub(crate) trait Stores {
    /// Opens store `name` of task `task`, waiting while another handle still holds it (a
    /// thread of this process closing the task that had it), until `shutdown`.
    fn open(&mut self, task: TaskId, name: &str, shutdown: &AtomicBool) -> Result<OpenedStore>;
    /// Deletes store `name` of task `task`, which must not be open.
    fn wipe(&mut self, task: TaskId, name: &str) -> Result<()>;
}
