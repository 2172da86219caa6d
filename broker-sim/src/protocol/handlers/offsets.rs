//! ListOffsets, OffsetForLeaderEpoch and DeleteRecords.

use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};

use crate::cluster::Partition;
use crate::protocol::{codes, Ctx};

/// Checks leadership and the client's view of the leader epoch.
fn check_leader(ctx: &Ctx<'_>, p: &Partition, current_epoch: i32) -> i16 {
    if p.leader != ctx.node_id() {
        codes::NOT_LEADER_OR_FOLLOWER
    } else if current_epoch >= 0 && current_epoch < p.leader_epoch {
        codes::FENCED_LEADER_EPOCH
    } else if current_epoch > p.leader_epoch {
        codes::UNKNOWN_LEADER_EPOCH
    } else {
        codes::NONE
    }
}

pub(super) fn list_offsets(ctx: &Ctx<'_>, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let read_committed = ctx.version >= 2 && req.isolation_level == 1;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = ctx.core.topic(&t.name);
            let parts = t
                .partitions
                .into_iter()
                .map(|lp| {
                    let mut r = ListOffsetsPartitionResponse::default()
                        .with_partition_index(lp.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    let p = topic
                        .as_ref()
                        .and_then(|t| usize::try_from(lp.partition_index).ok().and_then(|i| t.partitions.get(i)));
                    let Some(p) = p else {
                        r.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION;
                        return r;
                    };
                    r.error_code = check_leader(ctx, p, lp.current_leader_epoch);
                    if r.error_code != codes::NONE {
                        return r;
                    }
                    let log = p.log.lock();
                    // The last offset a consumer of this isolation level may read up to.
                    let upper = if read_committed { log.last_stable_offset() } else { log.log_end_offset() };
                    let found = match lp.timestamp {
                        -1 => Ok(Some((upper, -1))),
                        -2 => Ok(Some((log.log_start_offset(), -1))),
                        -3 => log.max_timestamp_offset(),
                        ts if ts >= 0 => log.offset_for_timestamp(ts).map(|f| f.filter(|(o, _)| *o < upper)),
                        _ => {
                            r.error_code = codes::INVALID_REQUEST;
                            return r;
                        }
                    };
                    match found {
                        Ok(Some((offset, ts))) => {
                            r.offset = offset;
                            r.timestamp = ts;
                            r.leader_epoch = if ctx.version >= 4 { p.leader_epoch } else { -1 };
                        }
                        // No record at or after the timestamp: Kafka answers -1/-1.
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "ListOffsets read failed");
                            r.error_code = codes::UNKNOWN_SERVER_ERROR;
                        }
                    }
                    if ctx.version == 0 {
                        r.timestamp = -1;
                    }
                    r
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(parts)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

pub(super) fn offset_for_leader_epoch(ctx: &Ctx<'_>, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = ctx.core.topic(&t.topic);
            let parts = t
                .partitions
                .into_iter()
                .map(|op| {
                    let mut r = EpochEndOffset::default()
                        .with_partition(op.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let p = topic
                        .as_ref()
                        .and_then(|t| usize::try_from(op.partition).ok().and_then(|i| t.partitions.get(i)));
                    let Some(p) = p else {
                        r.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION;
                        return r;
                    };
                    r.error_code = check_leader(ctx, p, op.current_leader_epoch);
                    if r.error_code == codes::NONE {
                        let log = p.log.lock();
                        let (epoch, end) = if log.latest_epoch() < 0 || op.leader_epoch >= p.leader_epoch {
                            // Nothing written yet, or asking about the current epoch: the log end.
                            (p.leader_epoch.max(log.latest_epoch()), log.log_end_offset())
                        } else {
                            log.end_offset_for_epoch(op.leader_epoch)
                        };
                        r.leader_epoch = epoch;
                        r.end_offset = end;
                    }
                    r
                })
                .collect();
            OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(parts)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

pub(super) fn delete_records(ctx: &Ctx<'_>, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let now = ctx.now();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = ctx.core.topic(&t.name);
            let parts = t
                .partitions
                .into_iter()
                .map(|dp| {
                    let mut r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(dp.partition_index)
                        .with_low_watermark(-1);
                    let p = topic
                        .as_ref()
                        .and_then(|t| usize::try_from(dp.partition_index).ok().and_then(|i| t.partitions.get(i)));
                    let Some(p) = p else {
                        r.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION;
                        return r;
                    };
                    if p.leader != ctx.node_id() {
                        r.error_code = codes::NOT_LEADER_OR_FOLLOWER;
                        return r;
                    }
                    let mut log = p.log.lock();
                    let hw = log.log_end_offset();
                    let target = if dp.offset == -1 { hw } else { dp.offset };
                    if target < 0 || target > hw {
                        r.error_code = codes::OFFSET_OUT_OF_RANGE;
                        return r;
                    }
                    match log.delete_records_before(target, now) {
                        Ok(low) => r.low_watermark = low,
                        Err(e) => {
                            tracing::warn!(error = %e, "DeleteRecords failed");
                            r.error_code = codes::UNKNOWN_SERVER_ERROR;
                        }
                    }
                    r
                })
                .collect();
            DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(parts)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
