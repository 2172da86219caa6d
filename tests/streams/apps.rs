//! Topologies shared by the streams tests.

use moldau_dsl::state::{StringSerde, U64Serde};
use moldau_dsl::{Consumed, Grouped, Produced, StreamsBuilder};
use moldau_engine::Topology;

/// Word count: lines of `text` → words → repartition by word → count → `counts`.
pub fn word_count() -> Topology {
    let b = StreamsBuilder::new();
    b.stream("text", Consumed::with(StringSerde, StringSerde))
        .flat_map_values(|line: String| line.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>())
        .group_by(|_, word: &String| word.clone(), Grouped::with(StringSerde, StringSerde).named("words"))
        .count("counts")
        .to_stream()
        .map_values(|n: Option<u64>| n.unwrap_or(0))
        .to("counts", Produced::with(StringSerde, U64Serde));
    b.build().expect("word count builds")
}
