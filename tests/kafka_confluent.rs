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
use std::time::Duration;

use common::{create_topic_cli, require_python_module, wait_bounded, Broker};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);
const PARTITIONS: u32 = 6;

#[test]
fn librdkafka_codecs_group_of_three_and_resume_from_commits() {
    require_python_module("confluent_kafka", "confluent-kafka");
    let broker = Broker::start(2, &["--group-initial-rebalance-delay-ms", "300"]);
    create_topic_cli(&broker, "rdk", PARTITIONS);
    let script = format!("{}/tests/kafka/confluent_group.py", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .arg(&script)
        .args([broker.kafka_bootstrap(), "rdk".into(), PARTITIONS.to_string()])
        .spawn()
        .expect("python3 runs");
    let status = wait_bounded(&mut child, "confluent_group.py", SCRIPT_TIMEOUT);
    assert!(status.success(), "confluent_group.py failed: {status}");
}

#[test]
fn librdkafka_producer_rides_through_a_broker_crash_without_losing_acknowledged_records() {
    use std::io::{BufRead, BufReader};
    require_python_module("confluent_kafka", "confluent-kafka");
    let mut broker = Broker::start(2, &[]);
    create_topic_cli(&broker, "crash", 3);
    let script = format!("{}/tests/kafka/confluent_restart.py", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .arg(&script)
        .args([broker.kafka_bootstrap(), "crash".into(), "3000".into()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let stdout = child.stdout.take().expect("piped stdout");
    // The script bounds every wait itself; this only keeps a hung client
    // from hanging the suite.
    let watchdog = common::Watchdog::arm(&child, SCRIPT_TIMEOUT);
    let mut crashed = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("script output");
        eprintln!("confluent_restart.py: {line}");
        if line == "HALF" && !crashed {
            broker.kill9();
            broker.restart();
            crashed = true;
        }
    }
    watchdog.disarm();
    let status = wait_bounded(&mut child, "confluent_restart.py", SCRIPT_TIMEOUT);
    assert!(crashed, "the script never reported a third acknowledged");
    assert!(status.success(), "confluent_restart.py failed: {status}");
}
