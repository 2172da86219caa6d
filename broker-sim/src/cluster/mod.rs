//! The cluster core shared by every broker of the process: brokers, topics, partition logs and
//! the group coordinator. Protocol handlers call into it with `now` as an argument; the TCP
//! layer in `net` is a thin shell around it.
//!
//! Locking: `topics` is a read-mostly map of `Arc<Topic>`; a config or partition-count change
//! replaces the `Arc<Topic>` (partitions are shared `Arc<Partition>`s, so logs are untouched).
//! Each partition log has its own mutex, so produce and fetch on different partitions never
//! contend. No lock is held across an `.await`.

mod cleaner;
mod configs;
pub(crate) mod topic;
mod txn_io;

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::{self, BrokerConfig, DynamicConfigs};
use crate::error::{Error, Result};
use crate::group::GroupCoordinator;
use crate::ids::Ids;
use crate::log::PartitionLog;
use crate::protocol::codes;
use crate::storage::Dir;
use crate::txn::pid::ProducerIdAllocator;
use crate::txn::TxnCoordinator;
pub(crate) use topic::{Partition, Topic};
pub(crate) use txn_io::CoreTxnIo;

/// Name of the internal offsets topic.
pub(crate) const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Name of the internal transaction log topic.
pub(crate) const TXN_TOPIC: &str = "__transaction_state";

/// A broker's advertised address.
#[derive(Debug, Clone)]
pub(crate) struct BrokerInfo {
    /// Node id.
    pub(crate) node_id: i32,
    /// Advertised host (an IPv4 literal).
    pub(crate) host: String,
    /// Advertised port.
    pub(crate) port: u16,
}

/// A failed topic operation: a Kafka error code and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicError {
    /// Kafka error code.
    pub(crate) code: i16,
    /// Explanation sent back in `error_message`.
    pub(crate) message: String,
}

impl TopicError {
    fn new(code: i16, message: impl Into<String>) -> Self {
        TopicError { code, message: message.into() }
    }
}

/// What CreateTopics asks for.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewTopic {
    /// Name.
    pub(crate) name: String,
    /// Partitions, or -1 for the broker default.
    pub(crate) partitions: i32,
    /// Replication factor, or -1 for the broker default.
    pub(crate) replication_factor: i16,
    /// Explicit replica assignment per partition (overrides the two above).
    pub(crate) assignment: Vec<Vec<i32>>,
    /// Topic configs.
    pub(crate) configs: BTreeMap<String, String>,
}

/// The shared state of the cluster.
#[derive(Debug)]
pub(crate) struct ClusterCore {
    /// Stable cluster id (persisted in `meta.properties`).
    pub(crate) cluster_id: String,
    /// Broker settings the cluster was started with.
    pub(crate) config: BrokerConfig,
    /// Broker settings changed at run time (`configs.rs`).
    dynamic: RwLock<DynamicConfigs>,
    /// All brokers, by node id order.
    pub(crate) brokers: Vec<BrokerInfo>,
    /// Controller node id.
    pub(crate) controller_id: i32,
    /// Data directory, or `None` in memory.
    pub(crate) data_dir: Option<Dir>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Consumer group coordinator.
    pub(crate) groups: Mutex<GroupCoordinator>,
    /// Transaction coordinator. Lock order: `txns`, then `groups`, then partition logs.
    pub(crate) txns: Mutex<TxnCoordinator>,
    /// Time source.
    pub(crate) clock: Clock,
    appended: tokio::sync::watch::Sender<u64>,
    /// Fault injection: how long to hold each response of an API (by key) before answering.
    pub(crate) response_delays: Mutex<BTreeMap<i16, std::time::Duration>>,
    /// What the log cleaner has done (`cleaner.rs`).
    cleaner_stats: Mutex<crate::log::cleaner::CleanerStats>,
    /// Where topic ids come from.
    ids: Ids,
}

