//! The application of the crash tests (after Kafka Streams' EosTest): keyed `u64` records on
//! `data` are echoed to `echo` and, through a repartition topic, folded per key into
//! `count:sum` on `agg`.

use std::path::Path;
use std::time::Duration;

use moldau_dsl::state::{BincodeSerde, StringSerde, U64Serde};
use moldau_dsl::{Consumed, Grouped, Produced, StreamsBuilder};
use moldau_engine::{KafkaStreams, ProcessingGuarantee, Topology};

use crate::streams_util::streams_config;

/// The topology, with the aggregate behind a repartition topic.
pub fn topology() -> Topology {
    topology_with(true)
}

/// The topology; with `repartition`, the aggregate reads a repartition topic (a second
/// sub-topology), else the input directly. At-least-once checks that state is never applied
/// twice on the direct one: records repeated in a repartition topic (an at-least-once upstream
/// re-sending after a crash) are input the aggregate cannot tell from new records.
pub fn topology_with(repartition: bool) -> Topology {
    let b = StreamsBuilder::new();
    let data = b.stream_keyed("data", Consumed::with(StringSerde, U64Serde));
    data.to("echo", Produced::with(StringSerde, U64Serde));
    let keyed = if repartition { data.select_key(|k: &String, _| k.clone()) } else { data };
    keyed
        .group_by_key(Grouped::with(StringSerde, U64Serde).named("by-key"))
        .aggregate(|| (0u64, 0u64), |_, v, (c, s)| (c + 1, s + v), "agg-store", BincodeSerde::<(u64, u64)>::default())
        .to_stream()
        .map_values(|a: Option<(u64, u64)>| a.map_or_else(String::new, |(c, s)| format!("{c}:{s}")))
        .to("agg", Produced::with(StringSerde, StringSerde));
    b.build().expect("the crash-test topology builds")
}

/// How the crash-test application runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Stream threads.
    pub threads: usize,
    /// Whether the aggregate reads a repartition topic (see [`topology_with`]).
    pub repartition: bool,
    /// The commit interval.
    pub commit_interval: Duration,
}

impl RunOptions {
    /// Parses `key=value` arguments (`threads`, `repartition`, `commit-ms`) over the defaults:
    /// one thread, a repartition topic, 100 ms.
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut o = RunOptions { threads: 1, repartition: true, commit_interval: Duration::from_millis(100) };
        for a in args {
            let (k, v) = a.split_once('=').ok_or_else(|| anyhow::anyhow!("'{a}' is not key=value"))?;
            match k {
                "threads" => o.threads = v.parse()?,
                "repartition" => o.repartition = v.parse()?,
                "commit-ms" => o.commit_interval = Duration::from_millis(v.parse()?),
                _ => anyhow::bail!("unknown option '{k}'"),
            }
        }
        Ok(o)
    }

    /// The options as arguments for [`RunOptions::parse`].
    pub fn to_args(&self) -> Vec<String> {
        vec![
            format!("threads={}", self.threads),
            format!("repartition={}", self.repartition),
            format!("commit-ms={}", self.commit_interval.as_millis()),
        ]
    }
}

/// Runs the application with `options`'s stream threads until the process is killed, printing
/// `started` once running and then, every 100 ms, `metrics restored=<n> relogged=<n>
/// recoveries=<n> rebalances=<n> commits=<n>` (what the crash tests prove their premise from).
pub fn run(
    bootstrap: &str,
    guarantee: ProcessingGuarantee,
    state_dir: &Path,
    options: &RunOptions,
) -> anyhow::Result<()> {
    let config = streams_config("crash-test", bootstrap, state_dir, guarantee)
        .with_threads(options.threads)
        .with_commit_interval(options.commit_interval);
    let mut app = KafkaStreams::new(topology_with(options.repartition), config)?;
    app.start()?;
    println!("started");
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let m = app.metrics();
        println!(
            "metrics restored={} relogged={} recoveries={} rebalances={} commits={}",
            m.restored, m.relogged, m.recoveries, m.rebalances, m.commits
        );
        if let Some(e) = app.errors().first() {
            anyhow::bail!("the application failed: {e}");
        }
    }
}
