//! Exactly-once against broker-sim with unmodified librdkafka: a transactional copier that
//! aborts a third of its transactions, fencing by transactional id, SIGKILLed copiers,
//! transaction timeouts, and transaction state across a broker restart.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use moldau_tests::child::{must_exit_within, ChildLines};
use moldau_tests::copier::{run_copier, CopierConfig};
use moldau_tests::{client_config, init_logging, must_create_topic, must_start_cluster};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

type TxnProducer = ThreadedProducer<DefaultProducerContext>;
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Writes `per_partition` records `"<p>-<i>"` to each partition with an idempotent producer.
fn produce_input(bootstrap: &str, topic: &str, partitions: i32, per_partition: usize) {
    let producer: TxnProducer =
        client_config(bootstrap).set("enable.idempotence", "true").set("linger.ms", "5").create().unwrap();
    for i in 0..per_partition {
        for p in 0..partitions {
            let value = format!("{p}-{i}");
            let mut record = BaseRecord::<str, str>::to(topic).partition(p).key(&value).payload(&value);
            let deadline = Instant::now() + TIMEOUT;
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((e, r)) => {
                        assert!(Instant::now() < deadline, "input record {value} not queued within {TIMEOUT:?}: {e}");
                        std::thread::sleep(Duration::from_millis(5));
                        record = r;
                    }
                }
            }
        }
    }
    producer.flush(TIMEOUT).expect("input delivered");
}

/// Every value in `topic` per partition, read from the beginning to the end (the LSO for
/// read_committed, where librdkafka reports end of partition).
fn read_topic(bootstrap: &str, topic: &str, partitions: i32, isolation: &str) -> BTreeMap<i32, Vec<String>> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "reader")
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out: BTreeMap<i32, Vec<String>> = (0..partitions).map(|p| (p, Vec::new())).collect();
    let mut at_end = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while at_end.len() < partitions as usize {
        assert!(Instant::now() < deadline, "reading {topic} ({isolation}) timed out; at end: {at_end:?}");
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                out.get_mut(&m.partition()).unwrap().push(String::from_utf8_lossy(m.payload().unwrap()).into_owned());
            }
        }
    }
    out
}

fn expected(partitions: i32, per_partition: usize) -> BTreeMap<i32, Vec<String>> {
    (0..partitions).map(|p| (p, (0..per_partition).map(|i| format!("{p}-{i}")).collect())).collect()
}

