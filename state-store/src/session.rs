//! The typed session store: values per (key, session), kept in segments by session end so
//! retention drops whole segments.
//!
//! Stored key: `key bytes ‖ session end (8 bytes) ‖ session start (8 bytes)`, both
//! order-preserving, as in Kafka Streams. The changelog carries the same bytes.

use std::ops::Bound;

use crate::core::{decode_time, encode_time, Core, Segmenting};
use crate::error::{hex, Error, Result};
use crate::options::StoreOptions;
use crate::raw::{RawStore, Space};
use crate::serde::Serde;
use crate::typed::{Change, Codec, Window, Windowed};

const SUFFIX: usize = 16;

/// Shape of a session store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSpec {
    /// How long sessions are kept after stream time passes their end (ms).
    pub retention: i64,
    /// Milliseconds of session end per segment.
    pub segment_interval: i64,
}

impl SessionSpec {
    /// Sessions kept for `retention`, with Kafka Streams' default segment interval.
    pub fn new(retention: i64) -> Self {
        SessionSpec { retention, segment_interval: (retention / 2).max(60_000) }
    }

    /// With this segment interval.
    pub fn with_segment_interval(mut self, interval: i64) -> Self {
        self.segment_interval = interval;
        self
    }
}

/// A typed session store (Kafka Streams' `SessionStore`). A session is a [`Window`] whose start
/// and end are its first and last record times (both inclusive).
pub struct SessionStore<K, V> {
    core: Core,
    codec: Codec<K, V>,
    spec: SessionSpec,
}

impl<K, V> std::fmt::Debug for SessionStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore").field("core", &self.core).field("spec", &self.spec).finish()
    }
}

crate::store::impl_state_store!(SessionStore);

impl<K, V> SessionStore<K, V> {
    /// A session store over `raw`. Fails on a non-positive retention or segment interval.
    pub fn new(
        raw: Box<dyn RawStore>,
        keys: Box<dyn Serde<K>>,
        values: Box<dyn Serde<V>>,
        spec: SessionSpec,
        options: StoreOptions,
    ) -> Result<Self> {
        if spec.retention <= 0 || spec.segment_interval <= 0 {
            return Err(Error::InvalidUse {
                store: raw.name().to_string(),
                reason: format!("session retention and segment interval must be positive: {spec:?}"),
            });
        }
        let seg = Segmenting { interval: spec.segment_interval, retention: spec.retention, time_from_end: SUFFIX };
        Ok(SessionStore { core: Core::new(raw, options, Some(seg)), codec: Codec::new(keys, values), spec })
    }

    /// The store's spec.
    pub fn spec(&self) -> &SessionSpec {
        &self.spec
    }

    /// The largest session end seen (drives retention); -1 before any.
    pub fn stream_time(&self) -> i64 {
        self.core.stream_time()
    }

    fn stored_key(&self, key: &K, session: Window) -> Result<Vec<u8>> {
        let mut k = Vec::with_capacity(40);
        self.codec.key_into(self.core.name(), key, &mut k)?;
        k.extend_from_slice(&encode_time(session.end));
        k.extend_from_slice(&encode_time(session.start));
        Ok(k)
    }

    fn check(&self, session: Window) -> Result<()> {
        if session.start > session.end {
            return Err(Error::InvalidUse {
                store: self.core.name().to_string(),
                reason: format!("a session cannot end before it starts: {session:?}"),
            });
        }
        Ok(())
    }

    /// Puts `value` for `key`'s `session`. Returns `false` when the session ended past
    /// retention and the write was dropped.
    pub fn put(&mut self, key: &K, session: Window, value: &V, timestamp: i64) -> Result<bool> {
        self.check(session)?;
        let k = self.stored_key(key, session)?;
        let v = self.codec.value(self.core.name(), &k, value)?;
        self.core.write(k, Some(v), timestamp)
    }

