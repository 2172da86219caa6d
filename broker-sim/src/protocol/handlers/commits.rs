//! Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete, and DeleteGroups. Every change
//! is appended to `__consumer_offsets` before it is applied in memory, so it survives a restart.

use std::collections::BTreeMap;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};

use kafka_protocol::protocol::StrBytes;

use super::groups::check_coordinator;
use super::sb;
use crate::cluster::{Topic, OFFSETS_TOPIC};
use crate::group::offsets::{encode_batch, OffsetRecord};
use crate::group::{CommitCheck, GroupCoordinator, OffsetEntry};
use crate::log::internal::TxnProducer;
use crate::protocol::{codes, Ctx};

const OFFSET_METADATA_TOO_LARGE: i16 = 12;
const MAX_METADATA_BYTES: usize = 4096;

/// Appends offset records for `group` to its `__consumer_offsets` partition, then applies them.
fn persist(
    ctx: &Ctx<'_>,
    groups: &mut GroupCoordinator,
    group: &str,
    records: Vec<OffsetRecord>,
) -> Result<(), String> {
    persist_as(ctx, groups, group, records, None)
}

/// [`persist`] for a transactional producer: the records are written as a transactional batch
/// and stay pending until the producer's marker (TxnOffsetCommit).
pub(super) fn persist_as(
    ctx: &Ctx<'_>,
    groups: &mut GroupCoordinator,
    group: &str,
    records: Vec<OffsetRecord>,
    producer: TxnProducer,
) -> Result<(), String> {
    if records.is_empty() {
        return Ok(());
    }
    let now = ctx.now();
    let (_, p) = ctx.core.coordinator_for(group);
    let partition = ctx.core.partition(OFFSETS_TOPIC, p).ok_or("offsets partition missing (bug)")?;
    let mut batch = encode_batch(&records, now, producer).map_err(|e| e.to_string())?;
    partition.log.lock().append(&mut batch, partition.leader_epoch, now).map_err(|e| e.to_string())?;
    for r in records {
        match producer {
            Some((pid, _)) => groups.add_pending_txn(pid, r),
            None => groups.apply(r),
        }
    }
    Ok(())
}

