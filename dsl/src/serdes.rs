//! Serdes as the DSL takes them: one shared store serde per type, used for topics (null-aware)
//! and stores alike.

use std::sync::Arc;

use moldau_engine::processor::{nullable, required, SharedSerde};
use moldau_engine::state::{Serde, SerdeError, Window, Windowed};

/// A shared serde for `T`.
pub type SerdeRef<T> = Arc<dyn Serde<T>>;

/// The record serde of `s` for keys and values that are never null.
pub(crate) fn record<T: 'static>(s: &SerdeRef<T>) -> SharedSerde<T> {
    required(s.clone())
}

/// How to read a topic: key and value serdes.
pub struct Consumed<K, V> {
    pub(crate) keys: SerdeRef<K>,
    pub(crate) values: SerdeRef<V>,
}

impl<K, V> Consumed<K, V> {
    /// Reads keys and values with these serdes.
    pub fn with(keys: impl Serde<K> + 'static, values: impl Serde<V> + 'static) -> Self {
        Consumed { keys: Arc::new(keys), values: Arc::new(values) }
    }
}

/// How to write a topic: key and value record serdes.
pub struct Produced<K, V> {
    pub(crate) keys: SharedSerde<K>,
    pub(crate) values: SharedSerde<V>,
}

impl<K: 'static, V: 'static> Produced<K, V> {
    /// Writes keys and values, never null, with these serdes.
    pub fn with(keys: impl Serde<K> + 'static, values: impl Serde<V> + 'static) -> Self {
        Produced { keys: required(keys), values: required(values) }
    }
}

impl<K: 'static, V: 'static> Produced<Option<K>, V> {
    /// Writes keys that may be null (`None`: a null key) and values that are never null.
    pub fn with_nullable_keys(keys: impl Serde<K> + 'static, values: impl Serde<V> + 'static) -> Self {
        Produced { keys: nullable(keys), values: required(values) }
    }
}

impl<K: 'static, V: 'static> Produced<K, Option<V>> {
    /// Writes keys that are never null and values that may be (`None`: a tombstone), as a
    /// table's update stream has them.
    pub fn with_nullable_values(keys: impl Serde<K> + 'static, values: impl Serde<V> + 'static) -> Self {
        Produced { keys: required(keys), values: nullable(values) }
    }
}

impl<K: 'static, V: 'static> Produced<Option<K>, Option<V>> {
    /// Writes keys and values that may be null (`None`: null; a null value is a tombstone).
    pub fn nullable(keys: impl Serde<K> + 'static, values: impl Serde<V> + 'static) -> Self {
        Produced { keys: nullable(keys), values: nullable(values) }
    }
}

/// How to group (and, when needed, repartition): key and value serdes.
pub struct Grouped<K, V> {
    pub(crate) keys: SerdeRef<K>,
    pub(crate) values: SerdeRef<V>,
    pub(crate) name: Option<String>,
}

impl<K, V> Grouped<K, V> {
    /// Groups with these serdes.
    pub fn with(keys: impl Serde<K> + 'static, values: impl Serde<V> + 'static) -> Self {
        Grouped { keys: Arc::new(keys), values: Arc::new(values), name: None }
    }

    /// Names the repartition topic (`<name>-repartition`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl<K, V> std::fmt::Debug for Consumed<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Consumed")
    }
}
impl<K, V> std::fmt::Debug for Produced<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Produced")
    }
}
impl<K, V> std::fmt::Debug for Grouped<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grouped").field("name", &self.name).finish()
    }
}

/// A windowed key: the key's bytes, then the window's start and end (8 bytes each, big-endian).
pub struct WindowedSerde<K>(pub SerdeRef<K>);

impl<K> std::fmt::Debug for WindowedSerde<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WindowedSerde")
    }
}

impl<K> Serde<Windowed<K>> for WindowedSerde<K> {
    fn serialize(&self, value: &Windowed<K>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        self.0.serialize(&value.key, out)?;
        out.extend_from_slice(&value.window.start.to_be_bytes());
        out.extend_from_slice(&value.window.end.to_be_bytes());
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Windowed<K>, SerdeError> {
        let Some(split) = bytes.len().checked_sub(16) else {
            return Err(format!("a windowed key needs at least 16 bytes, got {}", bytes.len()).into());
        };
        let time = |at: usize| i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let window = Window { start: time(split), end: time(split + 8) };
        Ok(Windowed { key: self.0.deserialize(&bytes[..split])?, window })
    }
}
