//! `moldau perf produce` / `moldau perf consume`: kafka-producer-perf-test.sh and
//! kafka-consumer-perf-test.sh — records/s, MB/s and latency percentiles, with a progress line
//! every few seconds and a final summary.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::client::{key_value, ConnArgs};
use crate::topics::partition_count;

/// `moldau perf` commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum PerfCommand {
    /// Produce --num-records records of --record-size bytes as fast as allowed.
    #[command(
        after_help = "Example:\n  moldau perf produce --topic bench --num-records 1000000 --record-size 100 --throughput 200000 --acks all"
    )]
    Produce(ProducePerf),
    /// Consume --messages records from the beginning of a topic.
    #[command(after_help = "Example:\n  moldau perf consume --topic bench --messages 1000000")]
    Consume(ConsumePerf),
}

/// Flags of `moldau perf produce`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProducePerf {
    #[command(flatten)]
    conn: ConnArgs,
    /// The topic.
    #[arg(long, short = 't')]
    topic: String,
    /// Records to produce.
    #[arg(long)]
    num_records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Cap on records per second (-1: no cap).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    throughput: i64,
    /// Acknowledgements: 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = ["0", "1", "all", "-1"])]
    acks: String,
    /// Compression codec.
    #[arg(long, default_value = "none", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    compression: String,
    /// linger.ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// batch.size in bytes.
    #[arg(long)]
    batch_size: Option<u64>,
    /// Milliseconds between progress lines.
    #[arg(long, default_value_t = 5000)]
    reporting_interval_ms: u64,
    /// Any other producer property, key=value (repeatable).
    #[arg(long = "producer-property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
}

/// Flags of `moldau perf consume`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConsumePerf {
    #[command(flatten)]
    conn: ConnArgs,
    /// The topic.
    #[arg(long, short = 't')]
    topic: String,
    /// Records to consume.
    #[arg(long)]
    messages: u64,
    /// Give up when no record arrives for this long.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Milliseconds between progress lines.
    #[arg(long, default_value_t = 5000)]
    reporting_interval_ms: u64,
    /// Any other consumer property, key=value (repeatable).
    #[arg(long = "consumer-property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
}

/// Runs a `moldau perf` command.
pub(crate) async fn run(c: PerfCommand) -> Result<()> {
    match c {
        PerfCommand::Produce(a) => tokio::task::spawn_blocking(move || produce(a)).await?,
        PerfCommand::Consume(a) => tokio::task::spawn_blocking(move || consume(a)).await?,
    }
}

/// Latencies in microseconds, and delivery failures.
#[derive(Debug, Default)]
struct Deliveries {
    latencies_us: Vec<u32>,
    failed: u64,
    first_error: Option<String>,
}

/// Records each delivery's latency (the send time travels as the record's opaque).
struct Timing(Arc<Mutex<Deliveries>>);

impl ClientContext for Timing {}

