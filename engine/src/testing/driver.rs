//! `TopologyTestDriver`: every sub-topology as one task (partition 0), records piped in by
//! hand, a commit after each input record (flushing caches, as an exactly-once commit would),
//! output records collected per topic, and records sent to a topic that a sub-topology reads
//! (repartition topics) fed back in.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use moldau_state_store::{ChangelogRecord, InMemoryStore, MemoryBudget, RawStore, RocksStore};

use crate::error::{Error, Result};
use crate::processor::{Headers, RecordSerde, StoreHandle, TaskId};
use crate::runtime::collector::OutputRecord;
use crate::runtime::task::StreamTask;
use crate::topology::{InputRecord, RawStoreSupplier, Topology};

/// Runs a topology synchronously, without Kafka.
///
/// Each piped record is processed at once, then committed (caches flushed, as an exactly-once
/// commit would); records sent to a topic that the topology reads (a repartition topic) are
/// fed back in. Stores are in memory ([`new`](Self::new)) or RocksDB
/// ([`with_state_dir`](Self::with_state_dir)).
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
    topology: Arc<Topology>,
    tasks: BTreeMap<u32, StreamTask>,
    outputs: BTreeMap<String, VecDeque<OutputRecord>>,
    changelogs: BTreeMap<String, Vec<ChangelogRecord>>,
    offsets: BTreeMap<String, i64>,
    wall_clock: i64,
    rejected: u64,
}

impl std::fmt::Debug for TopologyTestDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyTestDriver")
            .field("tasks", &self.tasks.len())
            .field("wall_clock", &self.wall_clock)
            .finish()
    }
}

impl TopologyTestDriver {
    /// A driver with in-memory stores, wall clock at 0.
    pub fn new(topology: Topology) -> Result<Self> {
        Self::start(topology, &mut |_, name| Ok(Box::new(InMemoryStore::new(name)) as Box<dyn RawStore>))
    }

    /// A driver with RocksDB stores under `dir` (one directory per task and store).
    pub fn with_state_dir(topology: Topology, dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        let budget = MemoryBudget::default();
        Self::start(topology, &mut |task: TaskId, name: &str| {
            let raw = RocksStore::open(&dir.join(task.to_string()).join(name), name, &budget)?;
            Ok(Box::new(raw) as Box<dyn RawStore>)
        })
    }

    fn start(topology: Topology, raw: &mut RawStoreSupplier<'_>) -> Result<Self> {
        let topology = Arc::new(topology);
        let mut tasks = BTreeMap::new();
        for s in 0..topology.subtopology_count() {
            let id = TaskId { subtopology: s, partition: 0 };
            tasks.insert(s, StreamTask::new(&topology, id, raw, 0)?);
        }
        Ok(TopologyTestDriver {
            topology,
            tasks,
            outputs: BTreeMap::new(),
            changelogs: BTreeMap::new(),
            offsets: BTreeMap::new(),
            wall_clock: 0,
            rejected: 0,
        })
    }

    /// Pipes a record with raw key and value bytes into `topic`.
    pub fn pipe_raw(
        &mut self,
        topic: &str,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        timestamp: i64,
    ) -> Result<()> {
        let mut queue = VecDeque::new();
        queue.push_back((topic.to_string(), key, value, timestamp, Headers::new()));
        while let Some((topic, key, value, timestamp, headers)) = queue.pop_front() {
            let s = self
                .topology
                .subtopology_reading(&topic)
                .ok_or_else(|| Error::InvalidTopology(format!("no source reads topic '{topic}'")))?;
            let offset = self.offsets.entry(topic.clone()).or_insert(0);
            let record = InputRecord {
                topic: topic.as_str().into(),
                partition: 0,
                offset: *offset,
                key,
                value,
                timestamp,
                headers,
            };
            *offset += 1;
            let task = self.tasks.get_mut(&s).expect("one task per sub-topology");
            task.process(&record)?;
            for out in self.commit()? {
                if self.topology.subtopology_reading(&out.topic).is_some() {
                    queue.push_back((
                        out.topic.to_string(),
                        out.key.clone(),
                        out.value.clone(),
                        out.timestamp,
                        out.headers.clone(),
                    ));
                }
                self.outputs.entry(out.topic.to_string()).or_default().push_back(out);
            }
        }
        Ok(())
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
        self.wall_clock += ms;
        for task in self.tasks.values_mut() {
            task.advance_wall_clock(self.wall_clock)?;
        }
        for out in self.commit()? {
            self.outputs.entry(out.topic.to_string()).or_default().push_back(out);
        }
        Ok(())
    }

    /// Flushes processors and caches, takes changelogs and output, commits every store; returns the output.
    fn commit(&mut self) -> Result<Vec<OutputRecord>> {
        let mut out = Vec::new();
        for task in self.tasks.values_mut() {
            task.flush()?;
            let mut flushed = Vec::new();
            for (name, store) in task.stores() {
                store.borrow_mut().flush_cache()?;
                let log = self.changelogs.entry(name.to_string()).or_default();
                log.extend(store.borrow_mut().drain_changelog());
                flushed.push((store, log.len() as i64));
            }
            task.drain_output_into(&mut out);
            self.rejected += task.take_rejected();
            for (store, offset) in flushed {
                store.borrow_mut().commit(offset, &[])?;
            }
        }
        Ok(out)
    }

    /// What the tasks do with records their processors reject
    /// ([`ProcessorContext::reject`](crate::ProcessorContext::reject)), as
    /// `default.deserialization.exception.handler` sets it for `KafkaStreams` (skip by default).
    pub fn set_deserialization_handler(&mut self, handler: &crate::kafka::DeserializationHandler) {
        for task in self.tasks.values_mut() {
            task.set_bad_input(handler.bad_input());
        }
    }

    /// How many records processors rejected so far (skipped or dead-lettered).
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Takes the records written to `topic` so far.
    pub fn read_output(&mut self, topic: &str) -> Vec<OutputRecord> {
        self.outputs.get_mut(topic).map(|q| q.drain(..).collect()).unwrap_or_default()
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

    /// Every changelog record store `name` has produced.
    pub fn changelog(&self, name: &str) -> &[ChangelogRecord] {
        self.changelogs.get(name).map_or(&[], Vec::as_slice)
    }

    /// The store `name` of type `S` (e.g. `KeyValueStore<String, u64>`), from whichever task has
    /// it.
    pub fn store<S: 'static>(&self, name: &str) -> Option<StoreHandle<S>> {
        self.tasks.values().find_map(|t| t.typed_store::<S>(name)).map(StoreHandle::from_rc)
    }
}

impl Drop for TopologyTestDriver {
    fn drop(&mut self) {
        for task in self.tasks.values_mut() {
            task.close();
        }
    }
}
