//! Sliding-window aggregations (Kafka Streams' `SlidingWindows`): windows of a fixed time
//! difference `d` that exist only where records are, so each distinct set of records at most
//! `d` apart is aggregated once.
//!
//! For the record times `S` of a key, the windows are, for each `t` in `S`:
//! - its left window `[t - d, t]` (both ends inclusive), and
//! - its right window `[t + 1, t + 1 + d]`, when some record falls in it.
//!
//! Aggregates cannot be subtracted, so a new window is seeded from an existing one that holds
//! exactly the records it needs. Each stored window keeps the largest record time in it; a new
//! record at `ts` reads the windows starting in `[ts - 2d, ts + 1]` and:
//! 1. folds itself into every window containing it;
//! 2. creates its left window if missing, seeded from the window with the greatest start among
//!    those ending before `ts`, when that window's records reach `ts - d` (otherwise empty);
//! 3. creates its right window if missing and not empty, seeded from the window with the
//!    greatest start among those containing `ts` but not ending at it, taken before step 1;
//! 4. creates the right window of the previous record (the newest before `ts`) if the new
//!    record is the first to fall in it.
//!
//! Each choice in 2 and 3 holds exactly the needed records; the module's tests check the
//! result against aggregates recomputed from the raw records.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::observed::ObservedTime;
use moldau_engine::state::{Serde, SerdeError, U64Serde, Window, WindowSpec, WindowStore, Windowed};
use moldau_engine::{InitContext, Processor, ProcessorContext, Record, Result, StoreBuilder, StoreHandle};

use crate::grouped::{Init, Step};
use crate::kstream::KStream;
use crate::ktable::{Change, KTable};
use crate::serdes::SerdeRef;

/// Sliding windows: windows `[t - d, t]` and `[t + 1, t + 1 + d]` around each record time `t`,
/// accepting records up to `grace` after a window ends.
///
/// ```
/// use moldau_dsl::state::{StringSerde, U64Serde};
/// use moldau_dsl::{Consumed, Grouped, Produced, SlidingWindows, StreamsBuilder};
/// use moldau_engine::processor::Required;
/// use moldau_engine::testing::TopologyTestDriver;
///
/// // Alert on three logins of one user within 10 s (records up to 5 s late still count).
/// let builder = StreamsBuilder::new();
/// builder
///     .stream_keyed("logins", Consumed::with(StringSerde, StringSerde))
///     .group_by_key(Grouped::with(StringSerde, StringSerde))
///     .windowed_by_sliding(SlidingWindows::with_time_difference_and_grace(10_000, 5_000))
///     .count("logins-in-10s")
///     .to_stream()
///     .map(|w, n: Option<u64>| (w.key, n.unwrap_or(0)))
///     .filter(|_, n| *n >= 3)
///     .to("alerts", Produced::with(StringSerde, U64Serde));
///
/// let mut driver = TopologyTestDriver::new(builder.build()?)?;
/// let s = Required(StringSerde);
/// for t in [100_000, 104_000, 108_000, 130_000] {
///     driver.pipe("logins", &s, &s, &"ann".to_string(), &"ok".to_string(), t)?;
/// }
/// let alerts = driver.read_output_typed("alerts", &s, &Required(U64Serde))?;
/// assert_eq!(alerts, vec![("ann".to_string(), 3, 108_000)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindows {
    difference: i64,
    grace: i64,
}

impl SlidingWindows {
    /// Windows spanning `difference` ms (records at most that far apart share a window), with
    /// `grace` ms for late records.
    pub fn with_time_difference_and_grace(difference: i64, grace: i64) -> Self {
        SlidingWindows { difference, grace }
    }

    /// Windows spanning `difference` ms; late records are dropped at once.
    pub fn with_time_difference_and_no_grace(difference: i64) -> Self {
        Self::with_time_difference_and_grace(difference, 0)
    }

    /// The grace period (ms).
    pub fn grace(&self) -> i64 {
        self.grace
    }

