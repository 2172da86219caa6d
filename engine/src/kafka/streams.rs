//! `KafkaStreams`: the handle on a running application.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use moldau_state_store::MemoryBudget;

use super::clock::SystemClock;
use super::config::StreamsConfig;
use super::purge::Purger;
use super::thread;
use super::topics::{self, TopicNames};
use crate::error::{Error, Result};
use crate::processor::TaskId;
use crate::runtime::core::{Shared, ThreadSpec};
use crate::Topology;

/// How long [`KafkaStreams::close`] waits for the stream threads (a last commit waits up to
/// 30 s for the brokers, and leaving the group up to its own timeout).
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(120);

/// Where an application is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamsState {
    /// Built, not started.
    Created,
    /// Threads are running.
    Running,
    /// A thread stopped with an error ([`KafkaStreams::errors`] says which).
    Error,
    /// Closed.
    NotRunning,
}

/// Counters of a running application.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamsMetrics {
    /// Input records processed.
    pub processed: u64,
    /// Of those, the records processed while an exactly-once commit was under way (their
    /// output waited for it to end).
    pub processed_while_committing: u64,
    /// Times a thread stopped polling and processing to wait for the exactly-once commit under
    /// way, as it held the output of as many records as it may (`max.held.records`, 50,000 by
    /// default) meanwhile: a sign of
    /// slow commits (a slow broker or network).
    pub commit_stalls: u64,
    /// Commits completed.
    pub commits: u64,
    /// Records handed to the producer: output, repartition, dead-letter and changelog
    /// records (a roll-back's aborted records included).
    pub sent: u64,
    /// Records skipped or sent to the dead-letter topic by an error handler.
    pub skipped: u64,
    /// Changelog records restored into stores (counted as each batch of a restore is applied).
    pub restored: u64,
    /// Keys logged again after a restore found changelog records past the position committed
    /// with the input offsets (written after the last commit; their input is processed again).
    pub relogged: u64,
    /// Stores wiped and restored from the start of their changelog because their checkpoint
    /// lay outside it (a corrupted task: the changelog was recreated or truncated).
    pub stores_wiped: u64,
    /// Rebalance events handled.
    pub rebalances: u64,
    /// Roll-backs to the last commit (a fenced producer, an aborted transaction, a failed
    /// commit).
    pub recoveries: u64,
    /// Revocations of partitions the group had already taken away (the member was evicted:
    /// its session or poll interval ran out); their work since the last commit was rolled
    /// back instead of committed.
    pub assignments_lost: u64,
    /// Tasks created (opened with their stores), counting reopenings after a rebalance or a
    /// roll-back.
    pub tasks_created: u64,
    /// Tasks owned, per thread (running or restoring).
    pub tasks: BTreeMap<usize, Vec<TaskId>>,
    /// Of those, the tasks whose stores are restoring, per thread: their input waits until
    /// they are restored, while the thread's other tasks run.
    pub restoring: BTreeMap<usize, Vec<TaskId>>,
}

/// A topology running against Kafka (Kafka Streams' `KafkaStreams`).
///
/// [`start`](Self::start) checks the source topics, creates the internal ones (changelogs,
/// repartition topics) and starts `num.stream.threads` stream threads, which join the
/// consumer group `application.id` and run the tasks of the partitions assigned to them;
/// [`close`](Self::close) commits and leaves. Here against an embedded broker-sim cluster
/// (any Kafka cluster works the same), copying a topic exactly once:
///
/// ```
/// use std::time::Duration;
///
/// use moldau_engine::processor::required;
/// use moldau_engine::state::StringSerde;
/// use moldau_engine::{KafkaStreams, ProcessingGuarantee, StreamsConfig, StreamsState, Topology};
/// # use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
/// # let cluster = moldau_broker_sim::Cluster::builder().brokers(1).in_memory().start()?;
/// # let bootstrap = cluster.bootstrap_servers().to_string();
/// # let producer: BaseProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", &bootstrap).create()?;
/// # for line in ["one", "two", "three"] {
/// #     producer.send(BaseRecord::to("lines").key("k").payload(line)).map_err(|(e, _)| e)?;
/// # }
/// # producer.flush(Duration::from_secs(30))?;
/// # let state_dir = tempfile::tempdir()?;
///
/// let mut topology = Topology::new();
/// topology
///     .add_source::<String, String>("lines", &["lines"], required(StringSerde), required(StringSerde))?
///     .add_sink::<String, String>("copy", "lines-copy", required(StringSerde), required(StringSerde), &["lines"])?;
/// let config = StreamsConfig::new("copier", bootstrap.as_str())
///     .with_guarantee(ProcessingGuarantee::ExactlyOnceV2)
///     .with_state_dir(state_dir.path());
/// let mut app = KafkaStreams::new(topology, config)?;
/// app.start()?;
/// for _ in 0..600 {
///     if app.metrics().processed == 3 || app.state() != StreamsState::Running {
///         break;
///     }
///     std::thread::sleep(Duration::from_millis(50));
/// }
/// assert!(app.errors().is_empty(), "{:?}", app.errors());
/// assert_eq!(app.metrics().processed, 3);
/// app.close()?;
/// # cluster.shutdown();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct KafkaStreams {
    topology: Arc<Topology>,
    config: Arc<StreamsConfig>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    purger: Option<Arc<Purger>>,
    /// The state directory's lock, held while running.
    dir_lock: Option<std::fs::File>,
    state: StreamsState,
    /// The client [`Self::store_hosts`] asks the cluster with, made on first use.
    metadata_client: parking_lot::Mutex<Option<rdkafka::consumer::BaseConsumer>>,
}

