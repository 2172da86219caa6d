//! `moldau groups --reset-offsets`: the plan (what each partition's committed offset becomes)
//! and its execution, as kafka-consumer-groups.sh does them.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::{group_info, resolve_partitions, GroupsArgs};
use crate::client::{ADMIN_TIMEOUT, REACH_TIMEOUT};
use crate::ffi;
use crate::output::{print_json, Format, Table};

/// Where the offsets go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Spec {
    /// The log start.
    Earliest,
    /// The log end.
    Latest,
    /// This offset.
    Offset(i64),
    /// The committed offset moved by this much.
    Shift(i64),
    /// The first offset at or after this time (ms since the epoch).
    Time(i64),
    /// Offsets from a file: (topic, partition, offset).
    File(Vec<(String, i32, i64)>),
}

/// One line of the plan.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct PlanLine {
    group: String,
    topic: String,
    partition: i32,
    new_offset: i64,
}

/// The new offset of one partition: the spec applied to its log bounds, its committed offset
/// and (for times) the offset the broker found for the time, kept within `[low, high]` as
/// Kafka does.
pub(crate) fn new_offset(
    spec: &Spec,
    (low, high): (i64, i64),
    current: Option<i64>,
    at_time: Option<i64>,
    file: Option<i64>,
) -> Result<i64> {
    let target = match spec {
        Spec::Earliest => low,
        Spec::Latest => high,
        Spec::Offset(o) => *o,
        Spec::Shift(n) => match current {
            Some(c) => c.saturating_add(*n),
            None => bail!("it has no committed offset to shift"),
        },
        Spec::Time(_) => at_time.unwrap_or(high),
        Spec::File(_) => match file {
            Some(o) => o,
            None => bail!("the file gives it no offset"),
        },
    };
    Ok(target.clamp(low, high))
}

/// Parses `YYYY-MM-DDTHH:mm:SS[.sss]` with an optional `Z` or `±hh:mm` (local time without);
/// milliseconds since the epoch.
pub(crate) fn parse_datetime(s: &str) -> Result<i64> {
    use chrono::{DateTime, Local, NaiveDateTime, TimeZone};
    let bad = || anyhow::anyhow!("--to-datetime '{s}' is not YYYY-MM-DDTHH:mm:SS.sss (optionally with Z or +hh:mm)");
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Ok(t.timestamp_millis());
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").map_err(|_| bad())?;
    Local.from_local_datetime(&naive).earliest().map(|t| t.timestamp_millis()).ok_or_else(bad)
}

/// Parses an ISO-8601 duration `PnDTnHnMn[.n]S` (any part may be left out).
pub(crate) fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || anyhow::anyhow!("--by-duration '{s}' is not an ISO-8601 duration such as PT5M or P1DT2H30M");
    let rest = s.strip_prefix('P').or_else(|| s.strip_prefix('p')).ok_or_else(bad)?;
    let (days, time) = match rest.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut ms = 0f64;
    let mut any = false;
    let mut read = |part: &str, units: &[(char, f64)]| -> Result<()> {
        let mut num = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
            } else {
                let unit = units.iter().find(|(u, _)| u.eq_ignore_ascii_case(&c)).ok_or_else(bad)?;
                let n: f64 = num.parse().map_err(|_| bad())?;
                ms += n * unit.1;
                num.clear();
                any = true;
            }
        }
        if num.is_empty() {
            Ok(())
        } else {
            Err(bad())
        }
    };
    read(days, &[('D', 86_400_000.0)])?;
    if let Some(t) = time {
        read(t, &[('H', 3_600_000.0), ('M', 60_000.0), ('S', 1_000.0)])?;
    }
    if !any {
        return Err(bad());
    }
    Ok(Duration::from_millis(ms as u64))
}

/// Reads a plan file: `topic,partition,offset` lines (a header line is skipped).
fn read_plan_file(path: &std::path::Path) -> Result<Vec<(String, i32, i64)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        let parsed = match cols.as_slice() {
            [t, p, o] => p.parse::<i32>().ok().zip(o.parse::<i64>().ok()).map(|(p, o)| (t.to_string(), p, o)),
            _ => None,
        };
        match parsed {
            Some(row) => out.push(row),
            None if n == 0 => {} // a header
            None => bail!("{}:{}: expected topic,partition,offset, got '{line}'", path.display(), n + 1),
        }
    }
    Ok(out)
}

fn spec(a: &GroupsArgs) -> Result<Spec> {
    Ok(if a.to_earliest {
        Spec::Earliest
    } else if a.to_latest {
        Spec::Latest
    } else if let Some(o) = a.to_offset {
        Spec::Offset(o)
    } else if let Some(n) = a.shift_by {
        Spec::Shift(n)
    } else if let Some(t) = &a.to_datetime {
        Spec::Time(parse_datetime(t)?)
    } else if let Some(d) = &a.by_duration {
        let d = parse_duration(d)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Spec::Time(now.saturating_sub(d).as_millis() as i64)
    } else if let Some(f) = &a.from_file {
        Spec::File(read_plan_file(f)?)
    } else {
        bail!(
            "--reset-offsets needs one of --to-earliest, --to-latest, --to-offset, --shift-by, --to-datetime, \
             --by-duration, --from-file"
        )
    })
}

