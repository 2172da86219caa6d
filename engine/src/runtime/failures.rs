//! Failure-point tests of the runtime core, without a broker: the core runs an exactly-once
//! count against memory topics (see `testing::memory`) with RocksDB stores, a scripted
//! producer fails at one step of the commit cycle (or the core is dropped there, a crash),
//! and each test asserts the store's contents, the committed offsets and what was emitted.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use moldau_state_store::{BincodeSerde, KeyValueStore, MemoryBudget, StringSerde, U64Serde};

use super::core::{Core, Shared};
use super::io::{Producer as _, Rebalance};
use super::stores::RocksStores;
use crate::kafka::{ProcessingGuarantee, StreamsConfig};
use crate::processor::Headers;
use crate::processor::{required, InitContext, Processor, ProcessorContext, Record, StoreHandle};
use crate::testing::driver::{memory_core, DriverIo};
use crate::testing::memory::{
    Disk, DriverStores, Fault, Faults, LogRecord, ManualClock, MemoryRestore, SharedCluster, SharedFaults,
};
use crate::{StoreBuilder, Topology};

/// The commit interval, in clock milliseconds (below the stores' persist interval: commits
/// between persists stay in the stores' memory).
const INTERVAL_MS: i64 = 100;

type Counts = KeyValueStore<String, u64>;

/// Counts records per key in store `counts`, emitting each new count on `out`.
struct Count(Option<StoreHandle<Counts>>);

impl Processor<String, String, String, u64> for Count {
    fn init(&mut self, ctx: &mut InitContext<'_>) -> crate::Result<()> {
        self.0 = Some(ctx.store::<Counts>("counts")?);
        Ok(())
    }

    fn process(&mut self, r: Record<String, String>, ctx: &mut ProcessorContext<'_, String, u64>) -> crate::Result<()> {
        let n = {
            let store = self.0.as_ref().expect("initialized");
            let mut s = store.get();
            let n = s.get(&r.key)?.unwrap_or(0) + 1;
            s.put(&r.key, &n, r.timestamp)?;
            n
        };
        ctx.forward(r.with_value(n))
    }
}

fn count_topology() -> Topology {
    let mut t = Topology::new();
    t.add_source::<String, String>("in", &["in"], required(StringSerde), required(StringSerde))
        .unwrap()
        .add_processor("count", || Count(None), &["in"])
        .unwrap()
        .add_state_store(
            StoreBuilder::key_value::<String, u64>("counts", StringSerde, BincodeSerde::default()),
            &["count"],
        )
        .unwrap()
        .add_sink::<String, u64>("out", "out", required(StringSerde), required(U64Serde), &["count"])
        .unwrap();
    t
}

/// One core on memory topics `cluster` and RocksDB stores in a directory.
struct Harness {
    core: Core<DriverIo>,
    cluster: SharedCluster,
    faults: SharedFaults,
    clock: ManualClock,
    shared: Arc<Shared>,
    next_ts: i64,
}

impl Harness {
    /// A core that is given partition `in`-0 and has opened (and restored) its task.
    fn start(cluster: &SharedCluster, dir: &Path) -> Harness {
        Self::start_with(cluster, DriverStores::Rocks(RocksStores::new(dir.to_path_buf(), MemoryBudget::default())))
    }

    /// [`Self::start`] with its stores on `disk`, in memory: a core forgotten (never closed)
    /// leaves there what a crash leaves on disk.
    fn start_on(cluster: &SharedCluster, disk: &Disk) -> Harness {
        Self::start_with(cluster, DriverStores::Kept(disk.clone()))
    }

    fn start_with(cluster: &SharedCluster, stores: DriverStores) -> Harness {
        let config = StreamsConfig::new("app", "memory")
            .with_guarantee(ProcessingGuarantee::ExactlyOnceV2)
            .with_commit_interval(Duration::from_millis(INTERVAL_MS as u64));
        let faults = SharedFaults::default();
        let clock = ManualClock::new(1_000);
        let restorer = MemoryRestore::new(cluster.clone());
        let (core, shared) =
            memory_core(Arc::new(count_topology()), config, cluster, &faults, &clock, stores, restorer);
        let mut h = Harness { core, cluster: cluster.clone(), faults, clock, shared, next_ts: 1 };
        h.core.turn().expect("the assignment");
        assert_eq!(h.core.tasks.len(), 1, "the task runs");
        h.next_ts = h.cluster.borrow().end("in", 0) + 1;
        h
    }

    /// The process dies: nothing is closed, flushed or persisted.
    fn crash(self) {
        std::mem::forget(self);
    }

