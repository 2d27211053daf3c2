//! The client half of the `sluice` command line: topic admin, produce from
//! stdin, consume to stdout. Each command runs the native client
//! ([`crate::client`]) on a glommio executor of its own on the calling
//! thread.
//!
//! Exit codes: 0 success, 1 the operation failed (broker or network error,
//! records not delivered), 2 bad arguments.
use std::io::{BufRead, BufReader, Write};
use std::rc::Rc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

use crate::api::{Acks, FlushConfig, OffsetSpec, TopicConfig, TopicInfo};
use crate::client::{
    Client, ClientConfig, ClientError, Consumer, ConsumerConfig, GroupConfig, GroupConsumer, OffsetReset, Producer,
    ProducerConfig, SeekTo,
};
use crate::record::Compression;

/// Where every command connects unless told otherwise.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9192";
/// Lines read from stdin per blocking read at most.
const STDIN_LINES_PER_READ_MAX: usize = 4096;
/// Produced records awaiting their acknowledgement before stdin pauses.
const SENDS_OUTSTANDING_MAX: u64 = 100_000;
/// How long one consumer poll waits before checking whether it is done.
const CONSUME_POLL: Duration = Duration::from_millis(500);

const EXIT_FAILED: i32 = 1;
const EXIT_USAGE: i32 = 2;

/// Where to find the cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// A broker to bootstrap from: HOST:PORT (comma-separated for several).
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_BOOTSTRAP)]
    pub bootstrap: String,
}

/// The client commands of `sluice`.
#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Create, list, describe or delete topics.
    Topic(TopicArgs),
    /// Produce one record per line of stdin.
    Produce(ProduceArgs),
    /// Print a topic's records to stdout, one per line.
    Consume(ConsumeArgs),
    /// List, describe, reset or delete consumer groups.
    Group(GroupArgs),
    /// Cluster mode: the controller, brokers and partitions.
    Cluster(ClusterArgs),
    /// Cluster mode: move a partition's replicas.
    Partition(PartitionArgs),
}

/// `sluice partition ...`
#[derive(Debug, clap::Args)]
pub struct PartitionArgs {
    #[command(subcommand)]
    pub command: PartitionCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum PartitionCommand {
    /// Move a partition onto other brokers: the new replicas catch up
    /// from the leader, then the old ones leave (and leadership moves if
    /// the leader leaves). Returns once the controller has started it;
    /// `sluice cluster describe` shows the progress.
    Reassign {
        /// The node's metrics endpoint (`--metrics-addr` of `serve`).
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9644")]
        metrics_addr: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: u32,
        /// The new replicas, preferred leader first: broker ids, comma-separated.
        #[arg(
            long,
            value_name = "ID,ID,...",
            value_delimiter = ',',
            required_unless_present = "cancel",
            conflicts_with = "cancel"
        )]
        replicas: Vec<u32>,
        /// Cancel the reassignment in progress instead: back to the
        /// replicas from before it (the ones it added leave).
        #[arg(long)]
        cancel: bool,
    },
}

/// `sluice cluster ...`
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// What a node knows of its cluster: the active controller, every
    /// broker (live or fenced, addresses, incarnation), every partition's
    /// leader, epoch, replicas and ISR, and for each partition this node
    /// leads its high watermark, log end and each follower's lag.
    Describe {
        /// The node's metrics endpoint (`--metrics-addr` of `serve`).
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9644")]
        metrics_addr: String,
    },
    /// Move each partition's leadership back to its preferred replica
    /// (the first) where that replica is live and in sync, now rather than
    /// at the controller's next periodic check.
    ElectLeaders {
        /// The node's metrics endpoint (`--metrics-addr` of `serve`).
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9644")]
        metrics_addr: String,
    },
}

/// `sluice group ...`
#[derive(Debug, clap::Args)]
pub struct GroupArgs {
    #[command(subcommand)]
    pub command: GroupCommand,
}

/// What to do with consumer groups.
#[derive(Debug, clap::Subcommand)]
pub enum GroupCommand {
    /// List groups (with members or committed offsets) and their states.
    List {
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show a group's state and members, and per partition the committed
    /// offset, the log end and the lag.
    Describe {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The group id.
        group: String,
    },
    /// Set a group's committed offsets for a topic (the group must have no
    /// members).
    ResetOffsets {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The group id.
        group: String,
        /// The topic whose offsets to set.
        #[arg(long)]
        topic: String,
        /// Only this partition (default: all).
        #[arg(long)]
        partition: Option<u32>,
        /// earliest, latest, or an offset.
        #[arg(long, value_parser = parse_from)]
        to: SeekTo,
    },
    /// Delete a group without members, with its committed offsets.
    Delete {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The group id.
        group: String,
    },
}

/// `sluice topic ...`
#[derive(Debug, clap::Args)]
pub struct TopicArgs {
    #[command(subcommand)]
    pub command: TopicCommand,
}

/// What to do with topics.
#[derive(Debug, clap::Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The topic's name.
        name: String,
        /// Number of partitions.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Topic config (repeatable): retention.ms, retention.bytes,
        /// segment.bytes, max.message.bytes, flush
        /// (every-append | interval:MS | bytes:N).
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
    },
    /// List topic names.
    List {
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show a topic's partitions (owner shard and port, log start, high
    /// watermark) and config.
    Describe {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The topic's name.
        name: String,
    },
    /// Delete a topic and its data.
    Delete {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The topic's name.
        name: String,
    },
    /// Grow a topic to a larger number of partitions; existing partitions
    /// keep their data (keyed records may map to other partitions after).
    AddPartitions {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The topic's name.
        name: String,
        /// The new total number of partitions (not the number to add).
        #[arg(long)]
        partitions: u32,
    },
}

