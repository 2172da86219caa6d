//! Aggregations as persistent queries: GROUP BY with DataFusion's aggregate functions and
//! HAVING, and windowed counts with EMIT FINAL, checked against the expected values computed
//! from the input.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use moldau_tests::streams_util::{produce, read_topic, Read};

use crate::persistent::start;

/// The latest value per key (a tombstone removes the key).
fn latest(records: &[Read]) -> BTreeMap<Vec<u8>, serde_json::Value> {
    let mut out = BTreeMap::new();
    for r in records {
        let key = r.key.clone().unwrap_or_default();
        match &r.value {
            Some(v) => {
                out.insert(key, serde_json::from_slice(v).unwrap());
            }
            None => {
                out.remove(&key);
            }
        }
    }
    out
}

#[test]
fn should_aggregate_per_group_with_having_and_distinct_counts() {
    let (cluster, bootstrap, _dir, mut x) = start();
    x.execute(
        "CREATE STREAM views (userid STRING KEY, page STRING, ms BIGINT)
           WITH (kafka_topic='views', value_format='JSON', partitions=2);",
    )
    .unwrap();
    let mut input = Vec::new();
    for i in 0..500i64 {
        input.push((format!("u{}", i % 11), format!("/p{}", i % 7), i));
    }
    let values: Vec<(String, String)> =
        input.iter().map(|(u, p, ms)| (u.clone(), format!(r#"{{"page":"{p}","ms":{ms}}}"#))).collect();
    let rs: Vec<_> = values.iter().map(|(k, v)| (Some(k.as_bytes()), Some(v.as_bytes()), Some(1_000i64))).collect();
    produce(&bootstrap, "views", &rs);
    x.execute(
        "CREATE TABLE page_stats AS
           SELECT page, COUNT(*) AS n, SUM(ms) AS total, AVG(ms) AS mean, MIN(ms) AS first, MAX(ms) AS last,
                  COUNT(DISTINCT userid) AS users
           FROM views WHERE ms >= 10 GROUP BY page HAVING COUNT(*) > 1;",
    )
    .unwrap();
    // Every update is written; read until the topic is quiet.
    // One update per record that passes the WHERE (490), a tombstone while HAVING fails.
    let out = read_topic(&bootstrap, "PAGE_STATS", 490, Duration::from_secs(60), Duration::from_millis(500));
    assert_eq!(out.len(), 490, "one update per input record that passes the WHERE");
    let got = latest(&out);
    let mut expected: BTreeMap<Vec<u8>, serde_json::Value> = BTreeMap::new();
    for p in 0..7 {
        let page = format!("/p{p}");
        let rows: Vec<&(String, String, i64)> = input.iter().filter(|(_, pg, ms)| *pg == page && *ms >= 10).collect();
        let n = rows.len() as i64;
        let total: i64 = rows.iter().map(|r| r.2).sum();
        let users: BTreeSet<&String> = rows.iter().map(|r| &r.0).collect();
        expected.insert(
            page.clone().into_bytes(),
            serde_json::json!({
                "n": n, "total": total, "mean": total as f64 / n as f64,
                "first": rows.iter().map(|r| r.2).min().unwrap(), "last": rows.iter().map(|r| r.2).max().unwrap(),
                "users": users.len() as i64,
            }),
        );
    }
    assert_eq!(got, expected, "the latest aggregate per page");
    drop(x);
    cluster.shutdown();
}

#[test]
fn should_emit_each_tumbling_window_once_when_it_closes_with_emit_final() {
    let (cluster, bootstrap, _dir, mut x) = start();
    x.execute(
        "CREATE STREAM clicks (userid STRING KEY, url STRING)
           WITH (kafka_topic='clicks', value_format='JSON', partitions=1);
         CREATE TABLE per_minute AS
           SELECT userid, WINDOWSTART AS ws, WINDOWEND AS we, COUNT(*) AS n
           FROM clicks WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 0 SECONDS)
           GROUP BY userid EMIT FINAL;",
    )
    .unwrap();
    // Three users over three minutes, then a record ten minutes on that closes them all.
    let mut records = Vec::new();
    let mut expected: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for i in 0..90i64 {
        let user = format!("u{}", i % 3);
        // From minute 100 (a producer's timestamp 0 means "now"), 2 s apart.
        let t = 6_000_000 + i * 2_000;
        records.push((user.clone(), t));
        *expected.entry((user, t / 60_000 * 60_000)).or_default() += 1;
    }
    records.push(("u0".into(), 6_600_000));
    let rs: Vec<_> =
        records.iter().map(|(k, t)| (Some(k.as_bytes()), Some(&br#"{"url":"/x"}"#[..]), Some(*t))).collect();
    produce(&bootstrap, "clicks", &rs);
    let out =
        read_topic(&bootstrap, "PER_MINUTE", expected.len(), Duration::from_secs(60), Duration::from_millis(1_000));
    let mut got: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for r in &out {
        let key = r.key.as_deref().unwrap();
        let (user, window) = key.split_at(key.len() - 16);
        let start = i64::from_be_bytes(window[..8].try_into().unwrap());
        let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
        assert_eq!(v["ws"].as_i64(), Some(start), "WINDOWSTART is the window's start: {v}");
        assert_eq!(v["we"].as_i64(), Some(start + 60_000), "WINDOWEND is its end: {v}");
        let prev = got.insert((String::from_utf8(user.to_vec()).unwrap(), start), v["n"].as_i64().unwrap());
        assert!(prev.is_none(), "each window is emitted once: {v}");
    }
    assert_eq!(got, expected);
    drop(x);
    cluster.shutdown();
}