    /// Appends records with these keys to `in`.
    fn produce(&mut self, keys: &[&str]) {
        for k in keys {
            let record = LogRecord {
                key: Some(k.as_bytes().to_vec()),
                value: Some(b"v".to_vec()),
                timestamp: self.next_ts,
                headers: Headers::new(),
            };
            self.next_ts += 1;
            self.cluster.borrow_mut().append("in", 0, record);
        }
    }

    /// Turns until every record is processed (no commit interval passes).
    fn process(&mut self) {
        for _ in 0..100 {
            self.core.turn().expect("a turn");
            if !self.core.consumer().has_records() && self.core.buffered() == 0 {
                return;
            }
        }
        panic!("records still unprocessed after 100 turns");
    }

    /// One commit interval passes and the core turns: a commit starts (or one under way
    /// ends and the next starts).
    fn tick(&mut self) {
        self.clock.advance(INTERVAL_MS);
        self.core.turn().expect("a turn");
    }

    /// What `out` holds (committed records only).
    fn emitted(&self) -> Vec<(String, u64)> {
        self.cluster
            .borrow()
            .read("out", 0, 0)
            .iter()
            .map(|r| {
                let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
                (key, u64::from_be_bytes(r.value.as_deref().unwrap().try_into().unwrap()))
            })
            .collect()
    }

    /// The running task's count of `key`.
    fn count(&self, key: &str) -> Option<u64> {
        let store = self.core.typed_store::<Counts>("counts").expect("the task runs");
        let n = store.borrow().get(&key.to_string()).unwrap();
        n
    }

    fn committed(&self) -> Option<i64> {
        self.cluster.borrow().committed("in", 0)
    }

    fn recoveries(&self) -> u64 {
        self.shared.recoveries.load(Ordering::Relaxed)
    }
}

