//! Every DSL operator through the topology test driver, with exact expected outputs.

use std::sync::{Arc, Mutex};

use moldau_dsl::state::{BincodeSerde, StringSerde, U64Serde};
use moldau_dsl::{Branched, Consumed, Grouped, KStream, Produced, StreamsBuilder};
use moldau_engine::processor::{Nullable, Required};
use moldau_engine::testing::TopologyTestDriver;
use moldau_engine::Topology;

const NO_KEY: Nullable<StringSerde> = Nullable(StringSerde);

fn text(b: &StreamsBuilder) -> KStream<Option<String>, String> {
    b.stream("in", Consumed::with(StringSerde, StringSerde))
}

fn keyed(b: &StreamsBuilder) -> KStream<String, String> {
    b.stream_keyed("in", Consumed::with(StringSerde, StringSerde))
}

fn strings() -> Produced<String, String> {
    Produced::with(StringSerde, StringSerde)
}

fn driver(t: Topology) -> TopologyTestDriver {
    TopologyTestDriver::new(t).unwrap()
}

fn pipe(d: &mut TopologyTestDriver, key: &str, value: &str, ts: i64) {
    d.pipe("in", &Required(StringSerde), &Required(StringSerde), &key.to_string(), &value.to_string(), ts).unwrap();
}

fn pipe_unkeyed(d: &mut TopologyTestDriver, value: &str, ts: i64) {
    d.pipe("in", &NO_KEY, &Required(StringSerde), &None, &value.to_string(), ts).unwrap();
}

fn out(d: &mut TopologyTestDriver, topic: &str) -> Vec<(String, String)> {
    d.read_output_typed(topic, &Required(StringSerde), &Required(StringSerde))
        .unwrap()
        .into_iter()
        .map(|(k, v, _)| (k, v))
        .collect()
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn should_filter_map_and_flat_map() {
    let b = StreamsBuilder::new();
    let s = keyed(&b);
    s.filter(|_, v| v.len() > 2).to("filtered", strings());
    s.filter_not(|_, v| v.len() > 2).to("rejected", strings());
    s.map(|k, v| (v, k)).to("swapped", strings());
    s.map_values(|v| v.to_uppercase()).to("upper", strings());
    s.flat_map(|k, v| v.chars().map(move |c| (format!("{k}{c}"), c.to_string())).collect::<Vec<_>>())
        .to("chars", strings());
    s.flat_map_values(|v| v.split('-').map(str::to_string).collect::<Vec<_>>()).to("parts", strings());
    s.select_key(|_, v| v.chars().next().unwrap_or('_').to_string()).to("first-letter", strings());
    let mut d = driver(b.build().unwrap());
    pipe(&mut d, "k1", "ab", 1);
    pipe(&mut d, "k2", "x-yz", 2);
    assert_eq!(out(&mut d, "filtered"), kv(&[("k2", "x-yz")]));
    assert_eq!(out(&mut d, "rejected"), kv(&[("k1", "ab")]));
    assert_eq!(out(&mut d, "swapped"), kv(&[("ab", "k1"), ("x-yz", "k2")]));
    assert_eq!(out(&mut d, "upper"), kv(&[("k1", "AB"), ("k2", "X-YZ")]));
    assert_eq!(
        out(&mut d, "chars"),
        kv(&[("k1a", "a"), ("k1b", "b"), ("k2x", "x"), ("k2-", "-"), ("k2y", "y"), ("k2z", "z")])
    );
    assert_eq!(out(&mut d, "parts"), kv(&[("k1", "ab"), ("k2", "x"), ("k2", "yz")]));
    assert_eq!(out(&mut d, "first-letter"), kv(&[("a", "ab"), ("x", "x-yz")]));
}

#[test]
fn should_peek_for_each_and_merge() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let b = StreamsBuilder::new();
    let s = keyed(&b);
    let (p, f) = (seen.clone(), seen.clone());
    let peeked = s.peek(move |k, _| p.lock().unwrap().push(format!("peek {k}")));
    peeked.for_each(move |k, v| f.lock().unwrap().push(format!("each {k}={v}")));
    let evens = s.filter(|k, _| k.ends_with('2'));
    let odds = s.filter(|k, _| !k.ends_with('2')).map_values(|v| format!("odd {v}"));
    evens.merge(&odds).to("merged", strings());
    let mut d = driver(b.build().unwrap());
    pipe(&mut d, "k1", "a", 1);
    pipe(&mut d, "k2", "b", 2);
    assert_eq!(*seen.lock().unwrap(), vec!["peek k1", "each k1=a", "peek k2", "each k2=b"]);
    assert_eq!(out(&mut d, "merged"), kv(&[("k1", "odd a"), ("k2", "b")]));
}

