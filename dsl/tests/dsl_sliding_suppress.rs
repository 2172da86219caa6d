//! Sliding windows (checked against aggregates recomputed from the raw records) and
//! `KTable::suppress` (until the window closes, and until a time limit), through the topology
//! test driver.

use std::collections::BTreeMap;

use moldau_dsl::state::{JsonSerde, StringSerde};
use moldau_dsl::{Consumed, Grouped, Produced, SlidingWindows, StreamsBuilder, Suppressed, TimeWindows};
use moldau_engine::processor::Required;
use moldau_engine::testing::TopologyTestDriver;
use moldau_engine::Topology;

fn strings() -> Produced<String, String> {
    Produced::with(StringSerde, StringSerde)
}

fn pipe(d: &mut TopologyTestDriver, key: &str, value: &str, ts: i64) {
    d.pipe("in", &Required(StringSerde), &Required(StringSerde), &key.to_string(), &value.to_string(), ts).unwrap();
}

fn out(d: &mut TopologyTestDriver, topic: &str) -> Vec<String> {
    d.read_output_typed(topic, &Required(StringSerde), &Required(StringSerde))
        .unwrap()
        .into_iter()
        .map(|(k, v, _)| format!("{k}={v}"))
        .collect()
}

/// Sliding windows of difference `d` (grace `grace`) collecting each window's values, sorted.
fn sliding_values(d: i64, grace: i64) -> Topology {
    let b = StreamsBuilder::new();
    b.stream_keyed("in", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .windowed_by_sliding(SlidingWindows::with_time_difference_and_grace(d, grace))
        .aggregate(
            Vec::<String>::new,
            |_, v, mut acc| {
                acc.push(v);
                acc.sort();
                acc
            },
            "sliding",
            JsonSerde::<Vec<String>>::default(),
        )
        .to_stream()
        .map(|w, v: Option<Vec<String>>| {
            (format!("{}@{}-{}", w.key, w.window.start, w.window.end), v.unwrap_or_default().join(","))
        })
        .to("sliding-out", strings());
    b.build().unwrap()
}

#[test]
fn should_aggregate_the_left_and_right_windows_of_each_record() {
    let mut d = TopologyTestDriver::new(sliding_values(10, 100)).unwrap();
    pipe(&mut d, "a", "r5", 5);
    assert_eq!(out(&mut d, "sliding-out"), vec!["a@-5-5=r5"]);
    pipe(&mut d, "a", "r12", 12);
    assert_eq!(
        out(&mut d, "sliding-out"),
        vec![
            "a@2-12=r12,r5", // left window of 12 holds 5
            "a@6-16=r12",    // the right window of 5 opens with 12 in it
        ]
    );
    pipe(&mut d, "a", "r8", 8); // out of order, between 5 and 12
    assert_eq!(
        out(&mut d, "sliding-out"),
        vec![
            "a@-2-8=r5,r8",     // its left window: 5 and 8
            "a@2-12=r12,r5,r8", // contains 8
            "a@6-16=r12,r8",    // contains 8
            "a@9-19=r12",       // its right window: 12 only
        ]
    );
    pipe(&mut d, "a", "r30", 30); // far ahead: a window alone
    assert_eq!(out(&mut d, "sliding-out"), vec!["a@20-30=r30"]);
}

#[test]
fn should_drop_records_whose_windows_all_closed() {
    let mut d = TopologyTestDriver::new(sliding_values(10, 5)).unwrap();
    pipe(&mut d, "a", "r100", 100);
    out(&mut d, "sliding-out");
    // Its right window [85, 95] ended before 100 - 5: dropped.
    pipe(&mut d, "a", "r84", 84);
    assert!(out(&mut d, "sliding-out").is_empty());
    // Its left window [80, 90] is closed but its right window [91, 101] is not.
    pipe(&mut d, "a", "r90", 90);
    assert_eq!(out(&mut d, "sliding-out"), vec!["a@90-100=r100,r90", "a@91-101=r100"]);
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The windows sliding windows of difference `d` must hold for these records, recomputed from
/// scratch: for each record time its left window, and its right window when not empty.
fn oracle(d: i64, records: &[(String, i64, String)]) -> BTreeMap<String, String> {
    let mut expected = BTreeMap::new();
    let mut keys: Vec<&String> = records.iter().map(|(k, _, _)| k).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let mine: Vec<(i64, &String)> = records.iter().filter(|(k, _, _)| k == key).map(|(_, t, v)| (*t, v)).collect();
        let mut window = |start: i64| {
            let mut vals: Vec<&str> =
                mine.iter().filter(|(t, _)| (start..=start + d).contains(t)).map(|(_, v)| v.as_str()).collect();
            vals.sort();
            if !vals.is_empty() {
                expected.insert(format!("{key}@{start}-{}", start + d), vals.join(","));
            }
        };
        for (t, _) in &mine {
            window(t - d);
            window(t + 1);
        }
    }
    expected
}

#[test]
fn should_match_windows_recomputed_from_the_raw_records() {
    for seed in 1..=20u64 {
        let d = 1 + (seed as i64 % 7) * 3;
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut driver = TopologyTestDriver::new(sliding_values(d, 10_000)).unwrap();
        let mut records = Vec::new();
        for i in 0..120 {
            let key = format!("k{}", rng.next(3));
            let ts = rng.next(60) as i64; // out of order, with repeated times
            let value = format!("v{i:03}");
            pipe(&mut driver, &key, &value, ts);
            records.push((key, ts, value));
        }
        let mut latest = BTreeMap::new();
        for line in out(&mut driver, "sliding-out") {
            let (k, v) = line.split_once('=').unwrap();
            latest.insert(k.to_string(), v.to_string());
        }
        assert_eq!(latest, oracle(d, &records), "seed {seed}, difference {d}");
    }
}

#[test]
fn should_emit_each_sliding_window_once_when_suppressed_until_it_closes() {
    let b = StreamsBuilder::new();
    b.stream_keyed("in", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .windowed_by_sliding(SlidingWindows::with_time_difference_and_grace(10, 2))
        .count("sliding-counts")
        .suppress(Suppressed::until_window_closes())
        .to_stream()
        .map(|w, n: Option<u64>| (format!("{}@{}-{}", w.key, w.window.start, w.window.end), n.unwrap().to_string()))
        .to("final", strings());
    let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    pipe(&mut d, "a", "x", 5);
    assert!(out(&mut d, "final").is_empty(), "[-5, 5] closes at stream time 5 + 2");
    pipe(&mut d, "a", "x", 12);
    assert_eq!(out(&mut d, "final"), vec!["a@-5-5=1"]);
    pipe(&mut d, "b", "x", 16);
    assert_eq!(out(&mut d, "final"), vec!["a@2-12=2"]);
    pipe(&mut d, "b", "x", 30);
    // [6, 16] of a (the right window of 5, holding 12) and b's left window of 16 close at 18;
    // b's right window of 16 never opened (30 is more than 10 later).
    assert_eq!(out(&mut d, "final"), vec!["a@6-16=1", "b@6-16=1"]);
}

#[test]
fn should_emit_final_tumbling_window_counts_through_suppress() {
    let b = StreamsBuilder::new();
    b.stream_keyed("in", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .windowed_by(TimeWindows::of_size_and_grace(10, 5))
        .count("counts")
        .suppress(Suppressed::until_window_closes())
        .to_stream()
        .map(|w, n: Option<u64>| (format!("{}@{}-{}", w.key, w.window.start, w.window.end), format!("{}", n.unwrap())))
        .to("final", strings());
    let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    for (k, ts) in [("a", 1), ("a", 5), ("b", 9), ("a", 12), ("a", 8), ("a", 14)] {
        pipe(&mut d, k, "x", ts);
    }
    assert!(out(&mut d, "final").is_empty(), "nothing closed before stream time 15");
    pipe(&mut d, "c", "x", 15);
    assert_eq!(out(&mut d, "final"), vec!["a@0-10=3", "b@0-10=1"]);
    pipe(&mut d, "a", "x", 3); // late: dropped upstream, nothing re-emitted
    pipe(&mut d, "c", "x", 100);
    assert_eq!(out(&mut d, "final"), vec!["a@10-20=2", "c@10-20=1"]);
}

#[test]
fn should_rate_limit_a_table_to_its_latest_value_per_time_limit() {
    let b = StreamsBuilder::new();
    b.stream_keyed("in", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .count("counts")
        .suppress(Suppressed::until_time_limit(10))
        .to_stream()
        .map(|k, n: Option<u64>| (k.clone(), n.unwrap().to_string()))
        .to("limited", strings());
    let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    pipe(&mut d, "a", "x", 0);
    pipe(&mut d, "a", "x", 3);
    pipe(&mut d, "b", "x", 4);
    pipe(&mut d, "a", "x", 9);
    assert!(out(&mut d, "limited").is_empty());
    pipe(&mut d, "c", "x", 10); // a's first held update was at 0: due at 10
    assert_eq!(out(&mut d, "limited"), vec!["a=3"]);
    pipe(&mut d, "a", "x", 11); // a new hold for a, due at 21
    pipe(&mut d, "c", "x", 14); // b due at 14
    assert_eq!(out(&mut d, "limited"), vec!["b=1"]);
    pipe(&mut d, "c", "x", 30);
    assert_eq!(out(&mut d, "limited"), vec!["c=3", "a=4"]);
}

#[test]
fn should_emit_early_when_a_bounded_buffer_is_full() {
    let b = StreamsBuilder::new();
    b.stream_keyed("in", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .count("counts")
        .suppress(Suppressed::until_time_limit(1_000).with_max_records(2))
        .to_stream()
        .map(|k, n: Option<u64>| (k.clone(), n.unwrap().to_string()))
        .to("limited", strings());
    let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    pipe(&mut d, "a", "x", 1);
    pipe(&mut d, "b", "x", 2);
    pipe(&mut d, "a", "x", 3);
    assert!(out(&mut d, "limited").is_empty());
    pipe(&mut d, "c", "x", 4); // three held: the one due first goes early
    assert_eq!(out(&mut d, "limited"), vec!["a=2"]);
}

#[test]
fn should_refuse_to_suppress_until_a_window_closes_without_windows() {
    let b = StreamsBuilder::new();
    let table = b
        .stream_keyed("in", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .count("counts")
        .map_values(|n| n.to_string());
    table.suppress(Suppressed::until_time_limit(5));
    let err = b.build().unwrap_err();
    assert!(matches!(&err, moldau_dsl::Error::MissingSerdes { operation: "suppress", .. }), "{err:?}");
    assert!(err.to_string().contains("with_serdes"), "{err}");
}
