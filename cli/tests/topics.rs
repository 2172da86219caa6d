//! `moldau topics` and `moldau configs` against broker-sim, and the errors every command
//! reports the same way.

mod common;

use std::time::Duration;

use common::{cluster, moldau, on, rows};

#[test]
fn should_create_list_describe_alter_and_delete_topics() {
    let c = cluster(3);
    let out = on(
        &c,
        "topics",
        &[
            "--create",
            "--topic",
            "orders",
            "--partitions",
            "3",
            "--replication-factor",
            "2",
            "--config",
            "retention.ms=86400000",
        ],
        "",
    )
    .ok();
    assert_eq!(out.trim(), "Created topic orders.");
    let err = on(&c, "topics", &["--create", "--topic", "orders", "--partitions", "3"], "").err();
    assert!(err.contains("orders") && err.contains("exists already"), "{err}");
    let out = on(&c, "topics", &["--create", "--topic", "orders", "--partitions", "3", "--if-not-exists"], "").ok();
    assert!(out.contains("exists already"), "{out}");
    on(&c, "topics", &["--create", "--topic", "audit"], "").ok();

    let list = on(&c, "topics", &["--list", "--exclude-internal"], "").ok();
    assert_eq!(list, "audit\norders\n");
    let json: Vec<String> = serde_json::from_str(&on(&c, "topics", &["--list", "--output", "json"], "").ok()).unwrap();
    assert!(json.contains(&"orders".to_string()) && json.contains(&"__consumer_offsets".to_string()), "{json:?}");

    let described = on(&c, "topics", &["--describe", "--topic", "orders"], "").ok();
    let lines: Vec<&str> = described.lines().collect();
    assert_eq!(lines[0], "Topic: orders  PartitionCount: 3  ReplicationFactor: 2  Configs: retention.ms=86400000");
    let table = rows(&described);
    assert_eq!(table[1], ["PARTITION", "LEADER", "REPLICAS", "ISR"]);
    assert_eq!(table.len(), 5, "{described}");
    for (i, r) in table[2..].iter().enumerate() {
        assert_eq!(r[0], i.to_string());
        let replicas: Vec<&str> = r[2].split(',').collect();
        assert_eq!(replicas.len(), 2, "{r:?}");
        assert_eq!(r[1], replicas[0], "the leader is the first replica");
        assert_eq!(r[3], r[2], "every replica is in sync");
    }
    let json: serde_json::Value =
        serde_json::from_str(&on(&c, "topics", &["--describe", "--topic", "orders", "-o", "json"], "").ok()).unwrap();
    assert_eq!(json[0]["name"], "orders");
    assert_eq!(json[0]["partitions"].as_array().unwrap().len(), 3);
    assert_eq!(json[0]["configs"]["retention.ms"], "86400000");
    assert_eq!(json[0]["replication_factor"], 2);

    let out = on(&c, "topics", &["--alter", "--topic", "orders", "--partitions", "5"], "").ok();
    assert_eq!(out.trim(), "Topic orders now has 5 partitions (was 3).");
    let err = on(&c, "topics", &["--alter", "--topic", "orders", "--partitions", "2"], "").err();
    assert!(err.contains("orders"), "shrinking is refused: {err}");
    assert_eq!(on(&c, "topics", &["--delete", "--topic", "audit"], "").ok().trim(), "Deleted topic audit.");
    assert_eq!(on(&c, "topics", &["--list", "--exclude-internal"], "").ok(), "orders\n");
    c.shutdown();
}

#[test]
fn should_report_errors_as_one_line_and_a_non_zero_exit() {
    let c = cluster(1);
    let err = on(&c, "topics", &["--describe", "--topic", "nope"], "").err();
    assert_eq!(err, "error: topic 'nope' does not exist");
    let err = on(&c, "produce", &["--topic", "nope"], "x\n").err();
    assert_eq!(err, "error: topic 'nope' does not exist");
    let err = on(&c, "topics", &["--create", "--topic", "bad", "--config", "retention.ms=soon"], "").err();
    assert!(err.contains("bad") && err.contains("retention.ms"), "the bad config is named: {err}");
    let err = on(&c, "topics", &["--create", "--topic", "bad2", "--config", "retention.ms"], "").err();
    assert!(err.contains("--config expects key=value"), "{err}");
    // --command-config: client properties from a file, a bad one named.
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("client.properties");
    std::fs::write(&good, "# comment\nclient.id = from-file\nsocket.timeout.ms=10000\n").unwrap();
    on(&c, "topics", &["--list", "--command-config", good.to_str().unwrap()], "").ok();
    let bad = dir.path().join("bad.properties");
    std::fs::write(&bad, "bogus.property=1\n").unwrap();
    let err = on(&c, "topics", &["--list", "--command-config", bad.to_str().unwrap()], "").err();
    assert!(err.contains("bogus.property"), "{err}");
    let err = on(&c, "topics", &["--list", "--command-config", "/nonexistent/client.properties"], "").err();
    assert!(err.contains("/nonexistent/client.properties"), "{err}");
    // A bad flag is a usage error (exit 2) with clap's usage line, no backtrace.
    let r = on(&c, "topics", &["--lst"], "");
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("--lst") && !r.stderr.contains("panicked"), "{r:?}");
    c.shutdown();
    // Nobody listens on a port of a stopped cluster: reported within seconds.
    let dead = "127.0.0.1:1";
    for args in [
        vec!["topics", "--list", "--bootstrap-server", dead],
        vec!["groups", "--list", "--bootstrap-server", dead],
        vec!["configs", "--describe", "--topic", "t", "--bootstrap-server", dead],
        vec!["consume", "--topic", "t", "--bootstrap-server", dead],
    ] {
        let r = moldau(&args, "");
        let took = r.took;
        let err = r.err();
        assert!(err.contains("cannot reach the cluster at 127.0.0.1:1"), "{args:?}: {err}");
        assert!(took < Duration::from_secs(15), "{args:?} answered after {took:?}");
    }
}

