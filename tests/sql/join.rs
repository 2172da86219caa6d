//! Stream–table joins: on the stream's key (co-partitioned topics, no repartition) and on a
//! value column (the stream rekeyed and repartitioned to the table's partition count), inner
//! and left, run exactly-once; and the errors for joins SQL does not run.

use std::time::Duration;

use moldau_tests::streams_util::{produce_strings, read_topic};

use crate::persistent::{message, start};

/// Waits until a query's table store has logged `n` rows (read_committed: they are
/// committed), so that stream records produced afterwards find them.
fn wait_for_table(bootstrap: &str, query: &str, n: usize) {
    let changelog = format!("sqltest-{query}-Join-Table-changelog");
    let rows = read_topic(bootstrap, &changelog, n, Duration::from_secs(60), Duration::ZERO);
    assert_eq!(rows.len(), n, "{query} materialized the table's {n} rows");
}

fn json(v: &str) -> serde_json::Value {
    serde_json::from_str(v).unwrap_or_else(|e| panic!("{v}: {e}"))
}

#[test]
fn should_enrich_a_stream_with_a_table_on_its_key_and_on_a_column() {
    let (cluster, bootstrap, _dir, mut x) = start();
    x.execute(
        "CREATE TABLE users (id STRING PRIMARY KEY, name STRING, region STRING)
           WITH (kafka_topic='users', value_format='JSON', partitions=3);
         CREATE STREAM clicks (userid STRING KEY, page STRING)
           WITH (kafka_topic='clicks', value_format='JSON', partitions=3);
         CREATE STREAM orders (orderid STRING KEY, userid STRING, amount DOUBLE)
           WITH (kafka_topic='orders', value_format='JSON', partitions=2);",
    )
    .unwrap();
    let started = message(
        &x.execute(
            "CREATE STREAM enriched AS SELECT c.userid, c.page, u.name FROM clicks c JOIN users u ON c.userid = u.id;
             CREATE STREAM orders_by_user AS
               SELECT o.userid, o.orderid, o.amount * 2 AS doubled, u.region
               FROM orders o LEFT JOIN users u ON o.userid = u.id WHERE o.amount > 0;",
        )
        .unwrap(),
    );
    assert!(started.contains("CSAS_ENRICHED_1") && started.contains("CSAS_ORDERS_BY_USER_2"), "{started}");
    let explain = message(
        &x.execute("EXPLAIN SELECT o.userid, u.region FROM orders o JOIN users u ON o.userid = u.id;").unwrap(),
    );
    assert!(explain.contains("Join-Left-repartition"), "a join on a value column repartitions: {explain}");

    let users: Vec<(String, String, i64)> = (0..10)
        .map(|i| (format!("u{i}"), format!(r#"{{"name":"name-{i}","region":"r{}"}}"#, i % 3), 6_000_000 + i))
        .collect();
    let users: Vec<(&str, &str, i64)> = users.iter().map(|(k, v, t)| (k.as_str(), v.as_str(), *t)).collect();
    produce_strings(&bootstrap, "users", &users);
    wait_for_table(&bootstrap, "CSAS_ENRICHED_1", 10);
    wait_for_table(&bootstrap, "CSAS_ORDERS_BY_USER_2", 10);

    // Users u10..u14 have no row: the inner join drops their clicks, the left join keeps
    // their orders with a null region.
    let clicks: Vec<(String, String, i64)> =
        (0..90).map(|i| (format!("u{}", i % 15), format!(r#"{{"page":"/p/{i}"}}"#), 7_000_000 + i)).collect();
    let clicks: Vec<(&str, &str, i64)> = clicks.iter().map(|(k, v, t)| (k.as_str(), v.as_str(), *t)).collect();
    produce_strings(&bootstrap, "clicks", &clicks);
    let orders: Vec<(String, String, i64)> = (0..60)
        .map(|i| (format!("o{i}"), format!(r#"{{"userid":"u{}","amount":{}}}"#, i % 15, i % 4), 7_000_000 + i))
        .collect();
    let orders: Vec<(&str, &str, i64)> = orders.iter().map(|(k, v, t)| (k.as_str(), v.as_str(), *t)).collect();
    produce_strings(&bootstrap, "orders", &orders);

    let expected_clicks: Vec<usize> = (0..90).filter(|i| i % 15 < 10).collect();
    let out =
        read_topic(&bootstrap, "ENRICHED", expected_clicks.len(), Duration::from_secs(60), Duration::from_millis(500));
    let mut got: Vec<usize> = out
        .iter()
        .map(|r| {
            let v = json(&r.value_str());
            let i: usize = v["page"].as_str().unwrap().trim_start_matches("/p/").parse().unwrap();
            assert_eq!(r.key_str(), format!("u{}", i % 15), "keyed by the join key");
            assert_eq!(v["name"], format!("name-{}", i % 15), "{v}");
            assert!(v.get("userid").is_none(), "the key column is the key: {v}");
            assert_eq!(r.timestamp, 7_000_000 + i as i64, "the stream record's time");
            i
        })
        .collect();
    got.sort();
    assert_eq!(got, expected_clicks, "every click of a known user, once");

    let expected_orders: Vec<usize> = (0..60).filter(|i| i % 4 > 0).collect();
    let out = read_topic(
        &bootstrap,
        "ORDERS_BY_USER",
        expected_orders.len(),
        Duration::from_secs(60),
        Duration::from_millis(500),
    );
    let mut got: Vec<usize> = out
        .iter()
        .map(|r| {
            let v = json(&r.value_str());
            let i: usize = v["orderid"].as_str().unwrap().trim_start_matches('o').parse().unwrap();
            let user = i % 15;
            assert_eq!(r.key_str(), format!("u{user}"), "rekeyed by the join column: {v}");
            assert_eq!(v["doubled"].as_f64(), Some(2.0 * (i % 4) as f64), "{v}");
            if user < 10 {
                assert_eq!(v["region"], format!("r{}", user % 3), "{v}");
            } else {
                assert!(v["region"].is_null(), "no row: a null region: {v}");
            }
            i
        })
        .collect();
    got.sort();
    assert_eq!(got, expected_orders, "every order with an amount, once");
    let topics = message(&x.execute("SHOW TOPICS;").unwrap());
    assert!(
        topics.contains(r#"["sqltest-CSAS_ORDERS_BY_USER_2-Join-Left-repartition", "3"]"#),
        "the repartition topic takes the table's 3 partitions: {topics}"
    );

    // A table update is seen by the records after it.
    produce_strings(&bootstrap, "users", &[("u1", r#"{"name":"renamed","region":"r9"}"#, 8_000_000)]);
    wait_for_table(&bootstrap, "CSAS_ENRICHED_1", 11);
    produce_strings(&bootstrap, "clicks", &[("u1", r#"{"page":"/after"}"#, 8_000_001)]);
    let out = read_topic(
        &bootstrap,
        "ENRICHED",
        expected_clicks.len() + 1,
        Duration::from_secs(60),
        Duration::from_millis(300),
    );
    let last = out.iter().find(|r| r.value_str().contains("/after")).expect("the click after the update");
    assert_eq!(json(&last.value_str())["name"], "renamed");

    let describe = message(&x.execute("DESCRIBE users EXTENDED;").unwrap());
    assert!(describe.contains("read by query CSAS_ENRICHED_1"), "{describe}");
    let e = x.execute("DROP TABLE users;").unwrap_err().to_string();
    assert!(e.contains("TERMINATE"), "a table a join reads cannot be dropped: {e}");
    drop(x);
    cluster.shutdown();
}

#[test]
fn should_name_what_is_wrong_with_a_join() {
    let (cluster, _bootstrap, _dir, mut x) = start();
    x.execute(
        "CREATE TABLE users (id STRING PRIMARY KEY, name STRING) WITH (kafka_topic='users', value_format='JSON', partitions=3);
         CREATE STREAM clicks (userid STRING KEY, page STRING) WITH (kafka_topic='clicks', value_format='JSON', partitions=2);
         CREATE STREAM views (userid STRING KEY, page STRING) WITH (kafka_topic='views', value_format='JSON', partitions=2);",
    )
    .unwrap();
    let mut err = |sql: &str| x.execute(sql).unwrap_err().to_string();
    let e = err("CREATE STREAM j AS SELECT c.userid, u.name FROM clicks c JOIN users u ON c.userid = u.id;");
    assert!(
        e.contains("not co-partitioned")
            && e.contains("2 partitions")
            && e.contains("3 partitions")
            && e.contains("CREATE STREAM clicks_3 WITH (partitions=3) AS SELECT * FROM clicks"),
        "{e}"
    );
    let e = err("CREATE STREAM j AS SELECT c.userid, u.name FROM clicks c JOIN users u ON c.page = u.id;");
    assert!(e.contains("does not select") && e.contains("c.page"), "the join key must be selected: {e}");
    let e = err("CREATE STREAM j AS SELECT c.page AS p, u.name FROM clicks c JOIN users u ON c.page = u.name;");
    assert!(e.contains("PRIMARY KEY") && e.contains("users.id"), "{e}");
    let e = err("CREATE STREAM j AS SELECT * FROM users u JOIN clicks c ON c.userid = u.id;");
    assert!(e.contains("names the stream first"), "{e}");
    let e = err("CREATE STREAM j AS SELECT c.userid FROM clicks c JOIN views v ON c.userid = v.userid;");
    assert!(e.contains("stream–stream joins") && e.contains("not supported"), "{e}");
    let e = err("CREATE STREAM j AS SELECT c.page, u.name, u.id FROM clicks c RIGHT JOIN users u ON c.page = u.id;");
    assert!(e.contains("JOIN and LEFT JOIN"), "{e}");
    let e = err("CREATE TABLE j AS SELECT c.page, u.id, u.name FROM clicks c JOIN users u ON c.page = u.id;");
    assert!(e.contains("makes a stream"), "{e}");
    let e = err(
        "CREATE STREAM j AS SELECT c.page, u.id FROM clicks c JOIN users u ON c.page = u.id AND c.userid = u.name;",
    );
    assert!(e.contains("PRIMARY KEY"), "{e}");
    let e = err("CREATE STREAM j AS SELECT u.id, c.page, u.name AS page FROM clicks c JOIN users u ON c.page = u.id;");
    assert!(e.contains("c.page") && e.contains("ambiguous"), "two output columns named page: {e}");
    drop(x);
    cluster.shutdown();
}
