//! Session-windowed aggregations: a key's records closer than the inactivity gap form one
//! session; a record bridging two sessions merges them. Records whose merged session ended
//! before stream time minus grace are dropped, as in Kafka Streams.

use std::sync::Arc;

use crate::observed::ObservedTime;
use moldau_engine::state::{Serde, SessionSpec, SessionStore, U64Serde, Window, Windowed};
use moldau_engine::{InitContext, Processor, ProcessorContext, Record, Result, StoreBuilder, StoreHandle};

use crate::grouped::{Init, Step};
use crate::kstream::KStream;
use crate::ktable::{Change, KTable};
use crate::serdes::SerdeRef;

/// Session windows: records of a key less than `gap` apart share a session.
///
/// A record that bridges two sessions merges them: the older sessions are deleted downstream
/// (`None`) and the merged one emitted.
///
/// ```
/// use moldau_dsl::state::{StringSerde, U64Serde};
/// use moldau_dsl::{Consumed, Grouped, Produced, SessionWindows, StreamsBuilder};
/// use moldau_engine::processor::{Nullable, Required};
/// use moldau_engine::testing::TopologyTestDriver;
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream_keyed("clicks", Consumed::with(StringSerde, StringSerde))
///     .group_by_key(Grouped::with(StringSerde, StringSerde))
///     .windowed_by_session(SessionWindows::with_inactivity_gap_and_grace(10_000, 0))
///     .count("sessions")
///     .to_stream()
///     .map(|w, n| (format!("{}@{}-{}", w.key, w.window.start, w.window.end), n))
///     .to("session-counts", Produced::with_nullable_values(StringSerde, U64Serde));
///
/// let mut driver = TopologyTestDriver::new(builder.build()?)?;
/// let s = Required(StringSerde);
/// for t in [0, 5_000, 30_000] {
///     driver.pipe("clicks", &s, &s, &"ann".to_string(), &"/home".to_string(), t)?;
/// }
/// let out: Vec<(String, Option<u64>)> =
///     driver.read_output_typed("session-counts", &s, &Nullable(U64Serde))?.into_iter().map(|(k, n, _)| (k, n)).collect();
/// assert_eq!(
///     out,
///     vec![
///         ("ann@0-0".into(), Some(1)),
///         ("ann@0-0".into(), None), // merged into the next
///         ("ann@0-5000".into(), Some(2)),
///         ("ann@30000-30000".into(), Some(1)), // 25 s later: a new session
///     ]
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    gap: i64,
    grace: i64,
}

impl SessionWindows {
    /// Sessions closed after `gap` ms of inactivity, accepting records `grace` ms late.
    pub fn with_inactivity_gap_and_grace(gap: i64, grace: i64) -> Self {
        SessionWindows { gap, grace }
    }
}

/// A grouped stream with session windows (Kafka Streams' `SessionWindowedKStream`).
pub struct SessionWindowedKStream<K, V> {
    pub(crate) stream: KStream<K, V>,
    pub(crate) keys: SerdeRef<K>,
    pub(crate) windows: SessionWindows,
}

impl<K, V> std::fmt::Debug for SessionWindowedKStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionWindowedKStream").field("windows", &self.windows).finish()
    }
}

type Merge<K, A> = Arc<dyn Fn(&K, A, A) -> A + Send + Sync>;

struct SessionAggregate<K, V, A> {
    store_name: String,
    store: Option<StoreHandle<SessionStore<K, A>>>,
    windows: SessionWindows,
    init: Init<A>,
    step: Step<K, V, A>,
    merge: Merge<K, A>,
    late: u64,
    observed: ObservedTime,
}

