//! The low-level topology: named source, processor and sink nodes, state stores attached to
//! processors, split into sub-topologies; and its instantiation as one task per partition.
//!
//! Nodes are typed: a processor's input types must equal each parent's output types, checked
//! when it is added. A task instantiates the nodes of one sub-topology children-first, so each
//! node holds its typed children and records flow as Rust values (no serialization between
//! nodes).

pub(crate) mod build;
mod describe;
pub(crate) mod node;
mod store;

use std::any::TypeId;
use std::collections::BTreeMap;
use std::sync::Arc;

pub use describe::{NodeDescription, SubtopologyDescription, TopologyDescription};
pub use node::InputRecord;
pub use store::{StoreBuilder, StoreKind};

pub use build::RawStoreSupplier;
pub(crate) use build::{BuildFn, Builder};

use crate::error::{Error, Result};
use crate::processor::{Processor, Record, SharedSerde};

/// The `(key, value)` types of records entering or leaving a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TypeTag {
    id: TypeId,
    key: &'static str,
    value: &'static str,
}

impl TypeTag {
    pub(crate) fn of<K: 'static, V: 'static>() -> Self {
        TypeTag { id: TypeId::of::<(K, V)>(), key: std::any::type_name::<K>(), value: std::any::type_name::<V>() }
    }
}

impl std::fmt::Display for TypeTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({}, {})", self.key, self.value)
    }
}

/// What a node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Source { topics: Vec<String> },
    Processor,
    Sink { topic: Option<String> },
}

pub(crate) struct NodeDef {
    pub(crate) name: String,
    pub(crate) kind: NodeKind,
    pub(crate) parents: Vec<usize>,
    pub(crate) children: Vec<usize>,
    pub(crate) output: Option<TypeTag>,
    pub(crate) stores: Vec<String>,
    pub(crate) build: BuildFn,
}

/// A processing graph (Kafka Streams' `Topology`). Build it with the `add_*` methods, then run
/// it: every sub-topology becomes one task per partition of its source topics.
#[derive(Default)]
pub struct Topology {
    pub(crate) nodes: Vec<NodeDef>,
    pub(crate) stores: BTreeMap<String, StoreBuilder>,
    names: BTreeMap<String, usize>,
    source_topics: BTreeMap<String, usize>,
    /// Nodes (joins) whose sub-topology's source topics must be co-partitioned.
    copartitioned: Vec<String>,
    /// Topics the application owns (repartition topics): the runtime names them
    /// `<application.id>-<topic>` and creates them.
    internal_topics: std::collections::BTreeSet<String>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

impl Topology {
    /// An empty topology.
    pub fn new() -> Self {
        Topology::default()
    }

    fn check_new_name(&self, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(Error::InvalidTopology("a node needs a name".into()));
        }
        if self.names.contains_key(name) {
            return Err(Error::InvalidTopology(format!("a node called '{name}' already exists")));
        }
        Ok(())
    }

    /// Resolves parents and checks that each outputs `input`.
    fn parents(&self, child: &str, parents: &[&str], input: TypeTag) -> Result<Vec<usize>> {
        if parents.is_empty() {
            return Err(Error::InvalidTopology(format!("node '{child}' needs at least one parent")));
        }
        let mut out = Vec::with_capacity(parents.len());
        for p in parents {
            let &i = self
                .names
                .get(*p)
                .ok_or_else(|| Error::InvalidTopology(format!("node '{child}': parent '{p}' does not exist")))?;
            let node = &self.nodes[i];
            let Some(output) = node.output else {
                return Err(Error::InvalidTopology(format!("node '{child}': parent '{p}' is a sink")));
            };
            if output != input {
                return Err(Error::InvalidTopology(format!(
                    "node '{child}' takes {input} but its parent '{p}' forwards {output}"
                )));
            }
            out.push(i);
        }
        Ok(out)
    }

