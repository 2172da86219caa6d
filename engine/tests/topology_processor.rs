//! The Processor API and Topology through the test driver: typed wiring, stores, punctuations,
//! record metadata, sub-topologies joined by a repartition topic, and clear errors.

use moldau_engine::processor::{nullable, required, Nullable, RecordSerde, Required};
use moldau_engine::state::{BincodeSerde, KeyValueStore, StoreOptions, StringSerde, U64Serde};
use moldau_engine::testing::TopologyTestDriver;
use moldau_engine::{
    Error, InitContext, Processor, ProcessorContext, PunctuationType, PunctuatorId, Record, StoreBuilder, StoreHandle,
    Topology,
};

type Counts = KeyValueStore<String, u64>;

/// Splits lines into words keyed by the word.
struct Split;

impl Processor<Option<String>, String, String, String> for Split {
    fn process(
        &mut self,
        r: Record<Option<String>, String>,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) -> moldau_engine::Result<()> {
        let text = r.value.clone();
        for w in text.split_whitespace() {
            ctx.forward(r.clone().with_key_value(w.to_lowercase(), w.to_string()))?;
        }
        Ok(())
    }
}

/// Counts per key in a store; emits every update, and on each stream-time punctuation emits
/// `"__total"` with the number of keys.
struct Count {
    store: Option<StoreHandle<Counts>>,
    metadata: Vec<String>,
}

impl Processor<String, String, String, u64> for Count {
    fn init(&mut self, ctx: &mut InitContext<'_>) -> moldau_engine::Result<()> {
        self.store = Some(ctx.store::<Counts>("counts")?);
        ctx.schedule(1000, PunctuationType::StreamTime)?;
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, u64>,
    ) -> moldau_engine::Result<()> {
        let m = ctx.record_metadata().expect("a record has metadata");
        self.metadata.push(format!("{}-{}@{}", m.topic, m.partition, m.offset));
        let n = {
            let store = self.store.as_ref().unwrap();
            let mut st = store.get();
            let n = st.get(&r.key)?.unwrap_or(0) + 1;
            st.put(&r.key, &n, r.timestamp)?;
            n
        };
        ctx.forward(r.with_value(n))
    }

    fn punctuate(
        &mut self,
        _: PunctuatorId,
        time: i64,
        ctx: &mut ProcessorContext<'_, String, u64>,
    ) -> moldau_engine::Result<()> {
        assert!(ctx.record_metadata().is_none(), "a punctuation has no record");
        let keys = self.store.as_ref().unwrap().get().all()?.len() as u64;
        ctx.forward(Record::new("__total".to_string(), keys, time))
    }
}

fn word_count() -> Topology {
    let mut t = Topology::new();
    t.add_source::<Option<String>, String>("lines", &["text"], nullable(StringSerde), required(StringSerde))
        .unwrap()
        .add_processor("split", || Split, &["lines"])
        .unwrap()
        .add_processor("count", || Count { store: None, metadata: Vec::new() }, &["split"])
        .unwrap()
        .add_state_store(
            StoreBuilder::key_value::<String, u64>("counts", StringSerde, BincodeSerde::default()),
            &["count"],
        )
        .unwrap()
        .add_sink::<String, u64>("out", "counts-out", required(StringSerde), required(U64Serde), &["count"])
        .unwrap();
    t
}

fn pipe_line(d: &mut TopologyTestDriver, line: &str, ts: i64) {
    d.pipe("text", &NO_KEY, &Required(StringSerde), &None, &line.to_string(), ts).unwrap();
}

/// Null keys of the input topics.
const NO_KEY: Nullable<StringSerde> = Nullable(StringSerde);

fn read(d: &mut TopologyTestDriver) -> Vec<(String, u64, i64)> {
    d.read_output_typed("counts-out", &Required(StringSerde), &Required(U64Serde)).unwrap()
}

#[test]
fn should_describe_sub_topologies_nodes_stores_and_topics_like_kafka_streams() {
    let text = word_count().describe().to_string();
    let expected = "\
Topologies:
   Sub-topology: 0
    Source: lines (topics: [text])
      --> split
    Processor: split (stores: [])
      --> count
      <-- lines
    Processor: count (stores: [counts])
      --> out
      <-- split
    Sink: out (topic: counts-out)
      <-- count

";
    assert_eq!(text, expected);
}

