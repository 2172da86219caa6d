//! Dynamic broker configs: the broker settings Kafka lets AlterConfigs and
//! IncrementalAlterConfigs change while the cluster runs, for the whole cluster (the entity
//! default, resource name "") or one broker (resource name = its node id).
//!
//! A value is looked up per broker in Kafka's order: the broker's own dynamic value, the
//! cluster-wide dynamic default, the value the cluster was started with, the built-in default.
//! Dynamic values are persisted in `<data_dir>/__cluster/broker-configs` (one
//! `<entity> <key>=<value>` line each, written atomically) and reloaded on start.

use crate::storage::Dir;
use std::collections::BTreeMap;

use super::{broker_key_def, check_value, BrokerConfig, ConfigSource, ConfigType, TopicConfigDef, TOPIC_CONFIGS};
use crate::error::{Error, Result};

/// Who may set a dynamic key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The cluster-wide default or one broker.
    Any,
    /// Only the cluster-wide default (one value serves every broker).
    ClusterWide,
}

/// The keys that may change at run time, as in Kafka (`DynamicBrokerConfig`): the log
/// defaults behind topic configs, the log cleaner's settings and, cluster-wide only,
/// `num.partitions` for auto-created topics.
const DYNAMIC_KEYS: &[(&str, Scope)] = &[
    ("compression.type", Scope::Any),
    ("log.cleaner.backoff.ms", Scope::Any),
    ("log.cleaner.dedupe.buffer.size", Scope::Any),
    ("log.cleaner.delete.retention.ms", Scope::Any),
    ("log.cleaner.io.buffer.load.factor", Scope::Any),
    ("log.cleaner.io.buffer.size", Scope::Any),
    ("log.cleaner.io.max.bytes.per.second", Scope::Any),
    ("log.cleaner.max.compaction.lag.ms", Scope::Any),
    ("log.cleaner.min.cleanable.ratio", Scope::Any),
    ("log.cleaner.min.compaction.lag.ms", Scope::Any),
    ("log.cleaner.threads", Scope::Any),
    ("log.cleanup.policy", Scope::Any),
    ("log.flush.interval.messages", Scope::Any),
    ("log.flush.interval.ms", Scope::Any),
    ("log.index.interval.bytes", Scope::Any),
    ("log.index.size.max.bytes", Scope::Any),
    ("log.message.downconversion.enable", Scope::Any),
    ("log.message.timestamp.after.max.ms", Scope::Any),
    ("log.message.timestamp.before.max.ms", Scope::Any),
    ("log.message.timestamp.difference.max.ms", Scope::Any),
    ("log.message.timestamp.type", Scope::Any),
    ("log.preallocate", Scope::Any),
    ("log.retention.bytes", Scope::Any),
    ("log.retention.ms", Scope::Any),
    ("log.roll.jitter.ms", Scope::Any),
    ("log.roll.ms", Scope::Any),
    ("log.segment.bytes", Scope::Any),
    ("log.segment.delete.delay.ms", Scope::Any),
    ("message.max.bytes", Scope::Any),
    ("min.insync.replicas", Scope::Any),
    ("num.partitions", Scope::ClusterWide),
    ("unclean.leader.election.enable", Scope::Any),
];

/// Whether `key` may change at run time.
pub(crate) fn is_dynamic(key: &str) -> bool {
    DYNAMIC_KEYS.iter().any(|(k, _)| *k == key)
}

/// The dynamic broker configs of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DynamicConfigs {
    /// The cluster-wide defaults (resource name "").
    pub(crate) default: BTreeMap<String, String>,
    /// Per broker, by node id.
    pub(crate) brokers: BTreeMap<i32, BTreeMap<String, String>>,
}

/// A config entity: the cluster-wide default or one broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entity {
    /// Resource name "".
    Default,
    /// One broker.
    Broker(i32),
}

impl DynamicConfigs {
    /// The dynamic values set on `entity`.
    pub(crate) fn of(&self, entity: Entity) -> BTreeMap<String, String> {
        match entity {
            Entity::Default => self.default.clone(),
            Entity::Broker(id) => self.brokers.get(&id).cloned().unwrap_or_default(),
        }
    }

    /// Replaces the dynamic values of `entity` (already checked with [`check_dynamic`]).
    pub(crate) fn set(&mut self, entity: Entity, values: BTreeMap<String, String>) {
        match entity {
            Entity::Default => self.default = values,
            Entity::Broker(id) if values.is_empty() => {
                self.brokers.remove(&id);
            }
            Entity::Broker(id) => {
                self.brokers.insert(id, values);
            }
        }
    }

