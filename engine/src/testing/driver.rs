//! `TopologyTestDriver`: the runtime core (see `runtime::core`) driven by hand against topics
//! in memory (see [`memory`](super::memory)): every partition-0 task of the topology, records
//! piped in one at a time, a commit after each, output read back per topic, and records sent
//! to a topic that a sub-topology reads (repartition topics) fed back in.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use moldau_state_store::{ChangelogRecord, MemoryBudget};

use super::memory::{
    DriverStores, LogRecord, ManualClock, MemoryConsumer, MemoryProducer, MemoryRestore, NoPurge, SharedCluster,
    SharedFaults,
};
use crate::error::{Error, Result};
use crate::kafka::{ProcessingGuarantee, StreamsConfig, TopicNames};
use crate::processor::{Headers, RecordSerde, StoreHandle};
use crate::runtime::collector::OutputRecord;
use crate::runtime::core::{Core, Io, Parts, Shared, ThreadSpec};
use crate::runtime::stores::RocksStores;
use crate::topology::Topology;

/// The application id the driver names internal topics with.
const APP: &str = "driver";

/// The driver's world: everything in memory.
pub(crate) struct DriverIo {
    pub(crate) cluster: SharedCluster,
    pub(crate) faults: SharedFaults,
    /// Whether producers are transactional (exactly-once).
    pub(crate) transactional: bool,
}

/// A core running `topology` with `config` on `cluster` (exactly-once producers failing as
/// `faults` says, `clock`, `stores`, `restorer`), given partition 0 of every topic the
/// topology consumes at its first turn; and the state it shares.
pub(crate) fn memory_core(
    topology: Arc<Topology>,
    config: StreamsConfig,
    cluster: &SharedCluster,
    faults: &SharedFaults,
    clock: &ManualClock,
    stores: DriverStores,
    restorer: MemoryRestore,
) -> (Core<DriverIo>, Arc<Shared>) {
    let names = Arc::new(TopicNames::new(&config.application_id, &topology));
    let shared = Arc::new(Shared::default());
    let partitions = names.consumed().into_iter().map(|t| (t, 0)).collect();
    let spec = ThreadSpec {
        index: 0,
        topology,
        names,
        process_id: config.application_id.clone(),
        config: Arc::new(config),
        budget: MemoryBudget::default(),
        shared: shared.clone(),
    };
    let parts = Parts {
        io: DriverIo { cluster: cluster.clone(), faults: faults.clone(), transactional: true },
        consumer: MemoryConsumer::new(cluster.clone(), partitions),
        producer: MemoryProducer::new(cluster.clone(), true, faults.clone()),
        restorer,
        purger: NoPurge,
        clock: clock.clone(),
        stores,
    };
    (Core::new(spec, parts), shared)
}

impl Io for DriverIo {
    type Group = ();
    type Consumer = MemoryConsumer;
    type Producer = MemoryProducer;
    type Restore = MemoryRestore;
    type Purge = NoPurge;
    type Clock = ManualClock;
    type Stores = DriverStores;

    fn new_producer(&mut self) -> Result<MemoryProducer> {
        Ok(MemoryProducer::new(self.cluster.clone(), self.transactional, self.faults.clone()))
    }
}

