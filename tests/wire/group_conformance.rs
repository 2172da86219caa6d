//! Group-coordinator behaviours clients rely on, checked against Kafka's rules: the order of
//! the offset-commit checks and static membership (KIP-345).

use std::thread;

use moldau_tests::{init_logging, must_create_topic, must_start_cluster};

use crate::raw::connect;
use crate::raw_group::{commit, heartbeat, join, sync};

/// Runs an async helper from a plain test.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

const REBALANCE_IN_PROGRESS: i16 = 27;
const ILLEGAL_GENERATION: i16 = 22;

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
        thread::sleep(std::time::Duration::from_millis(10));
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