#[test]
fn should_count_words_with_a_store_and_punctuate_on_stream_time() {
    let mut d = TopologyTestDriver::new(word_count()).unwrap();
    pipe_line(&mut d, "the cat", 10);
    pipe_line(&mut d, "The dog", 500);
    pipe_line(&mut d, "cat", 1500);
    let out = read(&mut d);
    let expected: Vec<(String, u64, i64)> = vec![
        ("the".into(), 1, 10),
        ("cat".into(), 1, 10),
        ("__total".into(), 2, 10), // first punctuation when stream time is first known
        ("the".into(), 2, 500),
        ("dog".into(), 1, 500),
        ("cat".into(), 2, 1500),
        ("__total".into(), 3, 1500), // 1500 >= 10 + 1000
    ];
    assert_eq!(out, expected);
    let counts = d.store::<Counts>("counts").unwrap();
    assert_eq!(counts.get().get(&"the".to_string()).unwrap(), Some(2));
    assert_eq!(d.changelog("counts").len(), 5, "one changelog record per store write");
}

#[test]
fn should_keep_state_in_rocksdb_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut d = TopologyTestDriver::with_state_dir(word_count(), dir.path()).unwrap();
        pipe_line(&mut d, "a a b", 1);
    }
    let mut d = TopologyTestDriver::with_state_dir(word_count(), dir.path()).unwrap();
    pipe_line(&mut d, "a", 2);
    let out = read(&mut d);
    assert!(out.contains(&("a".into(), 3, 2)), "the count resumed from RocksDB: {out:?}");
}

/// Re-keys by the first letter and sends through a repartition topic to a second
/// sub-topology.
#[test]
fn should_split_at_a_repartition_topic_and_feed_it_to_the_next_sub_topology() {
    let mut t = Topology::new();
    t.add_source::<Option<String>, String>("in", &["words"], nullable(StringSerde), required(StringSerde))
        .unwrap()
        .add_processor(
            "by-letter",
            || {
                moldau_engine::processor::from_fn(
                    |r: Record<Option<String>, String>, ctx: &mut ProcessorContext<'_, String, String>| {
                        let k = r.value.chars().next().unwrap_or('_').to_string();
                        ctx.forward(r.with_key(k))
                    },
                )
            },
            &["in"],
        )
        .unwrap()
        .add_sink::<String, String>(
            "to-repartition",
            "app-repartition",
            required(StringSerde),
            required(StringSerde),
            &["by-letter"],
        )
        .unwrap()
        .add_source::<String, String>(
            "from-repartition",
            &["app-repartition"],
            required(StringSerde),
            required(StringSerde),
        )
        .unwrap()
        .add_processor("count", || Count { store: None, metadata: Vec::new() }, &["from-repartition"])
        .unwrap()
        .add_state_store(
            StoreBuilder::key_value::<String, u64>("counts", StringSerde, BincodeSerde::default()),
            &["count"],
        )
        .unwrap()
        .add_sink::<String, u64>("out", "counts-out", required(StringSerde), required(U64Serde), &["count"])
        .unwrap();
    assert_eq!(t.subtopology_count(), 2);
    assert_eq!(t.source_topics(1), vec!["app-repartition".to_string()]);
    assert!(t
        .describe()
        .to_string()
        .contains("   Sub-topology: 1\n    Source: from-repartition (topics: [app-repartition])"));
    let mut d = TopologyTestDriver::new(t).unwrap();
    for (i, w) in ["apple", "avocado", "banana"].iter().enumerate() {
        d.pipe("words", &NO_KEY, &Required(StringSerde), &None, &w.to_string(), i as i64).unwrap();
    }
    let counted: Vec<(String, u64)> =
        read(&mut d).into_iter().filter(|(k, _, _)| k != "__total").map(|(k, v, _)| (k, v)).collect();
    assert_eq!(counted, vec![("a".into(), 1), ("a".into(), 2), ("b".into(), 1)]);
    assert_eq!(d.read_output("app-repartition").len(), 3);
}

/// Emits the number of records seen every 100 ms of wall-clock time.
struct Ticker(u64);

impl Processor<Option<String>, String, String, u64> for Ticker {
    fn init(&mut self, ctx: &mut InitContext<'_>) -> moldau_engine::Result<()> {
        ctx.schedule(100, PunctuationType::WallClockTime)?;
        Ok(())
    }
    fn process(
        &mut self,
        _: Record<Option<String>, String>,
        _: &mut ProcessorContext<'_, String, u64>,
    ) -> moldau_engine::Result<()> {
        self.0 += 1;
        Ok(())
    }
    fn punctuate(
        &mut self,
        _: PunctuatorId,
        time: i64,
        ctx: &mut ProcessorContext<'_, String, u64>,
    ) -> moldau_engine::Result<()> {
        ctx.forward(Record::new("seen".into(), self.0, time))
    }
}

