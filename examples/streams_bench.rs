//! Streams benchmark: records/s of a stateless map/filter application and of a windowed count
//! application, Kafka to Kafka through an embedded broker-sim on the same cores, each at
//! at-least-once and exactly-once (100 ms commit interval) in the same run, with the ratio.
//!
//! The input is produced first; the rate is measured from the first processed record to the
//! last one (so group join and start-up are not counted) and includes producing the output,
//! changelogs and commits.
//!
//! Run: `cargo run --release -p moldau-examples --bin streams-bench [-- RECORDS]` (3M records
//! by default).
//!
//! Environment:
//! - `BENCH_ROUNDS` (default 11): each cell runs that many times and the median is reported,
//!   as single runs on a shared 2-core machine vary by ±20%. The guarantees alternate and take
//!   turns to go first. The last columns are the median of the rounds' own EOS/ALOS ratios
//!   and its 95% confidence interval (from 6 rounds on). Each round line also shows the
//!   machine's memory speed just before the round (random reads per µs over 64 MiB), which
//!   drifts by ±15% on a shared VM and the stream thread's speed with it.
//! - `BENCH_THREADS`: stream threads (default 1).
//! - `BENCH_ONLY=stateless|windowed`: one application; `BENCH_GUARANTEE=alos|eos`: one
//!   guarantee (for profiling). `BENCH_ONLY=restore`: the windowed count's restore from its
//!   changelog into an empty state directory, records/s.
//! - `BENCH_PROPS=key=value,...`: streams properties, such as `producer.linger.ms=1`.
//! - `BENCH_EOS_COMMIT_MS` (default 100): the exactly-once commit interval.
//! - `BENCH_CPU=1`: prints each run's CPU time per record by kind of thread (Linux).

#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use moldau_dsl::state::{BytesSerde, StringSerde, U64Serde};
use moldau_dsl::{Consumed, Grouped, Produced, StreamsBuilder, TimeWindows};
use moldau_engine::{KafkaStreams, ProcessingGuarantee, StreamsConfig, Topology};
use moldau_examples as ex;
use moldau_examples::stats::{median, median_interval, MemoryProbe};

const PARTITIONS: i32 = 6;
const KEYS: usize = 10_000;
/// Records per run: about 4 s per run at this machine's rates. At 1M (1.5 s) each run's fixed
/// costs (the first fetches, the first transaction registering its partitions, memory touched
/// for the first time, the final commit) weighed more, and more under exactly-once: the
/// windowed count's round ratios spread 0.87-1.01 over 11 rounds there, 0.90-1.00 at 3M.
const DEFAULT_RECORDS: u64 = 3_000_000;

fn stateless(input: &str, output: &str) -> anyhow::Result<Topology> {
    let b = StreamsBuilder::new();
    b.stream_keyed(input, Consumed::with(StringSerde, BytesSerde))
        .filter(|_, v: &Vec<u8>| v.first() != Some(&b'#'))
        .map_values(|mut v: Vec<u8>| {
            v.make_ascii_uppercase();
            v
        })
        .to(output, Produced::with(StringSerde, BytesSerde));
    Ok(b.build()?)
}

fn windowed(input: &str, output: &str) -> anyhow::Result<Topology> {
    let b = StreamsBuilder::new();
    b.stream_keyed(input, Consumed::with(StringSerde, BytesSerde))
        .group_by_key(Grouped::with(StringSerde, BytesSerde))
        .windowed_by(TimeWindows::of_size_and_grace(60_000, 10_000))
        .count("bench-window-counts")
        .to_stream()
        .map(|w, n: Option<u64>| (w.key, n.unwrap_or(0)))
        .to(output, Produced::with(StringSerde, U64Serde));
    Ok(b.build()?)
}

/// CPU seconds this process has used (user + system), from `/proc/self/stat`; `None` where
/// that file does not exist or does not parse.
fn cpu_seconds() -> Option<f64> {
    parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?).map(|(_, cpu)| cpu)
}

/// The command name and the CPU seconds (user + system) of a `/proc/.../stat` line.
fn parse_stat(stat: &str) -> Option<(&str, f64)> {
    // The command name sits in parentheses and may hold spaces; of the fields after it, utime
    // and stime are the 12th and 13th (the 14th and 15th overall).
    let (head, rest) = stat.rsplit_once(')')?;
    let name = &head[head.find('(')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux architecture Moldau builds for.
    Some((name, ticks / 100.0))
}

/// CPU seconds per thread group (thread name without trailing digits, so that
/// numbered threads of one kind add up), from `/proc/self/task`; empty where that does not exist.
fn thread_cpu() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let Some((name, cpu)) = parse_stat(&stat) else { continue };
        let name = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-').to_string();
        *out.entry(name).or_insert(0.0) += cpu;
    }
    out
}

