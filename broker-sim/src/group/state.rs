//! One consumer group: its members, generation and the rebalance state machine.
//!
//! States follow Kafka's classic protocol:
//! `Empty → PreparingRebalance → CompletingRebalance → Stable`, back to `PreparingRebalance`
//! whenever membership or subscriptions change, and `Dead` once deleted.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use tokio::sync::oneshot;

/// Group state (DescribeGroups reports these names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupState {
    /// No members.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Assignment distributed.
    Stable,
    /// Deleted.
    Dead,
}

impl GroupState {
    /// The name Kafka uses.
    pub(crate) fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// Whether moving to `next` is a legal transition.
    pub(crate) fn can_transition_to(self, next: GroupState) -> bool {
        use GroupState::*;
        matches!(
            (self, next),
            (Empty, PreparingRebalance)
                | (PreparingRebalance, CompletingRebalance | Empty)
                | (CompletingRebalance, PreparingRebalance | Stable)
                | (Stable, PreparingRebalance)
                | (_, Dead)
        )
    }
}

/// What a JoinGroup caller gets back.
#[derive(Debug, Clone, Default)]
pub(crate) struct JoinResult {
    /// Kafka error code.
    pub(crate) error: i16,
    /// Generation of the group.
    pub(crate) generation: i32,
    /// Protocol type (e.g. "consumer").
    pub(crate) protocol_type: Option<String>,
    /// Chosen assignor.
    pub(crate) protocol_name: Option<String>,
    /// Leader's member id.
    pub(crate) leader: String,
    /// The caller's member id.
    pub(crate) member_id: String,
    /// For the leader: every member with its subscription metadata.
    pub(crate) members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    /// An error answer.
    pub(crate) fn error(code: i16, member_id: &str) -> Self {
        JoinResult { error: code, generation: -1, member_id: member_id.to_string(), ..Default::default() }
    }
}

/// What a SyncGroup caller gets back.
#[derive(Debug, Clone, Default)]
pub(crate) struct SyncResult {
    /// Kafka error code.
    pub(crate) error: i16,
    /// Protocol type.
    pub(crate) protocol_type: Option<String>,
    /// Chosen assignor.
    pub(crate) protocol_name: Option<String>,
    /// The caller's assignment.
    pub(crate) assignment: Bytes,
}

impl SyncResult {
    /// A successful answer carrying the member's assignment.
    pub(crate) fn assigned(protocol_type: &Option<String>, protocol_name: &Option<String>, assignment: &Bytes) -> Self {
        SyncResult {
            error: 0,
            protocol_type: protocol_type.clone(),
            protocol_name: protocol_name.clone(),
            assignment: assignment.clone(),
        }
    }

    /// An error answer.
    pub(crate) fn error(code: i16) -> Self {
        SyncResult { error: code, ..Default::default() }
    }
}

/// One member of a group.
#[derive(Debug)]
pub(crate) struct Member {
    /// Member id.
    pub(crate) id: String,
    /// Static membership id.
    pub(crate) instance_id: Option<String>,
    /// Client id of the member's connection.
    pub(crate) client_id: String,
    /// Client host.
    pub(crate) client_host: String,
    /// Session timeout.
    pub(crate) session_timeout_ms: i32,
    /// Rebalance timeout.
    pub(crate) rebalance_timeout_ms: i32,
    /// Supported protocols in preference order, with metadata.
    pub(crate) protocols: Vec<(String, Bytes)>,
    /// Assignment from the last sync.
    pub(crate) assignment: Bytes,
    /// Waiting JoinGroup response.
    pub(crate) join_waiter: Option<oneshot::Sender<JoinResult>>,
    /// Waiting SyncGroup response.
    pub(crate) sync_waiter: Option<oneshot::Sender<SyncResult>>,
    /// Last time the member proved liveness (ms).
    pub(crate) last_seen_ms: i64,
}

impl Member {
    /// Metadata for `protocol`, if the member supports it.
    pub(crate) fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols.iter().find(|(n, _)| n == protocol).map(|(_, m)| m)
    }

    /// Whether the member is kept alive by a parked request.
    pub(crate) fn awaiting(&self) -> bool {
        self.join_waiter.is_some() || self.sync_waiter.is_some()
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    /// Next offset to consume.
    pub(crate) offset: i64,
    /// Leader epoch of the committed record, or -1.
    pub(crate) leader_epoch: i32,
    /// Client metadata string (round-trips exactly).
    pub(crate) metadata: String,
    /// Commit time (ms).
    pub(crate) commit_ms: i64,
}

