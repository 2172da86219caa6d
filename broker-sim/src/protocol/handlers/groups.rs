//! FindCoordinator (groups and transactional ids) and the group membership APIs: JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, DescribeGroups, ListGroups.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    BrokerId, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    ListGroupsRequest, ListGroupsResponse, SyncGroupRequest, SyncGroupResponse,
};

use super::sb;
use crate::group::{JoinRequest, JoinResult, Pending, SyncResult};
use crate::protocol::{acl, codes, Ctx};

/// NOT_COORDINATOR unless this broker coordinates `group`.
pub(super) fn check_coordinator(ctx: &Ctx<'_>, group: &str) -> i16 {
    if ctx.core.coordinator_for(group).0 == ctx.node_id() {
        codes::NONE
    } else {
        codes::NOT_COORDINATOR
    }
}

pub(super) fn find_coordinator(ctx: &Ctx<'_>, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let lookup = |key: &str| -> Coordinator {
        let mut c = Coordinator::default().with_key(sb(key)).with_node_id(BrokerId(-1)).with_host(sb("")).with_port(-1);
        let (node, _) = match req.key_type {
            0 => ctx.core.coordinator_for(key),
            1 => ctx.core.txn_coordinator_for(key),
            other => {
                c.error_code = codes::INVALID_REQUEST;
                c.error_message =
                    Some(sb(&format!("coordinator key type {other} is not supported (0 = group, 1 = transaction)")));
                return c;
            }
        };
        match ctx.core.broker(node) {
            Some(b) => {
                c.node_id = BrokerId(b.node_id);
                c.host = sb(&b.host);
                c.port = i32::from(b.port);
            }
            None => c.error_code = codes::COORDINATOR_NOT_AVAILABLE,
        }
        c
    };
    if ctx.version >= 4 {
        let coordinators = req.coordinator_keys.iter().map(|k| lookup(k)).collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = lookup(&req.key);
    FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_error_message(c.error_message)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port)
}

fn join_response(r: JoinResult) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation)
        .with_protocol_type(r.protocol_type.map(|s| sb(&s)))
        .with_protocol_name(r.protocol_name.map(|s| sb(&s)))
        .with_leader(sb(&r.leader))
        .with_member_id(sb(&r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|(id, inst, meta)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(sb(&id))
                        .with_group_instance_id(inst.map(|s| sb(&s)))
                        .with_metadata(meta)
                })
                .collect(),
        )
}

pub(super) async fn join(ctx: &Ctx<'_>, req: JoinGroupRequest) -> JoinGroupResponse {
    let group = req.group_id.to_string();
    let code = check_coordinator(ctx, &group);
    if code != codes::NONE {
        return join_response(JoinResult::error(code, &req.member_id));
    }
    let jr = JoinRequest {
        group,
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        protocol_type: req.protocol_type.to_string(),
        protocols: req.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if ctx.version >= 1 { req.rebalance_timeout_ms } else { req.session_timeout_ms },
        client_id: ctx.client_id(),
        client_host: ctx.conn.client_host.clone(),
        require_known_member_id: ctx.version >= 4,
    };
    let member = jr.member_id.clone();
    let pending = ctx.core.groups.lock().join(ctx.now(), jr);
    let result = match pending {
        Pending::Now(r) => r,
        Pending::Later(rx) => rx.await.unwrap_or_else(|_| JoinResult::error(codes::UNKNOWN_MEMBER_ID, &member)),
    };
    join_response(result)
}

pub(super) async fn sync(ctx: &Ctx<'_>, req: SyncGroupRequest) -> SyncGroupResponse {
    let group = req.group_id.to_string();
    let code = check_coordinator(ctx, &group);
    let result = if code != codes::NONE {
        SyncResult::error(code)
    } else {
        let assignments = req.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect();
        let ptype = req.protocol_type.as_ref().map(|s| s.to_string());
        let pname = req.protocol_name.as_ref().map(|s| s.to_string());
        let pending = ctx.core.groups.lock().sync(
            ctx.now(),
            &group,
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id,
            (ptype.as_deref(), pname.as_deref()),
            assignments,
        );
        match pending {
            Pending::Now(r) => r,
            Pending::Later(rx) => rx.await.unwrap_or_else(|_| SyncResult::error(codes::REBALANCE_IN_PROGRESS)),
        }
    };
    SyncGroupResponse::default()
        .with_error_code(result.error)
        .with_protocol_type(result.protocol_type.map(|s| sb(&s)))
        .with_protocol_name(result.protocol_name.map(|s| sb(&s)))
        .with_assignment(result.assignment)
}

