//! `moldau configs`: kafka-configs.sh — describe and change topic and broker configs, with
//! IncrementalAlterConfigs (only the named keys change).

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::client::{ConnArgs, ADMIN_TIMEOUT};
use crate::ffi::{self, ConfigOp, Entry, Resource};
use crate::output::{print_json, Format, OutputArgs, Table};
use crate::raw;

/// Flags of `moldau configs`.
#[derive(Debug, clap::Args)]
#[command(
    group(clap::ArgGroup::new("action").required(true).args(["describe", "alter"])),
    group(clap::ArgGroup::new("entity").required(true).args(["topic", "broker", "broker_defaults", "entity_name", "entity_default"])),
    after_help = "Examples:\n  moldau configs --describe --topic orders\n  moldau configs --alter --topic orders --add-config retention.ms=86400000,cleanup.policy=[compact,delete]\n  moldau configs --alter --topic orders --delete-config retention.ms\n  moldau configs --alter --broker-defaults --add-config log.retention.ms=3600000\n  moldau configs --describe --broker 1 --all"
)]
pub(crate) struct ConfigsArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    out: OutputArgs,
    /// Show the configs set on the entity (with --all: every config, with its source).
    #[arg(long)]
    describe: bool,
    /// Change configs: --add-config and/or --delete-config.
    #[arg(long)]
    alter: bool,
    /// A topic.
    #[arg(long, short = 't')]
    topic: Option<String>,
    /// A broker, by node id.
    #[arg(long)]
    broker: Option<i32>,
    /// The cluster-wide broker defaults.
    #[arg(long)]
    broker_defaults: bool,
    /// kafka-configs.sh style: topics or brokers (with --entity-name or --entity-default).
    #[arg(long, value_parser = ["topics", "brokers"])]
    entity_type: Option<String>,
    /// kafka-configs.sh style: the topic name or broker id.
    #[arg(long, requires = "entity_type")]
    entity_name: Option<String>,
    /// kafka-configs.sh style: the cluster-wide default of --entity-type brokers.
    #[arg(long, requires = "entity_type")]
    entity_default: bool,
    /// Configs to set: k=v[,k=v...]; a list value goes in brackets: cleanup.policy=[compact,delete].
    #[arg(long)]
    add_config: Vec<String>,
    /// Configs to remove (back to the inherited value): k[,k...].
    #[arg(long)]
    delete_config: Vec<String>,
    /// With --describe: every config, not only those set on the entity.
    #[arg(long)]
    all: bool,
}

/// One config, as `--describe --output json` prints it.
#[derive(Debug, Serialize)]
struct ConfigLine {
    name: String,
    value: Option<String>,
    source: &'static str,
    read_only: bool,
}

/// Kafka's name of a config source code.
fn source_name(code: i32) -> &'static str {
    match code {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        _ => "UNKNOWN",
    }
}

