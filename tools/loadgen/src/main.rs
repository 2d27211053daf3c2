//! `sluice-loadgen`: the bundled load generator of Sluice.
//!
//! Runs a workload in the OpenMessaging Benchmark's terms (see
//! [`workload`]) against a broker (`--bootstrap`), or against an embedded
//! broker it starts in a temp dir. Producers and consumers run
//! thread-per-core on the native client ([`worker`]); publish and
//! end-to-end latency go into HDR histograms ([`stats`]); the main thread
//! samples once per second for the progress line and the series, and at
//! the end prints a table and writes `--json` / `--html` ([`report`],
//! [`html`]).
mod broker;
mod html;
mod report;
mod run;
mod schedule;
mod stats;
mod subscription;
mod worker;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::workload::{Overrides, Workload};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Load generator for Sluice: OpenMessaging-Benchmark-style workloads,
/// publish and end-to-end latency (HDR histograms), JSON and HTML reports.
/// With no --bootstrap it starts an embedded broker in a temp dir.
#[derive(Debug, Parser)]
#[command(name = "sluice-loadgen", version)]
struct Cli {
    /// A workload file (TOML) or the name of a bundled one:
    /// 1-topic-16-partitions-1kb, 1-topic-100-partitions-1kb, max-rate-100b,
    /// max-rate-1kb, max-rate-64kb. Flags below override its fields.
    #[arg(short, long)]
    workload: Option<String>,
    /// A running broker (HOST:PORT[,...]); none: start an embedded one.
    #[arg(long)]
    bootstrap: Option<String>,
    /// Shards of the embedded broker (default: one per core).
    #[arg(long)]
    broker_shards: Option<usize>,
    /// Parent directory of the embedded broker's data (default: the temp
    /// dir; it must support O_DIRECT, so not tmpfs).
    #[arg(long)]
    broker_dir: Option<PathBuf>,
    /// Load generator executors, one pinned per core (default: one per core).
    #[arg(long)]
    executors: Option<usize>,
    /// The core executor 0 is pinned to; executor i goes on core
    /// (first + i) mod cores. With `--broker-shards 1 --executors 1
    /// --first-core 1`, the embedded broker and the load generator each
    /// own a core instead of sharing both.
    #[arg(long, default_value_t = 0)]
    first_core: usize,
    #[arg(long)]
    topics: Option<u32>,
    #[arg(long)]
    partitions: Option<u32>,
    /// Bytes per message (at least 8).
    #[arg(long)]
    message_size: Option<usize>,
    /// Payload bytes from this file instead of random bytes.
    #[arg(long)]
    payload_file: Option<String>,
    #[arg(long)]
    producers: Option<u32>,
    /// Consumers in all; with --subscriptions, consumers per subscription.
    #[arg(long)]
    consumers: Option<u32>,
    /// Consumer groups, each reading every message once (members start at
    /// the log end); 0 = no groups: the consumers split the partitions.
    #[arg(long)]
    subscriptions: Option<u32>,
    /// Messages per second over all producers; 0 = max-rate.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of warm-up, left out of the results.
    #[arg(long)]
    warmup: Option<f64>,
    /// Seconds measured.
    #[arg(long)]
    duration: Option<f64>,
    /// 0, 1 or all.
    #[arg(long)]
    acks: Option<String>,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long)]
    compression: Option<String>,
    #[arg(long)]
    linger_ms: Option<u64>,
    #[arg(long)]
    batch_bytes: Option<usize>,
    /// Give every message a distinct key (murmur2 partitioning).
    #[arg(long)]
    keyed: bool,
    /// Unacknowledged messages per producer.
    #[arg(long)]
    inflight: Option<u32>,
    /// Flush policy of the created topics: every-append, interval:MS, bytes:N.
    #[arg(long)]
    flush: Option<String>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// No per-second progress line.
    #[arg(short, long)]
    quiet: bool,
}

impl Cli {
    fn overrides(&self) -> Overrides {
        Overrides {
            topics: self.topics,
            partitions_per_topic: self.partitions,
            message_size: self.message_size,
            payload_file: self.payload_file.clone(),
            producers: self.producers,
            consumers: self.consumers,
            subscriptions: self.subscriptions,
            producer_rate: self.rate,
            warmup_s: self.warmup,
            duration_s: self.duration,
            acks: self.acks.clone(),
            compression: self.compression.clone(),
            linger_ms: self.linger_ms,
            batch_bytes: self.batch_bytes,
            keyed: self.keyed.then_some(true),
            inflight_max: self.inflight,
            flush: self.flush.clone(),
        }
    }

    fn workload(&self) -> Result<Workload, String> {
        let mut w = match &self.workload {
            Some(spec) => Workload::load(spec)?,
            None => Workload::default(),
        };
        w.apply(&self.overrides());
        w.validate()?;
        Ok(w)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(broker::CHILD_ARG) {
        return match broker::child_main(&args[2..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sluice-loadgen: embedded broker: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let cli = Cli::parse();
    match main_inner(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("sluice-loadgen: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs and reports; `Ok(false)` when the run had errors.
fn main_inner(cli: &Cli) -> Result<bool, String> {
    let workload = cli.workload()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let executors = cli.executors.unwrap_or(cores).clamp(1, 256);
    let embedded = match &cli.bootstrap {
        Some(_) => None,
        None => {
            let shards = cli.broker_shards.unwrap_or(cores).clamp(1, 256);
            eprintln!("starting an embedded broker ({shards} shards)...");
            Some(broker::EmbeddedBroker::start(shards, cli.broker_dir.clone())?)
        }
    };
    let bootstrap = match (&cli.bootstrap, &embedded) {
        (Some(b), _) => b.clone(),
        (None, Some(e)) => e.bootstrap.clone(),
        (None, None) => unreachable!("an embedded broker exists without --bootstrap"),
    };
    let label = if embedded.is_some() {
        "embedded".to_string()
    } else {
        bootstrap.clone()
    };
    let outcome = run::run(run::Options {
        workload,
        bootstrap,
        broker_label: label,
        executors,
        first_core: cli.first_core,
        progress: !cli.quiet,
        broker_rss: &|| embedded.as_ref().and_then(|e| e.rss_bytes()),
    });
    if let Some(e) = embedded {
        if let Err(e) = e.stop() {
            eprintln!("sluice-loadgen: {e}");
        }
    }
    let report = outcome?;
    print!("{}", report.table());
    if let Some(path) = &cli.json {
        std::fs::write(path, report.to_json()).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    if let Some(path) = &cli.html {
        std::fs::write(path, html::render(&report)).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(report.errors == 0)
}
