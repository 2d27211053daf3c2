//! librdkafka (confluent-kafka for Python) against the Kafka listener of a
//! real broker (`tests/kafka/confluent_group.py`): keyed records with
//! acks=all and every compression codec are delivered; a consumer group of
//! three reads every one, with each partition owned by one member at a time
//! and offsets increasing per partition, committing as it goes; a new group
//! of three resumes exactly from the commits. The script's exit code is the
//! verdict. confluent-kafka must be installed (`pip install
//! confluent-kafka`; CI installs it); without it this test fails and says so.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Broker;

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);
const PARTITIONS: u32 = 6;

#[test]
fn librdkafka_codecs_group_of_three_and_resume_from_commits() {
    let has_client = Command::new("python3")
        .args(["-c", "import confluent_kafka"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_client,
        "python3 with confluent-kafka is not installed: `pip install confluent-kafka` (CI installs it in .ci/run)"
    );
    let broker = Broker::start(2, &["--group-initial-rebalance-delay-ms", "300"]);
    let created = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["topic", "create", "--bootstrap", &broker.bootstrap(), "rdk"])
        .args(["--partitions", &PARTITIONS.to_string()])
        .status()
        .expect("sluice topic create runs");
    assert!(created.success(), "creating the topic failed");
    let script = format!("{}/tests/kafka/confluent_group.py", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .arg(&script)
        .args([broker.kafka_bootstrap(), "rdk".into(), PARTITIONS.to_string()])
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
            panic!("confluent_group.py did not finish within {SCRIPT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "confluent_group.py failed: {status}");
}