fn emitted(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

/// The count store's checkpoint on `disk`: the changelog offset it holds up to.
fn checkpoint_on_disk(disk: &Disk) -> i64 {
    let disk = disk.lock().unwrap();
    let store = disk[&(crate::TaskId { subtopology: 0, partition: 0 }, "counts".to_string())].lock().unwrap();
    moldau_state_store::RawStore::checkpoint(&*store).map_or(0, |c| c.changelog_offset)
}

/// A run with its first two records committed: a=1, b=1.
fn committed_start(cluster: &SharedCluster, dir: &Path) -> Harness {
    started(Harness::start(cluster, dir))
}

/// [`committed_start`] on a memory disk.
fn committed_start_on(cluster: &SharedCluster, disk: &Disk) -> Harness {
    started(Harness::start_on(cluster, disk))
}

fn started(mut h: Harness) -> Harness {
    h.produce(&["a", "b"]);
    h.process();
    h.tick();
    h.tick();
    assert_eq!(h.emitted(), emitted(&[("a", 1), ("b", 1)]));
    assert_eq!(h.committed(), Some(2));
    h
}

/// A transaction that failed as `script` sets up (a send or the commit fails) is rolled
/// back: the store is back at the last commit, and after reprocessing each count is
/// emitted once.
fn roll_back_and_reprocess(script: impl FnOnce(&mut Faults)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let cluster = SharedCluster::default();
    let mut h = committed_start(&cluster, dir.path());
    script(&mut h.faults.borrow_mut());
    h.produce(&["a", "c"]);
    for _ in 0..5 {
        if h.recoveries() > 0 {
            break;
        }
        h.tick();
    }
    assert_eq!(h.recoveries(), 1, "the failure rolled back once");
    assert!(h.faults.borrow().send.is_none() && h.faults.borrow().commit.is_none(), "the fault was hit");
    assert!(h.core.tasks.is_empty(), "the task reopens, restoring");
    h.core.turn().unwrap();
    assert_eq!((h.count("a"), h.count("c")), (Some(1), None), "the store is back at the last commit");
    assert_eq!(h.committed(), Some(2));
    h.process();
    h.tick();
    h.tick();
    assert_eq!(h.emitted(), emitted(&[("a", 1), ("b", 1), ("a", 2), ("c", 1)]), "each count once");
    assert_eq!((h.count("a"), h.count("b"), h.count("c")), (Some(2), Some(1), Some(1)));
    assert_eq!(h.committed(), Some(4));
    h
}

#[test]
fn should_roll_back_a_transaction_whose_send_failed() {
    // The third send of the transaction (its changelog records go first: a's, c's, then a's
    // output): two records went, the rest did not.
    let h = roll_back_and_reprocess(|f| f.send = Some((3, Fault::Transient)));
    assert_eq!(h.faults.borrow().producers, 1, "a transient failure keeps the producer");
}

#[test]
fn should_roll_back_a_transaction_whose_commit_failed() {
    let h = roll_back_and_reprocess(|f| f.commit = Some(Fault::Transient));
    assert_eq!(h.faults.borrow().producers, 1);
}

/// A commit whose outcome is unknown (it timed out) leaves the abort failing: the producer is
/// broken and replaced at the roll-back.
#[test]
fn should_replace_a_producer_whose_abort_failed() {
    let h = roll_back_and_reprocess(|f| {
        f.commit = Some(Fault::Transient);
        f.abort_fails = true;
    });
    assert!(!h.faults.borrow().abort_fails, "the abort failed");
    assert_eq!(h.faults.borrow().producers, 2, "the broken producer was replaced");
}

#[test]
fn should_replace_a_fenced_producer_and_go_on_exactly_once() {
    let h = roll_back_and_reprocess(|f| f.commit = Some(Fault::Fenced));
    assert_eq!(h.faults.borrow().producers, 2, "the fenced producer was replaced");
}

#[test]
fn should_replace_a_producer_fenced_at_a_send() {
    let h = roll_back_and_reprocess(|f| f.send = Some((1, Fault::Fenced)));
    assert_eq!(h.faults.borrow().producers, 2, "the fenced producer was replaced");
}

#[test]
fn should_roll_back_when_the_tasks_migrated_under_the_commit() {
    let h = roll_back_and_reprocess(|f| f.commit = Some(Fault::Migrated));
    assert_eq!(h.faults.borrow().producers, 1);
}

/// A revocation while a commit is under way, with records processed meanwhile (their output
/// held): the commit ends first, then the held output goes out and the revoked task's work
/// since is committed, and the task is closed. Reassigned, it resumes from its store and the
/// committed offset, and nothing is emitted twice.
#[test]
fn should_end_the_commit_under_way_then_commit_and_close_a_revoked_task() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = SharedCluster::default();
    let mut h = committed_start(&cluster, dir.path());
    h.produce(&["a"]);
    h.process();
    h.faults.borrow_mut().stall_commits = true;
    h.tick();
    assert!(h.core.producer.committing(), "a commit is under way");
    h.produce(&["c"]);
    h.process();
    assert_eq!(h.core.held, 1, "c was processed during the commit, its output held");
    assert_eq!(h.emitted(), emitted(&[("a", 1), ("b", 1)]), "the commit under way has not landed");
    h.core.consumer_mut().push_event(Rebalance::Revoke(vec![("in".into(), 0)]));
    h.core.turn().unwrap();
    assert!(h.core.tasks.is_empty(), "the task is closed");
    assert_eq!(h.emitted(), emitted(&[("a", 1), ("b", 1), ("a", 2), ("c", 1)]), "both transactions committed");
    assert_eq!(h.committed(), Some(4), "the next owner starts after c");
    assert_eq!(h.recoveries(), 0);

    h.faults.borrow_mut().stall_commits = false;
    h.core.consumer_mut().push_event(Rebalance::Assign(vec![("in".into(), 0)]));
    h.core.turn().unwrap();
    h.produce(&["c"]);
    h.process();
    h.tick();
    h.tick();
    assert_eq!(h.emitted(), emitted(&[("a", 1), ("b", 1), ("a", 2), ("c", 1), ("c", 2)]));
    assert_eq!((h.count("a"), h.count("b"), h.count("c")), (Some(2), Some(1), Some(2)));
    assert_eq!(h.committed(), Some(5));
}

/// A crash between the Kafka commit and the store commit: Kafka has the transaction, the
/// store on disk does not. The next run restores the store from its changelog up to the
/// committed position and resumes after the committed offset: nothing lost, nothing emitted
/// twice.
#[test]
fn should_restore_what_kafka_committed_after_a_crash_before_the_store_commit() {
    let disk = Disk::default();
    let cluster = SharedCluster::default();
    let mut h = committed_start_on(&cluster, &disk);
    // The stores persist the first commit (a=1, b=1) once the persist interval has passed.
    h.clock.advance(1_000);
    h.tick();
    assert_eq!(checkpoint_on_disk(&disk), 2, "the first commit is on disk");
    h.produce(&["a", "c"]);
    h.process();
    h.tick(); // Kafka commits the transaction at once; the store commits when it ends.
    assert!(h.core.producer.committing(), "the commit has not ended");
    h.crash(); // The store never commits the transaction.
    assert_eq!(cluster.borrow().committed("in", 0), Some(4), "Kafka has the transaction");
    assert_eq!(cluster.borrow().end("app-counts-changelog", 0), 4);
    assert_eq!(checkpoint_on_disk(&disk), 2, "the store on disk is behind its changelog");

    let mut h = Harness::start_on(&cluster, &disk);
    assert_eq!(h.shared.restored.load(Ordering::Relaxed), 2, "the transaction's two changelog records restored");
    assert_eq!((h.count("a"), h.count("b"), h.count("c")), (Some(2), Some(1), Some(1)), "restored");
    h.produce(&["c"]);
    h.process();
    h.tick();
    h.tick();
    assert_eq!(h.emitted(), emitted(&[("a", 1), ("b", 1), ("a", 2), ("c", 1), ("c", 2)]));
    assert_eq!(h.committed(), Some(5));
}

