//! Topic names and internal topics: repartition topics are called
//! `<application.id>-<name>`, a store's changelog `<application.id>-<store>-changelog`. At start
//! the partition count of every sub-topology and internal topic is derived from the source
//! topics (a repartition topic gets the partition count of the sub-topology writing it, or,
//! when a join reads it, that of the topics it is joined with), the co-partitioning of joins is
//! checked, and missing internal topics are created.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use rustc_hash::FxHashMap;

use super::config::StreamsConfig;
use crate::error::{Error, Result};
use crate::Topology;

/// Maps the topology's topic names to the names on the cluster and back.
#[derive(Debug)]
pub(crate) struct TopicNames {
    app: String,
    physical: FxHashMap<String, Arc<str>>,
    logical: FxHashMap<Arc<str>, Arc<str>>,
}

impl TopicNames {
    pub(crate) fn new(app: &str, topology: &Topology) -> Self {
        let mut names =
            TopicNames { app: app.to_string(), physical: FxHashMap::default(), logical: FxHashMap::default() };
        for t in topology.all_source_topics() {
            let p: Arc<str> =
                if topology.is_internal_topic(&t) { format!("{app}-{t}").into() } else { t.as_str().into() };
            names.logical.insert(p.clone(), t.as_str().into());
            names.physical.insert(t, p);
        }
        for t in topology.internal_topics() {
            let p: Arc<str> = format!("{app}-{t}").into();
            names.logical.insert(p.clone(), t.into());
            names.physical.insert(t.to_string(), p);
        }
        names
    }

    /// The cluster name of topic `logical` (internal topics get the application prefix).
    pub(crate) fn physical(&self, logical: &Arc<str>) -> Arc<str> {
        self.physical.get(&**logical).cloned().unwrap_or_else(|| logical.clone())
    }

    /// The topology's name of a consumed cluster topic.
    pub(crate) fn logical(&self, physical: &str) -> Option<&Arc<str>> {
        self.logical.get(physical)
    }

    /// The changelog topic of store `store`.
    pub(crate) fn changelog(&self, store: &str) -> String {
        format!("{}-{store}-changelog", self.app)
    }

    /// Every topic the application consumes, by cluster name.
    pub(crate) fn consumed(&self) -> Vec<String> {
        let mut v: Vec<String> = self.logical.keys().map(|p| p.to_string()).collect();
        v.sort();
        v
    }
}

/// What an internal topic is for, which decides its configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TopicKind {
    /// A repartition topic: never expires by time (`retention.ms=-1`); the engine deletes
    /// what it consumed and committed instead (see `purge`).
    Repartition,
    /// A store's changelog: compacted.
    Changelog,
    /// The dead-letter topic: the broker's defaults.
    DeadLetter,
}

/// An internal topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InternalTopic {
    pub(crate) name: String,
    pub(crate) partitions: i32,
    pub(crate) kind: TopicKind,
}

/// Partition counts and the internal topics a topology needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicPlan {
    /// Partitions (= tasks) of every sub-topology.
    pub(crate) subtopologies: BTreeMap<u32, i32>,
    /// Internal topics that must exist, with their partition counts.
    pub(crate) internal: Vec<InternalTopic>,
}

