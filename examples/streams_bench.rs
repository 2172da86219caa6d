//! Streams benchmark: records/s of a stateless map/filter application and of a windowed count
//! application, Kafka to Kafka through an embedded broker-sim on the same cores, each at
//! at-least-once and exactly-once (100 ms commit interval) in the same run, with the ratio.
//!
//! The input is produced first; the rate is measured from the first processed record to the
//! last one (so group join and start-up are not counted) and includes producing the output,
//! changelogs and commits.
//!
//! Run: `cargo run --release -p moldau-examples --bin streams-bench [-- RECORDS]`. Environment:
//! `BENCH_THREADS` (stream threads, default 1); `BENCH_ROUNDS` (default 3: each cell runs that
//! many times, the two guarantees alternating, and the median is reported, as one run on a
//! shared 2-core machine varies by ±15%); `BENCH_ONLY=stateless|windowed` runs one
//! application; `BENCH_GUARANTEE=alos|eos` one guarantee (for profiling).

#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use moldau_dsl::state::{BytesSerde, StringSerde, U64Serde};
use moldau_dsl::{Consumed, Grouped, Produced, StreamsBuilder, TimeWindows};
use moldau_engine::{KafkaStreams, ProcessingGuarantee, StreamsConfig, Topology};
use moldau_examples as ex;

const PARTITIONS: i32 = 6;
const KEYS: usize = 10_000;

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

/// Runs `topology` over the `n` records of `input`; returns records/s and the roll-backs to
/// the last commit on the way (`StreamsMetrics::recoveries`).
fn measure(
    bootstrap: &str,
    app: &str,
    topology: Topology,
    guarantee: ProcessingGuarantee,
    n: u64,
) -> anyhow::Result<(f64, u64)> {
    let state = tempfile::tempdir()?;
    let threads: usize = std::env::var("BENCH_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let config =
        StreamsConfig::new(app, bootstrap).with_guarantee(guarantee).with_state_dir(state.path()).with_threads(threads);
    let config = match guarantee {
        ProcessingGuarantee::ExactlyOnceV2 => config.with_commit_interval(Duration::from_millis(100)),
        ProcessingGuarantee::AtLeastOnce => config,
    };
    let mut streams = KafkaStreams::new(topology, config)?;
    streams.start()?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first: Option<Instant> = None;
    loop {
        let m = streams.metrics();
        if first.is_none() && m.processed > 0 {
            first = Some(Instant::now());
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
    // Count the final commit (output acknowledged, offsets committed) in the time.
    let recoveries = streams.metrics().recoveries;
    streams.close().context("closing")?;
    let elapsed = first.map_or(Duration::ZERO, |f| f.elapsed());
    Ok((n as f64 / elapsed.as_secs_f64(), recoveries))
}

/// The median of `xs` (NaN when any is NaN, i.e. the cell was not run).
fn median(xs: &[f64]) -> f64 {
    if xs.iter().any(|x| x.is_nan()) {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn main() -> anyhow::Result<()> {
    ex::init_logging();
    let n: u64 = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(1_000_000);
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
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3).max(1);
    println!(
        "{n} records of 100 bytes on {PARTITIONS} partitions, {KEYS} keys; {threads} stream thread(s); \
         median of {rounds} round(s), the guarantees alternating; release build"
    );
    let only = std::env::var("BENCH_ONLY").ok();
    let guarantee = std::env::var("BENCH_GUARANTEE").ok();
    let apps = [("stateless", stateless as fn(&str, &str) -> anyhow::Result<Topology>), ("windowed count", windowed)];
    let guarantees = [("alos", ProcessingGuarantee::AtLeastOnce), ("eos", ProcessingGuarantee::ExactlyOnceV2)];
    let mut lines = Vec::new();
    for (a, (name, build)) in apps.iter().enumerate() {
        if only.as_deref().is_some_and(|o| !name.starts_with(o)) {
            continue;
        }
        // (at-least-once, exactly-once) rates per round
        let mut rates: Vec<[f64; 2]> = Vec::with_capacity(rounds);
        for round in 0..rounds {
            let mut pair = [f64::NAN; 2];
            let mut recoveries = 0;
            for ((short, pg), (rate, out)) in guarantees.iter().zip(pair.iter_mut().zip(&outputs[a * 2..])) {
                if guarantee.as_deref().is_some_and(|o| o != *short) {
                    continue;
                }
                let app = format!("bench-{a}-{short}-{round}");
                let (r, rolled_back) = measure(&bootstrap, &app, build("bench-input", out)?, *pg, n)?;
                *rate = r;
                recoveries += rolled_back;
            }
            println!(
                "  {name} round {}: {:.0} / {:.0} rec/s, ratio {:.3}, roll-backs {recoveries}",
                round + 1,
                pair[0],
                pair[1],
                pair[1] / pair[0]
            );
            rates.push(pair);
        }
        let column = |g: usize| rates.iter().map(|r| r[g]).collect::<Vec<f64>>();
        let (alos, eos) = (median(&column(0)), median(&column(1)));
        lines.push(format!("{name:<18} {alos:>16.0} {eos:>16.0} {:>10.3}", eos / alos));
    }
    println!("{:<18} {:>16} {:>16} {:>10}", "application", "at_least_once/s", "exactly_once/s", "EOS/ALOS");
    for l in lines {
        println!("{l}");
    }
    cluster.shutdown();
    Ok(())
}
