//! Three `sluice serve` nodes in cluster mode on 127.0.0.1 (each a
//! controller voter): they form the controller quorum over their
//! inter-broker listeners and every broker registers through it; killing
//! the active controller (kill -9) elects another, which fences the dead
//! broker; restarted, it rejoins by itself with a new incarnation;
//! strangers on the inter-broker port are dropped; producer ids from any
//! node, before and after the failover, are unique across the cluster
//! (blocks handed out by the quorum, through the controller); and a
//! node started on another node's data directory refuses to start and
//! touches nothing; topics are created and deleted through the new
//! controller.
//! Read through `sluice cluster describe` on each node.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{kafka_wire, start_cluster, until_agreed, wait_bounded, Broker, ClusterNodes};
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse};

const SESSION_TIMEOUT_MS: &str = "1500";
const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
struct View {
    controller: Option<u32>,
    /// id -> (live, incarnation)
    brokers: BTreeMap<u32, (bool, u64)>,
}

/// What `sluice cluster describe` prints for node `b`.
fn view(b: &Broker) -> View {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["cluster", "describe", "--metrics-addr", &b.metrics_addr().to_string()])
        .output()
        .expect("sluice cluster describe runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().expect("a head line").split_whitespace().collect();
    // node N controller C term T applied A
    let controller = head.get(3).and_then(|c| c.parse().ok());
    let brokers = lines
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                ["broker", id, state, .., "incarnation", inc] => {
                    Some((id.parse().ok()?, (*state == "live", inc.parse().ok()?)))
                }
                _ => None,
            }
        })
        .collect();
    View { controller, brokers }
}

/// A producer id from `b`'s Kafka port (InitProducerId, idempotent).
fn producer_id(b: &Broker) -> i64 {
    let mut s = kafka_wire::connect(b.kafka_addr());
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let resp: InitProducerIdResponse = kafka_wire::call(&mut s, ApiKey::InitProducerId, 4, &req);
    assert_eq!(resp.error_code, 0, "InitProducerId on {}", b.kafka_addr());
    resp.producer_id.0
}

/// Ids from every node in `up`, twice each; all must be new.
fn ids_are_unique(nodes: &[Broker], up: &[usize], seen: &mut std::collections::BTreeSet<i64>) {
    for &i in up {
        for _ in 0..2 {
            let id = producer_id(&nodes[i]);
            assert!(
                id >= 0 && seen.insert(id),
                "producer id {id} from node {} handed out twice",
                i + 1
            );
        }
    }
}

/// Polls until every node in `up` reports the same view and `ok` holds.
fn until(nodes: &[Broker], up: &[usize], what: &str, ok: impl Fn(&View) -> bool) -> View {
    until_agreed(nodes, up, what, WAIT, view, ok)
}

