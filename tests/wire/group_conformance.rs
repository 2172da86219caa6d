//! Group-coordinator behaviours clients rely on, checked against Kafka's rules: the order of
//! the offset-commit checks and static membership (KIP-345).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use moldau_tests::{admin, client_config, init_logging, must_create_topic, must_start_cluster};
use rdkafka::admin::AdminOptions;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};

use crate::raw::connect;
use crate::raw_group::{commit, heartbeat, join, sync};

/// Runs an async helper from a plain test.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

const REBALANCE_IN_PROGRESS: i16 = 27;
const ILLEGAL_GENERATION: i16 = 22;
const FENCED_INSTANCE_ID: i16 = 82;

/// A commit from an old generation while the group completes a rebalance is refused with
/// ILLEGAL_GENERATION (Kafka checks member and generation before the group's state); one from
/// the current generation before the sync gets REBALANCE_IN_PROGRESS.
#[test]
fn should_refuse_a_commit_of_an_old_generation_with_illegal_generation_during_a_rebalance() {
    init_logging();
    let cluster = must_start_cluster(1);
    block_on(must_create_topic(cluster.bootstrap_servers(), "t", 1, 1));
    let (mut a, mut b) = (connect(&cluster), connect(&cluster));
    let first = join(&mut a, "g", "", None);
    assert_eq!(first.error_code, 0);
    let a_id = first.member_id.to_string();
    assert_eq!(sync(&mut a, "g", &a_id, None, first.generation_id, &[(&a_id, b"x")]).error_code, 0);
    assert_eq!(commit(&mut a, "g", &a_id, first.generation_id, "t", 1), 0, "a commit while stable");
    // B joins: the group prepares a rebalance; A learns of it by heartbeat and rejoins.
    let joiner = thread::spawn(move || join(&mut b, "g", "", None));
    let mut code = 0;
    for _ in 0..200 {
        code = heartbeat(&mut a, "g", &a_id, None, first.generation_id);
        if code == REBALANCE_IN_PROGRESS {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(code, REBALANCE_IN_PROGRESS, "B's join started a rebalance");
    let second = join(&mut a, "g", &a_id, None);
    assert_eq!(second.error_code, 0);
    assert_eq!(joiner.join().unwrap().error_code, 0);
    assert!(second.generation_id > first.generation_id);
    // Nobody synced yet: the group is completing the rebalance.
    assert_eq!(
        commit(&mut a, "g", &a_id, first.generation_id, "t", 2),
        ILLEGAL_GENERATION,
        "an old generation is refused as such, not as a rebalance in progress"
    );
    assert_eq!(
        commit(&mut a, "g", &a_id, second.generation_id, "t", 2),
        REBALANCE_IN_PROGRESS,
        "the current generation before its sync"
    );
    cluster.shutdown();
}

/// Counts the assignments a consumer receives (each rebalance that reaches it).
struct CountAssigns(Arc<AtomicUsize>);

impl ClientContext for CountAssigns {}

impl ConsumerContext for CountAssigns {
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

type Member = BaseConsumer<CountAssigns>;

const STATIC_TOPIC: &str = "static";
const SESSION_MS: u64 = 6000;

/// A static member (`group.instance.id` = `client.id` = `instance`) subscribed to the topic.
fn static_member(bootstrap: &str, group: &str, instance: &str) -> (Member, Arc<AtomicUsize>) {
    let assigns = Arc::new(AtomicUsize::new(0));
    let c: Member = client_config(bootstrap)
        .set("group.id", group)
        .set("group.instance.id", instance)
        .set("client.id", instance)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", SESSION_MS.to_string())
        .set("heartbeat.interval.ms", "200")
        .set("partition.assignment.strategy", "range")
        .create_with_context(CountAssigns(Arc::clone(&assigns)))
        .expect("consumer");
    c.subscribe(&[STATIC_TOPIC]).expect("subscribe");
    (c, assigns)
}

fn assigned(c: &Member) -> BTreeSet<i32> {
    c.assignment().map(|a| a.elements().iter().map(|e| e.partition()).collect()).unwrap_or_default()
}

/// Polls `members` for `d`.
fn poll_for(members: &[&Member], d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        for m in members {
            if let Some(Err(e)) = m.poll(Duration::from_millis(10)) {
                panic!("consumer error: {e}");
            }
        }
    }
}

/// Polls `members` until `done` holds; fails after `limit` naming `what`.
fn poll_until(members: &[&Member], limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < end, "timed out after {limit:?} waiting for: {what}");
        poll_for(members, Duration::from_millis(20));
    }
}

/// The group's members as (client id, member id), and its state.
fn group_members(c: &Member, group: &str) -> (String, BTreeMap<String, String>) {
    let list = c.fetch_group_list(Some(group), Duration::from_secs(10)).expect("describe group");
    let g = &list.groups()[0];
    (g.state().to_string(), g.members().iter().map(|m| (m.client_id().to_string(), m.id().to_string())).collect())
}

/// Starts static member "a" on a fresh group (so it is the group's leader), then "b", and
/// waits until they share the four partitions of a stable group.
fn two_static_members(bootstrap: &str, group: &str) -> ((Member, Arc<AtomicUsize>), (Member, Arc<AtomicUsize>)) {
    let a = static_member(bootstrap, group, "a");
    poll_until(&[&a.0], Duration::from_secs(60), "a has every partition", || assigned(&a.0).len() == 4);
    let b = static_member(bootstrap, group, "b");
    poll_until(&[&a.0, &b.0], Duration::from_secs(60), "a and b share the partitions", || {
        let (pa, pb) = (assigned(&a.0), assigned(&b.0));
        !pa.is_empty() && !pb.is_empty() && pa.len() + pb.len() == 4 && pa.is_disjoint(&pb)
    });
    poll_until(&[&a.0, &b.0], Duration::from_secs(30), "the group is stable", || {
        group_members(&a.0, group).0 == "Stable"
    });
    ((a.0, a.1), (b.0, b.1))
}

