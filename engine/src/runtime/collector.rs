//! The record collector: what a task's sinks produced since it was last drained.

use std::sync::Arc;

use crate::processor::Headers;

/// A record a sink produced, serialized, for the producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    /// Destination topic.
    pub topic: Arc<str>,
    /// Key bytes (`None`: null).
    pub key: Option<Vec<u8>>,
    /// Value bytes (`None`: null, a tombstone).
    pub value: Option<Vec<u8>>,
    /// Timestamp (ms).
    pub timestamp: i64,
    /// Headers.
    pub headers: Headers,
}

/// Output records of a task, in production order.
#[derive(Debug, Default)]
pub(crate) struct RecordCollector {
    records: Vec<OutputRecord>,
}

impl RecordCollector {
    pub(crate) fn send(&mut self, record: OutputRecord) {
        self.records.push(record);
    }

    /// Moves the records to the end of `out`, keeping this collector's capacity.
    pub(crate) fn drain_into(&mut self, out: &mut Vec<OutputRecord>) {
        out.append(&mut self.records);
    }
}

/// The headers of a dead-lettered record: its own, then the error and its origin.
pub(crate) fn dead_letter_headers(
    mut headers: Headers,
    error: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Headers {
    headers.add("__moldau.error", Some(error.as_bytes().to_vec()));
    headers.add("__moldau.origin.topic", Some(topic.as_bytes().to_vec()));
    headers.add("__moldau.origin.partition", Some(partition.to_string().into_bytes()));
    headers.add("__moldau.origin.offset", Some(offset.to_string().into_bytes()));
    headers
}
