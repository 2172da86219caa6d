//! The runtime core's world in memory, for [`TopologyTestDriver`](super::TopologyTestDriver)
//! and the core's failure tests: a cluster of topic logs and committed offsets, a consumer
//! that reads them (committed records only), a transactional producer that appends to them at
//! commit, a restorer that replays changelog logs into stores, and a clock set by hand.
//!
//! One thread: the parts share the cluster through `Rc<RefCell<_>>`. Every topic partition
//! a record is sent to without a partition is partition 0.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moldau_state_store::{
    ChangelogRecord, Checkpoint, InMemoryStore, RawBatch, RawStore, RocksStore, Space, WriteMode,
};

use crate::error::{Error, Result};
use crate::processor::{Headers, TaskId};
use crate::runtime::commit_plan::CommitPlan;
use crate::runtime::io::{
    Clock, Committed, Consumer, Deliveries, Message, OffsetCommit, OpenedStore, Partition, Position, Produce, Producer,
    Purge, Rebalance, Restore, Stores, CHANGELOG,
};
use crate::runtime::offset_meta::TaskMeta;
use crate::runtime::restore::{RestoreWork, Restored};

/// A record in a memory log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogRecord {
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) timestamp: i64,
    pub(crate) headers: Headers,
}

/// Topic logs and the group's committed offsets.
#[derive(Debug, Default)]
pub(crate) struct MemoryCluster {
    /// (topic, partition) → records, offset = index.
    logs: BTreeMap<Partition, Vec<LogRecord>>,
    /// The group's committed offsets with their metadata.
    offsets: BTreeMap<Partition, (i64, Arc<str>)>,
}

/// A cluster shared by the parts of one core.
pub(crate) type SharedCluster = Rc<RefCell<MemoryCluster>>;

impl MemoryCluster {
    /// Appends `record` to `topic`-`partition`; returns its offset.
    pub(crate) fn append(&mut self, topic: &str, partition: i32, record: LogRecord) -> i64 {
        let log = self.logs.entry((topic.to_string(), partition)).or_default();
        log.push(record);
        log.len() as i64 - 1
    }

    /// The records of `topic`-`partition` from `from` on.
    pub(crate) fn read(&self, topic: &str, partition: i32, from: usize) -> &[LogRecord] {
        self.logs.get(&(topic.to_string(), partition)).map_or(&[], |l| l.get(from..).unwrap_or(&[]))
    }

    /// The next offset of `topic`-`partition`.
    pub(crate) fn end(&self, topic: &str, partition: i32) -> i64 {
        self.logs.get(&(topic.to_string(), partition)).map_or(0, |l| l.len() as i64)
    }

    /// The committed offset of `topic`-`partition`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn committed(&self, topic: &str, partition: i32) -> Option<i64> {
        self.offsets.get(&(topic.to_string(), partition)).map(|(o, _)| *o)
    }

    fn commit(&mut self, offsets: &[OffsetCommit]) {
        for o in offsets {
            self.offsets.insert((o.topic.to_string(), o.partition), (o.offset, o.metadata.clone()));
        }
    }
}

/// A clock set by hand: monotonic time from a fixed origin, and wall-clock milliseconds.
#[derive(Debug, Clone)]
pub(crate) struct ManualClock(Rc<ClockState>);

#[derive(Debug)]
struct ClockState {
    origin: Instant,
    elapsed: Cell<Duration>,
    wall: Cell<i64>,
}

impl ManualClock {
    /// A clock at wall time `wall_ms`.
    #[allow(clippy::disallowed_methods)] // any instant will do as the origin
    pub(crate) fn new(wall_ms: i64) -> Self {
        ManualClock(Rc::new(ClockState {
            origin: Instant::now(),
            elapsed: Cell::new(Duration::ZERO),
            wall: Cell::new(wall_ms),
        }))
    }

    /// Moves both clocks forward by `ms`.
    pub(crate) fn advance(&self, ms: i64) {
        self.advance_by(Duration::from_millis(ms.max(0) as u64));
    }

    /// Moves both clocks forward by `d` (the wall clock by whole milliseconds).
    fn advance_by(&self, d: Duration) {
        let before = self.0.elapsed.get();
        let after = before + d;
        self.0.elapsed.set(after);
        let ms = after.as_millis() as i64 - before.as_millis() as i64;
        self.0.wall.set(self.0.wall.get() + ms);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.0.origin + self.0.elapsed.get()
    }
    fn wall_ms(&self) -> i64 {
        self.0.wall.get()
    }
    /// Sleeping is time passing: the clock moves on at once.
    fn sleep(&self, d: Duration) {
        self.advance_by(d);
    }
}