    fn check(&self) -> crate::Result<()> {
        if self.difference <= 0 || self.grace < 0 {
            return Err(crate::Error::InvalidWindows {
                kind: "sliding",
                reason: "need a time difference > 0 and grace >= 0",
                windows: format!("{self:?}"),
            });
        }
        Ok(())
    }
}

/// A window's aggregate with the largest record time in the window.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stamped<A> {
    agg: A,
    max_ts: i64,
}

/// Stores a [`Stamped`] as the aggregate's bytes followed by 8 bytes of time.
struct StampedSerde<A>(SerdeRef<A>);

impl<A> Serde<Stamped<A>> for StampedSerde<A> {
    fn serialize(&self, value: &Stamped<A>, out: &mut Vec<u8>) -> std::result::Result<(), SerdeError> {
        self.0.serialize(&value.agg, out)?;
        out.extend_from_slice(&value.max_ts.to_be_bytes());
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> std::result::Result<Stamped<A>, SerdeError> {
        let Some(split) = bytes.len().checked_sub(8) else {
            return Err(format!("a sliding window value needs at least 8 bytes, got {}", bytes.len()).into());
        };
        let max_ts = i64::from_be_bytes(bytes[split..].try_into().expect("8 bytes"));
        Ok(Stamped { agg: self.0.deserialize(&bytes[..split])?, max_ts })
    }
}

/// A grouped stream with sliding windows (Kafka Streams' `SlidingWindowedKStream`).
pub struct SlidingWindowedKStream<K, V> {
    pub(crate) stream: KStream<K, V>,
    pub(crate) keys: SerdeRef<K>,
    pub(crate) windows: SlidingWindows,
}

impl<K, V> std::fmt::Debug for SlidingWindowedKStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlidingWindowedKStream").field("windows", &self.windows).finish()
    }
}

struct SlidingAggregate<K, V, A> {
    store_name: String,
    store: Option<StoreHandle<WindowStore<K, Stamped<A>>>>,
    windows: SlidingWindows,
    init: Init<A>,
    step: Step<K, V, A>,
    late: u64,
    observed: ObservedTime,
}

impl<K: Clone + 'static, V: Clone + 'static, A: Clone + 'static> Processor<K, V, Windowed<K>, Change<A>>
    for SlidingAggregate<K, V, A>
{
    fn init(&mut self, ctx: &mut InitContext<'_>) -> Result<()> {
        self.store = Some(ctx.store(&self.store_name)?);
        Ok(())
    }

    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>) -> Result<()> {
        let (d, ts) = (self.windows.difference, r.timestamp);
        // Windows ending before `close` no longer take records.
        let close = self.observed.observe(ctx, ts) - self.windows.grace;
        if ts < 0 || ts + 1 + d <= close {
            self.late += 1;
            tracing::debug!(late = self.late, ts, "dropping a record whose sliding windows all closed");
            return Ok(());
        }
        let handle = self.store.as_ref().expect("initialized").clone();
        let existing = handle.get().fetch_range(&r.key, ts - 2 * d, ts + 1)?;
        let mut starts = BTreeSet::new();
        let mut left_seed: Option<&Stamped<A>> = None; // greatest start, ending before ts
        let mut right_seed: Option<&Stamped<A>> = None; // greatest start, containing ts, ending after it
        let mut previous: Option<i64> = None; // the newest record time before ts
        let (mut left_exists, mut right_exists) = (false, false);
        let mut updates: Vec<(i64, Stamped<A>, Option<A>)> = Vec::new();
        for (start, w) in &existing {
            starts.insert(*start);
            let end = start + d;
            if w.max_ts < ts {
                previous = previous.max(Some(w.max_ts));
            }
            if end < ts {
                left_seed = Some(w);
            } else if *start <= ts {
                left_exists |= end == ts;
                if end > ts {
                    right_seed = Some(w);
                }
                let agg = (self.step)(&r.key, r.value.clone(), w.agg.clone());
                updates.push((*start, Stamped { agg, max_ts: w.max_ts.max(ts) }, Some(w.agg.clone())));
            } else {
                right_exists = true; // start == ts + 1
            }
        }
        // The previous record's right window, if this record is the first in it.
        if let Some(p) = previous {
            if p + 1 + d >= ts && !starts.contains(&(p + 1)) {
                starts.insert(p + 1);
                let agg = (self.step)(&r.key, r.value.clone(), (self.init)());
                updates.push((p + 1, Stamped { agg, max_ts: ts }, None));
            }
        }
        if !left_exists && !starts.contains(&(ts - d)) {
            let seed = match (previous, left_seed) {
                (Some(p), Some(seed)) if p >= ts - d => seed.agg.clone(),
                _ => (self.init)(),
            };
            let agg = (self.step)(&r.key, r.value.clone(), seed);
            updates.push((ts - d, Stamped { agg, max_ts: ts }, None));
        }
        if !right_exists {
            if let Some(seed) = right_seed.filter(|w| w.max_ts > ts) {
                // Holds only later records: `ts` itself is not in its own right window.
                updates.push((ts + 1, Stamped { agg: seed.agg.clone(), max_ts: seed.max_ts }, None));
            }
        }
        updates.sort_by_key(|(start, _, _)| *start);
        for (start, stamped, old) in updates {
            handle.get().put(&r.key, &stamped, start, ts)?;
            let end = start + d;
            if end > close {
                let key = Windowed { key: r.key.clone(), window: Window { start, end } };
                let value = Change { new: Some(stamped.agg), old };
                ctx.forward(Record { key, value, timestamp: stamped.max_ts, headers: r.headers.clone() })?;
            }
        }
        Ok(())
    }
}

