//! kafka-python against the Kafka listener of a real broker: keyed records
//! produced with acks=all and gzip come back unchanged to a consumer with a
//! manual assignment reading from the beginning
//! (`tests/kafka/python_roundtrip.py`), and KafkaAdminClient creates,
//! describes, grows and deletes a topic (`tests/kafka/python_admin.py`).
//! Each script's exit code is the verdict.
//! kafka-python must be installed (`pip install kafka-python`; CI installs
//! it); without it this test fails and says so.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Broker;

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
const PARTITIONS: u32 = 3;
const RECORDS: u32 = 2_000;

/// Fails the test with a clear message when kafka-python is missing.
fn require_kafka_python() {
    let has_client = Command::new("python3")
        .args(["-c", "import kafka"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_client,
        "python3 with kafka-python is not installed: `pip install kafka-python` (CI installs it in .ci/run)"
    );
}

/// Runs `tests/kafka/<script>` with `args` and asserts it succeeds in time.
fn run_script(script: &str, args: &[String]) {
    let path = format!("{}/tests/kafka/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .arg(&path)
        .args(args)
        .spawn()
        .expect("python3 runs");
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{script} did not finish within {SCRIPT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{script} failed: {status}");
}

#[test]
fn kafka_python_produces_and_consumes_with_manual_assignment() {
    require_kafka_python();
    let broker = Broker::start(2, &[]);
    let created = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["topic", "create", "--bootstrap", &broker.bootstrap(), "py"])
        .args(["--partitions", &PARTITIONS.to_string()])
        .status()
        .expect("sluice topic create runs");
    assert!(created.success(), "creating the topic failed");
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
    require_kafka_python();
    let broker = Broker::start(2, &[]);
    let args = [broker.kafka_bootstrap(), "admin".into(), "2".into(), "5".into()];
    run_script("python_admin.py", &args);
}
