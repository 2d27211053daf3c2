//! The results of a run: throughput, latency percentiles, the per-second
//! series, errors; rendered as a human table and as JSON (`--json`). The
//! HTML page (`--html`) is drawn from the same [`Report`].
//!
//! With subscriptions every message is consumed once per subscription, and
//! every consume figure (throughput, counts, end-to-end latency samples,
//! backlog) is the total over all subscriptions.
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::stats::Interval;
use crate::workload::Workload;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Messages measured.
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p75: u64,
    pub p95: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub p99_99: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            mean: (h.mean() * 10.0).round() / 10.0,
            p50: h.value_at_quantile(0.50),
            p75: h.value_at_quantile(0.75),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            p99_99: h.value_at_quantile(0.9999),
            max: h.max(),
        }
    }

    /// In order p50, p75, p95, p99, p99.9, p99.99, max.
    pub fn ordered(&self) -> [u64; 7] {
        [
            self.p50,
            self.p75,
            self.p95,
            self.p99,
            self.p99_9,
            self.p99_99,
            self.max,
        ]
    }
}

/// Messages and bytes per second over the measured window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Throughput {
    pub messages: u64,
    pub bytes: u64,
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
}

impl Throughput {
    pub fn of(messages: u64, bytes: u64, seconds: f64) -> Throughput {
        let per_s = |v: u64| if seconds > 0.0 { v as f64 / seconds } else { 0.0 };
        Throughput {
            messages,
            bytes,
            msgs_per_s: (per_s(messages) * 10.0).round() / 10.0,
            mb_per_s: (per_s(bytes) / 1e4).round() / 100.0,
        }
    }
}

/// One second of the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Seconds since the producers started (end of the interval).
    pub t_s: f64,
    /// "warmup", "measure" or "drain".
    pub phase: &'static str,
    pub produce_msgs_per_s: f64,
    pub produce_mb_per_s: f64,
    pub consume_msgs_per_s: f64,
    pub consume_mb_per_s: f64,
    /// Consumptions still due at the end of the interval: acknowledged x
    /// subscriptions (1 without subscriptions) - consumed.
    pub backlog: u64,
    pub errors: u64,
    pub publish_p50_us: u64,
    pub publish_p99_us: u64,
    pub publish_max_us: u64,
    pub e2e_p50_us: u64,
    pub e2e_p99_us: u64,
    pub e2e_max_us: u64,
}

impl SeriesPoint {
    pub fn of(t_s: f64, seconds: f64, phase: &'static str, i: &Interval, backlog: u64) -> SeriesPoint {
        let p = Throughput::of(i.produced, i.produced_bytes, seconds);
        let c = Throughput::of(i.consumed, i.consumed_bytes, seconds);
        let q = |h: &Histogram<u64>, x: f64| if h.is_empty() { 0 } else { h.value_at_quantile(x) };
        SeriesPoint {
            t_s: (t_s * 1000.0).round() / 1000.0,
            phase,
            produce_msgs_per_s: p.msgs_per_s,
            produce_mb_per_s: p.mb_per_s,
            consume_msgs_per_s: c.msgs_per_s,
            consume_mb_per_s: c.mb_per_s,
            backlog,
            errors: i.errors,
            publish_p50_us: q(&i.publish_us, 0.5),
            publish_p99_us: q(&i.publish_us, 0.99),
            publish_max_us: i.publish_us.max(),
            e2e_p50_us: q(&i.e2e_us, 0.5),
            e2e_p99_us: q(&i.e2e_us, 0.99),
            e2e_max_us: i.e2e_us.max(),
        }
    }
}

/// Quantiles of the distribution plot (HdrHistogram's percentile view).
pub const DISTRIBUTION_QUANTILES: &[f64] = &[
    0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99, 0.995, 0.999, 0.9995, 0.9999,
    0.99999, 1.0,
];

/// One point of the latency distribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DistributionPoint {
    pub quantile: f64,
    pub publish_us: u64,
    pub e2e_us: u64,
}

