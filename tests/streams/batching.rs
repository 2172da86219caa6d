//! Processors that hold records back and forward them in batches (SQL evaluates a batch at a
//! time) under exactly-once: what they hold is flushed when the task's queue runs dry and
//! before each commit, so every input record's output is in the transaction that commits its
//! offset, once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moldau_dsl::state::StringSerde;
use moldau_dsl::{Consumed, Produced, StreamsBuilder};
use moldau_engine::{KafkaStreams, ProcessingGuarantee, Processor, ProcessorContext, Record};
use moldau_tests::streams_util::{produce_strings, read_topic, streams_config};
use moldau_tests::{init_logging, must_create_topic, must_start_cluster};

/// Forwards only when flushed; records the largest batch it held.
struct Batcher {
    held: Vec<Record<String, String>>,
    largest: Arc<AtomicUsize>,
}

impl Processor<String, String, String, String> for Batcher {
    fn process(
        &mut self,
        r: Record<String, String>,
        _ctx: &mut ProcessorContext<'_, String, String>,
    ) -> moldau_engine::Result<()> {
        self.held.push(r);
        Ok(())
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_, String, String>) -> moldau_engine::Result<()> {
        self.largest.fetch_max(self.held.len(), Ordering::Relaxed);
        for r in self.held.drain(..) {
            ctx.forward(r)?;
        }
        Ok(())
    }
}

#[test]
fn should_commit_every_record_a_batching_processor_held_exactly_once() {
    init_logging();
    let cluster = must_start_cluster(1);
    let bootstrap = cluster.bootstrap_servers().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(must_create_topic(&bootstrap, "batch-in", 2, 1));
    rt.block_on(must_create_topic(&bootstrap, "batch-out", 2, 1));
    let n = 5_000;
    let records: Vec<(String, String, i64)> =
        (0..n).map(|i| (format!("k{}", i % 17), format!("v{i}"), 1_000 + i as i64)).collect();
    let refs: Vec<(&str, &str, i64)> = records.iter().map(|(k, v, t)| (k.as_str(), v.as_str(), *t)).collect();
    produce_strings(&bootstrap, "batch-in", &refs);

    let largest = Arc::new(AtomicUsize::new(0));
    let b = StreamsBuilder::new();
    let seen = largest.clone();
    b.stream_keyed("batch-in", Consumed::with(StringSerde, StringSerde))
        .process(move || Batcher { held: Vec::new(), largest: seen.clone() }, &[])
        .to("batch-out", Produced::with(StringSerde, StringSerde));
    let dir = tempfile::tempdir().unwrap();
    let config = streams_config("batching", &bootstrap, dir.path(), ProcessingGuarantee::ExactlyOnceV2);
    let mut app = KafkaStreams::new(b.build().unwrap(), config).unwrap();
    app.start().unwrap();
    let out = read_topic(&bootstrap, "batch-out", n, Duration::from_secs(60), Duration::from_millis(500));
    app.close().unwrap();
    cluster.shutdown();

    assert!(largest.load(Ordering::Relaxed) > 1, "the processor held more than one record at a time");
    assert_eq!(out.len(), n, "every record once, none missing or repeated");
    let mut values: Vec<String> = out.iter().map(|r| r.value_str()).collect();
    values.sort();
    let mut expected: Vec<String> = records.iter().map(|(_, v, _)| v.clone()).collect();
    expected.sort();
    assert_eq!(values, expected);
}