async fn create_topics(bootstrap: &str, names: &[&str], partitions: i32) {
    for name in names {
        must_create_topic(bootstrap, name, partitions, 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_copy_each_record_exactly_once_when_a_third_of_transactions_abort() {
    init_logging();
    let cluster = must_start_cluster(3);
    let bs = cluster.bootstrap_servers().to_string();
    create_topics(&bs, &["copy-in", "copy-out"], 4).await;
    let result = tokio::task::spawn_blocking(move || {
        produce_input(&bs, "copy-in", 4, 500);
        let cfg = CopierConfig {
            bootstrap: bs.clone(),
            input: "copy-in".into(),
            output: "copy-out".into(),
            group: "copier".into(),
            transactional_id: "copier-1".into(),
            abort_ratio: 1.0 / 3.0,
            batch: 40,
            seed: 7,
            idle_exit: Duration::from_secs(3),
            pause_in_txn: Duration::ZERO,
        };
        let stats = run_copier(&cfg).expect("copier runs");
        let committed = read_topic(&bs, "copy-out", 4, "read_committed");
        let uncommitted = read_topic(&bs, "copy-out", 4, "read_uncommitted");
        (stats, committed, uncommitted)
    })
    .await
    .unwrap();
    let (stats, committed, uncommitted) = result;
    assert!(stats.aborted > 0 && stats.committed > 0, "both outcomes happened: {stats:?}");
    assert_eq!(committed, expected(4, 500), "read_committed sees each input record once, in order");
    let all: usize = uncommitted.values().map(Vec::len).sum();
    assert!(all > 2_000, "read_uncommitted also sees aborted records ({all} records)");
    for (p, values) in &uncommitted {
        let distinct: BTreeSet<&String> = values.iter().collect();
        assert_eq!(distinct.len(), 500, "partition {p}: every input record, some more than once");
    }
    cluster.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_fence_the_first_producer_when_a_second_uses_the_same_transactional_id() {
    init_logging();
    let cluster = must_start_cluster(3);
    let bs = cluster.bootstrap_servers().to_string();
    create_topics(&bs, &["fenced"], 1).await;
    let (committed, uncommitted) = tokio::task::spawn_blocking(move || {
        let producer = |bs: &str| -> TxnProducer {
            client_config(bs).set("transactional.id", "zombie").create().expect("transactional producer")
        };
        let send = |p: &TxnProducer, v: &str| {
            let _ = p.send(BaseRecord::<(), str>::to("fenced").partition(0).payload(v));
            p.flush(Duration::from_secs(5))
        };
        let first = producer(&bs);
        first.init_transactions(TIMEOUT).unwrap();
        first.begin_transaction().unwrap();
        send(&first, "from-first-before").expect("written before the fence");
        let second = producer(&bs);
        second.init_transactions(TIMEOUT).expect("second producer takes over the id");
        // The first producer's writes and commit now fail, fatally.
        let _ = send(&first, "from-first-after");
        let err = first.commit_transaction(TIMEOUT).expect_err("the fenced producer cannot commit");
        match &err {
            KafkaError::Transaction(e) => assert!(e.is_fatal(), "fencing is fatal: {e}"),
            other => panic!("expected a transaction error, got {other}"),
        }
        second.begin_transaction().unwrap();
        send(&second, "from-second").unwrap();
        second.commit_transaction(TIMEOUT).unwrap();
        (read_topic(&bs, "fenced", 1, "read_committed"), read_topic(&bs, "fenced", 1, "read_uncommitted"))
    })
    .await
    .unwrap();
    assert_eq!(committed[&0], vec!["from-second".to_string()]);
    assert!(uncommitted[&0].contains(&"from-first-before".to_string()));
    assert!(!uncommitted[&0].contains(&"from-first-after".to_string()), "the fenced producer wrote nothing");
    cluster.shutdown();
}

/// Starts the `txn-copier` child process.
fn spawn_copier(bs: &str, seed: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_txn-copier"))
        .args([bs, "crash-in", "crash-out", "crash-copier", "crash-1", "0.33", &seed.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("txn-copier starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_copy_exactly_once_when_the_copier_is_killed_mid_transaction() {
    init_logging();
    let cluster = must_start_cluster(3);
    let bs = cluster.bootstrap_servers().to_string();
    create_topics(&bs, &["crash-in", "crash-out"], 3).await;
    let (committed, kills) = tokio::task::spawn_blocking(move || {
        produce_input(&bs, "crash-in", 3, 1_000);
        let mut kills = 0;
        for round in 0..6u64 {
            let mut child = spawn_copier(&bs, round);
            let lines = ChildLines::new(child.stdout.take().unwrap());
            if round < 5 {
                // Wait for the copier to be inside a transaction a few times, then kill it there.
                let mut seen = 0;
                let inside = lines.wait_for(Duration::from_secs(60), |l| {
                    seen += usize::from(l == "in-txn");
                    (seen == 2 + round as usize).then_some(())
                });
                child.kill().expect("SIGKILL");
                child.wait().unwrap();
                assert!(
                    inside.is_some(),
                    "copier {round} was not inside a transaction {} times within 60 s",
                    2 + round
                );
                kills += 1;
            } else {
                let status = must_exit_within(&mut child, Duration::from_secs(120), "the last copier");
                let last = lines.into_receiver().into_iter().filter(|l| l.starts_with("done")).last();
                assert!(status.success(), "the last copier finishes cleanly ({last:?})");
            }
        }
        (read_topic(&bs, "crash-out", 3, "read_committed"), kills)
    })
    .await
    .unwrap();
    assert_eq!(kills, 5);
    assert_eq!(committed, expected(3, 1_000), "no duplicates and nothing lost after 5 SIGKILLs");
    cluster.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_abort_a_transaction_that_exceeds_its_timeout_and_fence_its_producer() {
    init_logging();
    let cluster = must_start_cluster(1);
    let bs = cluster.bootstrap_servers().to_string();
    create_topics(&bs, &["slow"], 1).await;
    let (committed, err) = tokio::task::spawn_blocking(move || {
        let p: TxnProducer =
            client_config(&bs).set("transactional.id", "slow").set("transaction.timeout.ms", "1000").create().unwrap();
        p.init_transactions(TIMEOUT).unwrap();
        p.begin_transaction().unwrap();
        let _ = p.send(BaseRecord::<(), str>::to("slow").partition(0).payload("late"));
        p.flush(TIMEOUT).unwrap();
        std::thread::sleep(Duration::from_millis(2_500));
        // The coordinator aborted the transaction: the LSO moved past it already.
        let committed = read_topic(&bs, "slow", 1, "read_committed");
        (committed, p.commit_transaction(TIMEOUT).expect_err("the timed-out transaction cannot commit"))
    })
    .await
    .unwrap();
    assert!(committed[&0].is_empty(), "the aborted record is invisible: {committed:?}");
    assert!(matches!(err, KafkaError::Transaction(_)), "{err}");
    cluster.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_keep_open_and_committed_transactions_when_restarted_on_the_same_data_dir() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let cluster = moldau_tests::cluster_builder().brokers(3).data_dir(dir.path()).start().unwrap();
    let bs = cluster.bootstrap_servers().to_string();
    create_topics(&bs, &["durable-txn"], 1).await;
    tokio::task::spawn_blocking(move || {
        let p: TxnProducer = client_config(&bs).set("transactional.id", "durable").create().unwrap();
        p.init_transactions(TIMEOUT).unwrap();
        p.begin_transaction().unwrap();
        let _ = p.send(BaseRecord::<(), str>::to("durable-txn").partition(0).payload("committed"));
        p.commit_transaction(TIMEOUT).unwrap();
        p.begin_transaction().unwrap();
        let _ = p.send(BaseRecord::<(), str>::to("durable-txn").partition(0).payload("open"));
        p.flush(TIMEOUT).unwrap();
        // Dropped with its transaction open.
    })
    .await
    .unwrap();
    cluster.shutdown();

    let cluster = moldau_tests::cluster_builder().brokers(3).data_dir(dir.path()).start().unwrap();
    let bs = cluster.bootstrap_servers().to_string();
    let (before, after, uncommitted) = tokio::task::spawn_blocking(move || {
        // The open transaction still holds the LSO back after the restart.
        let before = read_topic(&bs, "durable-txn", 1, "read_committed");
        // A new producer with the same id aborts it.
        let p: TxnProducer = client_config(&bs).set("transactional.id", "durable").create().unwrap();
        p.init_transactions(TIMEOUT).unwrap();
        (
            before,
            read_topic(&bs, "durable-txn", 1, "read_committed"),
            read_topic(&bs, "durable-txn", 1, "read_uncommitted"),
        )
    })
    .await
    .unwrap();
    assert_eq!(before[&0], vec!["committed".to_string()], "the open transaction is not visible");
    assert_eq!(after[&0], vec!["committed".to_string()], "and it is aborted, not committed");
    assert_eq!(uncommitted[&0], vec!["committed".to_string(), "open".to_string()]);
    cluster.shutdown();
}