pub fn distribution(publish: &Histogram<u64>, e2e: &Histogram<u64>) -> Vec<DistributionPoint> {
    let q = |h: &Histogram<u64>, x: f64| if h.is_empty() { 0 } else { h.value_at_quantile(x) };
    DISTRIBUTION_QUANTILES
        .iter()
        .map(|&x| DistributionPoint {
            quantile: x,
            publish_us: q(publish, x),
            e2e_us: q(e2e, x),
        })
        .collect()
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub workload: Workload,
    /// "fixed-rate" (latency from intended send times) or "max-rate" (as
    /// fast as the in-flight window allows; latency from the send call).
    pub mode: &'static str,
    /// "embedded" or the bootstrap address.
    pub broker: String,
    /// Executor threads of the load generator.
    pub executors: usize,
    /// Seconds over which throughput was measured (warm-up excluded).
    pub measured_s: f64,
    /// Acknowledged messages.
    pub produce: Throughput,
    /// Consumed messages over all consumers; with subscriptions, the total
    /// over every subscription (each reads every message, so a run that
    /// keeps up consumes subscriptions x the produce rate).
    pub consume: Throughput,
    /// Send (intended, at a fixed rate) → acknowledgement.
    pub publish_latency_us: Percentiles,
    /// Send (intended, at a fixed rate) → consumed; one sample per message
    /// and subscription.
    pub end_to_end_latency_us: Percentiles,
    /// Over the whole run, warm-up and drain included.
    pub messages_sent: u64,
    /// Acknowledged.
    pub messages_produced: u64,
    /// Over all subscriptions: `messages_produced x subscriptions` in a
    /// complete run with subscriptions, `messages_produced` without.
    pub messages_consumed: u64,
    /// With subscriptions, what each consumed (each equals
    /// `messages_produced` in a complete run); empty without.
    pub messages_consumed_by_subscription: Vec<u64>,
    pub errors: u64,
    pub error_messages: Vec<String>,
    /// The embedded broker's resident memory at the end of the measured window.
    pub broker_rss_bytes: Option<u64>,
    pub series: Vec<SeriesPoint>,
    pub distribution: Vec<DistributionPoint>,
}

impl Report {
    pub fn to_json(&self) -> String {
        match serde_json::to_string_pretty(self) {
            Ok(s) => s,
            // Plain structs of numbers and strings always serialize.
            Err(e) => panic!("report serializes: {e}"),
        }
    }

