//! Page views per user in tumbling 1-minute windows with 10 s grace, one final count per
//! window (emit on window close), on an embedded 3-broker broker-sim cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use moldau_engine::{KafkaStreams, ProcessingGuarantee, StreamsConfig};
use moldau_examples as ex;

fn main() -> anyhow::Result<()> {
    ex::init_logging();
    let cluster = ex::start_cluster(3)?;
    let bootstrap = cluster.bootstrap_servers().to_string();
    ex::create_topics(&bootstrap, &[("page-views", 1), ("views-per-user", 1)], 3)?;
    let state = tempfile::tempdir()?;
    let config = StreamsConfig::new("page-views", &bootstrap)
        .with_guarantee(ProcessingGuarantee::ExactlyOnceV2)
        .with_state_dir(state.path());
    let mut app = KafkaStreams::new(ex::page_views()?, config)?;
    app.start()?;

    // Three users browsing for five minutes of event time, one view every 7 seconds each,
    // with some views arriving late (inside and outside the grace period).
    let producer = ex::producer(&bootstrap)?;
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let users = ["alice", "bob", "carol"];
    // Event time starts at a minute boundary (a zero timestamp would mean "now" to the producer).
    const BASE: i64 = 1_699_999_980_000;
    let mut t = 0i64;
    while t < 300_000 {
        for (i, u) in users.iter().enumerate() {
            let ts = BASE + t + i as i64 * 1000;
            ex::send(&producer, "page-views", u.as_bytes(), format!("/page/{}", ts % 5).as_bytes(), Some(ts))?;
            *expected.entry(format!("{u}@{}", ts / 60_000 * 60)).or_default() += 1;
        }
        if t == 63_000 {
            // 5 s late for the window [0, 60 s): inside the grace period, counted.
            ex::send(&producer, "page-views", b"alice", b"/late", Some(BASE + 55_000))?;
            *expected.entry(format!("alice@{}", BASE / 1000)).or_default() += 1;
        }
        if t == 140_000 {
            // 20 s late for [60 s, 120 s): after the grace period, dropped.
            ex::send(&producer, "page-views", b"bob", b"/too-late", Some(BASE + 100_000))?;
        }
        t += 7_000;
    }
    // The last windows close once stream time passes their end plus grace.
    ex::send(&producer, "page-views", b"system", b"/tick", Some(BASE + 400_000))?;
    ex::flush(&producer)?;
    // Windows that close: those ending by 390 s (stream time 400 s minus 10 s grace).
    expected.retain(|k, _| {
        k.rsplit('@').next().and_then(|s| s.parse::<i64>().ok()).is_some_and(|s| s * 1000 + 60_000 <= BASE + 390_000)
    });

    println!("final page views per user and minute (emitted once each, when the window closes):");
    let reader = ex::reader(&bootstrap, "page-views-demo-reader", &["views-per-user"])?;
    let mut got: BTreeMap<String, u64> = BTreeMap::new();
    let mut repeats = 0;
    ex::read_until(
        &reader,
        Duration::from_secs(60),
        |k, v| {
            let key = String::from_utf8_lossy(k.unwrap_or_default()).into_owned();
            let n = v.and_then(|v| v.try_into().ok()).map_or(0, u64::from_be_bytes);
            println!("  {key:>14} → {n}");
            if got.insert(key, n).is_some() {
                repeats += 1;
            }
        },
        |n| n >= expected.len(),
    );
    app.close().context("closing")?;
    drop(reader);
    drop(producer);
    cluster.shutdown();
    if got != expected || repeats > 0 {
        bail!("got {got:?} ({repeats} repeated windows), expected {expected:?}");
    }
    println!("{} windows, each emitted once with its final count", got.len());
    Ok(())
}