/// `sluice produce`
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The topic to produce to.
    #[arg(long)]
    pub topic: String,
    /// Split each line at the first SEP into key and value (a line without
    /// SEP has no key). Without it every record is unkeyed.
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// What the broker waits for before acknowledging: 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    pub acks: Acks,
    /// Batch compression: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: Compression,
    /// How long a batch waits for more records.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Send a partition's batch once it holds this many bytes.
    #[arg(long, default_value_t = 64 << 10)]
    pub batch_bytes: usize,
}

/// `sluice consume`
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The topic to read.
    #[arg(long)]
    pub topic: String,
    /// Where to start: earliest, latest, or an offset (for every partition read).
    #[arg(long, default_value = "earliest", value_parser = parse_from)]
    pub from: SeekTo,
    /// Stop after this many records.
    #[arg(long)]
    pub count: Option<u64>,
    /// Keep waiting for new records instead of stopping at the high
    /// watermark the topic had at start.
    #[arg(long)]
    pub follow: bool,
    /// Read only this partition (default: all).
    #[arg(long)]
    pub partition: Option<u32>,
    /// Print `key<SEP>value` instead of the value alone.
    #[arg(long)]
    pub print_key: bool,
    /// The separator --print-key puts between key and value.
    #[arg(long, value_name = "SEP", default_value = "\t")]
    pub key_separator: String,
    /// Consume as a member of this consumer group: partitions are shared
    /// with the group's other members, reading starts at the group's
    /// committed offsets (else per --from: earliest or latest), and the
    /// position is committed after every printed batch. Runs until --count
    /// records or SIGINT/SIGTERM, then leaves the group.
    #[arg(long)]
    pub group: Option<String>,
    /// With --group: how long the coordinator waits for a heartbeat before
    /// it gives this member's partitions to the others.
    #[arg(long, default_value_t = 10_000)]
    pub session_timeout_ms: u64,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

fn parse_acks(s: &str) -> Result<Acks, String> {
    match s {
        "0" => Ok(Acks::None),
        "1" => Ok(Acks::Leader),
        "all" | "-1" => Ok(Acks::All),
        _ => Err(format!("acks must be 0, 1 or all, not {s:?}")),
    }
}

fn parse_from(s: &str) -> Result<SeekTo, String> {
    match s {
        "earliest" => Ok(SeekTo::Earliest),
        "latest" => Ok(SeekTo::Latest),
        _ => match s.parse::<i64>() {
            Ok(o) if o >= 0 => Ok(SeekTo::Offset(o)),
            _ => Err(format!("--from must be earliest, latest or an offset >= 0, not {s:?}")),
        },
    }
}

/// `every-append`, `interval:MS` or `bytes:N`.
fn parse_flush(s: &str) -> Result<FlushConfig, String> {
    let num = |v: &str| match v.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("flush {s:?}: {v:?} is not a positive number")),
    };
    match s.split_once(':') {
        None if s == "every-append" => Ok(FlushConfig::EveryAppend),
        Some(("interval", ms)) => Ok(FlushConfig::IntervalMs(num(ms)?)),
        Some(("bytes", n)) => Ok(FlushConfig::Bytes(num(n)?)),
        _ => Err(format!("flush must be every-append, interval:MS or bytes:N, not {s:?}")),
    }
}

/// Builds a topic config from `key=value` pairs; unknown keys and bad
/// values are errors.
pub fn topic_config(pairs: &[(String, String)]) -> Result<TopicConfig, String> {
    fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
        v.parse().map_err(|_| format!("{key}: {v:?} is not a valid number"))
    }
    let mut c = TopicConfig::default();
    for (key, v) in pairs {
        match key.as_str() {
            "retention.ms" => c.retention_ms = Some(num(key, v)?),
            "retention.bytes" => c.retention_bytes = Some(num(key, v)?),
            "segment.bytes" => c.segment_bytes = Some(num(key, v)?),
            "max.message.bytes" => c.max_message_bytes = Some(num(key, v)?),
            "flush" => c.flush = Some(parse_flush(v)?),
            _ => {
                return Err(format!(
                    "unknown topic config {key:?} (known: retention.ms, retention.bytes, segment.bytes, \
                     max.message.bytes, flush)"
                ))
            }
        }
    }
    Ok(c)
}

