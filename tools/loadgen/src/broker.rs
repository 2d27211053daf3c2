//! The embedded broker: with no `--bootstrap`, the load generator runs a
//! Sluice broker in a child process (this same binary, re-executed with
//! [`CHILD_ARG`], calling `sluice::server::run`) on free local ports with
//! its data in a fresh temporary directory.
//!
//! A child process, not a thread: the broker's signal handling (SIGTERM
//! and SIGINT stop it cleanly) stays its own, its memory (RSS) can be
//! reported apart from the load generator's, and stopping it is a plain
//! SIGTERM. Ctrl-C in a terminal reaches both (same process group).
//! Invariant: the child is stopped and its directory removed when the
//! [`EmbeddedBroker`] is stopped or dropped.
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// First argument that makes the binary run as the embedded broker.
pub const CHILD_ARG: &str = "__embedded-broker";
/// How long the broker may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a clean stop may take before the broker is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// glommio registered io memory per broker shard: small, so the broker and
/// the load generator fit an 8 MiB RLIMIT_MEMLOCK together.
const IO_MEMORY_BYTES: usize = 2 << 20;
/// Attempts at finding a free run of ports.
const PORT_ATTEMPTS: u32 = 64;
/// How long a new group waits for more members before its first rebalance
/// (Kafka defaults to 3 s): the load generator's members all join within
/// moments, and the ready barrier waits out any later rebalance anyway.
const GROUP_INITIAL_REBALANCE_DELAY_MS: u32 = 100;

pub struct EmbeddedBroker {
    child: Option<Child>,
    dir: PathBuf,
    pub bootstrap: String,
}

impl EmbeddedBroker {
    /// Starts a broker with `shards` shards under `parent` (a temp dir if
    /// `None`) and waits until every shard listens.
    pub fn start(shards: usize, parent: Option<PathBuf>) -> Result<EmbeddedBroker, String> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32);
        let parent = parent.unwrap_or_else(std::env::temp_dir);
        let dir = parent.join(format!("sluice-loadgen-{:x}", seed & 0xffff_ffff_ffff));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        // native, metrics, one per shard, Kafka
        let base = free_port_run(shards + 3, seed)?;
        let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
        let child = Command::new(exe)
            .arg(CHILD_ARG)
            .arg(&dir)
            .arg(base.to_string())
            .arg(shards.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting the embedded broker: {e}"))?;
        let mut broker = EmbeddedBroker {
            child: Some(child),
            dir,
            bootstrap: format!("127.0.0.1:{base}"),
        };
        broker.wait_listening(base, shards)?;
        Ok(broker)
    }

    fn wait_listening(&mut self, base: u16, shards: usize) -> Result<(), String> {
        let started = Instant::now();
        // The shared port, then every shard port (base + 2 + shard).
        let ports: Vec<u16> = std::iter::once(base)
            .chain((0..shards).map(|s| base + 2 + s as u16))
            .collect();
        for port in ports {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                if let Some(child) = self.child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        return Err(format!("the embedded broker exited at start: {status}"));
                    }
                }
                if started.elapsed() > START_TIMEOUT {
                    return Err(format!(
                        "the embedded broker did not listen on {addr} within {START_TIMEOUT:?}"
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// The broker's resident set size, from /proc.
    pub fn rss_bytes(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Stops the broker with SIGTERM (killing it if it does not stop in
    /// time) and removes its directory.
    pub fn stop(mut self) -> Result<(), String> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // std has no SIGTERM; kill(1) is on every Linux.
        let asked = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let started = Instant::now();
        let mut result = Ok(());
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => break,
                Ok(Some(status)) => {
                    result = Err(format!("the embedded broker exited with {status}"));
                    break;
                }
                Ok(None) if asked && started.elapsed() < STOP_TIMEOUT => std::thread::sleep(Duration::from_millis(20)),
                Ok(None) | Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    result = Err("the embedded broker did not stop on SIGTERM; killed it".into());
                    break;
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        result
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port `p` such that `p..p+count` are all free on 127.0.0.1 now.
fn free_port_run(count: usize, seed: u64) -> Result<u16, String> {
    let mut x = seed | 1;
    for _ in 0..PORT_ATTEMPTS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let base = 20_000 + (x % 30_000) as u16;
        let free = (0..count).all(|i| TcpListener::bind(("127.0.0.1", base + i as u16)).is_ok());
        if free {
            return Ok(base);
        }
    }
    Err(format!("no run of {count} free ports found on 127.0.0.1"))
}

/// The child side: `CHILD_ARG DIR BASE_PORT SHARDS`. Runs until SIGTERM.
pub fn child_main(args: &[String]) -> Result<(), String> {
    let [dir, base, shards] = args else {
        return Err(format!("usage: {CHILD_ARG} DIR BASE_PORT SHARDS"));
    };
    let base: u16 = base.parse().map_err(|e| format!("port {base}: {e}"))?;
    let shards: usize = shards.parse().map_err(|e| format!("shards {shards}: {e}"))?;
    let cfg = sluice::config::ServeConfig {
        data_dir: PathBuf::from(dir),
        native_addr: SocketAddr::from(([127, 0, 0, 1], base)),
        metrics_addr: SocketAddr::from(([127, 0, 0, 1], base + 1)),
        shards,
        shard_port_base: base + 2,
        // After the shard ports: never Kafka's default 9092, which another
        // broker (or run) on this host may hold.
        kafka_addr: SocketAddr::from(([127, 0, 0, 1], base + 2 + shards as u16)),
        io_memory_bytes_max: IO_MEMORY_BYTES,
        group_initial_rebalance_delay_ms: GROUP_INITIAL_REBALANCE_DELAY_MS,
        ..sluice::config::ServeConfig::default()
    };
    cfg.validate()?;
    sluice::server::run(cfg)
}