#[test]
fn should_punctuate_on_wall_clock_time() {
    let mut t = Topology::new();
    t.add_source::<Option<String>, String>("in", &["text"], nullable(StringSerde), required(StringSerde))
        .unwrap()
        .add_processor("tick", || Ticker(0), &["in"])
        .unwrap()
        .add_sink::<String, u64>("out", "counts-out", required(StringSerde), required(U64Serde), &["tick"])
        .unwrap();
    // The task starts with the driver's wall clock at 0, known at once: it fires, next at 100
    // (as a KafkaStreams task fires at its first turn).
    let mut d = TopologyTestDriver::new(t).unwrap();
    d.advance_wall_clock(10).unwrap(); // 10: not due
    pipe_line(&mut d, "x", 0);
    pipe_line(&mut d, "y", 0);
    d.advance_wall_clock(50).unwrap(); // 60: not due
    d.advance_wall_clock(60).unwrap(); // 120: fires
    d.advance_wall_clock(500).unwrap(); // 620: fires once for the missed intervals
    assert_eq!(read(&mut d), vec![("seen".into(), 0, 0), ("seen".into(), 2, 120), ("seen".into(), 2, 620)]);
}

#[test]
fn should_refuse_a_processor_whose_input_types_differ_from_its_parent() {
    let mut t = Topology::new();
    t.add_source::<Option<String>, String>("lines", &["text"], nullable(StringSerde), required(StringSerde)).unwrap();
    let err = t.add_processor("count", || Count { store: None, metadata: Vec::new() }, &["lines"]).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::InvalidTopology(_)), "{msg}");
    assert!(msg.contains("'count' takes (alloc::string::String, alloc::string::String)"), "{msg}");
    assert!(
        msg.contains("'lines' forwards (core::option::Option<alloc::string::String>, alloc::string::String)"),
        "{msg}"
    );
    assert!(t
        .add_processor("x", || Split, &["nope"])
        .unwrap_err()
        .to_string()
        .contains("parent 'nope' does not exist"));
    let dup = t.add_source::<Option<String>, String>("again", &["text"], nullable(StringSerde), required(StringSerde));
    assert!(dup.unwrap_err().to_string().contains("topic 'text' is already read by source 'lines'"));
}

#[test]
fn should_say_which_store_a_processor_may_not_use() {
    let mut t = Topology::new();
    t.add_source::<Option<String>, String>("lines", &["text"], nullable(StringSerde), required(StringSerde))
        .unwrap()
        .add_processor("split", || Split, &["lines"])
        .unwrap()
        .add_processor("count", || Count { store: None, metadata: Vec::new() }, &["split"])
        .unwrap()
        .add_state_store(
            StoreBuilder::key_value::<String, u64>("other", StringSerde, BincodeSerde::default())
                .with_options(StoreOptions::default()),
            &["count"],
        )
        .unwrap();
    let err = TopologyTestDriver::new(t).unwrap_err().to_string();
    assert!(err.contains("processor 'count' cannot use store 'counts': the store is not connected"), "{err}");
}

#[test]
fn should_name_topic_partition_and_offset_when_a_value_does_not_deserialize() {
    let mut d = TopologyTestDriver::new(word_count()).unwrap();
    // Skipped and counted by default, as under KafkaStreams.
    d.pipe_raw("text", None, Some(vec![0xff, 0xfe]), 1).unwrap();
    assert_eq!(d.rejected(), 1);
    d.set_deserialization_handler(&moldau_engine::kafka::DeserializationHandler::LogAndFail);
    pipe_line(&mut d, "ok", 1);
    let err = d.pipe_raw("text", None, Some(vec![0xff, 0xfe]), 2).unwrap_err().to_string();
    assert!(err.contains("source 'lines': cannot deserialize the value of text-0@2"), "{err}");
    let err = d.pipe_raw("text", None, None, 2).unwrap_err().to_string();
    assert!(err.contains("null where a value is required"), "{err}");
    let _: &dyn RecordSerde<Option<String>> = &NO_KEY;
}

