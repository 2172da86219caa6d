//! Topic and broker configuration: the known keys, their types, defaults and validation.
//!
//! A topic stores only the keys set on it (source TOPIC_CONFIG); everything else falls back to
//! the broker's value: a dynamic one set at run time for the broker or cluster-wide
//! (`dynamic`), the one the cluster was started with (STATIC_BROKER_CONFIG), or the built-in
//! default (DEFAULT_CONFIG). DescribeConfigs reports every key with its source.

pub(crate) mod dynamic;

use std::collections::BTreeMap;

pub(crate) use dynamic::{BrokerView, DynamicConfigs};

use crate::log::LogConfig;

/// Value type of a config, as DescribeConfigs v3+ reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfigType {
    /// true/false.
    Boolean = 1,
    /// Free text.
    String = 2,
    /// 32-bit integer.
    Int = 3,
    /// 64-bit integer.
    Long = 5,
    /// Floating point.
    Double = 6,
    /// Comma-separated list.
    List = 7,
}

/// One known topic config.
#[derive(Debug)]
pub(crate) struct TopicConfigDef {
    /// Topic-level key.
    pub(crate) name: &'static str,
    /// Broker-level synonym (the key a cluster-wide default is set with).
    pub(crate) broker_synonym: &'static str,
    /// Built-in default.
    pub(crate) default: &'static str,
    /// Value type.
    pub(crate) ty: ConfigType,
    /// Smallest allowed value for numbers.
    pub(crate) min: i64,
    /// Allowed values for enumerations (empty = any).
    pub(crate) allowed: &'static [&'static str],
    /// One-line documentation.
    pub(crate) doc: &'static str,
}

macro_rules! def {
    ($name:expr, $syn:expr, $default:expr, $ty:ident, $min:expr, $allowed:expr, $doc:expr) => {
        TopicConfigDef {
            name: $name,
            broker_synonym: $syn,
            default: $default,
            ty: ConfigType::$ty,
            min: $min,
            allowed: $allowed,
            doc: $doc,
        }
    };
}

