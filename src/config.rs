//! One typed configuration for `sluice serve`: defaults, then an optional
//! TOML file (`--config`), then command-line flags, each overriding the one
//! before. Every limit has a named maximum with its unit in the name.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::api::{FlushConfig, TopicConfig};

/// Flags of `sluice serve`. Every flag is optional; unset means "from the
/// config file, else the default".
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML file with the same keys as the flags (snake_case).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where topic metadata and partition logs live.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Native protocol listener shared by all shards (SO_REUSEPORT).
    #[arg(long)]
    pub native_addr: Option<SocketAddr>,
    /// Kafka protocol listener shared by all shards (SO_REUSEPORT).
    #[arg(long)]
    pub kafka_addr: Option<SocketAddr>,
    /// HOST:PORT Kafka clients are told to connect to (Kafka's
    /// advertised.listeners). Default: the listener's address, or this
    /// host's name when the listener is a wildcard (0.0.0.0 / ::).
    #[arg(long)]
    pub kafka_advertised_addr: Option<String>,
    /// This broker's id in its cluster (and in Kafka metadata). Default 0.
    #[arg(long)]
    pub node_id: Option<u32>,
    /// This node's inter-broker listener (controller and replication
    /// traffic). Cluster mode only, with --voters.
    #[arg(long)]
    pub cluster_addr: Option<SocketAddr>,
    /// HOST:PORT other nodes reach this node's inter-broker listener at:
    /// for a voter, as its entry in --voters names it (behind a proxy or
    /// NAT). Default: --cluster-addr.
    #[arg(long)]
    pub cluster_advertised_addr: Option<String>,
    /// The controller quorum: ID@HOST:PORT,... naming each voter's cluster
    /// address (KRaft's controller.quorum.voters). A node named here is a
    /// voter and a broker; any other node is a broker only. Without it the
    /// node runs alone, as by default.
    #[arg(long)]
    pub voters: Option<String>,
    /// Cluster mode: fence a broker the controller has not heard from for
    /// this long. Default 6000.
    #[arg(long)]
    pub broker_session_timeout_ms: Option<u64>,
    /// Cluster mode: copies of a new topic's partitions when the request
    /// does not say (capped at the live brokers). Default 3.
    #[arg(long)]
    pub default_replication_factor: Option<usize>,
    /// Cluster mode: a new topic's min.insync.replicas when the request
    /// does not say. Default 1.
    #[arg(long)]
    pub min_insync_replicas: Option<u16>,
    /// Cluster mode: a follower that has not caught up with its leader for
    /// this long leaves the ISR (Kafka's replica.lag.time.max.ms).
    /// Default 30000.
    #[arg(long)]
    pub replica_lag_time_max_ms: Option<u64>,
    /// Cluster mode: how often the controller moves leadership back to
    /// each partition's preferred replica when it is in sync (Kafka's
    /// leader.imbalance.check.interval; 0: never). Default 30000.
    #[arg(long)]
    pub leader_imbalance_check_interval_ms: Option<u64>,
    /// Prometheus metrics endpoint.
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// Number of shards (one pinned executor per core). Default: available cores.
    #[arg(long)]
    pub shards: Option<usize>,
    /// Shard i also listens on this port + i (default: native port + 1).
    #[arg(long)]
    pub shard_port_base: Option<u16>,
    /// How long a new consumer group waits for more members before its first
    /// rebalance (Kafka's group.initial.rebalance.delay.ms).
    #[arg(long)]
    pub group_initial_rebalance_delay_ms: Option<u32>,
}

