//! librdkafka (confluent-kafka for Python, `tests/kafka/confluent_cluster.py`)
//! against three `sluice serve` nodes: an idempotent acks=all producer
//! keeps every acknowledged record across the kill of a partition leader;
//! a consumer group commits, its coordinator's node is killed, and the
//! group resumes from the committed offsets on the new coordinator (the
//! offsets topic is replicated like any other). The script's exit code is
//! the verdict; confluent-kafka must be installed (CI installs it).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{require_python_module, start_cluster, until_all_live, wait_bounded};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);
const WAIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "rdk-cluster";

fn in_sync(nodes: &[common::Broker], what: &str) {
    common::until_in_sync(nodes, TOPIC, 3, 3, what);
}

#[test]
fn librdkafka_loses_nothing_across_a_leader_kill_and_the_group_resumes_after_its_coordinator_dies() {
    require_python_module("confluent_kafka", "confluent-kafka");
    let mut nodes = start_cluster(
        3,
        2,
        &[
            "--broker-session-timeout-ms",
            "2500",
            "--replica-lag-time-max-ms",
            "3000",
            "--min-insync-replicas",
            "2",
            "--group-initial-rebalance-delay-ms",
            "300",
        ],
    )
    .nodes;
    until_all_live(&nodes, WAIT);
    common::create_topic_cli(&nodes[0], TOPIC, 3);
    in_sync(&nodes, "placed");
    let bootstrap = nodes.iter().map(|n| n.kafka_bootstrap()).collect::<Vec<_>>().join(",");
    let script = format!("{}/tests/kafka/confluent_cluster.py", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .arg(&script)
        .args([bootstrap, TOPIC.into(), "3000".into(), "g-cluster".into()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    // The script bounds every wait itself; this only keeps a hung client
    // from hanging the suite.
    let watchdog = common::Watchdog::arm(&child, SCRIPT_TIMEOUT);
    let (mut leader_killed, mut coordinator_killed) = (None, false);
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("script output");
        eprintln!("confluent_cluster.py: {line}");
        if line == "HALF" && leader_killed.is_none() {
            let p = nodes[0].cluster_partitions(TOPIC);
            let victim = p[&0].0.expect("a leader") as usize - 1;
            nodes[victim].kill9();
            leader_killed = Some(victim);
        } else if line == "PRODUCED" {
            if let Some(victim) = leader_killed {
                nodes[victim].restart();
                in_sync(&nodes, "back in sync");
            }
        } else if let Some(id) = line.strip_prefix("COORDINATOR ") {
            let id: usize = id.parse().expect("a node id");
            assert!((1..=3).contains(&id), "coordinator {id}");
            nodes[id - 1].kill9();
            coordinator_killed = true;
            writeln!(stdin, "go").expect("script stdin");
        }
    }
    watchdog.disarm();
    let status = wait_bounded(&mut child, "confluent_cluster.py", SCRIPT_TIMEOUT);
    assert!(
        leader_killed.is_some(),
        "the script never reported a third acknowledged"
    );
    assert!(coordinator_killed, "the script never named the coordinator");
    assert!(status.success(), "confluent_cluster.py failed: {status}");
}