    /// Reads the persisted configs; a missing file means none. A line that no longer
    /// parses or checks is skipped with a warning naming it (the rest still load).
    pub(crate) fn load(dir: &Dir, name: &str) -> Result<Self> {
        let path = dir.join(name);
        let text = match dir.fs.read(&path) {
            Ok(t) => String::from_utf8_lossy(&t).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::io("reading dynamic broker configs", e)),
        };
        let mut out = Self::default();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let parsed = line.split_once(' ').and_then(|(entity, kv)| {
                let (k, v) = kv.split_once('=')?;
                let entity = match entity {
                    "default" => Entity::Default,
                    id => Entity::Broker(id.parse().ok()?),
                };
                Some((entity, k.to_string(), v.to_string()))
            });
            let Some((entity, k, v)) = parsed.filter(|(e, k, v)| check_dynamic(*e, k, v).is_ok()) else {
                tracing::warn!(file = %path.display(), line = n + 1, "skipping a dynamic broker config that does not parse or check");
                continue;
            };
            let mut values = out.of(entity);
            values.insert(k, v);
            out.set(entity, values);
        }
        Ok(out)
    }

    /// The persisted form (see [`Self::load`]).
    pub(crate) fn to_file(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.default {
            s.push_str(&format!("default {k}={v}\n"));
        }
        for (id, values) in &self.brokers {
            for (k, v) in values {
                s.push_str(&format!("{id} {k}={v}\n"));
            }
        }
        s
    }
}

/// The Kafka error class of a refused dynamic change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Unknown key or bad value (INVALID_CONFIG).
    Invalid(String),
    /// A known key that cannot change at run time, or not for this entity (INVALID_REQUEST).
    ReadOnly(String),
}

/// Checks that `key` may be set to `value` on `entity`; the refusal names the key.
pub(crate) fn check_dynamic(entity: Entity, key: &str, value: &str) -> std::result::Result<(), Refusal> {
    let known = TOPIC_CONFIGS.iter().any(|d| d.broker_synonym == key) || broker_key_def(key).is_some();
    if !known {
        return Err(Refusal::Invalid(format!("unknown broker config '{key}'")));
    }
    match DYNAMIC_KEYS.iter().find(|(k, _)| *k == key) {
        None => {
            return Err(Refusal::ReadOnly(format!(
                "{key} is read-only: it is set when the cluster starts and cannot be changed at run time"
            )))
        }
        Some((_, Scope::ClusterWide)) if entity != Entity::Default => {
            return Err(Refusal::ReadOnly(format!(
                "{key} can only be set cluster-wide (the default broker resource, name \"\"), not per broker"
            )))
        }
        Some(_) => {}
    }
    check_broker_value(key, value).map_err(Refusal::Invalid)
}

/// Checks a value for a broker-level key (a topic config's synonym or a broker key).
pub(crate) fn check_broker_value(key: &str, value: &str) -> std::result::Result<(), String> {
    if let Some(def) = TOPIC_CONFIGS.iter().find(|d| d.broker_synonym == key) {
        return check_value(def, value).map_err(|m| m.replacen(def.name, key, 1));
    }
    let Some((_, _, ty, _)) = broker_key_def(key) else { return Err(format!("unknown broker config '{key}'")) };
    let v = value.trim();
    let ok = match ty {
        ConfigType::Boolean => matches!(v, "true" | "false"),
        ConfigType::Int => v.parse::<i32>().is_ok_and(|n| n >= 0 || key == "num.partitions" && n >= 1),
        ConfigType::Long => v.parse::<i64>().is_ok_and(|n| n >= 0),
        ConfigType::Double => v.parse::<f64>().is_ok_and(|n| n >= 0.0),
        ConfigType::String | ConfigType::List => true,
    };
    let ok = ok && !(key == "num.partitions" && v.parse::<i32>().is_ok_and(|n| n < 1));
    if ok {
        Ok(())
    } else {
        Err(format!("broker config {key}: '{value}' is not a valid {}", type_name(*ty)))
    }
}

fn type_name(ty: ConfigType) -> &'static str {
    match ty {
        ConfigType::Boolean => "boolean (true or false)",
        ConfigType::Int => "non-negative 32-bit integer",
        ConfigType::Long => "non-negative 64-bit integer",
        ConfigType::Double => "non-negative number",
        ConfigType::String => "string",
        ConfigType::List => "list",
    }
}

/// The broker settings one broker sees: its dynamic values, the cluster-wide dynamic
/// defaults, the static config and the built-in defaults, in that order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BrokerView<'a> {
    /// Static config.
    pub(crate) config: &'a BrokerConfig,
    /// Dynamic configs.
    pub(crate) dynamic: &'a DynamicConfigs,
    /// The broker (`None`: the cluster-wide view, without per-broker values).
    pub(crate) node: Option<i32>,
}