/// The TOML file: the same keys as the flags plus the broker's limits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    native_addr: Option<SocketAddr>,
    kafka_addr: Option<SocketAddr>,
    kafka_advertised_addr: Option<String>,
    node_id: Option<u32>,
    cluster_addr: Option<SocketAddr>,
    cluster_advertised_addr: Option<String>,
    voters: Option<String>,
    metrics_addr: Option<SocketAddr>,
    shards: Option<usize>,
    shard_port_base: Option<u16>,
    frame_bytes_max: Option<usize>,
    connections_max: Option<usize>,
    inflight_bytes_max_per_connection: Option<usize>,
    io_memory_bytes_max: Option<usize>,
    cache_bytes_max_per_partition: Option<usize>,
    cache_bytes_max_per_shard: Option<usize>,
    spin_before_park_us: Option<u64>,
    segment_bytes: Option<u64>,
    retention_ms: Option<i64>,
    retention_bytes: Option<i64>,
    max_message_bytes: Option<u32>,
    flush: Option<String>,
    offsets_topic_partitions: Option<u32>,
    offsets_retention_ms: Option<i64>,
    group_initial_rebalance_delay_ms: Option<u32>,
    group_min_session_timeout_ms: Option<u32>,
    group_max_session_timeout_ms: Option<u32>,
    retention_check_interval_ms: Option<u64>,
    offsets_segment_bytes: Option<u64>,
    producer_id_expiration_ms: Option<u64>,
    broker_session_timeout_ms: Option<u64>,
    default_replication_factor: Option<usize>,
    min_insync_replicas: Option<u16>,
    replica_lag_time_max_ms: Option<u64>,
    leader_imbalance_check_interval_ms: Option<u64>,
}

/// The broker's resolved configuration.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub native_addr: SocketAddr,
    /// The Kafka protocol listener.
    pub kafka_addr: SocketAddr,
    /// Cluster mode: this node's inter-broker listener and the controller
    /// quorum. `None`: a single node.
    pub cluster: Option<ClusterSettings>,
    /// What Kafka clients are told to connect to (Metadata,
    /// FindCoordinator): `kafka_advertised_addr` if set, else the
    /// listener's address, or this host's name for a wildcard listener.
    pub kafka_advertised: (String, u16),
    pub metrics_addr: SocketAddr,
    pub shards: usize,
    pub shard_port_base: u16,
    pub node_id: i32,
    /// Largest frame a client may send; bigger ones close the connection.
    pub frame_bytes_max: usize,
    /// Open connections per node, split evenly over the shards.
    pub connections_max: usize,
    /// Request bytes one connection may have in flight before reads pause.
    pub inflight_bytes_max_per_connection: usize,
    /// Upper bound of glommio's registered io memory per shard; lowered to
    /// fit RLIMIT_MEMLOCK.
    pub io_memory_bytes_max: usize,
    pub cache_bytes_max_per_partition: usize,
    /// Batch cache bytes of all the partitions of one shard together.
    pub cache_bytes_max_per_shard: usize,
    /// Depth of each cross-shard channel.
    pub mesh_channel_depth: usize,
    /// How long an idle shard spins before it parks its thread (0: park at
    /// once). Spinning keeps the core awake for the next completion.
    pub spin_before_park_us: u64,
    /// Topic defaults; a topic's own config overrides them.
    pub topic_defaults: TopicConfig,
    /// Partitions of `__consumer_offsets` when it is first created.
    pub offsets_topic_partitions: u32,
    /// Committed offsets of a group without members are removed this long
    /// after its newest commit.
    pub offsets_retention_ms: i64,
    pub group_initial_rebalance_delay_ms: u32,
    pub group_min_session_timeout_ms: u32,
    pub group_max_session_timeout_ms: u32,
    /// How often each shard applies retention to its partitions and
    /// expires and compacts committed offsets.
    pub retention_check_interval_ms: u64,
    /// Segment size of `__consumer_offsets`: its history is dropped a
    /// segment at a time once the live offsets are rewritten.
    pub offsets_segment_bytes: u64,
    /// A partition forgets an idempotent producer that has written nothing
    /// to it for this long (Kafka's producer.id.expiration.ms).
    pub producer_id_expiration_ms: u64,
    /// Cluster mode: a broker the controller has not heard from for this
    /// long is fenced (Kafka's broker.session.timeout.ms).
    pub broker_session_timeout_ms: u64,
    /// Cluster mode: copies of a new topic's partitions when the request
    /// does not say (capped at the live brokers).
    pub default_replication_factor: usize,
    /// Cluster mode: a new topic's min.insync.replicas when unsaid.
    pub default_min_insync_replicas: u16,
    /// Cluster mode: Kafka's replica.lag.time.max.ms.
    pub replica_lag_time_max_ms: u64,
    /// Cluster mode: preferred-leader elections every this long (0: off).
    pub leader_imbalance_check_interval_ms: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            data_dir: PathBuf::from("./data"),
            native_addr: SocketAddr::from(([127, 0, 0, 1], 9192)),
            kafka_addr: SocketAddr::from(([127, 0, 0, 1], 9092)),
            kafka_advertised: ("127.0.0.1".into(), 9092),
            cluster: None,
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 9644)),
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            shard_port_base: 9193,
            node_id: 0,
            frame_bytes_max: 64 << 20,
            connections_max: 10_000,
            inflight_bytes_max_per_connection: 64 << 20,
            io_memory_bytes_max: 16 << 20,
            cache_bytes_max_per_partition: 16 << 20,
            cache_bytes_max_per_shard: 256 << 20,
            mesh_channel_depth: 1024,
            spin_before_park_us: 0,
            topic_defaults: TopicConfig {
                retention_ms: Some(7 * 24 * 3600 * 1000),
                retention_bytes: None,
                segment_bytes: Some(1 << 30),
                max_message_bytes: Some(1 << 20),
                flush: Some(FlushConfig::EveryAppend),
            },
            offsets_topic_partitions: 8,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 300_000,
            retention_check_interval_ms: 60_000,
            offsets_segment_bytes: 8 << 20,
            producer_id_expiration_ms: 24 * 3600 * 1000,
            broker_session_timeout_ms: 6_000,
            default_replication_factor: 3,
            default_min_insync_replicas: 1,
            replica_lag_time_max_ms: 30_000,
            leader_imbalance_check_interval_ms: 30_000,
        }
    }
}