impl ClusterCore {
    /// Opens the cluster: loads (or creates) the cluster id, every topic and its logs, and the
    /// committed offsets.
    pub(crate) fn open(
        config: BrokerConfig,
        brokers: Vec<BrokerInfo>,
        data_dir: Option<Dir>,
        clock: Clock,
        ids: Ids,
    ) -> Result<Arc<Self>> {
        let cluster_id = match &data_dir {
            Some(dir) => load_or_create_cluster_id(dir, &ids)?,
            None => short_id(&ids),
        };
        let controller_id = brokers.first().map_or(-1, |b| b.node_id);
        let (appended, _) = tokio::sync::watch::channel(0u64);
        let meta_dir = data_dir.as_ref().map(|d| d.sub("__cluster"));
        if let Some(d) = &meta_dir {
            d.create()?;
        }
        let dynamic = match &meta_dir {
            Some(dir) => DynamicConfigs::load(dir, configs::DYNAMIC_FILE)?,
            None => DynamicConfigs::default(),
        };
        let core = Arc::new(ClusterCore {
            cluster_id,
            dynamic: RwLock::new(dynamic),
            groups: Mutex::new(GroupCoordinator::new(&config).with_ids(ids.clone())),
            txns: Mutex::new(TxnCoordinator::new(ProducerIdAllocator::open(meta_dir), config.txn_max_timeout_ms)),
            config,
            brokers,
            controller_id,
            data_dir,
            topics: RwLock::new(BTreeMap::new()),
            clock,
            appended,
            response_delays: Mutex::new(BTreeMap::new()),
            cleaner_stats: Mutex::new(Default::default()),
            ids,
        });
        core.load_topics()?;
        core.ensure_internal_topic(OFFSETS_TOPIC, core.config.offsets_partitions)?;
        core.ensure_internal_topic(TXN_TOPIC, core.config.txn_partitions)?;
        let offsets = core.topic(OFFSETS_TOPIC).ok_or_else(|| Error::internal("no offsets topic"))?;
        core.groups.lock().load(&offsets)?;
        let txn_topic = core.topic(TXN_TOPIC).ok_or_else(|| Error::internal("no transaction log topic"))?;
        let metas = txn_io::load_txn_log(&txn_topic)?;
        let now = core.clock.now_ms();
        let mut txns = core.txns.lock();
        txns.load(metas);
        txns.recover(&mut CoreTxnIo::new(&core, now), now);
        drop(txns);
        Ok(core)
    }

    /// Creates a compacted internal topic if it does not exist yet.
    fn ensure_internal_topic(&self, name: &str, partitions: i32) -> Result<()> {
        if self.topic(name).is_some() {
            return Ok(());
        }
        let mut cfgs = BTreeMap::new();
        cfgs.insert("cleanup.policy".to_string(), "compact".to_string());
        // offsets.topic.segment.bytes and transaction.state.log.segment.bytes: segments small
        // enough to roll, so the cleaner reaches them.
        let key =
            if name == OFFSETS_TOPIC { "offsets.topic.segment.bytes" } else { "transaction.state.log.segment.bytes" };
        let segment_bytes = self.with_view(None, |v| v.broker_value(key).0);
        cfgs.insert("segment.bytes".to_string(), segment_bytes);
        let req = NewTopic {
            name: name.to_string(),
            partitions,
            replication_factor: self.brokers.len().min(3) as i16,
            configs: cfgs,
            ..Default::default()
        };
        self.create_topic_inner(req, true).map_err(|e| Error::internal(format!("creating {name}: {}", e.message)))?;
        Ok(())
    }