/// A record a [`MemoryConsumer`] hands out.
#[derive(Debug)]
pub(crate) struct MemoryMessage {
    topic: Arc<str>,
    topic_key: usize,
    partition: i32,
    offset: i64,
    record: LogRecord,
}

impl Message for MemoryMessage {
    fn topic_key(&self) -> usize {
        self.topic_key
    }
    fn topic(&self) -> &str {
        &self.topic
    }
    fn partition(&self) -> i32 {
        self.partition
    }
    fn offset(&self) -> i64 {
        self.offset
    }
    fn key(&self) -> Option<&[u8]> {
        self.record.key.as_deref()
    }
    fn payload(&self) -> Option<&[u8]> {
        self.record.value.as_deref()
    }
    fn timestamp(&self) -> Option<i64> {
        (self.record.timestamp >= 0).then_some(self.record.timestamp)
    }
    fn headers(&self) -> Headers {
        self.record.headers.clone()
    }
}

/// A group consumer alone in its group: it is given every partition it subscribes to once
/// (one rebalance event), then reads the committed records of those not paused.
#[derive(Debug)]
pub(crate) struct MemoryConsumer {
    cluster: SharedCluster,
    /// Interned topic names: a topic's key is its index.
    topics: Vec<Arc<str>>,
    positions: BTreeMap<Partition, i64>,
    paused: BTreeSet<Partition>,
    events: Vec<Rebalance>,
    /// How many more records polls may hand out (`None`: any number).
    allowed: Option<usize>,
    /// Whether the next revocation is of an assignment the group already took away.
    lost: bool,
}

impl MemoryConsumer {
    /// A consumer given `partitions` at its first poll.
    pub(crate) fn new(cluster: SharedCluster, partitions: Vec<Partition>) -> Self {
        MemoryConsumer {
            cluster,
            topics: Vec::new(),
            positions: BTreeMap::new(),
            paused: BTreeSet::new(),
            events: vec![Rebalance::Assign(partitions)],
            allowed: None,
            lost: false,
        }
    }

    /// Records a rebalance event for the core's next turn.
    #[cfg(test)]
    pub(crate) fn push_event(&mut self, event: Rebalance) {
        self.events.push(event);
    }

    /// The member is evicted: the group takes its partitions away (revoked as lost).
    #[cfg(test)]
    pub(crate) fn lose_assignment(&mut self, partitions: Vec<Partition>) {
        self.lost = true;
        self.events.push(Rebalance::Revoke(partitions));
    }

    /// Lets polls hand out `n` more records, then none until the next call.
    pub(crate) fn allow(&mut self, n: usize) {
        self.allowed = Some(n);
    }

    /// Whether an assigned partition that is not paused has records left to read.
    pub(crate) fn has_records(&self) -> bool {
        let cluster = self.cluster.borrow();
        self.positions.iter().any(|(p, at)| !self.paused.contains(p) && cluster.end(&p.0, p.1) > *at)
    }

    fn topic_key(&mut self, topic: &str) -> (usize, Arc<str>) {
        match self.topics.iter().position(|t| &**t == topic) {
            Some(i) => (i, self.topics[i].clone()),
            None => {
                self.topics.push(topic.into());
                (self.topics.len() - 1, self.topics[self.topics.len() - 1].clone())
            }
        }
    }
}

impl Consumer for MemoryConsumer {
    type Group = ();
    type Message<'a> = MemoryMessage;

    fn poll(&mut self, _timeout: Duration) -> Option<Result<MemoryMessage>> {
        if self.allowed == Some(0) {
            return None;
        }
        let next = {
            let cluster = self.cluster.borrow();
            self.positions.iter().find_map(|(p, at)| {
                if self.paused.contains(p) {
                    return None;
                }
                let record = cluster.read(&p.0, p.1, *at as usize).first()?.clone();
                Some((p.clone(), *at, record))
            })
        };
        let ((topic, partition), offset, record) = next?;
        if let Some(n) = &mut self.allowed {
            *n -= 1;
        }
        self.positions.insert((topic.clone(), partition), offset + 1);
        let (topic_key, topic) = self.topic_key(&topic);
        Some(Ok(MemoryMessage { topic, topic_key, partition, offset, record }))
    }

