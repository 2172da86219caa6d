//! The example applications' topologies and the plumbing they share: an embedded broker-sim
//! cluster, topic creation, a producer and a printing consumer.

#![allow(clippy::disallowed_methods)] // examples read the real clock

use std::time::{Duration, Instant};

use anyhow::Context;
use moldau_broker_sim::Cluster;
use moldau_dsl::state::{JsonSerde, StringSerde, U64Serde};
use moldau_dsl::{Consumed, Grouped, Produced, StreamsBuilder, TimeWindows};
use moldau_engine::Topology;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

pub mod stats;

/// Every example and benchmark binary allocates with mimalloc: glibc's allocator spent 5-7%
/// of the stream thread in `malloc_consolidate`, more under exactly-once, whose commits hand
/// each transaction's writes to the store writer thread to free. With its `override` feature
/// (set in the workspace) it also replaces C's `malloc` and `free` for the whole process:
/// under glibc, the stream thread freeing each fetched batch that an rdkafka broker thread
/// had allocated waited on that thread's arena lock, some 2,000 sleeps per million records,
/// and both guarantees ran 10-15% faster without them. An application binary chooses its
/// allocator; the README recommends this one, with `override`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Word count: lines on `text-lines` → lowercase words → repartitioned by word → running
/// count per word on `word-counts`.
pub fn word_count() -> anyhow::Result<Topology> {
    let b = StreamsBuilder::new();
    b.stream("text-lines", Consumed::with(StringSerde, StringSerde))
        .flat_map_values(|line: String| {
            line.split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .group_by(|_, word: &String| word.clone(), Grouped::with(StringSerde, StringSerde).named("words"))
        .count("word-counts-store")
        .to_stream()
        .map_values(|n: Option<u64>| n.unwrap_or(0))
        .to("word-counts", Produced::with(StringSerde, U64Serde));
    Ok(b.build()?)
}

/// Page views per user: views on `page-views` (key user, value page) counted in tumbling
/// 1-minute windows with 10 s grace, one final count per window on `views-per-user`
/// (key `user@start`).
pub fn page_views() -> anyhow::Result<Topology> {
    let b = StreamsBuilder::new();
    b.stream_keyed("page-views", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .windowed_by(TimeWindows::of_size_and_grace(60_000, 10_000))
        .emit_on_window_close()
        .count("views-per-window")
        .to_stream()
        .map(|w, n: Option<u64>| (format!("{}@{}", w.key, w.window.start / 1000), n.unwrap_or(0)))
        .to("views-per-user", Produced::with(StringSerde, U64Serde));
    Ok(b.build()?)
}

/// An order, as JSON on `orders` (keyed by customer id).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Order {
    /// Order id.
    pub id: u64,
    /// Item bought.
    pub item: String,
    /// Amount in cents.
    pub cents: u64,
}

/// An order joined with its customer's name, as JSON on `enriched-orders`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EnrichedOrder {
    /// The order.
    pub order: Order,
    /// The customer's name, if known.
    pub customer: Option<String>,
}

/// Order enrichment: orders (key customer id) left-joined with the `customers` table
/// (customer id → name) into `enriched-orders`.
pub fn order_enrichment() -> anyhow::Result<Topology> {
    let b = StreamsBuilder::new();
    let customers = b.table("customers", Consumed::with(StringSerde, StringSerde), "customers-store");
    b.stream_keyed("orders", Consumed::with(StringSerde, JsonSerde::<Order>::default()))
        .left_join(
            &customers,
            |o: &Order, name: Option<&String>| EnrichedOrder { order: o.clone(), customer: name.cloned() },
            Grouped::with(StringSerde, JsonSerde::<Order>::default()),
        )
        .to("enriched-orders", Produced::with(StringSerde, JsonSerde::<EnrichedOrder>::default()));
    Ok(b.build()?)
}

/// Starts an embedded cluster of `brokers` brokers. The demos' single application instance
/// is the whole group, so the first rebalance does not wait for more members
/// (`group.initial.rebalance.delay.ms=0`; Kafka's default is 3000).
pub fn start_cluster(brokers: usize) -> anyhow::Result<Cluster> {
    Cluster::builder()
        .brokers(brokers)
        .config("group.initial.rebalance.delay.ms", "0")
        .start()
        .context("starting broker-sim")
}

/// Creates topics `(name, partitions)` with replication factor `rf`.
pub fn create_topics(bootstrap: &str, topics: &[(&str, i32)], rf: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("log_level", "3").create()?;
    let new: Vec<NewTopic<'_>> =
        topics.iter().map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(rf))).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    for r in rt.block_on(admin.create_topics(new.iter(), &AdminOptions::new()))? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    Ok(())
}

/// A producer partitioning by key like Kafka's Java client.
pub fn producer(bootstrap: &str) -> anyhow::Result<BaseProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("log_level", "3")
        .create()?)
}

/// Sends one record (waiting while the local queue is full).
pub fn send(p: &BaseProducer, topic: &str, key: &[u8], value: &[u8], timestamp: Option<i64>) -> anyhow::Result<()> {
    let mut r = BaseRecord::<[u8], [u8]>::to(topic).key(key).payload(value);
    if let Some(ts) = timestamp {
        r = r.timestamp(ts);
    }
    loop {
        match p.send(r) {
            Ok(()) => return Ok(()),
            Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), back)) => {
                p.poll(Duration::from_millis(5));
                r = back;
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

/// Waits for every record sent to be acknowledged.
pub fn flush(p: &BaseProducer) -> anyhow::Result<()> {
    p.flush(Duration::from_secs(60))?;
    Ok(())
}

/// A read_committed consumer of `topics` from the start, in its own group.
pub fn reader(bootstrap: &str, group: &str, topics: &[&str]) -> anyhow::Result<BaseConsumer> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("log_level", "3")
        .create()?;
    c.subscribe(topics)?;
    Ok(c)
}

/// Polls `c` until `done(count)` says stop or `timeout` passes, calling `f` per record;
/// returns how many records arrived.
pub fn read_until(
    c: &BaseConsumer,
    timeout: Duration,
    mut f: impl FnMut(Option<&[u8]>, Option<&[u8]>),
    mut done: impl FnMut(usize) -> bool,
) -> usize {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < timeout && !done(n) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            f(m.key(), m.payload());
            n += 1;
        }
    }
    n
}

/// Initialises logging (RUST_LOG, default warn).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .try_init();
}