/// A topic config as `key=value` words, only the keys that are set.
pub fn format_topic_config(c: &TopicConfig) -> String {
    let mut words = Vec::new();
    if let Some(v) = c.retention_ms {
        words.push(format!("retention.ms={v}"));
    }
    if let Some(v) = c.retention_bytes {
        words.push(format!("retention.bytes={v}"));
    }
    if let Some(v) = c.segment_bytes {
        words.push(format!("segment.bytes={v}"));
    }
    if let Some(v) = c.max_message_bytes {
        words.push(format!("max.message.bytes={v}"));
    }
    if let Some(f) = c.flush {
        words.push(match f {
            FlushConfig::EveryAppend => "flush=every-append".to_string(),
            FlushConfig::IntervalMs(ms) => format!("flush=interval:{ms}"),
            FlushConfig::Bytes(n) => format!("flush=bytes:{n}"),
        });
    }
    if words.is_empty() {
        "(broker defaults)".to_string()
    } else {
        words.join(" ")
    }
}

/// Runs a client command to completion; returns the process exit code.
pub fn run(cmd: ClientCommand) -> i32 {
    // A group member leaves its group on SIGINT/SIGTERM. The signals must be
    // blocked before the runtime starts its threads, or one of those takes
    // the signal and the process dies without leaving.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if matches!(&cmd, ClientCommand::Consume(c) if c.group.is_some()) {
        crate::server::install_signal_thread(stop.clone());
    }
    let ex = match LocalExecutorBuilder::new(Placement::Unbound).io_memory(1 << 20).make() {
        Ok(ex) => ex,
        Err(e) => {
            eprintln!("sluice: cannot start the client runtime: {e}");
            return EXIT_FAILED;
        }
    };
    ex.run(async move {
        let result = match cmd {
            ClientCommand::Topic(t) => topic(t.command).await,
            ClientCommand::Produce(p) => produce(p).await,
            ClientCommand::Consume(c) => consume(c, &stop).await,
            ClientCommand::Group(g) => group(g.command).await,
            ClientCommand::Cluster(c) => cluster(c.command),
            ClientCommand::Partition(p) => partition(p.command),
        };
        match result {
            Ok(()) => 0,
            Err(Failure::Usage(m)) => {
                eprintln!("sluice: {m}");
                EXIT_USAGE
            }
            Err(Failure::Failed(m)) => {
                eprintln!("sluice: {m}");
                EXIT_FAILED
            }
        }
    })
}

/// Why a command failed, which picks its exit code.
enum Failure {
    Usage(String),
    Failed(String),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Failed(e.to_string())
    }
}

async fn connect(args: &ConnectArgs) -> Result<Client, Failure> {
    Client::connect(&args.bootstrap, ClientConfig::default())
        .await
        .map_err(|e| Failure::Failed(format!("cannot reach {}: {e}", args.bootstrap)))
}

async fn topic(cmd: TopicCommand) -> Result<(), Failure> {
    match cmd {
        TopicCommand::Create {
            connect: c,
            name,
            partitions,
            config,
        } => {
            let config = topic_config(&config).map_err(Failure::Usage)?;
            let client = connect(&c).await?;
            client.create_topic(&name, partitions, config).await?;
            println!("created topic {name} with {partitions} partition(s)");
        }
        TopicCommand::List { connect: c } => {
            let client = connect(&c).await?;
            for t in client.list_topics().await? {
                println!("{}", t.name);
            }
        }
        TopicCommand::Describe { connect: c, name } => {
            let client = connect(&c).await?;
            print!("{}", describe(&client.describe_topic(&name).await?));
        }
        TopicCommand::Delete { connect: c, name } => {
            let client = connect(&c).await?;
            client.delete_topic(&name).await?;
            println!("deleted topic {name}");
        }
        TopicCommand::AddPartitions {
            connect: c,
            name,
            partitions,
        } => {
            let client = connect(&c).await?;
            client.create_partitions(&name, partitions).await?;
            println!("topic {name} now has {partitions} partition(s)");
        }
    }
    Ok(())
}

