//! `KGroupedStream`: a stream grouped by key, and its aggregations into tables. A grouping
//! after a key change inserts a repartition topic first, so that every record of a key reaches
//! the one task that holds the key's aggregate.

use std::sync::Arc;

use moldau_engine::state::{KeyValueStore, Serde, U64Serde};
use moldau_engine::{InitContext, Processor, ProcessorContext, Record, Result, StoreBuilder, StoreHandle};

use crate::kstream::KStream;
use crate::ktable::{Change, KTable};
use crate::serdes::{Grouped, SerdeRef};

/// A stream grouped by key (Kafka Streams' `KGroupedStream`).
pub struct KGroupedStream<K, V> {
    stream: KStream<K, V>,
    keys: SerdeRef<K>,
}

impl<K, V> std::fmt::Debug for KGroupedStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KGroupedStream").field("stream", &self.stream).finish()
    }
}

/// An aggregation's initial value.
pub(crate) type Init<A> = Arc<dyn Fn() -> A + Send + Sync>;
/// Folds one record into an aggregate.
pub(crate) type Step<K, V, A> = Arc<dyn Fn(&K, V, A) -> A + Send + Sync>;

/// Folds each record into its key's aggregate in a store and forwards the change.
struct Aggregate<K, V, A> {
    store_name: String,
    store: Option<StoreHandle<KeyValueStore<K, A>>>,
    init: Init<A>,
    step: Step<K, V, A>,
}

