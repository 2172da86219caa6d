//! `KTable`: a changelog stream, the latest value per key. Its records carry a [`Change`]: the
//! new value (`None`: deleted) and the value it replaced.

use std::sync::Arc;

use moldau_engine::processor::nullable;
use moldau_engine::state::{KeyValueStore, Serde, StoreOptions, Windowed};
use moldau_engine::{InitContext, Processor, ProcessorContext, Record, Result, StoreBuilder, StoreHandle};

use crate::builder::Shared;
use crate::kstream::KStream;
use crate::serdes::{Consumed, SerdeRef, WindowedSerde};

/// An update of a table row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<V> {
    /// The new value, or `None` when the key was deleted.
    pub new: Option<V>,
    /// The value it replaced, if any.
    pub old: Option<V>,
}

/// A table: the latest value per key (Kafka Streams' `KTable`).
///
/// A table comes from a topic ([`StreamsBuilder::table`](crate::StreamsBuilder::table)) or
/// an aggregation; a materialized one lives in a state store (RocksDB under `KafkaStreams`,
/// backed by a changelog topic), which joins and interactive queries read.
///
/// ```
/// use moldau_dsl::state::StringSerde;
/// use moldau_dsl::{Consumed, Joined, Produced, StreamsBuilder};
/// use moldau_engine::processor::Required;
/// use moldau_engine::testing::TopologyTestDriver;
///
/// let builder = StreamsBuilder::new();
/// let names = builder.table("customers", Consumed::with(StringSerde, StringSerde), "customers-store");
/// builder
///     .stream_keyed("orders", Consumed::with(StringSerde, StringSerde))
///     .join(&names, |item: &String, name: &String| format!("{name} ordered {item}"), Joined::with(StringSerde, StringSerde))
///     .to("receipts", Produced::with(StringSerde, StringSerde));
///
/// let mut driver = TopologyTestDriver::new(builder.build()?)?;
/// let s = Required(StringSerde);
/// driver.pipe("customers", &s, &s, &"c1".to_string(), &"Ada".to_string(), 0)?;
/// driver.pipe("orders", &s, &s, &"c1".to_string(), &"a lamp".to_string(), 1)?;
/// driver.pipe("orders", &s, &s, &"c2".to_string(), &"a chair".to_string(), 2)?; // no customer: dropped
/// let receipts = driver.read_output_typed("receipts", &s, &s)?;
/// assert_eq!(receipts, vec![("c1".to_string(), "Ada ordered a lamp".to_string(), 1)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct KTable<K, V> {
    pub(crate) shared: Shared,
    pub(crate) node: String,
    /// The store holding the table, if materialized.
    pub(crate) store: Option<String>,
    /// The key and value serdes, when known (for `suppress`).
    pub(crate) serdes: Option<(SerdeRef<K>, SerdeRef<V>)>,
    /// Windowed tables: how long after a window's end it closes (`suppress` until it closes).
    pub(crate) close_after: Option<i64>,
    pub(crate) _types: std::marker::PhantomData<fn() -> (K, V)>,
}

impl<K, V> std::fmt::Debug for KTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KTable").field("node", &self.node).field("store", &self.store).finish()
    }
}

/// Materializes a topic: writes each record to the store and forwards the change.
struct TableSource<K, V> {
    store_name: String,
    store: Option<StoreHandle<KeyValueStore<K, V>>>,
}

impl<K: Clone + 'static, V: Clone + 'static> Processor<Option<K>, Option<V>, K, Change<V>> for TableSource<K, V> {
    fn init(&mut self, ctx: &mut InitContext<'_>) -> Result<()> {
        self.store = Some(ctx.store(&self.store_name)?);
        Ok(())
    }

