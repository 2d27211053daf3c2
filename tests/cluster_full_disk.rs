//! A disk that fills up, made real with RLIMIT_FSIZE on one node's
//! process (writes past the limit fail with EFBIG), in a three-node
//! cluster under acks=all production:
//! - on a follower: it stops taking the leader's batches, the leader
//!   drops it from the ISR after replica.lag.time.max.ms, and production
//!   goes on with the others;
//! - on the leader: its log fails, it hands the leadership to another
//!   in-sync replica and leaves the ISR, and the producer (which retries
//!   KAFKA_STORAGE_ERROR after a metadata refresh) goes on there.
//!
//! Either way the full node stays up and registered: one replica out of
//! the ISR, not the cluster down, and every record is readable.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{kafka_wire, start_cluster, until_agreed, until_all_live, until_in_sync, Broker};

const WAIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "filling";
/// Records of 1 KB produced: past the full node's 40 MiB.
const RECORDS: usize = 48_000;

/// Three nodes and the topic (RF 3, min.insync.replicas 2); returns the
/// nodes and the partition's leader.
fn cluster() -> (Vec<Broker>, u32) {
    let flags = [common::CLUSTER_FLAGS, &["--replica-lag-time-max-ms", "2000"]].concat();
    let nodes = start_cluster(3, 1, &flags).nodes;
    until_all_live(&nodes, WAIT);
    // 64 MiB segments: a replica preallocates 32 MiB at open, and needs
    // more once that is written.
    let configs = [("segment.bytes", "67108864"), ("min.insync.replicas", "2")];
    assert_eq!(
        kafka_wire::create_topic(nodes[0].kafka_addr(), TOPIC, 1, 3, &configs),
        0
    );
    let placed = until_in_sync(&nodes, TOPIC, 1, 3, "placed");
    (nodes, placed[&0].0.expect("a leader"))
}

/// Node `id`'s incarnation as every node's `GET /cluster` shows it.
fn incarnation(nodes: &[Broker], id: u32) -> Vec<Option<String>> {
    nodes
        .iter()
        .map(|b| {
            b.http_get("/cluster").lines().find_map(|l| {
                l.strip_prefix(&format!("broker {id} live "))
                    .and_then(|rest| rest.rsplit(' ').next())
                    .map(str::to_string)
            })
        })
        .collect()
}

/// Restarts node `id` with files that may not grow past 40 MiB, and
/// waits until its new registration is applied everywhere (which ends
/// its leaderships) and it is back in sync.
fn fill_up(nodes: &mut [Broker], id: u32) {
    let f = id as usize - 1;
    let before = incarnation(nodes, id);
    assert_eq!(nodes[f].stop(), 0, "clean stop");
    nodes[f].limit_file_bytes(40 << 20);
    nodes[f].restart();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let now = incarnation(nodes, id);
        if now.iter().all(|i| i.is_some() && *i != before[0]) && now.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "node {id} re-registered: {now:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    until_in_sync(nodes, TOPIC, 1, 3, "back in sync before it fills");
}

/// Produces every record with acks=all, then checks that `full` is out
/// of the ISR (led by `leader_ok`), up, registered, and that every record
/// is readable.
fn produce_and_check(nodes: &mut [Broker], full: u32, leader_ok: impl Fn(u32) -> bool) {
    let bootstrap = nodes.iter().map(|n| n.bootstrap()).collect::<Vec<_>>().join(",");
    let pad = "x".repeat(1000);
    let lines = (0..RECORDS).map(|i| format!("{i:06}{pad}"));
    common::produce_lines(&bootstrap, TOPIC, lines, WAIT * 2);
    let all = [0, 1, 2];
    let after = until_agreed(
        nodes,
        &all,
        "the full node out of the ISR",
        WAIT,
        |b| b.cluster_partitions(TOPIC),
        |p| p[&0].0.is_some_and(&leader_ok) && p[&0].3.len() == 2 && !p[&0].3.contains(&full),
    );
    assert_eq!(after[&0].2.len(), 3, "still a replica");
    assert!(nodes[full as usize - 1].is_running(), "the full node stays up");
    let text = nodes[0].http_get("/cluster");
    assert!(
        text.lines().any(|l| l.starts_with(&format!("broker {full} live "))),
        "the full node stays registered and live:\n{text}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["consume", "--topic", TOPIC, "--bootstrap", &bootstrap])
        .output()
        .expect("sluice consume runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: std::collections::BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l[..6.min(l.len())].to_string())
        .collect();
    assert_eq!(got.len(), RECORDS, "every record readable once or more");
}

#[test]
fn a_follower_with_a_full_disk_leaves_the_isr_and_production_goes_on() {
    let (mut nodes, leader) = cluster();
    let full = (1..=3u32).find(|&id| id != leader).expect("a follower");
    fill_up(&mut nodes, full);
    // acks=all waits for the full follower until it leaves the ISR.
    produce_and_check(&mut nodes, full, |l| l == leader);
}

#[test]
fn a_leader_with_a_full_disk_hands_over_and_production_goes_on() {
    let (mut nodes, leader) = cluster();
    fill_up(&mut nodes, leader);
    // Restarted, it lost the leadership; the preferred replica gets it
    // back on demand.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["cluster", "elect-leaders"])
        .args(["--metrics-addr", &nodes[0].metrics_addr().to_string()])
        .output()
        .expect("sluice cluster elect-leaders runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all = [0, 1, 2];
    until_agreed(
        &nodes,
        &all,
        "the full node leads again",
        WAIT,
        |b| b.cluster_partitions(TOPIC),
        |p| p[&0].0 == Some(leader) && p[&0].1 >= 2 && p[&0].3.len() == 3,
    );
    produce_and_check(&mut nodes, leader, |l| l != leader);
}
