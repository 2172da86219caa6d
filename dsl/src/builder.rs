//! `StreamsBuilder`: the DSL's entry point. It owns the topology under construction, names
//! nodes the way Kafka Streams does (`KSTREAM-FILTER-0000000001`), and keeps the first error,
//! which [`StreamsBuilder::build`] returns.

use std::cell::RefCell;
use std::rc::Rc;

use moldau_engine::Topology;

use crate::error::{Error, Result};

use crate::kstream::KStream;
use crate::ktable::KTable;
use moldau_engine::processor::nullable;

use crate::serdes::{record, Consumed};

pub(crate) struct State {
    pub(crate) topology: Topology,
    counter: u32,
    error: Option<Error>,
}

/// Shared handle on the state of one builder.
#[derive(Clone)]
pub(crate) struct Shared(pub(crate) Rc<RefCell<State>>);

impl Shared {
    /// The next node name with this Kafka Streams prefix, e.g. `KSTREAM-MAP`.
    pub(crate) fn name(&self, prefix: &str) -> String {
        let mut s = self.0.borrow_mut();
        let n = s.counter;
        s.counter += 1;
        format!("{prefix}-{n:010}")
    }

    /// Runs `f` on the topology, keeping the first error.
    pub(crate) fn with(&self, f: impl FnOnce(&mut Topology) -> moldau_engine::Result<()>) {
        if self.0.borrow().error.is_some() {
            return;
        }
        let result = f(&mut self.0.borrow_mut().topology);
        if let Err(e) = result {
            self.fail(Error::Topology(e));
        }
    }

    /// Records a mistake in the description, unless one was met before.
    pub(crate) fn fail(&self, e: Error) {
        let mut s = self.0.borrow_mut();
        if s.error.is_none() {
            s.error = Some(e);
        }
    }
}

/// Builds a topology with the DSL (Kafka Streams' `StreamsBuilder`).
///
/// Streams and tables made from a builder add their operations to it; [`build`](Self::build)
/// hands over the [`Topology`], or the first mistake met ([`Error`]). Word count, run here in
/// a [`TopologyTestDriver`](moldau_engine::testing::TopologyTestDriver) (a `KafkaStreams`
/// runs the same topology against a cluster):
///
/// ```
/// use std::collections::BTreeMap;
///
/// use moldau_dsl::state::{StringSerde, U64Serde};
/// use moldau_dsl::{Consumed, Grouped, Produced, StreamsBuilder};
/// use moldau_engine::processor::Required;
/// use moldau_engine::testing::TopologyTestDriver;
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream_keyed("text", Consumed::with(StringSerde, StringSerde))
///     .flat_map_values(|line: String| line.split_whitespace().map(str::to_string).collect::<Vec<_>>())
///     .group_by(|_, word: &String| word.clone(), Grouped::with(StringSerde, StringSerde))
///     .count("counts")
///     .to_stream()
///     .map_values(|n: Option<u64>| n.unwrap_or(0))
///     .to("word-counts", Produced::with(StringSerde, U64Serde));
/// let topology = builder.build()?;
///
/// let mut driver = TopologyTestDriver::new(topology)?;
/// let (strings, counts) = (Required(StringSerde), Required(U64Serde));
/// for line in ["the cat", "the dog"] {
///     driver.pipe("text", &strings, &strings, &"k".to_string(), &line.to_string(), 0)?;
/// }
/// let latest: BTreeMap<String, u64> =
///     driver.read_output_typed("word-counts", &strings, &counts)?.into_iter().map(|(w, n, _)| (w, n)).collect();
/// assert_eq!(latest, BTreeMap::from([("cat".into(), 1), ("dog".into(), 1), ("the".into(), 2)]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct StreamsBuilder {
    shared: Shared,
}

impl std::fmt::Debug for StreamsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamsBuilder")
    }
}

impl Default for StreamsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        StreamsBuilder {
            shared: Shared(Rc::new(RefCell::new(State { topology: Topology::new(), counter: 0, error: None }))),
        }
    }

    /// A stream of the records of `topic`. Null keys read as `None`.
    pub fn stream<K: Clone + 'static, V: Clone + 'static>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
    ) -> KStream<Option<K>, V> {
        let name = self.shared.name("KSTREAM-SOURCE");
        let keys = nullable(consumed.keys);
        let values = record(&consumed.values);
        self.shared.with(|t| t.add_source::<Option<K>, V>(&name, &[topic], keys, values).map(|_| ()));
        KStream::new(self.shared.clone(), name, false)
    }

    /// A stream of the records of `topic` whose keys are never null (a null key is a
    /// deserialization error).
    pub fn stream_keyed<K: Clone + 'static, V: Clone + 'static>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
    ) -> KStream<K, V> {
        let name = self.shared.name("KSTREAM-SOURCE");
        let (keys, values) = (record(&consumed.keys), record(&consumed.values));
        self.shared.with(|t| t.add_source::<K, V>(&name, &[topic], keys, values).map(|_| ()));
        KStream::new(self.shared.clone(), name, false)
    }

    /// The records of `topic` as a table's updates, not materialized: null keys and null
    /// values (tombstones, deletes) read as `None`.
    pub fn changelog<K: Clone + 'static, V: Clone + 'static>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
    ) -> KStream<Option<K>, Option<V>> {
        let name = self.shared.name("KSTREAM-SOURCE");
        let (keys, values) = (nullable(consumed.keys), nullable(consumed.values));
        self.shared.with(|t| t.add_source::<Option<K>, Option<V>>(&name, &[topic], keys, values).map(|_| ()));
        KStream::new(self.shared.clone(), name, false)
    }

    /// A table of the latest value per key of `topic` (a null value deletes the key),
    /// materialized in a key-value store named `store`.
    pub fn table<K: Clone + 'static, V: Clone + 'static>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        store: &str,
    ) -> KTable<K, V> {
        crate::ktable::source_table(&self.shared, topic, consumed, store)
    }

    /// The topology, or the first error any DSL call met. Streams and tables of this builder
    /// can no longer add to it afterwards.
    pub fn build(self) -> Result<Topology> {
        let mut state = self.shared.0.borrow_mut();
        if let Some(e) = state.error.take() {
            return Err(e);
        }
        Ok(std::mem::take(&mut state.topology))
    }
}