async fn group(cmd: GroupCommand) -> Result<(), Failure> {
    match cmd {
        GroupCommand::List { connect: c } => {
            let client = connect(&c).await?;
            for g in client.list_groups().await? {
                println!("{}\t{}\t{}", g.group_id, g.state, g.protocol_type);
            }
        }
        GroupCommand::Describe { connect: c, group } => {
            let client = connect(&c).await?;
            let described = client.describe_group(&group).await?;
            let committed = client.group_offsets(&group).await?;
            // Every partition committed or assigned, with its log end.
            let mut partitions: std::collections::BTreeSet<(String, u32)> =
                committed.iter().map(|(t, p, ..)| (t.clone(), *p)).collect();
            partitions.extend(assigned(&described).into_iter().map(|(tp, _)| tp));
            let mut ends = Vec::new();
            let topics: std::collections::BTreeSet<&str> = partitions.iter().map(|(t, _)| t.as_str()).collect();
            for topic in topics {
                let parts: Vec<(u32, OffsetSpec)> = partitions
                    .iter()
                    .filter(|(t, _)| t == topic)
                    .map(|(_, p)| (*p, OffsetSpec::Latest))
                    .collect();
                for (p, end) in client.list_offsets(topic, &parts).await? {
                    ends.push((topic.to_string(), p, end.ok()));
                }
            }
            print!("{}", describe_group(&described, &committed, &ends));
        }
        GroupCommand::ResetOffsets {
            connect: c,
            group,
            topic,
            partition,
            to,
        } => {
            let client = connect(&c).await?;
            let partitions: Vec<u32> = match partition {
                Some(p) => vec![p],
                None => (0..client.partition_count(&topic).await?).collect(),
            };
            let targets: Vec<(u32, Result<i64, crate::api::ErrorCode>)> = match to {
                SeekTo::Offset(o) => partitions.iter().map(|&p| (p, Ok(o))).collect(),
                SeekTo::Earliest | SeekTo::Latest | SeekTo::Timestamp(_) => {
                    let spec = match to {
                        SeekTo::Earliest => OffsetSpec::Earliest,
                        SeekTo::Timestamp(ts) => OffsetSpec::Timestamp(ts),
                        _ => OffsetSpec::Latest,
                    };
                    let specs: Vec<(u32, OffsetSpec)> = partitions.iter().map(|&p| (p, spec)).collect();
                    client.list_offsets(&topic, &specs).await?
                }
            };
            let mut offsets = Vec::new();
            for (p, target) in targets {
                let o = target.map_err(|e| Failure::Failed(format!("looking up {topic}-{p}: {e}")))?;
                offsets.push((topic.clone(), p, o));
            }
            client.set_group_offsets(&group, &offsets).await?;
            for (t, p, o) in &offsets {
                println!("{group}\t{t}\t{p}\t{o}");
            }
        }
        GroupCommand::Delete { connect: c, group } => {
            let client = connect(&c).await?;
            client.delete_group(&group).await?;
            println!("deleted group {group}");
        }
    }
    Ok(())
}

/// Each member's assigned partitions: ((topic, partition), member id).
fn assigned(g: &crate::api::DescribedGroup) -> Vec<((String, u32), String)> {
    use crate::group::consumer_protocol::Assignment;
    let mut owner = Vec::new();
    for m in &g.members {
        let assignment = Assignment::decode(&m.assignment)
            .map(|a| a.partitions)
            .unwrap_or_default();
        for (t, ps) in assignment {
            for p in ps {
                owner.push(((t.clone(), p as u32), m.member_id.clone()));
            }
        }
    }
    owner
}

/// The text `group describe` prints: the group, its members and what each
/// was assigned, then per partition (committed or assigned; `ends` lists
/// them with their log ends) the committed offset, log end, lag and owner.
pub fn describe_group(
    g: &crate::api::DescribedGroup,
    committed: &[(String, u32, i64, Option<String>)],
    ends: &[(String, u32, Option<i64>)],
) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "group: {}\nstate: {}\nprotocol: {} {}\nmembers: {}\n",
        g.group_id,
        g.state,
        g.protocol_type,
        g.protocol_name,
        g.members.len()
    );
    let owner = assigned(g);
    for m in &g.members {
        let list: Vec<String> = owner
            .iter()
            .filter(|(_, id)| *id == m.member_id)
            .map(|((t, p), _)| format!("{t}-{p}"))
            .collect();
        let _ = writeln!(
            out,
            "  {} client={} host={} partitions=[{}]",
            m.member_id,
            m.client_id,
            m.client_host,
            list.join(",")
        );
    }
    let _ = writeln!(out, "TOPIC\tPARTITION\tCOMMITTED\tLOG-END\tLAG\tMEMBER");
    let mut rows: Vec<&(String, u32, Option<i64>)> = ends.iter().collect();
    rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    for (t, p, end) in rows {
        let offset = committed.iter().find(|(ct, cp, ..)| ct == t && cp == p).map(|c| c.2);
        let show = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        let lag = match (offset, end) {
            (Some(o), Some(e)) => Some((e - o).max(0)),
            _ => None,
        };
        let member = owner
            .iter()
            .find(|((ot, op), _)| ot == t && op == p)
            .map_or("-", |(_, m)| m.as_str());
        let _ = writeln!(
            out,
            "{t}\t{p}\t{}\t{}\t{}\t{member}",
            show(offset),
            show(*end),
            show(lag)
        );
    }
    out
}

