use super::*;
use crate::protocol::codes;

/// A coordinator without the initial rebalance delay (most tests are about what follows it).
fn coordinator() -> GroupCoordinator {
    let overrides = [("group.initial.rebalance.delay.ms".to_string(), "0".to_string())].into_iter().collect();
    GroupCoordinator::new(&BrokerConfig::from_overrides(overrides).unwrap())
}

/// Kafka's default `group.initial.rebalance.delay.ms` (3000): an empty group's first join
/// waits 3 s (capped by the rebalance timeout) for more members before completing.
#[test]
fn should_wait_the_initial_rebalance_delay_before_an_empty_groups_first_rebalance() {
    let mut gc = GroupCoordinator::new(&BrokerConfig::from_overrides(Default::default()).unwrap());
    let mut first = req("", None);
    first.require_known_member_id = false;
    let Pending::Later(mut rx) = gc.join(0, first) else { panic!("the join waits") };
    gc.tick(2_999);
    assert!(rx.try_recv().is_err(), "still waiting for more members at 2999 ms");
    gc.tick(3_000);
    assert_eq!(rx.try_recv().expect("joined at 3000 ms").generation, 1);
}

fn req(member: &str, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        group: "g".into(),
        member_id: member.into(),
        instance_id: instance.map(str::to_string),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        require_known_member_id: true,
    }
}

fn now<T: std::fmt::Debug>(p: Pending<T>) -> T {
    match p {
        Pending::Now(r) => r,
        Pending::Later(_) => panic!("expected an immediate answer"),
    }
}

fn later<T>(p: Pending<T>) -> oneshot::Receiver<T> {
    match p {
        Pending::Later(rx) => rx,
        Pending::Now(_) => panic!("expected a parked answer"),
    }
}

/// Joins a new member through MEMBER_ID_REQUIRED; returns its id and the parked response.
fn join_new(gc: &mut GroupCoordinator, t: i64) -> (String, oneshot::Receiver<JoinResult>) {
    let first = now(gc.join(t, req("", None)));
    assert_eq!(first.error, codes::MEMBER_ID_REQUIRED);
    let id = first.member_id;
    let rx = later(gc.join(t, req(&id, None)));
    (id, rx)
}

#[test]
fn should_elect_leader_and_distribute_assignment_when_a_single_member_joins() {
    let mut gc = coordinator();
    let (id, mut rx) = join_new(&mut gc, 0);
    let joined = rx.try_recv().expect("join completes at once with one member");
    assert_eq!((joined.error, joined.generation, joined.leader.as_str()), (codes::NONE, 1, id.as_str()));
    assert_eq!(joined.members.len(), 1);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    let mut sync = later(gc.sync(0, "g", &id, None, 1, (None, None), vec![(id.clone(), Bytes::from_static(b"a1"))]));
    assert_eq!(sync.try_recv().unwrap().assignment, Bytes::from_static(b"a1"));
    assert_eq!(gc.group("g").unwrap().state, GroupState::Stable);
    assert_eq!(gc.heartbeat(1, "g", &id, None, 1), codes::NONE);
    assert_eq!(gc.heartbeat(1, "g", &id, None, 0), codes::ILLEGAL_GENERATION);
    assert_eq!(gc.heartbeat(1, "g", "nobody", None, 1), codes::UNKNOWN_MEMBER_ID);
}

#[test]
fn should_rebalance_when_a_second_member_joins() {
    let mut gc = coordinator();
    let (a, mut rx) = join_new(&mut gc, 0);
    rx.try_recv().unwrap();
    later(gc.sync(0, "g", &a, None, 1, (None, None), vec![]));
    let (b, mut rx_b) = join_new(&mut gc, 1);
    assert!(rx_b.try_recv().is_err(), "b waits for a to rejoin");
    assert_eq!(gc.heartbeat(2, "g", &a, None, 1), codes::REBALANCE_IN_PROGRESS);
    let mut rx_a = later(gc.join(2, req(&a, None)));
    let ja = rx_a.try_recv().unwrap();
    let jb = rx_b.try_recv().unwrap();
    assert_eq!((ja.generation, jb.generation), (2, 2));
    assert_eq!(ja.leader, a, "the leader stays");
    assert_eq!((ja.members.len(), jb.members.len()), (2, 0));
    let mut sb = later(gc.sync(3, "g", &b, None, 2, (None, None), vec![]));
    assert!(sb.try_recv().is_err(), "followers wait for the leader's assignment");
    later(gc.sync(3, "g", &a, None, 2, (None, None), vec![(b.clone(), Bytes::from_static(b"for-b"))]));
    assert_eq!(sb.try_recv().unwrap().assignment, Bytes::from_static(b"for-b"));
}

