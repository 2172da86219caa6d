//! Produce: validate batches, check idempotent and transactional producers, assign offsets,
//! append, answer (or stay silent for acks=0).

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
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
                                if res.2 {
                                    r.log_append_time_ms = now;
                                }
                            }
                            Err(refused) => {
                                let Refused { code, message, record_errors } = refused;
                                tracing::debug!(topic = %t.name, partition = p.index, code, %message, "produce rejected");
                                r.error_code = code;
                                r.error_message = Some(sb(&message));
                                r.record_errors = record_errors
                                    .into_iter()
                                    .map(|(i, m)| {
                                        BatchIndexAndErrorMessage::default()
                                            .with_batch_index(i)
                                            .with_batch_index_error_message(Some(sb(&m)))
                                    })
                                    .collect();
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

/// Why a partition's records were refused: the error code, a message, and (KIP-467) the
/// records at fault, by their index in the request's records, each with its own message.
#[derive(Debug)]
struct Refused {
    code: i16,
    message: String,
    record_errors: Vec<(i32, String)>,
}

impl From<(i16, String)> for Refused {
    fn from((code, message): (i16, String)) -> Self {
        Refused { code, message, record_errors: Vec::new() }
    }
}

/// Shown in full in a top-level message; the rest are counted (Kafka shows three too).
const RECORD_ERRORS_SHOWN: usize = 3;

/// Validates and appends one partition's records; returns (base offset, log start offset,
/// whether the partition stamps LogAppendTime), all from one read of its settings.
fn append(
    ctx: &Ctx<'_>,
    topic: &Topic,
    p: &Partition,
    records: &[u8],
    acks: i16,
    now: i64,
) -> Result<(i64, i64, bool), Refused> {
    if p.leader != ctx.node_id() {
        return Err((codes::NOT_LEADER_OR_FOLLOWER, format!("broker {} is not the leader", ctx.node_id())).into());
    }
    let ranges = batch::split_batches(records).map_err(|e| {
        let code = match e {
            BatchError::BadMagic(_) => codes::UNSUPPORTED_FOR_MESSAGE_FORMAT,
            _ => codes::CORRUPT_MESSAGE,
        };
        (code, e.to_string())
    })?;
    if ranges.is_empty() {
        return Err((codes::CORRUPT_MESSAGE, "produce request carries no record batch".to_string()).into());
    }
    let cfg = &p.config.read().clone();
    let mut from_producer = false;
    // Index of the first record of the batch at hand, counted over the request's records.
    let mut first_index = 0usize;
    let mut record_errors: Vec<(i32, String)> = Vec::new();
    let mut keyless = 0usize;
    for range in &ranges {
        let bytes = &records[range.clone()];
        let h = batch::BatchHeader::parse(bytes).map_err(|e| (codes::CORRUPT_MESSAGE, e.to_string()))?;
        from_producer |= h.producer_id() >= 0;
        if bytes.len() > cfg.max_message_bytes {
            return Err((
                codes::MESSAGE_TOO_LARGE,
                format!("batch of {} bytes exceeds max.message.bytes {}", bytes.len(), cfg.max_message_bytes),
            )
                .into());
        }
        if h.is_control() {
            return Err((codes::INVALID_RECORD, "clients may not write control batches".to_string()).into());
        }
        if cfg.compact || cfg.checks_timestamps() {
            // Per-record checks (KIP-467 names each record at fault); only topics that ask
            // for them pay for reading the records.
            let (before, after) = cfg.timestamp_bounds;
            let (earliest, latest) = (now.saturating_sub(before), now.saturating_add(after));
            let check_time = cfg.checks_timestamps();
            let mut index = first_index;
            records::for_each_record(bytes, records::client_batch_cap(bytes.len()), |r| {
                if cfg.compact && r.key.is_none() {
                    keyless += 1;
                    record_errors.push((
                        index as i32,
                        format!("compacted topic {} requires a key on every record; this one has none", topic.name),
                    ));
                } else if check_time && !(earliest..=latest).contains(&r.timestamp) {
                    record_errors.push((
                        index as i32,
                        format!(
                            "timestamp {} is out of range: {} accepts [{earliest}, {latest}] \
                             (message.timestamp.before.max.ms / after.max.ms)",
                            r.timestamp, topic.name
                        ),
                    ));
                }
                index += 1;
                true
            })
            .map_err(|e| (codes::CORRUPT_MESSAGE, e.to_string()))?;
        }
        first_index += usize::try_from(h.records_count()).unwrap_or(0);
    }
    if !record_errors.is_empty() {
        let shown: Vec<String> =
            record_errors.iter().take(RECORD_ERRORS_SHOWN).map(|(i, m)| format!("record {i}: {m}")).collect();
        let message = format!(
            "{} record(s) refused, so the whole batch is refused{}: {}",
            record_errors.len(),
            if record_errors.len() > RECORD_ERRORS_SHOWN { "; the first three" } else { "" },
            shown.join("; ")
        );
        // Kafka's class: keyless records make the batch an invalid record, else timestamps.
        let code = if keyless > 0 { codes::INVALID_RECORD } else { codes::INVALID_TIMESTAMP };
        return Err(Refused { code, message, record_errors });
    }
    if acks == -1 && (p.replicas.len() as i32) < cfg.min_insync_replicas {
        return Err((
            codes::NOT_ENOUGH_REPLICAS,
            format!("{} in-sync replicas, min.insync.replicas is {}", p.replicas.len(), cfg.min_insync_replicas),
        )
            .into());
    }
    let first =
        batch::BatchHeader::parse(&records[ranges[0].clone()]).map_err(|e| (codes::CORRUPT_MESSAGE, e.to_string()))?;
    let producer_id = first.producer_id();
    if ranges.len() > 1 && from_producer {
        return Err((
            codes::INVALID_RECORD,
            format!("{} batches for one partition: an idempotent producer sends exactly one", ranges.len()),
        )
            .into());
    }
    // Lock order: transaction coordinator, then the partition log. Holding both makes the
    // "is this partition in the producer's open transaction" check and the append atomic with
    // respect to EndTxn, so a late batch can never start a transaction no marker will close.
    let txns = (producer_id >= 0 && first.is_transactional()).then(|| ctx.core.txns.lock());
    let mut log = p.log.lock();
    if producer_id >= 0 {
        match log.producers.check(&first) {
            Ok(Verdict::Duplicate { first_offset }) => {
                return Ok((first_offset, log.log_start_offset(), cfg.log_append_time))
            }
            Ok(Verdict::Append) => {}
            Err(rejection) => return Err(rejection.into()),
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
    Ok((info.base_offset, log.log_start_offset(), cfg.log_append_time))
}

/// The largest append scratch buffer a thread keeps.
const KEEP_SCRATCH: usize = 16 << 20;

thread_local! {
    /// Where a produce request's batches are copied to be given their offsets.
    static APPEND_SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}