    fn push(&mut self, def: NodeDef) -> usize {
        let i = self.nodes.len();
        for &p in &def.parents {
            self.nodes[p].children.push(i);
        }
        self.names.insert(def.name.clone(), i);
        self.nodes.push(def);
        i
    }

    /// Adds a source reading `topics` with these serdes. A topic is read by one source only.
    pub fn add_source<K: Clone + 'static, V: Clone + 'static>(
        &mut self,
        name: &str,
        topics: &[&str],
        keys: SharedSerde<K>,
        values: SharedSerde<V>,
    ) -> Result<&mut Self> {
        self.check_new_name(name)?;
        if topics.is_empty() {
            return Err(Error::InvalidTopology(format!("source '{name}' reads no topic")));
        }
        for t in topics {
            if let Some(&other) = self.source_topics.get(*t) {
                return Err(Error::InvalidTopology(format!(
                    "topic '{t}' is already read by source '{}'",
                    self.nodes[other].name
                )));
            }
        }
        let index = self.nodes.len();
        for t in topics {
            self.source_topics.insert(t.to_string(), index);
        }
        let node_name = name.to_string();
        let build: BuildFn =
            Box::new(move |b: &mut Builder<'_>| b.source(node_name.clone(), keys.clone(), values.clone()));
        self.push(NodeDef {
            name: name.to_string(),
            kind: NodeKind::Source { topics: topics.iter().map(|t| t.to_string()).collect() },
            parents: Vec::new(),
            children: Vec::new(),
            output: Some(TypeTag::of::<K, V>()),
            stores: Vec::new(),
            build,
        });
        Ok(self)
    }

    /// Adds a processor made by `supplier` (called once per task) under `parents`.
    pub fn add_processor<KIn, VIn, KOut, VOut, P, F>(
        &mut self,
        name: &str,
        supplier: F,
        parents: &[&str],
    ) -> Result<&mut Self>
    where
        KIn: 'static,
        VIn: 'static,
        KOut: Clone + 'static,
        VOut: Clone + 'static,
        P: Processor<KIn, VIn, KOut, VOut>,
        F: Fn() -> P + Send + Sync + 'static,
    {
        self.check_new_name(name)?;
        let parents = self.parents(name, parents, TypeTag::of::<KIn, VIn>())?;
        let node_name = name.to_string();
        let build: BuildFn =
            Box::new(move |b: &mut Builder<'_>| b.processor::<KIn, VIn, KOut, VOut, P>(node_name.clone(), supplier()));
        self.push(NodeDef {
            name: name.to_string(),
            kind: NodeKind::Processor,
            parents,
            children: Vec::new(),
            output: Some(TypeTag::of::<KOut, VOut>()),
            stores: Vec::new(),
            build,
        });
        Ok(self)
    }

    /// Adds a sink writing to `topic` under `parents`.
    pub fn add_sink<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        topic: &str,
        keys: SharedSerde<K>,
        values: SharedSerde<V>,
        parents: &[&str],
    ) -> Result<&mut Self> {
        if topic.is_empty() {
            return Err(Error::InvalidTopology(format!("sink '{name}' has an empty topic name")));
        }
        let topic: Arc<str> = topic.into();
        let fixed = topic.to_string();
        self.sink(name, Some(fixed), keys, values, parents, Arc::new(move |_: &Record<K, V>| topic.to_string()), true)
    }

    /// Adds a sink that chooses each record's topic with `extractor`.
    pub fn add_sink_with<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        extractor: impl Fn(&Record<K, V>) -> String + Send + Sync + 'static,
        keys: SharedSerde<K>,
        values: SharedSerde<V>,
        parents: &[&str],
    ) -> Result<&mut Self> {
        self.sink(name, None, keys, values, parents, Arc::new(extractor), false)
    }