/// The text `topic describe` prints.
pub fn describe(t: &TopicInfo) -> String {
    let mut out = format!(
        "topic: {}\npartitions: {}\nconfig: {}\n",
        t.name,
        t.partitions.len(),
        format_topic_config(&t.config)
    );
    out.push_str(&format!(
        "{:>9}  {:>5}  {:>10}  {:>12}  {:>14}  {}\n",
        "partition", "shard", "shard-port", "log-start", "high-watermark", "error"
    ));
    for p in &t.partitions {
        let error = if p.error == crate::api::ErrorCode::None {
            "-".to_string()
        } else {
            p.error.to_string()
        };
        out.push_str(&format!(
            "{:>9}  {:>5}  {:>10}  {:>12}  {:>14}  {}\n",
            p.partition, p.shard, p.shard_port, p.log_start_offset, p.high_watermark, error
        ));
    }
    out
}

/// Splits a line into key and value at the first `sep`.
fn split_line(line: Vec<u8>, sep: Option<&[u8]>) -> (Option<bytes::Bytes>, bytes::Bytes) {
    let Some(sep) = sep.filter(|s| !s.is_empty()) else {
        return (None, bytes::Bytes::from(line));
    };
    match line.windows(sep.len()).position(|w| w == sep) {
        Some(at) => {
            let line = bytes::Bytes::from(line);
            (Some(line.slice(..at)), line.slice(at + sep.len()..))
        }
        None => (None, bytes::Bytes::from(line)),
    }
}

/// Reads up to `max` lines, returning early once the reader's buffer is
/// drained (so interactive input is sent as it is typed). `eof` once stdin ends.
fn read_lines<R: BufRead>(rd: &mut R, max: usize) -> std::io::Result<(Vec<Vec<u8>>, bool)> {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        if rd.read_until(b'\n', &mut line)? == 0 {
            return Ok((lines, true));
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        lines.push(line);
        if lines.len() >= max || rd.fill_buf()?.is_empty() {
            return Ok((lines, false));
        }
    }
}

/// Delivery results of a produce run.
#[derive(Default)]
struct Tally {
    delivered: std::cell::Cell<u64>,
    failed: std::cell::Cell<u64>,
    first_error: std::cell::RefCell<Option<String>>,
}

async fn produce(args: ProduceArgs) -> Result<(), Failure> {
    let client = connect(&args.connect).await?;
    client
        .partition_count(&args.topic)
        .await
        .map_err(|e| Failure::Failed(format!("topic {}: {e}", args.topic)))?;
    let config = ProducerConfig {
        acks: args.acks,
        compression: args.compression,
        linger: Duration::from_millis(args.linger_ms),
        batch_bytes: args.batch_bytes.max(1),
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client, config);
    let tally = Rc::new(Tally::default());
    let outstanding = Rc::new(glommio::sync::Semaphore::new(SENDS_OUTSTANDING_MAX));
    let sep = args.key_separator.map(String::into_bytes);
    let mut stdin = Some(BufReader::with_capacity(1 << 16, std::io::stdin()));
    while let Some(mut rd) = stdin.take() {
        let (rd, read) = glommio::executor()
            .spawn_blocking(move || {
                let read = read_lines(&mut rd, STDIN_LINES_PER_READ_MAX);
                (rd, read)
            })
            .await;
        let (lines, eof) = read.map_err(|e| Failure::Failed(format!("reading stdin: {e}")))?;
        if lines.is_empty() {
            break;
        }
        // One task per chunk of lines awaits its acknowledgements in order
        // (a task per record cost more than the send itself).
        let permit = outstanding
            .clone()
            .acquire_static_permit(lines.len() as u64)
            .await
            .map_err(|_| Failure::Failed("producer stopped".into()))?;
        let sends: Vec<_> = lines
            .into_iter()
            .map(|line| {
                let (key, value) = split_line(line, sep.as_deref());
                producer.send(&args.topic, key, Some(value), Vec::new())
            })
            .collect();
        let tally = tally.clone();
        glommio::spawn_local(async move {
            for sent in sends {
                match sent.await {
                    Ok(_) => tally.delivered.set(tally.delivered.get() + 1),
                    Err(e) => {
                        tally.failed.set(tally.failed.get() + 1);
                        tally.first_error.borrow_mut().get_or_insert_with(|| e.to_string());
                    }
                }
            }
            drop(permit);
        })
        .detach();
        if !eof {
            stdin = Some(rd);
        }
    }
    producer.flush().await;
    // Every send task ends once its record is acknowledged or failed.
    let _all = outstanding.acquire_permit(SENDS_OUTSTANDING_MAX).await;
    let failed = tally.failed.get();
    if failed > 0 {
        let first = tally.first_error.borrow().clone().unwrap_or_default();
        return Err(Failure::Failed(format!(
            "{failed} record(s) not delivered ({} delivered); first error: {first}",
            tally.delivered.get()
        )));
    }
    Ok(())
}

