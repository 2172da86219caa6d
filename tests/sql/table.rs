//! Tables as query sources: `CREATE TABLE … AS SELECT … FROM table WHERE …` keeps a filtered,
//! projected table (a row that stops matching, or is deleted, becomes a tombstone), push
//! queries stream a table's updates, and the statements that make no sense on a table say why.

use std::time::{Duration, Instant};

use moldau_sql::Outcome;
use moldau_tests::streams_util::{produce, read_topic};

use crate::persistent::{message, start};

#[test]
fn should_keep_a_filtered_projected_table_and_delete_rows_that_stop_matching() {
    let (cluster, bootstrap, _dir, mut x) = start();
    x.execute(
        "CREATE TABLE users (id STRING PRIMARY KEY, name STRING, region STRING)
           WITH (kafka_topic='users', value_format='JSON', partitions=2);
         CREATE TABLE eu AS SELECT id, upper(name) AS name FROM users WHERE region = 'eu';
         SET 'auto.offset.reset'='earliest';",
    )
    .unwrap();
    let mut push =
        match x.execute("SELECT id, name FROM users WHERE region = 'us' EMIT CHANGES LIMIT 2;").unwrap().pop() {
            Some(Outcome::Push(q)) => q,
            other => panic!("{other:?}"),
        };
    type Update<'a> = (&'a [u8], Option<&'a [u8]>, i64);
    let updates: [Update<'_>; 7] = [
        (b"u1", Some(br#"{"name":"ann","region":"eu"}"#), 6_000_001),
        (b"u2", Some(br#"{"name":"bob","region":"us"}"#), 6_000_002),
        (b"u3", Some(br#"{"name":"cat","region":"eu"}"#), 6_000_003),
        (b"u4", Some(b"not json"), 6_000_004),
        (b"u1", Some(br#"{"name":"ann","region":"us"}"#), 6_000_005),
        (b"u3", None, 6_000_006),
        (b"u5", Some(br#"{"name":"dan","region":"eu"}"#), 6_000_007),
    ];
    let records: Vec<_> = updates.iter().map(|(k, v, t)| (Some(*k), *v, Some(*t))).collect();
    produce(&bootstrap, "users", &records);

    // Per key, in order: the row while it matches, a tombstone once it does not.
    let out = read_topic(&bootstrap, "EU", 6, Duration::from_secs(60), Duration::from_millis(500));
    let mut by_key: std::collections::BTreeMap<String, Vec<Option<String>>> = Default::default();
    for r in &out {
        by_key.entry(r.key_str()).or_default().push(r.value.as_ref().map(|_| r.value_str()));
    }
    let row = |s: &str| Some(s.to_string());
    assert_eq!(by_key["u1"], [row(r#"{"name":"ANN"}"#), None], "u1 moved out of eu: a delete");
    assert_eq!(by_key["u2"], [None], "u2 never matched: a delete of nothing");
    assert_eq!(by_key["u3"], [row(r#"{"name":"CAT"}"#), None], "u3 was deleted");
    assert_eq!(by_key["u5"], [row(r#"{"name":"DAN"}"#)]);
    assert!(!by_key.contains_key("u4"), "the record that is not JSON is skipped: {by_key:?}");
    let describe = message(&x.execute("DESCRIBE eu EXTENDED;").unwrap());
    assert!(describe.contains("id | STRING (primary key)") && describe.contains("1 skipped"), "{describe}");

    // The push query saw the updates in the us region.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut rows = Vec::new();
    while rows.len() < 2 && !push.is_done() && Instant::now() < deadline {
        rows.extend(push.next_row(Duration::from_millis(100)).unwrap());
    }
    rows.sort_by_key(|r| r[0].to_string());
    assert_eq!(rows, [vec!["u1".into(), "ann".into()], vec!["u2".into(), "bob".into()]] as [moldau_sql::Row; 2]);
    push.close().unwrap();
    drop(x);
    cluster.shutdown();
}

#[test]
fn should_say_why_a_statement_does_not_apply_to_a_table() {
    let (cluster, _bootstrap, _dir, mut x) = start();
    x.execute(
        "CREATE TABLE users (id STRING PRIMARY KEY, name STRING, n BIGINT) WITH (kafka_topic='users', value_format='JSON', partitions=1);
         CREATE STREAM clicks (userid STRING KEY, page STRING) WITH (kafka_topic='clicks', value_format='JSON', partitions=1);",
    )
    .unwrap();
    let mut err = |sql: &str| x.execute(sql).unwrap_err().to_string();
    let e = err("CREATE TABLE t AS SELECT name FROM users;");
    assert!(e.contains("PRIMARY KEY of users") && e.contains("select id"), "{e}");
    let e = err("CREATE STREAM s AS SELECT id, name FROM users;");
    assert!(e.contains("users is a table") && e.contains("CREATE TABLE s AS SELECT"), "{e}");
    let e = err("CREATE TABLE t AS SELECT userid, page FROM clicks;");
    assert!(e.contains("needs a GROUP BY"), "{e}");
    let e = err("CREATE TABLE t AS SELECT name, COUNT(*) FROM users WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY name;");
    assert!(e.contains("WINDOW on the table users"), "{e}");
    let e = err("CREATE TABLE t AS SELECT name, COUNT(*) FROM users GROUP BY name;");
    assert!(e.contains("GROUP BY over the table users"), "{e}");
    let e = err("CREATE TABLE t AS SELECT id, name FROM users PARTITION BY name;");
    assert!(e.contains("PARTITION BY on the table users"), "{e}");
    let e = err("INSERT INTO clicks SELECT id AS userid, name AS page FROM users;");
    assert!(e.contains("users is a table"), "{e}");
    drop(x);
    cluster.shutdown();
}