impl<K: Clone + 'static, V: 'static, A: Clone + 'static> Processor<K, V, Windowed<K>, Change<A>>
    for SessionAggregate<K, V, A>
{
    fn init(&mut self, ctx: &mut InitContext<'_>) -> Result<()> {
        self.store = Some(ctx.store(&self.store_name)?);
        Ok(())
    }

    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>) -> Result<()> {
        let (gap, ts) = (self.windows.gap, r.timestamp);
        let handle = self.store.as_ref().expect("initialized").clone();
        let found = handle.get().find_sessions(&r.key, ts - gap, ts + gap)?;
        let mut merged = Window { start: ts, end: ts };
        let mut agg = (self.init)();
        for (w, a) in &found {
            merged = Window { start: merged.start.min(w.start), end: merged.end.max(w.end) };
            agg = (self.merge)(&r.key, agg, a.clone());
        }
        let now = self.observed.observe(ctx, ts);
        if merged.end < now - self.windows.grace {
            self.late += 1;
            tracing::debug!(late = self.late, "dropping a record for a closed session");
            return Ok(());
        }
        let agg = (self.step)(&r.key, r.value, agg);
        for (w, old) in found {
            if w != merged {
                handle.get().remove(&r.key, w, ts)?;
                let rec =
                    Record::new(Windowed { key: r.key.clone(), window: w }, Change { new: None, old: Some(old) }, ts);
                ctx.forward(rec)?;
            }
        }
        handle.get().put(&r.key, merged, &agg, ts)?;
        let rec = Record {
            key: Windowed { key: r.key, window: merged },
            value: Change { new: Some(agg), old: None },
            timestamp: ts,
            headers: r.headers,
        };
        ctx.forward(rec)
    }
}

impl<K: Clone + 'static, V: Clone + 'static> SessionWindowedKStream<K, V> {
    /// Folds each session's records per key; `merge` combines two sessions' aggregates when a
    /// record bridges them. The table holds the latest aggregate per (key, session) in session
    /// store `store`; a merged-away session is forwarded as a delete.
    pub fn aggregate<A: Clone + 'static>(
        &self,
        init: impl Fn() -> A + Send + Sync + 'static,
        step: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        merge: impl Fn(&K, A, A) -> A + Send + Sync + 'static,
        store: &str,
        values: impl Serde<A> + 'static,
    ) -> KTable<Windowed<K>, A> {
        let shared = &self.stream.shared;
        let w = self.windows;
        if w.gap <= 0 || w.grace < 0 {
            shared.fail(crate::Error::InvalidWindows {
                kind: "session",
                reason: "need gap > 0 and grace >= 0",
                windows: format!("{w:?}"),
            });
        }
        let name = shared.name("KSTREAM-SESSION-AGGREGATE");
        let parent = self.stream.node.clone();
        let (init, step, merge): (Init<A>, Step<K, V, A>, Merge<K, A>) =
            (Arc::new(init), Arc::new(step), Arc::new(merge));
        // A record bridging two sessions can reach back two gaps from the newer one: keep
        // sessions that long (plus grace) so such merges see both. Older sessions are not
        // merged (as in Kafka Streams once its retention has passed).
        let spec = SessionSpec::new(2 * w.gap + w.grace + 1);
        let values: SerdeRef<A> = Arc::new(values);
        let builder = StoreBuilder::session::<K, A>(store, spec, self.keys.clone(), values.clone());
        let store_name = store.to_string();
        shared.with(|t| {
            let s = store_name.clone();
            t.add_processor::<K, V, Windowed<K>, Change<A>, _, _>(
                &name,
                move || SessionAggregate {
                    store_name: s.clone(),
                    store: None,
                    windows: w,
                    init: init.clone(),
                    step: step.clone(),
                    merge: merge.clone(),
                    late: 0,
                    observed: ObservedTime::default(),
                },
                &[&parent],
            )?;
            t.add_state_store(builder, &[&name])?;
            Ok(())
        });
        // A session ending at `end` can still grow by a record up to `gap` later, accepted for
        // `grace` more: it is final once stream time passes `end + gap + grace`.
        KTable::new(shared.clone(), name, Some(store_name)).windowed(self.keys.clone(), values, w.gap + w.grace + 1)
    }

    /// Counts records per key and session.
    pub fn count(&self, store: &str) -> KTable<Windowed<K>, u64> {
        self.aggregate(|| 0u64, |_, _, n| n + 1, |_, a, b| a + b, store, U64Serde)
    }
}
