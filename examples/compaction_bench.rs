//! Log compaction benchmark: how fast broker-sim's cleaner compacts, and what it costs
//! producers.
//!
//! Each round starts a 1-broker cluster on a fresh data directory, creates a compacted topic
//! (6 partitions, 4 MiB segments) and produces 1,000,000 records of 100 bytes over 50,000
//! keys with rdkafka, with the cleaner on (cleaning while the producer runs) or off. Rounds
//! alternate between the two. Printed: produce throughput with and without the cleaner (the
//! ratio), and the cleaner's own figures summed over its rounds: MB and records cleaned per
//! second of cleaning (its busy time, by the broker's millisecond clock), and what it kept.
//!
//! Run: `cargo run --release -p moldau-examples --bin compaction-bench [-- --rounds N]`

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use moldau_broker_sim::{CleanerStats, Cluster};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const RECORDS: usize = 1_000_000;
const KEYS: usize = 50_000;
const VALUE_BYTES: usize = 100;
const PARTITIONS: i32 = 6;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One round: produce throughput (records/s) and the cleaner's figures once it went quiet.
fn round(cleaner: bool) -> anyhow::Result<(f64, CleanerStats)> {
    let dir = tempfile::tempdir()?;
    let cluster = Cluster::builder()
        .data_dir(dir.path())
        .config("log.cleaner.enable", cleaner.to_string())
        .config("log.cleaner.backoff.ms", "100")
        .start()?;
    let bootstrap = cluster.bootstrap_servers().to_string();
    let rt = tokio::runtime::Runtime::new()?;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).set("log_level", "3").create()?;
    let topic = NewTopic::new("bench", PARTITIONS, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("segment.bytes", "4194304");
    for r in rt.block_on(admin.create_topics([&topic], &AdminOptions::new()))? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("log_level", "3")
        .create()?;
    let value = vec![b'v'; VALUE_BYTES];
    let keys: Vec<String> = (0..KEYS).map(|k| format!("key-{k:08}")).collect();
    let start = Instant::now();
    for i in 0..RECORDS {
        let mut rec = BaseRecord::<String, [u8]>::to("bench").key(&keys[i % KEYS]).payload(&value);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    producer.poll(Duration::from_millis(1));
                    rec = back;
                }
                Err((e, _)) => bail!("produce failed: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(120)).context("flush")?;
    let rate = RECORDS as f64 / start.elapsed().as_secs_f64();
    // Let the cleaner finish what is due, then read its figures.
    let mut last = cluster.cleaner_stats();
    let mut quiet_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(300);
    while cleaner && quiet_since.elapsed() < Duration::from_secs(2) {
        if Instant::now() > deadline {
            bail!("the cleaner did not go quiet: {last:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
        let now = cluster.cleaner_stats();
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
    cluster.shutdown();
    Ok((rate, last))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let mut rounds = 3;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => rounds = args.next().context("--rounds N")?.parse()?,
            other => bail!("unknown argument {other}; usage: compaction-bench [--rounds N]"),
        }
    }
    println!(
        "{rounds} rounds each way (median shown) of {RECORDS} records of {VALUE_BYTES} bytes over {KEYS} keys, \
         {PARTITIONS} partitions, 4 MiB segments, on disk"
    );
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let mut total = CleanerStats::default();
    for r in 0..rounds {
        let (rate_off, _) = round(false)?;
        let (rate_on, stats) = round(true)?;
        println!(
            "  round {r}: produce {rate_off:.0} rec/s without the cleaner, {rate_on:.0} with ({} passes, {} ms cleaning)",
            stats.passes, stats.busy_ms
        );
        without.push(rate_off);
        with.push(rate_on);
        total.add(&stats);
    }
    let (on, off) = (median(with), median(without));
    println!("produce rec/s without the cleaner {off:.0}, with it {on:.0}: ratio {:.2}", on / off);
    let secs = total.busy_ms.max(1) as f64 / 1e3;
    println!(
        "cleaner: {} passes, {:.1} MB read in {secs:.2} s of cleaning: {:.1} MB/s, {:.0} records/s; kept {:.1}% of the \
         records and {:.1}% of the bytes",
        total.passes,
        total.bytes_read as f64 / 1e6,
        total.bytes_read as f64 / 1e6 / secs,
        total.records_read as f64 / secs,
        100.0 * total.records_kept as f64 / total.records_read.max(1) as f64,
        100.0 * total.bytes_written as f64 / total.bytes_read.max(1) as f64
    );
    Ok(())
}