    fn has_rebalance_events(&self) -> bool {
        !self.events.is_empty()
    }

    fn take_rebalance_events(&mut self) -> Vec<Rebalance> {
        std::mem::take(&mut self.events)
    }

    fn is_cooperative(&self) -> bool {
        true
    }

    fn assignment_lost(&self) -> bool {
        self.lost
    }

    fn assign(&mut self, positions: &[Position], _cooperative: bool) -> Result<()> {
        self.lost = false;
        for (topic, partition, offset) in positions {
            self.positions.insert((topic.clone(), *partition), offset.unwrap_or(0));
        }
        Ok(())
    }

    fn unassign(&mut self, partitions: &[Partition], cooperative: bool) -> Result<()> {
        if !cooperative {
            self.positions.clear();
        }
        for p in partitions {
            self.positions.remove(p);
            self.paused.remove(p);
        }
        Ok(())
    }

    fn pause(&mut self, partitions: &[Partition]) -> Result<()> {
        self.paused.extend(partitions.iter().cloned());
        Ok(())
    }

    fn resume(&mut self, partitions: &[Partition]) -> Result<()> {
        for p in partitions {
            self.paused.remove(p);
        }
        Ok(())
    }

    fn seek(&mut self, positions: &[Position]) -> Result<()> {
        for (topic, partition, offset) in positions {
            let key = (topic.clone(), *partition);
            if self.positions.contains_key(&key) {
                self.positions.insert(key, offset.unwrap_or(0));
            }
        }
        Ok(())
    }

    fn committed(&mut self, partitions: &[Partition], _shutdown: &AtomicBool) -> Result<Committed> {
        let cluster = self.cluster.borrow();
        Ok(partitions
            .iter()
            .map(|p| {
                let c = cluster.offsets.get(p);
                (p.clone(), (c.map(|(o, _)| *o), c.and_then(|(_, m)| TaskMeta::parse(m))))
            })
            .collect())
    }

    fn commit(&mut self, offsets: &[OffsetCommit]) -> Result<()> {
        self.cluster.borrow_mut().commit(offsets);
        Ok(())
    }

    fn group_metadata(&self) -> Option<()> {
        Some(())
    }
}

/// How a scripted failure fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum Fault {
    /// A transient Kafka error (a request timed out): the transaction is aborted.
    Transient,
    /// The producer was fenced: it fails from then on.
    Fenced,
    /// The group's generation changed under the commit (the tasks migrated).
    Migrated,
}

impl Fault {
    fn error(self, op: &str) -> Error {
        use rdkafka::types::RDKafkaErrorCode as Code;
        let code = match self {
            Fault::Transient => Code::RequestTimedOut,
            Fault::Fenced => Code::ProducerFenced,
            Fault::Migrated => Code::IllegalGeneration,
        };
        Error::from_code(op, Some(code), false, format!("scripted {self:?}"))
    }
}

/// Failures scripted for the memory producers of one core (shared with the producers that
/// replace them).
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// The `n`-th send from now fails (1: the next one).
    pub(crate) send: Option<(u64, Fault)>,
    /// The next transaction commit fails: Kafka aborts the transaction.
    pub(crate) commit: Option<Fault>,
    /// The next abort of a transaction fails (a timed-out commit still runs in the client):
    /// the producer is broken and must be replaced.
    pub(crate) abort_fails: bool,
    /// Commits started from now on stay under way (their helper still waits for the broker)
    /// until this is cleared or the core waits for them; a commit lands only when it ends,
    /// and an abort while it is under way drops it.
    pub(crate) stall_commits: bool,
    /// Producers made so far.
    pub(crate) producers: u64,
}

/// Scripted failures shared by a core's producers.
pub(crate) type SharedFaults = Rc<RefCell<Faults>>;

/// A producer that appends to the memory logs: transactional ones at commit (aborted
/// records never reach a log), the others at once.
#[derive(Debug)]
pub(crate) struct MemoryProducer {
    faults: SharedFaults,
    /// Fenced by a scripted failure: every call fails from then on.
    fenced: bool,
    cluster: SharedCluster,
    transactional: bool,
    in_txn: bool,
    /// The open transaction's records.
    pending: Vec<(Partition, LogRecord, usize)>,
    deliveries: RefCell<Deliveries>,
    sent: u64,
    /// The commit under way.
    committing: Option<Committing>,
    /// An abort failed: the producer must be replaced.
    broken: bool,
}

