//! A read-process-write copier on rdkafka transactions: consumes an input topic, writes each
//! record to the same partition of an output topic and commits its input offsets in the same
//! transaction, aborting a chosen share of its transactions. Used by the exactly-once tests,
//! in-process and as the `txn-copier` child process that gets SIGKILLed.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::client_config;

/// What the copier does.
#[derive(Debug, Clone)]
pub struct CopierConfig {
    /// Bootstrap servers.
    pub bootstrap: String,
    /// Input topic.
    pub input: String,
    /// Output topic (same partition count as the input).
    pub output: String,
    /// Consumer group.
    pub group: String,
    /// `transactional.id`, also the static `group.instance.id`.
    pub transactional_id: String,
    /// Share of transactions to abort (0.0..=1.0).
    pub abort_ratio: f64,
    /// Records per transaction at most.
    pub batch: usize,
    /// Random seed for the abort decisions.
    pub seed: u64,
    /// Stop after this long without input.
    pub idle_exit: Duration,
    /// Pause between writing a transaction and ending it (gives a killer a window), printing
    /// `in-txn` to stdout first when non-zero.
    pub pause_in_txn: Duration,
}

/// What a copier run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopierStats {
    /// Transactions committed.
    pub committed: usize,
    /// Transactions aborted.
    pub aborted: usize,
    /// Records written in committed transactions.
    pub records_committed: usize,
}

const TIMEOUT: Duration = Duration::from_secs(30);

/// The longest a copier runs (an error past it).
const MAX_RUN: Duration = Duration::from_secs(300);

/// Runs the copier until its input has been idle for `idle_exit` (`MAX_RUN` at most).
pub fn run_copier(cfg: &CopierConfig) -> anyhow::Result<CopierStats> {
    let consumer: BaseConsumer = client_config(&cfg.bootstrap)
        .set("group.id", &cfg.group)
        .set("group.instance.id", &cfg.transactional_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .context("creating the consumer")?;
    consumer.subscribe(&[&cfg.input]).context("subscribing")?;
    let producer: ThreadedProducer<DefaultProducerContext> = client_config(&cfg.bootstrap)
        .set("transactional.id", &cfg.transactional_id)
        .set("transaction.timeout.ms", "20000")
        .set("linger.ms", "5")
        .create()
        .context("creating the transactional producer")?;
    producer.init_transactions(TIMEOUT).context("init_transactions")?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let mut stats = CopierStats::default();
    let mut last_input = Instant::now();
    let mut stdout = std::io::stdout();
    let started = Instant::now();
    loop {
        if started.elapsed() >= MAX_RUN {
            bail!("the copier still runs after {MAX_RUN:?}: {stats:?}");
        }
        // Gather a batch: first offset and next offset per input partition.
        let mut batch = Vec::new();
        let mut first: BTreeMap<i32, i64> = BTreeMap::new();
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        let gather_until = Instant::now() + Duration::from_millis(200);
        while batch.len() < cfg.batch && Instant::now() < gather_until {
            match consumer.poll(Duration::from_millis(50)) {
                None => {}
                Some(Err(e)) => bail!("consume: {e}"),
                Some(Ok(m)) => {
                    first.entry(m.partition()).or_insert(m.offset());
                    next.insert(m.partition(), m.offset() + 1);
                    batch.push((m.partition(), m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec)));
                }
            }
        }
        if batch.is_empty() {
            if last_input.elapsed() >= cfg.idle_exit {
                return Ok(stats);
            }
            continue;
        }
        last_input = Instant::now();
        producer.begin_transaction().context("begin_transaction")?;
        for (partition, key, value) in &batch {
            let mut record = BaseRecord::<Vec<u8>, Vec<u8>>::to(&cfg.output).partition(*partition);
            if let Some(k) = key {
                record = record.key(k);
            }
            if let Some(v) = value {
                record = record.payload(v);
            }
            let mut record = record;
            let deadline = Instant::now() + TIMEOUT;
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), _))
                        if Instant::now() >= deadline =>
                    {
                        bail!("send: the queue stayed full for {TIMEOUT:?}")
                    }
                    Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r)) => {
                        std::thread::sleep(Duration::from_millis(5));
                        record = r;
                    }
                    Err((e, _)) => bail!("send: {e}"),
                }
            }
        }
        let mut offsets = TopicPartitionList::new();
        for (p, o) in &next {
            offsets.add_partition_offset(&cfg.input, *p, Offset::Offset(*o)).context("offset list")?;
        }
        let meta = consumer.group_metadata().context("group metadata")?;
        producer.send_offsets_to_transaction(&offsets, &meta, TIMEOUT).context("send_offsets_to_transaction")?;
        if !cfg.pause_in_txn.is_zero() {
            let _ = writeln!(stdout, "in-txn");
            let _ = stdout.flush();
            std::thread::sleep(cfg.pause_in_txn);
        }
        if rng.random_bool(cfg.abort_ratio) {
            // Flush first so the aborted records really reach the log (abort purges the queue).
            producer.flush(TIMEOUT).context("flush before abort")?;
            producer.abort_transaction(TIMEOUT).context("abort_transaction")?;
            stats.aborted += 1;
            // Read the aborted records again.
            for (p, o) in &first {
                consumer.seek(&cfg.input, *p, Offset::Offset(*o), TIMEOUT).context("seek after abort")?;
            }
        } else {
            producer.commit_transaction(TIMEOUT).context("commit_transaction")?;
            stats.committed += 1;
            stats.records_committed += batch.len();
        }
    }
}
