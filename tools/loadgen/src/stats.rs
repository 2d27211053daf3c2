//! Measurements shared between the executors (which record) and the main
//! thread (which samples once per second).
//!
//! Each executor thread owns one [`WorkerStats`]: it records under an
//! uncontended mutex (the main thread takes it once per second), and bumps
//! cumulative atomic counters the main thread reads for backlog and drain.
//! Latencies are in microseconds, in HDR histograms bounded by
//! [`LATENCY_US_MAX`] (larger values are clamped, never dropped).
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use hdrhistogram::Histogram;

/// Largest latency a histogram tells apart: 10 minutes.
pub const LATENCY_US_MAX: u64 = 600_000_000;
/// Significant decimal digits the histograms keep.
const SIGFIGS: u8 = 3;

/// An empty latency histogram (µs).
pub fn histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, LATENCY_US_MAX, SIGFIGS) {
        Ok(h) => h,
        Err(e) => panic!("constant histogram bounds are valid: {e}"),
    }
}

/// Merges `from` into `into`; both come from [`histogram`], so the bounds
/// match and adding cannot fail.
pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    if let Err(e) = into.add(from) {
        panic!("histograms with equal bounds add: {e}");
    }
}

/// The run's monotonic clock: nanoseconds since a shared origin. Send
/// times travel in records as this value, so only consumers of this
/// process can read them (they are all in this process).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock { origin: Instant::now() }
    }

    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
}

/// What happened during one sampling interval on one executor.
#[derive(Debug, Clone)]
pub struct Interval {
    pub produced: u64,
    pub produced_bytes: u64,
    pub consumed: u64,
    pub consumed_bytes: u64,
    pub errors: u64,
    pub publish_us: Histogram<u64>,
    pub e2e_us: Histogram<u64>,
}

impl Interval {
    pub fn new() -> Interval {
        Interval {
            produced: 0,
            produced_bytes: 0,
            consumed: 0,
            consumed_bytes: 0,
            errors: 0,
            publish_us: histogram(),
            e2e_us: histogram(),
        }
    }

    pub fn add(&mut self, o: &Interval) {
        self.produced += o.produced;
        self.produced_bytes += o.produced_bytes;
        self.consumed += o.consumed;
        self.consumed_bytes += o.consumed_bytes;
        self.errors += o.errors;
        merge(&mut self.publish_us, &o.publish_us);
        merge(&mut self.e2e_us, &o.e2e_us);
    }
}

impl Default for Interval {
    fn default() -> Self {
        Interval::new()
    }
}

/// Errors whose messages are kept for the report.
const ERROR_MESSAGES_MAX: usize = 8;

/// One executor's measurements.
#[derive(Debug)]
pub struct WorkerStats {
    interval: Mutex<Interval>,
    /// Messages handed to `send`.
    pub sent: AtomicU64,
    /// Messages acknowledged (cumulative).
    pub produced: AtomicU64,
    /// Messages consumed (cumulative).
    pub consumed: AtomicU64,
    pub errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl WorkerStats {
    pub fn new() -> WorkerStats {
        WorkerStats {
            interval: Mutex::new(Interval::new()),
            sent: AtomicU64::new(0),
            produced: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_errors: Mutex::new(Vec::new()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Interval) -> R) -> R {
        // A panicking recorder cannot leave the counters half-updated in a
        // way that matters; keep measuring.
        let mut g = self.interval.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// One acknowledged message of `bytes`, `latency_us` after its
    /// (intended) send time.
    pub fn record_ack(&self, latency_us: u64, bytes: usize) {
        self.with(|i| {
            i.produced += 1;
            i.produced_bytes += bytes as u64;
            i.publish_us.saturating_record(latency_us);
        });
        self.produced.fetch_add(1, Ordering::Relaxed);
    }

    /// Messages consumed in one poll: their count, bytes and end-to-end
    /// latencies.
    pub fn record_consumed(&self, count: u64, bytes: u64, latencies_us: &[u64]) {
        self.with(|i| {
            i.consumed += count;
            i.consumed_bytes += bytes;
            for &l in latencies_us {
                i.e2e_us.saturating_record(l);
            }
        });
        self.consumed.fetch_add(count, Ordering::Relaxed);
    }

    pub fn record_error(&self, what: String) {
        self.with(|i| i.errors += 1);
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock().unwrap_or_else(|p| p.into_inner());
        if first.len() < ERROR_MESSAGES_MAX {
            first.push(what);
        }
    }

    /// Takes what was recorded since the last call.
    pub fn take(&self) -> Interval {
        self.with(std::mem::take)
    }

    pub fn first_errors(&self) -> Vec<String> {
        self.first_errors.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_resets_the_interval_but_not_the_totals() {
        let s = WorkerStats::new();
        s.record_ack(100, 10);
        s.record_ack(300, 10);
        s.record_consumed(2, 20, &[500, 700]);
        s.record_error("boom".into());
        let i = s.take();
        assert_eq!(
            (i.produced, i.produced_bytes, i.consumed, i.consumed_bytes, i.errors),
            (2, 20, 2, 20, 1)
        );
        assert_eq!(i.publish_us.len(), 2);
        assert_eq!(i.e2e_us.max(), 700);
        let j = s.take();
        assert_eq!((j.produced, j.consumed, j.publish_us.len()), (0, 0, 0));
        assert_eq!(s.produced.load(Ordering::Relaxed), 2);
        assert_eq!(s.first_errors(), vec!["boom".to_string()]);
    }

    #[test]
    fn huge_latencies_are_clamped_not_lost() {
        let s = WorkerStats::new();
        s.record_ack(u64::MAX, 1);
        let i = s.take();
        assert_eq!(i.publish_us.len(), 1);
        assert!(i.publish_us.max() >= LATENCY_US_MAX);
    }
}
