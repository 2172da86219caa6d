//! Windowed aggregations: tumbling and hopping time windows with a grace period. Each record
//! updates every window it falls in; a record for a window that already closed (stream time at
//! or past the window's end plus grace) is dropped and counted, as in Kafka Streams.

use std::sync::Arc;

use crate::observed::ObservedTime;
use moldau_engine::state::{KeyValueStore, Serde, StringSerde, U64Serde, Window, WindowSpec, WindowStore, Windowed};
use moldau_engine::{InitContext, Processor, ProcessorContext, Record, Result, StoreBuilder, StoreHandle};

use crate::grouped::{Init, Step};
use crate::kstream::KStream;
use crate::ktable::{Change, KTable};
use crate::serdes::SerdeRef;

/// Time windows: `size` long, starting every `advance` (tumbling when equal), accepting
/// records up to `grace` after a window ends.
///
/// ```
/// use moldau_dsl::state::{StringSerde, U64Serde};
/// use moldau_dsl::{Consumed, Grouped, Produced, StreamsBuilder, TimeWindows};
/// use moldau_engine::processor::Required;
/// use moldau_engine::testing::TopologyTestDriver;
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream_keyed("clicks", Consumed::with(StringSerde, StringSerde))
///     .group_by_key(Grouped::with(StringSerde, StringSerde))
///     .windowed_by(TimeWindows::of_size_with_no_grace(60_000)) // one-minute tumbling windows
///     .count("clicks-per-minute")
///     .to_stream()
///     .map(|w, n: Option<u64>| (format!("{}@{}", w.key, w.window.start), n.unwrap_or(0)))
///     .to("click-counts", Produced::with(StringSerde, U64Serde));
///
/// let mut driver = TopologyTestDriver::new(builder.build()?)?;
/// let s = Required(StringSerde);
/// for t in [1_000, 30_000, 61_000] {
///     driver.pipe("clicks", &s, &s, &"ann".to_string(), &"/home".to_string(), t)?;
/// }
/// let counts: Vec<(String, u64)> =
///     driver.read_output_typed("click-counts", &s, &Required(U64Serde))?.into_iter().map(|(k, n, _)| (k, n)).collect();
/// assert_eq!(counts, vec![("ann@0".into(), 1), ("ann@0".into(), 2), ("ann@60000".into(), 1)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindows {
    size: i64,
    advance: i64,
    grace: i64,
}

impl TimeWindows {
    /// Tumbling windows of `size` ms with `grace` ms for late records.
    pub fn of_size_and_grace(size: i64, grace: i64) -> Self {
        TimeWindows { size, advance: size, grace }
    }

    /// Tumbling windows of `size` ms; late records are dropped at once.
    pub fn of_size_with_no_grace(size: i64) -> Self {
        Self::of_size_and_grace(size, 0)
    }

    /// Hopping windows: a new window every `advance` ms (`0 < advance <= size`).
    pub fn advance_by(mut self, advance: i64) -> Self {
        self.advance = advance;
        self
    }

    fn check(&self) -> crate::Result<()> {
        if self.size <= 0 || self.grace < 0 || self.advance <= 0 || self.advance > self.size {
            return Err(crate::Error::InvalidWindows {
                kind: "time",
                reason: "need size > 0, 0 < advance <= size and grace >= 0",
                windows: format!("{self:?}"),
            });
        }
        Ok(())
    }

    /// The starts of the windows containing `ts`, oldest first.
    fn starts(&self, ts: i64) -> impl Iterator<Item = i64> + '_ {
        let last = ts - ts.rem_euclid(self.advance);
        let first = (ts - self.size + 1).max(0);
        let first = first + (self.advance - first.rem_euclid(self.advance)) % self.advance;
        (0..).map(move |i| first + i * self.advance).take_while(move |s| *s <= last)
    }
}