impl std::fmt::Debug for KafkaStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStreams")
            .field("application_id", &self.config.application_id)
            .field("state", &self.state())
            .finish()
    }
}

impl KafkaStreams {
    /// An application running `topology` with `config` (not started).
    pub fn new(topology: Topology, config: StreamsConfig) -> Result<Self> {
        config.validate()?;
        if topology.subtopology_count() == 0 {
            return Err(Error::InvalidTopology("the topology has no nodes".into()));
        }
        Ok(KafkaStreams {
            topology: Arc::new(topology),
            config: Arc::new(config),
            shared: Arc::new(Shared::default()),
            threads: Vec::new(),
            purger: None,
            dir_lock: None,
            state: StreamsState::Created,
            metadata_client: parking_lot::Mutex::new(None),
        })
    }

    /// Checks the source topics, creates the internal topics, and starts the stream threads.
    pub fn start(&mut self) -> Result<()> {
        if self.state != StreamsState::Created {
            return Err(Error::Config(format!("start: the application is {:?}, not Created", self.state)));
        }
        let names = Arc::new(TopicNames::new(&self.config.application_id, &self.topology));
        crate::failpoint::configure_from_env()?;
        let plan = topics::prepare(&self.topology, &names, &self.config)?;
        tracing::info!(app = %self.config.application_id, subtopologies = ?plan.subtopologies, "starting");
        let app_dir = self.config.state_dir.join(&self.config.application_id);
        let process_id = process_id(&app_dir)?;
        self.dir_lock = Some(lock_state_dir(&app_dir)?);
        let budget = MemoryBudget::new(self.config.memory_budget_bytes, 0.25);
        let purger = Arc::new(Purger::start(&self.config)?);
        self.purger = Some(purger.clone());
        for index in 0..self.config.num_stream_threads {
            let spec = ThreadSpec {
                index,
                topology: self.topology.clone(),
                names: names.clone(),
                config: self.config.clone(),
                budget: budget.clone(),
                process_id: process_id.clone(),
                shared: self.shared.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("{}-StreamThread-{index}", self.config.application_id))
                .spawn({
                    let purger = purger.clone();
                    move || thread::run(spec, purger)
                })
                .map_err(|e| Error::Config(format!("starting stream thread {index}: {e}")))?;
            self.threads.push(handle);
        }
        self.state = StreamsState::Running;
        Ok(())
    }

    /// The application's state.
    pub fn state(&self) -> StreamsState {
        if self.state == StreamsState::Running && !self.errors().is_empty() {
            return StreamsState::Error;
        }
        self.state
    }

    /// The errors that stopped threads, in the order they happened: each keeps its kind
    /// ([`Error::is_fatal`] is true of them) and its source.
    pub fn errors(&self) -> Vec<Arc<Error>> {
        self.shared.errors.lock().clone()
    }

    /// Current counters.
    pub fn metrics(&self) -> StreamsMetrics {
        let s = &self.shared;
        StreamsMetrics {
            processed: s.processed.load(Ordering::Relaxed),
            commits: s.commits.load(Ordering::Relaxed),
            sent: s.sent.load(Ordering::Relaxed),
            skipped: s.skipped.load(Ordering::Relaxed),
            restored: s.restored.load(Ordering::Relaxed),
            relogged: s.relogged.load(Ordering::Relaxed),
            stores_wiped: s.stores_wiped.load(Ordering::Relaxed),
            rebalances: s.rebalances.load(Ordering::Relaxed),
            recoveries: s.recoveries.load(Ordering::Relaxed),
            assignments_lost: s.assignments_lost.load(Ordering::Relaxed),
            processed_while_committing: s.processed_while_committing.load(Ordering::Relaxed),
            commit_stalls: s.commit_stalls.load(Ordering::Relaxed),
            tasks_created: s.tasks_created.load(Ordering::Relaxed),
            tasks: s.tasks.lock().clone(),
            restoring: s.restoring.lock().clone(),
        }
    }