/// `config` with the properties of `BENCH_PROPS`.
fn with_bench_props(mut config: StreamsConfig) -> StreamsConfig {
    for (k, v) in std::env::var("BENCH_PROPS").unwrap_or_default().split(',').filter_map(|kv| kv.split_once('=')) {
        config = config.with_property(k, v);
    }
    config
}

/// One measured run: records/s, the roll-backs to the last commit on the way
/// (`StreamsMetrics::recoveries`) and the cores the whole process (broker included) kept busy.
struct Run {
    rate: f64,
    recoveries: u64,
    cores: f64,
}

/// Runs `topology` over the `n` records of `input`.
fn measure(
    bootstrap: &str,
    app: &str,
    topology: Topology,
    guarantee: ProcessingGuarantee,
    n: u64,
) -> anyhow::Result<Run> {
    let state = tempfile::tempdir()?;
    let threads: usize = std::env::var("BENCH_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let config =
        StreamsConfig::new(app, bootstrap).with_guarantee(guarantee).with_state_dir(state.path()).with_threads(threads);
    let config = with_bench_props(config);
    let config = match guarantee {
        ProcessingGuarantee::ExactlyOnceV2 => {
            let ms = std::env::var("BENCH_EOS_COMMIT_MS").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
            config.with_commit_interval(Duration::from_millis(ms))
        }
        ProcessingGuarantee::AtLeastOnce => config,
    };
    let before = thread_cpu();
    let mut streams = KafkaStreams::new(topology, config)?;
    streams.start()?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first: Option<(Instant, Option<f64>)> = None;
    loop {
        let m = streams.metrics();
        if first.is_none() && m.processed > 0 {
            first = Some((Instant::now(), cpu_seconds()));
        }
        if m.processed >= n {
            break;
        }
        if let Some(e) = streams.errors().first() {
            bail!("{app}: {e}");
        }
        if Instant::now() > deadline {
            bail!("{app}: only {} of {n} records processed", m.processed);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if std::env::var("BENCH_CPU").is_ok() {
        // Threads that ended (the stream threads at close) are no longer listed: sample first.
        let after = thread_cpu();
        let per: Vec<String> = after
            .iter()
            .map(|(k, v)| (k, v - before.get(k).copied().unwrap_or(0.0)))
            .filter(|(_, d)| *d >= 0.01)
            .map(|(k, d)| format!("{k}={:.0}ns", d * 1e9 / n as f64))
            .collect();
        let m = streams.metrics();
        println!(
            "    cpu per record: {}; sent per record {:.3}, commits {}",
            per.join(" "),
            m.sent as f64 / n as f64,
            m.commits
        );
    }
    // Count the final commit (output acknowledged, offsets committed) in the time.
    let recoveries = streams.metrics().recoveries;
    streams.close().context("closing")?;
    let elapsed = first.map_or(Duration::ZERO, |f| f.0.elapsed());
    let cpu = match (first.and_then(|f| f.1), cpu_seconds()) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    Ok(Run { rate: n as f64 / elapsed.as_secs_f64(), recoveries, cores: cpu / elapsed.as_secs_f64() })
}

/// Restores the windowed count of application `app` (already run over the input, so its
/// changelog holds one record per input record and its offsets are committed at the end) into
/// an empty state directory; returns the restored records per second, from the first record
/// restored until no task restores, and how long the first record took (the group join).
fn measure_restore(bootstrap: &str, app: &str, topology: Topology, n: u64) -> anyhow::Result<(f64, Duration)> {
    let state = tempfile::tempdir()?;
    let config = with_bench_props(StreamsConfig::new(app, bootstrap).with_state_dir(state.path()));
    let mut streams = KafkaStreams::new(topology, config)?;
    streams.start()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let mut first: Option<Instant> = None;
    loop {
        let m = streams.metrics();
        if first.is_none() && m.restored > 0 {
            first = Some(Instant::now());
        }
        if m.restored >= n && m.restoring.values().all(Vec::is_empty) {
            break;
        }
        if let Some(e) = streams.errors().first() {
            bail!("{app}: {e}");
        }
        if Instant::now() > deadline {
            bail!("{app}: only {} of {n} records restored", m.restored);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let first = first.unwrap_or(started);
    let restored = streams.metrics().restored;
    streams.close().context("closing")?;
    Ok((restored as f64 / first.elapsed().as_secs_f64(), first - started))
}

/// `BENCH_ONLY=restore`: the windowed count runs once over the input, then its stores are
/// restored from the changelog into an empty state directory, `rounds` times.
fn restore_rounds(bootstrap: &str, n: u64, rounds: usize) -> anyhow::Result<()> {
    let app = "bench-restore";
    let state = tempfile::tempdir()?;
    let mut streams = KafkaStreams::new(
        windowed("bench-input", "bench-output-0")?,
        with_bench_props(StreamsConfig::new(app, bootstrap).with_state_dir(state.path())),
    )?;
    streams.start()?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while streams.metrics().processed < n {
        if Instant::now() > deadline {
            bail!("{app}: only {} of {n} records processed", streams.metrics().processed);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    streams.close()?;
    let mut rates = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let (rate, join) = measure_restore(bootstrap, app, windowed("bench-input", "bench-output-0")?, n)?;
        println!("  restore round {}: {rate:.0} rec/s (first record restored after {join:.1?})", round + 1);
        rates.push(rate);
    }
    println!("restore of {n} changelog records: median {:.0} rec/s", median(&rates));
    Ok(())
}

fn main() -> anyhow::Result<()> {
    ex::init_logging();
    let n: u64 = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(DEFAULT_RECORDS);
    let cluster = ex::start_cluster(1)?;
    let bootstrap = cluster.bootstrap_servers().to_string();
    ex::create_topics(&bootstrap, &[("bench-input", PARTITIONS)], 1)?;
    let outputs: Vec<String> = (0..4).map(|i| format!("bench-output-{i}")).collect();
    let topics: Vec<(&str, i32)> = outputs.iter().map(|o| (o.as_str(), PARTITIONS)).collect();
    ex::create_topics(&bootstrap, &topics, 1)?;
    let producer = ex::producer(&bootstrap)?;
    let value = [b'v'; 100];
    let t0 = 1_700_000_000_000i64;
    for i in 0..n {
        let key = format!("key-{:06}", i as usize % KEYS);
        ex::send(&producer, "bench-input", key.as_bytes(), &value, Some(t0 + i as i64))?;
    }
    ex::flush(&producer)?;
    let threads = std::env::var("BENCH_THREADS").unwrap_or_else(|_| "1".into());
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(11).max(1);
    println!(
        "{n} records of 100 bytes on {PARTITIONS} partitions, {KEYS} keys; {threads} stream thread(s); \
         median of {rounds} round(s), the guarantees alternating and taking turns to go first; release build"
    );
    let only = std::env::var("BENCH_ONLY").ok();
    if only.as_deref() == Some("restore") {
        restore_rounds(&bootstrap, n, rounds)?;
        cluster.shutdown();
        return Ok(());
    }
    let guarantee = std::env::var("BENCH_GUARANTEE").ok();
    let apps = [("stateless", stateless as fn(&str, &str) -> anyhow::Result<Topology>), ("windowed count", windowed)];
    let guarantees = [("alos", ProcessingGuarantee::AtLeastOnce), ("eos", ProcessingGuarantee::ExactlyOnceV2)];
    let probe = MemoryProbe::new();
    let mut lines = Vec::new();
    for (a, (name, build)) in apps.iter().enumerate() {
        if only.as_deref().is_some_and(|o| !name.starts_with(o)) {
            continue;
        }
        // (at-least-once, exactly-once) rates per round
        let mut rates: Vec<[f64; 2]> = Vec::with_capacity(rounds);
        for round in 0..rounds {
            let mut pair = [f64::NAN; 2];
            let mut cores = [f64::NAN; 2];
            let mut recoveries = 0;
            // The order alternates too (ABBA), so neither guarantee always runs first: the
            // first run after the input was produced is often the slowest.
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            let memory = probe.reads_per_us(Duration::from_millis(250));
            for g in order {
                let ((short, pg), out) = (&guarantees[g], &outputs[a * 2 + g]);
                if guarantee.as_deref().is_some_and(|o| o != *short) {
                    continue;
                }
                let app = format!("bench-{a}-{short}-{round}");
                let run = measure(&bootstrap, &app, build("bench-input", out)?, *pg, n)?;
                pair[g] = run.rate;
                cores[g] = run.cores;
                recoveries += run.recoveries;
            }
            println!(
                "  {name} round {}: {:.0} / {:.0} rec/s, ratio {:.3}, cores busy {:.2} / {:.2}, roll-backs {recoveries}, \
                 memory {memory:.0} reads/µs",
                round + 1,
                pair[0],
                pair[1],
                pair[1] / pair[0],
                cores[0],
                cores[1]
            );
            rates.push(pair);
        }
        let column = |g: usize| rates.iter().map(|r| r[g]).collect::<Vec<f64>>();
        let (alos, eos) = (median(&column(0)), median(&column(1)));
        // Each round's two runs ran back to back, under the same conditions; the median of
        // their ratios is less swayed by the machine drifting between rounds.
        let ratios: Vec<f64> = rates.iter().map(|r| r[1] / r[0]).collect();
        let paired = median(&ratios);
        let interval = match median_interval(&ratios, 0.95) {
            Some((low, high, _)) => format!("{low:.3}-{high:.3}"),
            None => "-".into(),
        };
        lines.push(format!("{name:<18} {alos:>16.0} {eos:>16.0} {:>10.3} {paired:>14.3} {interval:>13}", eos / alos));
    }
    println!(
        "{:<18} {:>16} {:>16} {:>10} {:>14} {:>13}",
        "application", "at_least_once/s", "exactly_once/s", "EOS/ALOS", "round ratios", "95% interval"
    );
    for l in lines {
        println!("{l}");
    }
    cluster.shutdown();
    Ok(())
}
