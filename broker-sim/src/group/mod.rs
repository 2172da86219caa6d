//! The group coordinator (classic consumer-group protocol): a state machine that takes `now`
//! and requests as arguments. Parked JoinGroup/SyncGroup responses are oneshot senders that it
//! completes when the rebalance advances, either on another request or on [`GroupCoordinator::tick`].

pub(crate) mod offsets;
pub(crate) mod state;
mod txn;

use crate::ids::Ids;
use std::collections::BTreeMap;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::cluster::Topic;
use crate::config::BrokerConfig;
use crate::error::Result;
use crate::protocol::codes;
pub(crate) use state::{Group, GroupState, JoinResult, Member, OffsetEntry, SyncResult};

/// A JoinGroup request, decoded.
#[derive(Debug, Clone)]
pub(crate) struct JoinRequest {
    /// Group id.
    pub(crate) group: String,
    /// Member id ("" for a new member).
    pub(crate) member_id: String,
    /// Static instance id.
    pub(crate) instance_id: Option<String>,
    /// Protocol type.
    pub(crate) protocol_type: String,
    /// Protocols with metadata.
    pub(crate) protocols: Vec<(String, Bytes)>,
    /// Session timeout.
    pub(crate) session_timeout_ms: i32,
    /// Rebalance timeout.
    pub(crate) rebalance_timeout_ms: i32,
    /// Client id.
    pub(crate) client_id: String,
    /// Client host.
    pub(crate) client_host: String,
    /// Whether the client understands MEMBER_ID_REQUIRED (JoinGroup v4+).
    pub(crate) require_known_member_id: bool,
}

/// Answer now or later.
#[derive(Debug)]
pub(crate) enum Pending<T> {
    /// Ready.
    Now(T),
    /// Parked until the rebalance advances.
    Later(oneshot::Receiver<T>),
}

/// Outcome of validating an OffsetCommit against the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitCheck {
    /// Accept the commit.
    Accept,
    /// Reject every partition with this code.
    Reject(i16),
}

/// The coordinator for every group of the cluster.
#[derive(Debug)]
pub(crate) struct GroupCoordinator {
    groups: BTreeMap<String, Group>,
    min_session_ms: i32,
    max_session_ms: i32,
    initial_delay_ms: i64,
    next_id: u64,
    offsets_partitions: i32,
    /// Offset commits written so far (plain and transactional): their write order.
    writes: u64,
    /// Where member ids get their unique part.
    ids: Ids,
}

impl GroupCoordinator {
    /// A coordinator with no groups.
    pub(crate) fn new(config: &BrokerConfig) -> Self {
        GroupCoordinator {
            groups: BTreeMap::new(),
            min_session_ms: config.group_min_session_timeout_ms,
            max_session_ms: config.group_max_session_timeout_ms,
            initial_delay_ms: config.group_initial_rebalance_delay_ms,
            next_id: 0,
            offsets_partitions: config.offsets_partitions.max(1),
            writes: 0,
            ids: Ids::random(),
        }
    }

    /// The same, with member ids from `ids`.
    pub(crate) fn with_ids(mut self, ids: Ids) -> Self {
        self.ids = ids;
        self
    }

    /// Rebuilds committed offsets from the offsets topic. Transactional offset commits stay
    /// pending until their producer's marker, as when they were written.
    pub(crate) fn load(&mut self, topic: &Topic) -> Result<()> {
        let mut n = 0usize;
        for p in &topic.partitions {
            let log = p.log.lock();
            for rec in log.read_all_records(log.log_start_offset())? {
                if rec.control {
                    let commit = rec.key.as_ref().is_some_and(|k| k.len() >= 4 && k[3] == 1);
                    self.complete_txn(rec.producer_id, commit, p.index);
                } else if let Some(r) = offsets::from_log_record(&rec) {
                    n += 1;
                    if rec.transactional {
                        self.add_pending_txn(rec.producer_id, r);
                    } else {
                        self.apply(r);
                    }
                }
            }
        }
        if n > 0 {
            tracing::info!(records = n, groups = self.groups.len(), "loaded committed offsets");
        }
        Ok(())
    }

    /// Applies one offset change to memory.
    pub(crate) fn apply(&mut self, r: offsets::OffsetRecord) {
        let key = (r.topic, r.partition);
        let at = self.next_write();
        match r.value {
            Some(v) => {
                let g = self.groups.entry(r.group.clone()).or_insert_with(|| Group::new(&r.group));
                g.written.insert(key.clone(), at);
                g.offsets.insert(key, v);
            }
            None => {
                if let Some(g) = self.groups.get_mut(&r.group) {
                    g.offsets.remove(&key);
                    g.written.insert(key, at);
                }
            }
        }
    }

