//! A cluster of three controller voters and a fourth node that is a
//! broker only (not in `--voters`), all `sluice serve` processes on
//! 127.0.0.1: the broker joins through the voters, learns the metadata
//! and the cluster id the quorum issued, records that id in its data
//! directory, takes replicas and leaderships like any broker, creates
//! topics through the controller, and after kill -9 its leaderships move
//! to the ISR with nothing acknowledged lost; restarted, it rejoins and
//! catches up by itself.
//!
//! And a node whose data directory belongs to another cluster (the
//! cluster was re-created at the same addresses) is refused by the voters
//! and stops with a clear message, its data untouched, while the new
//! cluster serves on.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse,
};

use common::{
    batches_on_disk, consume_all, free_ports, kafka_wire, produce_keyed, start_cluster_with, start_node, until_agreed,
    until_all_live, until_in_sync, wait_bounded, Broker, ClusterNodes, CLUSTER_FLAGS,
};

const WAIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "spread";
const PARTITIONS: usize = 8;

/// The cluster id `GET /cluster` names, and whether the node is a voter.
fn identity(b: &Broker) -> (String, String) {
    let text = b.http_get("/cluster");
    let mut lines = text.lines();
    let role = lines
        .next()
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or_default()
        .to_string();
    let id = lines
        .find_map(|l| l.strip_prefix("cluster "))
        .unwrap_or_default()
        .to_string();
    (id, role)
}

/// The cluster id the nodes in `up` agree on, once there is one.
fn cluster_id(nodes: &[Broker], up: &[usize], what: &str) -> String {
    until_agreed(nodes, up, what, WAIT, |b| identity(b).0, |id| id.len() == 36)
}

#[test]
fn a_broker_that_is_not_a_voter_joins_leads_and_fails_over() {
    let ClusterNodes { mut nodes, .. } = start_cluster_with(3, 1, 1, CLUSTER_FLAGS);
    until_all_live(&nodes, WAIT);
    let all: Vec<usize> = (0..4).collect();
    let id = cluster_id(&nodes, &all, "one cluster id");
    let roles: Vec<String> = nodes.iter().map(|b| identity(b).1).collect();
    assert_eq!(roles, ["voter", "voter", "voter", "broker"]);
    // Recorded in the broker's data directory (the body is TOML text).
    let recorded = std::fs::read(nodes[3].data_dir().join("meta/node")).expect("meta/node");
    assert!(
        String::from_utf8_lossy(&recorded).contains(&id),
        "the cluster id is recorded in node 4's data directory"
    );

    // Kafka clients see one cluster, whichever node they ask.
    for b in &nodes {
        let mut s = kafka_wire::connect(b.kafka_addr());
        let described: DescribeClusterResponse =
            kafka_wire::call(&mut s, ApiKey::DescribeCluster, 0, &DescribeClusterRequest::default());
        assert_eq!(described.cluster_id.as_str(), id);
        let mut ids: Vec<i32> = described.brokers.iter().map(|b| b.broker_id.0).collect();
        ids.sort_unstable();
        assert_eq!(ids, [1, 2, 3, 4]);
        let metadata: MetadataResponse = kafka_wire::call(&mut s, ApiKey::Metadata, 9, &MetadataRequest::default());
        assert_eq!(metadata.cluster_id.as_ref().map(|c| c.as_str()), Some(id.as_str()));
        assert_eq!(metadata.brokers.len(), 4);
    }

    // Created through node 4: forwarded to the controller, whose answer
    // comes back over a connection it opens to node 4.
    let code = kafka_wire::create_topic(
        nodes[3].kafka_addr(),
        TOPIC,
        PARTITIONS as i32,
        3,
        &[("min.insync.replicas", "2")],
    );
    assert_eq!(code, 0, "created through the broker that is not a voter");
    let parts = until_in_sync(&nodes, TOPIC, PARTITIONS, 3, "replicas in sync on four brokers");
    let led_by_4 = parts.values().filter(|(leader, ..)| *leader == Some(4)).count();
    let on_4 = parts
        .values()
        .filter(|(_, _, replicas, _)| replicas.contains(&4))
        .count();
    assert!(led_by_4 >= 1, "node 4 leads some partitions: {parts:?}");
    assert!(on_4 > led_by_4, "node 4 follows some partitions: {parts:?}");

    // acks=all through every node while node 4 is killed.
    let bootstrap = nodes.iter().map(Broker::bootstrap).collect::<Vec<_>>().join(",");
    let lines: Vec<String> = (0..2000).map(|i| format!("line-{i}")).collect();
    let mut dead = None;
    produce_keyed(&bootstrap, TOPIC, &lines, || {
        nodes[3].kill9();
        dead = Some(Instant::now());
    });
    let up: Vec<usize> = (0..3).collect();
    until_agreed(
        &nodes,
        &up,
        "node 4's leaderships moved",
        WAIT,
        |b| b.cluster_partitions(TOPIC),
        |p| {
            p.len() == PARTITIONS
                && p.values()
                    .all(|(leader, _, _, isr)| leader.is_some_and(|l| l != 4) && !isr.contains(&4))
        },
    );
    let survivors = up.iter().map(|&i| nodes[i].bootstrap()).collect::<Vec<_>>().join(",");
    let got: BTreeSet<String> = consume_all(&survivors, TOPIC).into_iter().collect();
    let missing: Vec<&String> = lines.iter().filter(|l| !got.contains(*l)).collect();
    assert!(missing.is_empty(), "acknowledged and lost: {} of them", missing.len());

    // Restarted, it rejoins as a broker and catches up.
    nodes[3].restart();
    until_in_sync(&nodes, TOPIC, PARTITIONS, 3, "node 4 rejoined every ISR");
    assert_eq!(identity(&nodes[3]), (id, "broker".to_string()));

    // Partitions added through node 4 (Kafka's CreatePartitions, through
    // the controller): placed on three brokers each, they take records.
    const GROWN: usize = 12;
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["topic", "add-partitions", "--bootstrap", &nodes[3].bootstrap(), TOPIC])
        .args(["--partitions", &GROWN.to_string()])
        .output()
        .expect("sluice topic add-partitions runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let grown = until_in_sync(&nodes, TOPIC, GROWN, 3, "the new partitions in sync");
    for (p, state) in &parts {
        assert_eq!(grown[p].2, state.2, "partition {p} kept its replicas");
    }
    let more: Vec<String> = (0..1200).map(|i| format!("more-{i}")).collect();
    produce_keyed(&bootstrap, TOPIC, &more, || {});
    let got: BTreeSet<String> = consume_all(&bootstrap, TOPIC).into_iter().collect();
    assert!(
        more.iter().chain(&lines).all(|l| got.contains(l)),
        "every record readable"
    );
    for p in PARTITIONS as u32..GROWN as u32 {
        let leader = grown[&p].0.expect("a leader") as usize - 1;
        assert!(
            !batches_on_disk(nodes[leader].data_dir(), TOPIC, p).is_empty(),
            "new partition {p} holds records on its leader"
        );
    }
}