/// One consumer group.
#[derive(Debug)]
pub(crate) struct Group {
    /// Group id.
    pub(crate) id: String,
    /// State.
    pub(crate) state: GroupState,
    /// Generation id.
    pub(crate) generation: i32,
    /// Protocol type, once a member joined.
    pub(crate) protocol_type: Option<String>,
    /// Chosen protocol of the current generation.
    pub(crate) protocol_name: Option<String>,
    /// Leader member id.
    pub(crate) leader: Option<String>,
    /// Members by id.
    pub(crate) members: BTreeMap<String, Member>,
    /// Static instance id → member id.
    pub(crate) instances: BTreeMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the time they expire.
    pub(crate) pending: BTreeMap<String, i64>,
    /// When the current rebalance gives up on members that did not rejoin.
    pub(crate) rebalance_deadline_ms: i64,
    /// The first rebalance of an empty group waits at least until then.
    pub(crate) initial_delay_until_ms: i64,
    /// Committed offsets by (topic, partition).
    pub(crate) offsets: BTreeMap<(String, i32), OffsetEntry>,
    /// When each committed offset (or its deletion) was written, in the coordinator's write
    /// order: a transactional commit completes only over offsets written before it.
    pub(crate) written: BTreeMap<(String, i32), u64>,
    /// Transactional offset commits waiting for their producer's marker, by producer id, with
    /// when each was written.
    pub(crate) pending_txn: BTreeMap<i64, PendingOffsets>,
}

/// One producer's transactional offset commits awaiting its marker: the offset and when it was
/// written, by (topic, partition).
pub(crate) type PendingOffsets = BTreeMap<(String, i32), (OffsetEntry, u64)>;

impl Group {
    /// A new empty group.
    pub(crate) fn new(id: &str) -> Self {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            instances: BTreeMap::new(),
            pending: BTreeMap::new(),
            rebalance_deadline_ms: 0,
            initial_delay_until_ms: 0,
            offsets: BTreeMap::new(),
            written: BTreeMap::new(),
            pending_txn: BTreeMap::new(),
        }
    }

    /// Moves to `next`, logging an illegal transition (a bug) instead of panicking.
    pub(crate) fn transition(&mut self, next: GroupState) {
        if !self.state.can_transition_to(next) && self.state != next {
            tracing::error!(group = %self.id, from = self.state.name(), to = next.name(), "illegal group state transition (bug)");
        }
        self.state = next;
    }

    /// Protocols every member supports.
    pub(crate) fn candidate_protocols(&self) -> BTreeSet<String> {
        let mut it = self.members.values();
        let Some(first) = it.next() else { return BTreeSet::new() };
        let mut set: BTreeSet<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in it {
            set.retain(|p| m.metadata(p).is_some());
        }
        set
    }

    /// Whether a joining member's protocols fit the group.
    pub(crate) fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidate_protocols();
        protocols.iter().any(|(n, _)| candidates.contains(n))
    }

    /// Picks the protocol by vote: each member votes for its most preferred candidate.
    pub(crate) fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                *votes.entry(n.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        // Ties go to the leader's (or first member's) preference order.
        let pref = self.leader.as_ref().and_then(|l| self.members.get(l)).or_else(|| self.members.values().next())?;
        pref.protocols.iter().map(|(n, _)| n.as_str()).find(|n| votes.get(n) == Some(&best)).map(str::to_string)
    }

    /// Whether every member has a parked JoinGroup.
    pub(crate) fn all_joined(&self) -> bool {
        self.members.values().all(|m| m.join_waiter.is_some())
    }

    /// Topics the members subscribe to (from consumer-protocol subscription metadata).
    pub(crate) fn subscribed_topics(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        if self.protocol_type.as_deref() != Some("consumer") {
            return out;
        }
        let Some(proto) = &self.protocol_name else { return out };
        for m in self.members.values() {
            if let Some(meta) = m.metadata(proto) {
                out.extend(subscription_topics(meta));
            }
        }
        out
    }
}

/// Parses the topic list at the head of a ConsumerProtocolSubscription (versions 0-3 share it:
/// `int16 version, array<string> topics, ...`), checking every length against the bytes left.
pub(crate) fn subscription_topics(meta: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(count) = meta.get(2..6).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]])) else {
        return out;
    };
    let mut pos = 6usize;
    for _ in 0..count.max(0) {
        let Some(len) = meta.get(pos..pos + 2).map(|b| i16::from_be_bytes([b[0], b[1]])) else { break };
        pos += 2;
        let Ok(len) = usize::try_from(len) else { break };
        let Some(name) = meta.get(pos..pos + len) else { break };
        out.push(String::from_utf8_lossy(name).into_owned());
        pos += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_parse_subscription_topics_and_stop_at_bad_lengths() {
        let mut meta = vec![0u8, 1, 0, 0, 0, 2, 0, 1, b'a', 0, 2, b'b', b'c'];
        assert_eq!(subscription_topics(&meta), vec!["a".to_string(), "bc".to_string()]);
        meta[5] = 200;
        assert_eq!(subscription_topics(&meta).len(), 2);
        assert!(subscription_topics(&[0, 1, 0x7f, 0xff, 0xff, 0xff, 0x7f, 0xff]).is_empty());
    }

    #[test]
    fn should_allow_only_kafka_transitions() {
        use GroupState::*;
        assert!(Empty.can_transition_to(PreparingRebalance));
        assert!(!Empty.can_transition_to(Stable));
        assert!(CompletingRebalance.can_transition_to(Stable));
        assert!(!Stable.can_transition_to(CompletingRebalance));
        assert!(Stable.can_transition_to(Dead));
    }
}
