//! `KTable::suppress`: holds back a table's updates and emits only the latest per key, either
//! once its window closes (emit final) or a fixed time after its first held update (rate
//! limiting). Time is stream time, so results do not depend on how fast records arrive.
//!
//! The buffer is a key-value store (changelogged like any other, so a restart neither repeats
//! nor loses an emission) keyed by `due time (8 bytes, order-preserving) ‖ key bytes`: the
//! entries due first come first. A second store maps key bytes to their due time, so an update
//! finds the entry it replaces.

use std::sync::Arc;

use crate::observed::ObservedTime;
use moldau_engine::state::{BytesSerde, I64Serde, KeyValueStore, Windowed};
use moldau_engine::{Error, InitContext, Processor, ProcessorContext, Record, Result, StoreBuilder, StoreHandle};

use crate::ktable::{Change, KTable};
use crate::serdes::SerdeRef;

/// When a suppressed table emits a key's latest update.
enum Until<K> {
    /// When the key's window closes: its end (from the key) plus the table's close delay.
    WindowCloses(Arc<dyn Fn(&K) -> i64 + Send + Sync>),
    /// This many ms of stream time after the key's first held update.
    TimeLimit(i64),
}

impl<K> Clone for Until<K> {
    fn clone(&self) -> Self {
        match self {
            Until::WindowCloses(end) => Until::WindowCloses(end.clone()),
            Until::TimeLimit(ms) => Until::TimeLimit(*ms),
        }
    }
}

/// How [`KTable::suppress`] holds updates back (Kafka Streams' `Suppressed`).
pub struct Suppressed<K> {
    until: Until<K>,
    max_records: Option<usize>,
    name: Option<String>,
}

impl<K> std::fmt::Debug for Suppressed<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let until = match &self.until {
            Until::WindowCloses(_) => "window closes".to_string(),
            Until::TimeLimit(ms) => format!("{ms} ms"),
        };
        f.debug_struct("Suppressed").field("until", &until).field("max_records", &self.max_records).finish()
    }
}

impl<K> Suppressed<Windowed<K>> {
    /// Emits each window's final result once, when stream time passes its end plus the grace
    /// period of the windowed aggregation the table comes from. The buffer is unbounded: a
    /// final result is never emitted early.
    pub fn until_window_closes() -> Self {
        Suppressed {
            until: Until::WindowCloses(Arc::new(|k: &Windowed<K>| k.window.end)),
            max_records: None,
            name: None,
        }
    }
}

impl<K> Suppressed<K> {
    /// Emits a key's latest update `limit_ms` of stream time after its first held update.
    pub fn until_time_limit(limit_ms: i64) -> Self {
        Suppressed { until: Until::TimeLimit(limit_ms), max_records: None, name: None }
    }

    /// Holds at most `n` keys (time limit only): when full, the entries due first are emitted
    /// early.
    pub fn with_max_records(mut self, n: usize) -> Self {
        self.max_records = Some(n);
        self
    }

    /// Names the buffer store (and so its changelog topic).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// The buffer's value: `timestamp (8) ‖ flags (1) ‖ new length (4) ‖ new ‖ old`; flag bit 0:
/// new present, bit 1: old present.
fn encode_entry(ts: i64, new: Option<&[u8]>, old: Option<&[u8]>) -> Vec<u8> {
    let (n, o) = (new.unwrap_or_default(), old.unwrap_or_default());
    let mut out = Vec::with_capacity(13 + n.len() + o.len());
    out.extend_from_slice(&ts.to_be_bytes());
    out.push(u8::from(new.is_some()) | (u8::from(old.is_some()) << 1));
    out.extend_from_slice(&(n.len() as u32).to_be_bytes());
    out.extend_from_slice(n);
    out.extend_from_slice(o);
    out
}

/// The parts of an entry: timestamp, new bytes, old bytes.
type Entry<'a> = (i64, Option<&'a [u8]>, Option<&'a [u8]>);

fn decode_entry(bytes: &[u8]) -> std::result::Result<Entry<'_>, String> {
    if bytes.len() < 13 {
        return Err(format!("a suppress buffer entry needs at least 13 bytes, got {}", bytes.len()));
    }
    let ts = i64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
    let flags = bytes[8];
    let len = u32::from_be_bytes(bytes[9..13].try_into().expect("4 bytes")) as usize;
    let rest = &bytes[13..];
    if rest.len() < len {
        return Err(format!("a suppress buffer entry says {len} value bytes but holds {}", rest.len()));
    }
    let (n, o) = rest.split_at(len);
    Ok((ts, (flags & 1 != 0).then_some(n), (flags & 2 != 0).then_some(o)))
}