    /// The write order of the next offset commit.
    pub(crate) fn next_write(&mut self) -> u64 {
        self.writes += 1;
        self.writes
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_id += 1;
        format!("{client_id}-{}-{}", self.next_id, self.ids.uuid().simple())
    }

    /// Looks up a group.
    pub(crate) fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
    }

    /// All groups.
    pub(crate) fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// JoinGroup.
    pub(crate) fn join(&mut self, now: i64, req: JoinRequest) -> Pending<JoinResult> {
        if req.group.is_empty() {
            return Pending::Now(JoinResult::error(codes::INVALID_GROUP_ID, &req.member_id));
        }
        if req.session_timeout_ms < self.min_session_ms || req.session_timeout_ms > self.max_session_ms {
            return Pending::Now(JoinResult::error(codes::INVALID_SESSION_TIMEOUT, &req.member_id));
        }
        let new_id = if req.member_id.is_empty() { Some(self.new_member_id(&req.client_id)) } else { None };
        let initial_delay = self.initial_delay_ms;
        let group = self.groups.entry(req.group.clone()).or_insert_with(|| Group::new(&req.group));
        if group.state == GroupState::Dead {
            return Pending::Now(JoinResult::error(codes::COORDINATOR_NOT_AVAILABLE, &req.member_id));
        }
        if !group.supports(&req.protocol_type, &req.protocols) {
            return Pending::Now(JoinResult::error(codes::INCONSISTENT_GROUP_PROTOCOL, &req.member_id));
        }
        let (tx, rx) = oneshot::channel();
        if let Some(new_id) = new_id {
            // A member without an id.
            if let Some(inst) = &req.instance_id {
                if let Some(old_id) = group.instances.get(inst).cloned() {
                    return replace_static_member(group, now, &old_id, new_id, req, tx, rx);
                }
                group.instances.insert(inst.clone(), new_id.clone());
            } else if req.require_known_member_id {
                group.pending.insert(new_id.clone(), now + i64::from(req.session_timeout_ms));
                return Pending::Now(JoinResult::error(codes::MEMBER_ID_REQUIRED, &new_id));
            }
            add_member(group, now, new_id, &req, tx, initial_delay);
            complete_join_if_ready(group, now);
            return Pending::Later(rx);
        }
        // A member with an id.
        let id = req.member_id.clone();
        if let Some(inst) = &req.instance_id {
            match group.instances.get(inst) {
                Some(known) if *known != id => {
                    return Pending::Now(JoinResult::error(codes::FENCED_INSTANCE_ID, &id));
                }
                _ => {}
            }
        }
        if group.pending.remove(&id).is_some() {
            add_member(group, now, id, &req, tx, initial_delay);
            complete_join_if_ready(group, now);
            return Pending::Later(rx);
        }
        let Some(member) = group.members.get_mut(&id) else {
            return Pending::Now(JoinResult::error(codes::UNKNOWN_MEMBER_ID, &id));
        };
        member.last_seen_ms = now;
        let same = member.protocols == req.protocols;
        member.protocols = req.protocols.clone();
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        let is_leader = group.leader.as_deref() == Some(id.as_str());
        match group.state {
            GroupState::CompletingRebalance | GroupState::Stable
                if same && !(is_leader && group.state == GroupState::Stable) =>
            {
                Pending::Now(current_join_result(group, &id))
            }
            _ => {
                if let Some(old) = group.members.get_mut(&id).and_then(|m| m.join_waiter.replace(tx)) {
                    let _ = old.send(JoinResult::error(codes::REBALANCE_IN_PROGRESS, &id));
                }
                rebalance(group, now);
                Pending::Later(rx)
            }
        }
    }

    /// SyncGroup.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sync(
        &mut self,
        now: i64,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol: (Option<&str>, Option<&str>),
        assignments: Vec<(String, Bytes)>,
    ) -> Pending<SyncResult> {
        let Some(group) = self.groups.get_mut(group_id) else {
            return Pending::Now(SyncResult::error(codes::UNKNOWN_MEMBER_ID));
        };
        if let Err(code) = check_member(group, member_id, instance_id) {
            return Pending::Now(SyncResult::error(code));
        }
        if generation != group.generation {
            return Pending::Now(SyncResult::error(codes::ILLEGAL_GENERATION));
        }
        let (ptype, pname) = protocol;
        if ptype.is_some_and(|t| Some(t) != group.protocol_type.as_deref())
            || pname.is_some_and(|n| Some(n) != group.protocol_name.as_deref())
        {
            return Pending::Now(SyncResult::error(codes::INCONSISTENT_GROUP_PROTOCOL));
        }
        match group.state {
            GroupState::Empty | GroupState::Dead => Pending::Now(SyncResult::error(codes::UNKNOWN_MEMBER_ID)),
            GroupState::PreparingRebalance => Pending::Now(SyncResult::error(codes::REBALANCE_IN_PROGRESS)),
            GroupState::Stable => {
                let m = &group.members[member_id];
                Pending::Now(SyncResult::assigned(&group.protocol_type, &group.protocol_name, &m.assignment))
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = group.members.get_mut(member_id) {
                    m.sync_waiter = Some(tx);
                    m.last_seen_ms = now;
                }
                if group.leader.as_deref() == Some(member_id) {
                    let mut given: BTreeMap<String, Bytes> = assignments.into_iter().collect();
                    for m in group.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    group.transition(GroupState::Stable);
                    let (ptype, pname) = (group.protocol_type.clone(), group.protocol_name.clone());
                    for m in group.members.values_mut() {
                        m.last_seen_ms = now;
                        if let Some(w) = m.sync_waiter.take() {
                            let _ = w.send(SyncResult::assigned(&ptype, &pname, &m.assignment));
                        }
                    }
                }
                Pending::Later(rx)
            }
        }
    }

    /// Heartbeat; returns the error code.
    pub(crate) fn heartbeat(
        &mut self,
        now: i64,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> i16 {
        let Some(group) = self.groups.get_mut(group_id) else { return codes::UNKNOWN_MEMBER_ID };
        if let Err(code) = check_member(group, member_id, instance_id) {
            return code;
        }
        if let Some(m) = group.members.get_mut(member_id) {
            m.last_seen_ms = now;
        }
        match group.state {
            GroupState::Empty | GroupState::Dead => codes::UNKNOWN_MEMBER_ID,
            GroupState::PreparingRebalance => codes::REBALANCE_IN_PROGRESS,
            _ if generation != group.generation => codes::ILLEGAL_GENERATION,
            _ => codes::NONE,
        }
    }

    /// LeaveGroup for one member (by id, or by instance id); returns its error code.
    pub(crate) fn leave(&mut self, now: i64, group_id: &str, member_id: &str, instance_id: Option<&str>) -> i16 {
        let Some(group) = self.groups.get_mut(group_id) else { return codes::UNKNOWN_MEMBER_ID };
        let id = match instance_id {
            Some(inst) => match group.instances.get(inst) {
                None => return codes::UNKNOWN_MEMBER_ID,
                Some(known) if !member_id.is_empty() && known != member_id => return codes::FENCED_INSTANCE_ID,
                Some(known) => known.clone(),
            },
            None => member_id.to_string(),
        };
        if group.pending.remove(&id).is_some() {
            return codes::NONE;
        }
        if !group.members.contains_key(&id) {
            return codes::UNKNOWN_MEMBER_ID;
        }
        remove_member(group, &id, codes::UNKNOWN_MEMBER_ID);
        tracing::debug!(group = %group_id, member = %id, "member left");
        rebalance(group, now);
        codes::NONE
    }

    /// Validates an OffsetCommit's member, generation and then the group's state, in Kafka's
    /// order (TxnOffsetCommit has its own check, without the state). Generation -1 with no member is a "simple" commit, allowed only when
    /// the group has no members.
    pub(crate) fn check_commit(
        &mut self,
        now: i64,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> CommitCheck {
        if group_id.is_empty() {
            return CommitCheck::Reject(codes::INVALID_GROUP_ID);
        }
        let Some(group) = self.groups.get_mut(group_id) else {
            return if generation < 0 { CommitCheck::Accept } else { CommitCheck::Reject(codes::ILLEGAL_GENERATION) };
        };
        if generation < 0 && member_id.is_empty() && group.members.is_empty() {
            return CommitCheck::Accept;
        }
        // Kafka's order: the member, then the generation, then the group's state (a member of
        // an old generation learns it must rejoin, not that a rebalance is under way).
        if let Err(code) = check_member(group, member_id, instance_id) {
            return CommitCheck::Reject(code);
        }
        if generation != group.generation {
            return CommitCheck::Reject(codes::ILLEGAL_GENERATION);
        }
        if group.state == GroupState::CompletingRebalance {
            return CommitCheck::Reject(codes::REBALANCE_IN_PROGRESS);
        }
        if let Some(m) = group.members.get_mut(member_id) {
            m.last_seen_ms = now;
        }
        CommitCheck::Accept
    }

    /// Forgets the group's offsets for a deleted topic.
    pub(crate) fn forget_topic(&mut self, topic: &str) {
        for g in self.groups.values_mut() {
            g.offsets.retain(|(t, _), _| t != topic);
        }
    }

    /// DeleteGroups for one group: returns the offsets to tombstone, or an error code.
    pub(crate) fn delete_group(&mut self, group_id: &str) -> std::result::Result<Vec<(String, i32)>, i16> {
        let Some(group) = self.groups.get(group_id) else { return Err(codes::GROUP_ID_NOT_FOUND) };
        if !group.members.is_empty() || group.state != GroupState::Empty {
            return Err(codes::NON_EMPTY_GROUP);
        }
        let group = self.groups.remove(group_id).expect("checked above");
        Ok(group.offsets.into_keys().collect())
    }

    /// Advances timers: expires members whose session lapsed and completes rebalances whose
    /// timeout or initial delay passed.
    pub(crate) fn tick(&mut self, now: i64) {
        for group in self.groups.values_mut() {
            group.pending.retain(|_, deadline| *deadline > now);
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|m| !m.awaiting() && now - m.last_seen_ms > i64::from(m.session_timeout_ms))
                .map(|m| m.id.clone())
                .collect();
            for id in expired {
                tracing::info!(group = %group.id, member = %id, "member session expired");
                remove_member(group, &id, codes::UNKNOWN_MEMBER_ID);
                if group.state != GroupState::PreparingRebalance {
                    prepare_rebalance(group, now, 0);
                }
            }
            if group.state == GroupState::CompletingRebalance {
                // The leader never synced: members that did not sync lapse by session above;
                // a leader that is gone means a new rebalance.
                if group.leader.as_ref().is_none_or(|l| !group.members.contains_key(l)) {
                    prepare_rebalance(group, now, 0);
                }
            }
            if group.state == GroupState::PreparingRebalance && now >= group.rebalance_deadline_ms {
                // Members that did not rejoin in time are dropped.
                let laggards: Vec<String> =
                    group.members.values().filter(|m| m.join_waiter.is_none()).map(|m| m.id.clone()).collect();
                for id in laggards {
                    tracing::info!(group = %group.id, member = %id, "member did not rejoin before the rebalance timeout");
                    remove_member(group, &id, codes::UNKNOWN_MEMBER_ID);
                }
            }
            complete_join_if_ready(group, now);
        }
    }
}

