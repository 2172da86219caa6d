//! `moldau produce` and `moldau consume` against broker-sim.

mod common;

use std::time::Duration;

use common::{cluster, on};
use moldau_broker_sim::partition_for_key;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

#[test]
fn should_produce_keyed_lines_to_the_java_partitions_and_print_them_back() {
    let c = cluster(1);
    on(&c, "topics", &["--create", "--topic", "greetings", "--partitions", "3"], "").ok();
    let input: String = (0..30).map(|i| format!("user-{i}:hello {i}\n")).collect();
    let r = on(&c, "produce", &["--topic", "greetings", "--parse-key", "--key-separator", ":"], &input);
    assert!(r.stderr.contains("30 records written"), "{r:?}");
    r.ok();
    let out = on(
        &c,
        "consume",
        &[
            "--topic",
            "greetings",
            "--from-beginning",
            "--print-key",
            "--print-partition",
            "--print-offset",
            "--max-messages",
            "30",
            "--timeout-ms",
            "10000",
        ],
        "",
    )
    .ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 30, "{out}");
    let mut next = [0i64; 3];
    for l in &lines {
        // Partition:p<TAB>Offset:o<TAB>key<TAB>value
        let f: Vec<&str> = l.split('\t').collect();
        let p: usize = f[0].strip_prefix("Partition:").unwrap().parse().unwrap();
        let o: i64 = f[1].strip_prefix("Offset:").unwrap().parse().unwrap();
        let (key, value) = (f[2], f[3]);
        assert_eq!(p as i32, partition_for_key(key.as_bytes(), 3), "{key} on its murmur2 partition");
        assert_eq!(value, format!("hello {}", key.trim_start_matches("user-")));
        assert_eq!(o, next[p], "offsets in order per partition");
        next[p] += 1;
    }
    c.shutdown();
}

#[test]
fn should_write_headers_to_one_partition_from_a_file_and_format_them() {
    let c = cluster(1);
    on(&c, "topics", &["--create", "--topic", "events", "--partitions", "3"], "").ok();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.txt");
    std::fs::write(&file, "a\nb\nc\n").unwrap();
    on(
        &c,
        "produce",
        &[
            "--topic",
            "events",
            "--file",
            file.to_str().unwrap(),
            "--partition",
            "2",
            "--header",
            "source=cli",
            "--header",
            "v=1",
            "--compression",
            "zstd",
            "--acks",
            "all",
            "--idempotent",
        ],
        "",
    )
    .ok();
    let out = on(
        &c,
        "consume",
        &[
            "--topic",
            "events",
            "--partition",
            "2",
            "--offset",
            "earliest",
            "--format",
            "%t|%p|%o|%s|%h|%S\\n",
            "--max-messages",
            "3",
            "--timeout-ms",
            "10000",
        ],
        "",
    )
    .ok();
    assert_eq!(out, "events|2|0|a|source:cli,v:1|1\nevents|2|1|b|source:cli,v:1|1\nevents|2|2|c|source:cli,v:1|1\n");
    let out = on(
        &c,
        "consume",
        &[
            "--topic",
            "events",
            "--partition",
            "2",
            "--offset",
            "1",
            "--print-headers",
            "--print-timestamp",
            "--max-messages",
            "1",
            "--timeout-ms",
            "10000",
        ],
        "",
    )
    .ok();
    let f: Vec<&str> = out.trim_end().split('\t').collect();
    assert!(f[0].starts_with("CreateTime:"), "{out}");
    assert_eq!(&f[1..], ["source:cli,v:1", "b"]);
    let out = on(
        &c,
        "consume",
        &["--topic", "events", "--partition", "0", "--offset", "earliest", "--timeout-ms", "1000"],
        "",
    );
    assert!(out.stderr.contains("Processed a total of 0 messages"), "idle consumers stop at --timeout-ms: {out:?}");
    assert_eq!(out.ok(), "");
    let err = on(&c, "produce", &["--topic", "events", "--partition", "7"], "x\n").err();
    assert!(err.contains("--partition 7"), "{err}");
    let err = on(&c, "produce", &["--topic", "events", "--parse-key", "--key-separator", ":"], "no separator\n").err();
    assert!(err.contains("line 1") && err.contains("no key separator"), "{err}");
    let err = on(&c, "consume", &["--topic", "events", "--format", "%q"], "").err();
    assert!(err.contains("%q"), "{err}");
    c.shutdown();
}

/// A transactional producer commits c1, aborts a1, commits c2: read_committed prints the
/// committed records only, read_uncommitted all three.
#[test]
fn should_hide_aborted_records_from_read_committed_consumers() {
    let c = cluster(1);
    on(&c, "topics", &["--create", "--topic", "txn", "--partitions", "1"], "").ok();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", c.bootstrap_servers())
        .set("transactional.id", "cli-test")
        .create()
        .unwrap();
    let t = Duration::from_secs(30);
    producer.init_transactions(t).unwrap();
    for (value, commit) in [("c1", true), ("a1", false), ("c2", true)] {
        producer.begin_transaction().unwrap();
        producer.send(BaseRecord::<(), _>::to("txn").payload(value)).unwrap();
        producer.flush(t).unwrap();
        if commit {
            producer.commit_transaction(t).unwrap();
        } else {
            producer.abort_transaction(t).unwrap();
        }
    }
    let read = |isolation: &str| {
        on(&c, "consume", &["--topic", "txn", "--from-beginning", "--isolation", isolation, "--timeout-ms", "2000"], "")
            .ok()
    };
    assert_eq!(read("read_committed"), "c1\nc2\n");
    assert_eq!(read("read_uncommitted"), "c1\na1\nc2\n");
    drop(producer);
    c.shutdown();
}