/// Derives the plan from the partition counts of the topics that exist (`existing`, by
/// cluster name).
pub(crate) fn plan(topology: &Topology, names: &TopicNames, existing: &BTreeMap<String, i32>) -> Result<TopicPlan> {
    let subs = topology.subtopology_count();
    let mut counts: BTreeMap<String, i32> = BTreeMap::new();
    for t in topology.all_source_topics() {
        if topology.is_internal_topic(&t) {
            continue;
        }
        match existing.get(&t) {
            Some(n) => {
                counts.insert(t, *n);
            }
            None => {
                return Err(Error::Config(format!(
                    "source topic '{t}' does not exist; create it before starting the application"
                )))
            }
        }
    }
    let groups = topology.copartition_groups();
    let mut sub_counts: BTreeMap<u32, i32> = BTreeMap::new();
    for _ in 0..=subs + 1 {
        for s in 0..subs {
            let topics = topology.source_topics(s);
            if let Some(n) = topics.iter().map(|t| counts.get(t).copied()).collect::<Option<Vec<i32>>>() {
                if let Some(max) = n.into_iter().max() {
                    sub_counts.insert(s, max);
                }
            }
        }
        for t in topology.internal_topics() {
            let writers: Vec<Option<i32>> = (0..subs)
                .filter(|s| topology.sink_topics(*s).iter().any(|x| x == t))
                .map(|s| sub_counts.get(&s).copied())
                .collect();
            if !writers.is_empty() && writers.iter().all(Option::is_some) {
                counts.insert(t.to_string(), writers.into_iter().flatten().max().unwrap_or(1));
            }
        }
        // A repartition topic a join reads is read partition by partition with the join's
        // other topics: it takes their partition count (Kafka Streams does the same).
        for group in &groups {
            let external =
                group.iter().filter(|t| !topology.is_internal_topic(t)).filter_map(|t| counts.get(t).copied()).max();
            if let Some(n) = external {
                for t in group.iter().filter(|t| topology.is_internal_topic(t)) {
                    counts.insert(t.clone(), n);
                }
            }
        }
    }
    let mut internal = Vec::new();
    for t in topology.internal_topics() {
        let Some(&n) = counts.get(t) else {
            return Err(Error::InvalidTopology(format!(
                "the partition count of internal topic '{t}' cannot be derived: no sub-topology with known \
                 source partitions writes it"
            )));
        };
        internal.push(InternalTopic {
            name: names.physical(&Arc::from(t)).to_string(),
            partitions: n,
            kind: TopicKind::Repartition,
        });
    }
    for s in 0..subs {
        let Some(&n) = sub_counts.get(&s) else {
            return Err(Error::InvalidTopology(format!(
                "sub-topology {s} reads no topic with a known partition count"
            )));
        };
        for store in topology.stores_of(s) {
            if store.logged() {
                internal.push(InternalTopic {
                    name: names.changelog(store.name()),
                    partitions: n,
                    kind: TopicKind::Changelog,
                });
            }
        }
    }
    topology.check_copartitioning(&counts)?;
    for it in &internal {
        if let Some(&have) = existing.get(&it.name) {
            if have != it.partitions {
                return Err(Error::Config(format!(
                    "internal topic '{}' has {have} partitions but the application needs {}; delete it (and the \
                     application's state) or restore the source topics' partition counts",
                    it.name, it.partitions
                )));
            }
        }
    }
    Ok(TopicPlan { subtopologies: sub_counts, internal })
}

/// Reads the cluster's topics, plans, and creates the missing internal topics (and the
/// dead-letter topic, if one is configured and missing).
pub(crate) fn prepare(topology: &Topology, names: &TopicNames, config: &StreamsConfig) -> Result<TopicPlan> {
    let cc = config.rdkafka_config("admin", &format!("{}-admin", config.application_id), &[], &[]);
    let admin: AdminClient<DefaultClientContext> =
        cc.create().map_err(|e| Error::kafka("creating the admin client", e))?;
    let existing = list_topics(&admin)?;
    let plan = plan(topology, names, &existing)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| Error::kafka("starting the admin runtime", e))?;
    let repartition_existing: Vec<&str> = plan
        .internal
        .iter()
        .filter(|t| t.kind == TopicKind::Repartition && existing.contains_key(&t.name))
        .map(|t| t.name.as_str())
        .collect();
    for topic in repartition_existing {
        without_time_retention(&admin, &runtime, topic)?;
    }
    let mut missing: Vec<InternalTopic> =
        plan.internal.iter().filter(|t| !existing.contains_key(&t.name)).cloned().collect();
    if let super::DeserializationHandler::DeadLetter(t) = &config.deserialization_handler {
        if !existing.contains_key(t) {
            missing.push(InternalTopic { name: t.clone(), partitions: 1, kind: TopicKind::DeadLetter });
        }
    }
    if missing.is_empty() {
        return Ok(plan);
    }
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|t| {
            let n = NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(config.replication_factor));
            match t.kind {
                TopicKind::Changelog => n.set("cleanup.policy", "compact"),
                TopicKind::Repartition => n.set("cleanup.policy", "delete").set("retention.ms", "-1"),
                TopicKind::DeadLetter => n,
            }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = runtime
        .block_on(admin.create_topics(new.iter(), &opts))
        .map_err(|e| Error::kafka("creating internal topics", e))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => return Err(Error::kafka(format!("creating internal topic '{t}'"), e)),
        }
    }
    tracing::info!(topics = ?missing.iter().map(|t| &t.name).collect::<Vec<_>>(), "created internal topics");
    Ok(plan)
}

