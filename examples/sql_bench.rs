//! SQL benchmark: the streams benchmark's two applications written in SQL against their DSL
//! versions over the same input (records/s, exactly-once at a 100 ms commit interval, the
//! median of rounds that alternate the two), and pull-query latency (p50, p99) and
//! queries/s on a table of many keys, all on one embedded broker-sim on the same cores.
//!
//! Run: `cargo run --release -p moldau-examples --bin sql-bench [-- RECORDS [KEYS]]` (1M input
//! records by default; the pull-query table has 1M keys by default).
//!
//! Environment: `BENCH_ROUNDS` (default 5), `BENCH_ONLY=stateless|windowed|pull`.
//!
//! Input values are JSON (`{"v":"…"}`, 100 bytes), as SQL reads them; the DSL versions do
//! what the streams benchmark's do on the same bytes (filter on the first byte of the value,
//! upper-case it; count per key in tumbling one-minute windows). The SQL versions decode each
//! value into an Arrow batch, evaluate the WHERE clause and projection with DataFusion and
//! encode JSON: the ratio is the cost of SQL's typed rows over raw bytes.

#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use moldau_dsl::state::{BytesSerde, StringSerde, U64Serde};
use moldau_dsl::{Consumed, Grouped, Produced, StreamsBuilder, TimeWindows};
use moldau_engine::{KafkaStreams, StreamsConfig, Topology};
use moldau_examples as ex;
use moldau_examples::stats::median;
use moldau_sql::{Executor, ExecutorConfig, Outcome};

const PARTITIONS: i32 = 6;
const KEYS: usize = 10_000;

fn dsl_stateless(input: &str, output: &str) -> anyhow::Result<Topology> {
    let b = StreamsBuilder::new();
    b.stream_keyed(input, Consumed::with(StringSerde, BytesSerde))
        .filter(|_, v: &Vec<u8>| v.get(6) != Some(&b'#'))
        .map_values(|mut v: Vec<u8>| {
            v.make_ascii_uppercase();
            v
        })
        .to(output, Produced::with(StringSerde, BytesSerde));
    Ok(b.build()?)
}

