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

#[test]
fn librdkafka_producer_rides_through_a_broker_crash_without_losing_acknowledged_records() {
    use std::io::{BufRead, BufReader};
    let mut broker = Broker::start(2, &[]);
    let created = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["topic", "create", "--bootstrap", &broker.bootstrap(), "crash"])
        .args(["--partitions", "3"])
        .status()
        .expect("sluice topic create runs");
    assert!(created.success(), "creating the topic failed");
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
    let pid = child.id() as i32;
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(SCRIPT_TIMEOUT).is_err() {
            // SAFETY: signalling our own child, which is not reaped before
            // this thread is joined, so the pid cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
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
    // Disarm the watchdog before reaping, so it can never signal a reused pid.
    let _ = done_tx.send(());
    let _ = watchdog.join();
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("confluent_restart.py did not exit after closing its output");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(crashed, "the script never reported a third acknowledged");
    assert!(status.success(), "confluent_restart.py failed: {status}");
}
