//! The public handle: start a cluster in-process, get its bootstrap servers, shut it down.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::cluster::{BrokerInfo, ClusterCore};
use crate::config::BrokerConfig;
use crate::error::{Error, Result};
use crate::ids::Ids;
use crate::log::cleaner::CleanerStats;
use crate::storage::{Dir, RealFs};

/// How long [`Cluster::shutdown`] waits for the brokers to stop (connections closed, logs
/// flushed).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds a [`Cluster`]. Defaults: one broker, ephemeral ports, in memory.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    brokers: usize,
    port: u16,
    host: String,
    data_dir: Option<PathBuf>,
    configs: BTreeMap<String, String>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder { brokers: 1, port: 0, host: "127.0.0.1".into(), data_dir: None, configs: BTreeMap::new() }
    }
}

impl ClusterBuilder {
    /// Number of brokers (node ids 1..=n).
    pub fn brokers(mut self, n: usize) -> Self {
        self.brokers = n;
        self
    }

    /// First port: broker i listens on `port + i`. 0 (the default) picks free ephemeral ports.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Keeps topics, records and committed offsets in `dir`; restarting on the same directory
    /// brings them back. Without it the cluster lives in memory.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Keeps everything in memory (the default).
    pub fn in_memory(mut self) -> Self {
        self.data_dir = None;
        self
    }

    /// Sets a broker config, e.g. `num.partitions`, `auto.create.topics.enable`,
    /// `log.retention.ms`, `log.segment.bytes`, `group.initial.rebalance.delay.ms`.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.insert(key.into(), value.into());
        self
    }

    /// Starts the brokers on a background runtime and returns once they accept connections.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid setting, [`Error::Bind`] when a port is taken, and
    /// storage errors when the data directory cannot be opened.
    pub fn start(self) -> Result<Cluster> {
        if self.brokers == 0 || self.brokers > 64 {
            return Err(Error::Config(format!("{} brokers: must be between 1 and 64", self.brokers)));
        }
        let config = BrokerConfig::from_overrides(self.configs).map_err(Error::Config)?;
        let mut listeners = Vec::with_capacity(self.brokers);
        let mut infos = Vec::with_capacity(self.brokers);
        for i in 0..self.brokers {
            let port = if self.port == 0 {
                0
            } else {
                self.port.checked_add(i as u16).ok_or_else(|| Error::Config("port range overflows 65535".into()))?
            };
            let addr = format!("{}:{port}", self.host);
            let l = std::net::TcpListener::bind(&addr).map_err(|source| Error::Bind { addr: addr.clone(), source })?;
            l.set_nonblocking(true).map_err(|e| Error::io("configuring listener", e))?;
            let port = l.local_addr().map_err(|e| Error::io("reading listener address", e))?.port();
            infos.push(BrokerInfo { node_id: i as i32 + 1, host: self.host.clone(), port });
            listeners.push(l);
        }
        let data_dir = self.data_dir.clone().map(|p| Dir::new(Arc::new(RealFs), p));
        let core = ClusterCore::open(config, infos.clone(), data_dir, Clock::System, Ids::random())?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("broker-sim")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the broker runtime", e))?;
        let cleaner = start_cleaner(Arc::clone(&core))?;
        let run_core = Arc::clone(&core);
        let thread = std::thread::Builder::new()
            .name("broker-sim-main".into())
            .spawn(move || runtime.block_on(run(run_core, listeners, shutdown_rx)))
            .map_err(|e| Error::io("starting the broker thread", e))?;
        let bootstrap = infos.iter().map(|b| format!("{}:{}", b.host, b.port)).collect::<Vec<_>>().join(",");
        tracing::info!(brokers = infos.len(), %bootstrap, cluster_id = %core.cluster_id, "broker-sim cluster started");
        Ok(Cluster { bootstrap, infos, core, shutdown: shutdown_tx, thread: Some(thread), cleaner })
    }
}

/// The log cleaner's thread: it cleans while partitions are due and sleeps
/// `log.cleaner.backoff.ms` when none is, until the cluster stops (the sender is dropped).
/// Cleaning is blocking file and CPU work, so it runs beside the async runtime, not on it.
fn start_cleaner(core: Arc<ClusterCore>) -> Result<Option<(std::sync::mpsc::Sender<()>, JoinHandle<()>)>> {
    if !core.cleaner_enabled() {
        return Ok(None);
    }
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("broker-sim-cleaner".into())
        .spawn(move || loop {
            if core.clean_dirtiest() {
                if !matches!(stopped.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty)) {
                    break;
                }
                continue;
            }
            let backoff = Duration::from_millis(core.cleaner_backoff_ms().max(1));
            if !matches!(stopped.recv_timeout(backoff), Err(std::sync::mpsc::RecvTimeoutError::Timeout)) {
                break;
            }
        })
        .map_err(|e| Error::io("starting the log cleaner thread", e))?;
    Ok(Some((stop, thread)))
}