#[test]
fn should_split_into_branches_with_a_default() {
    let b = StreamsBuilder::new();
    let branches = keyed(&b).split(
        Branched::new()
            .branch(|_, v: &String| v.starts_with('a'))
            .branch(|_, v: &String| v.starts_with('b'))
            .default_branch(),
    );
    assert_eq!(branches.len(), 3);
    for (i, s) in branches.iter().enumerate() {
        s.to(&format!("branch-{i}"), strings());
    }
    let mut d = driver(b.build().unwrap());
    for (i, v) in ["apple", "banana", "avocado", "cherry"].iter().enumerate() {
        pipe(&mut d, "k", v, i as i64);
    }
    assert_eq!(out(&mut d, "branch-0"), kv(&[("k", "apple"), ("k", "avocado")]));
    assert_eq!(out(&mut d, "branch-1"), kv(&[("k", "banana")]));
    assert_eq!(out(&mut d, "branch-2"), kv(&[("k", "cherry")]));
}

#[test]
fn should_choose_the_output_topic_per_record() {
    let b = StreamsBuilder::new();
    keyed(&b).to_dynamic(|k, _| format!("out-{k}"), strings());
    let mut d = driver(b.build().unwrap());
    pipe(&mut d, "a", "1", 1);
    pipe(&mut d, "b", "2", 2);
    assert_eq!(out(&mut d, "out-a"), kv(&[("a", "1")]));
    assert_eq!(out(&mut d, "out-b"), kv(&[("b", "2")]));
}

#[test]
fn should_count_words_through_an_automatic_repartition_topic() {
    let b = StreamsBuilder::new();
    text(&b)
        .flat_map_values(|line: String| line.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>())
        .group_by(|_, word: &String| word.clone(), Grouped::with(StringSerde, StringSerde).named("words"))
        .count("counts")
        .to_stream()
        .map_values(|n: Option<u64>| n.unwrap_or(0))
        .to("counts-out", Produced::with(StringSerde, U64Serde));
    let topology = b.build().unwrap();
    assert_eq!(topology.subtopology_count(), 2, "{}", topology.describe());
    assert_eq!(topology.source_topics(1), vec!["words-repartition".to_string()]);
    let mut d = driver(topology);
    pipe_unkeyed(&mut d, "the cat", 1);
    pipe_unkeyed(&mut d, "The dog", 2);
    let counts = d.read_output_typed("counts-out", &Required(StringSerde), &Required(U64Serde)).unwrap();
    let counts: Vec<(String, u64)> = counts.into_iter().map(|(k, v, _)| (k, v)).collect();
    assert_eq!(counts, vec![("the".into(), 1), ("cat".into(), 1), ("the".into(), 2), ("dog".into(), 1)]);
}

#[test]
fn should_not_repartition_when_the_key_did_not_change() {
    let b = StreamsBuilder::new();
    keyed(&b)
        .filter(|_, _| true)
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .count("counts")
        .to_stream()
        .map_values(|n: Option<u64>| n.unwrap_or(0).to_string())
        .to("counts-out", strings());
    let topology = b.build().unwrap();
    assert_eq!(topology.subtopology_count(), 1, "{}", topology.describe());
    let mut d = driver(topology);
    pipe(&mut d, "a", "x", 1);
    pipe(&mut d, "a", "y", 2);
    pipe(&mut d, "b", "z", 3);
    assert_eq!(out(&mut d, "counts-out"), kv(&[("a", "1"), ("a", "2"), ("b", "1")]));
}

