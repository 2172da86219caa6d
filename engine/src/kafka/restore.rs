//! Restoring stores from their changelog topics: from each store's checkpoint up to the
//! changelog position committed with the task's input offsets (see
//! [`TaskMeta`](crate::runtime::offset_meta::TaskMeta)), or to the end of its changelog
//! partition (the last stable offset: the consumer reads committed data only, so an aborted or
//! still-open transaction never reaches a store) when no position was committed.
//!
//! Records past the committed position were written after the last commit (at-least-once
//! sends changelog records as it goes) and their input is processed again: they are not
//! applied, and each key they name is logged again with its restored value, so that any later
//! replay of the changelog ends at the state the task resumes from.
//!
//! A consumer error (the brokers unreachable, a coordinator moving) is retried: the restore
//! waits for the cluster, however long, unless the application closes.

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
use super::retry::until_answered;
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
    /// The changelog position committed with the task's input offsets: records from here on
    /// are not applied but relogged (see the module documentation). `None`: to the end.
    pub(crate) until: Option<i64>,
}

/// What a restore did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Restored {
    /// Records applied.
    pub(crate) applied: u64,
    /// Keys logged again (records past the committed position).
    pub(crate) relogged: u64,
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
    pub(crate) fn restore(&self, work: Vec<RestoreWork>, shutdown: &AtomicBool) -> Result<Restored> {
        let mut by_topic: BTreeMap<String, Vec<RestoreWork>> = BTreeMap::new();
        for w in work {
            by_topic.entry(w.topic.clone()).or_default().push(w);
        }
        let mut total = Restored::default();
        // One topic at a time: an end-of-partition event names only the partition.
        for (topic, works) in by_topic {
            let r = self.restore_topic(&topic, works, shutdown)?;
            total.applied += r.applied;
            total.relogged += r.relogged;
        }
        Ok(total)
    }

    /// The first and next offsets of changelog partition `topic`-`partition` (its log start
    /// and high watermark), waiting for the cluster while it cannot be reached.
    pub(crate) fn watermarks(&self, topic: &str, partition: i32, shutdown: &AtomicBool) -> Result<(i64, i64)> {
        until_answered(&format!("reading the offsets of {topic}-{partition}"), shutdown, || {
            self.consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))
        })
    }

    fn restore_topic(&self, topic: &str, works: Vec<RestoreWork>, shutdown: &AtomicBool) -> Result<Restored> {
        let mut tpl = TopicPartitionList::new();
        let mut pending: HashMap<i32, Pending> = HashMap::new();
        for w in works {
            let from = w.store.borrow().checkpoint().changelog_offset.max(0);
            tpl.add_partition_offset(topic, w.partition, Offset::Offset(from))
                .map_err(|e| Error::kafka(format!("restoring {topic}"), e))?;
            pending.insert(w.partition, Pending { work: w, buf: Vec::new(), last: -1, tail: BTreeMap::new() });
        }
        self.consumer.assign(&tpl).map_err(|e| Error::kafka(format!("assigning {topic} for restore"), e))?;
        let mut total = Restored::default();
        let result = (|| {
            while !pending.is_empty() {
                if shutdown.load(Ordering::Relaxed) {
                    return Err(Error::ShuttingDown);
                }
                match self.consumer.poll(Duration::from_millis(100)) {
                    None => {}
                    Some(Ok(m)) => {
                        let Some(p) = pending.get_mut(&m.partition()) else { continue };
                        let Some(key) = m.key() else {
                            return Err(Error::Store(moldau_state_store::Error::BadChangelog {
                                store: p.work.store.borrow().name().to_string(),
                                key: String::new(),
                                reason: format!(
                                    "the record at offset {} of {topic}-{} has a null key",
                                    m.offset(),
                                    m.partition()
                                ),
                            }));
                        };
                        let timestamp = m.timestamp().to_millis().unwrap_or(-1);
                        if p.work.until.is_some_and(|u| m.offset() >= u) {
                            p.tail.insert(key.to_vec(), timestamp);
                            continue;
                        }
                        p.buf.push(ChangelogRecord {
                            key: key.to_vec(),
                            value: m.payload().map(<[u8]>::to_vec),
                            timestamp,
                        });
                        p.last = m.offset();
                        if p.buf.len() >= RESTORE_BATCH {
                            total.applied += p.flush()?;
                        }
                    }
                    Some(Err(KafkaError::PartitionEOF(partition))) => {
                        if let Some(mut p) = pending.remove(&partition) {
                            total.applied += p.flush()?;
                            let mut store = p.work.store.borrow_mut();
                            store.finish_restore()?;
                            if !p.tail.is_empty() {
                                tracing::info!(
                                    store = store.name(),
                                    topic,
                                    partition,
                                    keys = p.tail.len(),
                                    "changelog records past the committed position: relogging their keys"
                                );
                            }
                            total.relogged += p.tail.len() as u64;
                            for (key, timestamp) in std::mem::take(&mut p.tail) {
                                store.relog(key, timestamp)?;
                            }
                        }
                    }
                    // The cluster unreachable, a leader moving: librdkafka reconnects and
                    // fetches again.
                    Some(Err(e)) => tracing::warn!(topic, error = %e, "restore consumer error; retrying"),
                }
            }
            Ok(())
        })();
        let _ = self.consumer.unassign();
        result.map(|()| total)
    }
}

/// One partition being restored.
struct Pending {
    work: RestoreWork,
    /// Records read, not yet applied.
    buf: Vec<ChangelogRecord>,
    /// Offset of the last record in `buf`.
    last: i64,
    /// Keys of records past the committed position, with their newest timestamp.
    tail: BTreeMap<Vec<u8>, i64>,
}

impl Pending {
    /// Applies the buffered records.
    fn flush(&mut self) -> Result<u64> {
        if self.buf.is_empty() {
            return Ok(0);
        }
        let n = self.buf.len() as u64;
        self.work.store.borrow_mut().restore(std::mem::take(&mut self.buf), self.last)?;
        Ok(n)
    }
}