/// `every-append`, `interval:MS` or `bytes:N`.
pub fn parse_flush(s: &str) -> Result<FlushConfig, String> {
    let num = |v: &str| v.parse::<u64>().map_err(|e| format!("flush {s:?}: {e}"));
    match s.split_once(':') {
        None if s == "every-append" => Ok(FlushConfig::EveryAppend),
        Some(("interval", ms)) => Ok(FlushConfig::IntervalMs(num(ms)?.max(1))),
        Some(("bytes", n)) => Ok(FlushConfig::Bytes(num(n)?.max(1))),
        _ => Err(format!("flush must be every-append, interval:MS or bytes:N, not {s:?}")),
    }
}

impl ServeConfig {
    /// Defaults, then the file named by `--config`, then the flags.
    pub fn load(args: &ServeArgs) -> Result<ServeConfig, String> {
        let mut cfg = ServeConfig::default();
        let mut shard_base_set = false;
        let mut advertised: Option<String> = None;
        let (mut node_id, mut cluster_addr, mut voters): (Option<u32>, Option<SocketAddr>, Option<String>) =
            (None, None, None);
        let mut cluster_advertised: Option<String> = None;
        if let Some(path) = &args.config {
            let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            let file: FileConfig = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            macro_rules! take {
                ($field:ident) => {
                    if let Some(v) = file.$field {
                        cfg.$field = v;
                    }
                };
            }
            take!(data_dir);
            take!(native_addr);
            take!(kafka_addr);
            advertised = file.kafka_advertised_addr.clone();
            node_id = file.node_id.or(node_id);
            cluster_addr = file.cluster_addr.or(cluster_addr);
            cluster_advertised = file.cluster_advertised_addr.clone();
            voters = file.voters.clone().or(voters);
            take!(metrics_addr);
            take!(shards);
            take!(frame_bytes_max);
            take!(connections_max);
            take!(inflight_bytes_max_per_connection);
            take!(io_memory_bytes_max);
            take!(cache_bytes_max_per_partition);
            take!(cache_bytes_max_per_shard);
            take!(spin_before_park_us);
            take!(offsets_topic_partitions);
            take!(offsets_retention_ms);
            take!(group_initial_rebalance_delay_ms);
            take!(group_min_session_timeout_ms);
            take!(group_max_session_timeout_ms);
            take!(retention_check_interval_ms);
            take!(offsets_segment_bytes);
            take!(producer_id_expiration_ms);
            take!(broker_session_timeout_ms);
            take!(default_replication_factor);
            take!(replica_lag_time_max_ms);
            take!(leader_imbalance_check_interval_ms);
            if let Some(v) = file.min_insync_replicas {
                cfg.default_min_insync_replicas = v;
            }
            if let Some(v) = file.shard_port_base {
                cfg.shard_port_base = v;
                shard_base_set = true;
            }
            let d = &mut cfg.topic_defaults;
            d.segment_bytes = file.segment_bytes.or(d.segment_bytes);
            d.retention_ms = file.retention_ms.or(d.retention_ms);
            d.retention_bytes = file.retention_bytes.or(d.retention_bytes);
            d.max_message_bytes = file.max_message_bytes.or(d.max_message_bytes);
            if let Some(f) = &file.flush {
                d.flush = Some(parse_flush(f)?);
            }
        }
        if let Some(v) = &args.data_dir {
            cfg.data_dir = v.clone();
        }
        if let Some(v) = args.native_addr {
            cfg.native_addr = v;
        }
        if let Some(v) = args.kafka_addr {
            cfg.kafka_addr = v;
        }
        if let Some(v) = &args.kafka_advertised_addr {
            advertised = Some(v.clone());
        }
        node_id = args.node_id.or(node_id);
        if let Some(v) = args.broker_session_timeout_ms {
            cfg.broker_session_timeout_ms = v;
        }
        if let Some(v) = args.default_replication_factor {
            cfg.default_replication_factor = v;
        }
        if let Some(v) = args.min_insync_replicas {
            cfg.default_min_insync_replicas = v;
        }
        if let Some(v) = args.replica_lag_time_max_ms {
            cfg.replica_lag_time_max_ms = v;
        }
        if let Some(v) = args.leader_imbalance_check_interval_ms {
            cfg.leader_imbalance_check_interval_ms = v;
        }
        cluster_addr = args.cluster_addr.or(cluster_addr);
        cluster_advertised = args.cluster_advertised_addr.clone().or(cluster_advertised);
        voters = args.voters.clone().or(voters);
        if let Some(v) = args.metrics_addr {
            cfg.metrics_addr = v;
        }
        if let Some(v) = args.shards {
            cfg.shards = v;
        }
        if let Some(v) = args.shard_port_base {
            cfg.shard_port_base = v;
            shard_base_set = true;
        }
        if let Some(v) = args.group_initial_rebalance_delay_ms {
            cfg.group_initial_rebalance_delay_ms = v;
        }
        if !shard_base_set {
            cfg.shard_port_base = cfg.native_addr.port().saturating_add(1);
        }
        if let Some(id) = node_id {
            cfg.node_id = i32::try_from(id).map_err(|_| format!("node id {id} is above {}", i32::MAX))?;
        }
        cfg.cluster = ClusterSettings::resolve(node_id, cluster_addr, cluster_advertised, voters.as_deref())?;
        cfg.kafka_advertised = match advertised {
            Some(text) => parse_host_port(&text).map_err(|e| format!("kafka_advertised_addr {text:?}: {e}"))?,
            None if cfg.kafka_addr.ip().is_unspecified() => (host_name()?, cfg.kafka_addr.port()),
            None => (cfg.kafka_addr.ip().to_string(), cfg.kafka_addr.port()),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.shards == 0 || self.shards > 256 {
            return Err(format!("shards must be 1..=256, not {}", self.shards));
        }
        if u32::from(self.shard_port_base) + self.shards as u32 > 65_536 {
            return Err("shard ports run past 65535".into());
        }
        if self.kafka_addr == self.native_addr {
            return Err(format!("kafka_addr and native_addr are both {}", self.kafka_addr));
        }
        if self.frame_bytes_max < 1024 {
            return Err("frame_bytes_max must be at least 1024".into());
        }
        if self.offsets_topic_partitions == 0 || self.offsets_topic_partitions > 1000 {
            return Err("offsets_topic_partitions must be 1..=1000".into());
        }
        if self.retention_check_interval_ms == 0 {
            return Err("retention_check_interval_ms must be positive".into());
        }
        if self.group_min_session_timeout_ms == 0 {
            return Err("group_min_session_timeout_ms must be at least 1".into());
        }
        if self.group_min_session_timeout_ms > self.group_max_session_timeout_ms {
            return Err("group_min_session_timeout_ms is above group_max_session_timeout_ms".into());
        }
        Ok(())
    }

    /// The port shard `shard` listens on, besides the shared native port.
    pub fn shard_port(&self, shard: usize) -> u16 {
        self.shard_port_base + shard as u16
    }
}

/// Cluster mode's settings (see [`ServeArgs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    pub node_id: u32,
    pub cluster_addr: SocketAddr,
    /// How other nodes reach the inter-broker listener: a voter's entry
    /// in the voters, or a broker's --cluster-advertised-addr (by default
    /// the listener's address).
    pub cluster_advertised: String,
    pub voters: Vec<crate::cluster::identity::Voter>,
}

