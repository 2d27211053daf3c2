//! Test harness: real `sluice serve` processes on 127.0.0.1 with free ports
//! and a temp data dir, always stopped (SIGKILL on drop), plus a minimal
//! blocking native-protocol caller for tests that need exact bytes.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice::api::{ApiKey, Request, RequestHeader, Response};
use sluice::protocol::native;

pub mod kafka_wire;

/// How long a broker may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads until EOF or error, with a bound: the broker closed the connection.
pub fn closed_by_broker(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut,
        }
    }
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").expect("bind probe");
    probe.local_addr().expect("addr").port()
}

/// `n + 1` consecutive free ports on 127.0.0.1, found by binding them.
pub fn free_ports(n: usize) -> u16 {
    for _ in 0..200 {
        let probe = TcpListener::bind("127.0.0.1:0").expect("bind probe");
        let base = probe.local_addr().expect("addr").port();
        drop(probe);
        if u32::from(base) + n as u32 >= 65_000 {
            continue;
        }
        let held: Vec<_> = (0..=n as u16)
            .map_while(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == n + 1 {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// A broker process under test.
pub struct Broker {
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub port: u16,
    pub shards: usize,
    child: Option<Child>,
    extra: Vec<String>,
    /// RLIMIT_FSIZE of the process (bytes per file): writes past it fail
    /// as on a full disk.
    file_bytes_max: Option<u64>,
}

impl Broker {
    /// Starts a broker with `shards` shards in a fresh temp dir.
    pub fn start(shards: usize, extra: &[&str]) -> Broker {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut b = Broker {
            data_dir: tmp.path().join("data"),
            _tmp: Some(tmp),
            // native port, one per shard, the metrics port, then the Kafka port
            port: free_ports(shards + 2),
            shards,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            file_bytes_max: None,
        };
        b.spawn();
        b
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port + self.shards as u16 + 1))
    }

    pub fn kafka_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port + self.shards as u16 + 2))
    }

    /// `host:port` of the Kafka listener, for Kafka clients.
    pub fn kafka_bootstrap(&self) -> String {
        self.kafka_addr().to_string()
    }

    /// The Prometheus text from `GET /metrics`.
    pub fn scrape(&self) -> String {
        self.http_get("/metrics")
    }

    /// The body of `GET path` on the metrics port (200 expected).
    pub fn http_get(&self, path: &str) -> String {
        let mut s = TcpStream::connect(self.metrics_addr()).expect("metrics port");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .expect("write");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read");
        let (head, body) = text.split_once("\r\n\r\n").expect("http response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        body.to_string()
    }

    /// Sum over shards of a sample named exactly `name` (no other labels).
    pub fn metric_sum(text: &str, name: &str) -> f64 {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{shard=")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn bootstrap(&self) -> String {
        self.addr().to_string()
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        if let Some(limit) = self.file_bytes_max {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec only async-signal-safe calls:
            // setrlimit and signal.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // A write past the limit fails with EFBIG instead of
                    // killing the process.
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    Ok(())
                });
            }
        }
        let child = cmd
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--native-addr")
            .arg(self.addr().to_string())
            .arg("--shard-port-base")
            .arg((self.port + 1).to_string())
            .arg("--shards")
            .arg(self.shards.to_string())
            .arg("--metrics-addr")
            .arg(self.metrics_addr().to_string())
            .arg("--kafka-addr")
            .arg(self.kafka_addr().to_string())
            .args(&self.extra)
            .env(
                "RUST_LOG",
                std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sluice binary starts");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until every shard port and the shared port answer ApiVersions
    /// and the Kafka port accepts connections.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        for port in std::iter::once(self.port).chain((1..=self.shards as u16).map(|i| self.port + i)) {
            loop {
                if let Some(child) = self.child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("broker exited during start: {status}");
                    }
                }
                if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                    if matches!(call(&mut s, 1, Request::ApiVersions), Ok(Response::ApiVersions { .. })) {
                        break;
                    }
                }
                assert!(Instant::now() < deadline, "broker did not start listening on {port}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        while TcpStream::connect(self.kafka_addr()).is_err() {
            assert!(Instant::now() < deadline, "broker did not start its Kafka listener");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait for a clean exit; returns its exit code.
    pub fn stop(&mut self) -> i32 {
        let mut child = self.child.take().expect("running");
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("broker did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// From the next (re)start on, files this broker writes cannot grow
    /// past `bytes` (RLIMIT_FSIZE): a disk that fills up.
    pub fn limit_file_bytes(&mut self, bytes: u64) {
        self.file_bytes_max = Some(bytes);
    }

    /// Starts the same broker again on the same ports and data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill first");
        self.spawn();
    }

    /// Sends `signal` to the broker process (e.g. SIGSTOP to freeze it).
    pub fn signal(&self, signal: i32) {
        let child = self.child.as_ref().expect("running");
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as i32, signal) };
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Writes one request frame and reads frames until the response with the
/// same correlation id arrives.
pub fn call(stream: &mut TcpStream, correlation_id: i32, req: Request) -> std::io::Result<Response> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let api = req.api();
    let header = RequestHeader {
        correlation_id,
        api,
        version: 0,
        client_id: "test".into(),
    };
    for chunk in native::encode_request(&header, &req) {
        stream.write_all(&chunk)?;
    }
    read_response(stream, correlation_id, api)
}

