//! The server's HTTP API, driven with the client the shell uses: statements, pull and push
//! queries (streamed, cancelled by going away), info and health, and JSON errors with 4xx
//! statuses for bad requests and bad SQL.

use std::time::{Duration, Instant};

use moldau_sql::client::{Client, Line, QueryStream};
use moldau_sql::server::{Server, ServerConfig};
use moldau_sql::ExecutorConfig;
use moldau_tests::client_config;
use moldau_tests::streams_util::produce_strings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{json, Value};

use crate::persistent::start;

fn server(bootstrap: &str, dir: &std::path::Path) -> Server {
    let mut c = ExecutorConfig::new(bootstrap, "sqltest", dir);
    c.properties.insert("commit.interval.ms".into(), "100".into());
    Server::start(ServerConfig { executor: c, listen: "127.0.0.1:0".parse().unwrap() }).unwrap()
}

/// The lines of a query's answer until it ends, or `n` lines came, waiting at most 60 s.
fn lines(q: &mut QueryStream, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        match q.next(Duration::from_millis(100)).unwrap() {
            Line::Value(v) => out.push(v),
            Line::Pending => {}
            Line::End => break,
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
fn should_serve_statements_queries_and_errors_over_http() {
    let (cluster, bootstrap, dir, x) = start();
    drop(x);
    let s = server(&bootstrap, dir.path());
    let c = Client::new(&format!("http://{}", s.addr())).unwrap();
    let none = json!({});

    let (status, health) = c.get("/healthcheck").unwrap();
    assert_eq!((status, &health["healthy"]), (200, &json!(true)), "{health}");
    let (status, info) = c.get("/info").unwrap();
    assert_eq!((status, info["service_id"].as_str()), (200, Some("sqltest")), "{info}");

    // ksqlDB's body shape is taken too.
    let (status, v) = c
        .statements(
            "CREATE STREAM views (userid STRING KEY, page STRING) WITH (kafka_topic='views', value_format='JSON', partitions=1);
             CREATE TABLE counts AS SELECT userid, COUNT(*) AS n FROM views GROUP BY userid;",
            &none,
        )
        .unwrap();
    assert_eq!(status, 200, "{v}");
    let results = v.as_array().unwrap();
    assert_eq!(results.len(), 2, "one result per statement: {v}");
    assert_eq!(results[0]["message"], "stream views created");
    assert!(results[1]["message"].as_str().unwrap().contains("CTAS_COUNTS_"), "{v}");
    let (status, v) = c.statements("SHOW STREAMS;", &none).unwrap();
    assert_eq!((status, &v[0]["rows"][0][0]), (200, &json!("views")), "{v}");

    // Errors: JSON with a message, the position of a syntax error, a 4xx status.
    let (status, v) = c.statements("SHOW TABLES;\nSELECT page FROM views\n  WHERE page = = 1;", &none).unwrap();
    assert_eq!(status, 400, "{v}");
    assert_eq!((v["line"].as_u64(), v["statementIndex"].as_u64()), (Some(3), Some(1)), "{v}");
    assert_eq!(v["results"].as_array().map(Vec::len), Some(1), "the statements before it ran: {v}");
    let (status, v) = c.statements("CREATE STREAM x AS SELECT nope FROM views;", &none).unwrap();
    assert!(status == 400 && v["message"].as_str().unwrap().contains("nope"), "{v}");
    let (status, v) = c.statements("SELECT * FROM views EMIT CHANGES;", &none).unwrap();
    assert!(status == 400 && v["message"].as_str().unwrap().contains("/query"), "{v}");
    let raw = |method: &str, path: &str, body: &str| -> (u16, Value) {
        use std::io::{Read, Write};
        let mut t = std::net::TcpStream::connect(s.addr()).unwrap();
        write!(
            t,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        t.read_to_string(&mut out).unwrap();
        let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
        let json = out.split("\r\n\r\n").nth(1).unwrap_or("");
        (status, serde_json::from_str(json.trim()).unwrap_or(Value::Null))
    };
    let (status, v) = raw("POST", "/statements", "{not json");
    assert!(status == 400 && v["message"].as_str().unwrap().contains("not JSON"), "{v}");
    let (status, v) = raw("POST", "/statements", r#"{"statements":"SHOW TOPICS;"}"#);
    assert!(status == 400 && v["message"].as_str().unwrap().contains("\"sql\""), "{v}");
    assert_eq!(raw("GET", "/nowhere", "").0, 404);
    assert_eq!(raw("GET", "/statements", "").0, 405);
    let big = format!(r#"{{"sql":"{}"}}"#, "x".repeat(2 << 20));
    assert_eq!(raw("POST", "/statements", &big).0, 413);

    // A push query streams rows as they happen and ends at its LIMIT.
    let mut push = c
        .query("SELECT userid, page FROM views EMIT CHANGES LIMIT 2;", &json!({"auto.offset.reset": "earliest"}))
        .unwrap();
    assert_eq!(push.status(), 200);
    assert_eq!(
        lines(&mut push, 1),
        [json!({"columns": [{"name": "userid", "type": "STRING"}, {"name": "page", "type": "STRING"}]})]
    );
    produce_strings(
        &bootstrap,
        "views",
        &[
            ("u1", r#"{"page":"/a"}"#, 6_000_000),
            ("u2", r#"{"page":"/b"}"#, 6_000_001),
            ("u1", r#"{"page":"/c"}"#, 6_000_002),
        ],
    );
    let rows = lines(&mut push, 3);
    assert_eq!(rows, [json!(["u1", "/a"]), json!(["u2", "/b"])], "two rows, then the answer ends");

    // A pull query answers from the table's store.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    while Instant::now() < deadline {
        let mut q = c.query("SELECT userid, n FROM counts WHERE userid = 'u1';", &none).unwrap();
        got = lines(&mut q, 10);
        if q.status() == 200 && got.get(1) == Some(&json!(["u1", 2])) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        got,
        [json!({"columns": [{"name": "userid", "type": "STRING"}, {"name": "n", "type": "BIGINT"}]}), json!(["u1", 2])]
    );

    // A push query whose client goes away ends, and its consumer group goes with it.
    let before = groups(&bootstrap);
    let mut push = c.query("SELECT * FROM views EMIT CHANGES;", &none).unwrap();
    assert_eq!(lines(&mut push, 1).len(), 1, "the header");
    let deadline = Instant::now() + Duration::from_secs(60);
    let transient = loop {
        let now: Vec<String> =
            groups(&bootstrap).into_iter().filter(|g| !before.contains(g) && g.contains("transient")).collect();
        if let Some(g) = now.first() {
            break g.clone();
        }
        assert!(Instant::now() < deadline, "the push query's group appears");
        std::thread::sleep(Duration::from_millis(100));
    };
    push.cancel();
    let deadline = Instant::now() + Duration::from_secs(60);
    while groups(&bootstrap).contains(&transient) {
        assert!(Instant::now() < deadline, "the push query's group {transient} is removed once its client went away");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(s);
    cluster.shutdown();
}

/// The rows a pull query answers through `c` (its lines after the columns), or its error.
fn pull_rows(c: &Client, sql: &str, properties: &Value) -> Result<Vec<Value>, String> {
    let mut q = c.query(sql, properties).unwrap();
    let status = q.status();
    let mut all = lines(&mut q, usize::MAX);
    if status != 200 {
        return Err(all.pop().map_or_else(|| format!("status {status}"), |v| v.to_string()));
    }
    Ok(all.split_off(1))
}

/// Two servers of one service share a CTAS's partitions; a pull query on either answers every
/// key, asking the other server for the partitions it hosts (found from the group's assignment
/// and each server's `application.server`).
#[test]
fn should_forward_pull_queries_to_the_servers_hosting_the_partitions() {
    let (cluster, bootstrap, dir_a, x) = start();
    drop(x);
    let dir_b = tempfile::tempdir().unwrap();
    let (a, b) = (server(&bootstrap, dir_a.path()), server(&bootstrap, dir_b.path()));
    let (ca, cb) =
        (Client::new(&format!("http://{}", a.addr())).unwrap(), Client::new(&format!("http://{}", b.addr())).unwrap());
    let none = json!({});
    let (status, v) = ca
        .statements(
            "CREATE STREAM s (k STRING KEY, v BIGINT) WITH (kafka_topic='s', value_format='JSON', partitions=4);
             CREATE TABLE t AS SELECT k, COUNT(*) AS n, SUM(v) AS total FROM s GROUP BY k;",
            &none,
        )
        .unwrap();
    assert_eq!(status, 200, "{v}");
    let records: Vec<(String, String, i64)> =
        (0..400).map(|i| (format!("k{}", i % 8), format!(r#"{{"v":{i}}}"#), 6_000_000 + i)).collect();
    let rs: Vec<(&str, &str, i64)> = records.iter().map(|(k, v, t)| (k.as_str(), v.as_str(), *t)).collect();
    produce_strings(&bootstrap, "s", &rs);
    let expected: Vec<Value> = (0..8)
        .map(|k| {
            let total: i64 = (0..400).filter(|i| i % 8 == k).sum();
            json!([format!("k{k}"), 50, total])
        })
        .collect();
    let tasks_here = |c: &Client| -> String {
        let (_, v) = c.statements("DESCRIBE t EXTENDED;", &json!({})).unwrap();
        let text = v[0]["text"].as_str().unwrap_or_default().to_string();
        text.lines().find(|l| l.contains("tasks here")).unwrap_or_default().to_string()
    };
    // Both servers run tasks of the query, so the store's partitions are not all on either
    // one: at least one of them forwards.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    while Instant::now() < deadline {
        let (ta, tb) = (tasks_here(&ca), tasks_here(&cb));
        let both = !ta.contains("tasks here []") && !tb.contains("tasks here []") && !ta.is_empty() && !tb.is_empty();
        if both {
            let sorted = |mut r: Vec<Value>| {
                r.sort_by_key(|v| v[0].as_str().unwrap_or_default().to_string());
                r
            };
            got_a = pull_rows(&ca, "SELECT * FROM t;", &none).map(sorted).unwrap_or_default();
            got_b = pull_rows(&cb, "SELECT * FROM t;", &none).map(sorted).unwrap_or_default();
            if got_a == expected && got_b == expected {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(got_a, expected, "every key through A ({})", tasks_here(&ca));
    assert_eq!(got_b, expected, "every key through B ({})", tasks_here(&cb));
    // Point lookups of every key, and a LIMIT over the whole fleet, from both.
    for c in [&ca, &cb] {
        for (k, row) in expected.iter().enumerate() {
            let got = pull_rows(c, &format!("SELECT * FROM t WHERE k = 'k{k}';"), &none).unwrap();
            assert_eq!(got, std::slice::from_ref(row), "k{k}");
        }
        assert_eq!(pull_rows(c, "SELECT k FROM t LIMIT 3;", &none).unwrap().len(), 3);
    }
    // A forwarded request names its partitions; a server not hosting them says so.
    let asked = json!({"request.moldau.pull.partitions": "0,1,2,3"});
    let (ra, rb) = (pull_rows(&ca, "SELECT * FROM t;", &asked), pull_rows(&cb, "SELECT * FROM t;", &asked));
    let refused = [&ra, &rb].into_iter().filter_map(|r| r.as_ref().err()).collect::<Vec<_>>();
    assert!(!refused.is_empty() && refused.iter().all(|e| e.contains("not running on this server")), "{ra:?} {rb:?}");
    let e = pull_rows(&ca, "SELECT * FROM t;", &json!({"request.moldau.pull.partitions": "x"})).unwrap_err();
    assert!(e.contains("not a list of partitions"), "{e}");
    drop((a, b));
    cluster.shutdown();
}
