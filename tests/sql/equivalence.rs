//! SQL ≡ DSL: each persistent-query feature written in SQL and in the DSL, run side by side
//! over the same input topics, gives the same output in every output partition: the same
//! records (key, value bytes, timestamp), in the same order for each key (records of
//! different keys in one partition come from different tasks, whose interleaving is not
//! fixed).

use std::collections::BTreeMap;
use std::time::Duration;

use moldau_dsl::state::{BytesSerde, Windowed};
use moldau_dsl::{Consumed, Grouped, Produced, StreamsBuilder, TimeWindows};
use moldau_engine::{KafkaStreams, StreamsConfig, Topology};
use moldau_tests::streams_util::{produce_strings, read_topic, Read};

use crate::persistent::start;

/// Per partition, per key: the records' values and timestamps in order.
type ByPartition = BTreeMap<i32, BTreeMap<Vec<u8>, Vec<(Option<Vec<u8>>, i64)>>>;

fn by_partition(records: &[Read]) -> ByPartition {
    let mut out = ByPartition::new();
    for r in records {
        out.entry(r.partition)
            .or_default()
            .entry(r.key.clone().unwrap_or_default())
            .or_default()
            .push((r.value.clone(), r.timestamp));
    }
    out
}

fn run_dsl(bootstrap: &str, app: &str, topology: Topology, dir: &std::path::Path) -> KafkaStreams {
    let config = StreamsConfig::new(app, bootstrap)
        .with_state_dir(dir)
        .with_guarantee(moldau_engine::ProcessingGuarantee::ExactlyOnceV2)
        .with_commit_interval(Duration::from_millis(100));
    let mut s = KafkaStreams::new(topology, config).unwrap();
    s.start().unwrap();
    s
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn field<'a>(v: &'a serde_json::Value, f: &str) -> &'a serde_json::Value {
    &v[f]
}

