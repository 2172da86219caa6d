//! Request handlers, one module per area. Each takes the decoded request and returns the
//! response body; Kafka error codes are response data.

mod admin;
mod commits;
mod configs;
mod fetch;
mod groups;
mod metadata;
mod offsets;
mod produce;
mod txn;

use kafka_protocol::messages::{RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use super::Ctx;

/// Routes a request to its handler. `None` means "send no response" (acks=0 produce).
pub(super) async fn dispatch(ctx: &Ctx<'_>, request: RequestKind) -> Option<ResponseKind> {
    use RequestKind as Rq;
    use ResponseKind as Rs;
    Some(match request {
        Rq::ApiVersions(_) => Rs::ApiVersions(super::api_versions::response()),
        Rq::Metadata(r) => Rs::Metadata(metadata::handle(ctx, r)),
        Rq::Produce(r) => return produce::handle(ctx, r).map(Rs::Produce),
        Rq::Fetch(r) => Rs::Fetch(fetch::handle(ctx, r).await),
        Rq::ListOffsets(r) => Rs::ListOffsets(offsets::list_offsets(ctx, r)),
        Rq::OffsetForLeaderEpoch(r) => Rs::OffsetForLeaderEpoch(offsets::offset_for_leader_epoch(ctx, r)),
        Rq::DeleteRecords(r) => Rs::DeleteRecords(offsets::delete_records(ctx, r)),
        Rq::CreateTopics(r) => Rs::CreateTopics(admin::create_topics(ctx, r)),
        Rq::DeleteTopics(r) => Rs::DeleteTopics(admin::delete_topics(ctx, r)),
        Rq::CreatePartitions(r) => Rs::CreatePartitions(admin::create_partitions(ctx, r)),
        Rq::DescribeCluster(r) => Rs::DescribeCluster(admin::describe_cluster(ctx, r)),
        Rq::DescribeConfigs(r) => Rs::DescribeConfigs(configs::describe(ctx, r)),
        Rq::AlterConfigs(r) => Rs::AlterConfigs(configs::alter(ctx, r)),
        Rq::IncrementalAlterConfigs(r) => Rs::IncrementalAlterConfigs(configs::incremental_alter(ctx, r)),
        Rq::FindCoordinator(r) => Rs::FindCoordinator(groups::find_coordinator(ctx, r)),
        Rq::JoinGroup(r) => Rs::JoinGroup(groups::join(ctx, r).await),
        Rq::SyncGroup(r) => Rs::SyncGroup(groups::sync(ctx, r).await),
        Rq::Heartbeat(r) => Rs::Heartbeat(groups::heartbeat(ctx, r)),
        Rq::LeaveGroup(r) => Rs::LeaveGroup(groups::leave(ctx, r)),
        Rq::DescribeGroups(r) => Rs::DescribeGroups(groups::describe(ctx, r)),
        Rq::ListGroups(r) => Rs::ListGroups(groups::list(ctx, r)),
        Rq::DeleteGroups(r) => Rs::DeleteGroups(commits::delete_groups(ctx, r)),
        Rq::OffsetCommit(r) => Rs::OffsetCommit(commits::offset_commit(ctx, r)),
        Rq::OffsetFetch(r) => Rs::OffsetFetch(commits::offset_fetch(ctx, r)),
        Rq::OffsetDelete(r) => Rs::OffsetDelete(commits::offset_delete(ctx, r)),
        Rq::InitProducerId(r) => Rs::InitProducerId(txn::init_producer_id(ctx, r)),
        Rq::AddPartitionsToTxn(r) => Rs::AddPartitionsToTxn(txn::add_partitions_to_txn(ctx, r)),
        Rq::AddOffsetsToTxn(r) => Rs::AddOffsetsToTxn(txn::add_offsets_to_txn(ctx, r)),
        Rq::EndTxn(r) => Rs::EndTxn(txn::end_txn(ctx, r)),
        Rq::TxnOffsetCommit(r) => Rs::TxnOffsetCommit(txn::txn_offset_commit(ctx, r)),
        other => {
            // The frame layer only lets advertised APIs through; reaching here is a bug.
            tracing::error!(request = ?std::mem::discriminant(&other), "request routed without a handler (bug)");
            return None;
        }
    })
}

/// A `StrBytes` from a string slice.
pub(crate) fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}
