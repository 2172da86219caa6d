//! `KStream`: a record stream and its operators. Each operator adds one processor node (named
//! like Kafka Streams' `KSTREAM-<OP>-<n>`) under the stream's node.

use std::sync::Arc;

use moldau_engine::{Processor, Record};

use crate::builder::Shared;
use crate::grouped::KGroupedStream;
use crate::processors::{
    Branch, Filter, FlatMap, FlatMapValues, Map, MapValues, PassThrough, Peek, Predicate, SelectKey,
};
use crate::serdes::{record, Grouped, Produced};

/// A stream of `(K, V)` records (Kafka Streams' `KStream`).
///
/// Stateless operations (`filter`, `map_values`, `split`, ...) run record by record in the
/// task that reads the input; `group_by` and `select_key` followed by an aggregation or a
/// join repartition by the new key first.
///
/// ```
/// use moldau_dsl::state::{StringSerde, U64Serde};
/// use moldau_dsl::{Branched, Consumed, Produced, StreamsBuilder};
/// use moldau_engine::processor::Required;
/// use moldau_engine::testing::TopologyTestDriver;
///
/// let builder = StreamsBuilder::new();
/// let amounts = builder.stream_keyed("payments", Consumed::with(StringSerde, U64Serde));
/// let [large, small]: [_; 2] = amounts
///     .filter(|_, cents| *cents > 0)
///     .split(Branched::new().branch(|_, cents| *cents >= 10_000).default_branch())
///     .try_into()
///     .expect("two branches");
/// large.map_values(|cents| format!("review {cents}")).to("reviews", Produced::with(StringSerde, StringSerde));
/// small.to("approved", Produced::with(StringSerde, U64Serde));
///
/// let mut driver = TopologyTestDriver::new(builder.build()?)?;
/// let (keys, cents) = (Required(StringSerde), Required(U64Serde));
/// for (who, amount) in [("ann", 25_000), ("bob", 300), ("cy", 0)] {
///     driver.pipe("payments", &keys, &cents, &who.to_string(), &amount, 0)?;
/// }
/// let reviews = driver.read_output_typed("reviews", &keys, &Required(StringSerde))?;
/// assert_eq!(reviews, vec![("ann".to_string(), "review 25000".to_string(), 0)]);
/// assert_eq!(driver.read_output_typed("approved", &keys, &cents)?, vec![("bob".to_string(), 300, 0)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct KStream<K, V> {
    pub(crate) shared: Shared,
    pub(crate) node: String,
    /// A key-changing operation happened since the last repartition: grouping must
    /// repartition first.
    pub(crate) repartition: bool,
    _types: std::marker::PhantomData<fn() -> (K, V)>,
}

impl<K, V> std::fmt::Debug for KStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KStream").field("node", &self.node).field("repartition", &self.repartition).finish()
    }
}

/// Branches for [`KStream::split`]: predicates tried in order, and an optional default.
pub struct Branched<K, V> {
    predicates: Vec<Predicate<K, V>>,
    default: bool,
}

impl<K, V> std::fmt::Debug for Branched<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Branched").field("branches", &self.predicates.len()).field("default", &self.default).finish()
    }
}

impl<K, V> Default for Branched<K, V> {
    fn default() -> Self {
        Branched { predicates: Vec::new(), default: false }
    }
}

impl<K, V> Branched<K, V> {
    /// No branches yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A branch taking the records `predicate` matches (and no earlier branch took).
    pub fn branch(mut self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.predicates.push(Arc::new(predicate));
        self
    }