#[test]
fn should_expire_a_member_whose_session_lapses() {
    let mut gc = coordinator();
    let (a, mut rx) = join_new(&mut gc, 0);
    rx.try_recv().unwrap();
    later(gc.sync(0, "g", &a, None, 1, (None, None), vec![]));
    gc.tick(9_000);
    assert_eq!(gc.group("g").unwrap().members.len(), 1);
    gc.tick(10_001);
    let g = gc.group("g").unwrap();
    assert!(g.members.is_empty());
    assert_eq!(g.state, GroupState::Empty);
}

#[test]
fn should_drop_members_that_do_not_rejoin_before_the_rebalance_timeout() {
    let mut gc = coordinator();
    let (a, mut rx) = join_new(&mut gc, 0);
    rx.try_recv().unwrap();
    later(gc.sync(0, "g", &a, None, 1, (None, None), vec![]));
    let (_b, mut rx_b) = join_new(&mut gc, 100);
    // a keeps heartbeating but never rejoins.
    for t in (1_000..30_000).step_by(1_000) {
        gc.heartbeat(t, "g", &a, None, 1);
        gc.tick(t);
    }
    assert!(rx_b.try_recv().is_err());
    gc.tick(30_200);
    let jb = rx_b.try_recv().expect("b's join completes after the rebalance timeout");
    assert_eq!(jb.error, codes::NONE);
    assert_eq!(gc.group("g").unwrap().members.len(), 1);
    assert_eq!(gc.heartbeat(30_300, "g", &a, None, 1), codes::UNKNOWN_MEMBER_ID);
}

#[test]
fn should_replace_a_static_member_and_fence_its_old_id() {
    let mut gc = coordinator();
    let mut rx = later(gc.join(0, req("", Some("instance-1"))));
    let first = rx.try_recv().unwrap();
    assert_eq!(first.error, codes::NONE, "static members get an id without MEMBER_ID_REQUIRED");
    later(gc.sync(
        0,
        "g",
        &first.member_id,
        Some("instance-1"),
        1,
        (None, None),
        vec![(first.member_id.clone(), Bytes::from_static(b"x"))],
    ));
    // The same instance restarts: it takes over without a new generation for the others.
    let p = gc.join(1, req("", Some("instance-1")));
    let second = match p {
        Pending::Now(r) => r,
        Pending::Later(mut rx) => rx.try_recv().unwrap(),
    };
    assert_eq!(second.error, codes::NONE);
    assert_ne!(second.member_id, first.member_id);
    assert_eq!(
        gc.heartbeat(2, "g", &first.member_id, Some("instance-1"), second.generation),
        codes::FENCED_INSTANCE_ID
    );
    assert_eq!(gc.leave(3, "g", "", Some("instance-1")), codes::NONE);
    assert!(gc.group("g").unwrap().members.is_empty());
}

#[test]
fn should_validate_commits_against_generation_and_membership() {
    let mut gc = coordinator();
    assert_eq!(gc.check_commit(0, "free", "", None, -1), CommitCheck::Accept, "simple commit to an unknown group");
    let (a, mut rx) = join_new(&mut gc, 0);
    rx.try_recv().unwrap();
    assert_eq!(gc.check_commit(0, "g", &a, None, 1), CommitCheck::Reject(codes::REBALANCE_IN_PROGRESS));
    assert_eq!(
        gc.check_commit(0, "g", &a, None, 0),
        CommitCheck::Reject(codes::ILLEGAL_GENERATION),
        "an old generation first"
    );
    later(gc.sync(0, "g", &a, None, 1, (None, None), vec![]));
    assert_eq!(gc.check_commit(0, "g", &a, None, 1), CommitCheck::Accept);
    assert_eq!(gc.check_commit(0, "g", &a, None, 7), CommitCheck::Reject(codes::ILLEGAL_GENERATION));
    assert_eq!(gc.check_commit(0, "g", "ghost", None, 1), CommitCheck::Reject(codes::UNKNOWN_MEMBER_ID));
    assert_eq!(
        gc.check_commit(0, "g", "", None, -1),
        CommitCheck::Reject(codes::UNKNOWN_MEMBER_ID),
        "no simple commits while members are active"
    );
    assert_eq!(gc.delete_group("g"), Err(codes::NON_EMPTY_GROUP));
    assert_eq!(gc.delete_group("nope"), Err(codes::GROUP_ID_NOT_FOUND));
}

#[test]
fn should_refuse_inconsistent_protocols_and_bad_session_timeouts() {
    let mut gc = coordinator();
    let (_a, _rx) = join_new(&mut gc, 0);
    let mut other = req("", None);
    other.protocols = vec![("sticky-only".into(), Bytes::new())];
    assert_eq!(now(gc.join(0, other)).error, codes::INCONSISTENT_GROUP_PROTOCOL);
    let mut short = req("", None);
    short.session_timeout_ms = 10;
    assert_eq!(now(gc.join(0, short)).error, codes::INVALID_SESSION_TIMEOUT);
}
