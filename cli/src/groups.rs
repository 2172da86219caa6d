//! `moldau groups`: kafka-consumer-groups.sh — list, describe (offsets, lag, members, state),
//! reset offsets, delete groups and their offsets.

mod reset;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::groups::GroupInfo;
use serde::Serialize;

use crate::client::{admin_options, ConnArgs, ADMIN_TIMEOUT, REACH_TIMEOUT};
use crate::ffi;
use crate::output::{print_json, Format, OutputArgs, Table};

/// Flags of `moldau groups`.
#[derive(Debug, clap::Args)]
#[command(
    group(clap::ArgGroup::new("action").required(true).args(["list", "describe", "reset_offsets", "delete", "delete_offsets"])),
    group(clap::ArgGroup::new("spec").args(["to_earliest", "to_latest", "to_offset", "shift_by", "to_datetime", "by_duration", "from_file"])),
    after_help = "Examples:\n  moldau groups --list\n  moldau groups --describe --group audit            # offsets and LAG per partition\n  moldau groups --describe --group audit --members\n  moldau groups --reset-offsets --group audit --topic orders --to-earliest --dry-run\n  moldau groups --reset-offsets --group audit --topic orders:0,1 --shift-by -10 --execute\n  moldau groups --reset-offsets --group audit --all-topics --to-datetime 2026-01-01T00:00:00.000 --execute\n  moldau groups --delete --group audit"
)]
pub(crate) struct GroupsArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    out: OutputArgs,
    /// List the groups.
    #[arg(long)]
    list: bool,
    /// Describe --group: per partition its committed offset, log-end offset, LAG and member.
    #[arg(long, requires = "group")]
    describe: bool,
    /// With --describe: the members instead (id, host, client id, partition count).
    #[arg(long, requires = "describe")]
    members: bool,
    /// With --describe: the group's state instead.
    #[arg(long, requires = "describe")]
    state: bool,
    /// Reset --group's offsets for --topic or --all-topics (one of the --to-*/--shift-by/
    /// --by-duration/--from-file specs); prints the plan (--dry-run) or commits it (--execute).
    #[arg(long, requires = "group")]
    reset_offsets: bool,
    /// Delete --group (it must have no members).
    #[arg(long, requires = "group")]
    delete: bool,
    /// Delete --group's committed offsets of --topic.
    #[arg(long, requires_all = ["group", "topic"])]
    delete_offsets: bool,
    /// The group.
    #[arg(long, short = 'g')]
    group: Option<String>,
    /// A topic, or topic:p1,p2 for some partitions (repeatable).
    #[arg(long, short = 't')]
    topic: Vec<String>,
    /// Every topic the group has committed offsets for.
    #[arg(long)]
    all_topics: bool,
    /// Reset to the log start.
    #[arg(long)]
    to_earliest: bool,
    /// Reset to the log end.
    #[arg(long)]
    to_latest: bool,
    /// Reset to this offset (kept within the log).
    #[arg(long, allow_hyphen_values = true)]
    to_offset: Option<i64>,
    /// Move the committed offset by N (negative: back), kept within the log.
    #[arg(long, allow_hyphen_values = true)]
    shift_by: Option<i64>,
    /// Reset to the first offset at or after this time: YYYY-MM-DDTHH:mm:SS[.sss][Z|+hh:mm]
    /// (local time without a zone).
    #[arg(long)]
    to_datetime: Option<String>,
    /// Reset to the first offset at or after now minus an ISO-8601 duration, e.g. PT5M, P1DT2H.
    #[arg(long)]
    by_duration: Option<String>,
    /// Reset to the offsets in a CSV file of topic,partition,offset lines.
    #[arg(long)]
    from_file: Option<std::path::PathBuf>,
    /// Print the reset plan without committing it (the default).
    #[arg(long, conflicts_with = "execute")]
    dry_run: bool,
    /// Commit the reset plan (refused while the group has members).
    #[arg(long)]
    execute: bool,
}

/// One partition of a described group (`--describe --output json`).
#[derive(Debug, Serialize)]
struct PartitionLag {
    topic: String,
    partition: i32,
    current_offset: Option<i64>,
    log_end_offset: i64,
    lag: Option<i64>,
    consumer_id: Option<String>,
    host: Option<String>,
    client_id: Option<String>,
}

/// A member (`--describe --members --output json`).
#[derive(Debug, Serialize)]
struct MemberLine {
    consumer_id: String,
    host: String,
    client_id: String,
    partitions: usize,
    assignment: Vec<String>,
}

/// The group's state (`--describe --state --output json`).
#[derive(Debug, Serialize)]
struct StateLine {
    group: String,
    state: String,
    assignment_strategy: String,
    members: usize,
}