    /// Read-only views of the store `name` of this instance's running tasks, by partition
    /// (interactive queries; Kafka Streams' `KafkaStreams::store`). A view reads the store's
    /// committed state as persisted: at most about a second behind its last commit, never a
    /// transaction in progress. Restoring tasks are left out; a task that moves away while a
    /// view is read makes the read fail with the store closed: ask again.
    pub fn store(&self, name: &str) -> Vec<(i32, moldau_state_store::StoreReader)> {
        let mut out: Vec<_> = self
            .shared
            .stores
            .lock()
            .values()
            .flatten()
            .filter(|(store, _, _)| store == name)
            .map(|(_, partition, r)| (*partition, r.clone()))
            .collect();
        out.sort_by_key(|(p, _)| *p);
        out
    }

    /// Which instance of the application hosts each partition of the store `name`, from the
    /// group's current assignment and the `application.server` each instance advertises
    /// (Kafka Streams' `streamsMetadataForStore`): one entry per group member running tasks
    /// of the store, this instance's included. Empty while the group rebalances. Waits at most
    /// `timeout` for the cluster.
    pub fn store_hosts(&self, name: &str, timeout: Duration) -> Result<Vec<super::StoreHost>> {
        let mut client = self.metadata_client.lock();
        if client.is_none() {
            let id = format!("{}-metadata", self.config.application_id);
            let made = self
                .config
                .rdkafka_config("consumer", &id, &[], &[])
                .create::<rdkafka::consumer::BaseConsumer>()
                .map_err(|e| Error::kafka("creating the metadata client", e))?;
            *client = Some(made);
        }
        let members =
            super::hosts::describe_group(client.as_ref().expect("made above"), &self.config.application_id, timeout)?;
        drop(client);
        let names = TopicNames::new(&self.config.application_id, &self.topology);
        super::hosts::hosts_of(&self.topology, &names, name, &members)
    }

    /// The topology it runs.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Stops the threads after a last commit and leaves the group, waiting for them up to
    /// `CLOSE_TIMEOUT` (see [`Self::close_timeout`]); returns the first error a thread stopped
    /// with, if any.
    pub fn close(&mut self) -> Result<()> {
        self.close_timeout(CLOSE_TIMEOUT)
    }

    /// Stops the threads after a last commit and leaves the group, waiting up to `timeout` for
    /// them (Kafka Streams' `close(Duration)`). Threads still running past it are left to
    /// finish on their own and the close fails naming how many; the state directory stays
    /// locked until the process exits, so no other instance starts on it meanwhile. Returns
    /// the first error a thread stopped with, if any.
    pub fn close_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.shared.shutdown.store(true, Ordering::Relaxed);
        let clock = SystemClock;
        let start = clock.now();
        while self.threads.iter().any(|t| !t.is_finished()) && clock.now().duration_since(start) < timeout {
            std::thread::sleep(Duration::from_millis(5));
        }
        let (finished, running): (Vec<_>, Vec<_>) = self.threads.drain(..).partition(|t| t.is_finished());
        for t in finished {
            if t.join().is_err() {
                self.shared.errors.lock().push(Arc::new(Error::processing("stream thread", "panicked")));
            }
        }
        if !running.is_empty() {
            let n = running.len();
            tracing::error!(
                threads = n,
                ?timeout,
                "stream threads still running after the close timeout; leaving them"
            );
            // Detached: they end on their own. The directory stays locked until the process exits.
            drop(running);
            std::mem::forget(self.dir_lock.take());
            self.state = StreamsState::NotRunning;
            return Err(Error::CloseTimeout { threads: n, timeout });
        }
        if let Some(p) = self.purger.take() {
            p.stop();
        }
        self.dir_lock = None;
        let first = self.errors().into_iter().next();
        self.state = StreamsState::NotRunning;
        match first {
            Some(e) => Err(Error::ThreadStopped(e)),
            None => Ok(()),
        }
    }
}

impl Drop for KafkaStreams {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            let _ = self.close();
        }
    }
}

/// Locks the application's state directory for this instance: two instances on one
/// directory would share the process id, hence the transactional ids, and fence each other
/// forever.
fn lock_state_dir(app_dir: &Path) -> Result<std::fs::File> {
    let path = app_dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Config(format!("state directory lock {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Config(format!(
            "the state directory {} is in use by another running instance; give each instance its own \
             state.dir",
            app_dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(Error::Config(format!("state directory lock {}: {e}", path.display())))
        }
    }
}

/// The process id kept in the application's state directory: stable across restarts, so the
/// transactional ids are too, and a restarted instance fences (and aborts) what its previous
/// incarnation left open instead of leaving it to the transaction timeout.
fn process_id(app_dir: &Path) -> Result<String> {
    let io = |e: std::io::Error| Error::Config(format!("state directory {}: {e}", app_dir.display()));
    std::fs::create_dir_all(app_dir).map_err(io)?;
    let file = app_dir.join("process-id");
    if let Ok(s) = std::fs::read_to_string(&file) {
        let s = s.trim();
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Ok(s.to_string());
        }
        tracing::warn!(file = %file.display(), "ignoring a malformed process id");
    }
    let id = uuid::Uuid::new_v4().to_string();
    let tmp = app_dir.join("process-id.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(id.as_bytes()).and_then(|()| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, &file).map_err(io)?;
    Ok(id)
}
