//! rdkafka against broker-sim: bulk keyed produce/consume, compression codecs, persistence.

use std::collections::BTreeMap;
use std::time::Duration;

use moldau_broker_sim::partition_for_key;
use moldau_tests::{client_config, init_logging, must_create_topic, must_start_cluster};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// Produces `n` records `key = k{i % keys}`, `value = i` and returns (partition, value) per key.
async fn produce_keyed(bootstrap: &str, topic: &str, n: usize, keys: usize, codec: &str) -> Vec<(i32, i64)> {
    let producer: FutureProducer = client_config(bootstrap)
        .set("partitioner", "murmur2_random")
        .set("compression.type", codec)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let mut futures = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("k{}", i % keys);
        let value = i.to_string();
        let rec = FutureRecord::to(topic).key(&key).payload(&value);
        futures.push(producer.send_result(rec).expect("enqueue"));
    }
    let mut out = Vec::with_capacity(n);
    for f in futures {
        let d = f.await.expect("delivery future").map_err(|(e, _)| e).expect("delivered");
        out.push((d.partition, d.offset));
    }
    out
}

/// Reads every record of `topic` (all `partitions`) from the beginning until `n` arrive.
fn consume_all(bootstrap: &str, topic: &str, partitions: i32, n: usize) -> Vec<(i32, i64, String, String)> {
    let consumer: BaseConsumer = client_config(bootstrap).set("group.id", "reader").create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::with_capacity(n);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while out.len() < n {
        assert!(std::time::Instant::now() < deadline, "timed out: read {} of {n} records", out.len());
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            out.push((
                m.partition(),
                m.offset(),
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_read_back_100k_keyed_records_in_partition_order() {
    init_logging();
    let cluster = must_start_cluster(3);
    let bs = cluster.bootstrap_servers().to_string();
    must_create_topic(&bs, "bulk", 6, 1).await;
    let n = 100_000;
    let delivered = produce_keyed(&bs, "bulk", n, 1000, "none").await;
    // murmur2_random places keys where Java clients do.
    for (i, (p, _)) in delivered.iter().enumerate() {
        let key = format!("k{}", i % 1000);
        assert_eq!(*p, partition_for_key(key.as_bytes(), 6), "key {key} landed on the wrong partition");
    }
    let records = tokio::task::spawn_blocking(move || consume_all(&bs, "bulk", 6, n)).await.unwrap();
    assert_eq!(records.len(), n);
    let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
    let mut last_value_per_key: BTreeMap<String, i64> = BTreeMap::new();
    let mut seen = vec![false; n];
    for (p, o, k, v) in &records {
        let expect = next_offset.entry(*p).or_insert(0);
        assert_eq!(*o, *expect, "partition {p}: offsets must be contiguous");
        *expect += 1;
        let v: i64 = v.parse().expect("numeric value");
        let last = last_value_per_key.entry(k.clone()).or_insert(-1);
        assert!(v > *last, "key {k}: value {v} arrived after {last}");
        *last = v;
        assert!(!std::mem::replace(&mut seen[v as usize], true), "value {v} read twice");
    }
    assert!(seen.iter().all(|s| *s), "every record is read back");
    cluster.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_round_trip_records_with_every_compression_codec() {
    init_logging();
    let cluster = must_start_cluster(1);
    let bs = cluster.bootstrap_servers().to_string();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        must_create_topic(&bs, &topic, 2, 1).await;
        let producer: FutureProducer =
            client_config(&bs).set("compression.type", codec).set("linger.ms", "20").create().expect("producer");
        let n = 2_000;
        let mut futures = Vec::new();
        for i in 0..n {
            let value = format!("{codec}-value-{i}-{}", "x".repeat(i % 50));
            let key = format!("key-{i}");
            let headers = OwnedHeaders::new().insert(Header { key: "h", value: Some(codec.as_bytes()) });
            futures.push(
                producer
                    .send_result(FutureRecord::to(&topic).key(&key).payload(&value).headers(headers))
                    .expect("enqueue"),
            );
        }
        for f in futures {
            f.await.unwrap().map_err(|(e, _)| e).expect("delivered");
        }
        let bs2 = bs.clone();
        let topic2 = topic.clone();
        let consumer_check = tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = client_config(&bs2).set("group.id", "codec-check").create().unwrap();
            let mut tpl = TopicPartitionList::new();
            for p in 0..2 {
                tpl.add_partition_offset(&topic2, p, Offset::Beginning).unwrap();
            }
            consumer.assign(&tpl).unwrap();
            let mut got = BTreeMap::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while got.len() < n {
                assert!(std::time::Instant::now() < deadline, "{topic2}: timed out after {} records", got.len());
                if let Some(m) = consumer.poll(Duration::from_millis(200)) {
                    let m = m.unwrap();
                    let hdr = m.headers().and_then(|h| h.iter().next()).map(|h| h.value.unwrap_or_default().to_vec());
                    got.insert(
                        String::from_utf8_lossy(m.key().unwrap()).into_owned(),
                        (String::from_utf8_lossy(m.payload().unwrap()).into_owned(), hdr),
                    );
                }
            }
            got
        });
        let got = consumer_check.await.unwrap();
        for i in 0..n {
            let (v, h) = &got[&format!("key-{i}")];
            assert_eq!(v, &format!("{codec}-value-{i}-{}", "x".repeat(i % 50)));
            assert_eq!(h.as_deref(), Some(codec.as_bytes()));
        }
    }
    cluster.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_keep_topics_records_and_offsets_when_restarted_on_the_same_data_dir() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let cluster = moldau_tests::cluster_builder()
        .brokers(3)
        .data_dir(dir.path())
        .config("log.segment.bytes", "16384")
        .start()
        .unwrap();
    let bs = cluster.bootstrap_servers().to_string();
    let id = cluster.cluster_id().to_string();
    must_create_topic(&bs, "durable", 3, 1).await;
    produce_keyed(&bs, "durable", 3_000, 30, "lz4").await;
    // Commit offset 400 on every partition for group "g".
    let bs2 = bs.clone();
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = client_config(&bs2).set("group.id", "g").create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition_offset("durable", p, Offset::Offset(400)).unwrap();
        }
        c.commit(&tpl, CommitMode::Sync).expect("commit");
    })
    .await
    .unwrap();
    cluster.shutdown();

    let cluster = moldau_tests::cluster_builder().brokers(3).data_dir(dir.path()).start().unwrap();
    assert_eq!(cluster.cluster_id(), id, "cluster id is stable across restarts");
    let bs = cluster.bootstrap_servers().to_string();
    let records = tokio::task::spawn_blocking({
        let bs = bs.clone();
        move || consume_all(&bs, "durable", 3, 3_000)
    })
    .await
    .unwrap();
    let mut values: Vec<i64> = records.iter().map(|r| r.3.parse().unwrap()).collect();
    values.sort_unstable();
    assert_eq!(values, (0..3_000).collect::<Vec<i64>>());
    let committed = tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = client_config(&bs).set("group.id", "g").create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition("durable", p);
        }
        c.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets")
    })
    .await
    .unwrap();
    for e in committed.elements() {
        assert_eq!(e.offset(), Offset::Offset(400), "partition {} committed offset survives restart", e.partition());
    }
    cluster.shutdown();
}