/// Counts per key in tumbling 10 ms windows kept in a window store, emitting
/// `key@start=count`.
struct WindowedCount(Option<StoreHandle<moldau_engine::state::WindowStore<String, u64>>>);

impl Processor<String, String, String, String> for WindowedCount {
    fn init(&mut self, ctx: &mut InitContext<'_>) -> moldau_engine::Result<()> {
        self.0 = Some(ctx.store("windows")?);
        Ok(())
    }
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) -> moldau_engine::Result<()> {
        let start = r.timestamp - r.timestamp.rem_euclid(10);
        let n = {
            let handle = self.0.as_ref().unwrap();
            let mut st = handle.get();
            let n = st.fetch(&r.key, start)?.unwrap_or(0) + 1;
            if !st.put(&r.key, &n, start, r.timestamp)? {
                return Ok(()); // the window is past retention: dropped
            }
            n
        };
        let key = r.key.clone();
        ctx.forward(r.with_value(format!("{key}@{start}={n}")))
    }
}

#[test]
fn should_give_processors_window_stores_with_retention() {
    use moldau_engine::state::WindowSpec;
    let mut t = Topology::new();
    t.add_source::<String, String>("in", &["clicks"], required(StringSerde), required(StringSerde))
        .unwrap()
        .add_processor("count", || WindowedCount(None), &["in"])
        .unwrap()
        .add_state_store(
            StoreBuilder::window::<String, u64>(
                "windows",
                WindowSpec::new(10, 30).with_segment_interval(10),
                StringSerde,
                U64Serde,
            ),
            &["count"],
        )
        .unwrap()
        .add_sink::<String, String>("out", "counts-out", required(StringSerde), required(StringSerde), &["count"])
        .unwrap();
    let mut d = TopologyTestDriver::new(t).unwrap();
    for (k, ts) in [("a", 1), ("a", 5), ("b", 7), ("a", 12), ("a", 45), ("a", 3)] {
        d.pipe("clicks", &Required(StringSerde), &Required(StringSerde), &k.to_string(), &"x".to_string(), ts).unwrap();
    }
    let out: Vec<String> = d
        .read_output_typed("counts-out", &Required(StringSerde), &Required(StringSerde))
        .unwrap()
        .into_iter()
        .map(|(_, v, _)| v)
        .collect();
    assert_eq!(
        out,
        vec!["a@0=1", "a@0=2", "b@0=1", "a@10=1", "a@40=1"],
        "the late record at 3 is past retention at 45"
    );
}

/// Holds every record back and forwards the batch, tagged with its size, when flushed.
struct Batcher(Vec<Record<String, String>>);

impl Processor<String, String, String, String> for Batcher {
    fn process(
        &mut self,
        r: Record<String, String>,
        _ctx: &mut ProcessorContext<'_, String, String>,
    ) -> moldau_engine::Result<()> {
        self.0.push(r);
        Ok(())
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_, String, String>) -> moldau_engine::Result<()> {
        let n = self.0.len();
        for r in self.0.drain(..) {
            let v = format!("{}/{n}", r.value);
            ctx.forward(r.with_value(v))?;
        }
        Ok(())
    }
}

#[test]
fn should_flush_processors_that_hold_records_back_parents_first() {
    let mut t = Topology::new();
    t.add_source::<String, String>("in", &["in"], required(StringSerde), required(StringSerde))
        .unwrap()
        .add_processor("first", || Batcher(Vec::new()), &["in"])
        .unwrap()
        .add_processor("second", || Batcher(Vec::new()), &["first"])
        .unwrap()
        .add_sink::<String, String>("out", "out", required(StringSerde), required(StringSerde), &["second"])
        .unwrap();
    let mut d = TopologyTestDriver::new(t).unwrap();
    for (i, k) in ["a", "b"].into_iter().enumerate() {
        d.pipe("in", &Required(StringSerde), &Required(StringSerde), &k.to_string(), &format!("v{i}"), i as i64)
            .unwrap();
    }
    let out: Vec<String> = d
        .read_output_typed("out", &Required(StringSerde), &Required(StringSerde))
        .unwrap()
        .into_iter()
        .map(|(k, v, _)| format!("{k}={v}"))
        .collect();
    // Each record is held by both processors and leaves at the commit after it: the second
    // processor sees what the first flushed in the same round (a child flushed before its
    // parent would hold it to the next round and tag it with another size).
    assert_eq!(out, vec!["a=v0/1/1", "b=v1/1/1"]);
}