#[test]
fn should_reduce_and_aggregate_per_key() {
    let b = StreamsBuilder::new();
    let grouped = keyed(&b).group_by_key(Grouped::with(StringSerde, StringSerde));
    grouped
        .reduce(|a, b| format!("{a}+{b}"), "joined", StringSerde)
        .to_stream()
        .map_values(|v: Option<String>| v.unwrap_or_default())
        .to("reduced", strings());
    grouped
        .aggregate(|| 0u64, |_, v: String, acc| acc + v.len() as u64, "lengths", BincodeSerde::<u64>::default())
        .to_stream()
        .map_values(|v: Option<u64>| v.unwrap_or(0).to_string())
        .to("aggregated", strings());
    let mut d = driver(b.build().unwrap());
    pipe(&mut d, "a", "x", 1);
    pipe(&mut d, "a", "yy", 2);
    pipe(&mut d, "b", "zzz", 3);
    assert_eq!(out(&mut d, "reduced"), kv(&[("a", "x"), ("a", "x+yy"), ("b", "zzz")]));
    assert_eq!(out(&mut d, "aggregated"), kv(&[("a", "1"), ("a", "3"), ("b", "3")]));
}

#[test]
fn should_materialize_a_table_and_filter_map_and_stream_it_with_deletes() {
    let b = StreamsBuilder::new();
    let table = b.table("in", Consumed::with(StringSerde, StringSerde), "users");
    assert_eq!(table.store_name(), Some("users"));
    table
        .filter(|_, v| !v.starts_with("banned"))
        .map_values(|v: &String| v.to_uppercase())
        .to_stream()
        .map_values(|v: Option<String>| v.unwrap_or_else(|| "<deleted>".into()))
        .to("visible", strings());
    let mut d = driver(b.build().unwrap());
    pipe(&mut d, "u1", "alice", 1);
    pipe(&mut d, "u2", "bob", 2);
    pipe(&mut d, "u1", "banned alice", 3); // stops matching: a delete downstream
    d.pipe_raw("in", Some(b"u2".to_vec()), None, 4).unwrap(); // a tombstone deletes u2
    pipe(&mut d, "u3", "banned carol", 5); // never visible: nothing forwarded
    assert_eq!(out(&mut d, "visible"), kv(&[("u1", "ALICE"), ("u2", "BOB"), ("u1", "<deleted>"), ("u2", "<deleted>")]));
    let users = d.store::<moldau_dsl::state::KeyValueStore<String, String>>("users").unwrap();
    assert_eq!(users.get().get(&"u1".to_string()).unwrap(), Some("banned alice".to_string()));
    assert_eq!(users.get().get(&"u2".to_string()).unwrap(), None);
}

#[test]
fn should_report_the_first_error_at_build() {
    let b = StreamsBuilder::new();
    keyed(&b).to("", strings());
    let err = b.build().unwrap_err();
    assert!(matches!(&err, moldau_dsl::Error::Topology(moldau_engine::Error::InvalidTopology(_))), "{err:?}");
    assert!(err.to_string().contains("empty topic name"), "{err}");
}

#[test]
fn should_name_each_kind_of_dsl_mistake_in_one_error_enum() {
    use moldau_dsl::{Error, SessionWindows, SlidingWindows, TimeWindows};
    let windows = |w: TimeWindows| {
        let b = StreamsBuilder::new();
        keyed(&b).group_by_key(Grouped::with(StringSerde, StringSerde)).windowed_by(w).count("w");
        b.build().unwrap_err()
    };
    assert!(matches!(windows(TimeWindows::of_size_with_no_grace(0)), Error::InvalidWindows { kind: "time", .. }));
    let e = windows(TimeWindows::of_size_with_no_grace(10).advance_by(20));
    assert!(e.to_string().contains("0 < advance <= size"), "{e}");
    let b = StreamsBuilder::new();
    keyed(&b)
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .windowed_by_session(SessionWindows::with_inactivity_gap_and_grace(0, 0))
        .count("s");
    assert!(matches!(b.build().unwrap_err(), Error::InvalidWindows { kind: "session", .. }));
    let b = StreamsBuilder::new();
    keyed(&b)
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .windowed_by_sliding(SlidingWindows::with_time_difference_and_grace(0, 0))
        .count("s");
    assert!(matches!(b.build().unwrap_err(), Error::InvalidWindows { kind: "sliding", .. }));
    // Into the engine's error, for code that builds and runs in one Result.
    let e: moldau_engine::Error = windows(TimeWindows::of_size_with_no_grace(-1)).into();
    assert!(matches!(&e, moldau_engine::Error::InvalidTopology(m) if m.contains("time windows")), "{e}");
}

