//! The application of the crash tests (after Kafka Streams' EosTest): keyed `u64` records on
//! `data` are echoed to `echo` and, through a repartition topic, folded per key into
//! `count:sum` on `agg`.

use std::path::Path;
use std::time::Duration;

use moldau_dsl::state::{BincodeSerde, StringSerde, U64Serde};
use moldau_dsl::{Consumed, Grouped, Produced, StreamsBuilder};
use moldau_engine::{KafkaStreams, ProcessingGuarantee, Topology};

use crate::streams_util::streams_config;

/// The topology.
pub fn topology() -> Topology {
    let b = StreamsBuilder::new();
    let data = b.stream_keyed("data", Consumed::with(StringSerde, U64Serde));
    data.to("echo", Produced::with(StringSerde, U64Serde));
    data.select_key(|k: &String, _| k.clone())
        .group_by_key(Grouped::with(StringSerde, U64Serde).named("by-key"))
        .aggregate(|| (0u64, 0u64), |_, v, (c, s)| (c + 1, s + v), "agg-store", BincodeSerde::<(u64, u64)>::default())
        .to_stream()
        .map_values(|a: Option<(u64, u64)>| a.map_or_else(String::new, |(c, s)| format!("{c}:{s}")))
        .to("agg", Produced::with(StringSerde, StringSerde));
    b.build().expect("the crash-test topology builds")
}

/// Runs the application until the process is killed.
pub fn run(bootstrap: &str, guarantee: ProcessingGuarantee, state_dir: &Path) -> anyhow::Result<()> {
    let config = streams_config("crash-test", bootstrap, state_dir, guarantee);
    let mut app = KafkaStreams::new(topology(), config)?;
    app.start()?;
    println!("started");
    loop {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(e) = app.errors().first() {
            anyhow::bail!("the application failed: {e}");
        }
    }
}
