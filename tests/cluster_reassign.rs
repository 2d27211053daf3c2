//! Reassignment on three nodes: a partition on two brokers is moved, with
//! `sluice partition reassign`, onto the third broker and one of the two,
//! while producing with acks=all. The new replica catches up from the
//! leader, then the leaving one (the leader) hands over and drops out:
//! replicas and ISR become the target, leadership moves into it, the
//! leaving node deletes its copy, every acknowledged record is there.
//! Then Kafka's AlterPartitionReassignments moves it back onto the node
//! that left while that node is down: ListPartitionReassignments shows it
//! in progress (adding that node, removing the other), and it completes
//! once the node returns; the two replicas hold the same batches. Before
//! that, the move is cancelled once (`sluice partition reassign --cancel`)
//! and goes back to the replicas from before it.

mod common;

use std::collections::BTreeSet;

use std::process::Command;
use std::time::{Duration, Instant};

use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use common::{batches_on_disk, kafka_wire, start_cluster, until_agreed, until_all_live, until_in_sync};

const WAIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "moving";

fn produce(bootstrap: &str, from: usize, to: usize) {
    common::produce_lines(bootstrap, TOPIC, (from..to).map(|i| format!("m{i}")), WAIT);
}

/// `sluice partition reassign` of partition 0 with `what` (`--replicas
/// 1,2` or `--cancel`), through the node at `metrics_addr`.
fn reassign(metrics_addr: std::net::SocketAddr, what: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["partition", "reassign", "--topic", TOPIC, "--partition", "0"])
        .args(what)
        .args(["--metrics-addr", &metrics_addr.to_string()])
        .output()
        .expect("sluice partition reassign runs")
}

/// Waits until the nodes in `up` agree that partition 0's replicas are
/// `replicas`, both in sync.
fn until_settled_on(nodes: &[common::Broker], up: &[usize], what: &str, replicas: &[u32]) {
    until_agreed(
        nodes,
        up,
        what,
        WAIT,
        |b| b.cluster_partitions(TOPIC),
        |p| p[&0].2 == replicas && p[&0].3.len() == replicas.len(),
    );
}