#[test]
fn should_describe_and_alter_topic_and_broker_configs() {
    let c = cluster(1);
    on(&c, "topics", &["--create", "--topic", "cfg", "--partitions", "1"], "").ok();
    let out = on(&c, "configs", &["--describe", "--topic", "cfg"], "").ok();
    assert!(out.contains("No configs are set on topic cfg"), "{out}");
    let out = on(
        &c,
        "configs",
        &["--alter", "--topic", "cfg", "--add-config", "retention.ms=1000,cleanup.policy=[compact,delete]"],
        "",
    )
    .ok();
    assert_eq!(out.trim(), "Completed updating config for topic cfg.");
    let table = rows(&on(&c, "configs", &["--describe", "--topic", "cfg"], "").ok());
    assert_eq!(table[0], ["NAME", "VALUE", "SOURCE", "READ-ONLY"]);
    assert_eq!(table[1], ["cleanup.policy", "compact,delete", "DYNAMIC_TOPIC_CONFIG", "false"]);
    assert_eq!(table[2], ["retention.ms", "1000", "DYNAMIC_TOPIC_CONFIG", "false"]);
    on(
        &c,
        "configs",
        &["--alter", "--entity-type", "topics", "--entity-name", "cfg", "--delete-config", "retention.ms"],
        "",
    )
    .ok();
    let json: serde_json::Value =
        serde_json::from_str(&on(&c, "configs", &["--describe", "--topic", "cfg", "-o", "json", "--all"], "").ok())
            .unwrap();
    let retention = json.as_array().unwrap().iter().find(|e| e["name"] == "retention.ms").unwrap();
    assert_eq!(
        (retention["value"].as_str(), retention["source"].as_str()),
        (Some("604800000"), Some("DEFAULT_CONFIG"))
    );

    // Brokers: one broker, and the cluster-wide defaults.
    let node = c.brokers()[0].0.to_string();
    on(&c, "configs", &["--alter", "--broker", &node, "--add-config", "log.retention.ms=7200000"], "").ok();
    on(&c, "configs", &["--alter", "--broker-defaults", "--add-config", "log.cleaner.threads=2"], "").ok();
    let table = rows(&on(&c, "configs", &["--describe", "--broker", &node], "").ok());
    assert_eq!(table[1], ["log.retention.ms", "7200000", "DYNAMIC_BROKER_CONFIG", "false"]);
    let table = rows(&on(&c, "configs", &["--describe", "--entity-type", "brokers", "--entity-default"], "").ok());
    assert_eq!(table[1], ["log.cleaner.threads", "2", "DYNAMIC_DEFAULT_BROKER_CONFIG", "false"]);

    // Refusals name the key.
    let err = on(&c, "configs", &["--alter", "--topic", "cfg", "--add-config", "no.such.key=1"], "").err();
    assert_eq!(err, "error: unknown config 'no.such.key' for topic cfg");
    let err = on(&c, "configs", &["--alter", "--topic", "cfg", "--add-config", "retention.ms=soon"], "").err();
    assert!(err.contains("retention.ms") && err.contains("soon"), "{err}");
    let err =
        on(&c, "configs", &["--alter", "--broker", &node, "--add-config", "offsets.topic.num.partitions=3"], "").err();
    assert!(err.contains("offsets.topic.num.partitions is read-only"), "{err}");
    let err = on(&c, "configs", &["--alter", "--broker-defaults", "--add-config", "log.retention.ms=soon"], "").err();
    assert!(err.contains("log.retention.ms"), "{err}");
    c.shutdown();
}
