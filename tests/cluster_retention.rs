//! A follower that was down while its leader's retention removed what it
//! lacks: its fetch is below the leader's log start, so it empties its log
//! and starts again at the leader's log start, catches up, rejoins the
//! ISR, and holds the same batches as the leader from there.

mod common;

use std::time::Duration;

use common::{batches_on_disk, kafka_wire, start_cluster, until_all_live, until_in_sync};

const WAIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "short";

/// Segment base offsets of the topic's partition 0 on a node's disk.
fn bases(data_dir: &std::path::Path) -> Vec<i64> {
    let mut b: Vec<i64> = std::fs::read_dir(data_dir.join(format!("{TOPIC}-0")))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    b.sort_unstable();
    b
}

#[test]
fn a_follower_behind_the_leaders_log_start_starts_again_there() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("sluice.toml");
    std::fs::write(&config, "retention_check_interval_ms = 100\n").expect("config");
    let config = config.to_str().expect("utf-8 path").to_string();
    let flags = [&["--config", config.as_str()], common::CLUSTER_FLAGS].concat();
    let mut nodes = start_cluster(3, 1, &flags).nodes;
    until_all_live(&nodes, WAIT);
    let configs = [("segment.bytes", "1048576"), ("retention.bytes", "1048576")];
    assert_eq!(
        kafka_wire::create_topic(nodes[0].kafka_addr(), TOPIC, 1, 3, &configs),
        0
    );
    let placed = until_in_sync(&nodes, TOPIC, 1, 3, "in sync");
    let leader = placed[&0].0.expect("a leader") as usize - 1;
    let follower = (leader + 1) % 3;
    // Its replica is open (in sync in the metadata may come first).
    let deadline = std::time::Instant::now() + WAIT;
    while bases(nodes[follower].data_dir()).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the follower opens its replica");
        std::thread::sleep(Duration::from_millis(50));
    }
    nodes[follower].kill9();

    // 6 MB while it is away: the leader keeps about the last 1-2 MiB.
    let bootstrap = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != follower)
        .map(|(_, n)| n.bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    let pad = "x".repeat(1000);
    common::produce_lines(&bootstrap, TOPIC, (0..6000).map(|i| format!("{i:06}{pad}")), WAIT);
    let deadline = std::time::Instant::now() + WAIT;
    while bases(nodes[leader].data_dir()).first().is_none_or(|&b| b == 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "the leader's retention removed its oldest segment"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let follower_end_before = bases(nodes[follower].data_dir());
    assert_eq!(follower_end_before.first(), Some(&0), "the follower still starts at 0");

    nodes[follower].restart();
    until_in_sync(&nodes, TOPIC, 1, 3, "the follower back in the ISR");
    for n in &mut nodes {
        assert_eq!(n.stop(), 0, "clean stop");
    }
    // The follower starts where the leader started when it came back;
    // the leader's retention may have moved on since: compare from the
    // later of the two starts.
    let (l, f) = (
        batches_on_disk(nodes[leader].data_dir(), TOPIC, 0),
        batches_on_disk(nodes[follower].data_dir(), TOPIC, 0),
    );
    let base = |b: &Vec<u8>| i64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
    assert!(
        bases(nodes[follower].data_dir())[0] > 0,
        "the follower no longer starts at 0"
    );
    let from = base(&l[0]).max(base(&f[0]));
    let l: Vec<&Vec<u8>> = l.iter().filter(|b| base(b) >= from).collect();
    let f: Vec<&Vec<u8>> = f.iter().filter(|b| base(b) >= from).collect();
    assert!(!l.is_empty(), "the leader holds data");
    assert!(l == f, "leader and follower differ: {} vs {} batches", l.len(), f.len());
}