pub(super) fn heartbeat(ctx: &Ctx<'_>, req: HeartbeatRequest) -> HeartbeatResponse {
    let group = req.group_id.to_string();
    let mut code = check_coordinator(ctx, &group);
    if code == codes::NONE {
        code = ctx.core.groups.lock().heartbeat(
            ctx.now(),
            &group,
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id,
        );
    }
    HeartbeatResponse::default().with_error_code(code)
}

pub(super) fn leave(ctx: &Ctx<'_>, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let group = req.group_id.to_string();
    let code = check_coordinator(ctx, &group);
    if code != codes::NONE {
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let now = ctx.now();
    let mut groups = ctx.core.groups.lock();
    if ctx.version < 3 {
        let code = groups.leave(now, &group, &req.member_id, None);
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let members = req
        .members
        .iter()
        .map(|m| {
            let code = groups.leave(now, &group, &m.member_id, m.group_instance_id.as_deref());
            MemberResponse::default()
                .with_member_id(m.member_id.clone())
                .with_group_instance_id(m.group_instance_id.clone())
                .with_error_code(code)
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}

pub(super) fn describe(ctx: &Ctx<'_>, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let groups = ctx.core.groups.lock();
    let described =
        req.groups
            .iter()
            .map(|gid| {
                let mut d = DescribedGroup::default().with_group_id(gid.clone()).with_authorized_operations(
                    acl::if_asked(ctx.version >= 3 && req.include_authorized_operations, acl::GROUP),
                );
                let code = check_coordinator(ctx, gid);
                if code != codes::NONE {
                    d.error_code = code;
                    return d;
                }
                let Some(g) = groups.group(gid) else {
                    d.group_state = sb("Dead");
                    return d;
                };
                d.group_state = sb(g.state.name());
                d.protocol_type = sb(g.protocol_type.as_deref().unwrap_or(""));
                d.protocol_data = sb(g.protocol_name.as_deref().unwrap_or(""));
                let stable = g.state == crate::group::GroupState::Stable;
                d.members = g
                    .members
                    .values()
                    .map(|m| {
                        DescribedGroupMember::default()
                            .with_member_id(sb(&m.id))
                            .with_group_instance_id(m.instance_id.as_ref().map(|s| sb(s)))
                            .with_client_id(sb(&m.client_id))
                            .with_client_host(sb(&m.client_host))
                            .with_member_metadata(
                                g.protocol_name.as_ref().and_then(|p| m.metadata(p).cloned()).unwrap_or_default(),
                            )
                            .with_member_assignment(if stable { m.assignment.clone() } else { Default::default() })
                    })
                    .collect();
                d
            })
            .collect();
    DescribeGroupsResponse::default().with_groups(described)
}

pub(super) fn list(ctx: &Ctx<'_>, req: ListGroupsRequest) -> ListGroupsResponse {
    let groups = ctx.core.groups.lock();
    let listed = groups
        .groups()
        .filter(|g| check_coordinator(ctx, &g.id) == codes::NONE)
        .filter(|g| {
            req.states_filter.is_empty() || req.states_filter.iter().any(|s| s.eq_ignore_ascii_case(g.state.name()))
        })
        .filter(|_| req.types_filter.is_empty() || req.types_filter.iter().any(|t| t.eq_ignore_ascii_case("classic")))
        .map(|g| {
            ListedGroup::default()
                .with_group_id(GroupId(sb(&g.id)))
                .with_protocol_type(sb(g.protocol_type.as_deref().unwrap_or("consumer")))
                .with_group_state(sb(g.state.name()))
                .with_group_type(sb("classic"))
        })
        .collect();
    ListGroupsResponse::default().with_groups(listed)
}
