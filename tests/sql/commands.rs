//! The command topic: servers of one service id apply the same statements in one order, run
//! the same queries under the same ids (sharing their partitions), replay what is left when
//! they (re)start, and drop and terminate everywhere.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use moldau_sql::commands::CommandLog;
use moldau_sql::Outcome;
use moldau_tests::streams_util::{produce_strings, read_topic};

use crate::persistent::{executor, message, start};

fn run(log: &CommandLog, sql: &str) -> Result<String, String> {
    let mut out = Vec::new();
    let mut props = BTreeMap::new();
    log.execute(sql, &mut props, |o| out.push(o)).map_err(|e| e.to_string())?;
    Ok(message(&out))
}

fn server(bootstrap: &str, dir: &std::path::Path) -> CommandLog {
    CommandLog::start(executor(bootstrap, dir)).unwrap()
}

fn queries(log: &CommandLog) -> Vec<String> {
    match log.executor().lock().unwrap().execute("SHOW QUERIES;").unwrap().pop() {
        Some(Outcome::Rows { rows, .. }) => rows.into_iter().map(|r| r[0].clone()).collect(),
        other => panic!("{other:?}"),
    }
}

/// Waits (at most 60 s) until `f` holds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn should_share_statements_and_queries_among_servers_and_replay_them_on_restart() {
    let (cluster, bootstrap, dir_a, x) = start();
    drop(x);
    let dir_b = tempfile::tempdir().unwrap();
    let a = server(&bootstrap, dir_a.path());
    let created = run(
        &a,
        "CREATE STREAM s (k STRING KEY, v BIGINT) WITH (kafka_topic='s', value_format='JSON', partitions=2);
         CREATE TABLE t AS SELECT k, COUNT(*) AS n, SUM(v) AS total FROM s GROUP BY k;",
    )
    .unwrap();
    let id = queries(&a).pop().expect("the CTAS runs");
    assert!(created.contains(&id) && id.starts_with("CTAS_T_"), "{created}");
    let e = run(&a, "CREATE STREAM bad AS SELECT nope FROM s;").unwrap_err();
    assert!(e.contains("nope"), "checked before it is appended: {e}");

    // A second server replays the topic and runs the same query, sharing its partitions.
    let b = server(&bootstrap, dir_b.path());
    assert_eq!(queries(&b), std::slice::from_ref(&id), "the same query under the same id");
    assert!(b.executor().lock().unwrap().catalog().get("bad").is_none());
    let records: Vec<(String, String, i64)> =
        (0..400).map(|i| (format!("k{}", i % 8), format!(r#"{{"v":{i}}}"#), 6_000_000 + i)).collect();
    let rs: Vec<(&str, &str, i64)> = records.iter().map(|(k, v, t)| (k.as_str(), v.as_str(), *t)).collect();
    produce_strings(&bootstrap, "s", &rs);
    let out = read_topic(&bootstrap, "T", 400, Duration::from_secs(60), Duration::from_millis(500));
    assert_eq!(out.len(), 400, "one update per record, once, from the two servers together");
    let mut latest = BTreeMap::new();
    for r in &out {
        latest.insert(r.key_str(), serde_json::from_slice::<serde_json::Value>(r.value.as_deref().unwrap()).unwrap());
    }
    for k in 0..8 {
        let total: i64 = (0..400).filter(|i| i % 8 == k).sum();
        assert_eq!(latest[&format!("k{k}")], serde_json::json!({"n": 50, "total": total}), "k{k}");
    }
    let has_tasks = |log: &CommandLog| {
        let d = message(&log.executor().lock().unwrap().execute("DESCRIBE t EXTENDED;").unwrap());
        !d.contains("tasks here []")
    };
    eventually("both servers run tasks of the query", || has_tasks(&a) && has_tasks(&b));

    // TERMINATE on one server stops the query on both; the table stays.
    let e = run(&b, "DROP TABLE t;").unwrap_err();
    assert!(e.contains("TERMINATE"), "{e}");
    run(&b, &format!("TERMINATE {id};")).unwrap();
    eventually("the other server stops the query too", || queries(&a).is_empty());
    assert!(queries(&b).is_empty());

    // A restarted server replays: the stream and the table, and not the terminated query.
    drop(a);
    let a = server(&bootstrap, dir_a.path());
    assert!(queries(&a).is_empty(), "the terminated query stays terminated");
    assert!(a.executor().lock().unwrap().catalog().get("t").is_some());

    // DROP retracts the table's commands: a new server never sees it.
    run(&a, "DROP TABLE t;").unwrap();
    eventually("the other server drops it too", || b.executor().lock().unwrap().catalog().get("t").is_none());
    let dir_c = tempfile::tempdir().unwrap();
    let c = server(&bootstrap, dir_c.path());
    let ex = c.executor().lock().unwrap();
    assert!(ex.catalog().get("t").is_none() && ex.catalog().get("s").is_some(), "{:?}", ex.catalog());
    drop(ex);
    drop((a, b, c));
    cluster.shutdown();
}