/// Runs `moldau groups`.
pub(crate) async fn run(a: GroupsArgs) -> Result<()> {
    let probe = a.conn.consumer(None)?;
    a.conn.metadata(&probe, None)?;
    if a.list {
        let list = probe.fetch_group_list(None, REACH_TIMEOUT).context("listing groups")?;
        let mut names: Vec<String> = list.groups().iter().map(|g| g.name().to_string()).collect();
        names.sort();
        match a.out.output {
            Format::Json => print_json(&names)?,
            Format::Table => names.iter().for_each(|n| println!("{n}")),
        }
        return Ok(());
    }
    let group = a.group.clone().context("--group is required")?;
    if a.describe {
        return describe(&a, &probe, &group);
    }
    if a.delete {
        let admin = a.conn.admin()?;
        let res = admin.delete_groups(&[&group], &admin_options()).await.context("deleting the group")?;
        match res.into_iter().next() {
            Some(Ok(_)) => println!("Deleted group {group}."),
            Some(Err((_, code))) => bail!("deleting group {group}: {}", group_error(code)),
            None => bail!("deleting group {group}: no answer"),
        }
        return Ok(());
    }
    if a.delete_offsets {
        let admin = a.conn.admin()?;
        let parts = resolve_partitions(&a, &probe, &group, &admin)?;
        let res = ffi::delete_group_offsets(&admin, &group, &parts, ADMIN_TIMEOUT)?;
        let failed: Vec<String> =
            res.iter().filter_map(|(t, p, e)| e.as_ref().map(|e| format!("{t}-{p}: {e}"))).collect();
        if !failed.is_empty() {
            bail!("deleting offsets of group {group}: {}", failed.join("; "));
        }
        println!("Deleted the committed offsets of group {group} for {} partition(s).", res.len());
        return Ok(());
    }
    reset::run(&a, &probe, &group).await
}

/// Kafka's group errors as sentences.
fn group_error(code: rdkafka::error::RDKafkaErrorCode) -> String {
    use rdkafka::error::RDKafkaErrorCode as C;
    match code {
        C::NonEmptyGroup => "the group has active members (stop them first)".into(),
        C::GroupIdNotFound => "the group does not exist".into(),
        other => other.to_string(),
    }
}

/// The group's description; `None` for a group the coordinator does not know.
fn group_info(consumer: &BaseConsumer, group: &str) -> Result<Option<GroupInfoOwned>> {
    let list = consumer.fetch_group_list(Some(group), REACH_TIMEOUT).context("describing the group")?;
    Ok(list.groups().first().filter(|g| g.state() != "Dead").map(GroupInfoOwned::from))
}

/// What a group description says, owned.
#[derive(Debug, Default)]
struct GroupInfoOwned {
    state: String,
    protocol: String,
    members: Vec<MemberInfo>,
}

/// A member: id, client id, host, assigned partitions.
type MemberInfo = (String, String, String, Vec<(String, i32)>);

impl From<&GroupInfo> for GroupInfoOwned {
    fn from(g: &GroupInfo) -> Self {
        GroupInfoOwned {
            state: g.state().to_string(),
            protocol: g.protocol().to_string(),
            members: g
                .members()
                .iter()
                .map(|m| {
                    let parts = m.assignment().map(decode_assignment).unwrap_or_default();
                    (m.id().to_string(), m.client_id().to_string(), m.client_host().to_string(), parts)
                })
                .collect(),
        }
    }
}

/// Decodes a consumer-protocol assignment: version, then topics with their partitions.
fn decode_assignment(b: &[u8]) -> Vec<(String, i32)> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (h, t) = b.split_at(n);
        *b = t;
        Some(h)
    }
    let mut b = b;
    let mut out = Vec::new();
    let parse = |b: &mut &[u8], out: &mut Vec<(String, i32)>| -> Option<()> {
        take(b, 2)?;
        let topics = i32::from_be_bytes(take(b, 4)?.try_into().ok()?);
        for _ in 0..topics.max(0) {
            let len = i16::from_be_bytes(take(b, 2)?.try_into().ok()?);
            let name = String::from_utf8_lossy(take(b, len.max(0) as usize)?).into_owned();
            let n = i32::from_be_bytes(take(b, 4)?.try_into().ok()?);
            for _ in 0..n.max(0) {
                out.push((name.clone(), i32::from_be_bytes(take(b, 4)?.try_into().ok()?)));
            }
        }
        Some(())
    };
    let _ = parse(&mut b, &mut out);
    out
}

