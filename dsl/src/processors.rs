//! The processors behind the stateless DSL operators. Each holds the user's function in an
//! `Arc` so that one topology makes one instance per task.

use std::sync::Arc;

use moldau_engine::{Processor, ProcessorContext, Record, Result};

/// `filter` / `filter_not`.
pub(crate) struct Filter<F> {
    pub(crate) f: Arc<F>,
    pub(crate) keep: bool,
}

impl<K: Clone + 'static, V: Clone + 'static, F: Fn(&K, &V) -> bool + 'static> Processor<K, V, K, V> for Filter<F> {
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V>) -> Result<()> {
        if (self.f)(&r.key, &r.value) == self.keep {
            ctx.forward(r)?;
        }
        Ok(())
    }
}

/// `map`: new key and value.
pub(crate) struct Map<F>(pub(crate) Arc<F>);

impl<K, V, K2: Clone + 'static, V2: Clone + 'static, F: Fn(K, V) -> (K2, V2) + 'static> Processor<K, V, K2, V2>
    for Map<F>
{
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K2, V2>) -> Result<()> {
        let (k, v) = (self.0)(r.key, r.value);
        ctx.forward(Record { key: k, value: v, timestamp: r.timestamp, headers: r.headers })
    }
}

/// `map_values`.
pub(crate) struct MapValues<F>(pub(crate) Arc<F>);

impl<K: Clone + 'static, V, V2: Clone + 'static, F: Fn(V) -> V2 + 'static> Processor<K, V, K, V2> for MapValues<F> {
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V2>) -> Result<()> {
        let v = (self.0)(r.value);
        ctx.forward(Record { key: r.key, value: v, timestamp: r.timestamp, headers: r.headers })
    }
}

/// `flat_map`.
pub(crate) struct FlatMap<F>(pub(crate) Arc<F>);

impl<K, V, K2, V2, I, F> Processor<K, V, K2, V2> for FlatMap<F>
where
    K2: Clone + 'static,
    V2: Clone + 'static,
    I: IntoIterator<Item = (K2, V2)>,
    F: Fn(K, V) -> I + 'static,
{
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K2, V2>) -> Result<()> {
        for (k, v) in (self.0)(r.key, r.value) {
            ctx.forward(Record { key: k, value: v, timestamp: r.timestamp, headers: r.headers.clone() })?;
        }
        Ok(())
    }
}

/// `flat_map_values`.
pub(crate) struct FlatMapValues<F>(pub(crate) Arc<F>);

impl<K, V, V2, I, F> Processor<K, V, K, V2> for FlatMapValues<F>
where
    K: Clone + 'static,
    V2: Clone + 'static,
    I: IntoIterator<Item = V2>,
    F: Fn(V) -> I + 'static,
{
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V2>) -> Result<()> {
        for v in (self.0)(r.value) {
            ctx.forward(Record { key: r.key.clone(), value: v, timestamp: r.timestamp, headers: r.headers.clone() })?;
        }
        Ok(())
    }
}

/// `select_key`.
pub(crate) struct SelectKey<F>(pub(crate) Arc<F>);

impl<K, V: Clone + 'static, K2: Clone + 'static, F: Fn(&K, &V) -> K2 + 'static> Processor<K, V, K2, V>
    for SelectKey<F>
{
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K2, V>) -> Result<()> {
        let k = (self.0)(&r.key, &r.value);
        ctx.forward(r.with_key(k))
    }
}

/// `peek` (forwards) and `for_each` (terminal).
pub(crate) struct Peek<F> {
    pub(crate) f: Arc<F>,
    pub(crate) forward: bool,
}

impl<K: Clone + 'static, V: Clone + 'static, F: Fn(&K, &V) + 'static> Processor<K, V, K, V> for Peek<F> {
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V>) -> Result<()> {
        (self.f)(&r.key, &r.value);
        if self.forward {
            ctx.forward(r)?;
        }
        Ok(())
    }
}

/// Forwards unchanged (`merge`).
pub(crate) struct PassThrough;

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, V, K, V> for PassThrough {
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V>) -> Result<()> {
        ctx.forward(r)
    }
}

/// A branch predicate.
pub(crate) type Predicate<K, V> = Arc<dyn Fn(&K, &V) -> bool + Send + Sync>;

/// `split`: each record goes to the first branch whose predicate matches (or the default
/// branch, if any).
pub(crate) struct Branch<K, V> {
    pub(crate) predicates: Vec<(Predicate<K, V>, String)>,
    pub(crate) default: Option<String>,
}

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, V, K, V> for Branch<K, V> {
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V>) -> Result<()> {
        for (p, child) in &self.predicates {
            if p(&r.key, &r.value) {
                return ctx.forward_to(child, r);
            }
        }
        if let Some(child) = &self.default {
            ctx.forward_to(child, r)?;
        }
        Ok(())
    }
}