    fn load_topics(&self) -> Result<()> {
        let Some(dir) = &self.data_dir else { return Ok(()) };
        let meta_dir = Topic::meta_dir(dir);
        meta_dir.create()?;
        let now = self.clock.now_ms();
        let mut topics = self.topics.write();
        for (file, _) in meta_dir.list()? {
            let Some(name) = file.strip_suffix(".meta") else { continue };
            let meta = topic::load_meta(&meta_dir, &file)?;
            let mut partitions = Vec::with_capacity(meta.partitions.len());
            for (i, (replicas, leader, epoch)) in meta.partitions.into_iter().enumerate() {
                let pdir = Topic::partition_dir(dir, name, i as i32);
                let leader = if leader >= 0 { leader } else { replicas.first().copied().unwrap_or(-1) };
                let resolved = self.resolve_for(&meta.configs, leader);
                let log = PartitionLog::open(Some(pdir), resolved.log.clone(), now)?;
                partitions.push(Arc::new(Partition {
                    index: i as i32,
                    leader,
                    replicas,
                    leader_epoch: epoch,
                    config: RwLock::new(resolved),
                    log: Mutex::new(log),
                }));
            }
            let t = Topic {
                name: name.to_string(),
                id: meta.id,
                internal: meta.internal,
                configs: meta.configs,
                partitions,
            };
            topics.insert(name.to_string(), Arc::new(t));
        }
        Ok(())
    }