/// `SELECT userid, upper(page) AS page, ms * 2 AS ms2 FROM views WHERE page LIKE '/home%'`.
fn dsl_filter_project() -> Topology {
    let b = StreamsBuilder::new();
    b.stream("views", Consumed::with(BytesSerde, BytesSerde))
        .flat_map_values(|v: Vec<u8>| {
            let v: serde_json::Value = serde_json::from_slice(&v).ok()?;
            let page = field(&v, "page").as_str()?;
            if !page.starts_with("/home") {
                return None;
            }
            let ms2 = field(&v, "ms").as_i64()? * 2;
            Some(format!(r#"{{"page":{},"ms2":{ms2}}}"#, json_str(&page.to_uppercase())).into_bytes())
        })
        .to("DSL_HOME", Produced::with_nullable_keys(BytesSerde, BytesSerde));
    b.build().unwrap()
}

/// `SELECT userid, COUNT(*) AS n, SUM(ms) AS total FROM views WINDOW TUMBLING (SIZE 10
/// SECONDS) GROUP BY userid`: the group key, then the window's start and end, as the key.
fn dsl_windowed_count() -> Topology {
    let b = StreamsBuilder::new();
    b.stream_keyed("views", Consumed::with(BytesSerde, BytesSerde))
        .map_values(|v: Vec<u8>| {
            let v: serde_json::Value = serde_json::from_slice(&v).unwrap_or_default();
            field(&v, "ms").as_i64().unwrap_or_default().to_be_bytes().to_vec()
        })
        .group_by_key(Grouped::with(BytesSerde, BytesSerde))
        .windowed_by(TimeWindows::of_size_and_grace(10_000, 24 * 3_600_000))
        .aggregate(
            || (0u64, 0i64),
            |_, ms: Vec<u8>, (n, total)| (n + 1, total + i64::from_be_bytes(ms.try_into().unwrap_or_default())),
            "counts",
            moldau_dsl::state::BincodeSerde::default(),
        )
        .to_stream()
        .map(|w: Windowed<Vec<u8>>, agg: Option<(u64, i64)>| {
            let mut key = w.key;
            key.extend_from_slice(&w.window.start.to_be_bytes());
            key.extend_from_slice(&w.window.end.to_be_bytes());
            (Some(key), agg.map(|(n, total)| format!(r#"{{"n":{n},"total":{total}}}"#).into_bytes()))
        })
        .to("DSL_COUNTS", Produced::nullable(BytesSerde, BytesSerde));
    b.build().unwrap()
}

/// `SELECT v.userid, v.page, u.name FROM views v JOIN users u ON v.userid = u.id`.
fn dsl_join() -> Topology {
    let b = StreamsBuilder::new();
    let users = b.table("users", Consumed::with(BytesSerde, BytesSerde), "users-store");
    b.stream_keyed("views", Consumed::with(BytesSerde, BytesSerde))
        .join(
            &users,
            |v: &Vec<u8>, u: &Vec<u8>| {
                let v: serde_json::Value = serde_json::from_slice(v).unwrap_or_default();
                let u: serde_json::Value = serde_json::from_slice(u).unwrap_or_default();
                let page = field(&v, "page").as_str().unwrap_or_default();
                let name = field(&u, "name").as_str().unwrap_or_default();
                format!(r#"{{"page":{},"name":{}}}"#, json_str(page), json_str(name)).into_bytes()
            },
            Grouped::with(BytesSerde, BytesSerde),
        )
        .to("DSL_ENRICHED", Produced::with(BytesSerde, BytesSerde));
    b.build().unwrap()
}

#[test]
fn should_give_the_same_output_per_partition_in_sql_and_in_the_dsl() {
    let (cluster, bootstrap, dir, mut x) = start();
    x.execute(
        "CREATE STREAM views (userid STRING KEY, page STRING, ms BIGINT)
           WITH (kafka_topic='views', value_format='JSON', partitions=3);
         CREATE TABLE users (id STRING PRIMARY KEY, name STRING)
           WITH (kafka_topic='users', value_format='JSON', partitions=3);",
    )
    .unwrap();
    for t in ["DSL_HOME", "DSL_COUNTS", "DSL_ENRICHED"] {
        x.execute(&format!(
            "CREATE STREAM {t}_s (v STRING) WITH (kafka_topic='{t}', value_format='JSON', partitions=3);"
        ))
        .unwrap();
    }
    // The table first, its rows committed before the views come (both sides join the same).
    let users: Vec<(String, String, i64)> =
        (0..8).map(|i| (format!("u{i}"), format!(r#"{{"name":"user {i}"}}"#), 5_000_000 + i)).collect();
    produce_strings(
        &bootstrap,
        "users",
        &users.iter().map(|(k, v, t)| (k.as_str(), v.as_str(), *t)).collect::<Vec<_>>(),
    );
    x.execute(
        "CREATE STREAM home AS SELECT userid, upper(page) AS page, ms * 2 AS ms2 FROM views WHERE page LIKE '/home%';
         CREATE TABLE counts AS SELECT userid, COUNT(*) AS n, SUM(ms) AS total FROM views
           WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY userid;
         CREATE STREAM enriched AS SELECT v.userid, v.page, u.name FROM views v JOIN users u ON v.userid = u.id;",
    )
    .unwrap();
    let dsl: Vec<KafkaStreams> =
        [("dsl-home", dsl_filter_project()), ("dsl-counts", dsl_windowed_count()), ("dsl-join", dsl_join())]
            .into_iter()
            .enumerate()
            .map(|(i, (app, t))| run_dsl(&bootstrap, app, t, &dir.path().join(format!("dsl-{i}"))))
            .collect();
    let joined = |t: &str| read_topic(&bootstrap, t, 8, Duration::from_secs(60), Duration::ZERO).len();
    assert_eq!(joined(&format!("sqltest-{}-Join-Table-changelog", "CSAS_ENRICHED_3")), 8, "SQL's join has the users");
    assert_eq!(joined("dsl-join-users-store-changelog"), 8, "the DSL's join has the users");

    let views: Vec<(String, String, i64)> = (0..600)
        .map(|i| {
            let page = if i % 3 == 0 { format!("/home/{i}") } else { format!("/shop/{i}") };
            (format!("u{}", i % 11), format!(r#"{{"page":"{page}","ms":{i}}}"#), 6_000_000 + i * 97)
        })
        .collect();
    produce_strings(
        &bootstrap,
        "views",
        &views.iter().map(|(k, v, t)| (k.as_str(), v.as_str(), *t)).collect::<Vec<_>>(),
    );

    let known_users = (0..600).filter(|i| i % 11 < 8).count();
    for (sql, dsl, n) in
        [("HOME", "DSL_HOME", 200), ("COUNTS", "DSL_COUNTS", 600), ("ENRICHED", "DSL_ENRICHED", known_users)]
    {
        let s = read_topic(&bootstrap, sql, n, Duration::from_secs(60), Duration::from_millis(500));
        let d = read_topic(&bootstrap, dsl, n, Duration::from_secs(60), Duration::from_millis(500));
        assert!(s.len() >= n, "{sql}: {} of {n} records", s.len());
        assert_eq!(s.len(), d.len(), "{sql} and {dsl} have as many records");
        assert_eq!(by_partition(&s), by_partition(&d), "{sql} and {dsl} per partition");
    }
    for mut s in dsl {
        s.close().unwrap();
    }
    drop(x);
    cluster.shutdown();
}
