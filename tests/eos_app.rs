//! The applications of the crash tests (after Kafka Streams' EosTest and SmokeTest), chosen with
//! [`App`]: the aggregate (keyed `u64` records on `data` are echoed to `echo` and, through a
//! repartition topic, folded per key into `count:sum` on `agg`), windows (final tumbling-window
//! counts and session counts of `data`), and a KStream–KTable join (`orders` enriched from
//! `customers`).

use std::path::Path;
use std::time::Duration;

use moldau_dsl::state::{BincodeSerde, StringSerde, U64Serde};
use moldau_dsl::{Consumed, Grouped, Produced, SessionWindows, StreamsBuilder, Suppressed, TimeWindows};
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

/// Final counts of `data` per key in tumbling 1 s windows with 500 ms of grace
/// (`<prefix>wins`, `key@start` → count, emitted once the window closes) and per session with
/// a 200 ms inactivity gap and 500 ms of grace (`<prefix>sessions`, `key@start-end` → count or
/// `-` for a session merged away, suppressed until the session closes). Records are read from
/// the input directly, so each task sees one partition in offset order and its output depends
/// on the input alone: a run with kills must emit exactly what a run without does.
pub fn windows_topology(prefix: &str) -> Topology {
    let b = StreamsBuilder::new();
    let grouped = b
        .stream_keyed("data", Consumed::with(StringSerde, U64Serde))
        .group_by_key(Grouped::with(StringSerde, U64Serde));
    grouped
        .windowed_by(TimeWindows::of_size_and_grace(1_000, 500))
        .emit_on_window_close()
        .count("win-final")
        .to_stream()
        .map(|w, n: Option<u64>| {
            (format!("{}@{}", w.key, w.window.start), n.map_or_else(|| "-".into(), |n| n.to_string()))
        })
        .to(&format!("{prefix}wins"), Produced::with(StringSerde, StringSerde));
    grouped
        .windowed_by_session(SessionWindows::with_inactivity_gap_and_grace(200, 500))
        .count("sessions")
        .suppress(Suppressed::until_window_closes())
        .to_stream()
        .map(|w, n: Option<u64>| {
            (format!("{}@{}-{}", w.key, w.window.start, w.window.end), n.map_or_else(|| "-".into(), |n| n.to_string()))
        })
        .to(&format!("{prefix}sessions"), Produced::with(StringSerde, StringSerde));
    b.build().expect("the windows topology builds")
}

/// Orders (`orders`: customer id → order number) left-joined with the customers table
/// (`customers`: id → name) into `enriched` as `<order>:<name>` (`?` for no customer).
pub fn join_topology() -> Topology {
    let b = StreamsBuilder::new();
    let customers = b.table("customers", Consumed::with(StringSerde, StringSerde), "customers");
    b.stream_keyed("orders", Consumed::with(StringSerde, U64Serde))
        .left_join(
            &customers,
            |o: &u64, c: Option<&String>| format!("{o}:{}", c.map_or("?", String::as_str)),
            Grouped::with(StringSerde, U64Serde),
        )
        .to("enriched", Produced::with(StringSerde, StringSerde));
    b.build().expect("the join topology builds")
}

/// Which crash-test application runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    /// Echo and running aggregate ([`topology_with`]).
    Agg,
    /// Final window and session counts ([`windows_topology`]).
    Windows,
    /// KStream–KTable join ([`join_topology`]).
    Join,
}

impl App {
    fn name(self) -> &'static str {
        match self {
            App::Agg => "agg",
            App::Windows => "windows",
            App::Join => "join",
        }
    }
}

/// How the crash-test application runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The application.
    pub app: App,
    /// Stream threads.
    pub threads: usize,
    /// Whether the aggregate reads a repartition topic (see [`topology_with`]).
    pub repartition: bool,
    /// The commit interval.
    pub commit_interval: Duration,
}

impl RunOptions {
    /// Parses `key=value` arguments (`app`, `threads`, `repartition`, `commit-ms`) over the
    /// defaults: the aggregate, one thread, a repartition topic, 100 ms.
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut o = RunOptions::new(App::Agg);
        for a in args {
            let (k, v) = a.split_once('=').ok_or_else(|| anyhow::anyhow!("'{a}' is not key=value"))?;
            match k {
                "app" => {
                    o.app = [App::Agg, App::Windows, App::Join]
                        .into_iter()
                        .find(|a| a.name() == v)
                        .ok_or_else(|| anyhow::anyhow!("unknown app '{v}' (agg, windows, join)"))?;
                }
                "threads" => o.threads = v.parse()?,
                "repartition" => o.repartition = v.parse()?,
                "commit-ms" => o.commit_interval = Duration::from_millis(v.parse()?),
                _ => anyhow::bail!("unknown option '{k}'"),
            }
        }
        Ok(o)
    }

    /// The defaults for `app`: one thread, a repartition topic, 100 ms commits.
    pub fn new(app: App) -> Self {
        RunOptions { app, threads: 1, repartition: true, commit_interval: Duration::from_millis(100) }
    }

    /// The options as arguments for [`RunOptions::parse`].
    pub fn to_args(&self) -> Vec<String> {
        vec![
            format!("app={}", self.app.name()),
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
    let config = streams_config(&format!("crash-test-{}", options.app.name()), bootstrap, state_dir, guarantee)
        .with_threads(options.threads)
        .with_commit_interval(options.commit_interval);
    let topology = match options.app {
        App::Agg => topology_with(options.repartition),
        App::Windows => windows_topology(""),
        App::Join => join_topology(),
    };
    let mut app = KafkaStreams::new(topology, config)?;
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