/// Splits `k=v,k2=[a,b]` into pairs; the error names the bad item.
pub(crate) fn parse_add_config(s: &str) -> Result<Vec<(String, String)>> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&s[start..]);
    items
        .into_iter()
        .filter(|i| !i.trim().is_empty())
        .map(|item| {
            let (k, v) = item.split_once('=').with_context(|| format!("--add-config expects k=v, got '{item}'"))?;
            let v = v.trim();
            let v = v.strip_prefix('[').and_then(|v| v.strip_suffix(']')).unwrap_or(v);
            if k.trim().is_empty() {
                bail!("--add-config expects k=v, got '{item}'");
            }
            Ok((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

/// Runs `moldau configs`.
pub(crate) async fn run(a: ConfigsArgs) -> Result<()> {
    let (is_topic, name, label, own_source) = entity(&a)?;
    let resource = if is_topic { Resource::Topic(&name) } else { Resource::Broker(&name) };
    let consumer = a.conn.consumer(None)?;
    a.conn.metadata(&consumer, None)?;
    let admin = a.conn.admin()?;
    // librdkafka cannot address the cluster-wide broker resource (""): a plain request does.
    let is_defaults = !is_topic && name.is_empty();
    let config = a.conn.client_config()?;
    let security = config.get("security.protocol").map(str::to_string);
    let all = if is_defaults {
        raw::describe_defaults(&a.conn.bootstrap_server, security.as_deref(), ADMIN_TIMEOUT)
    } else {
        ffi::describe(&admin, resource, ADMIN_TIMEOUT)
    }
    .with_context(|| format!("describing {label}"))?;
    if a.describe {
        let shown: Vec<&Entry> = all.iter().filter(|e| a.all || e.source == own_source).collect();
        let lines: Vec<ConfigLine> = shown
            .iter()
            .map(|e| ConfigLine {
                name: e.name.clone(),
                value: e.value.clone(),
                source: source_name(e.source),
                read_only: e.read_only,
            })
            .collect();
        match a.out.output {
            Format::Json => print_json(&lines)?,
            Format::Table => {
                if lines.is_empty() {
                    println!("No configs are set on {label} (--all shows every config).");
                } else {
                    let mut t = Table::new(&["NAME", "VALUE", "SOURCE", "READ-ONLY"]);
                    for l in &lines {
                        t.row(vec![
                            l.name.clone(),
                            l.value.clone().unwrap_or_default(),
                            l.source.to_string(),
                            l.read_only.to_string(),
                        ]);
                    }
                    t.print();
                }
            }
        }
        return Ok(());
    }
    let mut ops = Vec::new();
    for s in &a.add_config {
        ops.extend(parse_add_config(s)?.into_iter().map(|(k, v)| ConfigOp::Set(k, v)));
    }
    for s in &a.delete_config {
        ops.extend(s.split(',').map(str::trim).filter(|k| !k.is_empty()).map(|k| ConfigOp::Delete(k.to_string())));
    }
    if ops.is_empty() {
        bail!("--alter needs --add-config and/or --delete-config");
    }
    // Known keys are those the entity describes (a cluster-wide default describes only what is
    // set on it, so its keys are checked against a broker's list).
    let known = if is_defaults {
        let md = a.conn.metadata(&consumer, None)?;
        let id = md.brokers().first().map(|b| b.id().to_string()).context("the cluster lists no broker")?;
        ffi::describe(&admin, Resource::Broker(&id), ADMIN_TIMEOUT)?
    } else {
        all
    };
    for op in &ops {
        let key = match op {
            ConfigOp::Set(k, _) | ConfigOp::Delete(k) => k,
        };
        match known.iter().find(|e| &e.name == key) {
            None => bail!("unknown config '{key}' for {label}"),
            Some(e) if e.read_only && !matches!(resource, Resource::Topic(_)) => {
                bail!("{key} is read-only on {label}: it cannot be changed at run time")
            }
            Some(_) => {}
        }
    }
    if is_defaults {
        raw::alter_defaults(&a.conn.bootstrap_server, security.as_deref(), &ops, ADMIN_TIMEOUT)
    } else {
        ffi::incremental_alter(&admin, resource, &ops, ADMIN_TIMEOUT)
    }
    .with_context(|| format!("altering {label}"))?;
    println!("Completed updating config for {label}.");
    Ok(())
}

/// Whether the entity is a topic, its resource name ("" = cluster-wide broker defaults), a
/// label for messages, and the config source of values set on it.
fn entity(a: &ConfigsArgs) -> Result<(bool, String, String, i32)> {
    const DEFAULTS: &str = "the cluster-wide broker defaults";
    if let Some(t) = &a.topic {
        return Ok((true, t.clone(), format!("topic {t}"), 1));
    }
    if let Some(b) = a.broker {
        return Ok((false, b.to_string(), format!("broker {b}"), 2));
    }
    if a.broker_defaults {
        return Ok((false, String::new(), DEFAULTS.into(), 3));
    }
    match (a.entity_type.as_deref(), &a.entity_name, a.entity_default) {
        (Some("topics"), Some(t), false) => Ok((true, t.clone(), format!("topic {t}"), 1)),
        (Some("brokers"), Some(b), false) => {
            b.parse::<i32>().with_context(|| format!("--entity-name for brokers is a node id, got '{b}'"))?;
            Ok((false, b.clone(), format!("broker {b}"), 2))
        }
        (Some("brokers"), None, true) => Ok((false, String::new(), DEFAULTS.into(), 3)),
        (Some("topics"), None, true) => bail!("--entity-default applies to brokers only"),
        _ => bail!(
            "name the entity: --topic T, --broker N, --broker-defaults, or --entity-type with --entity-name or \
             --entity-default"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_split_add_config_lists_keeping_bracketed_values_whole() {
        let got = parse_add_config("retention.ms=1000,cleanup.policy=[compact,delete]").unwrap();
        assert_eq!(
            got,
            vec![("retention.ms".into(), "1000".into()), ("cleanup.policy".into(), "compact,delete".into())]
        );
        assert!(parse_add_config("novalue").unwrap_err().to_string().contains("novalue"));
    }
}
