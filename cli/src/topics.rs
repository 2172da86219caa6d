//! `moldau topics`: kafka-topics.sh — list, create, describe, alter (partitions), delete.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use rdkafka::admin::{ConfigSource, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::MetadataTopic;
use serde::Serialize;

use crate::client::{admin_options, key_value, ConnArgs};
use crate::output::{print_json, Format, OutputArgs, Table};

/// Flags of `moldau topics`.
#[derive(Debug, clap::Args)]
#[command(
    group(clap::ArgGroup::new("action").required(true).args(["list", "create", "describe", "alter", "delete"])),
    after_help = "Examples:\n  moldau topics --create --topic orders --partitions 6 --replication-factor 3 --config retention.ms=86400000\n  moldau topics --describe --topic orders\n  moldau topics --alter --topic orders --partitions 12\n  moldau topics --list --output json"
)]
pub(crate) struct TopicsArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    out: OutputArgs,
    /// List topic names.
    #[arg(long)]
    list: bool,
    /// Create --topic.
    #[arg(long, requires = "topic")]
    create: bool,
    /// Describe --topic, or every topic: partitions, leader, replicas, ISR, configs set on it.
    #[arg(long)]
    describe: bool,
    /// Change --topic's partition count (--partitions; it can only grow).
    #[arg(long, requires_all = ["topic", "partitions"])]
    alter: bool,
    /// Delete --topic.
    #[arg(long, requires = "topic")]
    delete: bool,
    /// The topic.
    #[arg(long, short = 't')]
    topic: Option<String>,
    /// Partitions (create: the broker's num.partitions when omitted).
    #[arg(long)]
    partitions: Option<i32>,
    /// Replication factor (create: the broker's default.replication.factor when omitted).
    #[arg(long)]
    replication_factor: Option<i32>,
    /// A topic config for --create, key=value (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    configs: Vec<String>,
    /// With --create: succeed if the topic exists already.
    #[arg(long)]
    if_not_exists: bool,
    /// With --list and --describe: leave out internal topics (__consumer_offsets, ...).
    #[arg(long)]
    exclude_internal: bool,
}

/// One topic, as `--describe --output json` prints it.
#[derive(Debug, Serialize)]
struct TopicDescription {
    name: String,
    partitions: Vec<PartitionDescription>,
    replication_factor: usize,
    /// Configs set on the topic itself (those that differ from the broker's defaults).
    configs: BTreeMap<String, String>,
}

/// One partition of a described topic.
#[derive(Debug, Serialize)]
struct PartitionDescription {
    partition: i32,
    leader: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
}

/// Runs `moldau topics`.
pub(crate) async fn run(a: TopicsArgs) -> Result<()> {
    if a.list {
        return list(&a);
    }
    if a.describe {
        return describe(&a).await;
    }
    let topic = a.topic.as_deref().context("--topic is required")?;
    let admin = a.conn.admin()?;
    let consumer = a.conn.consumer(None)?;
    a.conn.metadata(&consumer, None)?;
    if a.create {
        let configs: Vec<(String, String)> =
            a.configs.iter().map(|kv| key_value("--config", kv)).collect::<Result<_>>()?;
        let rf = TopicReplication::Fixed(a.replication_factor.unwrap_or(-1));
        let mut new = NewTopic::new(topic, a.partitions.unwrap_or(-1), rf);
        for (k, v) in &configs {
            new = new.set(k, v);
        }
        let res = admin.create_topics([&new], &admin_options()).await.context("creating the topic")?;
        match res.into_iter().next() {
            Some(Ok(_)) => println!("Created topic {topic}."),
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) if a.if_not_exists => {
                println!("Topic {topic} exists already.")
            }
            Some(Err((_, RDKafkaErrorCode::InvalidConfig))) => {
                // rdkafka passes on the code only: find the configs the broker refuses by
                // validating each alone.
                let mut bad = Vec::new();
                for (k, v) in &configs {
                    let rf = TopicReplication::Fixed(a.replication_factor.unwrap_or(-1));
                    let probe = NewTopic::new(topic, a.partitions.unwrap_or(-1), rf).set(k, v);
                    let r = admin.create_topics([&probe], &admin_options().validate_only(true)).await;
                    if let Ok(r) = r {
                        if matches!(r.first(), Some(Err((_, RDKafkaErrorCode::InvalidConfig)))) {
                            bad.push(format!("{k}={v}"));
                        }
                    }
                }
                bail!("creating topic {topic}: the broker refuses the config {}", bad.join(", "))
            }
            Some(Err((_, code))) => bail!("creating topic {topic}: {}", describe_code(code)),
            None => bail!("creating topic {topic}: no answer"),
        }
    } else if a.alter {
        let n = a.partitions.context("--alter needs --partitions")?;
        let current = partition_count(&a.conn, &consumer, topic)?;
        if n as usize == current {
            println!("Topic {topic} has {n} partitions already.");
            return Ok(());
        }
        let res = admin
            .create_partitions([&NewPartitions::new(topic, n as usize)], &admin_options())
            .await
            .context("adding partitions")?;
        match res.into_iter().next() {
            Some(Ok(_)) => println!("Topic {topic} now has {n} partitions (was {current})."),
            Some(Err((_, code))) => bail!("altering topic {topic}: {}", describe_code(code)),
            None => bail!("altering topic {topic}: no answer"),
        }
    } else if a.delete {
        let res = admin.delete_topics(&[topic], &admin_options()).await.context("deleting the topic")?;
        match res.into_iter().next() {
            Some(Ok(_)) => println!("Deleted topic {topic}."),
            Some(Err((_, code))) => bail!("deleting topic {topic}: {}", describe_code(code)),
            None => bail!("deleting topic {topic}: no answer"),
        }
    }
    Ok(())
}