/// A commit under way in a [`MemoryProducer`].
#[derive(Debug)]
enum Committing {
    /// Its result, known at once (it landed, or the broker aborted it).
    Ended(Result<()>),
    /// Still under way: it lands when it ends.
    Stalled { plan: CommitPlan, records: Vec<(Partition, LogRecord, usize)> },
}

impl MemoryProducer {
    /// A producer on `cluster`, transactional or not, failing as `faults` says.
    pub(crate) fn new(cluster: SharedCluster, transactional: bool, faults: SharedFaults) -> Self {
        faults.borrow_mut().producers += 1;
        MemoryProducer {
            faults,
            fenced: false,
            cluster,
            transactional,
            in_txn: false,
            pending: Vec::new(),
            deliveries: RefCell::new(Deliveries::default()),
            sent: 0,
            committing: None,
            broken: false,
        }
    }

    /// Makes a transaction's records and offsets visible.
    fn land(&mut self, plan: &CommitPlan, records: Vec<(Partition, LogRecord, usize)>) {
        for (at, record, opaque) in records {
            self.append(&at, record, opaque);
        }
        let offsets = plan.offsets(&self.deliveries.borrow().changelog);
        self.cluster.borrow_mut().commit(&offsets);
    }

    /// Appends `record` to its log, noting a changelog record's offset.
    fn append(&self, at: &Partition, record: LogRecord, opaque: usize) {
        let offset = self.cluster.borrow_mut().append(&at.0, at.1, record);
        if opaque == CHANGELOG {
            let mut d = self.deliveries.borrow_mut();
            let e = d.changelog.entry(at.0.clone()).or_default().entry(at.1).or_insert(-1);
            *e = (*e).max(offset);
        }
    }
}

impl Producer for MemoryProducer {
    type Group = ();

    fn send(&mut self, record: &Produce<'_>, headers: &Headers) -> Result<()> {
        if self.committing.is_some() {
            // The core broke the producer's contract: nothing is sent while a commit runs.
            return Err(Error::processing("memory producer", "a record was sent while a commit was under way"));
        }
        if self.fenced {
            return Err(Fault::Fenced.error("producing"));
        }
        let fault = {
            let mut faults = self.faults.borrow_mut();
            match &mut faults.send {
                Some((1, fault)) => {
                    let fault = *fault;
                    faults.send = None;
                    Some(fault)
                }
                Some((n, _)) => {
                    *n -= 1;
                    None
                }
                None => None,
            }
        };
        if let Some(fault) = fault {
            self.fenced = fault == Fault::Fenced;
            return Err(fault.error(&format!("producing to {}", record.topic)));
        }
        let at = (record.topic.to_string(), record.partition.unwrap_or(0));
        let log = LogRecord {
            key: record.key.map(<[u8]>::to_vec),
            value: record.value.map(<[u8]>::to_vec),
            timestamp: record.timestamp,
            headers: headers.clone(),
        };
        if self.transactional {
            self.in_txn = true;
            self.pending.push((at, log, record.opaque));
        } else {
            self.append(&at, log, record.opaque);
        }
        self.sent += 1;
        Ok(())
    }

    fn poll(&self) -> i32 {
        0
    }

    fn in_txn(&self) -> bool {
        self.in_txn
    }

    fn drain(&self, _timeout: Duration) -> Result<()> {
        Ok(())
    }

    fn take_deliveries(&self) -> Deliveries {
        std::mem::take(&mut *self.deliveries.borrow_mut())
    }

    fn take_sent(&mut self) -> u64 {
        std::mem::take(&mut self.sent)
    }

    fn start_commit(&mut self, plan: CommitPlan, _group: (), _timeout: Duration) -> Result<()> {
        if self.fenced {
            return Err(Fault::Fenced.error("commit_transaction"));
        }
        self.in_txn = true;
        if let Some(fault) = self.faults.borrow_mut().commit.take() {
            // Kafka aborts the transaction: none of its records or offsets become visible.
            self.fenced = fault == Fault::Fenced;
            self.committing = Some(Committing::Ended(Err(fault.error("commit_transaction"))));
            return Ok(());
        }
        let records = std::mem::take(&mut self.pending);
        if self.faults.borrow().stall_commits {
            self.committing = Some(Committing::Stalled { plan, records });
            return Ok(());
        }
        self.land(&plan, records);
        self.committing = Some(Committing::Ended(Ok(())));
        Ok(())
    }