#[test]
fn a_node_of_another_cluster_is_refused_and_stops() {
    // Cluster A: one voter and one broker.
    let ClusterNodes {
        mut nodes,
        cluster_ports,
        voters,
    } = start_cluster_with(1, 1, 1, CLUSTER_FLAGS);
    until_all_live(&nodes, WAIT);
    let all = [0, 1];
    let old = cluster_id(&nodes, &all, "cluster A's id");
    assert_eq!(nodes[1].stop(), 0, "clean stop");
    assert_eq!(nodes[0].stop(), 0, "clean stop");

    // The cluster is made again at the same addresses, from an empty
    // data directory: a new id.
    let fresh = start_node(1, cluster_ports[0], &voters, 1, CLUSTER_FLAGS);
    let new = cluster_id(std::slice::from_ref(&fresh), &[0], "the new cluster's id");
    assert_ne!(new, old);

    // Node 2 comes back on its old data directory: the voter refuses it,
    // it stops with a clear message, and its data is untouched.
    let meta = nodes[1].data_dir().join("meta/node");
    let before = std::fs::read(&meta).expect("recorded");
    let port = free_ports(4);
    let mut stray = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--shards", "1", "--node-id", "2"])
        .arg("--data-dir")
        .arg(nodes[1].data_dir())
        .args(["--cluster-addr", &format!("127.0.0.1:{}", cluster_ports[1])])
        .args(["--voters", &voters])
        .args(["--native-addr", &format!("127.0.0.1:{port}")])
        .args(["--shard-port-base", &(port + 1).to_string()])
        .args(["--metrics-addr", &format!("127.0.0.1:{}", port + 2)])
        .args(["--kafka-addr", &format!("127.0.0.1:{}", port + 3)])
        .args(CLUSTER_FLAGS)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluice runs");
    let status = wait_bounded(&mut stray, "a node of another cluster", WAIT);
    assert!(!status.success(), "a node of another cluster keeps running");
    let mut stderr = String::new();
    stray
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("stderr");
    assert!(
        stderr.contains("another cluster") && stderr.contains(&old) && stderr.contains(&new),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&meta).expect("still there"), before, "touched");
    // The new cluster never heard of node 2, and serves on.
    until_all_live(std::slice::from_ref(&fresh), WAIT);
    let text = fresh.http_get("/cluster");
    assert!(!text.contains("broker 2 "), "{text}");
    let code = kafka_wire::create_topic(fresh.kafka_addr(), "after", 1, 1, &[]);
    assert_eq!(code, 0, "the new cluster serves");
}