    /// The human summary printed at the end of a run.
    pub fn table(&self) -> String {
        let w = &self.workload;
        let mut s = String::new();
        let rate = if self.mode == "max-rate" {
            "max-rate (as fast as the in-flight window allows)".to_string()
        } else {
            format!("{} msgs/s", w.producer_rate)
        };
        let consumers = if w.subscriptions > 0 {
            format!("{} subscription(s) x {} consumers", w.subscriptions, w.consumers)
        } else {
            format!("{} consumers", w.consumers)
        };
        s += &format!(
            "workload {}: {} topic(s) x {} partitions, {} B messages, {} producers, {consumers}, {rate}\n",
            w.name, w.topics, w.partitions_per_topic, w.message_size, w.producers
        );
        s += &format!(
            "acks={} compression={} linger={}ms batch={}B keyed={}  broker: {}  executors: {}  measured: {:.1}s\n\n",
            w.acks, w.compression, w.linger_ms, w.batch_bytes, w.keyed, self.broker, self.executors, self.measured_s
        );
        s += &format!("{:<10}{:>14}{:>12}{:>14}\n", "", "msgs/s", "MB/s", "messages");
        for (name, t) in [("produce", &self.produce), ("consume", &self.consume)] {
            s += &format!(
                "{name:<10}{:>14.0}{:>12.2}{:>14}\n",
                t.msgs_per_s, t.mb_per_s, t.messages
            );
        }
        s += &format!(
            "\n{:<16}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>10}\n",
            "latency (µs)", "p50", "p75", "p95", "p99", "p99.9", "p99.99", "max", "count"
        );
        for (name, p) in [
            ("publish", &self.publish_latency_us),
            ("end-to-end", &self.end_to_end_latency_us),
        ] {
            s += &format!("{name:<16}");
            for v in p.ordered() {
                s += &format!("{v:>9}");
            }
            s += &format!("{:>10}\n", p.count);
        }
        s += &format!(
            "\nsent {}  acknowledged {}  consumed {}",
            self.messages_sent, self.messages_produced, self.messages_consumed
        );
        if !self.messages_consumed_by_subscription.is_empty() {
            let each: Vec<String> = self
                .messages_consumed_by_subscription
                .iter()
                .map(u64::to_string)
                .collect();
            s += &format!(" (by subscription: {})", each.join(", "));
        }
        s += &format!("  errors {}", self.errors);
        if let Some(rss) = self.broker_rss_bytes {
            s += &format!("  broker RSS {:.1} MiB", rss as f64 / (1 << 20) as f64);
        }
        s.push('\n');
        for e in &self.error_messages {
            s += &format!("error: {e}\n");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::histogram;

    fn synthetic() -> Histogram<u64> {
        let mut h = histogram();
        for v in 1..=10_000u64 {
            h.saturating_record(v);
        }
        h
    }

    #[test]
    fn percentiles_of_a_synthetic_histogram() {
        let p = Percentiles::of(&synthetic());
        assert_eq!(p.count, 10_000);
        let near = |got: u64, want: u64| got.abs_diff(want) <= want / 500 + 1;
        assert!(near(p.p50, 5_000), "{p:?}");
        assert!(near(p.p75, 7_500), "{p:?}");
        assert!(near(p.p95, 9_500), "{p:?}");
        assert!(near(p.p99, 9_900), "{p:?}");
        assert!(near(p.p99_9, 9_990), "{p:?}");
        assert!(near(p.max, 10_000), "{p:?}");
        assert!(p.ordered().windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(Percentiles::of(&histogram()), Percentiles::default());
    }

    fn report(workload: Workload, i: &Interval) -> Report {
        Report {
            workload,
            mode: "fixed-rate",
            broker: "embedded".into(),
            executors: 2,
            measured_s: 2.0,
            produce: Throughput::of(200, 200_000, 2.0),
            consume: Throughput::of(200, 200_000, 2.0),
            publish_latency_us: Percentiles::of(&i.publish_us),
            end_to_end_latency_us: Percentiles::of(&i.e2e_us),
            messages_sent: 200,
            messages_produced: 200,
            messages_consumed: 200,
            messages_consumed_by_subscription: Vec::new(),
            errors: 0,
            error_messages: vec![],
            broker_rss_bytes: Some(1 << 20),
            series: vec![SeriesPoint::of(1.0, 1.0, "measure", i, 0)],
            distribution: distribution(&i.publish_us, &i.e2e_us),
        }
    }

    #[test]
    fn json_has_the_documented_shape() {
        let mut i = Interval::new();
        i.produced = 100;
        i.produced_bytes = 100_000;
        i.consumed = 100;
        i.consumed_bytes = 100_000;
        i.publish_us = synthetic();
        i.e2e_us = synthetic();
        let r = report(Workload::default(), &i);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["produce"]["msgs_per_s"], 100.0);
        assert_eq!(v["produce"]["mb_per_s"], 0.1);
        assert_eq!(v["workload"]["partitions_per_topic"], 16);
        for key in ["publish_latency_us", "end_to_end_latency_us"] {
            for p in ["p50", "p75", "p95", "p99", "p99_9", "p99_99", "max", "count"] {
                assert!(v[key][p].is_u64(), "{key}.{p}");
            }
        }
        assert_eq!(v["errors"], 0);
        assert_eq!(v["series"][0]["produce_msgs_per_s"], 100.0);
        assert_eq!(
            v["distribution"].as_array().unwrap().len(),
            DISTRIBUTION_QUANTILES.len()
        );
        assert_eq!(v["workload"]["subscriptions"], 0);
        assert_eq!(v["messages_consumed_by_subscription"], serde_json::json!([]));
        let t = r.table();
        assert!(t.contains("p99.99") && t.contains("end-to-end"), "{t}");
        assert!(t.contains(", 2 consumers,") && !t.contains("subscription"), "{t}");
    }

    #[test]
    fn subscriptions_show_in_json_and_table() {
        let workload = Workload {
            subscriptions: 2,
            consumers: 3,
            ..Workload::default()
        };
        let mut r = report(workload, &Interval::new());
        r.consume = Throughput::of(400, 400_000, 2.0);
        r.messages_consumed = 400;
        r.messages_consumed_by_subscription = vec![200, 200];
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["workload"]["subscriptions"], 2);
        assert_eq!(v["workload"]["consumers"], 3);
        assert_eq!(v["consume"]["msgs_per_s"], 200.0);
        assert_eq!(v["messages_consumed_by_subscription"], serde_json::json!([200, 200]));
        let t = r.table();
        assert!(t.contains("2 subscription(s) x 3 consumers"), "{t}");
        assert!(t.contains("consumed 400 (by subscription: 200, 200)"), "{t}");
    }
}