    fn committing(&self) -> bool {
        self.committing.is_some()
    }

    fn commit_ended(&self) -> bool {
        match &self.committing {
            Some(Committing::Stalled { .. }) => !self.faults.borrow().stall_commits,
            Some(Committing::Ended(_)) => true,
            None => false,
        }
    }

    fn finish_commit(&mut self) -> Result<()> {
        match self.committing.take() {
            Some(Committing::Ended(r)) => {
                r?;
                self.in_txn = false;
                Ok(())
            }
            // Waited for, the commit ends: it lands.
            Some(Committing::Stalled { plan, records }) => {
                self.land(&plan, records);
                self.in_txn = false;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn abort_txn(&mut self) {
        match self.committing.take() {
            // Ending the commit under way first, as the real producer does.
            Some(Committing::Stalled { plan, records }) => self.land(&plan, records),
            Some(Committing::Ended(_)) | None => {}
        }
        if self.in_txn && std::mem::take(&mut self.faults.borrow_mut().abort_fails) {
            self.broken = true;
        }
        self.pending.clear();
        self.in_txn = false;
        let _ = self.take_deliveries();
    }

    fn is_fatal(&self) -> bool {
        self.fenced || self.broken
    }
}

/// Restores stores from the memory logs, all at once.
#[derive(Default)]
pub(crate) struct MemoryRestore {
    cluster: SharedCluster,
    work: VecDeque<RestoreWork>,
    /// Stores on disk are taken as they are: see [`Self::trusting_stores`].
    trust_stores: bool,
}

impl MemoryRestore {
    /// A restorer reading `cluster`'s changelog logs.
    pub(crate) fn new(cluster: SharedCluster) -> Self {
        MemoryRestore { cluster, work: VecDeque::new(), trust_stores: false }
    }

    /// A restorer for stores kept on disk by an earlier driver: the memory topics start empty
    /// each time, so a changelog's end is not reported (a store would otherwise be found
    /// ahead of its empty changelog, corrupted, and wiped); what the logs hold is restored.
    pub(crate) fn trusting_stores(mut self) -> Self {
        self.trust_stores = true;
        self
    }

    /// Applies `w`'s changelog to its store up to its committed position and logs the keys
    /// past it again; returns the records applied and the keys relogged.
    fn restore(&self, w: &RestoreWork) -> Result<(u64, u64)> {
        let cluster = self.cluster.borrow();
        let mut store = w.store.borrow_mut();
        let from = store.checkpoint().changelog_offset.max(0);
        let mut batch = Vec::new();
        let mut last = -1;
        let mut tail = BTreeMap::new();
        for (i, r) in cluster.read(&w.topic, w.partition, from as usize).iter().enumerate() {
            let offset = from + i as i64;
            let Some(key) = r.key.clone() else {
                return Err(Error::Store(moldau_state_store::Error::BadChangelog {
                    store: store.name().to_string(),
                    key: String::new(),
                    reason: format!("the record at offset {offset} of {}-{} has a null key", w.topic, w.partition),
                }));
            };
            if w.until.is_some_and(|u| offset >= u) {
                tail.insert(key, r.timestamp);
            } else {
                batch.push(ChangelogRecord { key, value: r.value.clone(), timestamp: r.timestamp });
                last = offset;
            }
        }
        let applied = batch.len() as u64;
        if !batch.is_empty() {
            store.restore(batch, last)?;
        }
        store.finish_restore()?;
        let relogged = tail.len() as u64;
        for (key, timestamp) in tail {
            store.relog(key, timestamp)?;
        }
        Ok((applied, relogged))
    }
}

impl Restore for MemoryRestore {
    fn watermarks(&self, topic: &str, partition: i32, _shutdown: &AtomicBool) -> Result<(i64, i64)> {
        let end = self.cluster.borrow().end(topic, partition);
        Ok((0, if self.trust_stores { i64::MAX } else { end }))
    }

    fn add(&mut self, work: Vec<RestoreWork>) {
        self.work.extend(work);
    }

    fn is_idle(&self) -> bool {
        self.work.is_empty()
    }

    fn cancel(&mut self, id: TaskId) {
        self.work.retain(|w| w.task != id);
    }

    fn clear(&mut self) {
        self.work.clear();
    }

    fn step(&mut self, _wait: Duration, _clock: &dyn Clock) -> Result<Restored> {
        let mut out = Restored::default();
        let mut tasks = BTreeSet::new();
        while let Some(w) = self.work.pop_front() {
            let (applied, relogged) = self.restore(&w)?;
            out.applied += applied;
            out.relogged += relogged;
            tasks.insert(w.task);
        }
        out.done = tasks.into_iter().collect();
        Ok(out)
    }
}

/// Purging does nothing in memory: the logs keep every record.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct NoPurge;

impl Purge for NoPurge {
    fn purge(&self, _before: BTreeMap<(Arc<str>, i32), i64>) {}
}

/// Stores in memory (lost when their task closes: a reopened task restores from its
/// changelog), in a memory "disk" that outlives the core (what a crash leaves), or RocksDB
/// under a directory.
pub(crate) enum DriverStores {
    /// In-memory stores.
    Memory,
    /// In-memory stores kept across cores.
    #[cfg_attr(not(test), allow(dead_code))]
    Kept(Disk),
    /// RocksDB stores under a directory.
    Rocks(crate::runtime::stores::RocksStores),
}

/// The stores a [`DriverStores::Kept`] keeps, by task and name: what reached them is what
/// their stores wrote (commits they held in memory only are lost with a core that is never
/// closed, a crash).
pub(crate) type Disk = Arc<std::sync::Mutex<BTreeMap<(TaskId, String), Arc<std::sync::Mutex<InMemoryStore>>>>>;

/// A store of a [`Disk`].
struct KeptStore {
    name: String,
    inner: Arc<std::sync::Mutex<InMemoryStore>>,
}

impl KeptStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, InMemoryStore> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl RawStore for KeptStore {
    fn name(&self) -> &str {
        &self.name
    }
    fn get(&self, space: Space, key: &[u8]) -> moldau_state_store::Result<Option<Vec<u8>>> {
        self.lock().get(space, key)
    }
    fn scan(
        &self,
        space: Space,
        from: std::ops::Bound<&[u8]>,
        to: std::ops::Bound<&[u8]>,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> moldau_state_store::Result<()> {
        self.lock().scan(space, from, to, f)
    }
    fn segments(&self) -> Vec<i64> {
        self.lock().segments()
    }
    fn write(&mut self, writes: &RawBatch, checkpoint: &Checkpoint, mode: WriteMode) -> moldau_state_store::Result<()> {
        self.lock().write(writes, checkpoint, mode)
    }
    fn drop_segments(&mut self, segments: &[i64]) -> moldau_state_store::Result<()> {
        self.lock().drop_segments(segments)
    }
    fn checkpoint(&self) -> Option<Checkpoint> {
        self.lock().checkpoint()
    }
    fn approximate_count(&self) -> moldau_state_store::Result<u64> {
        self.lock().approximate_count()
    }
    fn flush(&mut self) -> moldau_state_store::Result<()> {
        self.lock().flush()
    }
}

impl Stores for DriverStores {
    fn open(&mut self, task: TaskId, name: &str, _shutdown: &AtomicBool) -> Result<OpenedStore> {
        match self {
            DriverStores::Memory => {
                Ok(OpenedStore { store: Box::new(InMemoryStore::new(name)), reader: None, rebuilt: None })
            }
            DriverStores::Kept(disk) => {
                let mut disk = disk.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let inner = disk
                    .entry((task, name.to_string()))
                    .or_insert_with(|| Arc::new(std::sync::Mutex::new(InMemoryStore::new(name))))
                    .clone();
                Ok(OpenedStore { store: Box::new(KeptStore { name: name.into(), inner }), reader: None, rebuilt: None })
            }
            // Opened as it is: a store that does not open is an error here, not rebuilt.
            DriverStores::Rocks(rocks) => {
                let store = RocksStore::open(&rocks.path(task, name), name, rocks.budget())?;
                let reader = Some(store.reader());
                Ok(OpenedStore { store: Box::new(store), reader, rebuilt: None })
            }
        }
    }

    fn wipe(&mut self, task: TaskId, name: &str) -> Result<()> {
        match self {
            DriverStores::Memory => Ok(()),
            DriverStores::Kept(disk) => {
                disk.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&(task, name.to_string()));
                Ok(())
            }
            DriverStores::Rocks(rocks) => rocks.wipe(task, name),
        }
    }
}