impl BrokerView<'_> {
    /// Every layer that sets `key`, most specific first.
    pub(crate) fn layers(&self, key: &str) -> Vec<(String, ConfigSource)> {
        let mut out = Vec::new();
        if let Some(v) = self.node.and_then(|n| self.dynamic.brokers.get(&n)).and_then(|m| m.get(key)) {
            out.push((v.clone(), ConfigSource::DynamicBroker));
        }
        if let Some(v) = self.dynamic.default.get(key) {
            out.push((v.clone(), ConfigSource::DynamicDefault));
        }
        if let Some(v) = self.config.overrides.get(key) {
            out.push((v.clone(), ConfigSource::StaticBroker));
        }
        out
    }

    /// The value of a broker key (not a topic synonym) and its source.
    pub(crate) fn broker_value(&self, key: &str) -> (String, ConfigSource) {
        self.layers(key).into_iter().next().unwrap_or_else(|| {
            (broker_key_def(key).map(|(_, d, ..)| d.to_string()).unwrap_or_default(), ConfigSource::Default)
        })
    }

    /// The broker-level value of a topic config and its source.
    pub(crate) fn topic_default(&self, def: &TopicConfigDef) -> (String, ConfigSource) {
        let mut layers = self.layers(def.broker_synonym);
        if layers.is_empty() {
            // Started with the topic-level name as a broker override (`--config retention.ms=…`).
            if let Some(v) = self.config.overrides.get(def.name) {
                layers.push((v.clone(), ConfigSource::StaticBroker));
            }
        }
        layers.into_iter().next().unwrap_or_else(|| (def.default.to_string(), ConfigSource::Default))
    }

    /// `num.partitions` for topics created without a count.
    pub(crate) fn num_partitions(&self) -> i32 {
        self.broker_value("num.partitions").0.trim().parse().unwrap_or(self.config.num_partitions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BrokerConfig {
        BrokerConfig::from_overrides([("log.retention.ms".to_string(), "1000".to_string())].into_iter().collect())
            .unwrap()
    }

    #[test]
    fn should_look_up_broker_then_default_then_static_then_built_in() {
        let config = config();
        let mut dynamic = DynamicConfigs::default();
        let def = super::super::topic_config_def("retention.ms").unwrap();
        let view = |d: &DynamicConfigs, node| BrokerView { config: &config, dynamic: d, node }.topic_default(def);
        assert_eq!(view(&dynamic, Some(1)), ("1000".into(), ConfigSource::StaticBroker));
        dynamic.set(Entity::Default, [("log.retention.ms".to_string(), "2000".to_string())].into());
        assert_eq!(view(&dynamic, Some(1)), ("2000".into(), ConfigSource::DynamicDefault));
        dynamic.set(Entity::Broker(1), [("log.retention.ms".to_string(), "3000".to_string())].into());
        assert_eq!(view(&dynamic, Some(1)), ("3000".into(), ConfigSource::DynamicBroker));
        assert_eq!(view(&dynamic, Some(2)), ("2000".into(), ConfigSource::DynamicDefault));
        assert_eq!(view(&dynamic, None), ("2000".into(), ConfigSource::DynamicDefault));
    }

    #[test]
    fn should_refuse_static_unknown_and_bad_values_naming_the_key() {
        let e = check_dynamic(Entity::Default, "offsets.topic.num.partitions", "3").unwrap_err();
        assert!(
            matches!(&e, Refusal::ReadOnly(m) if m.contains("offsets.topic.num.partitions") && m.contains("read-only"))
        );
        let e = check_dynamic(Entity::Broker(1), "num.partitions", "3").unwrap_err();
        assert!(matches!(&e, Refusal::ReadOnly(m) if m.contains("cluster-wide")));
        let e = check_dynamic(Entity::Default, "no.such.key", "3").unwrap_err();
        assert!(matches!(&e, Refusal::Invalid(m) if m.contains("no.such.key")));
        let e = check_dynamic(Entity::Default, "log.retention.ms", "soon").unwrap_err();
        assert!(matches!(&e, Refusal::Invalid(m) if m.contains("log.retention.ms")), "{e:?}");
        let e = check_dynamic(Entity::Default, "num.partitions", "0").unwrap_err();
        assert!(matches!(&e, Refusal::Invalid(m) if m.contains("num.partitions")));
        assert!(check_dynamic(Entity::Broker(1), "log.cleaner.threads", "2").is_ok());
        assert!(check_dynamic(Entity::Default, "log.cleaner.io.buffer.load.factor", "0.8").is_ok());
    }

    #[test]
    fn should_round_trip_the_persisted_form_and_skip_bad_lines() {
        let mut d = DynamicConfigs::default();
        d.set(Entity::Default, [("num.partitions".to_string(), "4".to_string())].into());
        d.set(Entity::Broker(2), [("log.retention.ms".to_string(), "5".to_string())].into());
        let dir = Dir::new(std::sync::Arc::new(crate::storage::SimFs::new()), "/data");
        dir.create().unwrap();
        dir.write_atomic("broker-configs", (d.to_file() + "garbage\n7 broker.id=1\n").as_bytes()).unwrap();
        assert_eq!(DynamicConfigs::load(&dir, "broker-configs").unwrap(), d);
        assert_eq!(DynamicConfigs::load(&dir, "none").unwrap(), DynamicConfigs::default());
    }
}
