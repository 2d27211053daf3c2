//! kafka-python against the Kafka listener of a real broker: keyed records
//! produced with acks=all and gzip come back unchanged to a consumer with a
//! manual assignment reading from the beginning
//! (`tests/kafka/python_roundtrip.py`), and KafkaAdminClient creates,
//! describes, grows and deletes a topic (`tests/kafka/python_admin.py`).
//! Each script's exit code is the verdict.
//! kafka-python must be installed (`pip install kafka-python`; CI installs
//! it); without it this test fails and says so.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{create_topic_cli, require_python_module, wait_bounded, Broker};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
const PARTITIONS: u32 = 3;
const RECORDS: u32 = 2_000;

/// Runs `tests/kafka/<script>` with `args` and asserts it succeeds in time.
fn run_script(script: &str, args: &[String]) {
    let path = format!("{}/tests/kafka/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .arg(&path)
        .args(args)
        .spawn()
        .expect("python3 runs");
    let status = wait_bounded(&mut child, script, SCRIPT_TIMEOUT);
    assert!(status.success(), "{script} failed: {status}");
}

#[test]
fn kafka_python_produces_and_consumes_with_manual_assignment() {
    require_python_module("kafka", "kafka-python");
    let broker = Broker::start(2, &[]);
    create_topic_cli(&broker, "py", PARTITIONS);
    let args = [
        broker.kafka_bootstrap(),
        "py".into(),
        PARTITIONS.to_string(),
        RECORDS.to_string(),
    ];
    run_script("python_roundtrip.py", &args);
}

#[test]
fn kafka_python_admin_creates_describes_grows_and_deletes_a_topic() {
    require_python_module("kafka", "kafka-python");
    let broker = Broker::start(2, &[]);
    let args = [broker.kafka_bootstrap(), "admin".into(), "2".into(), "5".into()];
    run_script("python_admin.py", &args);
}
