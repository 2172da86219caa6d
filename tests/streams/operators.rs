//! Every DSL operator running on broker-sim with exact expected outputs: each test starts its
//! own one-broker cluster, writes single-partition inputs (so the order of every output is
//! fixed), runs one exactly-once application over all of them and reads each output topic
//! back, read_committed. The same operators are checked on the topology test driver in
//! `dsl/tests`; these tests show the Kafka runtime gives the same results.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use moldau_broker_sim::Cluster;
use moldau_dsl::state::{BincodeSerde, I64Serde, JsonSerde, StringSerde, U64Serde, Windowed};
use moldau_dsl::{
    Branched, Consumed, Grouped, KStream, Produced, SessionWindows, SlidingWindows, StreamsBuilder, Suppressed,
    TimeWindows,
};
use moldau_engine::{KafkaStreams, ProcessingGuarantee, StreamsState, Topology};
use moldau_tests::streams_util::{produce, produce_strings, read_topic, streams_config, Read};
use moldau_tests::{init_logging, must_create_topic, must_start_cluster};

fn strings() -> Produced<String, String> {
    Produced::with(StringSerde, StringSerde)
}

fn grouped() -> Grouped<String, String> {
    Grouped::with(StringSerde, StringSerde)
}

/// A one-broker cluster with these single-partition topics.
fn cluster(topics: &[&str]) -> (Cluster, String) {
    init_logging();
    let cluster = must_start_cluster(1);
    let bootstrap = cluster.bootstrap_servers().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for t in topics {
        rt.block_on(must_create_topic(&bootstrap, t, 1, 1));
    }
    (cluster, bootstrap)
}

/// Runs `topology` exactly-once until every topic in `expected` holds its records, then checks
/// each topic's `key=value` lines (decoded by `show`) exactly.
fn run_and_check(
    bootstrap: &str,
    app_id: &str,
    topology: Topology,
    idle: Option<Duration>,
    expected: &[(&str, Vec<String>)],
    show: impl Fn(&str, &Read) -> String,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = streams_config(app_id, bootstrap, dir.path(), ProcessingGuarantee::ExactlyOnceV2);
    if let Some(idle) = idle {
        config.max_task_idle = idle;
    }
    let mut app = KafkaStreams::new(topology, config).unwrap();
    app.start().unwrap();
    for (topic, want) in expected {
        let got = read_topic(bootstrap, topic, want.len(), Duration::from_secs(60), Duration::from_millis(300));
        let got: Vec<String> = got.iter().map(|r| show(topic, r)).collect();
        assert_eq!(&got, want, "topic {topic}");
    }
    assert_eq!(app.state(), StreamsState::Running, "{:?}", app.errors());
    app.close().unwrap();
}