    /// Looks up a topic.
    pub(crate) fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// Looks up a topic by id.
    pub(crate) fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.topics.read().values().find(|t| t.id == id).cloned()
    }

    /// All topics, sorted by name.
    pub(crate) fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    /// Looks up one partition.
    pub(crate) fn partition(&self, topic: &str, p: i32) -> Option<Arc<Partition>> {
        let t = self.topic(topic)?;
        usize::try_from(p).ok().and_then(|i| t.partitions.get(i).cloned())
    }

    /// Wakes fetchers waiting for data.
    pub(crate) fn notify_append(&self) {
        self.appended.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Subscribes to append notifications (for long-polling fetches).
    pub(crate) fn subscribe_appends(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Default replica assignment: `rf` consecutive brokers starting at a spot derived from the
    /// topic name and partition, so leaders spread over brokers.
    fn assign(&self, name: &str, first_partition: i32, count: i32, rf: i16) -> Vec<Vec<i32>> {
        let n = self.brokers.len();
        let start = crc32c::crc32c(name.as_bytes()) as usize % n.max(1);
        (first_partition..first_partition + count)
            .map(|p| (0..rf as usize).map(|r| self.brokers[(start + p as usize + r) % n].node_id).collect())
            .collect()
    }

    /// Validates a CreateTopics entry without creating anything.
    pub(crate) fn check_new_topic(&self, req: &NewTopic) -> std::result::Result<Vec<Vec<i32>>, TopicError> {
        topic::validate_topic_name(&req.name).map_err(|m| TopicError::new(codes::INVALID_TOPIC_EXCEPTION, m))?;
        if req.name.starts_with("__") && req.name != OFFSETS_TOPIC && req.name.starts_with("__cluster") {
            return Err(TopicError::new(
                codes::INVALID_TOPIC_EXCEPTION,
                "topic names starting with __cluster are reserved",
            ));
        }
        if self.topics.read().contains_key(&req.name) {
            return Err(TopicError::new(codes::TOPIC_ALREADY_EXISTS, format!("topic '{}' already exists", req.name)));
        }
        for (k, v) in &req.configs {
            config::validate_topic_config(k, v).map_err(|m| TopicError::new(codes::INVALID_CONFIG, m))?;
        }
        let ids: Vec<i32> = self.brokers.iter().map(|b| b.node_id).collect();
        if !req.assignment.is_empty() {
            if req.partitions != -1 || req.replication_factor != -1 {
                return Err(TopicError::new(
                    codes::INVALID_REQUEST,
                    "give either an explicit assignment or partitions and replication factor, not both",
                ));
            }
            validate_assignment(&req.assignment, &ids)?;
            return Ok(req.assignment.clone());
        }
        let partitions = if req.partitions == -1 { self.num_partitions() } else { req.partitions };
        if !(1..=100_000).contains(&partitions) {
            return Err(TopicError::new(
                codes::INVALID_PARTITIONS,
                format!("{partitions} partitions: must be between 1 and 100000"),
            ));
        }
        let rf =
            if req.replication_factor == -1 { self.config.default_replication_factor } else { req.replication_factor };
        if rf < 1 || rf as usize > ids.len() {
            return Err(TopicError::new(
                codes::INVALID_REPLICATION_FACTOR,
                format!("replication factor {rf} is not between 1 and the {} live brokers", ids.len()),
            ));
        }
        Ok(self.assign(&req.name, 0, partitions, rf))
    }

    /// Creates a topic (CreateTopics, or auto-creation).
    pub(crate) fn create_topic(&self, req: NewTopic) -> std::result::Result<Arc<Topic>, TopicError> {
        self.create_topic_inner(req, false)
    }

    fn create_topic_inner(&self, req: NewTopic, internal: bool) -> std::result::Result<Arc<Topic>, TopicError> {
        let assignment = self.check_new_topic(&req)?;
        let io = |e: Error| TopicError::new(codes::UNKNOWN_SERVER_ERROR, e.to_string());
        let now = self.clock.now_ms();
        let mut partitions = Vec::with_capacity(assignment.len());
        for (i, replicas) in assignment.into_iter().enumerate() {
            let dir = self.data_dir.as_ref().map(|d| Topic::partition_dir(d, &req.name, i as i32));
            let resolved = self.resolve_for(&req.configs, replicas[0]);
            let log = PartitionLog::open(dir, resolved.log.clone(), now).map_err(io)?;
            partitions.push(Arc::new(Partition {
                index: i as i32,
                leader: replicas[0],
                replicas,
                leader_epoch: 0,
                config: RwLock::new(resolved),
                log: Mutex::new(log),
            }));
        }
        let topic =
            Arc::new(Topic { name: req.name.clone(), id: self.ids.uuid(), internal, configs: req.configs, partitions });
        let mut topics = self.topics.write();
        if topics.contains_key(&req.name) {
            return Err(TopicError::new(codes::TOPIC_ALREADY_EXISTS, format!("topic '{}' already exists", req.name)));
        }
        if let Some(dir) = &self.data_dir {
            topic.save(dir).map_err(io)?;
        }
        topics.insert(req.name.clone(), Arc::clone(&topic));
        tracing::info!(topic = %req.name, partitions = topic.partitions.len(), "created topic");
        Ok(topic)
    }

    /// Deletes a topic and its logs.
    pub(crate) fn delete_topic(&self, name: &str) -> std::result::Result<Uuid, TopicError> {
        if name == OFFSETS_TOPIC || name == TXN_TOPIC {
            return Err(TopicError::new(
                codes::INVALID_TOPIC_EXCEPTION,
                format!("the internal topic {name} cannot be deleted"),
            ));
        }
        let topic = self.topics.write().remove(name).ok_or_else(|| {
            TopicError::new(codes::UNKNOWN_TOPIC_OR_PARTITION, format!("topic '{name}' does not exist"))
        })?;
        if let Some(dir) = &self.data_dir {
            Topic::meta_dir(dir).remove(&Topic::meta_file(name));
        }
        for p in &topic.partitions {
            let mut log = p.log.lock();
            let placeholder = PartitionLog::open(None, log.config.clone(), 0)
                .map_err(|e| TopicError::new(codes::UNKNOWN_SERVER_ERROR, e.to_string()))?;
            std::mem::replace(&mut *log, placeholder).delete();
        }
        self.groups.lock().forget_topic(name);
        tracing::info!(topic = %name, "deleted topic");
        Ok(topic.id)
    }

    /// Grows a topic to `count` partitions (CreatePartitions).
    pub(crate) fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignment: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> std::result::Result<(), TopicError> {
        let topic = self.topic(name).ok_or_else(|| {
            TopicError::new(codes::UNKNOWN_TOPIC_OR_PARTITION, format!("topic '{name}' does not exist"))
        })?;
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(TopicError::new(
                codes::INVALID_PARTITIONS,
                format!("topic '{name}' has {current} partitions; the new count {count} must be larger"),
            ));
        }
        if count > 100_000 {
            return Err(TopicError::new(codes::INVALID_PARTITIONS, "at most 100000 partitions"));
        }
        let rf = topic.partitions[0].replicas.len() as i16;
        let extra = match assignment {
            Some(a) => {
                if a.len() as i32 != count - current {
                    return Err(TopicError::new(
                        codes::INVALID_REPLICA_ASSIGNMENT,
                        format!("{} assignments given for {} new partitions", a.len(), count - current),
                    ));
                }
                let ids: Vec<i32> = self.brokers.iter().map(|b| b.node_id).collect();
                validate_assignment(&a, &ids)?;
                a
            }
            None => self.assign(name, current, count - current, rf),
        };
        if validate_only {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let mut partitions = topic.partitions.clone();
        for replicas in extra {
            let i = partitions.len() as i32;
            let dir = self.data_dir.as_ref().map(|d| Topic::partition_dir(d, name, i));
            let resolved = self.resolve_for(&topic.configs, replicas[0]);
            let log = PartitionLog::open(dir, resolved.log.clone(), now)
                .map_err(|e| TopicError::new(codes::UNKNOWN_SERVER_ERROR, e.to_string()))?;
            partitions.push(Arc::new(Partition {
                index: i,
                leader: replicas[0],
                replicas,
                leader_epoch: 0,
                config: RwLock::new(resolved),
                log: Mutex::new(log),
            }));
        }
        self.replace_topic(Topic {
            name: topic.name.clone(),
            id: topic.id,
            internal: topic.internal,
            configs: topic.configs.clone(),
            partitions,
        })
    }

    /// Replaces a topic's configs (AlterConfigs: the full set; IncrementalAlterConfigs computes
    /// the full set first).
    pub(crate) fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> std::result::Result<(), TopicError> {
        let topic = self.topic(name).ok_or_else(|| {
            TopicError::new(codes::UNKNOWN_TOPIC_OR_PARTITION, format!("topic '{name}' does not exist"))
        })?;
        for (k, v) in &configs {
            config::validate_topic_config(k, v).map_err(|m| TopicError::new(codes::INVALID_CONFIG, m))?;
        }
        if validate_only {
            return Ok(());
        }
        for p in &topic.partitions {
            p.set_config(self.resolve_for(&configs, p.leader));
        }
        self.replace_topic(Topic {
            name: topic.name.clone(),
            id: topic.id,
            internal: topic.internal,
            configs,
            partitions: topic.partitions.clone(),
        })
    }

    fn replace_topic(&self, topic: Topic) -> std::result::Result<(), TopicError> {
        if let Some(dir) = &self.data_dir {
            topic.save(dir).map_err(|e| TopicError::new(codes::UNKNOWN_SERVER_ERROR, e.to_string()))?;
        }
        self.topics.write().insert(topic.name.clone(), Arc::new(topic));
        Ok(())
    }

    /// Runs retention on every partition; returns the number of segments deleted.
    pub(crate) fn apply_retention(&self) -> usize {
        let now = self.clock.now_ms();
        let mut deleted = 0;
        for t in self.topics() {
            for p in &t.partitions {
                let mut log = p.log.lock();
                log.producers.expire(now, self.config.producer_id_expiration_ms);
                match log.apply_retention(now) {
                    Ok(n) => deleted += n,
                    Err(e) => tracing::warn!(topic = %t.name, partition = p.index, error = %e, "retention failed"),
                }
            }
        }
        deleted
    }

    /// Syncs the logs whose oldest unsynced record is older than their `flush.ms`.
    pub(crate) fn flush_due(&self) {
        let now = self.clock.now_ms();
        for t in self.topics() {
            for p in &t.partitions {
                let mut log = p.log.lock();
                if log.config.flush_ms == i64::MAX {
                    continue;
                }
                if let Err(e) = log.flush_if_due(now) {
                    tracing::warn!(topic = %t.name, partition = p.index, error = %e, "flush failed");
                }
            }
        }
    }

    /// Flushes every log to disk (clean shutdown).
    pub(crate) fn flush_all(&self) {
        for t in self.topics() {
            for p in &t.partitions {
                if let Err(e) = p.log.lock().flush() {
                    tracing::warn!(topic = %t.name, partition = p.index, error = %e, "flush failed");
                }
            }
        }
    }

    /// The broker coordinating `group` (leader of its `__consumer_offsets` partition) and
    /// that partition.
    pub(crate) fn coordinator_for(&self, key: &str) -> (i32, i32) {
        self.internal_partition_for(OFFSETS_TOPIC, self.config.offsets_partitions, key)
    }

    /// The broker coordinating transactional id `key` (leader of its `__transaction_state`
    /// partition) and that partition.
    pub(crate) fn txn_coordinator_for(&self, key: &str) -> (i32, i32) {
        self.internal_partition_for(TXN_TOPIC, self.config.txn_partitions, key)
    }

    fn internal_partition_for(&self, topic: &str, partitions: i32, key: &str) -> (i32, i32) {
        let p = key_partition(key, partitions);
        let leader = self.partition(topic, p).map_or(-1, |p| p.leader);
        (leader, p)
    }

    /// Aborts timed-out transactions and retries unfinished marker writes.
    pub(crate) fn tick_transactions(&self) {
        let now = self.clock.now_ms();
        let mut txns = self.txns.lock();
        txns.tick(&mut CoreTxnIo::new(self, now), now);
    }

    /// Advertised address of a node.
    pub(crate) fn broker(&self, node_id: i32) -> Option<&BrokerInfo> {
        self.brokers.iter().find(|b| b.node_id == node_id)
    }
}

fn validate_assignment(a: &[Vec<i32>], ids: &[i32]) -> std::result::Result<(), TopicError> {
    let rf = a.first().map_or(0, Vec::len);
    for (i, replicas) in a.iter().enumerate() {
        if replicas.is_empty() || replicas.len() != rf {
            return Err(TopicError::new(
                codes::INVALID_REPLICA_ASSIGNMENT,
                format!("partition {i}: every partition needs the same non-zero number of replicas"),
            ));
        }
        let mut seen = replicas.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != replicas.len() {
            return Err(TopicError::new(
                codes::INVALID_REPLICA_ASSIGNMENT,
                format!("partition {i}: duplicate broker in {replicas:?}"),
            ));
        }
        if let Some(b) = replicas.iter().find(|b| !ids.contains(b)) {
            return Err(TopicError::new(
                codes::INVALID_REPLICA_ASSIGNMENT,
                format!("partition {i}: broker {b} does not exist"),
            ));
        }
    }
    Ok(())
}

/// The partition of an internal topic (`__consumer_offsets`, `__transaction_state`) that holds
/// `key` (a group or transactional id), as Kafka places them.
pub(crate) fn key_partition(key: &str, partitions: i32) -> i32 {
    (java_hash(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Java's `String.hashCode` (UTF-16 code units), which Kafka uses to place groups.
pub(crate) fn java_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

fn short_id(ids: &Ids) -> String {
    let u = ids.uuid();
    // Kafka cluster ids are base64 of 16 bytes (22 chars); ours are the uuid without dashes.
    u.simple().to_string()[..22].to_string()
}

fn load_or_create_cluster_id(dir: &Dir, ids: &Ids) -> Result<String> {
    dir.create()?;
    let path = dir.join("meta.properties");
    if let Some(text) = dir.read_string("meta.properties") {
        for line in text.lines() {
            if let Some(id) = line.strip_prefix("cluster.id=") {
                return Ok(id.trim().to_string());
            }
        }
        return Err(Error::Corrupt(format!("{} has no cluster.id line", path.display())));
    }
    let id = short_id(ids);
    dir.write_atomic("meta.properties", format!("version=1\ncluster.id={id}\n").as_bytes())?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_match_java_string_hash_code() {
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("a"), 97);
        assert_eq!(java_hash("hello"), 99162322);
        assert_eq!(
            java_hash("my-group-with-a-long-name"),
            "my-group-with-a-long-name".chars().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
        );
    }
}