/// A buffer that cannot be read or written.
fn bad(reason: String) -> Error {
    Error::Processing { node: "KTABLE-SUPPRESS".into(), reason }
}

/// The buffer key: the due time (8 bytes, sign bit flipped so times sort as bytes) and the key.
fn due_key(due: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&((due as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// The due time of a buffer key (the inverse of [`due_key`]).
fn due_of(buffer_key: &[u8]) -> Option<i64> {
    let time: [u8; 8] = buffer_key.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(time) ^ (1 << 63)) as i64)
}

struct Suppress<K, V> {
    buffer_name: String,
    index_name: String,
    buffer: Option<StoreHandle<KeyValueStore<Vec<u8>, Vec<u8>>>>,
    index: Option<StoreHandle<KeyValueStore<Vec<u8>, i64>>>,
    until: Until<K>,
    close_after: i64,
    max_records: Option<usize>,
    keys: SerdeRef<K>,
    values: SerdeRef<V>,
    /// Entries held; counted from the index at the first record (after restore).
    held: Option<usize>,
    observed: ObservedTime,
}

impl<K, V> Suppress<K, V> {
    fn serialize<T>(serde: &SerdeRef<T>, what: &str, value: &T) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        serde.serialize(value, &mut out).map_err(|e| bad(format!("cannot serialize a {what}: {e}")))?;
        Ok(out)
    }

    fn deserialize<T>(serde: &SerdeRef<T>, what: &str, bytes: &[u8]) -> Result<T> {
        serde.deserialize(bytes).map_err(|e| bad(format!("cannot read a buffered {what}: {e}")))
    }
}

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, Change<V>, K, Change<V>> for Suppress<K, V> {
    fn init(&mut self, ctx: &mut InitContext<'_>) -> Result<()> {
        self.buffer = Some(ctx.store(&self.buffer_name)?);
        self.index = Some(ctx.store(&self.index_name)?);
        Ok(())
    }

    fn process(&mut self, r: Record<K, Change<V>>, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> Result<()> {
        let buffer = self.buffer.clone().expect("initialized");
        let index = self.index.clone().expect("initialized");
        if self.held.is_none() {
            let mut n = 0;
            index.get().for_each_from(None, &mut |_, _| {
                n += 1;
                true
            })?;
            self.held = Some(n);
        }
        let key = Self::serialize(&self.keys, "key", &r.key)?;
        let new = r.value.new.as_ref().map(|v| Self::serialize(&self.values, "value", v)).transpose()?;
        let held_due = index.get().get(&key)?;
        let (due, old) = match held_due {
            Some(due) => {
                // Keep the value from before the first held update.
                let entry = buffer.get().get(&due_key(due, &key))?.unwrap_or_default();
                let old = decode_entry(&entry).map_err(bad)?.2.map(<[u8]>::to_vec);
                (due, old)
            }
            None => {
                let due = match &self.until {
                    Until::WindowCloses(end) => end(&r.key) + self.close_after,
                    Until::TimeLimit(ms) => r.timestamp.saturating_add(*ms),
                };
                let old = r.value.old.as_ref().map(|v| Self::serialize(&self.values, "value", v)).transpose()?;
                index.get().put(&key, &due, r.timestamp)?;
                *self.held.as_mut().expect("counted") += 1;
                (due, old)
            }
        };
        let entry = encode_entry(r.timestamp, new.as_deref(), old.as_deref());
        buffer.get().put(&due_key(due, &key), &entry, r.timestamp)?;
        let now = self.observed.observe(ctx, r.timestamp);
        self.emit(ctx, now)
    }
}

impl<K: Clone + 'static, V: Clone + 'static> Suppress<K, V> {
    /// Emits every entry due at or before `now` (the observed stream time), and (with a record
    /// limit) the entries due first while the buffer is over it.
    fn emit(&mut self, ctx: &mut ProcessorContext<'_, K, Change<V>>, now: i64) -> Result<()> {
        let buffer = self.buffer.clone().expect("initialized");
        let index = self.index.clone().expect("initialized");
        let limit = self.max_records.unwrap_or(usize::MAX);
        let mut due = Vec::new();
        let mut held = self.held.unwrap_or(0);
        buffer.get().for_each_from(None, &mut |k, v| {
            if due_of(&k).is_some_and(|t| t <= now) || held > limit {
                held = held.saturating_sub(1);
                due.push((k, v));
                true
            } else {
                false
            }
        })?;
        for (k, v) in due {
            let (ts, new, old) = decode_entry(&v).map_err(bad)?;
            let key_bytes = k.get(8..).unwrap_or_default();
            let key = Self::deserialize(&self.keys, "key", key_bytes)?;
            let new = new.map(|b| Self::deserialize(&self.values, "value", b)).transpose()?;
            let old = old.map(|b| Self::deserialize(&self.values, "value", b)).transpose()?;
            buffer.get().delete(&k, now)?;
            index.get().delete(&key_bytes.to_vec(), now)?;
            *self.held.as_mut().expect("counted") -= 1;
            if new.is_some() || old.is_some() {
                ctx.forward(Record::new(key, Change { new, old }, ts))?;
            }
        }
        Ok(())
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KTable<K, V> {
    /// Holds this table's updates back and emits only each key's latest, as `suppressed` says
    /// (Kafka Streams' `KTable#suppress`). Needs the table's serdes: tables from a topic, an
    /// aggregation or a filter of one know them; after `map_values`, call
    /// [`KTable::with_serdes`] first.
    pub fn suppress(&self, suppressed: Suppressed<K>) -> KTable<K, V> {
        let shared = &self.shared;
        let name = shared.name("KTABLE-SUPPRESS");
        let Some((keys, values)) = self.serdes.clone() else {
            shared.fail(crate::Error::MissingSerdes { operation: "suppress", node: self.node.clone() });
            return KTable::new(shared.clone(), name, None);
        };
        let close_after = match (&suppressed.until, self.close_after) {
            (Until::WindowCloses(_), None) => {
                shared.fail(crate::Error::InvalidSuppression {
                    reason: format!(
                        "until the window closes needs a windowed aggregation's table; {} is not one",
                        self.node
                    ),
                });
                0
            }
            (_, close_after) => close_after.unwrap_or(0),
        };
        if matches!(suppressed.until, Until::WindowCloses(_)) && suppressed.max_records.is_some() {
            shared.fail(crate::Error::InvalidSuppression {
                reason: "until the window closes emits final results only: it takes no record limit".into(),
            });
        }
        if matches!(suppressed.until, Until::TimeLimit(ms) if ms < 0) {
            shared.fail(crate::Error::InvalidSuppression { reason: "needs a time limit >= 0".into() });
        }
        let buffer_name = suppressed.name.clone().unwrap_or_else(|| shared.name("KTABLE-SUPPRESS-STATE-STORE"));
        let index_name = format!("{buffer_name}-index");
        let parent = self.node.clone();
        shared.with(|t| {
            let (b, i, until, max) =
                (buffer_name.clone(), index_name.clone(), suppressed.until.clone(), suppressed.max_records);
            let (k, v) = (keys.clone(), values.clone());
            t.add_processor::<K, Change<V>, K, Change<V>, _, _>(
                &name,
                move || Suppress {
                    buffer_name: b.clone(),
                    index_name: i.clone(),
                    buffer: None,
                    index: None,
                    until: until.clone(),
                    close_after,
                    max_records: max,
                    keys: k.clone(),
                    values: v.clone(),
                    held: None,
                    observed: ObservedTime::default(),
                },
                &[&parent],
            )?;
            t.add_state_store(
                StoreBuilder::key_value::<Vec<u8>, Vec<u8>>(&buffer_name, BytesSerde, BytesSerde),
                &[&name],
            )?;
            t.add_state_store(StoreBuilder::key_value::<Vec<u8>, i64>(&index_name, BytesSerde, I64Serde), &[&name])?;
            Ok(())
        });
        KTable { close_after: self.close_after, ..KTable::new(shared.clone(), name, None) }
            .with_serdes_ref(keys, values)
    }
}
