//! The stream thread's group consumer, as the runtime core sees it ([`Consumer`]): rdkafka's
//! `BaseConsumer` with the group context that records rebalance events for the core.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerGroupMetadata};
use rdkafka::message::{BorrowedMessage, Headers as _};
use rdkafka::{Offset, TopicPartitionList};

use super::clock::SystemClock;
use super::group::{is_cooperative, GroupContext};
use super::producer::offsets_list;
use super::retry::until_answered;
use crate::error::{Error, Result};
use crate::processor::Headers;
use crate::runtime::io::{Committed, Consumer, Message, OffsetCommit, Partition, Position, Rebalance};
use crate::runtime::offset_meta::TaskMeta;

/// How long a closing thread serves its consumer after its assignment emptied, for librdkafka
/// to send LeaveGroup (it does once the revoke completes, a moment after).
const LEAVE_SETTLE: Duration = Duration::from_millis(100);

/// The longest a closing thread waits for its revoke to complete.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A stream thread's group consumer.
pub(crate) struct GroupConsumer {
    consumer: BaseConsumer<GroupContext>,
    index: usize,
}

impl GroupConsumer {
    /// Wraps `consumer` (subscribed) of thread `index`.
    pub(crate) fn new(consumer: BaseConsumer<GroupContext>, index: usize) -> Self {
        GroupConsumer { consumer, index }
    }

    /// Leaves the group: partitions handed back (their tasks are closed) and LeaveGroup sent.
    pub(crate) fn leave(&mut self) {
        self.consumer.context().closing.store(true, Ordering::Relaxed);
        // Cooperative: unsubscribing revokes the assignment through the rebalance callback,
        // which must find it still there (an incremental unassign of nothing fails and leaves
        // librdkafka waiting for one that succeeds).
        if !is_cooperative(&self.consumer) {
            let _ = self.consumer.unassign();
        }
        self.consumer.unsubscribe();
        self.await_leave();
    }

    /// Serves the revoke that unsubscribing starts until the assignment is empty, then a
    /// little longer: librdkafka sends LeaveGroup only once that revoke completes, and a
    /// consumer closed before then ends without leaving (its session would have to time out
    /// before its partitions move).
    fn await_leave(&mut self) {
        let clock = SystemClock;
        let start = clock.now();
        let mut emptied = None;
        loop {
            let _ = self.consumer.poll(Duration::from_millis(10));
            let now = clock.now();
            if emptied.is_none() && self.consumer.assignment().map_or(true, |a| a.count() == 0) {
                emptied = Some(now);
            }
            let settled = emptied.is_some_and(|t| now.duration_since(t) >= LEAVE_SETTLE);
            if settled || now.duration_since(start) >= LEAVE_TIMEOUT {
                if emptied.is_none() {
                    tracing::warn!(thread = self.index, "the revoke did not complete before closing");
                }
                return;
            }
        }
    }
}

/// `partitions` as librdkafka's list.
fn partition_list(partitions: &[Partition]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for (topic, partition) in partitions {
        tpl.add_partition(topic, *partition);
    }
    tpl
}

/// `positions` as librdkafka's list (no offset: the beginning).
fn position_list(positions: &[Position]) -> Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::with_capacity(positions.len());
    for (topic, partition, offset) in positions {
        tpl.add_partition_offset(topic, *partition, offset.map_or(Offset::Beginning, Offset::Offset))
            .map_err(|e| Error::kafka("listing start positions", e))?;
    }
    Ok(tpl)
}

impl Message for BorrowedMessage<'_> {
    fn topic_key(&self) -> usize {
        self.topic_ptr() as usize
    }
    fn topic(&self) -> &str {
        rdkafka::message::Message::topic(self)
    }
    fn partition(&self) -> i32 {
        rdkafka::message::Message::partition(self)
    }
    fn offset(&self) -> i64 {
        rdkafka::message::Message::offset(self)
    }
    fn key(&self) -> Option<&[u8]> {
        rdkafka::message::Message::key(self)
    }
    fn payload(&self) -> Option<&[u8]> {
        rdkafka::message::Message::payload(self)
    }
    fn timestamp(&self) -> Option<i64> {
        rdkafka::message::Message::timestamp(self).to_millis()
    }
    fn headers(&self) -> Headers {
        let mut headers = Headers::new();
        if let Some(h) = rdkafka::message::Message::headers(self) {
            for x in h.iter() {
                headers.add(x.key, x.value.map(<[u8]>::to_vec));
            }
        }
        headers
    }
}

impl Consumer for GroupConsumer {
    type Group = ConsumerGroupMetadata;
    type Message<'a> = BorrowedMessage<'a>;

    fn poll(&mut self, timeout: Duration) -> Option<Result<BorrowedMessage<'_>>> {
        self.consumer.poll(timeout).map(|r| r.map_err(|e| Error::kafka("polling", e)))
    }

    fn has_rebalance_events(&self) -> bool {
        !self.consumer.context().events.lock().is_empty()
    }

    fn take_rebalance_events(&mut self) -> Vec<Rebalance> {
        std::mem::take(&mut *self.consumer.context().events.lock())
    }

    fn is_cooperative(&self) -> bool {
        is_cooperative(&self.consumer)
    }

    fn assignment_lost(&self) -> bool {
        self.consumer.assignment_lost()
    }

    fn assign(&mut self, positions: &[Position], cooperative: bool) -> Result<()> {
        let tpl = position_list(positions)?;
        let r = if cooperative { self.consumer.incremental_assign(&tpl) } else { self.consumer.assign(&tpl) };
        r.map_err(|e| Error::kafka("assigning", e))
    }

    fn unassign(&mut self, partitions: &[Partition], cooperative: bool) -> Result<()> {
        let r = if cooperative {
            self.consumer.incremental_unassign(&partition_list(partitions))
        } else {
            self.consumer.unassign()
        };
        r.map_err(|e| Error::kafka("unassigning", e))
    }

    fn pause(&mut self, partitions: &[Partition]) -> Result<()> {
        if partitions.is_empty() {
            return Ok(());
        }
        self.consumer.pause(&partition_list(partitions)).map_err(|e| Error::kafka("pausing partitions", e))
    }

    fn resume(&mut self, partitions: &[Partition]) -> Result<()> {
        self.consumer.resume(&partition_list(partitions)).map_err(|e| Error::kafka("resuming partitions", e))
    }

    fn seek(&mut self, positions: &[Position]) -> Result<()> {
        self.consumer
            .seek_partitions(position_list(positions)?, Duration::from_secs(30))
            .map(|_| ())
            .map_err(|e| Error::kafka("rewinding to the committed offsets", e))
    }

    fn committed(&mut self, partitions: &[Partition], shutdown: &AtomicBool) -> Result<Committed> {
        let tpl = partition_list(partitions);
        let committed = until_answered("reading the committed offsets", shutdown, || {
            self.consumer.committed_offsets(tpl.clone(), Duration::from_secs(30))
        })?;
        Ok(committed
            .elements()
            .iter()
            .map(|e| {
                let offset = match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                ((e.topic().to_string(), e.partition()), (offset, TaskMeta::parse(e.metadata())))
            })
            .collect())
    }

    fn commit(&mut self, offsets: &[OffsetCommit]) -> Result<()> {
        self.consumer
            .commit(&offsets_list(offsets)?, CommitMode::Sync)
            .map_err(|e| Error::from_kafka("committing offsets", e))
    }

    fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        self.consumer.group_metadata()
    }
}
