//! Cooperative rebalancing: the word count's sub-topologies read one topic each, so its
//! instances rebalance incrementally. When a second instance joins, the first hands over only
//! the tasks that move and keeps the others open (no task of its is closed and reopened); when
//! the second leaves, the first takes its tasks back and opens only those. Throughout, the
//! counts stay exactly-once.

use std::collections::{BTreeMap, BTreeSet};

use moldau_engine::{KafkaStreams, ProcessingGuarantee, StreamsState, TaskId};
use moldau_tests::streams_util::{produce_strings, streams_config};

use crate::apps::{count_updates, start_word_count_cluster, wait_until, word_count};

const PARTITIONS: usize = 4;
/// Tasks of the word count: two sub-topologies × the partitions.
const TASKS: usize = 2 * PARTITIONS;

fn tasks(app: &KafkaStreams) -> BTreeSet<TaskId> {
    app.metrics().tasks.values().flatten().copied().collect()
}

#[test]
fn should_move_only_the_tasks_that_change_owner_when_instances_join_and_leave() {
    let (cluster, bootstrap) = start_word_count_cluster(1, PARTITIONS as i32);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = |dir: &std::path::Path| streams_config("coop", &bootstrap, dir, ProcessingGuarantee::ExactlyOnceV2);

    produce_strings(&bootstrap, "text", &[("a", "the cat sat", 1_000), ("b", "the dog sat", 1_001)]);
    let mut a = KafkaStreams::new(word_count(), config(dir_a.path())).unwrap();
    a.start().unwrap();
    assert_eq!(count_updates(&bootstrap, 6).values().map(Vec::len).sum::<usize>(), 6);
    let before = tasks(&a);
    assert_eq!(before.len(), TASKS, "{:?}", a.metrics());
    assert_eq!(a.metrics().tasks_created, TASKS as u64);

    // B joins: A gives up some tasks and keeps the rest open.
    let mut b = KafkaStreams::new(word_count(), config(dir_b.path())).unwrap();
    b.start().unwrap();
    wait_until("both instances own tasks", || {
        let (ta, tb) = (tasks(&a), tasks(&b));
        !ta.is_empty() && !tb.is_empty() && ta.len() + tb.len() == TASKS
    });
    let (kept, moved) = (tasks(&a), tasks(&b));
    assert!(kept.is_subset(&before), "A only lost tasks: {kept:?}");
    assert!(kept.is_disjoint(&moved), "no task on both: {kept:?} {moved:?}");
    let m = a.metrics();
    assert_eq!(m.tasks_created, TASKS as u64, "A closed and reopened none of the tasks it kept: {m:?}");

    produce_strings(&bootstrap, "text", &[("c", "the cat ran", 2_000), ("d", "dog and cat", 2_001)]);
    assert_eq!(count_updates(&bootstrap, 12).values().map(Vec::len).sum::<usize>(), 12);

    // B leaves: A takes B's tasks back and opens only those.
    b.close().unwrap();
    wait_until("A owns every task again", || tasks(&a).len() == TASKS);
    let m = a.metrics();
    assert_eq!(m.tasks_created, (TASKS + moved.len()) as u64, "A opened only the returned tasks: {m:?}");

    produce_strings(&bootstrap, "text", &[("e", "the end", 3_000), ("f", "cat", 3_001)]);
    let got = count_updates(&bootstrap, 15);
    assert_eq!(a.state(), StreamsState::Running, "{:?}", a.errors());
    a.close().unwrap();
    let expected: BTreeMap<String, Vec<u64>> = [
        ("and", vec![1]),
        ("cat", vec![1, 2, 3, 4]),
        ("dog", vec![1, 2]),
        ("end", vec![1]),
        ("ran", vec![1]),
        ("sat", vec![1, 2]),
        ("the", vec![1, 2, 3, 4]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(got, expected, "exactly-once through both rebalances");
    cluster.shutdown();
}

/// Interactive queries across instances: each instance advertises its `application.server`,
/// and `store_hosts` says which instance hosts each partition of a store, as the group has
/// them assigned.
#[test]
fn should_say_which_instance_hosts_each_partition_of_a_store() {
    let (cluster, bootstrap) = start_word_count_cluster(1, PARTITIONS as i32);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = |dir: &std::path::Path, server: &str| {
        streams_config("hosts", &bootstrap, dir, ProcessingGuarantee::AtLeastOnce).with_application_server(server)
    };
    let mut a = KafkaStreams::new(word_count(), config(dir_a.path(), "http://host-a:8088")).unwrap();
    a.start().unwrap();
    let mut b = KafkaStreams::new(word_count(), config(dir_b.path(), "http://host-b:8088")).unwrap();
    b.start().unwrap();
    let store_sub = (0..a.topology().subtopology_count())
        .find(|&s| a.topology().stores_of(s).iter().any(|st| st.name() == "counts"))
        .unwrap();
    let partitions_of = |app: &KafkaStreams| -> Vec<i32> {
        tasks(app).into_iter().filter(|t| t.subtopology == store_sub).map(|t| t.partition).collect()
    };
    let mut hosts = Vec::new();
    wait_until("the group is stable, both instances running tasks, and store_hosts saying where", || {
        let (pa, pb) = (partitions_of(&a), partitions_of(&b));
        if tasks(&a).is_empty() || tasks(&b).is_empty() || tasks(&a).len() + tasks(&b).len() != TASKS {
            return false;
        }
        // Asked of A: where each partition of the store runs, on A or on B.
        hosts = a.store_hosts("counts", std::time::Duration::from_secs(5)).unwrap();
        let mut seen: Vec<(Option<String>, Vec<i32>)> =
            hosts.iter().map(|h| (h.server.clone(), h.partitions.clone())).collect();
        seen.sort();
        let expected: Vec<(Option<String>, Vec<i32>)> =
            [(Some("http://host-a:8088".to_string()), pa), (Some("http://host-b:8088".to_string()), pb)]
                .into_iter()
                .filter(|(_, p)| !p.is_empty())
                .collect();
        seen == expected
    });
    let mut all: Vec<i32> = hosts.iter().flat_map(|h| h.partitions.clone()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..PARTITIONS as i32).collect::<Vec<_>>(), "every partition hosted once: {hosts:?}");
    let e = a.store_hosts("nope", std::time::Duration::from_secs(5)).unwrap_err();
    assert!(e.to_string().contains("no store named 'nope'"), "{e}");
    b.close().unwrap();
    a.close().unwrap();
    cluster.shutdown();
}