async fn consume(args: ConsumeArgs, stop: &std::sync::atomic::AtomicBool) -> Result<(), Failure> {
    if let Some(group) = args.group.clone() {
        return consume_group(args, group, stop).await;
    }
    let client = connect(&args.connect).await?;
    let n = client
        .partition_count(&args.topic)
        .await
        .map_err(|e| Failure::Failed(format!("topic {}: {e}", args.topic)))?;
    let partitions: Vec<u32> = match args.partition {
        Some(p) if p < n => vec![p],
        Some(p) => {
            return Err(Failure::Usage(format!(
                "topic {} has no partition {p} (it has {n})",
                args.topic
            )))
        }
        None => (0..n).collect(),
    };
    let mut consumer = Consumer::new(client, ConsumerConfig::default());
    consumer.assign(&args.topic, &partitions);
    for &p in &partitions {
        consumer.seek(&args.topic, p, args.from).await?;
    }
    // Without --follow: read up to the high watermarks as they are now.
    let ends: Option<Vec<(u32, i64)>> = match args.follow {
        true => None,
        false => Some(consumer.end_offsets(&args.topic, &partitions).await?),
    };
    let end_of = |p: u32| {
        ends.as_ref()
            .and_then(|e| e.iter().find(|(q, _)| *q == p))
            .map(|(_, o)| *o)
    };
    let done = |c: &Consumer| {
        ends.is_some()
            && partitions
                .iter()
                .all(|&p| matches!((c.position(&args.topic, p), end_of(p)), (Some(pos), Some(end)) if pos >= end))
    };
    let limit = args.count.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    while printed < limit && !done(&consumer) {
        let records = consumer.poll(CONSUME_POLL).await?;
        let mut out = std::io::BufWriter::new(stdout.lock());
        for r in records {
            if end_of(r.partition).is_some_and(|end| r.offset >= end) {
                continue;
            }
            if printed >= limit {
                break;
            }
            let written = print_record(&mut out, &r, args.print_key.then_some(args.key_separator.as_str()));
            if let Err(e) = written {
                return stdout_failed(e);
            }
            printed += 1;
        }
        if let Err(e) = out.flush() {
            return stdout_failed(e);
        }
    }
    Ok(())
}

/// `consume --group`: a group member that prints what it is given and
/// commits after each printed batch (at-least-once: a crash between print
/// and commit prints the batch again after the rebalance).
async fn consume_group(args: ConsumeArgs, group: String, stop: &std::sync::atomic::AtomicBool) -> Result<(), Failure> {
    if args.partition.is_some() {
        return Err(Failure::Usage("--partition and --group exclude each other".into()));
    }
    let reset = match args.from {
        SeekTo::Earliest => OffsetReset::Earliest,
        SeekTo::Latest => OffsetReset::Latest,
        _ => return Err(Failure::Usage("with --group, --from must be earliest or latest".into())),
    };
    let client = connect(&args.connect).await?;
    let consumer_config = ConsumerConfig {
        reset,
        ..ConsumerConfig::default()
    };
    let session = Duration::from_millis(args.session_timeout_ms);
    let group_config = GroupConfig {
        auto_commit: false,
        session_timeout: session,
        heartbeat_interval: session / 3,
        ..GroupConfig::new(&group)
    };
    let mut consumer = GroupConsumer::new(client, consumer_config, group_config);
    consumer.subscribe(&[args.topic.as_str()]);
    let limit = args.count.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    let mut result = Ok(());
    while printed < limit && !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let records = match consumer.poll(CONSUME_POLL).await {
            Ok(r) => r,
            Err(e) => {
                result = Err(Failure::from(e));
                break;
            }
        };
        if records.is_empty() {
            continue;
        }
        let mut out = std::io::BufWriter::new(stdout.lock());
        // The next offset to read per partition, once printed.
        let mut next = std::collections::BTreeMap::new();
        for r in records {
            if printed >= limit {
                break;
            }
            if let Err(e) = print_record(&mut out, &r, args.print_key.then_some(args.key_separator.as_str())) {
                return stdout_failed(e);
            }
            printed += 1;
            next.insert((r.topic.clone(), r.partition), r.offset + 1);
        }
        if let Err(e) = out.flush() {
            return stdout_failed(e);
        }
        let done: Vec<(String, u32, i64)> = next.into_iter().map(|((t, p), o)| (t.to_string(), p, o)).collect();
        if let Err(e) = consumer.commit_offsets(&done).await {
            tracing::warn!(error = %e, "commit failed; the group rebalanced, records may be printed again");
        }
    }
    if let Err(e) = consumer.close().await {
        tracing::warn!(error = %e, "leaving the group failed");
    }
    result
}

