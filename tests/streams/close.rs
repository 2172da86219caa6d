//! A closing application leaves its group at once (LeaveGroup), so its partitions move to the
//! other instances without waiting for its session to time out.

use std::time::{Duration, Instant};

use moldau_dsl::state::{StringSerde, U64Serde};
use moldau_dsl::{Consumed, Produced, StreamsBuilder};
use moldau_engine::{KafkaStreams, ProcessingGuarantee};
use moldau_tests::streams_util::{produce, read_topic, streams_config};
use moldau_tests::{client_config, init_logging, must_create_topic, must_start_cluster};
use rdkafka::consumer::{BaseConsumer, Consumer};

/// Members of `group` the coordinator knows.
fn members(bootstrap: &str, group: &str) -> usize {
    let c: BaseConsumer = client_config(bootstrap).create().unwrap();
    let list = c.fetch_group_list(Some(group), Duration::from_secs(10)).unwrap();
    list.groups().first().map_or(0, |g| g.members().len())
}

#[test]
fn should_leave_the_group_when_closed_right_after_starting() {
    init_logging();
    let cluster = must_start_cluster(1);
    let bootstrap = cluster.bootstrap_servers().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(must_create_topic(&bootstrap, "close-in", 2, 1));
    rt.block_on(must_create_topic(&bootstrap, "close-out", 2, 1));
    let one = 1u64.to_be_bytes();
    produce(&bootstrap, "close-in", &[(Some(b"a"), Some(&one[..]), Some(10)), (Some(b"b"), Some(&one[..]), Some(11))]);
    // The race this checks (a close while the consumer's revoke is still being completed)
    // does not happen every time: close five freshly started instances.
    for round in 0..5 {
        let b = StreamsBuilder::new();
        b.stream_keyed("close-in", Consumed::with(StringSerde, U64Serde))
            .map_values(|n: u64| n + 1)
            .to("close-out", Produced::with(StringSerde, U64Serde));
        let dir = tempfile::tempdir().unwrap();
        let config = streams_config("close-app", &bootstrap, dir.path(), ProcessingGuarantee::ExactlyOnceV2);
        let mut app = KafkaStreams::new(b.build().unwrap(), config).unwrap();
        app.start().unwrap();
        // Running with its tasks: its output of the first round is there.
        read_topic(&bootstrap, "close-out", 2, Duration::from_secs(60), Duration::ZERO);
        let deadline = Instant::now() + Duration::from_secs(30);
        while app.metrics().tasks.values().all(Vec::is_empty) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(members(&bootstrap, "close-app"), 1, "round {round}: the instance is a member");
        app.close().unwrap();
        // The session timeout is 6 s: gone within 3 s means it left.
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut left = members(&bootstrap, "close-app");
        while left > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            left = members(&bootstrap, "close-app");
        }
        assert_eq!(left, 0, "round {round}: the closed instance left its group");
    }
    cluster.shutdown();
}