impl ClusterSettings {
    /// Whether this node is a controller voter (KRaft's combined mode) or
    /// a broker only.
    pub fn is_voter(&self) -> bool {
        self.voters.iter().any(|v| v.id == self.node_id)
    }

    /// Cluster mode needs all three; none of them is a single node. A node
    /// named in the voters is a voter and a broker; any other is a broker
    /// only, and reaches the quorum through the voters.
    fn resolve(
        node_id: Option<u32>,
        cluster_addr: Option<SocketAddr>,
        advertised: Option<String>,
        voters: Option<&str>,
    ) -> Result<Option<ClusterSettings>, String> {
        let (cluster_addr, voters) = match (cluster_addr, voters) {
            (None, None) => return Ok(None),
            (Some(a), Some(v)) => (a, crate::cluster::identity::parse_voters(v)?),
            _ => return Err("cluster mode needs both --cluster-addr and --voters".into()),
        };
        let node_id = node_id.ok_or("cluster mode needs --node-id")?;
        if node_id == 0 {
            return Err("--node-id must be 1 or more in cluster mode".into());
        }
        let advertised = match advertised {
            Some(a) => {
                parse_host_port(&a).map_err(|e| format!("--cluster-advertised-addr {a:?}: {e}"))?;
                Some(a)
            }
            None => None,
        };
        let cluster_advertised = match voters.iter().find(|v| v.id == node_id) {
            Some(me) => {
                // A typo here would leave the node unreachable: the voter
                // entry must name the advertised address (by default, the
                // listener's).
                let reached = advertised.unwrap_or_else(|| cluster_addr.to_string());
                let port = |a: &str| a.rsplit_once(':').map(|(_, p)| p.to_string());
                if port(&me.addr) != port(&reached) {
                    return Err(format!(
                        "--voters names {}@{} but this node is reached at {reached} (--cluster-addr, or \
                         --cluster-advertised-addr)",
                        me.id, me.addr
                    ));
                }
                me.addr.clone()
            }
            None => match advertised {
                Some(a) => a,
                None if cluster_addr.ip().is_unspecified() => {
                    format!("{}:{}", host_name()?, cluster_addr.port())
                }
                None => cluster_addr.to_string(),
            },
        };
        Ok(Some(ClusterSettings {
            node_id,
            cluster_addr,
            cluster_advertised,
            voters,
        }))
    }
}