/// KIP-345: a static member that restarts (no LeaveGroup on close) and rejoins with its
/// `group.instance.id` gets its partitions back under a new member id, the other member sees
/// no rebalance (it is the group's leader that restarts, the case Kafka also answers without
/// one), and the old member id is fenced.
#[test]
fn should_give_a_restarted_static_member_its_partitions_back_without_a_rebalance() {
    init_logging();
    let cluster = must_start_cluster(1);
    let bootstrap = cluster.bootstrap_servers().to_string();
    block_on(must_create_topic(&bootstrap, STATIC_TOPIC, 4, 1));
    let ((a, _), (b, b_assigns)) = two_static_members(&bootstrap, "restart");
    poll_for(&[&a, &b], Duration::from_secs(1));
    let (a_parts, b_parts, b_before) = (assigned(&a), assigned(&b), b_assigns.load(Ordering::SeqCst));
    let (_, members) = group_members(&b, "restart");
    let old_a = members["a"].clone();
    drop(a);
    let (a2, a2_assigns) = static_member(&bootstrap, "restart", "a");
    poll_until(&[&a2, &b], Duration::from_secs(30), "the restarted member is assigned", || {
        a2_assigns.load(Ordering::SeqCst) > 0
    });
    poll_for(&[&a2, &b], Duration::from_secs(2));
    assert_eq!(assigned(&a2), a_parts, "the restarted member has its partitions back");
    assert_eq!(assigned(&b), b_parts, "the other member kept its partitions");
    assert_eq!(b_assigns.load(Ordering::SeqCst), b_before, "the other member saw no rebalance");
    let (state, members) = group_members(&b, "restart");
    assert_eq!(state, "Stable");
    assert_ne!(members["a"], old_a, "the restarted member has a new member id");
    let mut conn = connect(&cluster);
    assert_eq!(
        heartbeat(&mut conn, "restart", &old_a, Some("a"), 1),
        FENCED_INSTANCE_ID,
        "the old member id is fenced"
    );
    drop((a2, b));
    cluster.shutdown();
}

/// A static member that goes away without LeaveGroup keeps its partitions until its session
/// times out, then its partitions move; once the last member's session is over too, the
/// group is empty and can be deleted, within a few seconds of the timeout.
#[test]
fn should_expire_static_members_that_left_without_leave_group_on_their_session_timeout() {
    init_logging();
    let cluster = must_start_cluster(1);
    let bootstrap = cluster.bootstrap_servers().to_string();
    block_on(must_create_topic(&bootstrap, STATIC_TOPIC, 4, 1));
    let ((a, _), (b, _)) = two_static_members(&bootstrap, "expire");
    let a_parts = assigned(&a);
    drop(a);
    let gone = Instant::now();
    poll_until(&[&b], Duration::from_millis(SESSION_MS + 5000), "b takes over a's partitions", || {
        assigned(&b).len() == 4
    });
    let moved = gone.elapsed();
    assert!(
        moved >= Duration::from_millis(SESSION_MS - 1000),
        "a kept {a_parts:?} until its session ended ({moved:?})"
    );
    drop(b);
    let gone = Instant::now();
    let admin = admin(&bootstrap);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
    let delete = || block_on(admin.delete_groups(&["expire"], &opts)).expect("delete_groups request").remove(0);
    assert!(delete().is_err(), "b is still a member right after it went away (it sent no LeaveGroup)");
    let mut result = delete();
    while result.is_err() && gone.elapsed() < Duration::from_millis(SESSION_MS + 3000) {
        thread::sleep(Duration::from_millis(100));
        result = delete();
    }
    let waited = gone.elapsed();
    assert!(result.is_ok(), "the group is deletable within 3 s of b's session timeout: {result:?} after {waited:?}");
    assert!(waited >= Duration::from_millis(SESSION_MS - 1000), "b was kept until its session ended ({waited:?})");
    cluster.shutdown();
}

/// Both static members of a stable group go away at once without LeaveGroup (a fleet shut
/// down): the group stays non-empty until their sessions end and is deletable right after.
#[test]
fn should_empty_a_group_whose_static_members_all_left_without_leave_group_on_their_session_timeout() {
    init_logging();
    let cluster = must_start_cluster(3);
    let bootstrap = cluster.bootstrap_servers().to_string();
    block_on(must_create_topic(&bootstrap, STATIC_TOPIC, 4, 1));
    let ((a, _), (b, _)) = two_static_members(&bootstrap, "fleet");
    drop((a, b));
    let gone = Instant::now();
    let admin = admin(&bootstrap);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
    let delete = || block_on(admin.delete_groups(&["fleet"], &opts)).expect("delete_groups request").remove(0);
    assert!(delete().is_err(), "the members are kept right after they went away (no LeaveGroup)");
    let mut result = delete();
    while result.is_err() && gone.elapsed() < Duration::from_millis(SESSION_MS + 3000) {
        thread::sleep(Duration::from_millis(100));
        result = delete();
    }
    let waited = gone.elapsed();
    assert!(result.is_ok(), "the group is deletable within 3 s of the session timeout: {result:?} after {waited:?}");
    assert!(
        waited >= Duration::from_millis(SESSION_MS - 1000),
        "the members were kept until their sessions ended ({waited:?})"
    );
    cluster.shutdown();
}