fn dsl_windowed(input: &str, output: &str) -> anyhow::Result<Topology> {
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

/// Runs a DSL topology over the `n` input records; records/s from the first record processed
/// to the last.
fn run_dsl(bootstrap: &str, app: &str, topology: Topology, n: u64) -> anyhow::Result<f64> {
    let state = tempfile::tempdir()?;
    let config = StreamsConfig::new(app, bootstrap)
        .with_guarantee(moldau_engine::ProcessingGuarantee::ExactlyOnceV2)
        .with_state_dir(state.path())
        .with_commit_interval(Duration::from_millis(100));
    let mut streams = KafkaStreams::new(topology, config)?;
    streams.start()?;
    let rate = wait_processed(app, n, || {
        let m = streams.metrics();
        (m.processed, streams.errors().first().map(|e| e.to_string()))
    })?;
    streams.close().context("closing")?;
    Ok(rate)
}

/// Waits until `progress` says `n` records were processed (at most 10 minutes); the rate
/// from the first one.
fn wait_processed(what: &str, n: u64, mut progress: impl FnMut() -> (u64, Option<String>)) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first = None;
    loop {
        let (processed, error) = progress();
        if first.is_none() && processed > 0 {
            first = Some(Instant::now());
        }
        if processed >= n {
            break;
        }
        if let Some(e) = error {
            bail!("{what}: {e}");
        }
        if Instant::now() > deadline {
            bail!("{what}: only {processed} of {n} records processed");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(n as f64 / first.map_or(Duration::ZERO, |f| f.elapsed()).as_secs_f64())
}

/// The records the query writing `sink` processed (every sub-topology's, summed).
fn processed(x: &mut Executor, sink: &str) -> u64 {
    x.metrics_of(&sink.to_ascii_lowercase()).map_or(0, |m| m.processed)
}

/// Runs a SQL persistent query over the `n` input records (`subtopologies`: how many times
/// each record is processed); records/s.
fn run_sql(
    bootstrap: &str,
    service: &str,
    statements: &str,
    sink: &str,
    n: u64,
    subtopologies: u64,
) -> anyhow::Result<f64> {
    let state = tempfile::tempdir()?;
    let mut c = ExecutorConfig::new(bootstrap, service, state.path());
    c.properties.insert("commit.interval.ms".into(), "100".into());
    let mut x = Executor::new(c)?;
    x.execute(statements)?;
    let rate = wait_processed(sink, n * subtopologies, || (processed(&mut x, sink), None))?;
    x.close()?;
    Ok(rate / subtopologies as f64)
}

fn input_value(i: u64) -> Vec<u8> {
    // {"v":"…"} of 100 bytes; every 10th value starts with '#' (filtered out).
    let mut v = format!(r#"{{"v":"{}"#, if i.is_multiple_of(10) { "#" } else { "v" }).into_bytes();
    v.resize(98, b'v');
    v.extend_from_slice(b"\"}");
    v
}

/// Pull-query latency and throughput over a table of `keys` keys.
fn pull(bootstrap: &str, keys: usize) -> anyhow::Result<()> {
    ex::create_topics(bootstrap, &[("pull-input", PARTITIONS)], 1)?;
    let producer = ex::producer(bootstrap)?;
    for i in 0..keys {
        let key = format!("user-{i:07}");
        ex::send(
            &producer,
            "pull-input",
            key.as_bytes(),
            format!(r#"{{"n":{i}}}"#).as_bytes(),
            Some(1_700_000_000_000),
        )?;
    }
    ex::flush(&producer)?;
    let state = tempfile::tempdir()?;
    let mut c = ExecutorConfig::new(bootstrap, "pull-bench", state.path());
    c.properties.insert("commit.interval.ms".into(), "100".into());
    let mut x = Executor::new(c)?;
    x.execute(
        "CREATE STREAM pull_input (k STRING KEY, n BIGINT) WITH (kafka_topic='pull-input', value_format='JSON');
         CREATE TABLE totals AS SELECT k, COUNT(*) AS c, SUM(n) AS total FROM pull_input GROUP BY k;",
    )?;
    let loaded = Instant::now();
    wait_processed("totals", keys as u64, || (processed(&mut x, "totals"), None))?;
    // The last key answers once its commit is persisted.
    let last = format!("SELECT * FROM totals WHERE k = 'user-{:07}';", keys - 1);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(mut o) = x.execute(&last) {
            if matches!(o.pop(), Some(Outcome::Pull(r)) if r.rows.len() == 1) {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("the table's last key never answered");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every partition's last commit persisted: each of the last 1,000 keys answers (every
    // partition's last key is among them, and a partition's last commit holds its last key),
    // and a sample spread over the others.
    let deadline = Instant::now() + Duration::from_secs(120);
    let last_ones = keys.saturating_sub(1_000)..keys;
    'sample: loop {
        for k in last_ones.clone().chain((0..keys).step_by((keys / 500).max(1))) {
            let answered = matches!(
                x.execute(&format!("SELECT k FROM totals WHERE k = 'user-{k:07}';"))?.pop(),
                Some(Outcome::Pull(r)) if r.rows.len() == 1
            );
            if !answered {
                if Instant::now() > deadline {
                    bail!("user-{k:07} never answered");
                }
                std::thread::sleep(Duration::from_millis(100));
                continue 'sample;
            }
        }
        break;
    }
    println!("pull queries: table of {keys} keys loaded in {:.1} s", loaded.elapsed().as_secs_f64());
    let mut lat = Vec::new();
    let mut rng = 0x9e3779b97f4a7c15u64;
    let started = Instant::now();
    let queries = 20_000;
    for _ in 0..queries {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let k = rng as usize % keys;
        let sql = format!("SELECT k, c, total FROM totals WHERE k = 'user-{k:07}';");
        let t = Instant::now();
        let mut o = x.execute(&sql)?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        match o.pop() {
            Some(Outcome::Pull(r)) if r.rows.len() == 1 && r.rows[0][2] == serde_json::json!(k) => {}
            other => bail!("user-{k:07}: {other:?}"),
        }
    }
    let qps = queries as f64 / started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "pull queries (point lookups, one client, parse + plan + lookup + answer): p50 {:.0} µs, p99 {:.0} µs, {qps:.0} queries/s",
        at(0.5),
        at(0.99)
    );
    let t = Instant::now();
    let mut o = x.execute("SELECT k, total FROM totals WHERE total > 0 LIMIT 100;")?;
    let rows = match o.pop() {
        Some(Outcome::Pull(r)) => r.rows.len(),
        _ => 0,
    };
    println!("  a scan with LIMIT 100: {rows} rows in {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    x.close()?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    ex::init_logging();
    let n: u64 = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(1_000_000);
    let pull_keys: usize = std::env::args().nth(2).map(|s| s.parse()).transpose()?.unwrap_or(1_000_000);
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5).max(1);
    let only = std::env::var("BENCH_ONLY").ok();
    let cluster = ex::start_cluster(1)?;
    let bootstrap = cluster.bootstrap_servers().to_string();
    if only.as_deref() != Some("pull") {
        ex::create_topics(&bootstrap, &[("bench-input", PARTITIONS)], 1)?;
        let producer = ex::producer(&bootstrap)?;
        let t0 = 1_700_000_000_000i64;
        for i in 0..n {
            let key = format!("key-{:06}", i as usize % KEYS);
            ex::send(&producer, "bench-input", key.as_bytes(), &input_value(i), Some(t0 + i as i64))?;
        }
        ex::flush(&producer)?;
        println!(
            "{n} JSON records of 100 bytes on {PARTITIONS} partitions, {KEYS} keys; exactly-once, 100 ms commits; \
             median of {rounds} round(s), SQL and DSL alternating; release build"
        );
        let create =
            "CREATE STREAM bench (k STRING KEY, v STRING) WITH (kafka_topic='bench-input', value_format='JSON');";
        let mut lines = Vec::new();
        for (name, dsl, sql, subs) in [
            (
                "stateless",
                dsl_stateless as fn(&str, &str) -> anyhow::Result<Topology>,
                "CREATE STREAM out_{r} AS SELECT k, upper(v) AS v FROM bench WHERE NOT starts_with(v, '#');",
                1,
            ),
            (
                "windowed count",
                dsl_windowed,
                "CREATE TABLE out_{r} AS SELECT k, COUNT(*) AS n FROM bench \
                 WINDOW TUMBLING (SIZE 60 SECONDS, GRACE PERIOD 10 SECONDS) GROUP BY k;",
                1,
            ),
        ] {
            if only.as_deref().is_some_and(|o| !name.starts_with(o)) {
                continue;
            }
            let mut pairs = Vec::new();
            for r in 0..rounds {
                let mut pair = [0.0; 2];
                let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
                for which in order {
                    pair[which] = if which == 0 {
                        // As the streams benchmark does, and as the SQL query's own output
                        // topic is (CREATE … AS SELECT writes as many partitions as its
                        // source): the output spread over as many partitions as the input.
                        let out = format!("dsl-out-{}-{r}", name.len());
                        ex::create_topics(&bootstrap, &[(&out, PARTITIONS)], 1)?;
                        run_dsl(&bootstrap, &format!("dsl-{}-{r}", name.len()), dsl("bench-input", &out)?, n)?
                    } else {
                        let id = format!("{}_{r}", name.len());
                        let statements = format!("{create} {}", sql.replace("{r}", &id));
                        run_sql(&bootstrap, &format!("sql{id}"), &statements, &format!("out_{id}"), n, subs)?
                    };
                }
                println!(
                    "  {name} round {}: DSL {:.0} / SQL {:.0} rec/s, ratio {:.3}",
                    r + 1,
                    pair[0],
                    pair[1],
                    pair[1] / pair[0]
                );
                pairs.push(pair);
            }
            let (dsl, sql) = (
                median(&pairs.iter().map(|p| p[0]).collect::<Vec<_>>()),
                median(&pairs.iter().map(|p| p[1]).collect::<Vec<_>>()),
            );
            let ratio = median(&pairs.iter().map(|p| p[1] / p[0]).collect::<Vec<_>>());
            lines.push(format!("{name:<16} {dsl:>12.0} {sql:>12.0} {:>9.3} {ratio:>13.3}", sql / dsl));
        }
        println!(
            "{:<16} {:>12} {:>12} {:>9} {:>13}",
            "application", "DSL rec/s", "SQL rec/s", "SQL/DSL", "round ratios"
        );
        for l in lines {
            println!("{l}");
        }
    }
    if only.as_deref().is_none_or(|o| o == "pull") {
        pull(&bootstrap, pull_keys)?;
    }
    cluster.shutdown();
    Ok(())
}