/// A grouped stream with time windows (Kafka Streams' `TimeWindowedKStream`).
pub struct TimeWindowedKStream<K, V> {
    pub(crate) stream: KStream<K, V>,
    pub(crate) keys: SerdeRef<K>,
    pub(crate) windows: TimeWindows,
    pub(crate) emit_final: bool,
}

impl<K, V> std::fmt::Debug for TimeWindowedKStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeWindowedKStream").field("windows", &self.windows).finish()
    }
}

/// Key of the emitted-up-to stream time in an emit-final aggregate's frontier store.
const FRONTIER: &str = "emitted-through";

struct WindowedAggregate<K, V, A> {
    store_name: String,
    store: Option<StoreHandle<WindowStore<K, A>>>,
    /// Emit-final only: the store holding the stream time up to which closed windows were
    /// emitted (transactional with the windows, so a restart neither repeats nor skips one).
    frontier_name: Option<String>,
    frontier: Option<StoreHandle<KeyValueStore<String, i64>>>,
    windows: TimeWindows,
    init: Init<A>,
    step: Step<K, V, A>,
    late: u64,
    observed: ObservedTime,
}

impl<K: Clone + 'static, V: Clone + 'static, A: Clone + 'static> Processor<K, V, Windowed<K>, Change<A>>
    for WindowedAggregate<K, V, A>
{
    fn init(&mut self, ctx: &mut InitContext<'_>) -> Result<()> {
        self.store = Some(ctx.store(&self.store_name)?);
        if let Some(name) = &self.frontier_name {
            self.frontier = Some(ctx.store(name)?);
        }
        Ok(())
    }

    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>) -> Result<()> {
        let now = self.observed.observe(ctx, r.timestamp);
        if self.frontier.is_some() {
            // Before this record's windows are written: the store still retains every window
            // the advance of stream time has just closed.
            self.emit_closed(ctx, now)?;
        }
        let w = self.windows;
        for start in w.starts(r.timestamp) {
            let end = start + w.size;
            if now >= end + w.grace {
                self.late += 1;
                tracing::debug!(late = self.late, start, "dropping a record for a closed window");
                continue;
            }
            let (old, new) = {
                let handle = self.store.as_ref().expect("initialized");
                let mut st = handle.get();
                let old = st.fetch(&r.key, start)?;
                let new = (self.step)(&r.key, r.value.clone(), old.clone().unwrap_or_else(|| (self.init)()));
                st.put(&r.key, &new, start, r.timestamp)?;
                (old, new)
            };
            if self.frontier.is_none() {
                let key = Windowed { key: r.key.clone(), window: Window { start, end } };
                let value = Change { new: Some(new), old };
                ctx.forward(Record { key, value, timestamp: r.timestamp, headers: r.headers.clone() })?;
            }
        }
        Ok(())
    }
}

impl<K: Clone + 'static, V: Clone + 'static, A: Clone + 'static> WindowedAggregate<K, V, A> {
    /// Emits, once, the final aggregate of every window closed since the last emission:
    /// windows whose end plus grace is at or before `now`, the observed stream time.
    fn emit_closed(&mut self, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>, now: i64) -> Result<()> {
        let w = self.windows;
        let frontier = self.frontier.as_ref().expect("emit-final");
        let key = FRONTIER.to_string();
        let done = frontier.get().get(&key)?;
        if done.is_some_and(|d| d >= now) {
            return Ok(());
        }
        let from = done.map_or(i64::MIN, |d| d - w.grace - w.size + 1);
        let to = now - w.grace - w.size;
        let closed =
            if from <= to { self.store.as_ref().expect("initialized").get().fetch_all(from, to)? } else { Vec::new() };
        frontier.get().put(&key, &now, now)?;
        let mut closed = closed;
        // Stable: keys stay in key order within a window start.
        closed.sort_by_key(|(k, _)| k.window.start);
        for (wk, agg) in closed {
            let window = Window { start: wk.window.start, end: wk.window.start + w.size };
            let rec = Record::new(Windowed { key: wk.key, window }, Change { new: Some(agg), old: None }, now);
            ctx.forward(rec)?;
        }
        Ok(())
    }
}

