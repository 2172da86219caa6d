//! Raw group-protocol calls (JoinGroup, SyncGroup, Heartbeat, OffsetCommit) for wire tests that
//! check exact error codes a real client would only log.

use std::net::TcpStream;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, OffsetCommitRequest,
    OffsetCommitResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::raw::call;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// JoinGroup v5 with one "range" protocol; blocks until the broker answers (the join phase
/// completes). A dynamic member's MEMBER_ID_REQUIRED is answered by joining again with the
/// given id, as clients do.
pub fn join(conn: &mut TcpStream, group: &str, member: &str, instance: Option<&str>) -> JoinGroupResponse {
    let r = join_once(conn, group, member, instance);
    if r.error_code == MEMBER_ID_REQUIRED {
        return join_once(conn, group, &r.member_id, instance);
    }
    r
}

const MEMBER_ID_REQUIRED: i16 = 79;

fn join_once(conn: &mut TcpStream, group: &str, member: &str, instance: Option<&str>) -> JoinGroupResponse {
    let req = JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"\0\0\0\0\0\0\0\0"))]);
    call(conn, ApiKey::JoinGroup, 5, &req)
}

/// SyncGroup v3; the leader passes every member's assignment.
pub fn sync(
    conn: &mut TcpStream,
    group: &str,
    member: &str,
    instance: Option<&str>,
    generation: i32,
    assignments: &[(&str, &[u8])],
) -> SyncGroupResponse {
    let req = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::copy_from_slice(a))
                })
                .collect(),
        );
    call(conn, ApiKey::SyncGroup, 3, &req)
}

/// Heartbeat v3: the error code.
pub fn heartbeat(conn: &mut TcpStream, group: &str, member: &str, instance: Option<&str>, generation: i32) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s));
    let r: HeartbeatResponse = call(conn, ApiKey::Heartbeat, 3, &req);
    r.error_code
}

/// OffsetCommit v7 of `offset` for partition 0 of `topic`: the partition's error code.
pub fn commit(conn: &mut TcpStream, group: &str, member: &str, generation: i32, topic: &str, offset: i64) -> i16 {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default().with_name(TopicName(s(topic))).with_partitions(vec![
            OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(offset),
        ])]);
    let r: OffsetCommitResponse = call(conn, ApiKey::OffsetCommit, 7, &req);
    r.topics[0].partitions[0].error_code
}
