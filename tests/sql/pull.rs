//! Pull queries: a table's current rows answered from the store of the aggregation that
//! materializes it (point lookups, IN lists, key ranges, scans with LIMIT, windowed tables by
//! key and window bounds), committed state only, and the errors for what cannot be pulled.

use std::time::{Duration, Instant};

use moldau_sql::pull::PullResult;
use moldau_sql::{Executor, Outcome};
use moldau_tests::streams_util::produce_strings;
use serde_json::json;

use crate::persistent::{message, start};

fn pull(x: &mut Executor, sql: &str) -> PullResult {
    match x.execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}")).pop() {
        Some(Outcome::Pull(r)) => r,
        other => panic!("{sql}: not a pull answer: {other:?}"),
    }
}

/// Asks `sql` until it answers `want` (the store lags its commit by up to about a second),
/// for at most 60 s; returns the last answer.
fn pull_until(x: &mut Executor, sql: &str, want: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: Vec<serde_json::Value> = match x.execute(sql) {
            Ok(mut o) => match o.pop() {
                Some(Outcome::Pull(r)) => r.rows.into_iter().map(serde_json::Value::from).collect(),
                other => panic!("{other:?}"),
            },
            // Not running yet: the query is starting.
            Err(e) if e.to_string().contains("not ready") => Vec::new(),
            Err(e) => panic!("{sql}: {e}"),
        };
        if got == want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn should_answer_lookups_ranges_and_scans_from_the_live_table() {
    let (cluster, bootstrap, _dir, mut x) = start();
    x.execute(
        "CREATE STREAM views (userid STRING KEY, page STRING, ms BIGINT)
           WITH (kafka_topic='views', value_format='JSON', partitions=3);
         CREATE TABLE per_user AS SELECT userid, COUNT(*) AS n, SUM(ms) AS total FROM views GROUP BY userid;
         CREATE TABLE per_window AS SELECT userid, COUNT(*) AS n FROM views
           WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY userid;",
    )
    .unwrap();
    // 600 views of 20 users, 30 each, over 60 s of record time.
    let records: Vec<(String, String, i64)> = (0..600i64)
        .map(|i| (format!("u{:02}", i % 20), format!(r#"{{"page":"/p","ms":{i}}}"#), 6_000_000 + i * 100))
        .collect();
    let rs: Vec<(&str, &str, i64)> = records.iter().map(|(k, v, t)| (k.as_str(), v.as_str(), *t)).collect();
    produce_strings(&bootstrap, "views", &rs);
    let total = |u: i64| (0..600i64).filter(|i| i % 20 == u).sum::<i64>();

    let got = pull_until(
        &mut x,
        "SELECT userid, n, total FROM per_user WHERE userid = 'u07';",
        &[json!(["u07", 30, total(7)])],
    );
    assert_eq!(got, [json!(["u07", 30, total(7)])], "a point lookup");
    // More input right after: its commit comes soon after the one the answer came from, and
    // must reach the store too once the input stops.
    let more: Vec<(String, String, i64)> = (600..620i64)
        .map(|i| ("u07".to_string(), format!(r#"{{"page":"/p","ms":{i}}}"#), 6_000_000 + (i - 600) * 100))
        .collect();
    produce_strings(
        &bootstrap,
        "views",
        &more.iter().map(|(k, v, t)| (k.as_str(), v.as_str(), *t)).collect::<Vec<_>>(),
    );
    let total7 = total(7) + (600..620i64).sum::<i64>();
    let got = pull_until(
        &mut x,
        "SELECT userid, n, total FROM per_user WHERE userid = 'u07';",
        &[json!(["u07", 50, total7])],
    );
    assert_eq!(got, [json!(["u07", 50, total7])], "the last commits are answered once the input stops");
    let r = pull(&mut x, "SELECT n * 2 AS twice, userid FROM per_user WHERE userid IN ('u01', 'u03', 'nobody');");
    assert_eq!(r.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["twice", "userid"]);
    let mut rows = r.rows;
    rows.sort_by_key(|r| r[1].to_string());
    assert_eq!(
        rows,
        [vec![json!(60), json!("u01")], vec![json!(60), json!("u03")]],
        "an IN list; a missing key has no row"
    );
    let r = pull(&mut x, "SELECT userid FROM per_user WHERE userid >= 'u05' AND userid < 'u08';");
    let mut users: Vec<String> = r.rows.iter().map(|r| r[0].as_str().unwrap().to_string()).collect();
    users.sort();
    assert_eq!(users, ["u05", "u06", "u07"], "a key range");
    let r = pull(&mut x, "SELECT * FROM per_user;");
    assert_eq!(r.rows.len(), 20, "a scan of every row");
    let r = pull(&mut x, "SELECT userid FROM per_user WHERE total > 6000 LIMIT 3;");
    assert_eq!(r.rows.len(), 3, "a scan that stops at its LIMIT");
    assert!(pull(&mut x, "SELECT * FROM per_user WHERE userid = 'nobody';").rows.is_empty());
    // Through DataFusion's TableProvider: the WHERE clause is pushed into the table's scan
    // (none of it is left above), its key conjunct a point lookup, and the LIMIT with it.
    let explain = message(&x.execute("EXPLAIN SELECT n FROM per_user WHERE userid = 'u07' AND n > 3;").unwrap());
    assert!(explain.contains("StoreScanExec: table=per_user, lookup=1 keys"), "{explain}");
    assert!(explain.contains("full_filters=[") && !explain.contains("Filter:"), "{explain}");
    let explain = message(&x.execute("EXPLAIN SELECT userid FROM per_user WHERE total > 6000 LIMIT 3;").unwrap());
    assert!(explain.contains("lookup=scan") && explain.contains("limit=3"), "{explain}");
    let explain =
        message(&x.execute("EXPLAIN SELECT userid FROM per_user WHERE userid >= 'u05' AND userid < 'u08';").unwrap());
    assert!(explain.contains("lookup=key range"), "{explain}");

    // Windowed: u03's views fall in six 10-second windows, five views each.
    let want: Vec<serde_json::Value> =
        (0..6).map(|w| json!(["u03", 5, 6_000_000 + w * 10_000, 6_010_000 + w * 10_000])).collect();
    let sql = "SELECT userid, n, windowstart, windowend FROM per_window WHERE userid = 'u03';";
    let mut got = pull_until(&mut x, sql, &want);
    got.sort_by_key(|r| r[2].as_i64());
    assert_eq!(got, want, "a windowed table by key");
    let r = pull(
        &mut x,
        "SELECT windowstart, n FROM per_window WHERE userid = 'u03' AND windowstart >= 6020000 AND windowstart < 6040000;",
    );
    let mut starts: Vec<i64> = r.rows.iter().map(|r| r[0].as_i64().unwrap()).collect();
    starts.sort();
    assert_eq!(starts, [6_020_000, 6_030_000], "by key and window bounds");
    assert_eq!(pull(&mut x, "SELECT * FROM per_window;").rows.len(), 120, "20 users × 6 windows");

    // What cannot be pulled says why.
    x.execute("CREATE TABLE users (id STRING PRIMARY KEY, name STRING) WITH (kafka_topic='users', value_format='JSON', partitions=1);").unwrap();
    let e = x.execute("SELECT * FROM users WHERE id = 'a';").unwrap_err().to_string();
    assert!(e.contains("users is not materialized") && e.contains("EMIT CHANGES"), "{e}");
    let e = x.execute("SELECT * FROM views;").unwrap_err().to_string();
    assert!(e.contains("views is a stream") && e.contains("EMIT CHANGES"), "{e}");
    let e = x.execute("SELECT userid, COUNT(*) FROM per_user GROUP BY userid;").unwrap_err().to_string();
    assert!(e.contains("pull query"), "{e}");
    let e = x.execute("SELECT * FROM per_user ORDER BY n;").unwrap_err().to_string();
    assert!(e.contains("Sort") && e.contains("pull query"), "{e}");
    drop(x);
    cluster.shutdown();
}

#[test]
fn should_answer_committed_state_only() {
    let (cluster, bootstrap, dir, x) = start();
    drop(x);
    // At least once with a commit interval far beyond the test: records are processed, and
    // nothing is committed until the query stops.
    let mut c = moldau_sql::ExecutorConfig::new(&bootstrap, "sqltest", dir.path());
    c.properties.insert("processing.guarantee".into(), "at_least_once".into());
    c.properties.insert("commit.interval.ms".into(), "600000".into());
    let mut x = Executor::new(c).unwrap();
    x.execute(
        "CREATE STREAM s (k STRING KEY, v BIGINT) WITH (kafka_topic='s', value_format='JSON', partitions=1);
         CREATE TABLE t AS SELECT k, COUNT(*) AS n FROM s GROUP BY k;",
    )
    .unwrap();
    let rows: Vec<(String, String, i64)> =
        (0..50).map(|i| (format!("k{}", i % 5), format!(r#"{{"v":{i}}}"#), 6_000_000 + i)).collect();
    let rs: Vec<(&str, &str, i64)> = rows.iter().map(|(k, v, t)| (k.as_str(), v.as_str(), *t)).collect();
    produce_strings(&bootstrap, "s", &rs);
    // The premise: the query processed every record.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut described = String::new();
    while Instant::now() < deadline {
        described = message(&x.execute("DESCRIBE t EXTENDED;").unwrap());
        if described.contains("50 records processed") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        described.contains("50 records processed"),
        "grouped by its key, one sub-topology took all 50: {described}"
    );
    // Longer than the store takes to persist a commit (about a second): still nothing.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let r = pull(&mut x, "SELECT * FROM t;");
        assert!(r.rows.is_empty(), "processed but not committed: not answered: {r:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(x);
    cluster.shutdown();
}
