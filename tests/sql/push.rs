//! Push queries: rows stream to the client as they happen, from the end of the source unless
//! `SET 'auto.offset.reset'='earliest'`; LIMIT ends them; closing one removes its consumer
//! group, internal topics and state.

use std::time::{Duration, Instant};

use moldau_sql::{Outcome, PushQuery, Row};
use moldau_tests::client_config;
use moldau_tests::streams_util::produce;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::persistent::{message, start};

fn push(o: Vec<Outcome>) -> PushQuery {
    match o.into_iter().last() {
        Some(Outcome::Push(q)) => q,
        other => panic!("not a push query: {other:?}"),
    }
}

/// Rows until the query is done or `want` rows came, waiting at most 60 s in all.
fn rows(q: &mut PushQuery, want: usize) -> Vec<Row> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < want && !q.is_done() && Instant::now() < deadline {
        if let Some(r) = q.next_row(Duration::from_millis(100)).unwrap() {
            out.push(r);
        }
    }
    out
}

fn groups(bootstrap: &str) -> Vec<String> {
    let c: BaseConsumer = client_config(bootstrap).create().unwrap();
    let list = c.fetch_group_list(None, Duration::from_secs(10)).unwrap();
    list.groups().iter().map(|g| g.name().to_string()).collect()
}

#[test]
fn should_stream_rows_as_they_happen_end_at_the_limit_and_clean_up() {
    let (cluster, bootstrap, dir, mut x) = start();
    x.execute("CREATE STREAM s (k STRING KEY, v BIGINT) WITH (kafka_topic='s', value_format='JSON', partitions=1);")
        .unwrap();
    produce(&bootstrap, "s", &[(Some(b"old"), Some(br#"{"v":1}"#), Some(5))]);

    // From the end: the record produced before is not seen; the ones after are.
    let mut q = push(x.execute("SELECT k, v * 10 AS v10 FROM s WHERE v > 1 EMIT CHANGES LIMIT 2;").unwrap());
    assert_eq!(q.columns().iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["k", "v10"]);
    // The query's consumer takes a moment to join: produce until rows come.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    let mut n = 2;
    while got.len() < 2 && Instant::now() < deadline {
        let v = format!(r#"{{"v":{n}}}"#);
        produce(&bootstrap, "s", &[(Some(b"new"), Some(v.as_bytes()), Some(10))]);
        n += 1;
        if let Some(r) = q.next_row(Duration::from_millis(300)).unwrap() {
            got.push(r);
        }
    }
    assert_eq!(got.len(), 2, "two rows, then the limit");
    assert!(q.is_done());
    assert!(got.iter().all(|r| r[0] == "new"), "nothing from before the query started: {got:?}");
    assert!(q.next_row(Duration::from_millis(10)).unwrap().is_none(), "no rows past the limit");
    let app = format!("{q:?}");
    q.close().unwrap();
    let left: Vec<String> = groups(&bootstrap).into_iter().filter(|g| g.contains("transient_")).collect();
    assert!(left.is_empty(), "the push query's group is deleted: {left:?} ({app})");

    // From the start, an aggregation: its internal topics go when it closes.
    x.execute("SET 'auto.offset.reset'='earliest';").unwrap();
    let mut q = push(x.execute("SELECT k, COUNT(*) AS n FROM s GROUP BY k EMIT CHANGES;").unwrap());
    let first = rows(&mut q, 1);
    assert_eq!(first[0], vec![serde_json::json!("old"), serde_json::json!(1)], "the first record, counted");
    let topics = message(&x.execute("SHOW TOPICS;").unwrap());
    assert!(topics.contains("transient_S_") && topics.contains("-Aggregate-Materialize-changelog"), "{topics}");
    drop(q);
    let topics = message(&x.execute("SHOW TOPICS;").unwrap());
    assert!(!topics.contains("transient_"), "internal topics removed when the client goes away: {topics}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("transient_")),
        "local state removed"
    );
    drop(x);
    cluster.shutdown();
}