fn lines(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn text(_: &str, r: &Read) -> String {
    format!("{}={}", r.key_str(), r.value_str())
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Word {
    word: String,
    len: u64,
}

#[test]
fn should_give_exact_outputs_for_every_stateless_operator() {
    let outputs = [
        "filtered",
        "rejected",
        "swapped",
        "upper",
        "chars",
        "parts",
        "first-letter",
        "branch-0",
        "branch-1",
        "branch-2",
        "merged",
        "dyn-odd",
        "dyn-even",
        "through",
        "lengths",
        "json",
        "bincode",
    ];
    let mut topics = vec!["in"];
    topics.extend(outputs);
    let (cluster, bootstrap) = cluster(&topics);
    produce_strings(
        &bootstrap,
        "in",
        &[("k1", "ab", 1), ("k2", "x-yz", 2), ("k3", "apple", 3), ("k4", "banana", 4), ("k5", "cherry", 5)],
    );

    let seen = Arc::new(Mutex::new(Vec::new()));
    let b = StreamsBuilder::new();
    let s: KStream<String, String> = b.stream_keyed("in", Consumed::with(StringSerde, StringSerde));
    s.filter(|_, v| v.len() > 2).to("filtered", strings());
    s.filter_not(|_, v| v.len() > 2).to("rejected", strings());
    s.map(|k, v| (v, k)).to("swapped", strings());
    s.map_values(|v| v.to_uppercase()).to("upper", strings());
    s.flat_map(|k, v| v.chars().take(2).map(move |c| (format!("{k}{c}"), c.to_string())).collect::<Vec<_>>())
        .to("chars", strings());
    s.flat_map_values(|v| v.split('-').map(str::to_string).collect::<Vec<_>>()).to("parts", strings());
    let by_letter = s.select_key(|_, v| v[..1].to_string());
    by_letter.to("first-letter", strings());
    by_letter.repartition("by-letter", &grouped()).to("through", strings());
    let (p, f) = (seen.clone(), seen.clone());
    s.peek(move |k, _| p.lock().unwrap().push(format!("peek {k}")))
        .for_each(move |k, v| f.lock().unwrap().push(format!("each {k}={v}")));
    let branches = s.split(
        Branched::new()
            .branch(|_, v: &String| v.starts_with('a'))
            .branch(|_, v: &String| v.starts_with('b'))
            .default_branch(),
    );
    for (i, branch) in branches.iter().enumerate() {
        branch.to(&format!("branch-{i}"), strings());
    }
    let odd = |k: &String| k.ends_with(['1', '3', '5']);
    let evens = s.filter(move |k, _| !odd(k));
    let odds = s.filter(move |k, _| odd(k)).map_values(|v| format!("odd {v}"));
    evens.merge(&odds).to("merged", strings());
    s.to_dynamic(move |k, _| if odd(k) { "dyn-odd".into() } else { "dyn-even".into() }, strings());
    s.map_values(|v| v.len() as u64).to("lengths", Produced::with(StringSerde, U64Serde));
    s.map_values(|v| Word { len: v.len() as u64, word: v })
        .to("json", Produced::with(StringSerde, JsonSerde::<Word>::default()));
    s.map_values(|v| Word { len: v.len() as u64, word: v })
        .to("bincode", Produced::with(StringSerde, BincodeSerde::<Word>::default()));

    let all = ["k1=ab", "k2=x-yz", "k3=apple", "k4=banana", "k5=cherry"];
    let expected = vec![
        ("filtered", lines(&all[1..])),
        ("rejected", lines(&all[..1])),
        ("swapped", lines(&["ab=k1", "x-yz=k2", "apple=k3", "banana=k4", "cherry=k5"])),
        ("upper", lines(&["k1=AB", "k2=X-YZ", "k3=APPLE", "k4=BANANA", "k5=CHERRY"])),
        ("chars", lines(&["k1a=a", "k1b=b", "k2x=x", "k2-=-", "k3a=a", "k3p=p", "k4b=b", "k4a=a", "k5c=c", "k5h=h"])),
        ("parts", lines(&["k1=ab", "k2=x", "k2=yz", "k3=apple", "k4=banana", "k5=cherry"])),
        ("first-letter", lines(&["a=ab", "x=x-yz", "a=apple", "b=banana", "c=cherry"])),
        ("through", lines(&["a=ab", "x=x-yz", "a=apple", "b=banana", "c=cherry"])),
        ("branch-0", lines(&["k1=ab", "k3=apple"])),
        ("branch-1", lines(&["k4=banana"])),
        ("branch-2", lines(&["k2=x-yz", "k5=cherry"])),
        ("merged", lines(&["k1=odd ab", "k2=x-yz", "k3=odd apple", "k4=banana", "k5=odd cherry"])),
        ("dyn-odd", lines(&["k1=ab", "k3=apple", "k5=cherry"])),
        ("dyn-even", lines(&["k2=x-yz", "k4=banana"])),
        ("lengths", lines(&["k1=2", "k2=4", "k3=5", "k4=6", "k5=6"])),
        ("json", lines(&["k1=ab/2", "k2=x-yz/4", "k3=apple/5", "k4=banana/6", "k5=cherry/6"])),
        ("bincode", lines(&["k1=ab/2", "k2=x-yz/4", "k3=apple/5", "k4=banana/6", "k5=cherry/6"])),
    ];
    run_and_check(&bootstrap, "ops-stateless", b.build().unwrap(), None, &expected, |topic, r| {
        let value = r.value.as_deref().unwrap_or_default();
        let shown = match topic {
            "lengths" => u64::from_be_bytes(value.try_into().expect("8 bytes")).to_string(),
            "json" | "bincode" => {
                let w: Word = if topic == "json" {
                    serde_json::from_slice(value).expect("json")
                } else {
                    moldau_dsl::state::Serde::deserialize(&BincodeSerde::<Word>::default(), value).expect("bincode")
                };
                format!("{}/{}", w.word, w.len)
            }
            _ => r.value_str(),
        };
        format!("{}={shown}", r.key_str())
    });
    let seen = seen.lock().unwrap().clone();
    let expect_seen: Vec<String> =
        all.iter().flat_map(|kv| [format!("peek {}", &kv[..2]), format!("each {kv}")]).collect();
    assert_eq!(seen, expect_seen);
    // The explicit repartition went through an internal topic named after the application.
    let internal =
        read_topic(&bootstrap, "ops-stateless-by-letter-repartition", 5, Duration::from_secs(10), Duration::ZERO);
    assert_eq!(internal.len(), 5);
    cluster.shutdown();
}

/// `key@start-end` for a windowed key.
fn window<K: std::fmt::Display>(w: &Windowed<K>) -> String {
    format!("{}@{}-{}", w.key, w.window.start, w.window.end)
}

#[test]
fn should_give_exact_outputs_for_every_aggregation_and_window() {
    let inputs = ["grouping-in", "tumbling-in", "hopping-in", "sliding-in", "session-in", "final-in", "limit-in"];
    let outputs = [
        "by-value",
        "reduced",
        "aggregated",
        "tumbling",
        "hopping",
        "sliding",
        "sessions",
        "final",
        "suppressed",
        "limited",
    ];
    let (cluster, bootstrap) = cluster(&[&inputs[..], &outputs[..]].concat());
    let send = |topic: &str, records: &[(&str, &str, i64)]| produce_strings(&bootstrap, topic, records);
    send("grouping-in", &[("a", "x", 1), ("b", "yy", 2), ("a", "zzz", 3), ("c", "x", 4)]);
    let timed = |records: &[(&'static str, i64)]| -> Vec<(&'static str, &'static str, i64)> {
        records.iter().map(|(k, t)| (*k, "x", *t)).collect()
    };
    send("tumbling-in", &timed(&[("a", 1), ("a", 5), ("b", 9), ("a", 12), ("a", 8), ("a", 16), ("a", 3), ("b", 25)]));
    send("hopping-in", &timed(&[("a", 7), ("a", 12)]));
    send("sliding-in", &[("a", "r5", 5), ("a", "r12", 12), ("a", "r8", 8), ("a", "r30", 30)]);
    // Times from 100: a producer's timestamp 0 means "now".
    send("session-in", &timed(&[("a", 100), ("a", 105), ("a", 130), ("b", 131), ("a", 118), ("a", 160), ("a", 102)]));
    let closing = [("a", 1), ("a", 5), ("b", 9), ("a", 12), ("a", 8), ("a", 14), ("c", 15), ("a", 3), ("c", 100)];
    send("final-in", &timed(&closing));
    send(
        "limit-in",
        &timed(&[("a", 100), ("a", 103), ("b", 104), ("a", 109), ("c", 110), ("a", 111), ("c", 114), ("c", 130)]),
    );

    let b = StreamsBuilder::new();
    let stream = |topic: &str| b.stream_keyed::<String, String>(topic, Consumed::with(StringSerde, StringSerde));
    let show_count = |n: Option<u64>| n.map_or("deleted".to_string(), |n| n.to_string());
    // group_by a value: the key changes, so a repartition topic comes first.
    let grouping = stream("grouping-in");
    grouping
        .group_by(|_, v: &String| v.len().to_string(), grouped())
        .count("by-value")
        .to_stream()
        .map_values(show_count)
        .to("by-value", strings());
    let by_key = grouping.group_by_key(grouped());
    by_key
        .reduce(|a, b| format!("{a}+{b}"), "reduced", StringSerde)
        .to_stream()
        .map_values(|v| v.unwrap())
        .to("reduced", strings());
    by_key
        .aggregate(|| 0i64, |_, v: String, acc| acc - v.len() as i64, "aggregated", I64Serde)
        .to_stream()
        .map_values(|v| v.unwrap().to_string())
        .to("aggregated", strings());
    let windowed = |topic: &str, windows: TimeWindows, out: &str| {
        stream(topic)
            .group_by_key(grouped())
            .windowed_by(windows)
            .count(out)
            .to_stream()
            .map(move |w, n| (window(&w), show_count(n)))
            .to(out, strings());
    };
    windowed("tumbling-in", TimeWindows::of_size_and_grace(10, 5), "tumbling");
    windowed("hopping-in", TimeWindows::of_size_with_no_grace(10).advance_by(5), "hopping");
    stream("sliding-in")
        .group_by_key(grouped())
        .windowed_by_sliding(SlidingWindows::with_time_difference_and_grace(10, 100))
        .aggregate(
            String::new,
            |_, v, acc| if acc.is_empty() { v } else { format!("{acc},{v}") },
            "sliding",
            StringSerde,
        )
        .to_stream()
        .map(|w, v| (window(&w), v.unwrap()))
        .to("sliding", strings());
    stream("session-in")
        .group_by_key(grouped())
        .windowed_by_session(SessionWindows::with_inactivity_gap_and_grace(15, 5))
        .count("sessions")
        .to_stream()
        .map(move |w, n| (window(&w), show_count(n)))
        .to("sessions", strings());
    let final_counts = stream("final-in").group_by_key(grouped());
    final_counts
        .windowed_by(TimeWindows::of_size_and_grace(10, 5))
        .emit_on_window_close()
        .count("final")
        .to_stream()
        .map(move |w, n| (window(&w), show_count(n)))
        .to("final", strings());
    final_counts
        .windowed_by(TimeWindows::of_size_and_grace(10, 5))
        .count("suppressed")
        .suppress(Suppressed::until_window_closes())
        .to_stream()
        .map(move |w, n| (window(&w), show_count(n)))
        .to("suppressed", strings());
    stream("limit-in")
        .group_by_key(grouped())
        .count("limited")
        .suppress(Suppressed::until_time_limit(10))
        .to_stream()
        .map_values(show_count)
        .to("limited", strings());

    let finals = lines(&["a@0-10=3", "b@0-10=1", "a@10-20=2", "c@10-20=1"]);
    let expected = vec![
        ("by-value", lines(&["1=1", "2=1", "3=1", "1=2"])),
        ("reduced", lines(&["a=x", "b=yy", "a=x+zzz", "c=x"])),
        ("aggregated", lines(&["a=-1", "b=-2", "a=-4", "c=-1"])),
        (
            "tumbling",
            // a@3 comes at stream time 16 >= 10 + 5: [0, 10) closed, dropped.
            lines(&["a@0-10=1", "a@0-10=2", "b@0-10=1", "a@10-20=1", "a@0-10=3", "a@10-20=2", "b@20-30=1"]),
        ),
        ("hopping", lines(&["a@0-10=1", "a@5-15=1", "a@5-15=2", "a@10-20=1"])),
        (
            "sliding",
            lines(&[
                "a@-5-5=r5",
                "a@2-12=r5,r12",
                "a@6-16=r12",
                "a@-2-8=r5,r8",
                "a@2-12=r5,r12,r8",
                "a@6-16=r12,r8",
                "a@9-19=r12",
                "a@20-30=r30",
            ]),
        ),
        (
            "sessions",
            lines(&[
                "a@100-100=1",
                "a@100-100=deleted",
                "a@100-105=2",
                "a@130-130=1",
                "b@131-131=1",
                "a@100-105=deleted",
                "a@130-130=deleted",
                "a@100-130=4",
                "a@160-160=1",
            ]),
        ),
        ("final", finals.clone()),
        ("suppressed", finals),
        ("limited", lines(&["a=3", "b=1", "c=3", "a=4"])),
    ];
    run_and_check(&bootstrap, "ops-stateful", b.build().unwrap(), None, &expected, text);
    cluster.shutdown();
}

#[test]
fn should_give_exact_outputs_for_tables_and_joins() {
    let topics = ["users", "customers", "orders", "orders-by-id", "visible", "inner", "left", "rekeyed-join"];
    let (cluster, bootstrap) = cluster(&topics);
    produce_strings(&bootstrap, "users", &[("u1", "alice", 1), ("u2", "bob", 2), ("u1", "banned alice", 3)]);
    produce(&bootstrap, "users", &[(Some(b"u2"), None, Some(4))]); // a tombstone
    produce_strings(&bootstrap, "users", &[("u3", "banned carol", 5)]);
    produce_strings(&bootstrap, "customers", &[("c1", "alice", 2), ("c1", "alice smith", 4), ("c7", "bob", 6)]);
    produce_strings(&bootstrap, "orders", &[("c1", "order-1", 1), ("c1", "order-2", 3), ("c1", "order-3", 5)]);
    produce_strings(&bootstrap, "orders-by-id", &[("o1", "c7:book", 7), ("o2", "c9:pen", 8)]);

    let b = StreamsBuilder::new();
    b.table("users", Consumed::with(StringSerde, StringSerde), "users")
        .filter(|_, v| !v.starts_with("banned"))
        .map_values(|v: &String| v.to_uppercase())
        .to_stream()
        .map_values(|v: Option<String>| v.unwrap_or_else(|| "<deleted>".into()))
        .to("visible", strings());
    let customers = b.table("customers", Consumed::with(StringSerde, StringSerde), "customers");
    let orders = b.stream_keyed("orders", Consumed::with(StringSerde, StringSerde));
    orders.join(&customers, |o: &String, c: &String| format!("{o} for {c}"), grouped()).to("inner", strings());
    orders
        .left_join(&customers, |o: &String, c: Option<&String>| format!("{o} for {}", c.map_or("?", |c| c)), grouped())
        .to("left", strings());
    b.stream_keyed("orders-by-id", Consumed::with(StringSerde, StringSerde))
        .select_key(|_, v: &String| v.split(':').next().unwrap_or_default().to_string())
        .join(&customers, |o: &String, c: &String| format!("{o} for {c}"), grouped().named("orders-by-customer"))
        .to("rekeyed-join", strings());

    let expected = vec![
        ("visible", lines(&["u1=ALICE", "u2=BOB", "u1=<deleted>", "u2=<deleted>"])),
        ("inner", lines(&["c1=order-2 for alice", "c1=order-3 for alice smith"])),
        ("left", lines(&["c1=order-1 for ?", "c1=order-2 for alice", "c1=order-3 for alice smith"])),
        // c9 has no customer: the inner join drops it.
        ("rekeyed-join", lines(&["c7=c7:book for bob"])),
    ];
    // Orders and customers are merged by timestamp: wait for both partitions before going on.
    run_and_check(&bootstrap, "ops-tables", b.build().unwrap(), Some(Duration::from_secs(3)), &expected, text);
    cluster.shutdown();
}