/// Sets `retention.ms=-1` on repartition topic `topic` if it has a time limit (created by an
/// older version with the broker's default), keeping its other topic configs (AlterConfigs
/// replaces the whole set).
fn without_time_retention(
    admin: &AdminClient<DefaultClientContext>,
    runtime: &tokio::runtime::Runtime,
    topic: &str,
) -> Result<()> {
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let op = || format!("reading the configs of repartition topic '{topic}'");
    let described = runtime
        .block_on(admin.describe_configs(&[ResourceSpecifier::Topic(topic)], &opts))
        .map_err(|e| Error::kafka(op(), e))?
        .into_iter()
        .next()
        .ok_or_else(|| Error::kafka(op(), "no answer"))?
        .map_err(|e| Error::kafka(op(), e))?;
    let retention = described.get("retention.ms").and_then(|e| e.value.clone());
    if retention.as_deref() == Some("-1") {
        return Ok(());
    }
    let mut entries: std::collections::HashMap<&str, &str> = described
        .entries
        .iter()
        .filter(|e| e.source == ConfigSource::DynamicTopic && e.name != "retention.ms")
        .filter_map(|e| Some((e.name.as_str(), e.value.as_deref()?)))
        .collect();
    entries.insert("retention.ms", "-1");
    let alter = AlterConfig { specifier: ResourceSpecifier::Topic(topic), entries };
    let op = format!("setting retention.ms=-1 on repartition topic '{topic}'");
    for r in runtime.block_on(admin.alter_configs([&alter], &opts)).map_err(|e| Error::kafka(&op, e))? {
        r.map_err(|(_, e)| Error::kafka(&op, e))?;
    }
    tracing::info!(topic, was = ?retention, "repartition topic set to no time retention (retention.ms=-1)");
    Ok(())
}

/// Every topic of the cluster and its partition count.
fn list_topics(admin: &AdminClient<DefaultClientContext>) -> Result<BTreeMap<String, i32>> {
    let md = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(30))
        .map_err(|e| Error::kafka("reading cluster metadata", e))?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_string(), t.partitions().len() as i32))
        .collect())
}

#[cfg(test)]
mod tests {
    use moldau_state_store::StringSerde;

    use super::*;
    use crate::processor::required;
    use crate::{Processor, ProcessorContext, Record};

    struct Forward;

    impl Processor<String, String, String, String> for Forward {
        fn process(&mut self, r: Record<String, String>, ctx: &mut ProcessorContext<'_, String, String>) -> Result<()> {
            ctx.forward(r)
        }
    }

    /// `stream` (rekeyed through `rekey-repartition`) joined with `table`, as a stream–table
    /// join on a non-key column is built.
    fn rekeyed_join() -> Topology {
        let s = || required(StringSerde);
        let mut t = Topology::new();
        t.add_source::<String, String>("in", &["stream"], s(), s()).unwrap();
        t.add_internal_topic("rekey-repartition").unwrap();
        t.add_sink::<String, String>("rekey-sink", "rekey-repartition", s(), s(), &["in"]).unwrap();
        t.add_source::<String, String>("rekeyed", &["rekey-repartition"], s(), s()).unwrap();
        t.add_source::<String, String>("rows", &["table"], s(), s()).unwrap();
        t.add_processor::<String, String, String, String, _, _>("join", || Forward, &["rekeyed", "rows"]).unwrap();
        t.require_copartitioned("join").unwrap();
        t
    }

    #[test]
    fn should_size_a_repartition_topic_that_is_joined_like_the_topic_it_is_joined_with() {
        let topology = rekeyed_join();
        let names = TopicNames::new("app", &topology);
        let existing: BTreeMap<String, i32> = [("stream".to_string(), 2), ("table".to_string(), 3)].into();
        let plan = plan(&topology, &names, &existing).unwrap();
        let rekey = plan.internal.iter().find(|t| t.name == "app-rekey-repartition").expect("the repartition topic");
        assert_eq!(rekey.partitions, 3, "the join reads it partition by partition with the table's 3");
        assert_eq!(plan.subtopologies.values().copied().collect::<Vec<_>>(), [2, 3], "{plan:?}");
    }
}
