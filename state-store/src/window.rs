//! The typed window store: values per (key, window start), kept in time segments so retention
//! drops whole segments.
//!
//! Stored key: `key bytes ‖ window start (8 bytes, order-preserving) [‖ sequence (4 bytes)]`.
//! The changelog carries the same bytes, so a restore rebuilds windows and segments.

use std::ops::Bound;

use crate::core::{decode_time, encode_time, Core, Segmenting};
use crate::error::{Error, Result};
use crate::options::StoreOptions;
use crate::raw::{RawStore, Space};
use crate::serde::Serde;
use crate::typed::{Change, Codec, Window, Windowed};

/// Shape of a window store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    /// Window length (ms); a window is `[start, start + size)`.
    pub size: i64,
    /// How long windows are kept after stream time passes their start (ms): windows starting
    /// before `stream time - retention + 1` are dropped and writes to them are ignored.
    pub retention: i64,
    /// Milliseconds of window start per segment; retention drops whole segments. Kafka Streams'
    /// default is `max(retention / 2, 60 000)`.
    pub segment_interval: i64,
    /// Keep every value put for a (key, window) instead of replacing it (stream-stream joins).
    pub retain_duplicates: bool,
}

impl WindowSpec {
    /// Windows of `size` kept for `retention`, with Kafka Streams' default segment interval.
    pub fn new(size: i64, retention: i64) -> Self {
        WindowSpec { size, retention, segment_interval: (retention / 2).max(60_000), retain_duplicates: false }
    }

    /// With this segment interval.
    pub fn with_segment_interval(mut self, interval: i64) -> Self {
        self.segment_interval = interval;
        self
    }

    /// Keeping duplicates.
    pub fn with_duplicates(mut self) -> Self {
        self.retain_duplicates = true;
        self
    }

    fn suffix(&self) -> usize {
        if self.retain_duplicates {
            12
        } else {
            8
        }
    }
}

/// A typed window store (Kafka Streams' `WindowStore`).
pub struct WindowStore<K, V> {
    core: Core,
    codec: Codec<K, V>,
    spec: WindowSpec,
    seq: u32,
}

impl<K, V> std::fmt::Debug for WindowStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowStore").field("core", &self.core).field("spec", &self.spec).finish()
    }
}

crate::store::impl_state_store!(WindowStore);

impl<K, V> WindowStore<K, V> {
    /// A window store over `raw`. Fails on a spec with a non-positive size, retention or
    /// segment interval.
    pub fn new(
        raw: Box<dyn RawStore>,
        keys: Box<dyn Serde<K>>,
        values: Box<dyn Serde<V>>,
        spec: WindowSpec,
        options: StoreOptions,
    ) -> Result<Self> {
        if spec.size <= 0 || spec.retention <= 0 || spec.segment_interval <= 0 {
            return Err(Error::InvalidUse {
                store: raw.name().to_string(),
                reason: format!("window size, retention and segment interval must be positive: {spec:?}"),
            });
        }
        let seg =
            Segmenting { interval: spec.segment_interval, retention: spec.retention, time_from_end: spec.suffix() };
        Ok(WindowStore { core: Core::new(raw, options, Some(seg)), codec: Codec::new(keys, values), spec, seq: 0 })
    }

    /// The store's spec.
    pub fn spec(&self) -> &WindowSpec {
        &self.spec
    }

    /// The largest window start seen (drives retention); -1 before any.
    pub fn stream_time(&self) -> i64 {
        self.core.stream_time()
    }

    /// Writes dropped because their window was past retention.
    pub fn expired_drops(&self) -> u64 {
        self.core.expired_drops()
    }

    /// `key ‖ start`: the stored key without the duplicate sequence.
    fn window_key(&self, key: &K, start: i64) -> Result<Vec<u8>> {
        let mut k = Vec::with_capacity(32);
        self.codec.key_into(self.core.name(), key, &mut k)?;
        k.extend_from_slice(&encode_time(start));
        Ok(k)
    }

    fn stored_key(&mut self, key: &K, start: i64) -> Result<Vec<u8>> {
        let mut k = self.window_key(key, start)?;
        if self.spec.retain_duplicates {
            self.seq = self.seq.wrapping_add(1);
            k.extend_from_slice(&self.seq.to_be_bytes());
        }
        Ok(k)
    }

    /// Puts `value` for `key` in the window starting at `window_start`. Returns `false` when
    /// the window is past retention and the write was dropped.
    pub fn put(&mut self, key: &K, value: &V, window_start: i64, timestamp: i64) -> Result<bool> {
        let k = self.stored_key(key, window_start)?;
        let v = self.codec.value(self.core.name(), &k, value)?;
        self.core.write(k, Some(v), timestamp)
    }

