//! A simulated consumer-group member: joins (with the member id the coordinator hands out),
//! syncs (the leader spreads the partitions over the members), heartbeats, and commits offsets
//! of the partitions it owns under its generation. Offsets come from one counter per partition
//! shared by every member, taken when the commit is sent: as a member has one request
//! outstanding and rejoins only after its last commit was answered, the commits of a partition
//! reach the coordinator in counter order, so an acknowledged commit must never be undone.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, GroupId, HeartbeatRequest, JoinGroupRequest, OffsetCommitRequest, RequestKind, ResponseKind,
    SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::check::Checker;
use super::clients::{Request, SimClient};
use super::rng::Rng;
use crate::cluster::ClusterCore;
use crate::protocol::codes;

/// Offsets handed out to commits, per partition, shared by a group's members.
pub(crate) type Counters = Rc<RefCell<Vec<i64>>>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Join,
    Sync { generation: i32, leader: bool, members: Vec<String> },
    Member { generation: i32, partitions: Vec<i32>, last_heartbeat: i64 },
}

/// A member of group `group` consuming `topic`.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) id: usize,
    group: &'static str,
    topic: &'static str,
    partitions: i32,
    member_id: String,
    state: State,
    counters: Counters,
    committing: Option<(i32, i64)>,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl Member {
    /// A member that has not joined yet.
    pub(crate) fn new(
        id: usize,
        group: &'static str,
        topic: &'static str,
        partitions: i32,
        counters: Counters,
    ) -> Self {
        Member {
            id,
            group,
            topic,
            partitions,
            member_id: String::new(),
            state: State::Join,
            counters,
            committing: None,
        }
    }

    fn rejoin(&mut self, forget_id: bool) {
        if forget_id {
            self.member_id.clear();
        }
        self.state = State::Join;
    }
}

impl SimClient for Member {
    fn name(&self) -> String {
        format!("member-{}", self.id)
    }

    fn next(&mut self, now: i64, rng: &mut Rng) -> Option<Request> {
        let group = GroupId(s(self.group));
        match self.state.clone() {
            State::Join => {
                let req = JoinGroupRequest::default()
                    .with_group_id(group)
                    .with_session_timeout_ms(6_000)
                    .with_rebalance_timeout_ms(3_000)
                    .with_member_id(s(&self.member_id))
                    .with_protocol_type(s("consumer"))
                    .with_protocols(vec![JoinGroupRequestProtocol::default()
                        .with_name(s("range"))
                        .with_metadata(Bytes::new())]);
                Some((ApiKey::JoinGroup, 5, RequestKind::JoinGroup(req)))
            }
            State::Sync { generation, leader, members } => {
                let assignments = if leader {
                    members
                        .iter()
                        .enumerate()
                        .map(|(i, m)| {
                            let mine: Vec<String> = (0..self.partitions)
                                .filter(|p| *p as usize % members.len() == i)
                                .map(|p| p.to_string())
                                .collect();
                            SyncGroupRequestAssignment::default()
                                .with_member_id(s(m))
                                .with_assignment(Bytes::from(mine.join(",")))
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let req = SyncGroupRequest::default()
                    .with_group_id(group)
                    .with_generation_id(generation)
                    .with_member_id(s(&self.member_id))
                    .with_protocol_type(Some(s("consumer")))
                    .with_protocol_name(Some(s("range")))
                    .with_assignments(assignments);
                Some((ApiKey::SyncGroup, 5, RequestKind::SyncGroup(req)))
            }
            State::Member { generation, partitions, last_heartbeat } => {
                if now - last_heartbeat >= 500 || partitions.is_empty() {
                    let req = HeartbeatRequest::default()
                        .with_group_id(group)
                        .with_generation_id(generation)
                        .with_member_id(s(&self.member_id));
                    return Some((ApiKey::Heartbeat, 4, RequestKind::Heartbeat(req)));
                }
                let p = partitions[rng.below(partitions.len() as u64) as usize];
                let offset = {
                    let mut c = self.counters.borrow_mut();
                    c[p as usize] += rng.between(1, 5);
                    c[p as usize]
                };
                self.committing = Some((p, offset));
                let req = OffsetCommitRequest::default()
                    .with_group_id(group)
                    .with_generation_id_or_member_epoch(generation)
                    .with_member_id(s(&self.member_id))
                    .with_topics(vec![OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(self.topic)))
                        .with_partitions(vec![OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(-1)])]);
                Some((ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(req)))
            }
        }
    }

    fn answer(&mut self, resp: ResponseKind, core: &ClusterCore, ck: &mut Checker, _rng: &mut Rng) {
        let now = core.clock.now_ms();
        match resp {
            ResponseKind::JoinGroup(r) => match r.error_code {
                codes::NONE => {
                    self.member_id = r.member_id.to_string();
                    let members = r.members.iter().map(|m| m.member_id.to_string()).collect();
                    let leader = r.leader.as_str() == self.member_id;
                    self.state = State::Sync { generation: r.generation_id, leader, members };
                }
                codes::MEMBER_ID_REQUIRED => self.member_id = r.member_id.to_string(),
                codes::UNKNOWN_MEMBER_ID => self.rejoin(true),
                _ => {}
            },
            ResponseKind::SyncGroup(r) => match (r.error_code, &self.state) {
                (codes::NONE, State::Sync { generation, .. }) => {
                    let partitions =
                        String::from_utf8_lossy(&r.assignment).split(',').filter_map(|p| p.parse().ok()).collect();
                    ck.count_work("group generations joined");
                    self.state = State::Member { generation: *generation, partitions, last_heartbeat: now };
                }
                (codes::UNKNOWN_MEMBER_ID, _) => self.rejoin(true),
                _ => self.rejoin(false),
            },
            ResponseKind::Heartbeat(r) => match (r.error_code, &mut self.state) {
                (codes::NONE, State::Member { last_heartbeat, .. }) => *last_heartbeat = now,
                (codes::UNKNOWN_MEMBER_ID, _) => self.rejoin(true),
                (codes::NONE, _) => {}
                _ => self.rejoin(false),
            },
            ResponseKind::OffsetCommit(r) => {
                let Some((p, offset)) = self.committing.take() else { return };
                let code = r.topics.iter().flat_map(|t| &t.partitions).map(|x| x.error_code).next().unwrap_or(-1);
                match code {
                    codes::NONE => {
                        ck.count_work("member commits acknowledged");
                        ck.committed(self.group, self.topic, p, offset);
                    }
                    codes::UNKNOWN_MEMBER_ID => self.rejoin(true),
                    _ => self.rejoin(false),
                }
            }
            _ => {}
        }
    }
}
