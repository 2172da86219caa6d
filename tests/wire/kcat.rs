//! kcat (Debian's, on librdkafka 2.0.2) against broker-sim: metadata listing, keyed produce
//! from stdin and consume with a format string.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use moldau_tests::{init_logging, must_create_topic, must_start_cluster};
use tokio::process::Command;

use crate::tools::{describe, run};

/// Safety net for one kcat run; each takes well under a second.
const KCAT_LIMIT: Duration = Duration::from_secs(60);
const PARTITIONS: i32 = 3;
const RECORDS: usize = 20;

/// Runs `kcat ARGS` (feeding `stdin`) and fails the test unless it exits 0.
async fn kcat(args: &[&str], stdin: Option<Vec<u8>>) -> String {
    let mut cmd = Command::new("kcat");
    cmd.args(args);
    let out = run(cmd, stdin, KCAT_LIMIT).await;
    assert!(out.status.success(), "kcat {args:?} failed\n{}", describe(&out));
    String::from_utf8(out.stdout).expect("kcat prints UTF-8 here")
}

/// `(partition, leader)` of every partition line under `topic "<topic>" with N partitions:`
/// in `kcat -L` output, or `None` if the topic is not listed.
fn listed_partitions(listing: &str, topic: &str) -> Option<(usize, Vec<(i32, i32)>)> {
    let header = format!("  topic \"{topic}\" with ");
    let mut lines = listing.lines().skip_while(|l| !l.starts_with(&header));
    let count = lines.next()?.strip_prefix(&header)?.split(' ').next()?.parse().ok()?;
    let partitions = lines
        .map_while(|l| l.strip_prefix("    partition "))
        .map(|l| {
            // "0, leader 2, replicas: 2,3,1, isrs: 2,3,1"
            let mut fields = l.split(", ");
            let p = fields.next().and_then(|f| f.parse().ok());
            let leader = fields.next().and_then(|f| f.strip_prefix("leader ")).and_then(|f| f.parse().ok());
            match (p, leader) {
                (Some(p), Some(leader)) => (p, leader),
                _ => panic!("unexpected partition line {l:?} in\n{listing}"),
            }
        })
        .collect();
    Some((count, partitions))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_list_all_brokers_and_the_topic_when_kcat_fetches_metadata() {
    init_logging();
    let cluster = must_start_cluster(3);
    let bs = cluster.bootstrap_servers().to_string();
    must_create_topic(&bs, "kcat-meta", PARTITIONS, 3).await;

    let listing = kcat(&["-b", &bs, "-L"], None).await;

    let brokers: BTreeSet<String> = listing
        .lines()
        .filter_map(|l| l.strip_prefix("  broker "))
        .map(|l| l.trim_end_matches(" (controller)").to_string())
        .collect();
    let expected: BTreeSet<String> =
        cluster.brokers().iter().map(|(id, port)| format!("{id} at 127.0.0.1:{port}")).collect();
    assert_eq!(brokers, expected, "brokers listed by kcat -L:\n{listing}");
    assert!(listing.contains(" 3 brokers:"), "{listing}");
    assert_eq!(listing.matches(" (controller)").count(), 1, "exactly one controller:\n{listing}");

    let (count, partitions) =
        listed_partitions(&listing, "kcat-meta").unwrap_or_else(|| panic!("topic kcat-meta not listed:\n{listing}"));
    assert_eq!(count, PARTITIONS as usize, "{listing}");
    let ids: BTreeSet<i32> = partitions.iter().map(|(p, _)| *p).collect();
    assert_eq!(ids, (0..PARTITIONS).collect(), "{listing}");
    let broker_ids: BTreeSet<i32> = cluster.brokers().iter().map(|(id, _)| *id).collect();
    assert!(
        partitions.iter().all(|(_, leader)| broker_ids.contains(leader)),
        "every partition led by a live broker:\n{listing}"
    );
    cluster.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_round_trip_keyed_records_when_kcat_produces_and_consumes() {
    init_logging();
    let cluster = must_start_cluster(3);
    let bs = cluster.bootstrap_servers().to_string();
    let topic = "kcat-data";
    must_create_topic(&bs, topic, PARTITIONS, 3).await;

    let sent: BTreeMap<String, String> =
        (0..RECORDS).map(|i| (format!("key-{i:02}"), format!("value {i} of {RECORDS}"))).collect();
    let input: String = sent.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    kcat(&["-P", "-b", &bs, "-t", topic, "-K:"], Some(input.into_bytes())).await;

    let output = kcat(&["-C", "-b", &bs, "-t", topic, "-o", "beginning", "-e", "-f", "%k|%p|%o|%T|%s\\n"], None).await;

    let mut received = BTreeMap::new();
    let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for line in output.lines() {
        let fields: Vec<&str> = line.splitn(5, '|').collect();
        let [key, partition, offset, timestamp, value] = fields[..] else {
            panic!("unexpected kcat output line {line:?} in\n{output}");
        };
        let partition: i32 = partition.parse().unwrap_or_else(|_| panic!("partition in {line:?}"));
        let offset: i64 = offset.parse().unwrap_or_else(|_| panic!("offset in {line:?}"));
        let timestamp: i64 = timestamp.parse().unwrap_or_else(|_| panic!("timestamp in {line:?}"));
        assert!((0..PARTITIONS).contains(&partition), "partition out of range in {line:?}");
        assert!(timestamp > 0, "timestamp not positive in {line:?}");
        assert!(received.insert(key.to_string(), value.to_string()).is_none(), "key {key} consumed twice:\n{output}");
        offsets.entry(partition).or_default().push(offset);
    }
    assert_eq!(received, sent, "records consumed by kcat:\n{output}");
    for (partition, offs) in &offsets {
        let expected: Vec<i64> = (0..offs.len() as i64).collect();
        assert_eq!(offs, &expected, "offsets of partition {partition} should increase from 0 without gaps:\n{output}");
    }
    cluster.shutdown();
}