/// `HOST:PORT` (a name, an IPv4 address, or a bracketed IPv6 address).
pub(crate) fn parse_host_port(text: &str) -> Result<(String, u16), String> {
    let (host, port) = text.rsplit_once(':').ok_or("expected HOST:PORT")?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err("empty or malformed host".into());
    }
    let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    if port == 0 {
        return Err("port 0 cannot be connected to".into());
    }
    Ok((host.to_string(), port))
}

/// This host's name, for a wildcard listener with nothing advertised.
fn host_name() -> Result<String, String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at
    // most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..len]) {
        Ok(name) if rc == 0 && !name.is_empty() => Ok(name.to_string()),
        _ => Err(
            "the Kafka listener is a wildcard address and this host's name is unknown: \
                  set kafka_advertised_addr to the HOST:PORT clients should use"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_override_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("sluice.toml");
        std::fs::write(
            &file,
            "shards = 3\nnative_addr = \"127.0.0.1:7000\"\nflush = \"interval:50\"\nspin_before_park_us = 50\n",
        )
        .expect("write");
        let args = ServeArgs {
            config: Some(file),
            shards: Some(2),
            ..Default::default()
        };
        let cfg = ServeConfig::load(&args).expect("loads");
        assert_eq!(cfg.shards, 2);
        assert_eq!(cfg.native_addr.port(), 7000);
        assert_eq!(cfg.shard_port(1), 7002);
        assert_eq!(cfg.topic_defaults.flush, Some(FlushConfig::IntervalMs(50)));
        assert_eq!(cfg.spin_before_park_us, 50);
    }

    #[test]
    fn kafka_clients_are_told_the_advertised_address() {
        let load = |kafka_addr: &str, advertised: Option<&str>| {
            ServeConfig::load(&ServeArgs {
                kafka_addr: Some(kafka_addr.parse().expect("addr")),
                kafka_advertised_addr: advertised.map(String::from),
                ..Default::default()
            })
        };
        let cfg = load("127.0.0.2:9093", None).expect("loads");
        assert_eq!(cfg.kafka_advertised, ("127.0.0.2".into(), 9093));
        let cfg = load("0.0.0.0:9092", Some("broker-1.example:19092")).expect("loads");
        assert_eq!(cfg.kafka_advertised, ("broker-1.example".into(), 19092));
        let cfg = load("0.0.0.0:9092", Some("[::1]:9092")).expect("loads");
        assert_eq!(cfg.kafka_advertised, ("::1".into(), 9092));
        // A wildcard listener is never advertised as such.
        let cfg = load("0.0.0.0:9092", None).expect("loads");
        assert_ne!(cfg.kafka_advertised.0, "0.0.0.0");
        assert!(!cfg.kafka_advertised.0.is_empty());
        for bad in ["no-port", "host:", ":9092", "host:0", "host:99999", "two words:1"] {
            assert!(load("127.0.0.1:9092", Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_values_are_clear_errors() {
        assert!(parse_flush("sometimes").is_err());
        assert_eq!(parse_flush("bytes:10"), Ok(FlushConfig::Bytes(10)));
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "no_such_key = 1\n").expect("write");
        let err = ServeConfig::load(&ServeArgs {
            config: Some(file),
            ..Default::default()
        })
        .expect_err("rejected");
        assert!(err.contains("no_such_key"), "{err}");
        assert!(ServeConfig::load(&ServeArgs {
            shards: Some(0),
            ..Default::default()
        })
        .is_err());
        // Values the group coordinator could not work with are refused
        // here, not discovered by a shard at start.
        for bad in [
            "group_min_session_timeout_ms = 0\n",
            "group_min_session_timeout_ms = 9000\ngroup_max_session_timeout_ms = 8000\n",
            "offsets_topic_partitions = 0\n",
            "retention_check_interval_ms = 0\n",
        ] {
            let file = dir.path().join("group.toml");
            std::fs::write(&file, bad).expect("write");
            let loaded = ServeConfig::load(&ServeArgs {
                config: Some(file),
                ..Default::default()
            });
            assert!(loaded.is_err(), "{bad} accepted");
        }
    }
}