/// Every topic config broker-sim knows, sorted by name.
pub(crate) static TOPIC_CONFIGS: &[TopicConfigDef] = &[
    def!(
        "cleanup.policy",
        "log.cleanup.policy",
        "delete",
        List,
        0,
        &["delete", "compact"],
        "Retention policy for old segments: delete, compact, or both."
    ),
    def!(
        "compression.type",
        "compression.type",
        "producer",
        String,
        0,
        &["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"],
        "Final compression of the topic; broker-sim stores batches as the producer sent them."
    ),
    def!(
        "delete.retention.ms",
        "log.cleaner.delete.retention.ms",
        "86400000",
        Long,
        0,
        &[],
        "How long tombstones are kept on compacted topics."
    ),
    def!(
        "file.delete.delay.ms",
        "log.segment.delete.delay.ms",
        "60000",
        Long,
        0,
        &[],
        "Delay before a deleted segment's files are removed."
    ),
    def!(
        "flush.messages",
        "log.flush.interval.messages",
        "9223372036854775807",
        Long,
        1,
        &[],
        "Records between forced fsyncs."
    ),
    def!(
        "flush.ms",
        "log.flush.interval.ms",
        "9223372036854775807",
        Long,
        0,
        &[],
        "Milliseconds between forced fsyncs."
    ),
    def!(
        "index.interval.bytes",
        "log.index.interval.bytes",
        "4096",
        Int,
        0,
        &[],
        "Bytes of batches between two offset index entries."
    ),
    def!(
        "max.compaction.lag.ms",
        "log.cleaner.max.compaction.lag.ms",
        "9223372036854775807",
        Long,
        1,
        &[],
        "Longest time a record stays uncompacted."
    ),
    def!(
        "max.message.bytes",
        "message.max.bytes",
        "1048588",
        Int,
        0,
        &[],
        "Largest record batch the topic accepts, in bytes."
    ),
    def!(
        "message.downconversion.enable",
        "log.message.downconversion.enable",
        "true",
        Boolean,
        0,
        &[],
        "Deprecated in Kafka 3: down-conversion for old fetch versions. Accepted and ignored: broker-sim \
         serves record batches v2 only, to Fetch v4 and later."
    ),
    def!(
        "message.format.version",
        "log.message.format.version",
        "3.0-IV1",
        String,
        0,
        &[],
        "Deprecated in Kafka 3: the on-disk record format. Accepted (a Kafka version such as 2.8 or \
         3.0-IV1) and ignored: record batches are always v2, as in Kafka 3."
    ),
    def!(
        "message.timestamp.after.max.ms",
        "log.message.timestamp.after.max.ms",
        "9223372036854775807",
        Long,
        0,
        &[],
        "CreateTime topics: the furthest a record's timestamp may be ahead of the broker's clock."
    ),
    def!(
        "message.timestamp.before.max.ms",
        "log.message.timestamp.before.max.ms",
        "9223372036854775807",
        Long,
        0,
        &[],
        "CreateTime topics: the furthest a record's timestamp may be behind the broker's clock."
    ),
    def!(
        "message.timestamp.difference.max.ms",
        "log.message.timestamp.difference.max.ms",
        "9223372036854775807",
        Long,
        0,
        &[],
        "Deprecated in Kafka 3.6: both timestamp bounds, for whichever of before/after.max.ms is not set."
    ),
    def!(
        "message.timestamp.type",
        "log.message.timestamp.type",
        "CreateTime",
        String,
        0,
        &["CreateTime", "LogAppendTime"],
        "Whether record timestamps are the producer's (CreateTime) or the broker's (LogAppendTime)."
    ),
    def!(
        "min.cleanable.dirty.ratio",
        "log.cleaner.min.cleanable.ratio",
        "0.5",
        Double,
        0,
        &[],
        "Dirty ratio above which a compacted log is cleaned."
    ),
    def!(
        "min.compaction.lag.ms",
        "log.cleaner.min.compaction.lag.ms",
        "0",
        Long,
        0,
        &[],
        "Shortest time a record stays uncompacted."
    ),
    def!(
        "min.insync.replicas",
        "min.insync.replicas",
        "1",
        Int,
        1,
        &[],
        "Replicas that must be in sync for acks=all produce to succeed."
    ),
    def!("preallocate", "log.preallocate", "false", Boolean, 0, &[], "Preallocate segment files."),
    def!(
        "retention.bytes",
        "log.retention.bytes",
        "-1",
        Long,
        -1,
        &[],
        "Largest size of a partition before old segments are deleted (-1 = unlimited)."
    ),
    def!(
        "retention.ms",
        "log.retention.ms",
        "604800000",
        Long,
        -1,
        &[],
        "Age after which old segments are deleted (-1 = forever)."
    ),
    def!("segment.bytes", "log.segment.bytes", "1073741824", Int, 14, &[], "Size at which a segment is rolled."),
    def!(
        "segment.index.bytes",
        "log.index.size.max.bytes",
        "10485760",
        Int,
        4,
        &[],
        "Largest size of an offset index file."
    ),
    def!("segment.jitter.ms", "log.roll.jitter.ms", "0", Long, 0, &[], "Random jitter subtracted from segment.ms."),
    def!("segment.ms", "log.roll.ms", "604800000", Long, 1, &[], "Age at which a segment is rolled."),
    def!(
        "unclean.leader.election.enable",
        "unclean.leader.election.enable",
        "false",
        Boolean,
        0,
        &[],
        "Allow out-of-sync replicas to become leader."
    ),
];

/// Looks up a topic config definition.
pub(crate) fn topic_config_def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one topic config value; the error names the key and what is wrong.
pub(crate) fn validate_topic_config(name: &str, value: &str) -> Result<(), String> {
    let Some(def) = topic_config_def(name) else {
        return Err(format!("unknown topic config '{name}'"));
    };
    check_value(def, value)
}

fn check_value(def: &TopicConfigDef, value: &str) -> Result<(), String> {
    let name = def.name;
    match def.ty {
        ConfigType::Int | ConfigType::Long => {
            let v: i64 = value.trim().parse().map_err(|_| format!("{name}: '{value}' is not an integer"))?;
            if def.ty == ConfigType::Int && i32::try_from(v).is_err() {
                return Err(format!("{name}: {v} does not fit in a 32-bit integer"));
            }
            if v < def.min {
                return Err(format!("{name}: {v} is below the minimum {}", def.min));
            }
        }
        ConfigType::Double => {
            let v: f64 = value.trim().parse().map_err(|_| format!("{name}: '{value}' is not a number"))?;
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name}: {v} must be between 0 and 1"));
            }
        }
        ConfigType::Boolean => {
            if !matches!(value.trim(), "true" | "false") {
                return Err(format!("{name}: '{value}' is not true or false"));
            }
        }
        ConfigType::List => {
            for item in value.split(',').map(str::trim) {
                if !def.allowed.is_empty() && !def.allowed.contains(&item) {
                    return Err(format!("{name}: '{item}' is not one of {}", def.allowed.join(", ")));
                }
            }
        }
        ConfigType::String if name == "message.format.version" => {
            if !is_kafka_version(value.trim()) {
                return Err(format!("{name}: '{value}' is not a Kafka version (such as 2.8 or 3.0-IV1)"));
            }
        }
        ConfigType::String => {
            if !def.allowed.is_empty() && !def.allowed.contains(&value.trim()) {
                return Err(format!("{name}: '{value}' is not one of {}", def.allowed.join(", ")));
            }
        }
    }
    Ok(())
}