pub(super) fn offset_commit(ctx: &Ctx<'_>, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let group = req.group_id.to_string();
    let now = ctx.now();
    let mut code = check_coordinator(ctx, &group);
    let mut groups = ctx.core.groups.lock();
    if code == codes::NONE {
        let generation = if ctx.version >= 1 { req.generation_id_or_member_epoch } else { -1 };
        if let CommitCheck::Reject(c) =
            groups.check_commit(now, &group, &req.member_id, req.group_instance_id.as_deref(), generation)
        {
            code = c;
        }
    }
    let mut results: Vec<(TopicName, Vec<(i32, i16)>)> = Vec::new();
    let mut records = Vec::new();
    for t in &req.topics {
        let topic = ctx.core.topic(&t.name);
        let mut parts = Vec::new();
        for p in &t.partitions {
            let c = if code != codes::NONE {
                code
            } else {
                let part =
                    (p.partition_index, p.committed_offset, p.committed_leader_epoch, p.committed_metadata.as_ref());
                match offset_record(&group, &t.name, topic.as_deref(), part, now) {
                    Ok(r) => {
                        records.push(r);
                        codes::NONE
                    }
                    Err(c) => c,
                }
            };
            parts.push((p.partition_index, c));
        }
        results.push((t.name.clone(), parts));
    }
    if let Err(e) = persist(ctx, &mut groups, &group, records) {
        tracing::warn!(group = %group, error = %e, "offset commit write failed");
        for (_, parts) in &mut results {
            for (_, c) in parts.iter_mut().filter(|(_, c)| *c == codes::NONE) {
                *c = codes::UNKNOWN_SERVER_ERROR;
            }
        }
    }
    let topics = results
        .into_iter()
        .map(|(name, parts)| {
            OffsetCommitResponseTopic::default().with_name(name).with_partitions(
                parts
                    .into_iter()
                    .map(|(i, c)| OffsetCommitResponsePartition::default().with_partition_index(i).with_error_code(c))
                    .collect(),
            )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// Checks one partition of an OffsetCommit or TxnOffsetCommit, given as `(partition, offset,
/// leader epoch, metadata)` of `topic` (looked up as `found`), and builds its offset record;
/// else the partition's error code.
pub(super) fn offset_record(
    group: &str,
    topic: &TopicName,
    found: Option<&Topic>,
    (partition, offset, leader_epoch, metadata): (i32, i64, i32, Option<&StrBytes>),
    now: i64,
) -> Result<OffsetRecord, i16> {
    if found.is_none_or(|t| partition < 0 || partition as usize >= t.partitions.len()) {
        return Err(codes::UNKNOWN_TOPIC_OR_PARTITION);
    }
    let metadata = metadata.map(|s| s.to_string()).unwrap_or_default();
    if metadata.len() > MAX_METADATA_BYTES {
        return Err(OFFSET_METADATA_TOO_LARGE);
    }
    Ok(OffsetRecord {
        group: group.to_string(),
        topic: topic.to_string(),
        partition,
        value: Some(OffsetEntry { offset, leader_epoch, metadata, commit_ms: now }),
    })
}

/// A topic with (partition, committed offset if any, partition error) triples.
type TopicOffsets = (TopicName, Vec<(i32, Option<OffsetEntry>, i16)>);

/// Committed offsets of one group: requested partitions, or all when `None`. With
/// `require_stable` (KIP-447), a partition whose transactional commit awaits its marker answers
/// UNSTABLE_OFFSET_COMMIT so a new owner never starts from an offset that may be aborted.
fn fetch_group(
    ctx: &Ctx<'_>,
    groups: &GroupCoordinator,
    group: &str,
    topics: Option<Vec<(TopicName, Vec<i32>)>>,
    require_stable: bool,
) -> (i16, Vec<TopicOffsets>) {
    let code = check_coordinator(ctx, group);
    if code != codes::NONE {
        return (code, Vec::new());
    }
    let committed = groups.group(group).map(|g| &g.offsets);
    let entry = |topic: &str, p: i32, e: Option<OffsetEntry>| {
        if require_stable && groups.has_pending_txn(group, topic, p) {
            (p, None, codes::UNSTABLE_OFFSET_COMMIT)
        } else {
            (p, e, codes::NONE)
        }
    };
    let out = match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(name, parts)| {
                let entries = parts
                    .into_iter()
                    .map(|p| entry(&name, p, committed.and_then(|o| o.get(&(name.to_string(), p))).cloned()))
                    .collect();
                (name, entries)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<(i32, Option<OffsetEntry>, i16)>> = BTreeMap::new();
            for ((t, p), e) in committed.into_iter().flatten() {
                by_topic.entry(t.clone()).or_default().push(entry(t, *p, Some(e.clone())));
            }
            by_topic.into_iter().map(|(t, v)| (TopicName(sb(&t)), v)).collect()
        }
    };
    (codes::NONE, out)
}

pub(super) fn offset_fetch(ctx: &Ctx<'_>, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let groups = ctx.core.groups.lock();
    let entry = |e: &Option<OffsetEntry>| match e {
        Some(e) => (e.offset, e.leader_epoch, Some(sb(&e.metadata))),
        None => (-1, -1, Some(sb(""))),
    };
    if ctx.version >= 8 {
        let results = req
            .groups
            .iter()
            .map(|g| {
                let topics = g
                    .topics
                    .as_ref()
                    .map(|ts| ts.iter().map(|t| (t.name.clone(), t.partition_indexes.clone())).collect());
                let (code, found) = fetch_group(ctx, &groups, &g.group_id, topics, req.require_stable);
                let topics = found
                    .into_iter()
                    .map(|(name, parts)| {
                        OffsetFetchResponseTopics::default().with_name(name).with_partitions(
                            parts
                                .iter()
                                .map(|(i, e, c)| {
                                    let (o, ep, m) = entry(e);
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(*i)
                                        .with_committed_offset(o)
                                        .with_committed_leader_epoch(ep)
                                        .with_metadata(m)
                                        .with_error_code(*c)
                                })
                                .collect(),
                        )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_error_code(code)
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(results);
    }
    let topics = req.topics.map(|ts| ts.into_iter().map(|t| (t.name, t.partition_indexes)).collect());
    let require_stable = ctx.version >= 7 && req.require_stable;
    let (code, found) = fetch_group(ctx, &groups, &req.group_id, topics, require_stable);
    let topics = found
        .into_iter()
        .map(|(name, parts)| {
            OffsetFetchResponseTopic::default().with_name(name).with_partitions(
                parts
                    .iter()
                    .map(|(i, e, c)| {
                        let (o, ep, m) = entry(e);
                        OffsetFetchResponsePartition::default()
                            .with_partition_index(*i)
                            .with_committed_offset(o)
                            .with_committed_leader_epoch(ep)
                            .with_metadata(m)
                            .with_error_code(if ctx.version < 2 && *c == codes::NONE { code } else { *c })
                    })
                    .collect(),
            )
        })
        .collect();
    OffsetFetchResponse::default().with_error_code(code).with_topics(topics)
}

pub(super) fn offset_delete(ctx: &Ctx<'_>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group = req.group_id.to_string();
    let code = check_coordinator(ctx, &group);
    if code != codes::NONE {
        return OffsetDeleteResponse::default().with_error_code(code);
    }
    let mut groups = ctx.core.groups.lock();
    let Some(g) = groups.group(&group) else {
        return OffsetDeleteResponse::default().with_error_code(codes::GROUP_ID_NOT_FOUND);
    };
    let subscribed = if g.members.is_empty() { Default::default() } else { g.subscribed_topics() };
    let mut records = Vec::new();
    let topics: Vec<OffsetDeleteResponseTopic> = req
        .topics
        .iter()
        .map(|t| {
            let busy = subscribed.contains(t.name.as_str());
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let c = if busy {
                        codes::GROUP_SUBSCRIBED_TO_TOPIC
                    } else {
                        if g.offsets.contains_key(&(t.name.to_string(), p.partition_index)) {
                            records.push(OffsetRecord {
                                group: group.clone(),
                                topic: t.name.to_string(),
                                partition: p.partition_index,
                                value: None,
                            });
                        }
                        codes::NONE
                    };
                    OffsetDeleteResponsePartition::default().with_partition_index(p.partition_index).with_error_code(c)
                })
                .collect();
            OffsetDeleteResponseTopic::default().with_name(t.name.clone()).with_partitions(parts)
        })
        .collect();
    if let Err(e) = persist(ctx, &mut groups, &group, records) {
        tracing::warn!(group = %group, error = %e, "offset delete write failed");
        return OffsetDeleteResponse::default().with_error_code(codes::UNKNOWN_SERVER_ERROR);
    }
    OffsetDeleteResponse::default().with_topics(topics)
}

pub(super) fn delete_groups(ctx: &Ctx<'_>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut groups = ctx.core.groups.lock();
    let results = req
        .groups_names
        .iter()
        .map(|gid| {
            let mut code = check_coordinator(ctx, gid);
            if code == codes::NONE {
                match groups.delete_group(gid) {
                    Ok(keys) => {
                        let records = keys
                            .into_iter()
                            .map(|(topic, partition)| OffsetRecord {
                                group: gid.to_string(),
                                topic,
                                partition,
                                value: None,
                            })
                            .collect();
                        if let Err(e) = persist(ctx, &mut groups, gid, records) {
                            tracing::warn!(group = %gid.0.as_str(), error = %e, "group delete write failed");
                            code = codes::UNKNOWN_SERVER_ERROR;
                        }
                    }
                    Err(c) => code = c,
                }
            }
            DeletableGroupResult::default().with_group_id(gid.clone()).with_error_code(code)
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
