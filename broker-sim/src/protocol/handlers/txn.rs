//! Idempotence and transactions: InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn
//! (transaction coordinator) and TxnOffsetCommit (group coordinator).
//!
//! PRODUCER_FENCED exists only from InitProducerId v4, AddPartitionsToTxn v2, AddOffsetsToTxn
//! v2 and EndTxn v2 on; older versions get INVALID_PRODUCER_EPOCH (Kafka's `KafkaApis`).

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
    EndTxnRequest, EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse, ProducerId, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};

use super::commits::{offset_record, persist_as};
use super::groups::check_coordinator;
use crate::cluster::{CoreTxnIo, OFFSETS_TOPIC};
use crate::protocol::{codes, Ctx};
use crate::txn::{Caller, InitRequest, TxnError};

/// The fencing error for this request: PRODUCER_FENCED from `since` on, else
/// INVALID_PRODUCER_EPOCH.
fn fenced(ctx: &Ctx<'_>, since: i16) -> i16 {
    if ctx.version >= since {
        codes::PRODUCER_FENCED
    } else {
        codes::INVALID_PRODUCER_EPOCH
    }
}

/// NOT_COORDINATOR unless this broker coordinates transactional id `txn_id`.
fn check_txn_coordinator(ctx: &Ctx<'_>, txn_id: &str) -> Result<(), TxnError> {
    if ctx.core.txn_coordinator_for(txn_id).0 == ctx.node_id() {
        Ok(())
    } else {
        Err((codes::NOT_COORDINATOR, format!("broker {} does not coordinate '{txn_id}'", ctx.node_id())))
    }
}

fn log_refusal(api: &str, txn_id: &str, e: &TxnError) {
    tracing::debug!(api, txn = %txn_id, code = e.0, reason = %e.1, "transaction request refused");
}

/// The error code of a coordinator call, logging a refusal.
fn error_code(api: &str, txn_id: &str, result: Result<(), TxnError>) -> i16 {
    match result {
        Ok(()) => codes::NONE,
        Err(e) => {
            log_refusal(api, txn_id, &e);
            e.0
        }
    }
}