/// Reads frames until the response with `correlation_id`.
pub fn read_response(stream: &mut TcpStream, correlation_id: i32, api: ApiKey) -> std::io::Result<Response> {
    loop {
        let mut prefix = [0u8; 4];
        stream.read_exact(&mut prefix)?;
        let len = u32::from_be_bytes(prefix) as usize;
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf)?;
        let (h, resp) = native::decode_response(Bytes::from(buf), api)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        if h.correlation_id == correlation_id {
            return Ok(resp);
        }
    }
}

/// Runs `f` with a connected client on a glommio executor and returns its
/// result.
pub fn with_client<T, F, Fut>(bootstrap: &str, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce(sluice::client::Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    let bootstrap = bootstrap.to_string();
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move {
            let client = sluice::client::Client::connect(&bootstrap, sluice::client::ClientConfig::default())
                .await
                .expect("connect");
            f(client).await
        })
        .expect("executor starts")
        .join()
        .expect("test body does not panic")
}

/// Waits for `child` until `limit`, killing it (and failing the test) past
/// that; returns its exit status.
pub fn wait_bounded(child: &mut Child, what: &str, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Fails the test with a clear message when python3 cannot import `module`
/// (installed by `pip install {package}`; CI's .ci/run installs it).
pub fn require_python_module(module: &str, package: &str) {
    let present = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        present,
        "python3 with {package} is not installed: `pip install {package}` (CI installs it in .ci/run)"
    );
}

/// Creates `name` with `partitions` partitions through the `sluice` CLI.
pub fn create_topic_cli(broker: &Broker, name: &str, partitions: u32) {
    let created = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["topic", "create", "--bootstrap", &broker.bootstrap(), name])
        .args(["--partitions", &partitions.to_string()])
        .status()
        .expect("sluice topic create runs");
    assert!(created.success(), "creating topic {name} failed");
}

/// Flags for test clusters: a broker silent for 2.5 s is fenced (quick
/// failovers), and leadership stays where failovers put it unless a test
/// moves it.
pub const CLUSTER_FLAGS: &[&str] = &[
    "--broker-session-timeout-ms",
    "2500",
    "--leader-imbalance-check-interval-ms",
    "0",
];

/// Nodes in cluster mode on 127.0.0.1: the first ones controller voters,
/// any after them brokers only.
pub struct ClusterNodes {
    pub nodes: Vec<Broker>,
    /// Each node's inter-broker port, node i+1 at index i.
    pub cluster_ports: Vec<u16>,
    /// The `--voters` value they were started with.
    pub voters: String,
}

/// Starts `n` nodes (ids 1..=n, `shards` shards each), every one a voter,
/// as one cluster, with `extra` flags on each.
pub fn start_cluster(n: usize, shards: usize, extra: &[&str]) -> ClusterNodes {
    start_cluster_with(n, 0, shards, extra)
}