fn check_member(group: &Group, member_id: &str, instance_id: Option<&str>) -> std::result::Result<(), i16> {
    if let Some(inst) = instance_id {
        if let Some(known) = group.instances.get(inst) {
            if known != member_id {
                return Err(codes::FENCED_INSTANCE_ID);
            }
        }
    }
    if !group.members.contains_key(member_id) {
        return Err(codes::UNKNOWN_MEMBER_ID);
    }
    Ok(())
}

fn add_member(
    group: &mut Group,
    now: i64,
    id: String,
    req: &JoinRequest,
    tx: oneshot::Sender<JoinResult>,
    initial_delay: i64,
) {
    let member = Member {
        id: id.clone(),
        instance_id: req.instance_id.clone(),
        client_id: req.client_id.clone(),
        client_host: req.client_host.clone(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        protocols: req.protocols.clone(),
        assignment: Bytes::new(),
        join_waiter: Some(tx),
        sync_waiter: None,
        last_seen_ms: now,
    };
    if group.members.is_empty() {
        group.protocol_type = Some(req.protocol_type.clone());
    }
    group.members.insert(id, member);
    match group.state {
        GroupState::Empty => {
            prepare_rebalance(group, now, initial_delay);
        }
        GroupState::PreparingRebalance => {}
        _ => prepare_rebalance(group, now, 0),
    }
}

/// A static member rejoined without its member id: it takes over the old member's place.
fn replace_static_member(
    group: &mut Group,
    now: i64,
    old_id: &str,
    new_id: String,
    req: JoinRequest,
    tx: oneshot::Sender<JoinResult>,
    rx: oneshot::Receiver<JoinResult>,
) -> Pending<JoinResult> {
    let Some(mut member) = group.members.remove(old_id) else {
        // Mapping without a member: treat as new.
        add_member(group, now, new_id, &req, tx, 0);
        complete_join_if_ready(group, now);
        return Pending::Later(rx);
    };
    if let Some(w) = member.join_waiter.take() {
        let _ = w.send(JoinResult::error(codes::FENCED_INSTANCE_ID, old_id));
    }
    if let Some(w) = member.sync_waiter.take() {
        let _ = w.send(SyncResult::error(codes::FENCED_INSTANCE_ID));
    }
    member.id = new_id.clone();
    member.protocols = req.protocols.clone();
    member.last_seen_ms = now;
    member.session_timeout_ms = req.session_timeout_ms;
    member.rebalance_timeout_ms = req.rebalance_timeout_ms;
    let was_leader = group.leader.as_deref() == Some(old_id);
    if was_leader {
        group.leader = Some(new_id.clone());
    }
    if let Some(inst) = &req.instance_id {
        group.instances.insert(inst.clone(), new_id.clone());
    }
    group.members.insert(new_id.clone(), member);
    // Kafka's rule: a stable group whose chosen protocol stays the same answers at once with
    // the current generation, and no rebalance. A restarted leader is told the old leader id,
    // so it syncs as a follower and gets its stored assignment instead of assigning again.
    if group.state == GroupState::Stable && group.select_protocol() == group.protocol_name {
        let mut answer = current_join_result(group, &new_id);
        if was_leader {
            answer.leader = old_id.to_string();
            answer.members.clear();
        }
        tracing::debug!(group = %group.id, old = %old_id, new = %new_id, "static member rejoined without a rebalance");
        return Pending::Now(answer);
    }
    if let Some(m) = group.members.get_mut(&new_id) {
        m.join_waiter = Some(tx);
    }
    rebalance(group, now);
    Pending::Later(rx)
}

fn remove_member(group: &mut Group, id: &str, code: i16) {
    if let Some(mut m) = group.members.remove(id) {
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(JoinResult::error(code, id));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(SyncResult::error(code));
        }
        if let Some(inst) = &m.instance_id {
            if group.instances.get(inst).map(String::as_str) == Some(id) {
                group.instances.remove(inst);
            }
        }
    }
    if group.leader.as_deref() == Some(id) {
        group.leader = None;
    }
}

