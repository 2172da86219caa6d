//! Python clients against broker-sim: kafka-python 3 (pure Python, its own protocol code) and
//! confluent-kafka (librdkafka) run the scripts in `tests/wire/python/` against a fresh
//! 3-broker in-memory cluster.

use std::path::PathBuf;
use std::time::Duration;

use moldau_tests::{init_logging, must_start_cluster};
use tokio::process::Command;

use crate::tools::{describe, run, SETUP_HINT};

/// Safety net for one script run; the scripts take a few seconds.
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

/// Fails the test unless `python3` can import `check`'s modules (`check` exits non-zero
/// otherwise).
async fn require_python_modules(what: &str, check: &str) {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(check);
    let out = run(cmd, None, Duration::from_secs(60)).await;
    assert!(out.status.success(), "python3 cannot use {what}; {SETUP_HINT}\n{}", describe(&out));
}

/// Runs `tests/wire/python/<script> <bootstrap>` against a new 3-broker cluster and fails the
/// test, with the script's output, unless it exits 0.
async fn run_script_against_new_cluster(script: &str) {
    init_logging();
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "wire", "python", script].iter().collect();
    assert!(path.is_file(), "{} is missing", path.display());
    let cluster = must_start_cluster(3);
    let mut cmd = Command::new("python3");
    cmd.arg(&path).arg(cluster.bootstrap_servers()).env("PYTHONUNBUFFERED", "1");
    let out = run(cmd, None, SCRIPT_LIMIT).await;
    assert!(out.status.success(), "{script} failed against {}\n{}", cluster.bootstrap_servers(), describe(&out));
    print!("{}", String::from_utf8_lossy(&out.stdout));
    cluster.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_resume_from_committed_offsets_when_using_kafka_python() {
    require_python_modules(
        "kafka-python 3",
        "import sys, kafka; sys.exit(0 if kafka.__version__.split('.')[0] == '3' else \
         'kafka-python ' + kafka.__version__ + ' is installed, 3.x is needed')",
    )
    .await;
    run_script_against_new_cluster("kafka_python_conformance.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_round_trip_all_codecs_when_using_confluent_kafka() {
    require_python_modules("confluent-kafka", "import confluent_kafka").await;
    run_script_against_new_cluster("confluent_kafka_conformance.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_show_only_committed_records_to_read_committed_python_consumers() {
    require_python_modules("confluent-kafka and kafka-python", "import confluent_kafka, kafka").await;
    run_script_against_new_cluster("transactions.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_answer_every_authorized_operation_without_an_authorizer_to_confluent_kafka() {
    require_python_modules("confluent-kafka", "import confluent_kafka").await;
    run_script_against_new_cluster("authorized_operations.py").await;
}