/// A closed stdout (`| head`) ends the command quietly.
fn stdout_failed(e: std::io::Error) -> Result<(), Failure> {
    match e.kind() {
        std::io::ErrorKind::BrokenPipe => Ok(()),
        _ => Err(Failure::Failed(format!("writing stdout: {e}"))),
    }
}

/// Writes `value` or `key<SEP>value` and a newline; a null key or value
/// prints as `null`, like Kafka's console consumer.
fn print_record<W: Write>(out: &mut W, r: &crate::client::ConsumedRecord, sep: Option<&str>) -> std::io::Result<()> {
    fn bytes_or_null<W: Write>(out: &mut W, b: Option<&bytes::Bytes>) -> std::io::Result<()> {
        out.write_all(b.map_or(&b"null"[..], |b| &b[..]))
    }
    if let Some(sep) = sep {
        bytes_or_null(out, r.key.as_ref())?;
        out.write_all(sep.as_bytes())?;
    }
    bytes_or_null(out, r.value.as_ref())?;
    out.write_all(b"\n")
}

/// `sluice cluster describe` (the node's `GET /cluster`, printed) and
/// `sluice cluster elect-leaders` (`POST /cluster/elect-leaders`).
fn cluster(cmd: ClusterCommand) -> Result<(), Failure> {
    match cmd {
        ClusterCommand::Describe { metrics_addr } => admin_http(&metrics_addr, "GET /cluster"),
        ClusterCommand::ElectLeaders { metrics_addr } => admin_http(&metrics_addr, "POST /cluster/elect-leaders"),
    }
}

/// `sluice partition reassign` (`POST /cluster/reassign?...`).
fn partition(cmd: PartitionCommand) -> Result<(), Failure> {
    let PartitionCommand::Reassign {
        metrics_addr,
        topic,
        partition,
        replicas,
        cancel,
    } = cmd;
    let request = if cancel {
        format!("POST /cluster/reassign?topic={topic}&partition={partition}&cancel=true")
    } else {
        let replicas: Vec<String> = replicas.iter().map(u32::to_string).collect();
        format!(
            "POST /cluster/reassign?topic={topic}&partition={partition}&replicas={}",
            replicas.join(",")
        )
    };
    admin_http(&metrics_addr, &request)
}

