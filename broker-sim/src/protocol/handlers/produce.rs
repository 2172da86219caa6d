//! Produce: validate batches, check idempotent and transactional producers, assign offsets,
//! append, answer (or stay silent for acks=0).

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::sb;
use crate::cluster::{Partition, Topic};
use crate::log::batch::{self, BatchError};
use crate::log::producers::Verdict;
use crate::log::records;
use crate::protocol::{codes, Ctx};

pub(super) fn handle(ctx: &Ctx<'_>, req: ProduceRequest) -> Option<ProduceResponse> {
    let acks = req.acks;
    let now = ctx.now();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let mut appended = false;
    for td in req.topic_data {
        let topic = ctx.core.topic(&td.name);
        let mut parts = Vec::with_capacity(td.partition_data.len());
        for pd in td.partition_data {
            let mut r = PartitionProduceResponse::default()
                .with_index(pd.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            if !(-1..=1).contains(&acks) {
                r.error_code = codes::INVALID_REQUIRED_ACKS;
            } else {
                let partition = topic
                    .as_ref()
                    .and_then(|t| usize::try_from(pd.index).ok().and_then(|i| t.partitions.get(i)).map(|p| (t, p)));
                match partition {
                    None => r.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION,
                    Some((t, p)) => {
                        let records = pd.records.unwrap_or_default();
                        match append(ctx, t, p, &records, acks, now) {
                            Ok(res) => {
                                appended = true;
                                r.base_offset = res.0;
                                r.log_start_offset = res.1;
                                if t.resolved.log_append_time {
                                    r.log_append_time_ms = now;
                                }
                            }
                            Err((code, msg)) => {
                                tracing::debug!(topic = %t.name, partition = p.index, code, %msg, "produce rejected");
                                r.error_code = code;
                                r.error_message = Some(sb(&msg));
                            }
                        }
                    }
                }
            }
            parts.push(r);
        }
        responses.push(TopicProduceResponse::default().with_name(td.name).with_partition_responses(parts));
    }
    if appended {
        ctx.core.notify_append();
    }
    if acks == 0 {
        return None;
    }
    Some(ProduceResponse::default().with_responses(responses))
}

/// Validates and appends one partition's records; returns (base offset, log start offset).
fn append(
    ctx: &Ctx<'_>,
    topic: &Topic,
    p: &Partition,
    records: &[u8],
    acks: i16,
    now: i64,
) -> Result<(i64, i64), (i16, String)> {
    if p.leader != ctx.node_id() {
        return Err((codes::NOT_LEADER_OR_FOLLOWER, format!("broker {} is not the leader", ctx.node_id())));
    }
    let ranges = batch::split_batches(records).map_err(|e| {
        let code = match e {
            BatchError::BadMagic(_) => codes::UNSUPPORTED_FOR_MESSAGE_FORMAT,
            _ => codes::CORRUPT_MESSAGE,
        };
        (code, e.to_string())
    })?;
    if ranges.is_empty() {
        return Err((codes::CORRUPT_MESSAGE, "produce request carries no record batch".into()));
    }
    let cfg = &topic.resolved;
    let mut from_producer = false;
    for range in &ranges {
        let bytes = &records[range.clone()];
        let h = batch::BatchHeader::parse(bytes).map_err(|e| (codes::CORRUPT_MESSAGE, e.to_string()))?;
        from_producer |= h.producer_id() >= 0;
        if bytes.len() > cfg.max_message_bytes {
            return Err((
                codes::MESSAGE_TOO_LARGE,
                format!("batch of {} bytes exceeds max.message.bytes {}", bytes.len(), cfg.max_message_bytes),
            ));
        }
        if h.is_control() {
            return Err((codes::INVALID_RECORD, "clients may not write control batches".into()));
        }
        if cfg.compact {
            let mut index = 0usize;
            let mut keyless = None;
            records::for_each_record(bytes, records::client_batch_cap(bytes.len()), |r| {
                if r.key.is_none() {
                    keyless = Some(index);
                    return false;
                }
                index += 1;
                true
            })
            .map_err(|e| (codes::CORRUPT_MESSAGE, e.to_string()))?;
            if let Some(i) = keyless {
                return Err((
                    codes::INVALID_RECORD,
                    format!("compacted topic requires a key on every record (record {i} of the batch has none)"),
                ));
            }
        }
    }
    if acks == -1 && (p.replicas.len() as i32) < cfg.min_insync_replicas {
        return Err((
            codes::NOT_ENOUGH_REPLICAS,
            format!("{} in-sync replicas, min.insync.replicas is {}", p.replicas.len(), cfg.min_insync_replicas),
        ));
    }
    let first =
        batch::BatchHeader::parse(&records[ranges[0].clone()]).map_err(|e| (codes::CORRUPT_MESSAGE, e.to_string()))?;
    let producer_id = first.producer_id();
    if ranges.len() > 1 && from_producer {
        return Err((
            codes::INVALID_RECORD,
            format!("{} batches for one partition: an idempotent producer sends exactly one", ranges.len()),
        ));
    }
    // Lock order: transaction coordinator, then the partition log. Holding both makes the
    // "is this partition in the producer's open transaction" check and the append atomic with
    // respect to EndTxn, so a late batch can never start a transaction no marker will close.
    let txns = (producer_id >= 0 && first.is_transactional()).then(|| ctx.core.txns.lock());
    let mut log = p.log.lock();
    if producer_id >= 0 {
        match log.producers.check(&first) {
            Ok(Verdict::Duplicate { first_offset }) => return Ok((first_offset, log.log_start_offset())),
            Ok(Verdict::Append) => {}
            Err(rejection) => return Err(rejection),
        }
        if let Some(txns) = &txns {
            txns.verify_produce(producer_id, first.producer_epoch(), &topic.name, p.index)?;
        }
    }
    // The batches get their offsets patched in a copy, in this thread's scratch buffer: a
    // fresh buffer per request paid a page fault per 4 KiB page of records.
    let info = APPEND_SCRATCH.with_borrow_mut(|buf| {
        buf.clear();
        buf.extend_from_slice(records);
        if cfg.log_append_time {
            for range in &ranges {
                batch::set_log_append_time(&mut buf[range.clone()], now);
            }
        }
        let info = log.append(buf, p.leader_epoch, now);
        if buf.capacity() > KEEP_SCRATCH {
            *buf = Vec::new();
        }
        info
    });
    let info = info.map_err(|e| (codes::UNKNOWN_SERVER_ERROR, e.to_string()))?;
    Ok((info.base_offset, log.log_start_offset()))
}

/// The largest append scratch buffer a thread keeps.
const KEEP_SCRATCH: usize = 16 << 20;

thread_local! {
    /// Where a produce request's batches are copied to be given their offsets.
    static APPEND_SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}
