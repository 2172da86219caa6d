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