impl<K: Clone + 'static, V: 'static, A: Clone + 'static> Processor<K, V, K, Change<A>> for Aggregate<K, V, A> {
    fn init(&mut self, ctx: &mut InitContext<'_>) -> Result<()> {
        self.store = Some(ctx.store(&self.store_name)?);
        Ok(())
    }

    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, Change<A>>) -> Result<()> {
        let (old, new) = {
            let handle = self.store.as_ref().expect("initialized");
            let mut st = handle.get();
            let old = st.get(&r.key)?;
            let start = old.clone().unwrap_or_else(|| (self.init)());
            let new = (self.step)(&r.key, r.value, start);
            st.put(&r.key, &new, r.timestamp)?;
            (old, new)
        };
        let change = Change { new: Some(new), old };
        ctx.forward(Record { key: r.key, value: change, timestamp: r.timestamp, headers: r.headers })
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KGroupedStream<K, V> {
    pub(crate) fn new(stream: &KStream<K, V>, grouped: Grouped<K, V>) -> Self {
        let keys = grouped.keys.clone();
        let stream = if stream.repartition {
            let name = grouped.name.clone().unwrap_or_else(|| stream.shared.name("KSTREAM-AGGREGATE-STATE-STORE"));
            stream.repartition(&name, &grouped)
        } else {
            KStream::new(stream.shared.clone(), stream.node.clone(), false)
        };
        KGroupedStream { stream, keys }
    }

    /// Folds each key's records into an aggregate, starting from `init()`; the table holds the
    /// latest aggregate per key in store `store`.
    pub fn aggregate<A: Clone + 'static>(
        &self,
        init: impl Fn() -> A + Send + Sync + 'static,
        step: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        store: &str,
        values: impl Serde<A> + 'static,
    ) -> KTable<K, A> {
        let shared = &self.stream.shared;
        let name = shared.name("KSTREAM-AGGREGATE");
        let parent = self.stream.node.clone();
        let (init, step): (Init<A>, Step<K, V, A>) = (Arc::new(init), Arc::new(step));
        let store_name = store.to_string();
        let values: SerdeRef<A> = Arc::new(values);
        let builder = StoreBuilder::key_value::<K, A>(store, self.keys.clone(), values.clone());
        shared.with(|t| {
            let s = store_name.clone();
            t.add_processor::<K, V, K, Change<A>, _, _>(
                &name,
                move || Aggregate { store_name: s.clone(), store: None, init: init.clone(), step: step.clone() },
                &[&parent],
            )?;
            t.add_state_store(builder, &[&name])?;
            Ok(())
        });
        KTable::new(shared.clone(), name, Some(store_name)).with_serdes_ref(self.keys.clone(), values)
    }

    /// Aggregates per key and time window.
    pub fn windowed_by(&self, windows: crate::windowed::TimeWindows) -> crate::windowed::TimeWindowedKStream<K, V> {
        crate::windowed::TimeWindowedKStream {
            stream: KStream::new(self.stream.shared.clone(), self.stream.node.clone(), false),
            keys: self.keys.clone(),
            windows,
            emit_final: false,
        }
    }

    /// Aggregates per key and sliding window.
    pub fn windowed_by_sliding(
        &self,
        windows: crate::sliding::SlidingWindows,
    ) -> crate::sliding::SlidingWindowedKStream<K, V> {
        crate::sliding::SlidingWindowedKStream {
            stream: KStream::new(self.stream.shared.clone(), self.stream.node.clone(), false),
            keys: self.keys.clone(),
            windows,
        }
    }

    /// Aggregates per key and session.
    pub fn windowed_by_session(
        &self,
        windows: crate::session::SessionWindows,
    ) -> crate::session::SessionWindowedKStream<K, V> {
        crate::session::SessionWindowedKStream {
            stream: KStream::new(self.stream.shared.clone(), self.stream.node.clone(), false),
            keys: self.keys.clone(),
            windows,
        }
    }

    /// Counts records per key.
    pub fn count(&self, store: &str) -> KTable<K, u64> {
        self.aggregate(|| 0u64, |_, _, n| n + 1, store, U64Serde)
    }

    /// Combines each key's values with `reducer` (the first value starts the aggregate); the
    /// table holds the latest result per key in store `store`.
    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        store: &str,
        values: impl Serde<V> + 'static,
    ) -> KTable<K, V> {
        let shared = &self.stream.shared;
        let name = shared.name("KSTREAM-REDUCE");
        let parent = self.stream.node.clone();
        let reducer: Arc<dyn Fn(V, V) -> V + Send + Sync> = Arc::new(reducer);
        let store_name = store.to_string();
        let values: SerdeRef<V> = Arc::new(values);
        let builder = StoreBuilder::key_value::<K, V>(store, self.keys.clone(), values.clone());
        shared.with(|t| {
            let s = store_name.clone();
            t.add_processor::<K, V, K, Change<V>, _, _>(
                &name,
                move || Reduce { store_name: s.clone(), store: None, reducer: reducer.clone() },
                &[&parent],
            )?;
            t.add_state_store(builder, &[&name])?;
            Ok(())
        });
        KTable::new(shared.clone(), name, Some(store_name)).with_serdes_ref(self.keys.clone(), values)
    }
}

/// Combines each record with its key's latest value in a store and forwards the change.
struct Reduce<K, V> {
    store_name: String,
    store: Option<StoreHandle<KeyValueStore<K, V>>>,
    reducer: Arc<dyn Fn(V, V) -> V + Send + Sync>,
}

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, V, K, Change<V>> for Reduce<K, V> {
    fn init(&mut self, ctx: &mut InitContext<'_>) -> Result<()> {
        self.store = Some(ctx.store(&self.store_name)?);
        Ok(())
    }

    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> Result<()> {
        let (old, new) = {
            let handle = self.store.as_ref().expect("initialized");
            let mut st = handle.get();
            let old = st.get(&r.key)?;
            let new = match old.clone() {
                Some(acc) => (self.reducer)(acc, r.value),
                None => r.value,
            };
            st.put(&r.key, &new, r.timestamp)?;
            (old, new)
        };
        let change = Change { new: Some(new), old };
        ctx.forward(Record { key: r.key, value: change, timestamp: r.timestamp, headers: r.headers })
    }
}
