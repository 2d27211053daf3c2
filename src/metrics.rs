//! Prometheus metrics: per-shard counters and histograms, and the text
//! endpoint (`--metrics-addr`, `GET /metrics`) served by shard 0.
//!
//! Each shard writes only its own `ShardMetrics` (relaxed atomics, no
//! contention); the endpoint reads all of them. Code that runs on a shard
//! thread reaches that shard's metrics through a thread-local set when the
//! shard starts, so the storage layer can record fsync latency and cache
//! hits without knowing about shards.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS_S: [f64; 16] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_S.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS_S.iter().position(|&b| s <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos().min(u128::from(u64::MAX)) as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, le) in BUCKETS_S.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum_ns.load(Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// One shard's metrics.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    pub produce_requests: AtomicU64,
    pub produce_bytes: AtomicU64,
    pub produce_records: AtomicU64,
    pub fetch_requests: AtomicU64,
    pub fetch_bytes: AtomicU64,
    pub other_requests: AtomicU64,
    pub request_errors: AtomicU64,
    pub connections: AtomicI64,
    pub partitions: AtomicI64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub produce_latency: Histogram,
    pub fetch_latency: Histogram,
    pub fsync_latency: Histogram,
}

thread_local!(static CURRENT: RefCell<Option<Arc<ShardMetrics>>> = const { RefCell::new(None) });

/// Makes `m` the metrics of the shard running on this thread.
pub fn install(m: Arc<ShardMetrics>) {
    CURRENT.with(|c| *c.borrow_mut() = Some(m));
}

/// Runs `f` on this thread's shard metrics, if it has any.
pub fn with<R>(f: impl FnOnce(&ShardMetrics) -> R) -> Option<R> {
    CURRENT.with(|c| c.borrow().as_ref().map(|m| f(m)))
}

/// A metric family: name, help, and how to read it from a shard.
type Family<T> = (&'static str, &'static str, fn(&ShardMetrics) -> T);
type HistogramFamily = (&'static str, &'static str, fn(&ShardMetrics) -> &Histogram);

/// The Prometheus text exposition of every shard's metrics.
pub fn render(shards: &[Arc<ShardMetrics>]) -> String {
    let mut out = String::new();
    let counters: [Family<u64>; 9] = [
        (
            "sluice_produce_requests_total",
            "Produce requests per partition handled",
            |m| m.produce_requests.load(Relaxed),
        ),
        ("sluice_produce_bytes_total", "Record batch bytes appended", |m| {
            m.produce_bytes.load(Relaxed)
        }),
        ("sluice_produce_records_total", "Records appended", |m| {
            m.produce_records.load(Relaxed)
        }),
        (
            "sluice_fetch_requests_total",
            "Fetch requests per partition handled",
            |m| m.fetch_requests.load(Relaxed),
        ),
        ("sluice_fetch_bytes_total", "Record batch bytes served", |m| {
            m.fetch_bytes.load(Relaxed)
        }),
        (
            "sluice_other_requests_total",
            "Metadata, admin and offset requests",
            |m| m.other_requests.load(Relaxed),
        ),
        (
            "sluice_request_errors_total",
            "Partition results with an error code",
            |m| m.request_errors.load(Relaxed),
        ),
        ("sluice_cache_hits_total", "Reads served from the batch cache", |m| {
            m.cache_hits.load(Relaxed)
        }),
        ("sluice_cache_misses_total", "Reads that went to a segment file", |m| {
            m.cache_misses.load(Relaxed)
        }),
    ];
    for (name, help, get) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (i, m) in shards.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {}", get(m));
        }
    }
    let gauges: [Family<i64>; 2] = [
        ("sluice_connections", "Open client connections", |m| {
            m.connections.load(Relaxed)
        }),
        ("sluice_partitions", "Partitions owned", |m| m.partitions.load(Relaxed)),
    ];
    for (name, help, get) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (i, m) in shards.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {}", get(m));
        }
    }
    let _ = writeln!(
        out,
        "# HELP sluice_cache_hit_ratio Batch cache hits over all reads\n# TYPE sluice_cache_hit_ratio gauge"
    );
    for (i, m) in shards.iter().enumerate() {
        let (h, miss) = (m.cache_hits.load(Relaxed), m.cache_misses.load(Relaxed));
        let ratio = if h + miss == 0 {
            0.0
        } else {
            h as f64 / (h + miss) as f64
        };
        let _ = writeln!(out, "sluice_cache_hit_ratio{{shard=\"{i}\"}} {ratio}");
    }
    let hists: [HistogramFamily; 3] = [
        ("sluice_produce_latency_seconds", "Partition produce latency", |m| {
            &m.produce_latency
        }),
        (
            "sluice_fetch_latency_seconds",
            "Fetch request latency (includes long-poll waits)",
            |m| &m.fetch_latency,
        ),
        (
            "sluice_fsync_latency_seconds",
            "fdatasync latency of partition logs",
            |m| &m.fsync_latency,
        ),
    ];
    for (name, help, get) in hists {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, m) in shards.iter().enumerate() {
            get(m).render(&mut out, name, &format!("shard=\"{i}\""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_text_is_prometheus() {
        let m = Arc::new(ShardMetrics::default());
        m.fsync_latency.observe(Duration::from_micros(30));
        m.fsync_latency.observe(Duration::from_millis(3));
        m.fsync_latency.observe(Duration::from_secs(10));
        m.produce_bytes.fetch_add(42, Relaxed);
        let text = render(&[m.clone(), Arc::new(ShardMetrics::default())]);
        assert!(text.contains("sluice_produce_bytes_total{shard=\"0\"} 42\n"));
        assert!(text.contains("sluice_produce_bytes_total{shard=\"1\"} 0\n"));
        assert!(
            text.contains("sluice_fsync_latency_seconds_bucket{shard=\"0\",le=\"0.00005\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("sluice_fsync_latency_seconds_bucket{shard=\"0\",le=\"0.005\"} 2\n"));
        assert!(text.contains("sluice_fsync_latency_seconds_bucket{shard=\"0\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("sluice_fsync_latency_seconds_count{shard=\"0\"} 3\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().expect("value");
            assert!(value.parse::<f64>().is_ok(), "bad sample line {line}");
        }
    }
}
