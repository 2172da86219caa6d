//! Broker configs at run time: the dynamic layer over the static [`BrokerConfig`], how topics
//! resolve against it, and AlterConfigs on broker resources (persisted, then applied to every
//! partition).

use std::collections::BTreeMap;

use super::{ClusterCore, TopicError};
use crate::config::dynamic::{check_dynamic, Entity, Refusal};
use crate::config::{self, BrokerView, ResolvedTopicConfig};
use crate::protocol::codes;

/// The file the dynamic broker configs are persisted in, in the metadata directory.
pub(crate) const DYNAMIC_FILE: &str = "broker-configs";

impl ClusterCore {
    /// Runs `f` with the broker settings `node` sees (`None`: cluster-wide).
    pub(crate) fn with_view<R>(&self, node: Option<i32>, f: impl FnOnce(BrokerView<'_>) -> R) -> R {
        let dynamic = self.dynamic.read();
        f(BrokerView { config: &self.config, dynamic: &dynamic, node })
    }

    /// The settings of a partition with topic configs `topic` led by broker `leader`.
    pub(crate) fn resolve_for(&self, topic: &BTreeMap<String, String>, leader: i32) -> ResolvedTopicConfig {
        self.with_view(Some(leader), |v| config::resolve(v, topic))
    }

    /// `num.partitions` now (topics created without a partition count).
    pub(crate) fn num_partitions(&self) -> i32 {
        self.with_view(None, |v| v.num_partitions())
    }

    /// Parses a broker resource name: "" is the cluster-wide default, else a live node id.
    pub(crate) fn broker_entity(&self, name: &str) -> Result<Entity, TopicError> {
        if name.is_empty() {
            return Ok(Entity::Default);
        }
        match name.parse::<i32>().ok().filter(|id| self.broker(*id).is_some()) {
            Some(id) => Ok(Entity::Broker(id)),
            None => Err(TopicError::new(codes::INVALID_REQUEST, format!("broker '{name}' does not exist"))),
        }
    }

    /// The dynamic values set on `entity`.
    pub(crate) fn dynamic_configs(&self, entity: Entity) -> BTreeMap<String, String> {
        self.dynamic.read().of(entity)
    }

    /// Replaces the dynamic configs of `entity` with `values` (AlterConfigs; incremental
    /// alters compute the full set first). Every key is checked first, and nothing changes if
    /// one is refused: unknown keys and bad values with INVALID_CONFIG, read-only keys with
    /// INVALID_REQUEST, each naming the key. The new set is persisted before it takes effect
    /// on every partition.
    pub(crate) fn set_broker_configs(
        &self,
        entity: Entity,
        values: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        for (k, v) in &values {
            check_dynamic(entity, k, v).map_err(|r| match r {
                Refusal::Invalid(m) => TopicError::new(codes::INVALID_CONFIG, m),
                Refusal::ReadOnly(m) => TopicError::new(codes::INVALID_REQUEST, m),
            })?;
        }
        if validate_only {
            return Ok(());
        }
        {
            let mut dynamic = self.dynamic.write();
            let mut next = dynamic.clone();
            next.set(entity, values);
            if let Some(dir) = &self.data_dir {
                dir.sub("__cluster")
                    .write_atomic(DYNAMIC_FILE, next.to_file().as_bytes())
                    .map_err(|e| TopicError::new(codes::UNKNOWN_SERVER_ERROR, e.to_string()))?;
            }
            *dynamic = next;
        }
        tracing::info!(?entity, "dynamic broker configs changed");
        self.refresh_partition_configs();
        Ok(())
    }

    /// Re-resolves every partition's settings (after a broker config changed).
    fn refresh_partition_configs(&self) {
        for topic in self.topics() {
            for p in &topic.partitions {
                let resolved = self.resolve_for(&topic.configs, p.leader);
                if *p.config.read() != resolved {
                    p.set_config(resolved);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicI64;
    use std::sync::Arc;

    use super::*;
    use crate::clock::Clock;
    use crate::cluster::{BrokerInfo, NewTopic};
    use crate::config::BrokerConfig;

    fn core() -> Arc<ClusterCore> {
        let brokers = (1..=2).map(|n| BrokerInfo { node_id: n, host: "127.0.0.1".into(), port: 0 }).collect();
        let config = BrokerConfig::from_overrides(BTreeMap::new()).unwrap();
        ClusterCore::open(config, brokers, None, Clock::Manual(Arc::new(AtomicI64::new(0))), crate::ids::Ids::seeded(1))
            .unwrap()
    }

    fn topic(core: &ClusterCore, name: &str, configs: &[(&str, &str)]) -> Arc<crate::cluster::Topic> {
        let configs = configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        core.create_topic(NewTopic {
            name: name.into(),
            partitions: 2,
            replication_factor: 1,
            configs,
            ..Default::default()
        })
        .unwrap()
    }

    /// The partition logs get the new settings at once: the cluster-wide default for every
    /// broker, a broker's own value for the partitions it leads, a topic's own value over both.
    #[test]
    fn should_apply_dynamic_broker_configs_to_every_partition_log() {
        let core = core();
        let plain = topic(&core, "plain", &[]);
        let own = topic(&core, "own", &[("retention.ms", "7")]);
        let retention =
            |p: &crate::cluster::Partition| (p.config.read().log.retention_ms, p.log.lock().config.retention_ms);
        core.set_broker_configs(Entity::Default, [("log.retention.ms".to_string(), "1000".to_string())].into(), false)
            .unwrap();
        for p in &plain.partitions {
            assert_eq!(retention(p), (1000, 1000));
        }
        core.set_broker_configs(
            Entity::Broker(2),
            [("log.retention.ms".to_string(), "2000".to_string())].into(),
            false,
        )
        .unwrap();
        let leaders: Vec<i32> = plain.partitions.iter().map(|p| p.leader).collect();
        assert!(leaders.contains(&1) && leaders.contains(&2), "partitions on both brokers: {leaders:?}");
        for p in &plain.partitions {
            assert_eq!(retention(p).1, if p.leader == 2 { 2000 } else { 1000 }, "partition led by {}", p.leader);
        }
        for p in &own.partitions {
            assert_eq!(retention(p), (7, 7), "the topic's own value wins");
        }
        core.set_broker_configs(Entity::Default, BTreeMap::new(), true).unwrap();
        assert_eq!(
            retention(&plain.partitions[0]).1,
            if plain.partitions[0].leader == 2 { 2000 } else { 1000 },
            "validate-only changes nothing"
        );
        core.set_broker_configs(Entity::Default, BTreeMap::new(), false).unwrap();
        let p1 = plain.partitions.iter().find(|p| p.leader == 1).unwrap();
        assert_eq!(retention(p1).1, 604_800_000, "deleting the default restores the built-in value");
    }
}