    /// A last branch taking every record no predicate matched (otherwise they are dropped).
    pub fn default_branch(mut self) -> Self {
        self.default = true;
        self
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    pub(crate) fn new(shared: Shared, node: String, repartition: bool) -> Self {
        KStream { shared, node, repartition, _types: std::marker::PhantomData }
    }

    /// Adds processor `P` under this stream's node.
    fn then<K2: Clone + 'static, V2: Clone + 'static, P, F>(
        &self,
        prefix: &str,
        supplier: F,
        repartition: bool,
    ) -> KStream<K2, V2>
    where
        P: Processor<K, V, K2, V2>,
        F: Fn() -> P + Send + Sync + 'static,
    {
        let name = self.shared.name(prefix);
        let parent = self.node.clone();
        self.shared.with(|t| t.add_processor::<K, V, K2, V2, P, F>(&name, supplier, &[&parent]).map(|_| ()));
        KStream::new(self.shared.clone(), name, repartition)
    }

    /// Keeps the records `predicate` matches.
    pub fn filter(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KStream<K, V> {
        let f = Arc::new(predicate);
        self.then("KSTREAM-FILTER", move || Filter { f: f.clone(), keep: true }, self.repartition)
    }

    /// Drops the records `predicate` matches.
    pub fn filter_not(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KStream<K, V> {
        let f = Arc::new(predicate);
        self.then("KSTREAM-FILTER", move || Filter { f: f.clone(), keep: false }, self.repartition)
    }

    /// Replaces key and value (the key changes: a later grouping repartitions).
    pub fn map<K2: Clone + 'static, V2: Clone + 'static>(
        &self,
        f: impl Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
    ) -> KStream<K2, V2> {
        let f = Arc::new(f);
        self.then("KSTREAM-MAP", move || Map(f.clone()), true)
    }

    /// Replaces the value.
    pub fn map_values<V2: Clone + 'static>(&self, f: impl Fn(V) -> V2 + Send + Sync + 'static) -> KStream<K, V2> {
        let f = Arc::new(f);
        self.then("KSTREAM-MAPVALUES", move || MapValues(f.clone()), self.repartition)
    }

    /// Replaces each record by zero or more records (the key changes).
    pub fn flat_map<K2: Clone + 'static, V2: Clone + 'static, I: IntoIterator<Item = (K2, V2)> + 'static>(
        &self,
        f: impl Fn(K, V) -> I + Send + Sync + 'static,
    ) -> KStream<K2, V2> {
        let f = Arc::new(f);
        self.then("KSTREAM-FLATMAP", move || FlatMap(f.clone()), true)
    }

    /// Replaces each value by zero or more values under the same key.
    pub fn flat_map_values<V2: Clone + 'static, I: IntoIterator<Item = V2> + 'static>(
        &self,
        f: impl Fn(V) -> I + Send + Sync + 'static,
    ) -> KStream<K, V2> {
        let f = Arc::new(f);
        self.then("KSTREAM-FLATMAPVALUES", move || FlatMapValues(f.clone()), self.repartition)
    }

    /// Replaces the key (a later grouping repartitions).
    pub fn select_key<K2: Clone + 'static>(&self, f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static) -> KStream<K2, V> {
        let f = Arc::new(f);
        self.then("KSTREAM-KEY-SELECT", move || SelectKey(f.clone()), true)
    }

    /// Calls `f` on each record and forwards it unchanged.
    pub fn peek(&self, f: impl Fn(&K, &V) + Send + Sync + 'static) -> KStream<K, V> {
        let f = Arc::new(f);
        self.then("KSTREAM-PEEK", move || Peek { f: f.clone(), forward: true }, self.repartition)
    }

    /// Calls `f` on each record (a terminal operation).
    pub fn for_each(&self, f: impl Fn(&K, &V) + Send + Sync + 'static) {
        let f = Arc::new(f);
        let _: KStream<K, V> = self.then("KSTREAM-FOREACH", move || Peek { f: f.clone(), forward: false }, false);
    }

    /// Both streams' records in one stream.
    pub fn merge(&self, other: &KStream<K, V>) -> KStream<K, V> {
        let name = self.shared.name("KSTREAM-MERGE");
        let (a, b) = (self.node.clone(), other.node.clone());
        self.shared.with(|t| t.add_processor::<K, V, K, V, _, _>(&name, || PassThrough, &[&a, &b]).map(|_| ()));
        KStream::new(self.shared.clone(), name, self.repartition || other.repartition)
    }

    /// Splits the stream: one stream per branch, in order, then the default branch if asked
    /// for. Each record goes to the first branch that matches.
    pub fn split(&self, branched: Branched<K, V>) -> Vec<KStream<K, V>> {
        let name = self.shared.name("KSTREAM-BRANCH");
        let children: Vec<String> =
            (0..branched.predicates.len() + usize::from(branched.default)).map(|i| format!("{name}-{i}")).collect();
        let predicates: Vec<(Predicate<K, V>, String)> =
            branched.predicates.into_iter().zip(children.iter().cloned()).collect();
        let default = branched.default.then(|| children.last().cloned()).flatten();
        let parent = self.node.clone();
        self.shared.with(|t| {
            t.add_processor::<K, V, K, V, _, _>(
                &name,
                move || Branch { predicates: predicates.clone(), default: default.clone() },
                &[&parent],
            )?;
            for child in &children {
                t.add_processor::<K, V, K, V, _, _>(child, || PassThrough, &[&name])?;
            }
            Ok(())
        });
        children.into_iter().map(|c| KStream::new(self.shared.clone(), c, self.repartition)).collect()
    }