    fn process(&mut self, r: Record<Option<K>, Option<V>>, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> Result<()> {
        // A table row needs a key: null keys are dropped, as in Kafka Streams.
        let Some(key) = r.key.clone() else { return Ok(()) };
        let old = {
            let handle = self.store.as_ref().expect("initialized");
            let mut st = handle.get();
            match &r.value {
                Some(v) => {
                    let old = st.get(&key)?;
                    st.put(&key, v, r.timestamp)?;
                    old
                }
                None => st.delete(&key, r.timestamp)?,
            }
        };
        let change = Change { new: r.value.clone(), old };
        ctx.forward(Record { key, value: change, timestamp: r.timestamp, headers: r.headers })
    }
}

pub(crate) fn source_table<K: Clone + 'static, V: Clone + 'static>(
    shared: &Shared,
    topic: &str,
    consumed: Consumed<K, V>,
    store: &str,
) -> KTable<K, V> {
    let source = shared.name("KTABLE-SOURCE");
    let name = shared.name("KTABLE-SOURCE-PROCESSOR");
    let keys = nullable(consumed.keys.clone());
    let values = nullable(consumed.values.clone());
    let store_name = store.to_string();
    let builder = StoreBuilder::key_value::<K, V>(store, consumed.keys.clone(), consumed.values.clone())
        .with_options(StoreOptions::default());
    shared.with(|t| {
        t.add_source::<Option<K>, Option<V>>(&source, &[topic], keys, values)?;
        let s = store_name.clone();
        t.add_processor::<Option<K>, Option<V>, K, Change<V>, _, _>(
            &name,
            move || TableSource { store_name: s.clone(), store: None },
            &[&source],
        )?;
        t.add_state_store(builder, &[&name])?;
        Ok(())
    });
    KTable::new(shared.clone(), name, Some(store_name)).with_serdes_ref(consumed.keys, consumed.values)
}

/// `to_stream`: the new values (`None` for deletes).
struct ToStream;

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, Change<V>, K, Option<V>> for ToStream {
    fn process(&mut self, r: Record<K, Change<V>>, ctx: &mut ProcessorContext<'_, K, Option<V>>) -> Result<()> {
        let v = r.value.new.clone();
        ctx.forward(r.with_value(v))
    }
}

/// `filter` on a table: rows that stop matching become deletes.
struct TableFilter<F>(Arc<F>);

impl<K: Clone + 'static, V: Clone + 'static, F: Fn(&K, &V) -> bool + 'static> Processor<K, Change<V>, K, Change<V>>
    for TableFilter<F>
{
    fn process(&mut self, r: Record<K, Change<V>>, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> Result<()> {
        let keep = |v: Option<V>| v.filter(|v| (self.0)(&r.key, v));
        let change = Change { new: keep(r.value.new.clone()), old: keep(r.value.old.clone()) };
        if change.new.is_none() && change.old.is_none() {
            return Ok(()); // nothing visible changed
        }
        ctx.forward(Record { key: r.key, value: change, timestamp: r.timestamp, headers: r.headers })
    }
}

/// `map_values` on a table.
struct TableMapValues<F>(Arc<F>);

impl<K: Clone + 'static, V, V2: Clone + 'static, F: Fn(&V) -> V2 + 'static> Processor<K, Change<V>, K, Change<V2>>
    for TableMapValues<F>
{
    fn process(&mut self, r: Record<K, Change<V>>, ctx: &mut ProcessorContext<'_, K, Change<V2>>) -> Result<()> {
        let change =
            Change { new: r.value.new.as_ref().map(|v| (self.0)(v)), old: r.value.old.as_ref().map(|v| (self.0)(v)) };
        ctx.forward(Record { key: r.key, value: change, timestamp: r.timestamp, headers: r.headers })
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KTable<K, V> {
    pub(crate) fn new(shared: Shared, node: String, store: Option<String>) -> Self {
        KTable { shared, node, store, serdes: None, close_after: None, _types: std::marker::PhantomData }
    }

    /// The same table, declaring the serdes of its keys and values (needed by `suppress` after
    /// an operation that changed the value type).
    pub fn with_serdes(self, keys: impl Serde<K> + 'static, values: impl Serde<V> + 'static) -> Self {
        self.with_serdes_ref(Arc::new(keys), Arc::new(values))
    }

    pub(crate) fn with_serdes_ref(mut self, keys: SerdeRef<K>, values: SerdeRef<V>) -> Self {
        self.serdes = Some((keys, values));
        self
    }

    /// The store the table is materialized in (for joins and interactive queries).
    pub fn store_name(&self) -> Option<&str> {
        self.store.as_deref()
    }

    /// The stream of updates: each new value, `None` for a delete.
    pub fn to_stream(&self) -> KStream<K, Option<V>> {
        let name = self.shared.name("KTABLE-TOSTREAM");
        let parent = self.node.clone();
        self.shared
            .with(|t| t.add_processor::<K, Change<V>, K, Option<V>, _, _>(&name, || ToStream, &[&parent]).map(|_| ()));
        KStream::new(self.shared.clone(), name, false)
    }

    /// Keeps the rows `predicate` matches; a row that stops matching is deleted downstream.
    pub fn filter(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KTable<K, V> {
        let name = self.shared.name("KTABLE-FILTER");
        let parent = self.node.clone();
        let f = Arc::new(predicate);
        self.shared.with(|t| {
            t.add_processor::<K, Change<V>, K, Change<V>, _, _>(&name, move || TableFilter(f.clone()), &[&parent])
                .map(|_| ())
        });
        KTable {
            serdes: self.serdes.clone(),
            close_after: self.close_after,
            ..KTable::new(self.shared.clone(), name, None)
        }
    }

    /// Maps every row's value.
    pub fn map_values<V2: Clone + 'static>(&self, f: impl Fn(&V) -> V2 + Send + Sync + 'static) -> KTable<K, V2> {
        let name = self.shared.name("KTABLE-MAPVALUES");
        let parent = self.node.clone();
        let f = Arc::new(f);
        self.shared.with(|t| {
            t.add_processor::<K, Change<V>, K, Change<V2>, _, _>(&name, move || TableMapValues(f.clone()), &[&parent])
                .map(|_| ())
        });
        KTable::new(self.shared.clone(), name, None)
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KTable<Windowed<K>, V> {
    /// A windowed aggregation's table: keys of `keys` in windows that close `close_after` ms
    /// after their end.
    pub(crate) fn windowed(self, keys: SerdeRef<K>, values: SerdeRef<V>, close_after: i64) -> Self {
        let keys: SerdeRef<Windowed<K>> = Arc::new(WindowedSerde(keys));
        KTable { close_after: Some(close_after), ..self.with_serdes_ref(keys, values) }
    }
}