fn describe(a: &GroupsArgs, consumer: &BaseConsumer, group: &str) -> Result<()> {
    let info = group_info(consumer, group)?;
    let admin = a.conn.admin()?;
    let committed = ffi::list_group_offsets(&admin, group, ADMIN_TIMEOUT)?;
    if info.is_none() && committed.is_empty() {
        bail!("consumer group '{group}' does not exist");
    }
    let info = info.unwrap_or_default();
    if a.state {
        let line = StateLine {
            group: group.to_string(),
            state: if info.state.is_empty() { "Empty".into() } else { info.state.clone() },
            assignment_strategy: info.protocol.clone(),
            members: info.members.len(),
        };
        match a.out.output {
            Format::Json => print_json(&line)?,
            Format::Table => {
                let mut t = Table::new(&["GROUP", "STATE", "ASSIGNMENT-STRATEGY", "#MEMBERS"]);
                t.row(vec![line.group, line.state, line.assignment_strategy, line.members.to_string()]);
                t.print();
            }
        }
        return Ok(());
    }
    if a.members {
        let lines: Vec<MemberLine> = info
            .members
            .iter()
            .map(|(id, client, host, parts)| MemberLine {
                consumer_id: id.clone(),
                host: host.clone(),
                client_id: client.clone(),
                partitions: parts.len(),
                assignment: parts.iter().map(|(t, p)| format!("{t}-{p}")).collect(),
            })
            .collect();
        match a.out.output {
            Format::Json => print_json(&lines)?,
            Format::Table => {
                if lines.is_empty() {
                    println!("Consumer group '{group}' has no active members.");
                }
                let mut t = Table::new(&["CONSUMER-ID", "HOST", "CLIENT-ID", "#PARTITIONS", "ASSIGNMENT"]);
                for l in &lines {
                    t.row(vec![
                        l.consumer_id.clone(),
                        l.host.clone(),
                        l.client_id.clone(),
                        l.partitions.to_string(),
                        l.assignment.join(","),
                    ]);
                }
                t.print();
            }
        }
        return Ok(());
    }
    // Partitions with a committed offset or assigned to a member.
    let mut owner: BTreeMap<(String, i32), (String, String, String)> = BTreeMap::new();
    for (id, client, host, parts) in &info.members {
        for tp in parts {
            owner.insert(tp.clone(), (id.clone(), host.clone(), client.clone()));
        }
    }
    let current: BTreeMap<(String, i32), i64> = committed.into_iter().map(|(t, p, o)| ((t, p), o)).collect();
    let keys: BTreeSet<(String, i32)> = current.keys().chain(owner.keys()).cloned().collect();
    let mut rows = Vec::new();
    for (t, p) in keys {
        let (_, high) =
            consumer.fetch_watermarks(&t, p, REACH_TIMEOUT).with_context(|| format!("reading the end of {t}-{p}"))?;
        let cur = current.get(&(t.clone(), p)).copied();
        let who = owner.get(&(t.clone(), p));
        rows.push(PartitionLag {
            topic: t,
            partition: p,
            current_offset: cur,
            log_end_offset: high,
            lag: cur.map(|c| (high - c).max(0)),
            consumer_id: who.map(|w| w.0.clone()),
            host: who.map(|w| w.1.clone()),
            client_id: who.map(|w| w.2.clone()),
        });
    }
    match a.out.output {
        Format::Json => print_json(&rows)?,
        Format::Table => {
            if info.members.is_empty() {
                println!("Consumer group '{group}' has no active members.");
            }
            let dash = || "-".to_string();
            let mut t = Table::new(&[
                "GROUP",
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "LOG-END-OFFSET",
                "LAG",
                "CONSUMER-ID",
                "HOST",
                "CLIENT-ID",
            ]);
            for r in &rows {
                t.row(vec![
                    group.to_string(),
                    r.topic.clone(),
                    r.partition.to_string(),
                    r.current_offset.map_or_else(dash, |o| o.to_string()),
                    r.log_end_offset.to_string(),
                    r.lag.map_or_else(dash, |l| l.to_string()),
                    r.consumer_id.clone().unwrap_or_else(dash),
                    r.host.clone().unwrap_or_else(dash),
                    r.client_id.clone().unwrap_or_else(dash),
                ]);
            }
            t.print();
        }
    }
    Ok(())
}

/// The partitions named by --topic (all of a topic's, or topic:p1,p2) or --all-topics (those
/// the group has committed offsets for).
fn resolve_partitions(
    a: &GroupsArgs,
    consumer: &BaseConsumer,
    group: &str,
    admin: &rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>,
) -> Result<Vec<(String, i32)>> {
    if a.all_topics {
        let committed = ffi::list_group_offsets(admin, group, ADMIN_TIMEOUT)?;
        if committed.is_empty() {
            bail!("group '{group}' has no committed offsets, so --all-topics names no partition");
        }
        return Ok(committed.into_iter().map(|(t, p, _)| (t, p)).collect());
    }
    if a.topic.is_empty() {
        bail!("name the partitions: --topic T, --topic T:0,1 or --all-topics");
    }
    let mut out = Vec::new();
    for spec in &a.topic {
        let (topic, parts) = match spec.split_once(':') {
            Some((t, ps)) => (t, Some(ps)),
            None => (spec.as_str(), None),
        };
        let n = crate::topics::partition_count(&a.conn, consumer, topic)? as i32;
        match parts {
            None => out.extend((0..n).map(|p| (topic.to_string(), p))),
            Some(ps) => {
                for p in ps.split(',') {
                    let p: i32 =
                        p.trim().parse().with_context(|| format!("--topic {spec}: '{p}' is not a partition number"))?;
                    if !(0..n).contains(&p) {
                        bail!("--topic {spec}: topic '{topic}' has partitions 0..{}", n - 1);
                    }
                    out.push((topic.to_string(), p));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_decode_a_consumer_assignment() {
        let mut b = vec![0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 5];
        b.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(decode_assignment(&b), vec![("t".to_string(), 3), ("t".to_string(), 5)]);
        assert!(decode_assignment(&[0, 0, 0]).is_empty(), "truncated input is not a panic");
    }
}
