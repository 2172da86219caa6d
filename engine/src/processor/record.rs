//! Records as processors see them, their headers, and where they came from.

use std::sync::Arc;

/// One record header: a key and an optional value (Kafka allows null header values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header key.
    pub key: String,
    /// Header value, or `None` for null.
    pub value: Option<Vec<u8>>,
}

/// A record's headers, in order; keys may repeat.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers(Vec<Header>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// Appends a header.
    pub fn add(&mut self, key: impl Into<String>, value: Option<Vec<u8>>) -> &mut Self {
        self.0.push(Header { key: key.into(), value });
        self
    }

    /// The value of the last header called `key`.
    pub fn last(&self, key: &str) -> Option<&Header> {
        self.0.iter().rev().find(|h| h.key == key)
    }

    /// Every header, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A record flowing through a sub-topology: typed key and value, event time, headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// Event time (ms since the epoch).
    pub timestamp: i64,
    /// Headers.
    pub headers: Headers,
}

impl<K, V> Record<K, V> {
    /// A record without headers.
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        Record { key, value, timestamp, headers: Headers::new() }
    }

    /// The same record with another key.
    pub fn with_key<K2>(self, key: K2) -> Record<K2, V> {
        Record { key, value: self.value, timestamp: self.timestamp, headers: self.headers }
    }

    /// The same record with another value.
    pub fn with_value<V2>(self, value: V2) -> Record<K, V2> {
        Record { key: self.key, value, timestamp: self.timestamp, headers: self.headers }
    }

    /// The same record with another key and value.
    pub fn with_key_value<K2, V2>(self, key: K2, value: V2) -> Record<K2, V2> {
        Record { key, value, timestamp: self.timestamp, headers: self.headers }
    }

    /// The same record at another time.
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }
}

/// Where the record being processed came from (absent during a punctuation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Source topic.
    pub topic: Arc<str>,
    /// Source partition.
    pub partition: i32,
    /// Offset in that partition.
    pub offset: i64,
}
