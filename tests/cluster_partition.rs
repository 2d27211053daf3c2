//! A network partition between real nodes. Every inter-broker connection
//! goes through a fault-injecting TCP proxy in this test (loopback only):
//! one proxy in front of each node, which reads the hello every
//! inter-broker connection starts with to learn which node it comes from.
//! Isolating the leader of a partition cuts every connection to and from
//! it. The isolated leader cannot complete an acks=all write (its
//! followers cannot fetch); the majority fences it, elects a new leader at
//! a newer epoch and goes on serving. After healing, the old leader
//! follows the new one, truncates the write nobody acknowledged, and
//! there is one leader and one history; once in sync again, the preferred
//! replica gets its leadership back by itself (the controller's periodic
//! preferred-leader election).

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{all_in_sync, batches_on_disk, free_port, kafka_wire, until_agreed, until_all_live, Broker, Partitions};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

const WAIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "split";

/// What a proxy lets through.
#[derive(Default)]
struct Faults {
    /// Nothing reaches the node behind the proxy.
    isolated: AtomicBool,
    /// Connections from these nodes are cut.
    blocked: Mutex<HashSet<u32>>,
    /// Open connections (their source node, both sockets), so a cut takes
    /// effect before it returns: nothing passes after.
    open: Mutex<Vec<(u32, TcpStream, TcpStream)>>,
}

impl Faults {
    fn allows(&self, from: u32) -> bool {
        !self.isolated.load(Ordering::SeqCst) && !self.blocked.lock().expect("lock").contains(&from)
    }

    /// Closes the open connections the faults no longer allow.
    fn cut(&self) {
        for (src, a, b) in self.open.lock().expect("lock").iter() {
            if !self.allows(*src) {
                let _ = a.shutdown(Shutdown::Both);
                let _ = b.shutdown(Shutdown::Both);
            }
        }
    }

    fn isolate(&self) {
        self.isolated.store(true, Ordering::SeqCst);
        self.cut();
    }

    fn block(&self, from: u32) {
        self.blocked.lock().expect("lock").insert(from);
        self.cut();
    }

    fn heal(&self) {
        self.isolated.store(false, Ordering::SeqCst);
        self.blocked.lock().expect("lock").clear();
    }
}

/// A TCP proxy in front of one node's inter-broker listener. Its threads
/// end with the test process.
struct Proxy {
    port: u16,
    faults: Arc<Faults>,
}

fn pump(mut from: TcpStream, mut to: TcpStream, faults: Arc<Faults>, src: u32) {
    from.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if !faults.allows(src) {
            break;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            // Read before a cut, written after: dropped, as the cut says.
            Ok(_) if !faults.allows(src) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
        let port = listener.local_addr().expect("addr").port();
        let faults = Arc::new(Faults::default());
        let f = faults.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let f = f.clone();
                std::thread::spawn(move || {
                    // Every inter-broker connection opens with a hello:
                    // len u32 | kind u8 | node id u32 | cluster id.
                    let mut hello = [0u8; 9];
                    conn.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
                    if conn.read_exact(&mut hello).is_err() {
                        return;
                    }
                    let src = u32::from_be_bytes([hello[5], hello[6], hello[7], hello[8]]);
                    if !f.allows(src) {
                        return;
                    }
                    let Ok(mut up) = TcpStream::connect(upstream) else {
                        return;
                    };
                    if up.write_all(&hello).is_err() {
                        return;
                    }
                    // Registered, so that a cut shuts it before returning.
                    {
                        let mut open = f.open.lock().expect("lock");
                        if !f.allows(src) {
                            return;
                        }
                        open.push((src, conn.try_clone().expect("clone"), up.try_clone().expect("clone")));
                    }
                    let (c2, u2) = (conn.try_clone().expect("clone"), up.try_clone().expect("clone"));
                    let f2 = f.clone();
                    std::thread::spawn(move || pump(u2, c2, f2, src));
                    pump(conn, up, f, src);
                });
            }
        });
        Proxy { port, faults }
    }
}

fn partitions(b: &Broker) -> Partitions {
    b.cluster_partitions(TOPIC)
}

/// A Produce v7 request (acks=all) of one record `value` to partition 0.
fn produce_request(value: &'static str, timeout_ms: i32) -> ProduceRequest {
    let mut b = sluice::record::BatchBuilder::new(sluice::record::Compression::None);
    b.push(0, None, Some(value.as_bytes()), &[]);
    let batch = b.finish().expect("a batch").freeze();
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])])
}

/// Sends a produce and returns the stream to read its answer from later.
fn send_produce(addr: SocketAddr, value: &'static str, timeout_ms: i32) -> TcpStream {
    let mut s = kafka_wire::connect(addr);
    let mut frame = kafka_wire::header_frame(ApiKey::Produce, 7);
    kafka_protocol::protocol::Encodable::encode(&produce_request(value, timeout_ms), &mut frame, 7).expect("encode");
    s.write_all(&kafka_wire::seal(frame)).expect("send");
    s
}

fn produce_answer(s: &mut TcpStream) -> i16 {
    let mut body = kafka_wire::read_answer(s, ApiKey::Produce, 7);
    let resp: ProduceResponse = kafka_protocol::protocol::Decodable::decode(&mut body, 7).expect("decode");
    resp.responses[0].partition_responses[0].error_code
}

