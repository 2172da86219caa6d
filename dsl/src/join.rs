//! The KStream–KTable join: each stream record looks its key up in the table's store; table
//! updates emit nothing. The join and the table's store share one sub-topology, so the stream
//! and the table topic are read partition by partition and must be co-partitioned (checked by
//! the runtime against real partition counts).

use std::sync::Arc;

use moldau_engine::state::KeyValueStore;
use moldau_engine::{InitContext, Processor, ProcessorContext, Record, Result, StoreHandle};

use crate::kstream::KStream;
use crate::ktable::KTable;
use crate::serdes::Grouped;

/// Serdes for repartitioning the stream side of a join when its key changed.
pub type Joined<K, V> = Grouped<K, V>;

type Joiner<V, VT, VR> = Arc<dyn Fn(&V, Option<&VT>) -> Option<VR> + Send + Sync>;

struct StreamTableJoin<K, V, VT, VR> {
    store_name: String,
    store: Option<StoreHandle<KeyValueStore<K, VT>>>,
    joiner: Joiner<V, VT, VR>,
}

impl<K: Clone + 'static, V: 'static, VT: 'static, VR: Clone + 'static> Processor<K, V, K, VR>
    for StreamTableJoin<K, V, VT, VR>
{
    fn init(&mut self, ctx: &mut InitContext<'_>) -> Result<()> {
        self.store = Some(ctx.store(&self.store_name)?);
        Ok(())
    }

    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, VR>) -> Result<()> {
        let row = self.store.as_ref().expect("initialized").get().get(&r.key)?;
        match (self.joiner)(&r.value, row.as_ref()) {
            Some(out) => ctx.forward(r.with_value(out)),
            None => Ok(()),
        }
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    fn table_join<VT: Clone + 'static, VR: Clone + 'static>(
        &self,
        table: &KTable<K, VT>,
        joiner: Joiner<V, VT, VR>,
        joined: Joined<K, V>,
        prefix: &str,
    ) -> KStream<K, VR> {
        let Some(store) = table.store_name().map(str::to_string) else {
            self.shared.fail(crate::Error::UnmaterializedTable { operation: "a stream-table join" });
            return KStream::new(self.shared.clone(), self.node.clone(), false);
        };
        let stream = if self.repartition {
            let name = joined.name.clone().unwrap_or_else(|| self.shared.name("KSTREAM-JOIN"));
            self.repartition(&name, &joined)
        } else {
            KStream::new(self.shared.clone(), self.node.clone(), false)
        };
        let name = self.shared.name(prefix);
        let parent = stream.node.clone();
        self.shared.with(|t| {
            let s = store.clone();
            t.add_processor::<K, V, K, VR, _, _>(
                &name,
                move || StreamTableJoin { store_name: s.clone(), store: None, joiner: joiner.clone() },
                &[&parent],
            )?;
            t.connect_store(&store, &[&name])?;
            t.require_copartitioned(&name)?;
            Ok(())
        });
        KStream::new(self.shared.clone(), name, false)
    }

    /// Joins each record with the table's row for its key; records without a row are dropped.
    /// Repartitions first (with `joined`'s serdes) if the stream's key changed.
    pub fn join<VT: Clone + 'static, VR: Clone + 'static>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, &VT) -> VR + Send + Sync + 'static,
        joined: Joined<K, V>,
    ) -> KStream<K, VR> {
        let j: Joiner<V, VT, VR> = Arc::new(move |v, row| row.map(|t| joiner(v, t)));
        self.table_join(table, j, joined, "KSTREAM-JOIN")
    }

    /// Joins each record with the table's row for its key, `None` when there is none.
    pub fn left_join<VT: Clone + 'static, VR: Clone + 'static>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, Option<&VT>) -> VR + Send + Sync + 'static,
        joined: Joined<K, V>,
    ) -> KStream<K, VR> {
        let j: Joiner<V, VT, VR> = Arc::new(move |v, row| Some(joiner(v, row)));
        self.table_join(table, j, joined, "KSTREAM-LEFTJOIN")
    }
}
