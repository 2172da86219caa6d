//! Persistent stateless queries: `CREATE STREAM … AS SELECT` and `INSERT INTO` run as
//! exactly-once applications; their output is read back with read_committed.

use std::time::Duration;

use moldau_sql::{Executor, ExecutorConfig, Outcome};
use moldau_tests::streams_util::{produce, read_topic};
use moldau_tests::{init_logging, must_start_cluster};

/// A one-broker cluster, its bootstrap servers, a state directory and an executor on them.
pub(crate) fn start() -> (moldau_broker_sim::Cluster, String, tempfile::TempDir, Executor) {
    init_logging();
    let cluster = must_start_cluster(1);
    let bootstrap = cluster.bootstrap_servers().to_string();
    let dir = tempfile::tempdir().unwrap();
    let x = executor(&bootstrap, dir.path());
    (cluster, bootstrap, dir, x)
}

pub(crate) fn executor(bootstrap: &str, dir: &std::path::Path) -> Executor {
    let mut c = ExecutorConfig::new(bootstrap, "sqltest", dir);
    c.properties.insert("commit.interval.ms".into(), "100".into());
    Executor::new(c).unwrap()
}

pub(crate) fn message(o: &[Outcome]) -> String {
    o.iter()
        .map(|o| match o {
            Outcome::Message(m) | Outcome::Text(m) => m.clone(),
            Outcome::Rows { columns, rows } => format!("{columns:?} {rows:?}"),
            Outcome::Push(q) => format!("push query {q:?}"),
            Outcome::Pull(r) => format!("{:?} {:?}", r.columns.iter().map(|c| &c.name).collect::<Vec<_>>(), r.rows),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn should_run_a_filtering_projecting_csas_exactly_once_and_skip_records_that_do_not_match() {
    let (cluster, bootstrap, _dir, mut x) = start();
    let created = x
        .execute(
            "CREATE STREAM pageviews (userid STRING KEY, page STRING, ms BIGINT)
               WITH (kafka_topic='pageviews', value_format='JSON', partitions=2);",
        )
        .unwrap();
    assert_eq!(message(&created), "stream pageviews created");
    let mut records: Vec<(String, String)> = Vec::new();
    for i in 0..600 {
        let page = if i % 3 == 0 { format!("/home/{i}") } else { format!("/shop/{i}") };
        records.push((format!("u{}", i % 7), format!(r#"{{"page":"{page}","ms":{i}}}"#)));
    }
    records.push(("u1".into(), "not json".into()));
    records.push(("u2".into(), r#"{"page":"/home/x","ms":"NaN"}"#.into()));
    let rs: Vec<_> = records.iter().map(|(k, v)| (Some(k.as_bytes()), Some(v.as_bytes()), Some(1_000i64))).collect();
    produce(&bootstrap, "pageviews", &rs);

    let started = x
        .execute("CREATE STREAM home AS SELECT userid, upper(page) AS page, ms * 2 AS ms2 FROM pageviews WHERE page LIKE '/home%';")
        .unwrap();
    assert!(message(&started).contains("CSAS_HOME_1"), "{started:?}");
    let out = read_topic(&bootstrap, "HOME", 200, Duration::from_secs(60), Duration::from_millis(500));
    assert_eq!(out.len(), 200, "one output per /home record, once each");
    let mut seen: Vec<i64> = out
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
            let ms2 = v["ms2"].as_i64().unwrap();
            assert_eq!(v["page"].as_str().unwrap(), format!("/HOME/{}", ms2 / 2));
            assert!(v.get("userid").is_none(), "the key column stays in the key: {v}");
            assert_eq!(r.key_str(), format!("u{}", (ms2 / 2) % 7), "the key passes through");
            ms2 / 2
        })
        .collect();
    seen.sort();
    assert_eq!(seen, (0..600).filter(|i| i % 3 == 0).collect::<Vec<_>>());

    let describe = message(&x.execute("DESCRIBE home EXTENDED;").unwrap());
    assert!(describe.contains("userid | STRING (key)") && describe.contains("ms2 | BIGINT"), "{describe}");
    assert!(describe.contains("2 skipped"), "the two bad records were skipped and counted: {describe}");
    // Its output read committed, its input offsets are committed with it: no lag.
    assert!(describe.contains("records/s over the last"), "{describe}");
    assert!(describe.contains("0 records behind on pageviews"), "{describe}");
    let queries = x.execute("SHOW QUERIES;").unwrap();
    assert!(message(&queries).contains("CSAS_HOME_1"), "{queries:?}");
    let by_page = message(
        &x.execute("CREATE STREAM by_page AS SELECT page FROM pageviews PARTITION BY page; SHOW QUERIES;").unwrap(),
    );
    assert!(by_page.contains("SELECT page FROM pageviews PARTITION BY page"), "the query as written: {by_page}");
    x.execute("TERMINATE CSAS_BY_PAGE_2;").unwrap();
    let e = x.execute("DROP STREAM pageviews;").unwrap_err().to_string();
    assert!(e.contains("TERMINATE CSAS_HOME_1"), "{e}");
    assert_eq!(message(&x.execute("TERMINATE csas_home_1;").unwrap()), "query CSAS_HOME_1 terminated");
    assert!(message(&x.execute("DROP STREAM home DELETE TOPIC;").unwrap()).contains("deleted"));
    x.close().unwrap();
    drop(x);
    cluster.shutdown();
}

#[test]
fn should_name_a_missing_topic_and_create_one_when_partitions_are_given() {
    let (cluster, _bootstrap, _dir, mut x) = start();
    let e = x.execute("CREATE STREAM s (v INT) WITH (kafka_topic='nope', value_format='JSON');").unwrap_err();
    assert!(e.to_string().contains("topic nope does not exist"), "{e}");
    x.execute("CREATE STREAM s (v INT) WITH (kafka_topic='made', value_format='JSON', partitions=3);").unwrap();
    let topics = message(&x.execute("SHOW TOPICS;").unwrap());
    assert!(topics.contains(r#"["made", "3"]"#), "{topics}");
    let e =
        x.execute("CREATE STREAM t (v INT) WITH (kafka_topic='made', value_format='JSON', partitions=2);").unwrap_err();
    assert!(e.to_string().contains("has 3 partitions"), "{e}");
    let streams = message(&x.execute("SHOW STREAMS;").unwrap());
    assert!(streams.contains(r#"["s", "made", "KAFKA", "JSON"]"#), "{streams}");
    drop(x);
    cluster.shutdown();
}

#[test]
fn should_insert_into_a_stream_whose_columns_match_and_name_the_difference_otherwise() {
    let (cluster, bootstrap, _dir, mut x) = start();
    x.execute(
        "CREATE STREAM a (id STRING KEY, n BIGINT) WITH (kafka_topic='a', value_format='JSON', partitions=1);
         CREATE STREAM b (id STRING KEY, n BIGINT) WITH (kafka_topic='b', value_format='JSON', partitions=1);
         CREATE STREAM merged (id STRING KEY, n BIGINT) WITH (kafka_topic='merged', value_format='JSON', partitions=1);",
    )
    .unwrap();
    let e = x.execute("INSERT INTO merged SELECT id, n + 1.5 AS n FROM a;").unwrap_err().to_string();
    assert!(e.contains("n DOUBLE") && e.contains("n BIGINT"), "{e}");
    x.execute("INSERT INTO merged SELECT id, n FROM a; INSERT INTO merged SELECT id, n * 10 AS n FROM b;").unwrap();
    produce(&bootstrap, "a", &[(Some(b"x"), Some(br#"{"n":1}"#), Some(5))]);
    produce(&bootstrap, "b", &[(Some(b"y"), Some(br#"{"n":2}"#), Some(6))]);
    let out = read_topic(&bootstrap, "merged", 2, Duration::from_secs(60), Duration::from_millis(300));
    let mut got: Vec<String> =
        out.iter().map(|r| format!("{}={}@{}", r.key_str(), r.value_str(), r.timestamp)).collect();
    got.sort();
    assert_eq!(got, [r#"x={"n":1}@5"#, r#"y={"n":20}@6"#]);
    drop(x);
    cluster.shutdown();
}

#[test]
fn should_rekey_a_stream_with_partition_by() {
    let (cluster, bootstrap, _dir, mut x) = start();
    x.execute(
        "CREATE STREAM orders (id STRING KEY, item STRING, qty INT)
           WITH (kafka_topic='orders', value_format='JSON', partitions=3);
         CREATE STREAM by_item AS SELECT item, id, qty FROM orders PARTITION BY item;",
    )
    .unwrap();
    let items = ["apple", "pear", "fig", "kiwi"];
    let values: Vec<(String, String)> =
        (0..40).map(|i| (format!("o{i}"), format!(r#"{{"item":"{}","qty":{i}}}"#, items[i % items.len()]))).collect();
    let rs: Vec<_> = values.iter().map(|(k, v)| (Some(k.as_bytes()), Some(v.as_bytes()), Some(10i64))).collect();
    produce(&bootstrap, "orders", &rs);
    let out = read_topic(&bootstrap, "BY_ITEM", 40, Duration::from_secs(60), Duration::from_millis(500));
    assert_eq!(out.len(), 40);
    let mut partition_of = std::collections::BTreeMap::new();
    for r in &out {
        let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
        assert!(v.get("item").is_none(), "the new key column is in the key: {v}");
        let qty = v["qty"].as_i64().unwrap() as usize;
        assert_eq!(v["id"].as_str().unwrap(), format!("o{qty}"), "the old key is a value column now");
        assert_eq!(r.key_str(), items[qty % items.len()]);
        let p = partition_of.entry(r.key_str()).or_insert(r.partition);
        assert_eq!(*p, r.partition, "one partition per new key");
    }
    let describe = message(&x.execute("DESCRIBE by_item;").unwrap());
    assert!(describe.contains("item | STRING (key)") && describe.contains("id | STRING\n"), "{describe}");
    drop(x);
    cluster.shutdown();
}
