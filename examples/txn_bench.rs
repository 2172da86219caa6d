//! Transaction cost benchmark: rdkafka producing 100-byte records to broker-sim as an
//! idempotent producer and as a transactional producer that commits every 100 ms, alternating
//! rounds in the same run, and the ratio of the two rates.
//!
//! Run: `cargo run --release -p moldau-examples --bin txn-bench [-- --rounds N --brokers B --commit-ms M]`

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use moldau_broker_sim::Cluster;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const RECORD_BYTES: usize = 100;
const PARTITIONS: i32 = 6;
const ROUND: usize = 1_500_000;
const TIMEOUT: Duration = Duration::from_secs(60);

/// A `BaseProducer` polled by the sending thread. rdkafka 0.39's `flush` (which
/// `commit_transaction` calls first) polls in 100 ms steps and `poll` always waits out its
/// timeout, so a commit with anything in flight took 100 ms; [`drain`] waits in 1 ms steps.
type Client = BaseProducer<LogContext>;

/// Waits until every record is acknowledged, polling in short steps.
fn drain(p: &Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + TIMEOUT;
    while p.in_flight_count() > 0 {
        if Instant::now() > deadline {
            bail!("{} records still in flight after {TIMEOUT:?}", p.in_flight_count());
        }
        // A zero-wait flush tells librdkafka to send lingering batches now; then serve reports.
        let _ = p.flush(Duration::ZERO);
        p.poll(Duration::from_millis(1));
    }
    Ok(())
}

/// Prints librdkafka's debug log (BENCH_DEBUG=eos,protocol,...) with a time stamp.
struct LogContext(Instant);

impl rdkafka::ClientContext for LogContext {
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        eprintln!("{:>9.3} {fac} {log_message}", self.0.elapsed().as_secs_f64() * 1e3);
    }
}

impl rdkafka::producer::ProducerContext for LogContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: ()) {}
}

fn producer(bootstrap: &str, transactional_id: Option<&str>) -> anyhow::Result<Client> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("log_level", "3");
    if let Some(id) = transactional_id {
        c.set("transactional.id", id);
        if let Ok(debug) = std::env::var("BENCH_DEBUG") {
            c.set("debug", debug).set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
        }
    }
    let p: Client = c.create_with_context(LogContext(Instant::now()))?;
    if transactional_id.is_some() {
        p.init_transactions(TIMEOUT).context("init_transactions")?;
    }
    Ok(p)
}

/// How a round ends its 100 ms periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Idempotent, never waits.
    Plain,
    /// Idempotent, drains (waits for every ack) each period, like a commit without the
    /// transaction: isolates the protocol's cost from the client's pipeline drain.
    Drained,
    /// Transactional, commits each period.
    Transactional,
}

/// Sends `n` records, ending a period every `commit_every` as `mode` says.
/// Returns (seconds, periods ended).
fn round(p: &Client, n: usize, mode: Mode, commit_every: Duration) -> anyhow::Result<(f64, usize)> {
    let transactional = mode == Mode::Transactional;
    let payload = vec![b'x'; RECORD_BYTES];
    let start = Instant::now();
    let mut commits = 0;
    let mut txn_start = Instant::now();
    if transactional {
        p.begin_transaction()?;
    }
    for i in 0..n {
        let part = (i % PARTITIONS as usize) as i32;
        loop {
            match p.send(BaseRecord::<(), [u8]>::to("bench").partition(part).payload(&payload)) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    p.poll(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("produce failed: {e}"),
            }
        }
        if i % 1024 == 0 {
            p.poll(Duration::ZERO);
        }
        if mode != Mode::Plain && txn_start.elapsed() >= commit_every {
            let t = Instant::now();
            drain(p)?;
            if !transactional {
                commits += 1;
                txn_start = Instant::now();
                continue;
            }
            p.commit_transaction(TIMEOUT).context("commit")?;
            if std::env::var_os("BENCH_VERBOSE").is_some() {
                println!("  commit took {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
            }
            commits += 1;
            p.begin_transaction()?;
            txn_start = Instant::now();
        }
    }
    drain(p)?;
    if transactional {
        p.commit_transaction(TIMEOUT).context("commit")?;
        commits += 1;
    }
    Ok((start.elapsed().as_secs_f64(), commits))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let (mut rounds, mut brokers, mut commit_ms) = (7usize, 1usize, 100u64);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => rounds = args.next().context("--rounds N")?.parse()?,
            "--brokers" => brokers = args.next().context("--brokers N")?.parse()?,
            "--commit-ms" => commit_ms = args.next().context("--commit-ms N")?.parse()?,
            other => bail!("unknown argument {other}; usage: txn-bench [--rounds N] [--brokers N] [--commit-ms N]"),
        }
    }
    // On disk like a real deployment (an in-memory log of several GB skews the later rounds).
    let dir = std::env::temp_dir().join(format!("moldau-txn-bench-{}", std::process::id()));
    let cluster = Cluster::builder()
        .brokers(brokers)
        .data_dir(&dir)
        .config("num.partitions", PARTITIONS.to_string())
        .config("log.segment.bytes", (256 << 20).to_string())
        .start()?;
    let bs = cluster.bootstrap_servers().to_string();
    let idempotent = producer(&bs, None)?;
    let transactional = producer(&bs, Some("txn-bench"))?;
    // Warm up both: metadata, connections, the transaction coordinator.
    let every = Duration::from_millis(commit_ms);
    round(&idempotent, 6_000, Mode::Plain, every)?;
    round(&transactional, 6_000, Mode::Transactional, every)?;
    println!(
        "{rounds} alternating rounds (median shown) of {ROUND} records of {RECORD_BYTES} bytes over {PARTITIONS} partitions, {brokers} broker(s)"
    );
    let modes = [Mode::Plain, Mode::Drained, Mode::Transactional];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut commits = 0;
    for r in 0..rounds {
        // Rotate the order so no mode always runs first or last.
        for k in 0..modes.len() {
            let i = (r + k) % modes.len();
            let p = if modes[i] == Mode::Transactional { &transactional } else { &idempotent };
            let (secs, c) = round(p, ROUND, modes[i], every)?;
            rates[i].push(ROUND as f64 / secs);
            if modes[i] == Mode::Transactional {
                commits += c;
            }
        }
    }
    let [plain, drained, txn] = [0, 1, 2].map(|i| median(rates[i].clone()));
    println!("idempotent producer:                       {plain:>10.0} records/s");
    println!("idempotent, waiting for acks every {commit_ms} ms: {drained:>10.0} records/s");
    println!("transactional, commit every {commit_ms} ms:        {txn:>10.0} records/s ({commits} commits)");
    println!(
        "transactional / idempotent:                {:>10.3} (cost {:.1}%)",
        txn / plain,
        (1.0 - txn / plain) * 100.0
    );
    println!(
        "transactional / idempotent waiting for acks: {:>8.3} (cost {:.1}%: the protocol's own share)",
        txn / drained,
        (1.0 - txn / drained) * 100.0
    );
    cluster.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
