//! Restoring stores from their changelog topics: from each store's checkpoint to the end of
//! its changelog partition (the last stable offset: the consumer reads committed data only,
//! so an aborted or still-open transaction never reaches a store).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use moldau_state_store::{ChangelogRecord, StateStore};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::config::StreamsConfig;
use crate::error::{Error, Result};

/// Records applied per store write during a restore.
const RESTORE_BATCH: usize = 10_000;

/// One store partition to restore.
pub(crate) struct RestoreWork {
    /// Changelog topic.
    pub(crate) topic: String,
    /// Partition (the task's).
    pub(crate) partition: i32,
    /// The store.
    pub(crate) store: Rc<RefCell<dyn StateStore>>,
}

/// Client context of the restore consumer: end-of-partition events are how it knows a
/// restore is done, not errors worth logging.
#[derive(Debug, Default)]
pub(crate) struct RestoreContext;

impl rdkafka::ClientContext for RestoreContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_))
            && error.rdkafka_error_code() != Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        {
            tracing::error!(%error, reason, "restore consumer error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for RestoreContext {}

/// A consumer outside the group that reads changelog partitions by assignment.
pub(crate) struct Restorer {
    consumer: BaseConsumer<RestoreContext>,
}

impl std::fmt::Debug for Restorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Restorer")
    }
}

impl Restorer {
    pub(crate) fn new(config: &StreamsConfig, client_id: &str) -> Result<Self> {
        let group = format!("{}-restore", config.application_id);
        let settings = [
            ("group.id", group.as_str()),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", "earliest"),
            ("isolation.level", "read_committed"),
            // As for the stream thread's consumer: no 1 s pause once the local queue is full.
            ("fetch.queue.backoff.ms", "10"),
        ];
        let cc = config.rdkafka_config(
            "consumer",
            client_id,
            &settings,
            &["group.id", "isolation.level", "enable.partition.eof"],
        );
        let consumer: BaseConsumer<RestoreContext> =
            cc.create_with_context(RestoreContext).map_err(|e| Error::kafka("creating the restore consumer", e))?;
        Ok(Restorer { consumer })
    }

    /// Restores every store in `work` up to the end of its changelog partition; returns the
    /// number of records applied. Stops early with [`Error::ShuttingDown`] when `shutdown` is
    /// set; the stores' checkpoints say how far each got.
    pub(crate) fn restore(&self, work: Vec<RestoreWork>, shutdown: &AtomicBool) -> Result<u64> {
        let mut by_topic: BTreeMap<String, Vec<RestoreWork>> = BTreeMap::new();
        for w in work {
            by_topic.entry(w.topic.clone()).or_default().push(w);
        }
        let mut total = 0;
        // One topic at a time: an end-of-partition event names only the partition.
        for (topic, works) in by_topic {
            total += self.restore_topic(&topic, works, shutdown)?;
        }
        Ok(total)
    }

    fn restore_topic(&self, topic: &str, works: Vec<RestoreWork>, shutdown: &AtomicBool) -> Result<u64> {
        let mut tpl = TopicPartitionList::new();
        let mut pending: HashMap<i32, (RestoreWork, Vec<ChangelogRecord>, i64)> = HashMap::new();
        for w in works {
            let from = w.store.borrow().checkpoint().changelog_offset.max(0);
            tpl.add_partition_offset(topic, w.partition, Offset::Offset(from))
                .map_err(|e| Error::kafka(format!("restoring {topic}"), e))?;
            pending.insert(w.partition, (w, Vec::new(), -1));
        }
        self.consumer.assign(&tpl).map_err(|e| Error::kafka(format!("assigning {topic} for restore"), e))?;
        let mut total = 0u64;
        let result = (|| {
            while !pending.is_empty() {
                if shutdown.load(Ordering::Relaxed) {
                    return Err(Error::ShuttingDown);
                }
                match self.consumer.poll(Duration::from_millis(100)) {
                    None => {}
                    Some(Ok(m)) => {
                        let Some((_, buf, last)) = pending.get_mut(&m.partition()) else { continue };
                        let Some(key) = m.key() else {
                            return Err(Error::kafka(
                                format!("restoring {topic}-{}", m.partition()),
                                format!("the changelog record at offset {} has a null key", m.offset()),
                            ));
                        };
                        buf.push(ChangelogRecord {
                            key: key.to_vec(),
                            value: m.payload().map(<[u8]>::to_vec),
                            timestamp: m.timestamp().to_millis().unwrap_or(-1),
                        });
                        *last = m.offset();
                        if buf.len() >= RESTORE_BATCH {
                            let p = m.partition();
                            total += flush(&mut pending, p)?;
                        }
                    }
                    Some(Err(KafkaError::PartitionEOF(p))) if pending.contains_key(&p) => {
                        total += flush(&mut pending, p)?;
                        if let Some((w, _, _)) = pending.remove(&p) {
                            w.store.borrow_mut().finish_restore()?;
                        }
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => {}
                    Some(Err(e)) => return Err(Error::kafka(format!("restoring {topic}"), e)),
                }
            }
            Ok(())
        })();
        let _ = self.consumer.unassign();
        result.map(|()| total)
    }
}

/// Applies the buffered records of partition `p`.
fn flush(pending: &mut HashMap<i32, (RestoreWork, Vec<ChangelogRecord>, i64)>, p: i32) -> Result<u64> {
    let Some((w, buf, last)) = pending.get_mut(&p) else { return Ok(0) };
    if buf.is_empty() {
        return Ok(0);
    }
    let n = buf.len() as u64;
    w.store.borrow_mut().restore(std::mem::take(buf), *last)?;
    Ok(n)
}
