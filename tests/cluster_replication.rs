//! Replicated partitions on three `sluice serve` nodes on 127.0.0.1:
//! a topic created over the Kafka protocol with replication factor 3 and
//! min.insync.replicas 2 gets its replicas spread as Kafka spreads them;
//! Metadata on any node names every broker and each partition's leader,
//! replicas and ISR; acks=all production goes on while the leader of each
//! partition in turn is killed with SIGKILL, and every acknowledged
//! record is readable from the new leaders; each killed node restarts,
//! truncates what it alone had, catches up and rejoins the ISR; in the
//! end (after moving every leadership back to its preferred replica on
//! demand) the three replicas of every partition hold the same batches,
//! byte for byte.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{batches_on_disk, kafka_wire, start_cluster, until_agreed, Broker, Partitions};
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};

const WAIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "replicated";
const PARTITIONS: u32 = 3;

fn partitions(b: &Broker) -> Partitions {
    b.cluster_partitions(TOPIC)
}

/// Polls until the nodes in `up` agree on the partitions and `ok` holds.
fn until(nodes: &[Broker], up: &[usize], what: &str, ok: impl Fn(&Partitions) -> bool) -> Partitions {
    until_agreed(nodes, up, what, WAIT, partitions, ok)
}

fn all_in_sync(p: &Partitions) -> bool {
    common::all_in_sync(p, PARTITIONS as usize, 3)
}

fn produce(bootstrap: &str, lines: &[String], during: impl FnOnce()) {
    common::produce_keyed(bootstrap, TOPIC, lines, during);
}

/// Every record of the topic, read through the cluster.
fn consume(nodes: &[Broker], up: &[usize]) -> Vec<String> {
    let bootstrap = up.iter().map(|&i| nodes[i].bootstrap()).collect::<Vec<_>>().join(",");
    common::consume_all(&bootstrap, TOPIC)
}

fn create_topic(b: &Broker) {
    let code = kafka_wire::create_topic(
        b.kafka_addr(),
        TOPIC,
        PARTITIONS as i32,
        3,
        &[("min.insync.replicas", "2")],
    );
    assert_eq!(code, 0, "created");
    // Too many copies for three brokers: refused, as Kafka does.
    let code = kafka_wire::create_topic(b.kafka_addr(), "too-many-copies", 1, 4, &[]);
    assert_eq!(code, 38, "INVALID_REPLICATION_FACTOR");
}