/// Runs `--reset-offsets`.
pub(crate) async fn run(a: &GroupsArgs, consumer: &BaseConsumer, group: &str) -> Result<()> {
    let spec = spec(a)?;
    let admin = a.conn.admin()?;
    let partitions = match &spec {
        Spec::File(rows) if a.topic.is_empty() && !a.all_topics => {
            rows.iter().map(|(t, p, _)| (t.clone(), *p)).collect()
        }
        _ => resolve_partitions(a, consumer, group, &admin)?,
    };
    let committed = ffi::list_group_offsets(&admin, group, ADMIN_TIMEOUT)?;
    let at_times = match &spec {
        Spec::Time(ts) => {
            let mut tpl = TopicPartitionList::new();
            for (t, p) in &partitions {
                tpl.add_partition_offset(t, *p, Offset::Offset(*ts))?;
            }
            let found = consumer.offsets_for_times(tpl, REACH_TIMEOUT).context("looking up offsets by time")?;
            found
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
                    _ => None,
                })
                .collect()
        }
        _ => std::collections::BTreeMap::new(),
    };
    let mut plan = Vec::new();
    for (t, p) in &partitions {
        let bounds = consumer
            .fetch_watermarks(t, *p, REACH_TIMEOUT)
            .with_context(|| format!("reading the bounds of {t}-{p}"))?;
        let current = committed.iter().find(|(ct, cp, _)| ct == t && cp == p).map(|(_, _, o)| *o);
        let file = match &spec {
            Spec::File(rows) => rows.iter().find(|(ft, fp, _)| ft == t && fp == p).map(|(_, _, o)| *o),
            _ => None,
        };
        let at_time = at_times.get(&(t.clone(), *p)).copied();
        let o = new_offset(&spec, bounds, current, at_time, file).with_context(|| format!("partition {t}-{p}"))?;
        plan.push(PlanLine { group: group.to_string(), topic: t.clone(), partition: *p, new_offset: o });
    }
    if a.execute {
        if let Some(info) = group_info(consumer, group)? {
            if !info.members.is_empty() {
                bail!(
                    "assignments can only be reset if the group '{group}' is inactive, but the current state is {} \
                     ({} member(s))",
                    info.state,
                    info.members.len()
                );
            }
        }
        let mut config = a.conn.client_config()?;
        config.set("group.id", group).set("enable.auto.commit", "false");
        let committer: BaseConsumer = config.create().context("creating the committer")?;
        let mut tpl = TopicPartitionList::new();
        for l in &plan {
            tpl.add_partition_offset(&l.topic, l.partition, Offset::Offset(l.new_offset))?;
        }
        committer.commit(&tpl, CommitMode::Sync).with_context(|| format!("committing the new offsets of {group}"))?;
    }
    match a.out.output {
        Format::Json => print_json(&plan)?,
        Format::Table => {
            if !a.execute {
                println!("Dry run: nothing committed (--execute commits this plan).");
            }
            let mut t = Table::new(&["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"]);
            for l in &plan {
                t.row(vec![l.group.clone(), l.topic.clone(), l.partition.to_string(), l.new_offset.to_string()]);
            }
            t.print();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_keep_every_spec_within_the_log() {
        let b = (10, 100);
        assert_eq!(new_offset(&Spec::Earliest, b, Some(50), None, None).unwrap(), 10);
        assert_eq!(new_offset(&Spec::Latest, b, None, None, None).unwrap(), 100);
        assert_eq!(new_offset(&Spec::Offset(5), b, None, None, None).unwrap(), 10);
        assert_eq!(new_offset(&Spec::Offset(500), b, None, None, None).unwrap(), 100);
        assert_eq!(new_offset(&Spec::Shift(-20), b, Some(50), None, None).unwrap(), 30);
        assert_eq!(new_offset(&Spec::Shift(-90), b, Some(50), None, None).unwrap(), 10);
        assert!(new_offset(&Spec::Shift(1), b, None, None, None).is_err());
        assert_eq!(new_offset(&Spec::Time(0), b, None, Some(42), None).unwrap(), 42);
        assert_eq!(new_offset(&Spec::Time(0), b, None, None, None).unwrap(), 100, "after the last record: the end");
        assert_eq!(new_offset(&Spec::File(vec![]), b, None, None, Some(77)).unwrap(), 77);
    }

    #[test]
    fn should_parse_datetimes_and_durations() {
        assert_eq!(parse_datetime("2026-01-01T00:00:00.000Z").unwrap(), 1_767_225_600_000);
        assert_eq!(parse_datetime("2026-01-01T01:00:00.000+01:00").unwrap(), 1_767_225_600_000);
        assert!(parse_datetime("2026-01-01T00:00:00.000").is_ok(), "local time");
        assert!(parse_datetime("yesterday").unwrap_err().to_string().contains("yesterday"));
        assert_eq!(parse_duration("PT5M").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("P1DT2H30M").unwrap(), Duration::from_secs(86_400 + 9_000));
        assert_eq!(parse_duration("PT0.5S").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("P").is_err());
    }
}