/// Produces `value` with acks=all to `addr`, retrying while the node has
/// not yet taken up the leadership the metadata gives it
/// (NOT_LEADER_OR_FOLLOWER), as a client does. Returns the final code.
fn produce_retrying(addr: SocketAddr, value: &'static str) -> i16 {
    let deadline = Instant::now() + WAIT;
    loop {
        let code = produce_answer(&mut send_produce(addr, value, 30_000));
        if code != 6 || Instant::now() > deadline {
            return code;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every value of partition 0, read from `b` over the Kafka protocol.
fn values(b: &Broker) -> Vec<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["consume", "--topic", TOPIC, "--bootstrap", &b.bootstrap()])
        .output()
        .expect("sluice consume runs");
    assert!(
        out.status.success(),
        "consume: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn an_isolated_leader_cannot_acknowledge_and_the_majority_goes_on() {
    let listen: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let proxies: Vec<Proxy> = listen
        .iter()
        .map(|&p| Proxy::start(SocketAddr::from(([127, 0, 0, 1], p))))
        .collect();
    let voters = (1..=3)
        .map(|i| format!("{i}@127.0.0.1:{}", proxies[i - 1].port))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes: Vec<Broker> = (1..=3)
        .map(|i| {
            let id = i.to_string();
            let addr = format!("127.0.0.1:{}", listen[i - 1]);
            let advertised = format!("127.0.0.1:{}", proxies[i - 1].port);
            Broker::start(
                1,
                &[
                    "--node-id",
                    &id,
                    "--cluster-addr",
                    &addr,
                    "--cluster-advertised-addr",
                    &advertised,
                    "--voters",
                    &voters,
                    "--broker-session-timeout-ms",
                    "2000",
                    "--replica-lag-time-max-ms",
                    "2000",
                    "--leader-imbalance-check-interval-ms",
                    "1000",
                ],
            )
        })
        .collect();
    let all = [0, 1, 2];
    until_all_live(&nodes, WAIT);
    assert_eq!(
        kafka_wire::create_topic(nodes[0].kafka_addr(), TOPIC, 1, 3, &[("min.insync.replicas", "2")]),
        0
    );
    let before = until_agreed(&nodes, &all, "in sync", WAIT, partitions, |p| all_in_sync(p, 1, 3));
    let old = before[&0].0.expect("a leader") as usize - 1;
    let majority: Vec<usize> = all.iter().copied().filter(|&i| i != old).collect();
    assert_eq!(
        produce_retrying(nodes[old].kafka_addr(), "before"),
        0,
        "acks=all with everyone connected"
    );

    // Isolate the leader: nothing in, nothing out.
    proxies[old].faults.isolate();
    for &i in &majority {
        proxies[i].faults.block(old as u32 + 1);
    }
    // Its acks=all write waits for followers that cannot fetch.
    let mut pending = send_produce(nodes[old].kafka_addr(), "isolated", 60_000);
    // The majority fences it and elects a new leader at a newer epoch ...
    let after = until_agreed(
        &nodes,
        &majority,
        "a new leader on the majority side",
        WAIT,
        partitions,
        |p| p[&0].0.is_some_and(|l| l as usize - 1 != old) && p[&0].1 > before[&0].1,
    );
    let new = after[&0].0.expect("a leader") as usize - 1;
    // ... which serves acks=all (min.insync.replicas 2: the two of them).
    assert_eq!(
        produce_retrying(nodes[new].kafka_addr(), "majority"),
        0,
        "the majority side acknowledges"
    );

    // Heal.
    for p in &proxies {
        p.faults.heal();
    }
    // The isolated write was never acknowledged: the old leader learns it
    // is deposed and answers it with an error.
    let code = produce_answer(&mut pending);
    assert!(
        code == 6 || code == 7,
        "the isolated leader's acks=all write is refused (NOT_LEADER_OR_FOLLOWER or REQUEST_TIMED_OUT), not {code}"
    );
    // Once back in sync, the preferred replica (the first, which led at
    // the start) gets its leadership back by itself, at a newer epoch.
    let healed = until_agreed(
        &nodes,
        &all,
        "the preferred leader back, all in sync",
        WAIT,
        partitions,
        |p| all_in_sync(p, 1, 3) && p[&0].0 == p[&0].2.first().copied() && p[&0].1 > after[&0].1,
    );
    assert_eq!(healed[&0].0, before[&0].0, "the preferred replica led at the start");
    // One history: what was acknowledged, and not the isolated write.
    let leader = healed[&0].0.expect("a leader") as usize - 1;
    let v = values(&nodes[leader]);
    assert_eq!(
        v,
        vec!["before".to_string(), "majority".to_string()],
        "the log after healing"
    );
    // The old leader truncated its divergent record: stopped, all three
    // replicas hold the same batches.
    for n in &mut nodes {
        assert_eq!(n.stop(), 0, "clean stop");
    }
    let logs: Vec<Vec<Vec<u8>>> = nodes.iter().map(|n| batches_on_disk(n.data_dir(), TOPIC, 0)).collect();
    assert_eq!(logs[0].len(), 2, "two batches: before, majority");
    assert!(logs.iter().all(|l| l == &logs[0]), "the replicas differ");
}