/// Runs a topology synchronously, without Kafka.
///
/// It runs the same runtime core as `KafkaStreams` (tasks, queues, the exactly-once commit
/// cycle, restores) against topics in memory. Each piped record is processed at once, then
/// committed (caches flushed, output appended to its topic); records sent to a topic the
/// topology reads (a repartition topic) are fed back in the same way, one at a time. Stores
/// are in memory ([`new`](Self::new)) or RocksDB ([`with_state_dir`](Self::with_state_dir)).
///
/// ```
/// use moldau_engine::processor::{from_fn, required, Record, Required};
/// use moldau_engine::state::{StringSerde, U64Serde};
/// use moldau_engine::testing::TopologyTestDriver;
/// use moldau_engine::{ProcessorContext, Topology};
///
/// // The length of each line, keyed by the line.
/// let mut topology = Topology::new();
/// topology
///     .add_source::<String, String>("lines", &["lines"], required(StringSerde), required(StringSerde))?
///     .add_processor(
///         "length",
///         || {
///             from_fn(|r: Record<String, String>, ctx: &mut ProcessorContext<'_, String, u64>| {
///                 let n = r.value.chars().count() as u64;
///                 ctx.forward(Record::new(r.value, n, r.timestamp))
///             })
///         },
///         &["lines"],
///     )?
///     .add_sink::<String, u64>("out", "lengths", required(StringSerde), required(U64Serde), &["length"])?;
///
/// let mut driver = TopologyTestDriver::new(topology)?;
/// let s = Required(StringSerde);
/// driver.pipe("lines", &s, &s, &"k".to_string(), &"héllo".to_string(), 42)?;
/// let out = driver.read_output_typed("lengths", &s, &Required(U64Serde))?;
/// assert_eq!(out, vec![("héllo".to_string(), 5, 42)]);
/// # Ok::<(), moldau_engine::Error>(())
/// ```
pub struct TopologyTestDriver {
    core: Core<DriverIo>,
    cluster: SharedCluster,
    clock: ManualClock,
    names: Arc<TopicNames>,
    topology: Arc<Topology>,
    shared: Arc<Shared>,
    /// How far each topic's output was read (cluster name → next offset).
    read: BTreeMap<String, usize>,
}

impl std::fmt::Debug for TopologyTestDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::runtime::io::Clock as _;
        f.debug_struct("TopologyTestDriver").field("wall_clock", &self.clock.wall_ms()).finish()
    }
}

impl TopologyTestDriver {
    /// A driver with in-memory stores, wall clock at 0.
    pub fn new(topology: Topology) -> Result<Self> {
        Self::start(topology, DriverStores::Memory)
    }

    /// A driver with RocksDB stores under `dir` (one directory per task and store).
    pub fn with_state_dir(topology: Topology, dir: impl Into<PathBuf>) -> Result<Self> {
        Self::start(topology, DriverStores::Rocks(RocksStores::new(dir.into(), MemoryBudget::default())))
    }

    fn start(topology: Topology, stores: DriverStores) -> Result<Self> {
        if topology.subtopology_count() == 0 {
            return Err(Error::InvalidTopology("the topology has no nodes".into()));
        }
        let topology = Arc::new(topology);
        let cluster: SharedCluster = Default::default();
        let clock = ManualClock::new(0);
        let config = StreamsConfig::new(APP, "memory").with_guarantee(ProcessingGuarantee::ExactlyOnceV2);
        let restorer = match &stores {
            DriverStores::Rocks(..) => MemoryRestore::new(cluster.clone()).trusting_stores(),
            _ => MemoryRestore::new(cluster.clone()),
        };
        let (core, shared) =
            memory_core(topology.clone(), config, &cluster, &SharedFaults::default(), &clock, stores, restorer);
        let names = core.spec.names.clone();
        let mut driver = TopologyTestDriver { core, cluster, clock, names, topology, shared, read: BTreeMap::new() };
        // The assignment: every task opened (and restored, from nothing).
        driver.core.turn()?;
        driver.core.commit()?;
        Ok(driver)
    }

    /// Processes what the topics hold for the tasks, one record per turn, each turn
    /// committed, until nothing is left (output fed back in included). A turn that rolled
    /// back leaves its tasks restoring: the loop goes on until they run again. A run that
    /// keeps rolling back fails.
    fn run(&mut self) -> Result<()> {
        let before = self.shared.recoveries.load(std::sync::atomic::Ordering::Relaxed);
        loop {
            self.core.consumer_mut().allow(1);
            self.core.turn()?;
            self.core.commit()?;
            let idle = !self.core.consumer().has_records() && self.core.buffered() == 0;
            if idle && self.core.restoring() == 0 {
                return Ok(());
            }
            if self.shared.recoveries.load(std::sync::atomic::Ordering::Relaxed) > before + 10 {
                return Err(Error::processing(
                    "test driver",
                    "the tasks rolled back more than 10 times on the same input; see the log for why",
                ));
            }
        }
    }