#[test]
fn the_quorum_registers_brokers_fails_over_fences_and_readmits() {
    let ClusterNodes {
        mut nodes,
        cluster_ports,
        voters,
    } = start_cluster(3, 1, &["--broker-session-timeout-ms", SESSION_TIMEOUT_MS]);
    let all = [0, 1, 2];
    let first = until(&nodes, &all, "all three registered", |v| {
        v.controller.is_some() && v.brokers.len() == 3 && v.brokers.values().all(|(live, _)| *live)
    });
    assert!(first.controller.is_some());
    // Producer ids come in blocks from the quorum: unique cluster-wide.
    let mut ids = std::collections::BTreeSet::new();
    ids_are_unique(&nodes, &all, &mut ids);

    // Strangers on the inter-broker port: garbage, a node outside the
    // cluster, a frame far too large before saying who it is. Each is
    // dropped; the quorum carries on.
    for bytes in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        [&5u32.to_be_bytes()[..], &[1], &99u32.to_be_bytes()].concat(),
        [&(64u32 << 20).to_be_bytes()[..], &[2, 0, 0]].concat(),
    ] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", cluster_ports[0])).expect("cluster port");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        s.write_all(&bytes).expect("write");
        let mut buf = [0u8; 16];
        let closed = matches!(s.read(&mut buf), Ok(0) | Err(_));
        assert!(closed, "a stranger's connection stays open");
    }
    // Registered after the controller named the cluster: a node saying
    // it belongs to another cluster is answered with a refusal (kind 10),
    // then dropped. A node new to the cluster (no id yet) is welcome
    // (kind 9), but raft messages from a node that is not a voter close
    // the connection.
    let hello = |cluster: &[u8]| {
        let len = (1 + 4 + 1 + cluster.len()) as u32;
        [
            &len.to_be_bytes()[..],
            &[1],
            &99u32.to_be_bytes(),
            &[cluster.len() as u8],
            cluster,
        ]
        .concat()
    };
    let mut s = std::net::TcpStream::connect(("127.0.0.1", cluster_ports[0])).expect("cluster port");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.write_all(&hello(b"00000000-0000-4000-8000-000000000000"))
        .expect("write");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).expect("refused, then closed");
    assert_eq!(answer.get(4), Some(&10), "a refusal: {answer:?}");
    assert!(String::from_utf8_lossy(&answer).contains("another cluster") || answer.len() > 6);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", cluster_ports[0])).expect("cluster port");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.write_all(&hello(b"")).expect("write");
    let mut head = [0u8; 5];
    s.read_exact(&mut head).expect("a welcome");
    assert_eq!(head[4], 9, "welcome");
    let mut id = vec![0u8; u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize - 1];
    s.read_exact(&mut id).expect("the cluster id");
    assert_eq!(id.len(), 37, "the cluster's id: {id:?}");
    s.write_all(&[0, 0, 0, 2, 2, 0]).expect("write");
    let mut buf = [0u8; 16];
    assert!(
        matches!(s.read(&mut buf), Ok(0) | Err(_)),
        "raft from a node that is not a voter"
    );

    // A crowd of connections that never say who they are: they are capped
    // and closed after the hello timeout; the quorum carries on.
    let crowd: Vec<std::net::TcpStream> = (0..80)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", cluster_ports[0])).ok())
        .collect();
    for mut idle in crowd {
        idle.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut buf = [0u8; 16];
        let closed = matches!(idle.read(&mut buf), Ok(0) | Err(_));
        assert!(closed, "an idle stranger stays connected");
    }
    // (Which node leads may change on a loaded machine; the test follows
    // whichever leads now.)
    let before = until(&nodes, &all, "unaffected by strangers", |v| {
        v.controller.is_some() && v.brokers.len() == 3 && v.brokers.values().all(|(live, _)| *live)
    });
    let old = before.controller.expect("a controller");

    // kill -9 the active controller.
    let dead = old as usize - 1;
    nodes[dead].kill9();
    let rest: Vec<usize> = all.iter().copied().filter(|&i| i != dead).collect();
    let after = until(&nodes, &rest, "failover and fencing", |v| {
        v.controller.is_some_and(|c| c != old) && v.brokers.get(&old).is_some_and(|(live, _)| !live)
    });
    assert_eq!(after.brokers.len(), 3);
    ids_are_unique(&nodes, &rest, &mut ids);
    // Topic creation goes through the new controller: placed over the
    // live brokers only.
    let code = kafka_wire::create_topic(nodes[rest[0]].kafka_addr(), "after-failover", 2, 2, &[]);
    assert_eq!(code, 0, "created after the controller failed over");
    let placed = until_agreed(
        &nodes,
        &rest,
        "the new topic placed",
        WAIT,
        |b| b.cluster_partitions("after-failover"),
        |p| p.len() == 2 && p.values().all(|(l, _, r, _)| l.is_some() && r.len() == 2),
    );
    assert!(
        placed.values().all(|(_, _, r, _)| !r.contains(&old)),
        "no replica on the dead node: {placed:?}"
    );
    until_agreed(
        &nodes,
        &rest,
        "the replicas opened",
        WAIT,
        |b| b.data_dir().join("after-failover-0").exists(),
        |&on_disk| on_disk,
    );
    // Deleted through the quorum from another node: gone from every live
    // node's metadata and disk.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "topic",
            "delete",
            "after-failover",
            "--bootstrap",
            &nodes[rest[1]].bootstrap(),
        ])
        .output()
        .expect("sluice topic delete runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    until_agreed(
        &nodes,
        &rest,
        "the topic deleted",
        WAIT,
        |b| {
            (
                b.cluster_partitions("after-failover").len(),
                b.data_dir().join("after-failover-0").exists(),
            )
        },
        |&(n, on_disk)| n == 0 && !on_disk,
    );

    // Restarted, it rejoins by itself, as a new incarnation.
    nodes[dead].restart();
    let old_incarnation = before.brokers[&old].1;
    until(&nodes, &all, "readmitted", |v| {
        v.brokers.values().all(|(live, _)| *live) && v.brokers[&old].1 != old_incarnation
    });

    // One node's data directory started as another node: refused before
    // anything is opened or bound, and untouched.
    let victim = rest[0];
    assert_eq!(nodes[victim].stop(), 0, "clean stop");
    let wrong: usize = if victim == 2 { 1 } else { 3 };
    let wrong_id = wrong.to_string();
    let mut wrong = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--shards", "1", "--node-id", &wrong_id])
        .arg("--data-dir")
        .arg(&nodes[victim].data_dir)
        .args(["--cluster-addr", &format!("127.0.0.1:{}", cluster_ports[wrong - 1])])
        .args(["--voters", &voters])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluice runs");
    let status = wait_bounded(&mut wrong, "a mismatched start", WAIT);
    assert!(!status.success(), "a node started on another node's data");
    let mut stderr = String::new();
    wrong
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("stderr");
    assert!(stderr.contains("refusing to start"), "{stderr}");
    nodes[victim].restart();
    until(&nodes, &all, "the untouched node rejoins", |v| {
        v.brokers.len() == 3 && v.brokers.values().all(|(live, _)| *live)
    });
}