    /// Removes `key`'s `session` (after merging it into a larger one).
    pub fn remove(&mut self, key: &K, session: Window, timestamp: i64) -> Result<bool> {
        self.check(session)?;
        let k = self.stored_key(key, session)?;
        self.core.write(k, None, timestamp)
    }

    /// `key`'s value for exactly `session`.
    pub fn fetch_session(&self, key: &K, session: Window) -> Result<Option<V>> {
        if session.end < self.core.retained_from() {
            return Ok(None);
        }
        let k = self.stored_key(key, session)?;
        let space = Space::Segment(session.end.div_euclid(self.spec.segment_interval));
        self.codec.decode_opt(self.core.name(), &k, self.core.get(space, &k)?.as_deref())
    }

    /// `key`'s sessions that end at or after `earliest_end` and start at or before
    /// `latest_start`: the sessions a record at time t merges with are
    /// `find_sessions(key, t - gap, t + gap)`. Ordered by end, then start.
    pub fn find_sessions(&self, key: &K, earliest_end: i64, latest_start: i64) -> Result<Vec<(Window, V)>> {
        let name = self.core.name();
        let earliest_end = earliest_end.max(self.core.retained_from());
        let k = self.codec.key(name, key)?;
        let mut lower = k.clone();
        lower.extend_from_slice(&encode_time(earliest_end));
        let mut upper = k.clone();
        upper.extend_from_slice(&[0xff; SUFFIX]);
        let first = earliest_end.div_euclid(self.spec.segment_interval);
        let mut out = Vec::new();
        for space in self.core.spaces() {
            if !matches!(space, Space::Segment(id) if id >= first) {
                continue;
            }
            self.core.scan(space, Bound::Included(&lower), Bound::Included(&upper), &mut |sk, v| {
                if sk.len() == k.len() + SUFFIX {
                    let session = split_times(&sk[k.len()..]);
                    if session.start <= latest_start {
                        out.push((session, self.codec.decode_value(name, sk, v)?));
                    }
                }
                Ok(true)
            })?;
        }
        Ok(out)
    }

    /// Every retained session of `key`.
    pub fn fetch(&self, key: &K) -> Result<Vec<(Window, V)>> {
        self.find_sessions(key, i64::MIN, i64::MAX)
    }

    /// Every retained session of every key, by segment, key, end, then start.
    pub fn all(&self) -> Result<Vec<(Windowed<K>, V)>> {
        let from = self.core.retained_from();
        let mut out = Vec::new();
        for space in self.core.spaces() {
            self.core.scan(space, Bound::Unbounded, Bound::Unbounded, &mut |sk, v| {
                let (key, session) = self.split(sk)?;
                if session.end >= from {
                    out.push((Windowed { key, window: session }, self.codec.decode_value(self.core.name(), sk, v)?));
                }
                Ok(true)
            })?;
        }
        Ok(out)
    }

    fn split(&self, stored: &[u8]) -> Result<(K, Window)> {
        let Some(klen) = stored.len().checked_sub(SUFFIX) else {
            return Err(Error::BadChangelog {
                store: self.core.name().to_string(),
                key: hex(stored),
                reason: format!("a session key needs at least {SUFFIX} bytes"),
            });
        };
        Ok((self.codec.decode_key(self.core.name(), &stored[..klen])?, split_times(&stored[klen..])))
    }

    /// Takes the changes to forward downstream (see [`crate::Changes`]).
    pub fn take_changes(&mut self) -> Result<Vec<Change<Windowed<K>, V>>> {
        let changes = self.core.take_changes();
        self.codec.decode_changes(self.core.name(), changes, |k| {
            let (key, window) = self.split(k)?;
            Ok(Windowed { key, window })
        })
    }
}

/// The session in a 16-byte `end ‖ start` suffix.
fn split_times(suffix: &[u8]) -> Window {
    let end = decode_time(suffix[..8].try_into().expect("8 bytes"));
    let start = decode_time(suffix[8..16].try_into().expect("8 bytes"));
    Window { start, end }
}