/// A Kafka release or metadata version as `message.format.version` takes it: `0.10.2`, `2.8`,
/// `3.0-IV1`, `2.8-IV0`.
fn is_kafka_version(v: &str) -> bool {
    let (release, iv) = match v.split_once('-') {
        Some((r, iv)) => (r, Some(iv)),
        None => (v, None),
    };
    let parts: Vec<&str> = release.split('.').collect();
    let numeric = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    (2..=3).contains(&parts.len())
        && parts.iter().all(numeric)
        && iv.is_none_or(|iv| iv.strip_prefix("IV").is_some_and(|n| numeric(&n)))
}

/// Where a config value came from (DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfigSource {
    /// Set on the topic.
    Topic = 1,
    /// Set at run time for this broker.
    DynamicBroker = 2,
    /// Set at run time for every broker (the cluster-wide default).
    DynamicDefault = 3,
    /// Set when the cluster was started.
    StaticBroker = 4,
    /// Built in.
    Default = 5,
}

/// Cluster-wide settings fixed at start.
#[derive(Debug, Clone)]
pub(crate) struct BrokerConfig {
    /// Broker-level overrides (`log.retention.ms`, `num.partitions`, ...), validated at start.
    pub(crate) overrides: BTreeMap<String, String>,
    /// `auto.create.topics.enable`.
    pub(crate) auto_create_topics: bool,
    /// `num.partitions`: partitions of auto-created topics and of CreateTopics with -1.
    pub(crate) num_partitions: i32,
    /// `default.replication.factor`.
    pub(crate) default_replication_factor: i16,
    /// `offsets.topic.num.partitions`.
    pub(crate) offsets_partitions: i32,
    /// `group.min.session.timeout.ms`.
    pub(crate) group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub(crate) group_max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`.
    pub(crate) group_initial_rebalance_delay_ms: i64,
    /// `socket.request.max.bytes`: largest request frame.
    pub(crate) max_request_bytes: usize,
    /// `log.retention.check.interval.ms`.
    pub(crate) retention_check_interval_ms: i64,
    /// `transaction.state.log.num.partitions`.
    pub(crate) txn_partitions: i32,
    /// `transaction.max.timeout.ms`: the largest `transaction.timeout.ms` a producer may ask for.
    pub(crate) txn_max_timeout_ms: i32,
    /// `producer.id.expiration.ms`: idle producers' state is forgotten after this.
    pub(crate) producer_id_expiration_ms: i64,
}

/// Broker-level keys other than topic-config synonyms, with their defaults.
pub(crate) static BROKER_KEYS: &[(&str, &str, ConfigType, &str)] = &[
    ("auto.create.topics.enable", "true", ConfigType::Boolean, "Create unknown topics on metadata requests."),
    ("num.partitions", "1", ConfigType::Int, "Partitions of auto-created topics."),
    ("default.replication.factor", "1", ConfigType::Int, "Replication factor of auto-created topics."),
    ("offsets.topic.num.partitions", "50", ConfigType::Int, "Partitions of __consumer_offsets."),
    ("offsets.topic.segment.bytes", "104857600", ConfigType::Int, "Segment size of __consumer_offsets (compacted)."),
    (
        "transaction.state.log.segment.bytes",
        "104857600",
        ConfigType::Int,
        "Segment size of __transaction_state (compacted).",
    ),
    ("group.min.session.timeout.ms", "6000", ConfigType::Int, "Smallest session timeout a consumer may ask for."),
    ("group.max.session.timeout.ms", "1800000", ConfigType::Int, "Largest session timeout a consumer may ask for."),
    (
        "group.initial.rebalance.delay.ms",
        "3000",
        ConfigType::Int,
        "Wait for more members before the first rebalance of an empty group (Kafka's 3000 ms).",
    ),
    ("log.cleaner.enable", "true", ConfigType::Boolean, "Run the log cleaner, which compacts compacted topics."),
    ("log.cleaner.backoff.ms", "15000", ConfigType::Long, "Log cleaner: sleep when there is nothing to clean."),
    (
        "log.cleaner.dedupe.buffer.size",
        "134217728",
        ConfigType::Long,
        "Log cleaner: memory for the key map across all cleaner threads.",
    ),
    ("log.cleaner.io.buffer.load.factor", "0.9", ConfigType::Double, "Log cleaner: how full the key map may get."),
    ("log.cleaner.io.buffer.size", "524288", ConfigType::Int, "Log cleaner: I/O buffer memory across its threads."),
    (
        "log.cleaner.io.max.bytes.per.second",
        "1.7976931348623157E308",
        ConfigType::Double,
        "Log cleaner: I/O throttle, read plus write bytes per second.",
    ),
    ("log.cleaner.threads", "1", ConfigType::Int, "Log cleaner: background threads."),
    ("socket.request.max.bytes", "104857600", ConfigType::Int, "Largest request the broker reads."),
    ("log.retention.check.interval.ms", "300000", ConfigType::Long, "How often retention runs."),
    ("transaction.state.log.num.partitions", "50", ConfigType::Int, "Partitions of __transaction_state."),
    (
        "transaction.max.timeout.ms",
        "900000",
        ConfigType::Int,
        "Largest transaction.timeout.ms a producer may ask for (INVALID_TRANSACTION_TIMEOUT above).",
    ),
    (
        "producer.id.expiration.ms",
        "86400000",
        ConfigType::Int,
        "Forget the state of a producer idle this long on a partition (no open transaction).",
    ),
];

impl BrokerConfig {
    /// Builds the broker config from `key=value` overrides; the error names the bad key.
    pub(crate) fn from_overrides(overrides: BTreeMap<String, String>) -> Result<Self, String> {
        for (k, v) in &overrides {
            if let Some(def) = TOPIC_CONFIGS.iter().find(|d| d.broker_synonym == k || d.name == k) {
                check_value(def, v)?;
            } else if broker_key_def(k).is_some() {
                dynamic::check_broker_value(k, v)?;
            } else {
                return Err(format!("unknown broker config '{k}'"));
            }
        }
        let get = |k: &str| -> String {
            overrides.get(k).cloned().unwrap_or_else(|| {
                BROKER_KEYS.iter().find(|(n, ..)| *n == k).map(|(_, d, ..)| d.to_string()).unwrap_or_default()
            })
        };
        let int = |k: &str| get(k).parse::<i64>().unwrap_or(0);
        let cfg = BrokerConfig {
            auto_create_topics: get("auto.create.topics.enable") == "true",
            num_partitions: int("num.partitions") as i32,
            default_replication_factor: int("default.replication.factor") as i16,
            offsets_partitions: int("offsets.topic.num.partitions") as i32,
            group_min_session_timeout_ms: int("group.min.session.timeout.ms") as i32,
            group_max_session_timeout_ms: int("group.max.session.timeout.ms") as i32,
            group_initial_rebalance_delay_ms: int("group.initial.rebalance.delay.ms"),
            max_request_bytes: int("socket.request.max.bytes") as usize,
            retention_check_interval_ms: int("log.retention.check.interval.ms"),
            txn_partitions: int("transaction.state.log.num.partitions") as i32,
            txn_max_timeout_ms: int("transaction.max.timeout.ms").clamp(1, i64::from(i32::MAX)) as i32,
            producer_id_expiration_ms: int("producer.id.expiration.ms"),
            overrides,
        };
        if cfg.num_partitions < 1
            || cfg.offsets_partitions < 1
            || cfg.txn_partitions < 1
            || cfg.default_replication_factor < 1
        {
            return Err("num.partitions, offsets.topic.num.partitions, transaction.state.log.num.partitions and \
                 default.replication.factor must be at least 1"
                .into());
        }
        Ok(cfg)
    }
}

/// The definition of a broker key that is not a topic config's synonym.
pub(crate) fn broker_key_def(key: &str) -> Option<&'static (&'static str, &'static str, ConfigType, &'static str)> {
    BROKER_KEYS.iter().find(|(n, ..)| *n == key)
}

/// The effective value of a topic config as broker `broker` sees it.
pub(crate) fn effective(
    broker: BrokerView<'_>,
    topic: &BTreeMap<String, String>,
    name: &str,
) -> (String, ConfigSource) {
    if let Some(v) = topic.get(name) {
        return (v.clone(), ConfigSource::Topic);
    }
    match topic_config_def(name) {
        Some(def) => broker.topic_default(def),
        None => (String::new(), ConfigSource::Default),
    }
}

/// Topic settings the broker enforces, resolved from topic overrides and broker defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedTopicConfig {
    /// Settings of the partition logs.
    pub(crate) log: LogConfig,
    /// `max.message.bytes`.
    pub(crate) max_message_bytes: usize,
    /// `message.timestamp.type` is LogAppendTime.
    pub(crate) log_append_time: bool,
    /// `min.insync.replicas`.
    pub(crate) min_insync_replicas: i32,
    /// `cleanup.policy` contains compact.
    pub(crate) compact: bool,
    /// CreateTime bounds: how far behind and ahead of the broker's clock a record's timestamp
    /// may be (`message.timestamp.before/after.max.ms`, else `difference.max.ms`).
    pub(crate) timestamp_bounds: (i64, i64),
}

impl ResolvedTopicConfig {
    /// Whether record timestamps must be checked against [`Self::timestamp_bounds`].
    pub(crate) fn checks_timestamps(&self) -> bool {
        !self.log_append_time && self.timestamp_bounds != (i64::MAX, i64::MAX)
    }
}

/// Resolves the enforced settings of a topic's partitions led by `broker`.
pub(crate) fn resolve(broker: BrokerView<'_>, topic: &BTreeMap<String, String>) -> ResolvedTopicConfig {
    let get = |k: &str| effective(broker, topic, k).0;
    let long = |k: &str| get(k).trim().parse::<i64>().unwrap_or(0);
    let policy = get("cleanup.policy");
    ResolvedTopicConfig {
        log: LogConfig {
            segment_bytes: long("segment.bytes").max(14) as u64,
            segment_ms: long("segment.ms").max(1),
            retention_ms: long("retention.ms"),
            retention_bytes: long("retention.bytes"),
            delete_enabled: policy.split(',').any(|p| p.trim() == "delete"),
            compact: policy.split(',').any(|p| p.trim() == "compact"),
            delete_retention_ms: long("delete.retention.ms"),
            min_cleanable_ratio_ppm: (get("min.cleanable.dirty.ratio")
                .trim()
                .parse::<f64>()
                .unwrap_or(0.5)
                .clamp(0.0, 1.0)
                * 1e6) as u32,
            min_compaction_lag_ms: long("min.compaction.lag.ms"),
            max_compaction_lag_ms: long("max.compaction.lag.ms").max(1),
            flush_messages: long("flush.messages").max(1),
            flush_ms: long("flush.ms").max(0),
        },
        max_message_bytes: long("max.message.bytes").max(0) as usize,
        log_append_time: get("message.timestamp.type") == "LogAppendTime",
        min_insync_replicas: long("min.insync.replicas") as i32,
        compact: policy.split(',').any(|p| p.trim() == "compact"),
        timestamp_bounds: {
            let difference = long("message.timestamp.difference.max.ms");
            let or_difference = |v: i64| if v == i64::MAX { difference } else { v };
            (
                or_difference(long("message.timestamp.before.max.ms")),
                or_difference(long("message.timestamp.after.max.ms")),
            )
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_reject_values_that_do_not_fit_the_type() {
        assert!(validate_topic_config("retention.ms", "abc").unwrap_err().contains("retention.ms"));
        assert!(validate_topic_config("segment.bytes", "1").is_err());
        assert!(validate_topic_config("cleanup.policy", "delete,compact").is_ok());
        assert!(validate_topic_config("cleanup.policy", "shred").is_err());
        assert!(validate_topic_config("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate_topic_config("no.such.key", "1").unwrap_err().contains("unknown"));
        for good in ["0.10.2", "2.8", "3.0-IV1", "2.8-IV0"] {
            assert!(validate_topic_config("message.format.version", good).is_ok(), "{good}");
        }
        for bad in ["banana", "3", "3.0-IV", "3.0-x1", "3..0"] {
            assert!(validate_topic_config("message.format.version", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn should_prefer_topic_then_broker_then_default() {
        let config =
            BrokerConfig::from_overrides([("log.retention.ms".to_string(), "1000".to_string())].into_iter().collect())
                .unwrap();
        let dynamic = DynamicConfigs::default();
        let broker = BrokerView { config: &config, dynamic: &dynamic, node: None };
        let mut topic = BTreeMap::new();
        assert_eq!(effective(broker, &topic, "retention.ms"), ("1000".into(), ConfigSource::StaticBroker));
        assert_eq!(effective(broker, &topic, "segment.ms"), ("604800000".into(), ConfigSource::Default));
        topic.insert("retention.ms".into(), "5".into());
        assert_eq!(effective(broker, &topic, "retention.ms"), ("5".into(), ConfigSource::Topic));
        assert_eq!(resolve(broker, &topic).log.retention_ms, 5);
    }

    #[test]
    fn should_reject_unknown_broker_keys() {
        let bad = BrokerConfig::from_overrides([("bogus".to_string(), "1".to_string())].into_iter().collect());
        assert!(bad.unwrap_err().contains("bogus"));
    }
}