/// A Kafka error code as a sentence.
pub(crate) fn describe_code(code: RDKafkaErrorCode) -> String {
    match code {
        RDKafkaErrorCode::TopicAlreadyExists => "the topic exists already".into(),
        RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => "the topic does not exist".into(),
        other => other.to_string(),
    }
}

/// The partition count of `topic`; an error naming it if it does not exist.
pub(crate) fn partition_count(
    conn: &ConnArgs,
    consumer: &rdkafka::consumer::BaseConsumer,
    topic: &str,
) -> Result<usize> {
    let md = conn.metadata(consumer, Some(topic))?;
    let t = md.topics().first().with_context(|| format!("topic '{topic}' does not exist"))?;
    if t.error().is_some() || t.partitions().is_empty() {
        bail!("topic '{topic}' does not exist");
    }
    Ok(t.partitions().len())
}

fn is_internal(name: &str) -> bool {
    name.starts_with("__")
}

fn list(a: &TopicsArgs) -> Result<()> {
    let consumer = a.conn.consumer(None)?;
    let md = a.conn.metadata(&consumer, None)?;
    let mut names: Vec<String> =
        md.topics().iter().map(|t| t.name().to_string()).filter(|n| !(a.exclude_internal && is_internal(n))).collect();
    names.sort();
    match a.out.output {
        Format::Json => print_json(&names)?,
        Format::Table => names.iter().for_each(|n| println!("{n}")),
    }
    Ok(())
}

async fn describe(a: &TopicsArgs) -> Result<()> {
    let consumer = a.conn.consumer(None)?;
    let md = a.conn.metadata(&consumer, a.topic.as_deref())?;
    let mut topics: Vec<&MetadataTopic> =
        md.topics().iter().filter(|t| !(a.exclude_internal && is_internal(t.name()))).collect();
    topics.sort_by_key(|t| t.name());
    if let Some(name) = &a.topic {
        if topics.first().is_none_or(|t| t.error().is_some() || t.partitions().is_empty()) {
            bail!("topic '{name}' does not exist");
        }
    }
    let admin = a.conn.admin()?;
    let specs: Vec<ResourceSpecifier<'_>> = topics.iter().map(|t| ResourceSpecifier::Topic(t.name())).collect();
    let described = if specs.is_empty() {
        Vec::new()
    } else {
        admin.describe_configs(specs.iter(), &admin_options()).await.context("describing topic configs")?
    };
    let mut out = Vec::new();
    for (i, t) in topics.iter().enumerate() {
        let configs = match described.get(i) {
            Some(Ok(r)) => r
                .entries
                .iter()
                .filter(|e| e.source == ConfigSource::DynamicTopic)
                .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
                .collect(),
            _ => BTreeMap::new(),
        };
        let partitions: Vec<PartitionDescription> = t
            .partitions()
            .iter()
            .map(|p| PartitionDescription {
                partition: p.id(),
                leader: p.leader(),
                replicas: p.replicas().to_vec(),
                isr: p.isr().to_vec(),
            })
            .collect();
        let replication_factor = partitions.first().map_or(0, |p| p.replicas.len());
        out.push(TopicDescription { name: t.name().to_string(), partitions, replication_factor, configs });
    }
    match a.out.output {
        Format::Json => print_json(&out)?,
        Format::Table => {
            for t in &out {
                let configs: Vec<String> = t.configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!(
                    "Topic: {}  PartitionCount: {}  ReplicationFactor: {}  Configs: {}",
                    t.name,
                    t.partitions.len(),
                    t.replication_factor,
                    configs.join(",")
                );
                let mut table = Table::new(&["  PARTITION", "LEADER", "REPLICAS", "ISR"]);
                for p in &t.partitions {
                    table.row(vec![
                        format!("  {}", p.partition),
                        p.leader.to_string(),
                        join(&p.replicas),
                        join(&p.isr),
                    ]);
                }
                table.print();
            }
        }
    }
    Ok(())
}

fn join(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}