/// Starts a rebalance unless one is under way, then completes the join phase if it can.
fn rebalance(group: &mut Group, now: i64) {
    if group.state != GroupState::PreparingRebalance {
        prepare_rebalance(group, now, 0);
    }
    complete_join_if_ready(group, now);
}

fn prepare_rebalance(group: &mut Group, now: i64, initial_delay: i64) {
    if group.state == GroupState::CompletingRebalance {
        for m in group.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult::error(codes::REBALANCE_IN_PROGRESS));
            }
        }
    }
    let timeout = group.members.values().map(|m| i64::from(m.rebalance_timeout_ms)).max().unwrap_or(0);
    group.rebalance_deadline_ms = now + timeout;
    group.initial_delay_until_ms = now + initial_delay.min(timeout);
    group.transition(GroupState::PreparingRebalance);
}

fn complete_join_if_ready(group: &mut Group, now: i64) {
    if group.state != GroupState::PreparingRebalance {
        return;
    }
    if group.members.is_empty() {
        group.generation += 1;
        group.protocol_name = None;
        group.leader = None;
        group.transition(GroupState::Empty);
        return;
    }
    let delay_over = now >= group.initial_delay_until_ms;
    if !(group.all_joined() && delay_over) && now < group.rebalance_deadline_ms {
        return;
    }
    // Members that did not rejoin by now are removed.
    let laggards: Vec<String> =
        group.members.values().filter(|m| m.join_waiter.is_none()).map(|m| m.id.clone()).collect();
    for id in laggards {
        remove_member(group, &id, codes::UNKNOWN_MEMBER_ID);
    }
    if group.members.is_empty() {
        complete_join_if_ready(group, now);
        return;
    }
    group.generation += 1;
    group.protocol_name = group.select_protocol();
    if group.leader.as_ref().is_none_or(|l| !group.members.contains_key(l)) {
        group.leader = group.members.keys().next().cloned();
    }
    group.transition(GroupState::CompletingRebalance);
    tracing::debug!(group = %group.id, generation = group.generation, members = group.members.len(), "rebalance completed join phase");
    let ids: Vec<String> = group.members.keys().cloned().collect();
    for id in ids {
        let result = current_join_result(group, &id);
        if let Some(m) = group.members.get_mut(&id) {
            m.last_seen_ms = now;
            m.assignment = Bytes::new();
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(result);
            }
        }
    }
}

fn current_join_result(group: &Group, member_id: &str) -> JoinResult {
    let leader = group.leader.clone().unwrap_or_default();
    let protocol = group.protocol_name.clone().unwrap_or_default();
    let members = if leader == member_id {
        group
            .members
            .values()
            .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol).cloned().unwrap_or_default()))
            .collect()
    } else {
        Vec::new()
    };
    JoinResult {
        error: codes::NONE,
        generation: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        leader,
        member_id: member_id.to_string(),
        members,
    }
}

#[cfg(test)]
mod tests;