    #[allow(clippy::too_many_arguments)]
    fn sink<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        topic: Option<String>,
        keys: SharedSerde<K>,
        values: SharedSerde<V>,
        parents: &[&str],
        extractor: node::TopicExtractor<K, V>,
        fixed: bool,
    ) -> Result<&mut Self> {
        self.check_new_name(name)?;
        let parents = self.parents(name, parents, TypeTag::of::<K, V>())?;
        let node_name = name.to_string();
        let fixed_topic = topic.clone().filter(|_| fixed);
        let build: BuildFn = Box::new(move |b: &mut Builder<'_>| {
            b.sink(node_name.clone(), fixed_topic.clone(), extractor.clone(), keys.clone(), values.clone())
        });
        self.push(NodeDef {
            name: name.to_string(),
            kind: NodeKind::Sink { topic },
            parents,
            children: Vec::new(),
            output: None,
            stores: Vec::new(),
            build,
        });
        Ok(self)
    }

    /// Adds a store and connects it to `processors`.
    pub fn add_state_store(&mut self, store: StoreBuilder, processors: &[&str]) -> Result<&mut Self> {
        if self.stores.contains_key(store.name()) {
            return Err(Error::InvalidTopology(format!("a store called '{}' already exists", store.name())));
        }
        let name = store.name().to_string();
        self.stores.insert(name.clone(), store);
        self.connect_store(&name, processors)
    }

    /// Connects an existing store to more processors.
    pub fn connect_store(&mut self, store: &str, processors: &[&str]) -> Result<&mut Self> {
        if !self.stores.contains_key(store) {
            return Err(Error::InvalidTopology(format!("no store called '{store}'")));
        }
        for p in processors {
            let &i = self
                .names
                .get(*p)
                .ok_or_else(|| Error::InvalidTopology(format!("store '{store}': processor '{p}' does not exist")))?;
            if self.nodes[i].kind != NodeKind::Processor {
                return Err(Error::InvalidTopology(format!("store '{store}': '{p}' is not a processor")));
            }
            if !self.nodes[i].stores.iter().any(|s| s == store) {
                self.nodes[i].stores.push(store.to_string());
            }
        }
        Ok(self)
    }

    /// The sub-topology of every node: connected components of the node graph, stores
    /// joining the processors that share them, numbered by their first node.
    pub(crate) fn subtopology_of_nodes(&self) -> Vec<u32> {
        let n = self.nodes.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], mut x: usize) -> usize {
            while p[x] != x {
                p[x] = p[p[x]];
                x = p[x];
            }
            x
        }
        let union = |p: &mut Vec<usize>, a: usize, b: usize| {
            let (ra, rb) = (find(p, a), find(p, b));
            if ra != rb {
                let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
                p[hi] = lo;
            }
        };
        for (i, node) in self.nodes.iter().enumerate() {
            for &c in &node.children {
                union(&mut parent, i, c);
            }
        }
        let mut first_user: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for s in &node.stores {
                match first_user.get(s.as_str()) {
                    Some(&j) => union(&mut parent, i, j),
                    None => {
                        first_user.insert(s, i);
                    }
                }
            }
        }
        let mut ids: BTreeMap<usize, u32> = BTreeMap::new();
        (0..n)
            .map(|i| {
                let root = find(&mut parent, i);
                let next = ids.len() as u32;
                *ids.entry(root).or_insert(next)
            })
            .collect()
    }

    /// Number of sub-topologies.
    pub fn subtopology_count(&self) -> u32 {
        self.subtopology_of_nodes().into_iter().max().map_or(0, |m| m + 1)
    }

    /// The nodes of sub-topology `s`.
    fn nodes_of(&self, s: u32) -> impl Iterator<Item = &NodeDef> {
        let subs = self.subtopology_of_nodes();
        self.nodes.iter().enumerate().filter(move |(i, _)| subs[*i] == s).map(|(_, n)| n)
    }

    /// The topics sub-topology `s` reads.
    pub fn source_topics(&self, s: u32) -> Vec<String> {
        let mut out: Vec<String> = self
            .nodes_of(s)
            .flat_map(|n| match &n.kind {
                NodeKind::Source { topics } => topics.clone(),
                _ => Vec::new(),
            })
            .collect();
        out.sort();
        out
    }

    /// The stores of sub-topology `s`.
    pub fn stores_of(&self, s: u32) -> Vec<&StoreBuilder> {
        let mut names: Vec<&str> = self.nodes_of(s).flat_map(|n| n.stores.iter().map(String::as_str)).collect();
        names.sort_unstable();
        names.dedup();
        names.into_iter().filter_map(|n| self.stores.get(n)).collect()
    }

    /// The sub-topology reading `topic`, if any.
    pub fn subtopology_reading(&self, topic: &str) -> Option<u32> {
        let &i = self.source_topics.get(topic)?;
        Some(self.subtopology_of_nodes()[i])
    }

    /// Requires the source topics of `node`'s sub-topology to have equal partition counts
    /// (a join reads them partition by partition).
    pub fn require_copartitioned(&mut self, node: &str) -> Result<&mut Self> {
        if !self.names.contains_key(node) {
            return Err(Error::InvalidTopology(format!("co-partitioning: node '{node}' does not exist")));
        }
        self.copartitioned.push(node.to_string());
        Ok(self)
    }

    /// The source topics of each sub-topology that must be co-partitioned (a join's).
    pub fn copartition_groups(&self) -> Vec<Vec<String>> {
        let subs = self.subtopology_of_nodes();
        self.copartitioned.iter().map(|node| self.source_topics(subs[self.names[node]])).collect()
    }

    /// Checks co-partitioning against the topics' partition counts (the runtime calls this at
    /// start with the counts from cluster metadata). The error names every topic, its count
    /// and the join that needs them equal.
    pub fn check_copartitioning(&self, partitions: &BTreeMap<String, i32>) -> Result<()> {
        let subs = self.subtopology_of_nodes();
        for node in &self.copartitioned {
            let s = subs[self.names[node]];
            let topics = self.source_topics(s);
            let mut counts = Vec::with_capacity(topics.len());
            for t in &topics {
                match partitions.get(t) {
                    Some(n) => counts.push((t.as_str(), *n)),
                    None => {
                        return Err(Error::InvalidTopology(format!("'{node}' reads topic '{t}', which does not exist")))
                    }
                }
            }
            if counts.windows(2).any(|w| w[0].1 != w[1].1) {
                let list: Vec<String> = counts.iter().map(|(t, n)| format!("{t} ({n} partitions)")).collect();
                return Err(Error::InvalidTopology(format!(
                    "'{node}' joins topics that are not co-partitioned: {}; they must have the same number of \
                     partitions (repartition one side, or recreate a topic with matching partitions)",
                    list.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Every topic some source reads.
    pub fn all_source_topics(&self) -> Vec<String> {
        self.source_topics.keys().cloned().collect()
    }

    /// Marks `topic` as internal to the application (a repartition topic written by a sink and
    /// read by a source of this topology). At run time it is called `<application.id>-<topic>`
    /// and created with the partition count of the sub-topology writing it.
    pub fn add_internal_topic(&mut self, topic: &str) -> Result<&mut Self> {
        if topic.is_empty() {
            return Err(Error::InvalidTopology("an internal topic needs a name".into()));
        }
        self.internal_topics.insert(topic.to_string());
        Ok(self)
    }

    /// The internal topics (see [`Topology::add_internal_topic`]).
    pub fn internal_topics(&self) -> impl Iterator<Item = &str> {
        self.internal_topics.iter().map(String::as_str)
    }

    /// Whether `topic` is internal.
    pub fn is_internal_topic(&self, topic: &str) -> bool {
        self.internal_topics.contains(topic)
    }

    /// The fixed topics sub-topology `s` writes (sinks that choose a topic per record are not
    /// listed).
    pub fn sink_topics(&self, s: u32) -> Vec<String> {
        let mut out: Vec<String> = self
            .nodes_of(s)
            .filter_map(|n| match &n.kind {
                NodeKind::Sink { topic: Some(t) } => Some(t.clone()),
                _ => None,
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}