/// Sends `request` (method and path) to a node's metrics port and prints
/// the answer's body; a non-200 answer is a failure with that body.
fn admin_http(metrics_addr: &str, request: &str) -> Result<(), Failure> {
    use std::io::Read;
    let failed = |e: std::io::Error| Failure::Failed(format!("{metrics_addr}: {e}"));
    let mut s = std::net::TcpStream::connect(metrics_addr).map_err(failed)?;
    s.set_read_timeout(Some(Duration::from_secs(30))).map_err(failed)?;
    s.write_all(format!("{request} HTTP/1.1\r\nHost: sluice\r\nContent-Length: 0\r\n\r\n").as_bytes())
        .map_err(failed)?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(failed)?;
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => {
            print!("{body}");
            Ok(())
        }
        Some((_, body)) => Err(Failure::Failed(body.trim().to_string())),
        None => Err(Failure::Failed("not an HTTP answer".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: ClientCommand,
    }

    fn parse(args: &[&str]) -> Result<ClientCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("sluice").chain(args.iter().copied())).map(|c| c.cmd)
    }

    #[test]
    fn topic_create_parses_configs() {
        let cmd = parse(&[
            "topic",
            "create",
            "orders",
            "--partitions",
            "6",
            "--config",
            "retention.ms=1000",
            "--config",
            "flush=interval:50",
            "--bootstrap",
            "10.0.0.1:9000",
        ])
        .unwrap();
        let ClientCommand::Topic(TopicArgs {
            command:
                TopicCommand::Create {
                    connect,
                    name,
                    partitions,
                    config,
                },
        }) = cmd
        else {
            panic!("{cmd:?}")
        };
        assert_eq!(
            (connect.bootstrap.as_str(), name.as_str(), partitions),
            ("10.0.0.1:9000", "orders", 6)
        );
        let c = topic_config(&config).unwrap();
        assert_eq!(c.retention_ms, Some(1000));
        assert_eq!(c.flush, Some(FlushConfig::IntervalMs(50)));
        assert_eq!(format_topic_config(&c), "retention.ms=1000 flush=interval:50");
    }

    #[test]
    fn topic_add_partitions_parses() {
        let cmd = parse(&["topic", "add-partitions", "orders", "--partitions", "12"]).unwrap();
        let ClientCommand::Topic(TopicArgs {
            command: TopicCommand::AddPartitions { name, partitions, .. },
        }) = cmd
        else {
            panic!("{cmd:?}")
        };
        assert_eq!((name.as_str(), partitions), ("orders", 12));
        assert!(
            parse(&["topic", "add-partitions", "orders"]).is_err(),
            "--partitions is required"
        );
    }

    #[test]
    fn topic_configs_are_checked() {
        let kv = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert!(topic_config(&kv("retention.ms", "soon")).is_err());
        assert!(topic_config(&kv("cleanup.policy", "compact")).is_err());
        assert!(topic_config(&kv("flush", "sometimes")).is_err());
        assert!(topic_config(&kv("flush", "bytes:0")).is_err());
        assert!(topic_config(&kv("max.message.bytes", "-1")).is_err());
        assert_eq!(
            topic_config(&kv("flush", "every-append")).unwrap().flush,
            Some(FlushConfig::EveryAppend)
        );
        assert_eq!(
            topic_config(&kv("segment.bytes", "1048576")).unwrap().segment_bytes,
            Some(1 << 20)
        );
        assert!(parse(&["topic", "create", "t", "--config", "novalue"]).is_err());
        assert_eq!(format_topic_config(&TopicConfig::default()), "(broker defaults)");
    }

    #[test]
    fn every_command_defaults_the_bootstrap() {
        for args in [
            &["topic", "list"][..],
            &["topic", "describe", "t"],
            &["topic", "delete", "t"],
            &["produce", "--topic", "t"],
            &["consume", "--topic", "t"],
        ] {
            let debug = format!("{:?}", parse(args).unwrap());
            assert!(debug.contains(DEFAULT_BOOTSTRAP), "{args:?}: {debug}");
        }
    }

    #[test]
    fn produce_and_consume_flags() {
        let ClientCommand::Produce(p) = parse(&[
            "produce",
            "--topic",
            "t",
            "--acks",
            "0",
            "--compression",
            "zstd",
            "--key-separator",
            ":",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (p.acks, p.compression, p.key_separator.as_deref()),
            (Acks::None, Compression::Zstd, Some(":"))
        );
        assert!(parse(&["produce", "--topic", "t", "--acks", "2"]).is_err());
        assert!(parse(&["produce", "--topic", "t", "--compression", "brotli"]).is_err());
        let ClientCommand::Consume(c) = parse(&[
            "consume",
            "--topic",
            "t",
            "--from",
            "42",
            "--count",
            "3",
            "--follow",
            "--partition",
            "1",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (c.from, c.count, c.follow, c.partition),
            (SeekTo::Offset(42), Some(3), true, Some(1))
        );
        assert_eq!(c.key_separator, "\t");
        let ClientCommand::Consume(c) = parse(&["consume", "--topic", "t"]).unwrap() else {
            panic!()
        };
        assert_eq!((c.from, c.follow), (SeekTo::Earliest, false));
        assert!(parse(&["consume", "--topic", "t", "--from", "-3"]).is_err());
        assert!(parse(&["consume", "--topic", "t", "--from", "soon"]).is_err());
    }

    #[test]
    fn lines_split_at_the_first_separator() {
        let (k, v) = split_line(b"user-1:a:b".to_vec(), Some(b":"));
        assert_eq!((k.as_deref(), &v[..]), (Some(&b"user-1"[..]), &b"a:b"[..]));
        let (k, v) = split_line(b"no-sep".to_vec(), Some(b"::"));
        assert_eq!((k, &v[..]), (None, &b"no-sep"[..]));
        let (k, v) = split_line(b"k::v".to_vec(), Some(b"::"));
        assert_eq!((k.as_deref(), &v[..]), (Some(&b"k"[..]), &b"v"[..]));
        let (k, v) = split_line(b"x:y".to_vec(), None);
        assert_eq!((k, &v[..]), (None, &b"x:y"[..]));
    }

    #[test]
    fn stdin_lines_lose_their_line_endings() {
        let mut rd = BufReader::with_capacity(8, &b"one\r\ntwo\n\nlast"[..]);
        let mut all = Vec::new();
        loop {
            let (lines, eof) = read_lines(&mut rd, 2).unwrap();
            assert!(lines.len() <= 2);
            all.extend(lines);
            if eof {
                break;
            }
        }
        assert_eq!(all, [b"one".to_vec(), b"two".to_vec(), Vec::new(), b"last".to_vec()]);
    }

    #[test]
    fn records_print_like_the_kafka_console_consumer() {
        let r = crate::client::ConsumedRecord {
            topic: Rc::from("t"),
            partition: 0,
            offset: 0,
            timestamp: 0,
            key: None,
            value: Some(bytes::Bytes::from_static(b"v")),
            headers: Vec::new(),
        };
        let mut out = Vec::new();
        print_record(&mut out, &r, Some("\t")).unwrap();
        print_record(&mut out, &r, None).unwrap();
        assert_eq!(out, b"null\tv\nv\n");
    }
}
