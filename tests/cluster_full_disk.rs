//! A follower whose disk fills up (made real with RLIMIT_FSIZE on its
//! process: writes past the limit fail with EFBIG) stops taking the
//! leader's batches; the leader drops it from the ISR after
//! replica.lag.time.max.ms and acks=all production goes on with the
//! others. The full node stays up and registered: one replica out of the
//! ISR, not the cluster down.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{kafka_wire, start_cluster, until_agreed, until_all_live, until_in_sync};

const WAIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "filling";
/// Records of 1 KB produced: past the full follower's 40 MiB.
const RECORDS: usize = 48_000;

#[test]
fn a_follower_with_a_full_disk_leaves_the_isr_and_production_goes_on() {
    let flags = [common::CLUSTER_FLAGS, &["--replica-lag-time-max-ms", "2000"]].concat();
    let mut nodes = start_cluster(3, 1, &flags).nodes;
    until_all_live(&nodes, WAIT);
    // 64 MiB segments: a replica preallocates 32 MiB at open, and needs
    // more once that is written.
    let configs = [("segment.bytes", "67108864"), ("min.insync.replicas", "2")];
    assert_eq!(
        kafka_wire::create_topic(nodes[0].kafka_addr(), TOPIC, 1, 3, &configs),
        0
    );
    let placed = until_in_sync(&nodes, TOPIC, 1, 3, "placed");
    let leader = placed[&0].0.expect("a leader");
    let full = (1..=3u32).find(|&id| id != leader).expect("a follower");
    // Its files may not grow past 40 MiB from now on.
    let f = full as usize - 1;
    assert_eq!(nodes[f].stop(), 0, "clean stop");
    nodes[f].limit_file_bytes(40 << 20);
    nodes[f].restart();
    until_in_sync(&nodes, TOPIC, 1, 3, "back in sync before it fills");

    let bootstrap = nodes.iter().map(|n| n.bootstrap()).collect::<Vec<_>>().join(",");
    let pad = "x".repeat(1000);
    let lines = (0..RECORDS).map(|i| format!("{i:06}{pad}"));
    // acks=all waits for the full follower until it leaves the ISR.
    common::produce_lines(&bootstrap, TOPIC, lines, WAIT * 2);
    let all = [0, 1, 2];
    let after = until_agreed(
        &nodes,
        &all,
        "the full follower out of the ISR",
        WAIT,
        |b| b.cluster_partitions(TOPIC),
        |p| p[&0].0 == Some(leader) && p[&0].3.len() == 2 && !p[&0].3.contains(&full),
    );
    assert_eq!(after[&0].2.len(), 3, "still a replica");
    assert!(nodes[f].is_running(), "the full node stays up");
    let text = nodes[0].http_get("/cluster");
    assert!(
        text.lines().any(|l| l.starts_with(&format!("broker {full} live "))),
        "the full node stays registered and live:\n{text}"
    );
    // Every record is readable from the leader.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["consume", "--topic", TOPIC, "--bootstrap", &bootstrap])
        .output()
        .expect("sluice consume runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(lines >= RECORDS, "read {lines} of {RECORDS}");
}