impl<K: Clone + 'static, V: Clone + 'static> TimeWindowedKStream<K, V> {
    /// Emits each window once, with its final aggregate, when it closes (stream time reaches
    /// its end plus grace) instead of on every update (Kafka Streams'
    /// `EmitStrategy.onWindowClose()`).
    pub fn emit_on_window_close(mut self) -> Self {
        self.emit_final = true;
        self
    }

    /// Folds each window's records per key, starting from `init()`; the table holds the latest
    /// aggregate per (key, window) in window store `store`, kept for size plus grace.
    pub fn aggregate<A: Clone + 'static>(
        &self,
        init: impl Fn() -> A + Send + Sync + 'static,
        step: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        store: &str,
        values: impl Serde<A> + 'static,
    ) -> KTable<Windowed<K>, A> {
        let shared = &self.stream.shared;
        if let Err(e) = self.windows.check() {
            shared.fail(e);
        }
        let name = shared.name("KSTREAM-AGGREGATE");
        let parent = self.stream.node.clone();
        let (init, step): (Init<A>, Step<K, V, A>) = (Arc::new(init), Arc::new(step));
        let w = self.windows;
        // Emit-final reads closed windows back: keep one more advance so the newest closed
        // window is still retained when it is emitted.
        let retention = if self.emit_final { w.size + w.grace + w.advance } else { (w.size + w.grace).max(1) };
        let values: SerdeRef<A> = Arc::new(values);
        let builder =
            StoreBuilder::window::<K, A>(store, WindowSpec::new(w.size, retention), self.keys.clone(), values.clone());
        let store_name = store.to_string();
        let frontier_name = self.emit_final.then(|| format!("{store}-emitted"));
        shared.with(|t| {
            let (s, f) = (store_name.clone(), frontier_name.clone());
            t.add_processor::<K, V, Windowed<K>, Change<A>, _, _>(
                &name,
                move || WindowedAggregate {
                    store_name: s.clone(),
                    store: None,
                    frontier_name: f.clone(),
                    frontier: None,
                    windows: w,
                    init: init.clone(),
                    step: step.clone(),
                    late: 0,
                    observed: ObservedTime::default(),
                },
                &[&parent],
            )?;
            t.add_state_store(builder, &[&name])?;
            if let Some(f) = &frontier_name {
                t.add_state_store(
                    StoreBuilder::key_value::<String, i64>(f.as_str(), StringSerde, moldau_engine::state::I64Serde),
                    &[&name],
                )?;
            }
            Ok(())
        });
        KTable::new(shared.clone(), name, Some(store_name)).windowed(self.keys.clone(), values, w.grace)
    }

    /// Counts records per key and window.
    pub fn count(&self, store: &str) -> KTable<Windowed<K>, u64> {
        self.aggregate(|| 0u64, |_, _, n| n + 1, store, U64Serde)
    }
}

#[cfg(test)]
mod tests {
    use super::TimeWindows;

    #[test]
    fn should_list_the_windows_a_time_falls_in() {
        let tumbling = TimeWindows::of_size_with_no_grace(10);
        assert_eq!(tumbling.starts(0).collect::<Vec<_>>(), vec![0]);
        assert_eq!(tumbling.starts(19).collect::<Vec<_>>(), vec![10]);
        let hopping = TimeWindows::of_size_with_no_grace(10).advance_by(5);
        assert_eq!(hopping.starts(7).collect::<Vec<_>>(), vec![0, 5]);
        assert_eq!(hopping.starts(10).collect::<Vec<_>>(), vec![5, 10]);
        assert_eq!(hopping.starts(3).collect::<Vec<_>>(), vec![0], "no window starts before 0");
        let odd = TimeWindows::of_size_with_no_grace(10).advance_by(3);
        assert_eq!(odd.starts(10).collect::<Vec<_>>(), vec![3, 6, 9]);
    }
}