fn windowed_counts(windows: moldau_dsl::TimeWindows, records: &[(&str, i64)]) -> Vec<String> {
    let b = StreamsBuilder::new();
    keyed(&b)
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .windowed_by(windows)
        .count("window-counts")
        .to_stream()
        .map(|w, n: Option<u64>| (format!("{}@{}-{}", w.key, w.window.start, w.window.end), n.unwrap_or(0).to_string()))
        .to("window-counts-out", strings());
    let mut d = driver(b.build().unwrap());
    for (k, ts) in records {
        pipe(&mut d, k, "x", *ts);
    }
    out(&mut d, "window-counts-out").into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

#[test]
fn should_count_in_tumbling_windows_and_drop_records_after_the_grace_period() {
    let got = windowed_counts(
        moldau_dsl::TimeWindows::of_size_and_grace(10, 5),
        &[("a", 1), ("a", 5), ("b", 9), ("a", 12), ("a", 8), ("a", 16), ("a", 3), ("b", 25)],
    );
    assert_eq!(
        got,
        vec![
            "a@0-10=1",
            "a@0-10=2",
            "b@0-10=1",
            "a@10-20=1",
            "a@0-10=3", // at stream time 12 the window [0, 10) is still in its grace period
            "a@10-20=2",
            // at stream time 16 >= 10 + 5 the window [0, 10) closed: the record at 3 is dropped
            "b@20-30=1",
        ]
    );
}

#[test]
fn should_count_in_hopping_windows() {
    let got = windowed_counts(moldau_dsl::TimeWindows::of_size_with_no_grace(10).advance_by(5), &[("a", 7), ("a", 12)]);
    assert_eq!(got, vec!["a@0-10=1", "a@5-15=1", "a@5-15=2", "a@10-20=1"]);
}

#[test]
fn should_emit_each_window_once_when_it_closes() {
    let b = StreamsBuilder::new();
    keyed(&b)
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .windowed_by(moldau_dsl::TimeWindows::of_size_and_grace(10, 5))
        .emit_on_window_close()
        .count("final-counts")
        .to_stream()
        .map(|w, n: Option<u64>| (format!("{}@{}-{}", w.key, w.window.start, w.window.end), n.unwrap_or(0).to_string()))
        .to("final-out", strings());
    let mut d = driver(b.build().unwrap());
    for (k, ts) in [("a", 1), ("a", 5), ("b", 9), ("a", 12), ("a", 8), ("a", 14)] {
        pipe(&mut d, k, "x", ts);
    }
    assert!(out(&mut d, "final-out").is_empty(), "nothing closed before stream time 15");
    pipe(&mut d, "c", "x", 15); // closes [0, 10)
    assert_eq!(out(&mut d, "final-out"), kv(&[("a@0-10", "3"), ("b@0-10", "1")]));
    pipe(&mut d, "a", "x", 3); // late: dropped, nothing re-emitted
    pipe(&mut d, "c", "x", 15);
    assert!(out(&mut d, "final-out").is_empty());
    pipe(&mut d, "c", "x", 100); // closes every older window, each once
    assert_eq!(out(&mut d, "final-out"), kv(&[("a@10-20", "2"), ("c@10-20", "2")]));
}

/// Orders keyed by customer id joined with the customers table.
fn enrichment(left: bool) -> Topology {
    let b = StreamsBuilder::new();
    let customers = b.table("customers", Consumed::with(StringSerde, StringSerde), "customers-store");
    let orders = b.stream_keyed("orders", Consumed::with(StringSerde, StringSerde));
    let joined = if left {
        orders.left_join(
            &customers,
            |o: &String, c: Option<&String>| format!("{o} for {}", c.map_or("?", |c| c.as_str())),
            Grouped::with(StringSerde, StringSerde),
        )
    } else {
        orders.join(
            &customers,
            |o: &String, c: &String| format!("{o} for {c}"),
            Grouped::with(StringSerde, StringSerde),
        )
    };
    joined.to("enriched", strings());
    b.build().unwrap()
}

fn pipe_to(d: &mut TopologyTestDriver, topic: &str, key: &str, value: &str, ts: i64) {
    d.pipe(topic, &Required(StringSerde), &Required(StringSerde), &key.to_string(), &value.to_string(), ts).unwrap();
}

#[test]
fn should_join_a_stream_with_a_table() {
    for left in [false, true] {
        let topology = enrichment(left);
        assert_eq!(topology.subtopology_count(), 1, "the join shares the table's sub-topology");
        let mut d = driver(topology);
        pipe_to(&mut d, "orders", "c1", "order-1", 1); // no customer yet
        pipe_to(&mut d, "customers", "c1", "alice", 2); // a table update emits nothing
        pipe_to(&mut d, "orders", "c1", "order-2", 3);
        pipe_to(&mut d, "customers", "c1", "alice smith", 4);
        pipe_to(&mut d, "orders", "c1", "order-3", 5);
        let expected = if left {
            kv(&[("c1", "order-1 for ?"), ("c1", "order-2 for alice"), ("c1", "order-3 for alice smith")])
        } else {
            kv(&[("c1", "order-2 for alice"), ("c1", "order-3 for alice smith")])
        };
        assert_eq!(out(&mut d, "enriched"), expected, "left join: {left}");
    }
}

#[test]
fn should_say_which_joined_topics_are_not_co_partitioned() {
    let topology = enrichment(false);
    let counts = |o: i32, c: i32| [("orders".to_string(), o), ("customers".to_string(), c)].into_iter().collect();
    topology.check_copartitioning(&counts(6, 6)).unwrap();
    let err = topology.check_copartitioning(&counts(6, 3)).unwrap_err().to_string();
    assert!(
        err.contains("joins topics that are not co-partitioned: customers (3 partitions), orders (6 partitions)"),
        "{err}"
    );
    let missing: std::collections::BTreeMap<String, i32> = [("orders".to_string(), 6)].into_iter().collect();
    assert!(topology
        .check_copartitioning(&missing)
        .unwrap_err()
        .to_string()
        .contains("'customers', which does not exist"));
}

#[test]
fn should_repartition_a_rekeyed_stream_before_joining() {
    let b = StreamsBuilder::new();
    let customers = b.table("customers", Consumed::with(StringSerde, StringSerde), "customers-store");
    // Orders arrive keyed by order id with the customer id in the value.
    b.stream_keyed("orders", Consumed::with(StringSerde, StringSerde))
        .select_key(|_, v: &String| v.split(':').next().unwrap_or_default().to_string())
        .join(
            &customers,
            |o: &String, c: &String| format!("{o} for {c}"),
            Grouped::with(StringSerde, StringSerde).named("orders-by-customer"),
        )
        .to("enriched", strings());
    let topology = b.build().unwrap();
    assert_eq!(topology.subtopology_count(), 2, "{}", topology.describe());
    assert!(
        topology.source_topics(1).contains(&"orders-by-customer-repartition".to_string())
            || topology.source_topics(0).contains(&"orders-by-customer-repartition".to_string())
    );
    let mut d = driver(topology);
    pipe_to(&mut d, "customers", "c7", "bob", 1);
    pipe_to(&mut d, "orders", "o1", "c7:book", 2);
    assert_eq!(out(&mut d, "enriched"), kv(&[("c7", "c7:book for bob")]));
}

#[test]
fn should_count_in_session_windows_merging_sessions_a_record_bridges() {
    let b = StreamsBuilder::new();
    keyed(&b)
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .windowed_by_session(moldau_dsl::SessionWindows::with_inactivity_gap_and_grace(15, 5))
        .count("sessions")
        .to_stream()
        .map(|w, n: Option<u64>| {
            (
                format!("{}@{}-{}", w.key, w.window.start, w.window.end),
                n.map_or("deleted".to_string(), |n| n.to_string()),
            )
        })
        .to("sessions-out", strings());
    let mut d = driver(b.build().unwrap());
    for (k, ts) in [("a", 0), ("a", 5), ("a", 30), ("b", 31), ("a", 18), ("a", 60), ("a", 2)] {
        pipe(&mut d, k, "x", ts);
    }
    assert_eq!(
        out(&mut d, "sessions-out"),
        kv(&[
            ("a@0-0", "1"),
            ("a@0-0", "deleted"),
            ("a@0-5", "2"),
            ("a@30-30", "1"), // 25 after 5 (gap 15): a new session
            ("b@31-31", "1"),
            // 18 is within 15 of both 5 and 30: the two sessions merge
            ("a@0-5", "deleted"),
            ("a@30-30", "deleted"),
            ("a@0-30", "4"),
            ("a@60-60", "1"),
            // at stream time 60 a record at 2 would extend a session that ended at 30 < 60 - 5: dropped
        ])
    );
}