/// Commits more often than stores persist: their commits stay in memory until the persist
/// interval, and a crash loses them from disk. The next run restores them from the changelog.
#[test]
fn should_restore_commits_a_crash_left_unpersisted() {
    let disk = Disk::default();
    let cluster = SharedCluster::default();
    let mut h = committed_start_on(&cluster, &disk);
    h.clock.advance(1_000);
    h.tick();
    assert_eq!(checkpoint_on_disk(&disk), 2, "the first commit is on disk");
    for key in ["a", "d", "a"] {
        h.produce(&[key]);
        h.process();
        h.tick();
    }
    h.tick();
    assert!(!h.core.producer.committing(), "every commit ended");
    assert!(h.core.unpersisted, "the last commits wait for the persist interval");
    h.crash();
    assert_eq!(cluster.borrow().end("app-counts-changelog", 0), 5);
    assert_eq!(checkpoint_on_disk(&disk), 2, "the last three commits never reached the disk");

    let h = Harness::start_on(&cluster, &disk);
    assert_eq!(h.shared.restored.load(Ordering::Relaxed), 3, "restored from the disk's checkpoint on");
    assert_eq!((h.count("a"), h.count("b"), h.count("d")), (Some(3), Some(1), Some(1)), "restored");
    assert_eq!(h.committed(), Some(5));
    assert_eq!(h.emitted(), emitted(&[("a", 1), ("b", 1), ("a", 2), ("d", 1), ("a", 3)]));
}

/// A task found corrupted (the error a store raises when it is: `Error::TaskCorrupted`): the
/// task's store is wiped and restored from the changelog, the thread rolls back, and nothing
/// is lost or emitted twice.
#[test]
fn should_wipe_and_restore_a_task_found_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = SharedCluster::default();
    let mut h = committed_start(&cluster, dir.path());
    let source = moldau_state_store::Error::Corrupted { store: "counts".into(), reason: "scripted".into() };
    let task = crate::TaskId { subtopology: 0, partition: 0 };
    h.core.recover_until_done(crate::Error::TaskCorrupted { task, source: Box::new(source) }).unwrap();
    h.core.turn().unwrap();
    assert_eq!(h.shared.stores_wiped.load(Ordering::Relaxed), 1);
    assert_eq!(h.shared.restored.load(Ordering::Relaxed), 2, "rebuilt from the start of its changelog");
    assert_eq!((h.count("a"), h.count("b")), (Some(1), Some(1)), "restored from the changelog");
    h.produce(&["b"]);
    h.process();
    h.tick();
    h.tick();
    assert_eq!(h.emitted(), emitted(&[("a", 1), ("b", 1), ("b", 2)]));
}

/// The group took the partition away (the member was evicted): nothing of the work since the
/// last commit is committed, the task is closed, and reassigned it resumes from the last
/// commit, each count emitted once.
#[test]
fn should_commit_nothing_of_an_assignment_that_was_lost() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = SharedCluster::default();
    let mut h = committed_start(&cluster, dir.path());
    h.produce(&["a", "c"]);
    h.process();
    h.core.consumer_mut().lose_assignment(vec![("in".into(), 0)]);
    h.core.turn().unwrap();
    assert!(h.core.tasks.is_empty() && h.core.restoring.is_empty(), "the task is closed");
    assert_eq!(h.shared.assignments_lost.load(Ordering::Relaxed), 1);
    assert_eq!(h.committed(), Some(2), "nothing of the lost assignment was committed");
    assert_eq!(h.emitted(), emitted(&[("a", 1), ("b", 1)]));

    h.core.consumer_mut().push_event(Rebalance::Assign(vec![("in".into(), 0)]));
    h.core.turn().unwrap();
    h.process();
    h.tick();
    h.tick();
    assert_eq!(h.emitted(), emitted(&[("a", 1), ("b", 1), ("a", 2), ("c", 1)]));
    assert_eq!((h.count("a"), h.count("b"), h.count("c")), (Some(2), Some(1), Some(1)));
    assert_eq!(h.committed(), Some(4));
}
