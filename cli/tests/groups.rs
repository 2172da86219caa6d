//! `moldau groups` against broker-sim: describe with LAG, members and state, every
//! reset-offsets spec with dry-run and execute, delete offsets, delete groups.

mod common;

use std::time::{Duration, Instant};

use common::{cluster, on, rows};
use moldau_broker_sim::Cluster;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// (partition, current offset, log-end offset, lag) per partition, from `--describe -o json`.
fn offsets(c: &Cluster, group: &str) -> Vec<(i64, Option<i64>, i64, Option<i64>)> {
    let out = on(c, "groups", &["--describe", "--group", group, "-o", "json"], "").ok();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["partition"].as_i64().unwrap(),
                r["current_offset"].as_i64(),
                r["log_end_offset"].as_i64().unwrap(),
                r["lag"].as_i64(),
            )
        })
        .collect()
}

fn current(c: &Cluster, group: &str) -> Vec<Option<i64>> {
    offsets(c, group).into_iter().map(|(_, cur, _, _)| cur).collect()
}

/// Topic `orders` with 2 partitions of 10 records each.
fn orders(c: &Cluster) {
    on(c, "topics", &["--create", "--topic", "orders", "--partitions", "2"], "").ok();
    let lines: String = (0..10).map(|i| format!("order-{i}\n")).collect();
    for p in ["0", "1"] {
        on(c, "produce", &["--topic", "orders", "--partition", p], &lines).ok();
    }
}

#[test]
fn should_show_lag_before_and_after_consuming() {
    let c = cluster(1);
    orders(&c);
    let err = on(&c, "groups", &["--describe", "--group", "audit"], "").err();
    assert_eq!(err, "error: consumer group 'audit' does not exist");
    let consume = |n: &str| {
        on(
            &c,
            "consume",
            &[
                "--topic",
                "orders",
                "--group",
                "audit",
                "--from-beginning",
                "--max-messages",
                n,
                "--timeout-ms",
                "10000",
            ],
            "",
        )
        .ok()
    };
    assert_eq!(consume("6").lines().count(), 6);
    // Only what was printed is committed (the rest was fetched, not printed).
    let o = offsets(&c, "audit");
    assert_eq!(o.iter().map(|r| r.1.unwrap()).sum::<i64>(), 6, "committed what was printed: {o:?}");
    assert!(o.iter().all(|r| r.2 == 10 && r.3 == Some(10 - r.1.unwrap())), "LAG = log end - current: {o:?}");
    assert_eq!(consume("14").lines().count(), 14);
    let o = offsets(&c, "audit");
    assert_eq!(o.len(), 2, "{o:?}");
    assert!(o.iter().all(|r| r.1 == Some(10) && r.3 == Some(0)), "no lag left: {o:?}");
    // The table for people.
    let out = on(&c, "groups", &["--describe", "--group", "audit"], "").ok();
    let t = rows(&out);
    assert_eq!(t[0], ["Consumer", "group", "'audit'", "has", "no", "active", "members."]);
    assert_eq!(
        t[1],
        ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID"]
    );
    assert_eq!(t[2], ["audit", "orders", "0", "10", "10", "0", "-", "-", "-"]);
    let list = on(&c, "groups", &["--list"], "").ok();
    assert_eq!(list, "audit\n");
    c.shutdown();
}