pub(super) fn init_producer_id(ctx: &Ctx<'_>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let txn_id = req.transactional_id.as_ref().map(|s| s.to_string());
    let expected = (ctx.version >= 3 && req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
    let result = match txn_id.as_deref() {
        Some(id) if !id.is_empty() => check_txn_coordinator(ctx, id),
        _ => Ok(()),
    }
    .and_then(|()| {
        let now = ctx.now();
        let request = InitRequest {
            txn_id: txn_id.as_deref(),
            timeout_ms: req.transaction_timeout_ms,
            expected,
            fenced: fenced(ctx, 4),
        };
        ctx.core.txns.lock().init_producer_id(&mut CoreTxnIo::new(ctx.core, now), now, request)
    });
    match result {
        Ok((pid, epoch)) => {
            InitProducerIdResponse::default().with_producer_id(ProducerId(pid)).with_producer_epoch(epoch)
        }
        Err(e) => {
            log_refusal("InitProducerId", txn_id.as_deref().unwrap_or(""), &e);
            InitProducerIdResponse::default()
                .with_error_code(e.0)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    }
}

pub(super) fn add_partitions_to_txn(ctx: &Ctx<'_>, req: AddPartitionsToTxnRequest) -> AddPartitionsToTxnResponse {
    let txn_id = req.v3_and_below_transactional_id.to_string();
    let mut unknown = Vec::new();
    let mut wanted = Vec::new();
    for t in &req.v3_and_below_topics {
        let topic = ctx.core.topic(&t.name);
        for &p in &t.partitions {
            let exists = topic.as_ref().is_some_and(|t| p >= 0 && (p as usize) < t.partitions.len());
            if exists {
                wanted.push((t.name.to_string(), p));
            } else {
                unknown.push((t.name.to_string(), p));
            }
        }
    }
    let result = check_txn_coordinator(ctx, &txn_id).and_then(|()| {
        if !unknown.is_empty() {
            return Err((codes::UNKNOWN_TOPIC_OR_PARTITION, format!("unknown partitions {unknown:?}")));
        }
        let now = ctx.now();
        let caller = Caller {
            txn_id: &txn_id,
            producer_id: req.v3_and_below_producer_id.0,
            epoch: req.v3_and_below_producer_epoch,
            fenced: fenced(ctx, 2),
        };
        ctx.core.txns.lock().add_partitions(&mut CoreTxnIo::new(ctx.core, now), now, caller, &wanted)
    });
    let code_of = |topic: &str, p: i32| -> i16 {
        match &result {
            Ok(()) => codes::NONE,
            // Only the unknown partitions failed; the others were not attempted.
            Err((codes::UNKNOWN_TOPIC_OR_PARTITION, _)) if !unknown.contains(&(topic.to_string(), p)) => {
                codes::OPERATION_NOT_ATTEMPTED
            }
            Err((code, _)) => *code,
        }
    };
    if let Err(e) = &result {
        log_refusal("AddPartitionsToTxn", &txn_id, e);
    }
    let topics = req
        .v3_and_below_topics
        .iter()
        .map(|t| {
            let parts = t
                .partitions
                .iter()
                .map(|&p| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(p)
                        .with_partition_error_code(code_of(&t.name, p))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default().with_name(t.name.clone()).with_results_by_partition(parts)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics)
}

pub(super) fn add_offsets_to_txn(ctx: &Ctx<'_>, req: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let txn_id = req.transactional_id.to_string();
    let result = check_txn_coordinator(ctx, &txn_id).and_then(|()| {
        let (_, p) = ctx.core.coordinator_for(&req.group_id);
        let now = ctx.now();
        let caller = Caller {
            txn_id: &txn_id,
            producer_id: req.producer_id.0,
            epoch: req.producer_epoch,
            fenced: fenced(ctx, 2),
        };
        let offsets = [(OFFSETS_TOPIC.to_string(), p)];
        ctx.core.txns.lock().add_partitions(&mut CoreTxnIo::new(ctx.core, now), now, caller, &offsets)
    });
    AddOffsetsToTxnResponse::default().with_error_code(error_code("AddOffsetsToTxn", &txn_id, result))
}

pub(super) fn end_txn(ctx: &Ctx<'_>, req: EndTxnRequest) -> EndTxnResponse {
    let txn_id = req.transactional_id.to_string();
    let result = check_txn_coordinator(ctx, &txn_id).and_then(|()| {
        let now = ctx.now();
        let caller = Caller {
            txn_id: &txn_id,
            producer_id: req.producer_id.0,
            epoch: req.producer_epoch,
            fenced: fenced(ctx, 2),
        };
        ctx.core.txns.lock().end_txn(&mut CoreTxnIo::new(ctx.core, now), now, caller, req.committed)
    });
    EndTxnResponse::default().with_error_code(error_code("EndTxn", &txn_id, result))
}

pub(super) fn txn_offset_commit(ctx: &Ctx<'_>, req: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    let group = req.group_id.to_string();
    let now = ctx.now();
    let pid = req.producer_id.0;
    let epoch = req.producer_epoch;
    // Lock order: transactions, then groups, then the offsets partition log.
    let txns = ctx.core.txns.lock();
    let mut groups = ctx.core.groups.lock();
    let mut code = check_coordinator(ctx, &group);
    if code == codes::NONE {
        // The group's offsets partition must be in the producer's open transaction
        // (AddOffsetsToTxn first), else no marker would ever settle these offsets.
        let (_, p) = ctx.core.coordinator_for(&group);
        if let Err(e) = txns.verify_produce(pid, epoch, OFFSETS_TOPIC, p) {
            log_refusal("TxnOffsetCommit", &req.transactional_id, &e);
            code = e.0;
        }
    }
    if code == codes::NONE && ctx.version >= 3 {
        if let Err(c) =
            groups.check_txn_commit(&group, &req.member_id, req.group_instance_id.as_deref(), req.generation_id)
        {
            code = c;
        }
    }
    let mut records = Vec::new();
    let mut results: Vec<(usize, i32, i16)> = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let topic = ctx.core.topic(&t.name);
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
            results.push((ti, p.partition_index, c));
        }
    }
    if let Err(e) = persist_as(ctx, &mut groups, &group, records, Some((pid, epoch))) {
        tracing::warn!(group = %group, error = %e, "transactional offset commit write failed");
        for r in results.iter_mut().filter(|r| r.2 == codes::NONE) {
            r.2 = codes::UNKNOWN_SERVER_ERROR;
        }
    }
    drop(groups);
    drop(txns);
    let topics = req
        .topics
        .iter()
        .enumerate()
        .map(|(ti, t)| {
            let parts = results
                .iter()
                .filter(|r| r.0 == ti)
                .map(|r| TxnOffsetCommitResponsePartition::default().with_partition_index(r.1).with_error_code(r.2))
                .collect();
            TxnOffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(parts)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
