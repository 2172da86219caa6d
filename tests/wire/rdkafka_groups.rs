//! rdkafka consumer groups against broker-sim: three members share six partitions, one leaves,
//! its partitions move, and committed offsets resume exactly — for every client assignor.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use moldau_tests::{client_config, init_logging, must_create_topic, must_start_cluster};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

fn member(bootstrap: &str, group: &str, assignor: &str) -> BaseConsumer {
    let c: BaseConsumer = client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "200")
        .set("partition.assignment.strategy", assignor)
        .create()
        .expect("consumer");
    c.subscribe(&["shared"]).expect("subscribe");
    c
}

fn assigned(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment().map(|a| a.elements().iter().map(|e| e.partition()).collect()).unwrap_or_default()
}

/// Polls every consumer until `done` holds, collecting values per consumer.
fn poll_until(
    consumers: &[&BaseConsumer],
    got: &mut [Vec<i64>],
    what: &str,
    mut done: impl FnMut(&[&BaseConsumer], &[Vec<i64>]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(consumers, got) {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        for (i, c) in consumers.iter().enumerate() {
            if let Some(m) = c.poll(Duration::from_millis(10)) {
                let m = m.expect("consume");
                got[i].push(String::from_utf8_lossy(m.payload().unwrap()).parse().unwrap());
            }
        }
    }
}

async fn produce(bootstrap: &str, from: i64, to: i64) {
    let producer: FutureProducer = client_config(bootstrap).create().expect("producer");
    for v in from..to {
        let value = v.to_string();
        producer
            .send(FutureRecord::<(), _>::to("shared").partition((v % 6) as i32).payload(&value), Duration::from_secs(5))
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
}

async fn share_rebalance_and_resume(assignor: &str) {
    init_logging();
    let cluster = must_start_cluster(3);
    let bs = cluster.bootstrap_servers().to_string();
    must_create_topic(&bs, "shared", 6, 1).await;
    let c1 = member(&bs, "g", assignor);
    let c2 = member(&bs, "g", assignor);
    let c3 = member(&bs, "g", assignor);
    let mut got = vec![Vec::new(), Vec::new(), Vec::new()];
    poll_until(&[&c1, &c2, &c3], &mut got, "3 members with 2 partitions each", |cs, _| {
        cs.iter().all(|c| assigned(c).len() == 2)
            && cs.iter().flat_map(|c| assigned(c)).collect::<BTreeSet<_>>().len() == 6
    });

    produce(&bs, 0, 600).await;
    poll_until(&[&c1, &c2, &c3], &mut got, "600 records consumed", |_, g| g.iter().map(Vec::len).sum::<usize>() >= 600);
    for c in [&c1, &c2, &c3] {
        c.commit_consumer_state(CommitMode::Sync).expect("commit");
    }
    let all: Vec<i64> = got.iter().flatten().copied().collect();
    assert_eq!(all.len(), 600, "each record exactly once");
    assert_eq!(all.iter().copied().collect::<BTreeSet<_>>(), (0..600).collect(), "every record consumed");
    let c3_partitions = assigned(&c3);

    drop(c3); // closes the consumer: LeaveGroup
    let mut got = vec![Vec::new(), Vec::new()];
    poll_until(&[&c1, &c2], &mut got, "2 members with 3 partitions each", |cs, _| {
        cs.iter().all(|c| assigned(c).len() == 3)
            && cs.iter().flat_map(|c| assigned(c)).collect::<BTreeSet<_>>().len() == 6
    });
    assert!(got.iter().all(Vec::is_empty), "nothing consumed twice after the rebalance: {got:?}");

    produce(&bs, 600, 900).await;
    poll_until(&[&c1, &c2], &mut got, "300 new records consumed", |_, g| g.iter().map(Vec::len).sum::<usize>() >= 300);
    let all: Vec<i64> = got.iter().flatten().copied().collect();
    assert_eq!(all.len(), 300, "no duplicates after the move");
    assert_eq!(
        all.iter().copied().collect::<BTreeSet<_>>(),
        (600..900).collect(),
        "resumed exactly at the committed offsets"
    );
    // c3's old partitions now belong to the survivors and resumed from c3's commits.
    let by_partition: BTreeMap<i64, usize> = all.iter().fold(BTreeMap::new(), |mut m, v| {
        *m.entry(v % 6).or_default() += 1;
        m
    });
    for p in c3_partitions {
        assert_eq!(by_partition.get(&i64::from(p)), Some(&50), "moved partition {p} resumed where c3 left off");
    }
    drop(c1);
    drop(c2);
    cluster.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_move_partitions_and_resume_offsets_when_a_member_leaves_with_range() {
    share_rebalance_and_resume("range").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_move_partitions_and_resume_offsets_when_a_member_leaves_with_roundrobin() {
    share_rebalance_and_resume("roundrobin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_move_partitions_and_resume_offsets_when_a_member_leaves_with_cooperative_sticky() {
    share_rebalance_and_resume("cooperative-sticky").await;
}