async fn run(core: Arc<ClusterCore>, listeners: Vec<std::net::TcpListener>, shutdown: watch::Receiver<bool>) {
    let mut tasks = tokio::task::JoinSet::new();
    for (l, info) in listeners.into_iter().zip(core.brokers.clone()) {
        match tokio::net::TcpListener::from_std(l) {
            Ok(l) => {
                tasks.spawn(crate::net::serve(l, Arc::clone(&core), info.node_id, shutdown.clone()));
            }
            Err(e) => tracing::error!(node_id = info.node_id, error = %e, "listener could not join the runtime"),
        }
    }
    let ticker_core = Arc::clone(&core);
    let mut tick_shutdown = shutdown.clone();
    tasks.spawn(async move {
        let mut groups = tokio::time::interval(Duration::from_millis(100));
        let retention_every = ticker_core.config.retention_check_interval_ms.max(100) as u64;
        let mut retention = tokio::time::interval(Duration::from_millis(retention_every));
        loop {
            tokio::select! {
                _ = groups.tick() => {
                    let now = ticker_core.clock.now_ms();
                    ticker_core.groups.lock().tick(now);
                    ticker_core.tick_transactions();
                    ticker_core.flush_due();
                }
                _ = retention.tick() => {
                    let deleted = ticker_core.apply_retention();
                    if deleted > 0 {
                        tracing::info!(segments = deleted, "retention deleted old segments");
                    }
                }
                _ = tick_shutdown.changed() => break,
            }
        }
    });
    while tasks.join_next().await.is_some() {}
    core.flush_all();
}

/// A running broker-sim cluster. Dropping it shuts it down.
#[derive(Debug)]
pub struct Cluster {
    bootstrap: String,
    infos: Vec<BrokerInfo>,
    core: Arc<ClusterCore>,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    /// The log cleaner's stop signal and thread.
    cleaner: Option<(std::sync::mpsc::Sender<()>, JoinHandle<()>)>,
}

impl Cluster {
    /// A builder with defaults (one broker, ephemeral ports, in memory).
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// `host:port,host:port,...` of every broker, for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// `(node id, port)` of every broker.
    pub fn brokers(&self) -> Vec<(i32, u16)> {
        self.infos.iter().map(|b| (b.node_id, b.port)).collect()
    }

    /// The cluster id (stable across restarts on the same data directory).
    pub fn cluster_id(&self) -> &str {
        &self.core.cluster_id
    }

    /// Fault injection: every broker holds each response to requests of API `api_key` (e.g.
    /// 26, EndTxn) for `delay` before answering, as a slow broker or network would; a zero
    /// delay removes the fault. Requests on one connection are answered in order, so the ones
    /// after a held request wait for it too.
    pub fn delay_responses(&self, api_key: i16, delay: Duration) {
        let mut delays = self.core.response_delays.lock();
        if delay.is_zero() {
            delays.remove(&api_key);
        } else {
            delays.insert(api_key, delay);
        }
    }

    /// Stops accepting connections, closes every connection, flushes logs and waits for the
    /// broker threads to finish. Also done on drop.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// What the log cleaner has done so far: passes, bytes and records read and written,
    /// what it removed, and the time it spent.
    pub fn cleaner_stats(&self) -> CleanerStats {
        self.core.cleaner_stats()
    }

    fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some((stop, cleaner)) = self.cleaner.take() {
            // The pass under way finishes first (its swap is atomic either way).
            drop(stop);
            let _ = cleaner.join();
        }
        if let Some(t) = self.thread.take() {
            // Bounded: a cluster that does not stop is left running (and said so) rather than
            // hanging its owner.
            const STEP: Duration = Duration::from_millis(5);
            let mut waited = Duration::ZERO;
            while !t.is_finished() && waited < STOP_TIMEOUT {
                std::thread::sleep(STEP);
                waited += STEP;
            }
            if t.is_finished() {
                let _ = t.join();
                tracing::info!("broker-sim cluster stopped");
            } else {
                tracing::error!(timeout = ?STOP_TIMEOUT, "broker-sim did not stop in time; leaving it running");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}