#[test]
fn should_describe_members_and_state_and_refuse_to_reset_or_delete_an_active_group() {
    let c = cluster(1);
    orders(&c);
    let member: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", c.bootstrap_servers())
        .set("group.id", "live")
        .set("client.id", "live-client")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    member.subscribe(&["orders"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while member.assignment().map_or(true, |a| a.count() < 2) {
        assert!(Instant::now() < deadline, "the member was never assigned");
        member.poll(Duration::from_millis(50));
    }
    let t = rows(&on(&c, "groups", &["--describe", "--group", "live", "--members"], "").ok());
    assert_eq!(t[0], ["CONSUMER-ID", "HOST", "CLIENT-ID", "#PARTITIONS", "ASSIGNMENT"]);
    assert_eq!(t.len(), 2);
    assert_eq!((t[1][2].as_str(), t[1][3].as_str(), t[1][4].as_str()), ("live-client", "2", "orders-0,orders-1"));
    let t = rows(&on(&c, "groups", &["--describe", "--group", "live", "--state"], "").ok());
    assert_eq!(t[1], ["live", "Stable", "range", "1"]);
    let table = on(&c, "groups", &["--describe", "--group", "live"], "").ok();
    assert!(table.contains("live-client"), "partitions show their member: {table}");
    let err = on(
        &c,
        "groups",
        &["--reset-offsets", "--group", "live", "--topic", "orders", "--to-earliest", "--execute"],
        "",
    )
    .err();
    assert!(err.contains("inactive") && err.contains("Stable"), "{err}");
    let dry = on(&c, "groups", &["--reset-offsets", "--group", "live", "--topic", "orders", "--to-earliest"], "").ok();
    assert!(dry.starts_with("Dry run"), "a dry run is allowed: {dry}");
    let err = on(&c, "groups", &["--delete", "--group", "live"], "").err();
    assert!(err.contains("active members"), "{err}");
    drop(member);
    c.shutdown();
}

#[test]
fn should_reset_offsets_with_every_spec_in_dry_run_and_execute() {
    let c = cluster(1);
    orders(&c);
    on(
        &c,
        "consume",
        &["--topic", "orders", "--group", "g", "--from-beginning", "--max-messages", "20", "--timeout-ms", "10000"],
        "",
    )
    .ok();
    assert_eq!(current(&c, "g"), [Some(10), Some(10)]);
    let reset = |args: &[&str]| {
        let mut all = vec!["--reset-offsets", "--group", "g"];
        all.extend_from_slice(args);
        on(&c, "groups", &all, "").ok()
    };
    // Dry run: the plan is printed, nothing changes.
    let plan = reset(&["--topic", "orders", "--to-earliest", "--dry-run"]);
    let t = rows(&plan);
    assert_eq!(t[1], ["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"]);
    assert_eq!(&t[2..], [["g", "orders", "0", "0"], ["g", "orders", "1", "0"]]);
    assert_eq!(current(&c, "g"), [Some(10), Some(10)], "a dry run commits nothing");
    let json: serde_json::Value =
        serde_json::from_str(&reset(&["--topic", "orders", "--to-latest", "-o", "json"])).unwrap();
    assert_eq!(json[1]["new_offset"], 10);
    assert_eq!(json[1]["partition"], 1);
    let cases: Vec<(Vec<&str>, [Option<i64>; 2])> = vec![
        (vec!["--topic", "orders", "--to-earliest"], [Some(0), Some(0)]),
        (vec!["--topic", "orders", "--to-latest"], [Some(10), Some(10)]),
        (vec!["--topic", "orders", "--to-offset", "3"], [Some(3), Some(3)]),
        (vec!["--topic", "orders", "--to-offset", "99"], [Some(10), Some(10)]),
        (vec!["--topic", "orders", "--shift-by", "-2"], [Some(8), Some(8)]),
        (vec!["--topic", "orders", "--shift-by", "-100"], [Some(0), Some(0)]),
        (vec!["--topic", "orders:1", "--to-offset", "5"], [Some(0), Some(5)]),
        (vec!["--all-topics", "--to-latest"], [Some(10), Some(10)]),
        (vec!["--topic", "orders", "--to-datetime", "2000-01-01T00:00:00.000Z"], [Some(0), Some(0)]),
        (vec!["--topic", "orders", "--to-datetime", "2100-01-01T00:00:00.000"], [Some(10), Some(10)]),
        (vec!["--topic", "orders", "--by-duration", "PT1H"], [Some(0), Some(0)]),
    ];
    for (args, want) in cases {
        // Each spec first as a dry run: its plan says what --execute then commits.
        let before = current(&c, "g");
        let mut dry = args.clone();
        dry.extend(["--dry-run", "-o", "json"]);
        let plan: serde_json::Value = serde_json::from_str(&reset(&dry)).unwrap();
        assert_eq!(current(&c, "g"), before, "a dry run commits nothing: {args:?}");
        let planned: Vec<(i64, i64)> = plan
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l["partition"].as_i64().unwrap(), l["new_offset"].as_i64().unwrap()))
            .collect();
        let mut all = args.clone();
        all.push("--execute");
        let out = reset(&all);
        assert!(!out.contains("Dry run"), "{out}");
        let now = current(&c, "g");
        assert_eq!(now, want, "{args:?}");
        for (p, o) in planned {
            assert_eq!(now[p as usize], Some(o), "{args:?}: the executed plan is the dry run's");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.csv");
    std::fs::write(&plan, "topic,partition,offset\norders,0,4\norders,1,6\n").unwrap();
    reset(&["--from-file", plan.to_str().unwrap(), "--execute"]);
    assert_eq!(current(&c, "g"), [Some(4), Some(6)], "--from-file");
    // Bad specs are one-line errors.
    let bad = |args: &[&str]| {
        let mut all = vec!["--reset-offsets", "--group", "g"];
        all.extend_from_slice(args);
        on(&c, "groups", &all, "").err()
    };
    assert!(bad(&["--topic", "orders", "--to-datetime", "yesterday"]).contains("'yesterday'"));
    assert!(bad(&["--topic", "orders", "--by-duration", "5m"]).contains("'5m'"));
    assert!(bad(&["--topic", "orders:7", "--to-earliest"]).contains("orders:7"));
    assert!(bad(&["--topic", "orders"]).contains("--to-earliest"));
    assert!(bad(&["--topic", "nope", "--to-earliest"]).contains("topic 'nope' does not exist"));
    c.shutdown();
}

#[test]
fn should_delete_offsets_and_groups() {
    let c = cluster(1);
    orders(&c);
    on(
        &c,
        "consume",
        &["--topic", "orders", "--group", "old", "--from-beginning", "--max-messages", "20", "--timeout-ms", "10000"],
        "",
    )
    .ok();
    let out = on(&c, "groups", &["--delete-offsets", "--group", "old", "--topic", "orders:0"], "").ok();
    assert!(out.contains("1 partition(s)"), "{out}");
    assert_eq!(current(&c, "old"), [Some(10)], "only partition 1 keeps its offset");
    assert_eq!(offsets(&c, "old")[0].0, 1);
    assert_eq!(on(&c, "groups", &["--delete", "--group", "old"], "").ok().trim(), "Deleted group old.");
    assert_eq!(on(&c, "groups", &["--list"], "").ok(), "");
    let err = on(&c, "groups", &["--delete", "--group", "old"], "").err();
    assert!(err.contains("does not exist"), "{err}");
    c.shutdown();
}
