//! Stream time as one processor observes it (Kafka Streams' `observedStreamTime`): the
//! largest timestamp of the records it has processed, from the stream time its task resumed
//! at. Window and suppression operators close windows on it rather than on the task's stream
//! time, which counts every record the task has read: a stage before them that holds records
//! back to process them a batch at a time would otherwise have their windows closed on the
//! times of records it has not handed on yet.

use moldau_engine::ProcessorContext;

/// A processor's observed stream time.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ObservedTime(Option<i64>);

impl ObservedTime {
    /// Observes a record at `timestamp`; returns the observed stream time, that record's
    /// included.
    pub(crate) fn observe<K, V>(&mut self, ctx: &ProcessorContext<'_, K, V>, timestamp: i64) -> i64 {
        let t = self.0.unwrap_or_else(|| ctx.start_stream_time()).max(timestamp);
        self.0 = Some(t);
        t
    }
}