#[test]
fn acks_all_survives_each_leader_kill_and_replicas_converge() {
    let mut nodes = start_cluster(
        3,
        2,
        &[
            "--broker-session-timeout-ms",
            "2500",
            "--replica-lag-time-max-ms",
            "3000",
            // Off: this test moves leaders back on demand.
            "--leader-imbalance-check-interval-ms",
            "0",
        ],
    )
    .nodes;
    let all = [0, 1, 2];
    // Every node registered before the topic is placed over them.
    let deadline = Instant::now() + WAIT;
    while nodes
        .iter()
        .any(|n| n.http_get("/cluster").matches(" live ").count() < 3)
    {
        assert!(Instant::now() < deadline, "three live brokers");
        std::thread::sleep(Duration::from_millis(100));
    }
    create_topic(&nodes[1]);
    let placed = until(&nodes, &all, "placed and in sync", all_in_sync);
    // Kafka's placement: preferred leaders on distinct brokers.
    let leaders: BTreeSet<u32> = placed.values().filter_map(|p| p.0).collect();
    assert_eq!(leaders.len(), 3, "leaders spread: {placed:?}");

    // Metadata over the Kafka protocol, from any node, names all three
    // brokers and each partition's leader, replicas and ISR.
    let mut s = kafka_wire::connect(nodes[2].kafka_addr());
    let md: MetadataResponse = kafka_wire::call(
        &mut s,
        ApiKey::Metadata,
        9,
        &MetadataRequest::default().with_topics(None),
    );
    let mut brokers: Vec<i32> = md.brokers.iter().map(|b| b.node_id.0).collect();
    brokers.sort_unstable();
    assert_eq!(brokers, vec![1, 2, 3]);
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == TOPIC))
        .expect("the topic");
    for p in &t.partitions {
        let (leader, _, replicas, isr) = &placed[&(p.partition_index as u32)];
        assert_eq!(p.leader_id.0, leader.map_or(-1, |l| l as i32));
        let r: Vec<u32> = p.replica_nodes.iter().map(|b| b.0 as u32).collect();
        assert_eq!(&r, replicas);
        let mut i: Vec<u32> = p.isr_nodes.iter().map(|b| b.0 as u32).collect();
        let mut want = isr.clone();
        i.sort_unstable();
        want.sort_unstable();
        assert_eq!(i, want);
    }

    // Kill the leader of each partition in turn while producing.
    let mut produced = Vec::new();
    for round in 0..PARTITIONS {
        let now = until(&nodes, &all, "in sync before a kill", all_in_sync);
        let victim = now[&round].0.expect("a leader") as usize - 1;
        let old_epoch = now[&round].1;
        let lines: Vec<String> = (0..600).map(|i| format!("r{round}-{i}")).collect();
        let rest: Vec<usize> = all.iter().copied().filter(|&i| i != victim).collect();
        let bootstrap = nodes.iter().map(Broker::bootstrap).collect::<Vec<_>>().join(",");
        produce(&bootstrap, &lines, || nodes[victim].kill9());
        produced.extend(lines);
        let moved = until(&nodes, &rest, "a new leader", |p| {
            p[&round].0.is_some_and(|l| l as usize - 1 != victim) && p[&round].1 > old_epoch
        });
        assert!(
            !moved[&round].3.contains(&(victim as u32 + 1)),
            "the dead node left the ISR"
        );
        let got: BTreeSet<String> = consume(&nodes, &rest).into_iter().collect();
        let lost: Vec<&String> = produced.iter().filter(|l| !got.contains(*l)).collect();
        assert!(
            lost.is_empty(),
            "acknowledged and lost after killing node {}: {lost:?}",
            victim + 1
        );
        nodes[victim].restart();
    }
    until(&nodes, &all, "everyone back in sync", all_in_sync);

    // A divergent tail: with both followers frozen, the leader of
    // partition 0 takes acks=1 records only it holds, and dies. The others
    // elect a new leader at a new epoch and go on; the old leader comes
    // back, learns from the new one where its epoch ended, truncates what
    // it alone had, and catches up.
    let now = until(&nodes, &all, "in sync before the divergence", all_in_sync);
    let old = now[&0].0.expect("a leader") as usize - 1;
    let followers: Vec<usize> = all.iter().copied().filter(|&i| i != old).collect();
    for &f in &followers {
        nodes[f].signal(libc::SIGSTOP);
    }
    // Fetches the followers had waiting at the leader are answered (empty)
    // within the fetch wait (500 ms): nothing new reaches them after this.
    // (Frozen for less than the session timeout, so nobody is fenced.)
    std::thread::sleep(Duration::from_millis(700));
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["produce", "--topic", TOPIC, "--acks", "1", "--key-separator", ","])
        .args(["--bootstrap", &nodes[old].bootstrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sluice produce runs");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        // Keys that land on partition 0 are not known here: write many.
        for i in 0..300 {
            writeln!(stdin, "{i},alone-{i}").expect("write");
        }
    }
    // acks=1 needs the leader alone; other partitions' leaders may be
    // frozen, so the producer is not waited for, only given time.
    let before = batches_on_disk(nodes[old].data_dir(), TOPIC, 0).len();
    let deadline = Instant::now() + WAIT;
    while batches_on_disk(nodes[old].data_dir(), TOPIC, 0).len() == before {
        assert!(Instant::now() < deadline, "the old leader appends alone");
        std::thread::sleep(Duration::from_millis(20));
    }
    nodes[old].kill9();
    let _ = child.kill();
    let _ = child.wait();
    for &f in &followers {
        nodes[f].signal(libc::SIGCONT);
    }
    until(&nodes, &followers, "a leader after the divergence", |p| {
        p[&0].0.is_some_and(|l| l as usize - 1 != old) && p[&0].1 > now[&0].1
    });
    let lines: Vec<String> = (0..300).map(|i| format!("after-{i}")).collect();
    let bootstrap = followers
        .iter()
        .map(|&i| nodes[i].bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    produce(&bootstrap, &lines, || {});
    produced.extend(lines);
    nodes[old].restart();
    until(&nodes, &all, "the old leader truncated and rejoined", all_in_sync);

    // Leadership has moved around; on demand it goes back to each
    // partition's preferred replica.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "cluster",
            "elect-leaders",
            "--metrics-addr",
            &nodes[2].metrics_addr().to_string(),
        ])
        .output()
        .expect("sluice cluster elect-leaders runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    until(&nodes, &all, "preferred leaders", |p| {
        all_in_sync(p) && p.values().all(|(l, _, r, _)| *l == r.first().copied())
    });
    let got: BTreeSet<String> = consume(&nodes, &all).into_iter().collect();
    assert!(produced.iter().all(|l| got.contains(l)), "every acknowledged record");

    // Quiet now: each leader reports its followers caught up (lag 0).
    let leaders = until(&nodes, &all, "still in sync", all_in_sync);
    for (p, (leader, ..)) in &leaders {
        let node = &nodes[leader.expect("a leader") as usize - 1];
        let deadline = Instant::now() + WAIT;
        loop {
            let text = node.http_get("/cluster");
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("replication {TOPIC}-{p} ")))
                .unwrap_or_default()
                .to_string();
            if line.matches(" lag 0 in-sync").count() == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "partition {p}: {line:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // Stop every node cleanly, and compare the replicas.
    for n in &mut nodes {
        assert_eq!(n.stop(), 0, "clean stop");
    }
    for p in 0..PARTITIONS {
        let logs: Vec<Vec<Vec<u8>>> = nodes.iter().map(|n| batches_on_disk(n.data_dir(), TOPIC, p)).collect();
        assert!(!logs[0].is_empty(), "partition {p} holds data");
        for (i, log) in logs.iter().enumerate().skip(1) {
            assert!(
                log == &logs[0],
                "partition {p}: node {} holds {} batches, node 1 holds {}",
                i + 1,
                log.len(),
                logs[0].len()
            );
        }
    }
}