    /// Pipes a record with raw key and value bytes into `topic`.
    pub fn pipe_raw(
        &mut self,
        topic: &str,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        timestamp: i64,
    ) -> Result<()> {
        if self.topology.subtopology_reading(topic).is_none() {
            return Err(Error::InvalidTopology(format!("no source reads topic '{topic}'")));
        }
        let physical = self.names.physical(&topic.into());
        let record = LogRecord { key, value, timestamp, headers: Headers::new() };
        self.cluster.borrow_mut().append(&physical, 0, record);
        self.run()
    }

    /// Pipes a typed record into `topic`.
    pub fn pipe<K, V>(
        &mut self,
        topic: &str,
        keys: &dyn RecordSerde<K>,
        values: &dyn RecordSerde<V>,
        key: &K,
        value: &V,
        timestamp: i64,
    ) -> Result<()> {
        let k = keys.serialize(key).map_err(|reason| Error::processing("test driver", reason))?;
        let v = values.serialize(value).map_err(|reason| Error::processing("test driver", reason))?;
        self.pipe_raw(topic, k, v, timestamp)
    }

    /// Advances the wall clock by `ms`, firing wall-clock punctuations, then commits.
    pub fn advance_wall_clock(&mut self, ms: i64) -> Result<()> {
        self.clock.advance(ms);
        self.core.consumer_mut().allow(0);
        self.core.turn()?;
        self.core.commit()?;
        self.run()
    }

    /// What the tasks do with records that do not deserialize and records their processors
    /// reject ([`ProcessorContext::reject`](crate::ProcessorContext::reject)), as
    /// `default.deserialization.exception.handler` sets it for `KafkaStreams` (skip by default).
    pub fn set_deserialization_handler(&mut self, handler: &crate::kafka::DeserializationHandler) {
        self.core.set_deserialization_handler(handler.clone());
    }

    /// How many records were skipped or dead-lettered so far (rejected by processors, or not
    /// deserializable).
    pub fn rejected(&self) -> u64 {
        self.shared.skipped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Takes the records written to `topic` since the last call.
    pub fn read_output(&mut self, topic: &str) -> Vec<OutputRecord> {
        let physical = self.names.physical(&topic.into());
        let from = self.read.entry(physical.to_string()).or_insert(0);
        let cluster = self.cluster.borrow();
        let records = cluster.read(&physical, 0, *from);
        *from += records.len();
        let topic: Arc<str> = topic.into();
        records
            .iter()
            .map(|r| OutputRecord {
                topic: topic.clone(),
                key: r.key.clone(),
                value: r.value.clone(),
                timestamp: r.timestamp,
                headers: r.headers.clone(),
            })
            .collect()
    }

    /// Takes the records written to `topic`, decoded.
    pub fn read_output_typed<K, V>(
        &mut self,
        topic: &str,
        keys: &dyn RecordSerde<K>,
        values: &dyn RecordSerde<V>,
    ) -> Result<Vec<(K, V, i64)>> {
        self.read_output(topic)
            .into_iter()
            .map(|r| {
                let k = keys.deserialize(r.key.as_deref()).map_err(|e| Error::processing("test driver", e))?;
                let v = values.deserialize(r.value.as_deref()).map_err(|e| Error::processing("test driver", e))?;
                Ok((k, v, r.timestamp))
            })
            .collect()
    }

    /// Every changelog record store `name` has produced (committed).
    pub fn changelog(&self, name: &str) -> Vec<ChangelogRecord> {
        let cluster = self.cluster.borrow();
        cluster
            .read(&self.names.changelog(name), 0, 0)
            .iter()
            .map(|r| ChangelogRecord {
                key: r.key.clone().unwrap_or_default(),
                value: r.value.clone(),
                timestamp: r.timestamp,
            })
            .collect()
    }

    /// The store `name` of type `S` (e.g. `KeyValueStore<String, u64>`), from whichever task has
    /// it.
    pub fn store<S: 'static>(&self, name: &str) -> Option<StoreHandle<S>> {
        self.core.typed_store::<S>(name).map(StoreHandle::from_rc)
    }
}

impl Drop for TopologyTestDriver {
    fn drop(&mut self) {
        self.core.close(true);
    }
}