#[test]
fn a_partition_moves_to_another_broker_with_nothing_lost() {
    let mut nodes = start_cluster(3, 1, common::CLUSTER_FLAGS).nodes;
    until_all_live(&nodes, WAIT);
    assert_eq!(kafka_wire::create_topic(nodes[0].kafka_addr(), TOPIC, 1, 2, &[]), 0);
    let before = until_in_sync(&nodes, TOPIC, 1, 2, "placed");
    let (leader, _, replicas, _) = before[&0].clone();
    let leader = leader.expect("a leader");
    let stays = *replicas.iter().find(|&&r| r != leader).expect("a follower");
    let joins = (1..=3).find(|id| !replicas.contains(id)).expect("a third broker");
    let bootstrap = nodes.iter().map(|n| n.bootstrap()).collect::<Vec<_>>().join(",");
    produce(&bootstrap, 0, 2000);

    // Move off the leader onto the third broker, while producing.
    let out = reassign(nodes[2].metrics_addr(), &["--replicas", &format!("{joins},{stays}")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    produce(&bootstrap, 2000, 4000);
    let all = [0, 1, 2];
    let after = until_agreed(
        &nodes,
        &all,
        "the reassignment completes",
        WAIT,
        |b| b.cluster_partitions(TOPIC),
        |p| {
            let (l, _, r, i) = &p[&0];
            let mut isr = i.clone();
            isr.sort_unstable();
            let mut want = vec![joins, stays];
            want.sort_unstable();
            *r == vec![joins, stays] && isr == want && l.is_some_and(|l| l != leader)
        },
    );
    assert!(after[&0].1 > before[&0].1, "leadership moved at a new epoch");
    // The leaving node deletes its copy.
    let gone = nodes[leader as usize - 1].data_dir().join(format!("{TOPIC}-0"));
    let deadline = Instant::now() + WAIT;
    while gone.exists() {
        assert!(Instant::now() < deadline, "the old replica's files are removed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Everything acknowledged is there.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["consume", "--topic", TOPIC, "--bootstrap", &bootstrap])
        .output()
        .expect("sluice consume runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: BTreeSet<String> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(String::from)
        .collect();
    let missing: Vec<usize> = (0..4000).filter(|i| !got.contains(&format!("m{i}"))).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged records missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // A bad target is refused with a clear message.
    let out = reassign(nodes[0].metrics_addr(), &["--replicas", "1,1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("repeats a broker"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The Kafka APIs: move it back onto the node that left, while that
    // node is down, so the reassignment stays in progress and is listed;
    // it completes once the node returns and catches up.
    let back = leader as usize - 1;
    assert_eq!(nodes[back].stop(), 0, "clean stop");
    let mut s = kafka_wire::connect(nodes[stays as usize - 1].kafka_addr());
    let req = AlterPartitionReassignmentsRequest::default().with_topics(vec![ReassignableTopic::default()
        .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
        .with_partitions(vec![ReassignablePartition::default()
            .with_partition_index(0)
            .with_replicas(Some(vec![BrokerId(leader as i32), BrokerId(stays as i32)]))])]);
    let resp: AlterPartitionReassignmentsResponse =
        kafka_wire::call(&mut s, ApiKey::AlterPartitionReassignments, 0, &req);
    assert_eq!(resp.error_code, 0);
    assert_eq!(
        resp.responses[0].partitions[0].error_code, 0,
        "{:?}",
        resp.responses[0].partitions[0].error_message
    );
    let listed = |s: &mut std::net::TcpStream| -> Vec<(Vec<i32>, Vec<i32>, Vec<i32>)> {
        let req = ListPartitionReassignmentsRequest::default().with_topics(None);
        let resp: ListPartitionReassignmentsResponse = kafka_wire::call(s, ApiKey::ListPartitionReassignments, 0, &req);
        let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<i32>>();
        resp.topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| (ids(&p.replicas), ids(&p.adding_replicas), ids(&p.removing_replicas)))
            .collect()
    };
    let (l, st, jo) = (leader as i32, stays as i32, joins as i32);
    let until_listed = |s: &mut std::net::TcpStream| {
        let deadline = Instant::now() + WAIT;
        loop {
            let now = listed(s);
            if now == vec![(vec![l, st, jo], vec![l], vec![jo])] {
                break;
            }
            assert!(Instant::now() < deadline, "listed in progress: {now:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    until_listed(&mut s);

    // Cancelled with `sluice partition reassign --cancel`: back to the
    // replicas from before, in their order, and nothing in progress.
    let out = reassign(nodes[stays as usize - 1].metrics_addr(), &["--cancel"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let live: Vec<usize> = (0..3).filter(|&i| i != back).collect();
    until_settled_on(&nodes, &live, "cancelled", &[joins, stays]);
    assert!(listed(&mut s).is_empty(), "nothing in progress once cancelled");
    // Kafka's cancel (no replicas) with nothing in progress.
    let cancel = AlterPartitionReassignmentsRequest::default().with_topics(vec![ReassignableTopic::default()
        .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
        .with_partitions(vec![ReassignablePartition::default()
            .with_partition_index(0)
            .with_replicas(None)])]);
    let resp: AlterPartitionReassignmentsResponse =
        kafka_wire::call(&mut s, ApiKey::AlterPartitionReassignments, 0, &cancel);
    assert_eq!(
        resp.responses[0].partitions[0].error_code, 85,
        "NO_REASSIGNMENT_IN_PROGRESS"
    );
    // The same move again, to completion this time.
    let resp: AlterPartitionReassignmentsResponse =
        kafka_wire::call(&mut s, ApiKey::AlterPartitionReassignments, 0, &req);
    assert_eq!(resp.responses[0].partitions[0].error_code, 0);
    until_listed(&mut s);
    nodes[back].restart();
    let up: Vec<usize> = (0..3).collect();
    until_settled_on(&nodes, &up, "moved back", &[leader, stays]);
    assert!(listed(&mut s).is_empty(), "nothing in progress once done");

    for n in &mut nodes {
        assert_eq!(n.stop(), 0, "clean stop");
    }
    let a = batches_on_disk(nodes[leader as usize - 1].data_dir(), TOPIC, 0);
    let b = batches_on_disk(nodes[stays as usize - 1].data_dir(), TOPIC, 0);
    assert!(
        !a.is_empty() && a == b,
        "the two replicas differ: {} vs {} batches",
        a.len(),
        b.len()
    );
}
