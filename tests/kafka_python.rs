//! kafka-python against the Kafka listener of a real broker: keyed records
//! produced with acks=all and gzip come back unchanged to a consumer with a
//! manual assignment reading from the beginning. The script is
//! `tests/kafka/python_roundtrip.py`; its exit code is the verdict.
//! kafka-python must be installed (`pip install kafka-python`; CI installs
//! it); without it this test fails and says so.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Broker;

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
const PARTITIONS: u32 = 3;
const RECORDS: u32 = 2_000;

#[test]
fn kafka_python_produces_and_consumes_with_manual_assignment() {
    let has_client = Command::new("python3")
        .args(["-c", "import kafka"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_client,
        "python3 with kafka-python is not installed: `pip install kafka-python` (CI installs it in .ci/run)"
    );
    let broker = Broker::start(2, &[]);
    let created = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["topic", "create", "--bootstrap", &broker.bootstrap(), "py"])
        .args(["--partitions", &PARTITIONS.to_string()])
        .status()
        .expect("sluice topic create runs");
    assert!(created.success(), "creating the topic failed");

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kafka/python_roundtrip.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(broker.kafka_bootstrap())
        .args(["py", &PARTITIONS.to_string(), &RECORDS.to_string()])
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
            panic!("the kafka-python script did not finish within {SCRIPT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "the kafka-python round trip failed: {status}");
}