/// Starts `voters` voters (ids 1..=voters) and `brokers` brokers that
/// are not voters (the next ids) as one cluster.
pub fn start_cluster_with(voters: usize, brokers: usize, shards: usize, extra: &[&str]) -> ClusterNodes {
    let n = voters + brokers;
    let cluster_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let voter_list = (1..=voters)
        .map(|i| format!("{i}@127.0.0.1:{}", cluster_ports[i - 1]))
        .collect::<Vec<_>>()
        .join(",");
    let nodes = (1..=n)
        .map(|i| start_node(i as u32, cluster_ports[i - 1], &voter_list, shards, extra))
        .collect();
    ClusterNodes {
        nodes,
        cluster_ports,
        voters: voter_list,
    }
}

/// Starts node `id` of the cluster whose voters are `voters`, its
/// inter-broker listener on `cluster_port`.
pub fn start_node(id: u32, cluster_port: u16, voters: &str, shards: usize, extra: &[&str]) -> Broker {
    let id = id.to_string();
    let addr = format!("127.0.0.1:{cluster_port}");
    let mut args = vec!["--node-id", &id, "--cluster-addr", &addr, "--voters", voters];
    args.extend_from_slice(extra);
    Broker::start(shards, &args)
}

/// Polls `read` on the nodes in `up` until they all agree and `ok` holds
/// (bounded by `limit`); returns what they agree on.
pub fn until_agreed<T: PartialEq + Clone + std::fmt::Debug>(
    nodes: &[Broker],
    up: &[usize],
    what: &str,
    limit: Duration,
    read: impl Fn(&Broker) -> T,
    ok: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let views: Vec<T> = up.iter().map(|&i| read(&nodes[i])).collect();
        if views.windows(2).all(|w| w[0] == w[1]) && ok(&views[0]) {
            return views[0].clone();
        }
        assert!(Instant::now() < deadline, "{what}: {views:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// (leader, epoch, replicas, isr) by partition, as `GET /cluster` shows.
pub type Partitions = std::collections::BTreeMap<u32, (Option<u32>, i32, Vec<u32>, Vec<u32>)>;

/// The ids of the first `[a, b, ...]` list in `text`.
fn node_ids(text: &str) -> Vec<u32> {
    let list = text.split(']').next().unwrap_or_default();
    list.trim_start_matches(|c: char| c == '[' || c.is_whitespace())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

impl Broker {
    /// `topic`'s partitions as this node's `GET /cluster` shows them.
    pub fn cluster_partitions(&self, topic: &str) -> Partitions {
        let text = self.http_get("/cluster");
        let mut out = Partitions::new();
        for line in text.lines() {
            // partition T-P leader L epoch E replicas [..] isr [..]
            let Some(rest) = line.strip_prefix(&format!("partition {topic}-")) else {
                continue;
            };
            let (p, rest) = rest.split_once(' ').expect("partition line");
            let (head, isr) = rest.split_once(" isr ").expect("isr");
            let (head, replicas) = head.split_once(" replicas ").expect("replicas");
            let w: Vec<&str> = head.split_whitespace().collect();
            let leader = w[1].parse().ok();
            let epoch = w[3].parse().expect("epoch");
            out.insert(
                p.parse().expect("p"),
                (leader, epoch, node_ids(replicas), node_ids(isr)),
            );
        }
        out
    }
}

/// Waits until every node sees every node registered and live.
pub fn until_all_live(nodes: &[Broker], limit: Duration) {
    let deadline = Instant::now() + limit;
    while nodes
        .iter()
        .any(|n| n.http_get("/cluster").matches(" live ").count() < nodes.len())
    {
        assert!(Instant::now() < deadline, "every broker live on every node");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether every partition has a leader and its whole replica set in sync.
pub fn all_in_sync(p: &Partitions, partitions: usize, rf: usize) -> bool {
    p.len() == partitions
        && p.values().all(|(leader, _, replicas, isr)| {
            leader.is_some() && replicas.len() == rf && {
                let (mut r, mut i) = (replicas.clone(), isr.clone());
                r.sort_unstable();
                i.sort_unstable();
                r == i
            }
        })
}

/// Kills a child process with SIGKILL if it is still running after a
/// time limit, unless disarmed first: keeps a hung client from hanging
/// the suite while the test reads its output.
pub struct Watchdog {
    disarm: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    pub fn arm(child: &Child, limit: Duration) -> Watchdog {
        let pid = child.id() as i32;
        let (disarm, armed) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            if armed.recv_timeout(limit).is_err() {
                // SAFETY: signalling our own child, which is not reaped
                // before this watchdog is disarmed (joined), so the pid
                // cannot have been reused.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        });
        Watchdog {
            disarm,
            thread: Some(thread),
        }
    }

    /// Call before reaping the child, so it can never signal a reused pid.
    pub fn disarm(mut self) {
        let _ = self.disarm.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The record batches of one partition's log on disk, in order, each as
/// its bytes (the last block of a segment is zero-padded: padding ends
/// the walk). For comparing replicas byte for byte.
pub fn batches_on_disk(data_dir: &Path, topic: &str, partition: u32) -> Vec<Vec<u8>> {
    let dir = data_dir.join(format!("{topic}-{partition}"));
    let mut segments: Vec<_> = std::fs::read_dir(&dir)
        .expect("partition dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    let mut out = Vec::new();
    for seg in segments {
        let bytes = std::fs::read(&seg).expect("segment");
        let mut at = 0;
        while at + 12 <= bytes.len() {
            let len = i32::from_be_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
            if len <= 0 || at + 12 + len as usize > bytes.len() {
                break;
            }
            out.push(bytes[at..at + 12 + len as usize].to_vec());
            at += 12 + len as usize;
        }
    }
    out
}

/// Waits until every node agrees that each of `topic`'s `partitions` has a
/// leader and all `rf` replicas in sync; returns that view.
pub fn until_in_sync(nodes: &[Broker], topic: &str, partitions: usize, rf: usize, what: &str) -> Partitions {
    let all: Vec<usize> = (0..nodes.len()).collect();
    until_agreed(
        nodes,
        &all,
        what,
        Duration::from_secs(60),
        |b| b.cluster_partitions(topic),
        |p| all_in_sync(p, partitions, rf),
    )
}

/// Produces `lines` (one record each) to `topic` with acks=all through
/// `sluice produce`, bootstrapping from `bootstrap`; panics unless every
/// one is acknowledged within `limit`.
pub fn produce_lines(bootstrap: &str, topic: &str, lines: impl Iterator<Item = String>, limit: Duration) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["produce", "--topic", topic, "--acks", "all", "--bootstrap", bootstrap])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sluice produce runs");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for line in lines {
            writeln!(stdin, "{line}").expect("write");
        }
    }
    let status = wait_bounded(&mut child, "sluice produce", limit);
    assert!(status.success(), "every record acknowledged: {status}");
}

/// Produces `lines` with acks=all through `sluice produce` (bootstrapping
/// from `bootstrap`), each keyed by its index so that every partition
/// gets some, running `during` halfway; panics unless every line is
/// acknowledged.
pub fn produce_keyed(bootstrap: &str, topic: &str, lines: &[String], during: impl FnOnce()) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "produce",
            "--topic",
            topic,
            "--acks",
            "all",
            "--linger-ms",
            "1",
            "--key-separator",
            ",",
        ])
        .args(["--bootstrap", bootstrap])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sluice produce runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let keyed: Vec<String> = lines.iter().enumerate().map(|(i, l)| format!("{i},{l}")).collect();
    let (first, second) = keyed.split_at(keyed.len() / 2);
    for chunk in first.chunks(20) {
        stdin.write_all(chunk.join("\n").as_bytes()).expect("write");
        stdin.write_all(b"\n").expect("write");
        std::thread::sleep(Duration::from_millis(5));
    }
    during();
    for chunk in second.chunks(20) {
        stdin.write_all(chunk.join("\n").as_bytes()).expect("write");
        stdin.write_all(b"\n").expect("write");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(stdin);
    let status = wait_bounded(&mut child, "acks=all production", Duration::from_secs(60));
    assert!(status.success(), "every record is acknowledged: {status}");
}

/// Every record of `topic`, read through `sluice consume`.
pub fn consume_all(bootstrap: &str, topic: &str) -> Vec<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["consume", "--topic", topic, "--bootstrap", bootstrap])
        .stdout(Stdio::piped())
        .spawn()
        .expect("sluice consume runs");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out).expect("read");
    let status = wait_bounded(&mut child, "consume", Duration::from_secs(60));
    assert!(status.success(), "consume: {status}");
    out.lines().map(str::to_string).collect()
}
