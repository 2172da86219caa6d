//! The topics SQL reads and writes: existence and partition counts from metadata, creation and
//! deletion through Kafka's admin API (rdkafka), each bounded in time.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::{Result, SqlError};

/// How long one metadata or admin request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Pause between tries of an operation the cluster is not ready for yet.
const RETRY_STEP: Duration = Duration::from_millis(200);

/// An admin client and the runtime its futures run on.
pub(crate) struct Admin {
    client: AdminClient<DefaultClientContext>,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admin")
    }
}

fn kafka(what: &str, e: impl std::fmt::Display) -> SqlError {
    SqlError::Execution(format!("{what}: {e}"))
}

impl Admin {
    /// An admin client of the cluster at `bootstrap`.
    pub(crate) fn new(bootstrap: &str) -> Result<Self> {
        let client = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("log_level", "3")
            .create()
            .map_err(|e| kafka("creating the admin client", e))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| kafka("starting the admin runtime", e))?;
        Ok(Admin { client, rt })
    }

    /// Every topic and its partition count.
    pub(crate) fn topics(&self) -> Result<BTreeMap<String, i32>> {
        let md = self.client.inner().fetch_metadata(None, TIMEOUT).map_err(|e| kafka("reading metadata", e))?;
        Ok(md
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_string(), t.partitions().len() as i32))
            .collect())
    }

    /// The partition count of `topic`, `None` when it does not exist.
    pub(crate) fn partitions(&self, topic: &str) -> Result<Option<i32>> {
        Ok(self.topics()?.get(topic).copied())
    }

    /// Creates `topic`; one that exists already is fine.
    pub(crate) fn create(&self, topic: &str, partitions: i32, replicas: i16) -> Result<()> {
        self.create_with(topic, partitions, replicas, &[])
    }

    /// Creates `topic` with topic `configs`; one that exists already is fine.
    pub(crate) fn create_with(
        &self,
        topic: &str,
        partitions: i32,
        replicas: i16,
        configs: &[(&str, &str)],
    ) -> Result<()> {
        let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(i32::from(replicas)));
        for (k, v) in configs {
            new = new.set(k, v);
        }
        let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT)).request_timeout(Some(TIMEOUT));
        let results = self
            .rt
            .block_on(self.client.create_topics([&new], &opts))
            .map_err(|e| kafka(&format!("creating topic {topic}"), e))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(kafka(&format!("creating topic {topic}"), code)),
            }
        }
        Ok(())
    }

    /// Deletes the consumer group `group` (one that does not exist is fine). A group whose
    /// members' leave has not landed yet is retried for up to `patience`.
    pub(crate) fn delete_group(&self, group: &str, patience: Duration) -> Result<()> {
        let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT)).request_timeout(Some(TIMEOUT));
        let mut waited = Duration::ZERO;
        loop {
            let results = self
                .rt
                .block_on(self.client.delete_groups(&[group], &opts))
                .map_err(|e| kafka(&format!("deleting group {group}"), e))?;
            let mut busy = false;
            for r in results {
                match r {
                    Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
                    Err((_, RDKafkaErrorCode::NonEmptyGroup)) if waited < patience => busy = true,
                    Err((_, code)) => return Err(kafka(&format!("deleting group {group}"), code)),
                }
            }
            if !busy {
                return Ok(());
            }
            std::thread::sleep(RETRY_STEP);
            waited += RETRY_STEP;
        }
    }

    /// How far the consumer group `group` is behind on `topics`: for every partition, the end
    /// of the log less the group's committed offset (the log's start when none is committed),
    /// summed.
    pub(crate) fn lag(&self, bootstrap: &str, group: &str, topics: &[String]) -> Result<i64> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("log_level", "3")
            .create()
            .map_err(|e| kafka("creating the lag reader", e))?;
        let mut tpl = rdkafka::TopicPartitionList::new();
        let partitions = self.topics()?;
        for t in topics {
            for p in 0..partitions.get(t).copied().unwrap_or(0) {
                tpl.add_partition(t, p);
            }
        }
        let committed = consumer.committed_offsets(tpl, TIMEOUT).map_err(|e| kafka("reading committed offsets", e))?;
        let mut lag = 0;
        for e in committed.elements() {
            let (low, high) = consumer
                .fetch_watermarks(e.topic(), e.partition(), TIMEOUT)
                .map_err(|err| kafka(&format!("reading the end of {}", e.topic()), err))?;
            let at = match e.offset() {
                rdkafka::Offset::Offset(o) => o,
                _ => low,
            };
            lag += (high - at).max(0);
        }
        Ok(lag)
    }

    /// Writes one record to `topic` (idempotently, acknowledged by every replica); returns
    /// its partition and offset.
    pub(crate) fn produce(
        &self,
        bootstrap: &str,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp: Option<i64>,
    ) -> Result<(i32, i64)> {
        use rdkafka::producer::{FutureProducer, FutureRecord};
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "0")
            .set("log_level", "3")
            .create()
            .map_err(|e| kafka("creating the producer", e))?;
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(value);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(t) = timestamp {
            record = record.timestamp(t);
        }
        match self.rt.block_on(producer.send(record, TIMEOUT)) {
            Ok(d) => Ok((d.partition, d.offset)),
            Err((e, _)) => Err(kafka(&format!("writing to {topic}"), e)),
        }
    }

    /// Deletes `topic`.
    pub(crate) fn delete(&self, topic: &str) -> Result<()> {
        let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT)).request_timeout(Some(TIMEOUT));
        let results = self
            .rt
            .block_on(self.client.delete_topics(&[topic], &opts))
            .map_err(|e| kafka(&format!("deleting topic {topic}"), e))?;
        for r in results {
            if let Err((_, code)) = r {
                return Err(kafka(&format!("deleting topic {topic}"), code));
            }
        }
        Ok(())
    }
}
