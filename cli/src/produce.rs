//! `moldau produce`: kafka-console-producer.sh — one record per input line.

use std::collections::VecDeque;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::client::{key_value, ConnArgs};
use crate::topics::partition_count;

/// Deliveries awaited at most at once; beyond it the oldest is awaited first.
const IN_FLIGHT: usize = 50_000;

/// Flags of `moldau produce`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  echo 'user-1:hello' | moldau produce --topic greetings --parse-key --key-separator :\n  moldau produce --topic events --file events.txt --compression zstd --acks all --idempotent\n  moldau produce --topic events --header source=cli --partition 2"
)]
pub(crate) struct ProduceArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// The topic.
    #[arg(long, short = 't')]
    topic: String,
    /// Read lines from this file instead of stdin.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Each line is key<separator>value.
    #[arg(long)]
    parse_key: bool,
    /// The key separator for --parse-key.
    #[arg(long, default_value = "\t")]
    key_separator: String,
    /// Acknowledgements: 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = ["0", "1", "all", "-1"])]
    acks: String,
    /// Compression codec.
    #[arg(long, default_value = "none", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    compression: String,
    /// How long to wait to fill a batch (linger.ms).
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Largest batch in bytes (batch.size).
    #[arg(long)]
    batch_size: Option<u64>,
    /// A header on every record, key=value (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// Write every record to this partition.
    #[arg(long)]
    partition: Option<i32>,
    /// Idempotent producer (no duplicates on retry; needs acks=all).
    #[arg(long)]
    idempotent: bool,
    /// Any other producer property, key=value (repeatable).
    #[arg(long = "producer-property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
}

/// Runs `moldau produce`.
pub(crate) async fn run(a: ProduceArgs) -> Result<()> {
    let consumer = a.conn.consumer(None)?;
    let partitions = partition_count(&a.conn, &consumer, &a.topic)?;
    drop(consumer);
    if let Some(p) = a.partition {
        if p < 0 || p as usize >= partitions {
            bail!("topic '{}' has partitions 0..{}; --partition {p} is not one of them", a.topic, partitions - 1);
        }
    }
    if a.idempotent && !matches!(a.acks.as_str(), "all" | "-1") {
        bail!("--idempotent needs --acks all");
    }
    let headers: Vec<(String, String)> = a.headers.iter().map(|h| key_value("--header", h)).collect::<Result<_>>()?;
    let mut config = a.conn.client_config()?;
    config
        .set("acks", &a.acks)
        .set("compression.type", &a.compression)
        .set("linger.ms", a.linger_ms.to_string())
        .set("enable.idempotence", a.idempotent.to_string())
        // Keys land where Java clients put them (murmur2); keyless records spread randomly.
        .set("partitioner", "murmur2_random")
        .set("message.timeout.ms", "30000");
    if let Some(b) = a.batch_size {
        config.set("batch.size", b.to_string());
    }
    for p in &a.properties {
        let (k, v) = key_value("--producer-property", p)?;
        config.set(k, v);
    }
    let producer: FutureProducer = config.create().context("creating the producer")?;
    let input: Box<dyn BufRead> = match &a.file {
        Some(f) => Box::new(std::io::BufReader::new(
            std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?,
        )),
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let mut pending: VecDeque<(usize, DeliveryFuture)> = VecDeque::new();
    let (mut sent, mut failed, mut first_error) = (0usize, 0usize, None::<String>);
    let mut settle = |n: usize, r: Option<String>| {
        if let Some(e) = r {
            failed += 1;
            first_error.get_or_insert(format!("line {n}: {e}"));
        }
    };
    for (n, line) in input.lines().enumerate() {
        let line = line.context("reading input")?;
        let (key, value) = if a.parse_key {
            match line.split_once(a.key_separator.as_str()) {
                Some((k, v)) => (Some(k.to_string()), v.to_string()),
                None => bail!("line {}: no key separator {:?} in '{line}' (--parse-key)", n + 1, a.key_separator),
            }
        } else {
            (None, line)
        };
        let mut hs = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in &headers {
            hs = hs.insert(Header { key: k, value: Some(v.as_bytes()) });
        }
        let mut record = FutureRecord::to(&a.topic).payload(&value).headers(hs);
        if let Some(k) = &key {
            record = record.key(k);
        }
        if let Some(p) = a.partition {
            record = record.partition(p);
        }
        let mut record = record;
        let fut = loop {
            match producer.send_result(record) {
                Ok(f) => break f,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    record = r;
                    match pending.pop_front() {
                        Some((m, f)) => settle(m, outcome(f.await)),
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((e, _)) => bail!("line {}: {e}", n + 1),
            }
        };
        sent += 1;
        pending.push_back((n + 1, fut));
        if pending.len() >= IN_FLIGHT {
            if let Some((m, f)) = pending.pop_front() {
                settle(m, outcome(f.await));
            }
        }
    }
    while let Some((m, f)) = pending.pop_front() {
        settle(m, outcome(f.await));
    }
    if failed > 0 {
        bail!("{failed} of {sent} records were not written; the first: {}", first_error.unwrap_or_default());
    }
    eprintln!("{sent} records written to {}", a.topic);
    Ok(())
}

/// The error of a delivery, if it failed.
fn outcome<E>(r: Result<OwnedDeliveryResult, E>) -> Option<String> {
    match r {
        Ok(Ok(_)) => None,
        Ok(Err((e, _))) => Some(e.to_string()),
        Err(_) => Some("the producer dropped the record".to_string()),
    }
}