/// Holds records, and at flush rejects the ones whose value is "bad" (as a processor that
/// decodes a batch at a time finds them) and forwards the others.
struct RejectAtFlush {
    held: Vec<(Option<String>, String, i64, i32, i64)>,
}

impl Processor<Option<String>, String, Option<String>, String> for RejectAtFlush {
    fn process(
        &mut self,
        r: Record<Option<String>, String>,
        ctx: &mut ProcessorContext<'_, Option<String>, String>,
    ) -> moldau_engine::Result<()> {
        let m = ctx.record_metadata().expect("a record has metadata");
        self.held.push((r.key, r.value, r.timestamp, m.partition, m.offset));
        Ok(())
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_, Option<String>, String>) -> moldau_engine::Result<()> {
        for (key, value, timestamp, partition, offset) in std::mem::take(&mut self.held) {
            if value == "bad" {
                let input = moldau_engine::BadInput {
                    topic: "text",
                    partition,
                    offset,
                    key: key.as_deref().map(str::as_bytes),
                    value: Some(value.as_bytes()),
                    timestamp,
                };
                ctx.reject(input, "the value is bad")?;
            } else {
                ctx.forward(Record::new(key, value, timestamp))?;
            }
        }
        Ok(())
    }
}

fn rejecting() -> TopologyTestDriver {
    let mut t = Topology::new();
    t.add_source::<Option<String>, String>("lines", &["text"], nullable(StringSerde), required(StringSerde))
        .unwrap()
        .add_processor("check", || RejectAtFlush { held: Vec::new() }, &["lines"])
        .unwrap()
        .add_sink::<Option<String>, String>("out", "good", nullable(StringSerde), required(StringSerde), &["check"])
        .unwrap();
    TopologyTestDriver::new(t).unwrap()
}

#[test]
fn should_hand_records_a_processor_rejects_to_the_deserialization_handler() {
    use moldau_engine::kafka::DeserializationHandler;
    let pipe = |d: &mut TopologyTestDriver, key: &str, value: &str, ts: i64| {
        d.pipe_raw("text", Some(key.as_bytes().to_vec()), Some(value.as_bytes().to_vec()), ts)
    };
    // Skipped by default: counted, nothing else written, good records flow.
    let mut d = rejecting();
    pipe(&mut d, "a", "ok", 1).unwrap();
    pipe(&mut d, "b", "bad", 2).unwrap();
    pipe(&mut d, "c", "fine", 3).unwrap();
    let values = |d: &mut TopologyTestDriver, topic: &str| -> Vec<String> {
        d.read_output(topic).into_iter().map(|r| String::from_utf8(r.value.unwrap()).unwrap()).collect()
    };
    assert_eq!(values(&mut d, "good"), ["ok", "fine"]);
    assert_eq!(d.rejected(), 1);
    assert!(d.read_output("dead").is_empty());

    // Dead-lettered: the raw record, with the error and its origin in the headers.
    let mut d = rejecting();
    d.set_deserialization_handler(&DeserializationHandler::DeadLetter("dead".into()));
    pipe(&mut d, "a", "ok", 1).unwrap();
    pipe(&mut d, "b", "bad", 2).unwrap();
    pipe(&mut d, "c", "fine", 3).unwrap();
    assert_eq!(values(&mut d, "good"), ["ok", "fine"]);
    let dead = d.read_output("dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].key.as_deref(), dead[0].value.as_deref(), dead[0].timestamp),
        (Some(&b"b"[..]), Some(&b"bad"[..]), 2)
    );
    let header = |name: &str| {
        dead[0]
            .headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value.clone())
            .map(|v| String::from_utf8(v).unwrap())
    };
    assert_eq!(header("__moldau.origin.topic").as_deref(), Some("text"));
    assert_eq!(header("__moldau.origin.offset").as_deref(), Some("1"));
    let error = header("__moldau.error").unwrap();
    assert!(error.contains("the value is bad") && error.contains("text-0@1"), "{error}");
    assert_eq!(d.rejected(), 1);

    // Fail: the error stops the task, naming the record.
    let mut d = rejecting();
    d.set_deserialization_handler(&DeserializationHandler::LogAndFail);
    pipe(&mut d, "a", "ok", 1).unwrap();
    let e = pipe(&mut d, "b", "bad", 2).unwrap_err();
    assert!(matches!(&e, Error::Deserialization { offset: 1, .. }), "{e}");
}