impl<K: Clone + 'static, V: Clone + 'static> SlidingWindowedKStream<K, V> {
    /// Folds each sliding window's records per key, starting from `init()`; the table holds the
    /// latest aggregate per (key, window `[start, end]`) in window store `store`.
    pub fn aggregate<A: Clone + 'static>(
        &self,
        init: impl Fn() -> A + Send + Sync + 'static,
        step: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        store: &str,
        values: impl Serde<A> + 'static,
    ) -> KTable<Windowed<K>, A> {
        let shared = &self.stream.shared;
        let w = self.windows;
        if let Err(e) = w.check() {
            shared.fail(e);
        }
        let name = shared.name("KSTREAM-SLIDINGWINDOWAGGREGATE");
        let parent = self.stream.node.clone();
        let (init, step): (Init<A>, Step<K, V, A>) = (Arc::new(init), Arc::new(step));
        let values: SerdeRef<A> = Arc::new(values);
        // A record still accepted (up to d + grace behind stream time) reads windows starting
        // two differences before it.
        let retention = 3 * w.difference + w.grace + 3;
        let spec = WindowSpec::new(w.difference + 1, retention);
        let builder =
            StoreBuilder::window::<K, Stamped<A>>(store, spec, self.keys.clone(), StampedSerde(values.clone()));
        let store_name = store.to_string();
        shared.with(|t| {
            let s = store_name.clone();
            t.add_processor::<K, V, Windowed<K>, Change<A>, _, _>(
                &name,
                move || SlidingAggregate {
                    store_name: s.clone(),
                    store: None,
                    windows: w,
                    init: init.clone(),
                    step: step.clone(),
                    late: 0,
                    observed: ObservedTime::default(),
                },
                &[&parent],
            )?;
            t.add_state_store(builder, &[&name])?;
            Ok(())
        });
        KTable::new(shared.clone(), name, None).windowed(self.keys.clone(), values, w.grace)
    }

    /// Counts records per key and sliding window.
    pub fn count(&self, store: &str) -> KTable<Windowed<K>, u64> {
        self.aggregate(|| 0u64, |_, _, n| n + 1, store, U64Serde)
    }
}
