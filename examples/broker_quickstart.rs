//! Broker quick start: an embedded 3-broker broker-sim cluster, a topic, keyed records produced
//! with rdkafka and read back by a consumer group.

use std::time::Duration;

use anyhow::{bail, Context};
use moldau_broker_sim::Cluster;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let cluster = Cluster::builder().brokers(3).start().context("starting broker-sim")?;
    let bootstrap = cluster.bootstrap_servers().to_string();
    println!("broker-sim cluster {} up: bootstrap.servers={bootstrap}", cluster.cluster_id());

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", &bootstrap).create()?;
    let topic = NewTopic::new("greetings", 3, TopicReplication::Fixed(3));
    for r in admin.create_topics([&topic], &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    println!("created topic 'greetings' with 3 partitions, replication factor 3");

    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).set("partitioner", "murmur2_random").create()?;
    let n = 12;
    for i in 0..n {
        let key = format!("user-{}", i % 4);
        let value = format!("hello #{i}");
        let d = producer
            .send(FutureRecord::to("greetings").key(&key).payload(&value), Duration::from_secs(5))
            .await
            .map_err(|(e, _)| e)?;
        println!("produced {key} => {value:<10} partition {} offset {}", d.partition, d.offset);
    }

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "quickstart")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&["greetings"])?;
    let mut seen = 0;
    while seen < n {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .context("timed out waiting for records")??;
        seen += 1;
        println!(
            "consumed partition {} offset {}: {} => {}",
            m.partition(),
            m.offset(),
            String::from_utf8_lossy(m.key().unwrap_or_default()),
            String::from_utf8_lossy(m.payload().unwrap_or_default())
        );
    }
    if seen != n {
        bail!("expected {n} records, got {seen}");
    }
    println!("read all {n} records back; shutting down");
    drop(consumer);
    drop(producer);
    drop(admin);
    cluster.shutdown();
    Ok(())
}
