//! broker-sim throughput benchmark: rdkafka producing and consuming 100-byte records against
//! broker-sim (1 and 3 brokers) and, in the same run, librdkafka's built-in mock cluster.
//!
//! The mock cluster keeps only the newest 5 MiB (or 100,000 batches) of each partition, so
//! every target runs the same rounds, each small enough to stay under that cap, and each
//! round is consumed right after it is produced.
//!
//! Run: `cargo run --release -p moldau-examples --bin broker-bench [-- --rounds N]`

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use moldau_broker_sim::Cluster;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const RECORD_BYTES: usize = 100;
const PARTITIONS: i32 = 6;
/// Records per round: 25,000 per partition is about 3.3 MiB with batch overhead, under the
/// mock cluster's 5 MiB cap.
const ROUND: usize = 25_000 * PARTITIONS as usize;

/// Per-round seconds; rates are medians over rounds.
#[derive(Debug, Default, Clone)]
struct Figures {
    produce_secs: Vec<f64>,
    consume_secs: Vec<f64>,
}

fn median_rate(secs: &[f64]) -> f64 {
    let mut rates: Vec<f64> = secs.iter().map(|s| ROUND as f64 / s).collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

impl Figures {
    fn produce_rate(&self) -> f64 {
        median_rate(&self.produce_secs)
    }
    fn consume_rate(&self) -> f64 {
        median_rate(&self.consume_secs)
    }
}

fn produce_round(producer: &BaseProducer, topic: &str, payload: &[u8], n: usize) -> anyhow::Result<f64> {
    let start = Instant::now();
    for i in 0..n {
        let p = (i % PARTITIONS as usize) as i32;
        loop {
            match producer.send(BaseRecord::<(), [u8]>::to(topic).partition(p).payload(payload)) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("produce failed: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(60)).context("flush")?;
    Ok(start.elapsed().as_secs_f64())
}

fn consume_round(bootstrap: &str, topic: &str, start_offsets: &[i64], n: usize) -> anyhow::Result<f64> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        // A round fits in the local queue: librdkafka otherwise backs fetching off for
        // fetch.queue.backoff.ms (1 s) once 100,000 records are queued, whatever the broker.
        .set("queued.min.messages", "1000000")
        .set("log_level", "3");
    if let Ok(debug) = std::env::var("BENCH_DEBUG") {
        config.set("debug", debug).set("log_level", "7");
    }
    let consumer: BaseConsumer = config.create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Offset(start_offsets[p as usize]))?;
    }
    consumer.assign(&tpl)?;
    let start = Instant::now();
    let mut got = 0usize;
    let mut bytes = 0usize;
    while got < n {
        if start.elapsed() > Duration::from_secs(120) {
            bail!("consumer stalled after {got} of {n} records");
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            bytes += m.payload().map_or(0, <[u8]>::len);
            got += 1;
        }
    }
    assert_eq!(bytes, n * RECORD_BYTES);
    Ok(start.elapsed().as_secs_f64())
}

fn run(bootstrap: &str, rounds: usize) -> anyhow::Result<Figures> {
    let topic = "bench";
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("log_level", "3")
        .create()?;
    let payload = vec![b'x'; RECORD_BYTES];
    // Warm up: metadata, connections.
    produce_round(&producer, topic, &payload, PARTITIONS as usize * 10)?;
    let mut offsets = vec![10i64; PARTITIONS as usize];
    let mut f = Figures::default();
    for _ in 0..rounds {
        let p = produce_round(&producer, topic, &payload, ROUND)?;
        let c = consume_round(bootstrap, topic, &offsets, ROUND)?;
        if std::env::var_os("BENCH_VERBOSE").is_some() {
            println!("  round: produce {p:.3}s consume {c:.3}s");
        }
        f.produce_secs.push(p);
        f.consume_secs.push(c);
        for o in &mut offsets {
            *o += (ROUND / PARTITIONS as usize) as i64;
        }
    }
    Ok(f)
}

fn broker_sim(brokers: usize, rounds: usize) -> anyhow::Result<Figures> {
    let cluster = Cluster::builder().brokers(brokers).config("num.partitions", PARTITIONS.to_string()).start()?;
    let figures = run(cluster.bootstrap_servers(), rounds);
    cluster.shutdown();
    figures
}

fn mock(brokers: i32, rounds: usize) -> anyhow::Result<Figures> {
    let cluster = MockCluster::new(brokers)?;
    cluster.create_topic("bench", PARTITIONS, 1)?;
    run(&cluster.bootstrap_servers(), rounds)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let mut rounds = 7;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => rounds = args.next().context("--rounds N")?.parse()?,
            other => bail!("unknown argument {other}; usage: broker-bench [--rounds N]"),
        }
    }
    println!("{rounds} rounds (median shown) of {ROUND} records of {RECORD_BYTES} bytes over {PARTITIONS} partitions (client and broker share the machine)");
    if std::env::var_os("BENCH_SIM3").is_some() {
        broker_sim(3, rounds)?;
        return Ok(());
    }
    let mock1 = mock(1, rounds)?;
    let mock3 = mock(3, rounds)?;
    let results = [
        ("broker-sim, 1 broker", broker_sim(1, rounds)?, &mock1),
        ("librdkafka mock, 1 broker", mock1.clone(), &mock1),
        ("broker-sim, 3 brokers", broker_sim(3, rounds)?, &mock3),
        ("librdkafka mock, 3 brokers", mock3.clone(), &mock3),
    ];
    println!("ratios compare each target with the mock cluster of the same size");
    println!(
        "{:<28} {:>14} {:>10} {:>14} {:>10} {:>9} {:>9}",
        "target", "produce rec/s", "MB/s", "consume rec/s", "MB/s", "prod/mock", "cons/mock"
    );
    for (name, f, mock) in &results {
        let mb = |r: f64| r * RECORD_BYTES as f64 / 1e6;
        println!(
            "{:<28} {:>14.0} {:>10.1} {:>14.0} {:>10.1} {:>9.2} {:>9.2}",
            name,
            f.produce_rate(),
            mb(f.produce_rate()),
            f.consume_rate(),
            mb(f.consume_rate()),
            f.produce_rate() / mock.produce_rate(),
            f.consume_rate() / mock.consume_rate()
        );
    }
    Ok(())
}