    /// Deletes `key`'s value in the window starting at `window_start` (a no-op for a store that
    /// retains duplicates, as in Kafka Streams).
    pub fn delete(&mut self, key: &K, window_start: i64, timestamp: i64) -> Result<bool> {
        if self.spec.retain_duplicates {
            return Ok(false);
        }
        let k = self.stored_key(key, window_start)?;
        self.core.write(k, None, timestamp)
    }

    /// `key`'s value in the window starting at `window_start` (a point read; the first value
    /// put for a store that retains duplicates).
    pub fn fetch(&self, key: &K, window_start: i64) -> Result<Option<V>> {
        if self.spec.retain_duplicates {
            return Ok(self.fetch_range(key, window_start, window_start)?.into_iter().next().map(|(_, v)| v));
        }
        if window_start < self.core.retained_from() {
            return Ok(None);
        }
        let name = self.core.name();
        let k = self.window_key(key, window_start)?;
        let space = Space::Segment(window_start.div_euclid(self.spec.segment_interval));
        self.core.get(space, &k)?.map(|v| self.codec.decode_value(name, &k, &v)).transpose()
    }

    /// `key`'s values in windows starting in `[from, to]`, by window start.
    pub fn fetch_range(&self, key: &K, from: i64, to: i64) -> Result<Vec<(i64, V)>> {
        let name = self.core.name();
        let from = from.max(self.core.retained_from());
        if from > to {
            return Ok(Vec::new());
        }
        let k = self.codec.key(name, key)?;
        let suffix = self.spec.suffix();
        let mut lower = k.clone();
        lower.extend_from_slice(&encode_time(from));
        let mut upper = k.clone();
        upper.extend_from_slice(&encode_time(to));
        upper.extend_from_slice(&[0xff; 4][..suffix - 8]);
        let mut out = Vec::new();
        for space in self.spaces_between(from, to) {
            self.core.scan(space, Bound::Included(&lower), Bound::Included(&upper), &mut |sk, v| {
                // Longer keys that start with `k` sort inside the range too: skip them.
                if sk.len() == k.len() + suffix {
                    let start = decode_time(sk[k.len()..k.len() + 8].try_into().expect("8 bytes"));
                    out.push((start, self.codec.decode_value(name, sk, v)?));
                }
                Ok(true)
            })?;
        }
        Ok(out)
    }

    /// Every key's values in windows starting in `[from, to]`, by segment, key, then start.
    pub fn fetch_all(&self, from: i64, to: i64) -> Result<Vec<(Windowed<K>, V)>> {
        let from = from.max(self.core.retained_from());
        if from > to {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for space in self.spaces_between(from, to) {
            self.core.scan(space, Bound::Unbounded, Bound::Unbounded, &mut |sk, v| {
                let (key, start) = self.split(sk)?;
                if (from..=to).contains(&start) {
                    let window = Window { start, end: start.saturating_add(self.spec.size) };
                    out.push((Windowed { key, window }, self.codec.decode_value(self.core.name(), sk, v)?));
                }
                Ok(true)
            })?;
        }
        Ok(out)
    }

    /// Every retained window of every key.
    pub fn all(&self) -> Result<Vec<(Windowed<K>, V)>> {
        self.fetch_all(i64::MIN, i64::MAX)
    }

    /// Splits stored key bytes into the key and the window start.
    fn split(&self, stored: &[u8]) -> Result<(K, i64)> {
        let suffix = self.spec.suffix();
        let Some(klen) = stored.len().checked_sub(suffix) else {
            return Err(Error::BadChangelog {
                store: self.core.name().to_string(),
                key: crate::error::hex(stored),
                reason: format!("a window key needs at least {suffix} bytes"),
            });
        };
        let start = decode_time(stored[klen..klen + 8].try_into().expect("8 bytes"));
        Ok((self.codec.decode_key(self.core.name(), &stored[..klen])?, start))
    }

    /// The keyspaces that may hold windows starting in `[from, to]`.
    fn spaces_between(&self, from: i64, to: i64) -> Vec<Space> {
        let (lo, hi) = (from.div_euclid(self.spec.segment_interval), to.div_euclid(self.spec.segment_interval));
        self.core.spaces().into_iter().filter(|s| matches!(s, Space::Segment(id) if (lo..=hi).contains(id))).collect()
    }

    /// Takes the changes to forward downstream (see [`crate::Changes`]).
    pub fn take_changes(&mut self) -> Result<Vec<Change<Windowed<K>, V>>> {
        let changes = self.core.take_changes();
        self.codec.decode_changes(self.core.name(), changes, |k| {
            let (key, start) = self.split(k)?;
            Ok(Windowed { key, window: Window { start, end: start.saturating_add(self.spec.size) } })
        })
    }

    /// An estimate of the number of windows.
    pub fn approximate_count(&self) -> Result<u64> {
        self.core.approximate_count()
    }
}