impl ProducerContext for Timing {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Instant>) {
        let us = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        let mut d = self.0.lock();
        match result {
            Ok(_) => d.latencies_us.push(us),
            Err((e, _)) => {
                d.failed += 1;
                d.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// p-th percentile of sorted values.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// "p50 x ms, p95 ..." from latencies in microseconds.
fn percentiles_line(mut us: Vec<u32>) -> String {
    us.sort_unstable();
    let ms = |v: u32| f64::from(v) / 1000.0;
    let avg =
        if us.is_empty() { 0.0 } else { us.iter().map(|&v| f64::from(v)).sum::<f64>() / us.len() as f64 / 1000.0 };
    format!(
        "{avg:.2} ms avg latency, {:.2} ms max latency, {:.2} ms 50th, {:.2} ms 95th, {:.2} ms 99th, {:.2} ms 99.9th",
        ms(us.last().copied().unwrap_or(0)),
        ms(percentile(&us, 50.0)),
        ms(percentile(&us, 95.0)),
        ms(percentile(&us, 99.0)),
        ms(percentile(&us, 99.9)),
    )
}

fn rate(n: u64, bytes: u64, elapsed: Duration) -> (f64, f64) {
    let s = elapsed.as_secs_f64().max(1e-9);
    (n as f64 / s, bytes as f64 / s / (1024.0 * 1024.0))
}

fn produce(a: ProducePerf) -> Result<()> {
    if a.num_records == 0 {
        bail!("--num-records must be at least 1");
    }
    let probe = a.conn.consumer(None)?;
    partition_count(&a.conn, &probe, &a.topic)?;
    drop(probe);
    let mut config = a.conn.client_config()?;
    config
        .set("acks", &a.acks)
        .set("compression.type", &a.compression)
        .set("linger.ms", a.linger_ms.to_string())
        .set("message.timeout.ms", "60000");
    if let Some(b) = a.batch_size {
        config.set("batch.size", b.to_string());
    }
    for p in &a.properties {
        let (k, v) = key_value("--producer-property", p)?;
        config.set(k, v);
    }
    let stats = Arc::new(Mutex::new(Deliveries::default()));
    let producer: ThreadedProducer<Timing> =
        config.create_with_context(Timing(Arc::clone(&stats))).context("creating the producer")?;
    let payload: Vec<u8> = (0..a.record_size).map(|i| b'a' + (i % 26) as u8).collect();
    let start = Instant::now();
    let interval = Duration::from_millis(a.reporting_interval_ms.max(100));
    let (mut last_report, mut window_start_n) = (start, 0u64);
    for i in 0..a.num_records {
        if a.throughput > 0 {
            // Pace: record i is due at i / throughput seconds.
            let due = start + Duration::from_secs_f64(i as f64 / a.throughput as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let mut record: BaseRecord<'_, [u8], [u8], Box<Instant>> =
            BaseRecord::with_opaque_to(&a.topic, Box::new(Instant::now())).payload(&payload[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("sending record {i}: {e}"),
            }
        }
        if last_report.elapsed() >= interval {
            let d = stats.lock();
            let done = d.latencies_us.len() as u64 + d.failed;
            let window: Vec<u32> = d.latencies_us[window_start_n.min(d.latencies_us.len() as u64) as usize..].to_vec();
            drop(d);
            let (rps, mbps) =
                rate(done - window_start_n, (done - window_start_n) * a.record_size as u64, last_report.elapsed());
            println!(
                "{} records sent, {rps:.1} records/sec ({mbps:.2} MB/sec), {}",
                done - window_start_n,
                percentiles_line(window)
            );
            window_start_n = done;
            last_report = Instant::now();
        }
    }
    producer.flush(Duration::from_secs(120)).context("waiting for the last deliveries")?;
    let elapsed = start.elapsed();
    let d = std::mem::take(&mut *stats.lock());
    if d.failed > 0 {
        bail!("{} of {} records failed; the first: {}", d.failed, a.num_records, d.first_error.unwrap_or_default());
    }
    let n = d.latencies_us.len() as u64;
    let (rps, mbps) = rate(n, n * a.record_size as u64, elapsed);
    println!("{n} records sent, {rps:.1} records/sec ({mbps:.2} MB/sec), {}.", percentiles_line(d.latencies_us));
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn consume(a: ConsumePerf) -> Result<()> {
    let probe = a.conn.consumer(None)?;
    let partitions = partition_count(&a.conn, &probe, &a.topic)?;
    drop(probe);
    let mut config = a.conn.client_config()?;
    config
        .set("group.id", "moldau-perf")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        // librdkafka stops fetching a partition once this many records wait in its queue; its
        // default (100,000 over all partitions) paused the fetchers and cut throughput ~4x.
        .set("queued.min.messages", a.messages.clamp(100_000, 2_000_000).to_string());
    for p in &a.properties {
        let (k, v) = key_value("--consumer-property", p)?;
        config.set(k, v);
    }
    let consumer: BaseConsumer = config.create().context("creating the consumer")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(&a.topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl).context("assigning partitions")?;
    let start = Instant::now();
    let interval = Duration::from_millis(a.reporting_interval_ms.max(100));
    let idle = Duration::from_millis(a.timeout_ms);
    let (mut n, mut bytes, mut last_record) = (0u64, 0u64, Instant::now());
    let (mut last_report, mut window_n, mut window_bytes) = (start, 0u64, 0u64);
    // End-to-end latency: consume time minus the record's timestamp (meaningful while the
    // records are produced now, as with a producer perf run alongside).
    let mut latencies_us: Vec<u32> = Vec::with_capacity(a.messages.min(50_000_000) as usize);
    let mut window_first = 0usize;
    while n < a.messages {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                n += 1;
                bytes += (m.payload_len() + m.key().map_or(0, <[u8]>::len)) as u64;
                if let Some(ts) = m.timestamp().to_millis() {
                    latencies_us.push(((now_ms() - ts).max(0) as u64 * 1000).min(u64::from(u32::MAX)) as u32);
                }
                last_record = Instant::now();
            }
            Some(Err(e)) => bail!("consuming {}: {e}", a.topic),
            None => {
                if last_record.elapsed() >= idle {
                    bail!("no record for {} ms after {n} of {} records", a.timeout_ms, a.messages);
                }
            }
        }
        if last_report.elapsed() >= interval {
            let (rps, mbps) = rate(n - window_n, bytes - window_bytes, last_report.elapsed());
            let window = latencies_us[window_first..].to_vec();
            println!(
                "{} records consumed, {rps:.1} records/sec ({mbps:.2} MB/sec), end-to-end {}",
                n - window_n,
                percentiles_line(window)
            );
            (window_n, window_bytes, window_first, last_report) = (n, bytes, latencies_us.len(), Instant::now());
        }
    }
    let (rps, mbps) = rate(n, bytes, start.elapsed());
    println!(
        "{n} records consumed, {:.2} MB, {rps:.1} records/sec ({mbps:.2} MB/sec), end-to-end {}.",
        bytes as f64 / (1024.0 * 1024.0),
        percentiles_line(latencies_us)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_pick_percentiles_from_sorted_latencies() {
        let v: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile(&v, 50.0), 501);
        assert_eq!(percentile(&v, 99.0), 990);
        assert_eq!(percentile(&v, 100.0), 1000);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