    /// Writes the stream to `topic`.
    pub fn to(&self, topic: &str, produced: Produced<K, V>) {
        let name = self.shared.name("KSTREAM-SINK");
        let parent = self.node.clone();
        let (k, v) = (produced.keys, produced.values);
        self.shared.with(|t| t.add_sink::<K, V>(&name, topic, k, v, &[&parent]).map(|_| ()));
    }

    /// Writes each record to the topic `choose` names for it.
    pub fn to_dynamic(&self, choose: impl Fn(&K, &V) -> String + Send + Sync + 'static, produced: Produced<K, V>) {
        let name = self.shared.name("KSTREAM-SINK");
        let parent = self.node.clone();
        let (k, v) = (produced.keys, produced.values);
        self.shared.with(|t| {
            t.add_sink_with::<K, V>(&name, move |r: &Record<K, V>| choose(&r.key, &r.value), k, v, &[&parent])
                .map(|_| ())
        });
    }

    /// Sends the stream through the topic `<name>-repartition`, so that records are
    /// partitioned by their current key.
    pub fn repartition(&self, name: &str, grouped: &Grouped<K, V>) -> KStream<K, V> {
        let topic = format!("{name}-repartition");
        let sink = format!("{topic}-sink");
        let source = format!("{topic}-source");
        let parent = self.node.clone();
        let (k, v) = (record(&grouped.keys), record(&grouped.values));
        self.shared.with(|t| {
            t.add_internal_topic(&topic)?;
            t.add_sink::<K, V>(&sink, &topic, k.clone(), v.clone(), &[&parent])?;
            t.add_source::<K, V>(&source, &[&topic], k, v)?;
            Ok(())
        });
        KStream::new(self.shared.clone(), source, false)
    }

    /// Groups by the current key (repartitioning first if the key changed).
    pub fn group_by_key(&self, grouped: Grouped<K, V>) -> KGroupedStream<K, V> {
        KGroupedStream::new(self, grouped)
    }

    /// Groups by a new key: `select_key(f)` then `group_by_key`.
    pub fn group_by<K2: Clone + 'static>(
        &self,
        f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
        grouped: Grouped<K2, V>,
    ) -> KGroupedStream<K2, V> {
        self.select_key(f).group_by_key(grouped)
    }

    /// Connects processor `node` to `stores`.
    fn connect_stores(&self, node: &str, stores: &[&str]) {
        self.shared.with(|t| {
            for s in stores {
                t.connect_store(s, &[node])?;
            }
            Ok(())
        });
    }

    /// Adds a low-level processor that keeps each record's key (Kafka Streams'
    /// `processValues`): it must forward records under the key it received them with, so the
    /// stream stays partitioned as it was and grouping or joining after it does not
    /// repartition. Connected to `stores` as [`KStream::process`] is.
    pub fn process_values<V2: Clone + 'static, P: Processor<K, V, K, V2>>(
        &self,
        supplier: impl Fn() -> P + Send + Sync + 'static,
        stores: &[&str],
    ) -> KStream<K, V2> {
        let out: KStream<K, V2> = self.then("KSTREAM-PROCESSVALUES", supplier, self.repartition);
        self.connect_stores(&out.node, stores);
        out
    }

    /// Adds a low-level processor made by `supplier` (Kafka Streams' `process`), connected to
    /// `stores` (added to the topology with [`StreamsBuilder`](crate::StreamsBuilder)).
    pub fn process<K2: Clone + 'static, V2: Clone + 'static, P: Processor<K, V, K2, V2>>(
        &self,
        supplier: impl Fn() -> P + Send + Sync + 'static,
        stores: &[&str],
    ) -> KStream<K2, V2> {
        let out: KStream<K2, V2> = self.then("KSTREAM-PROCESSOR", supplier, true);
        self.connect_stores(&out.node, stores);
        out
    }
}
