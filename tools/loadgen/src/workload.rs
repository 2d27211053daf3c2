//! The workload: what to run, in the OpenMessaging Benchmark's terms
//! (topics, partitions per topic, message size, producers, consumers,
//! producer rate, warm-up, duration, subscriptions) plus the producer
//! settings Sluice's client takes (acks, compression, linger, batch size,
//! keys).
//!
//! Consumers come in one of two shapes: with `subscriptions = 0` a static
//! split of the partitions among `consumers` plain consumers (every message
//! read once); with `subscriptions = N > 0`, N consumer groups of
//! `consumers` members each, every group reading every message once (so N
//! reads per message, see [`Workload::fanout`]).
//!
//! A workload comes from a TOML file (a path, or the name of a bundled
//! file such as `max-rate-1kb`), then command-line flags override single
//! fields. [`Workload::validate`] bounds every field before anything runs.
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice::api::Acks;
use sluice::record::Compression;

/// Workload files shipped inside the binary, so `--workload NAME` works
/// from any directory. The same files live in `tools/loadgen/workloads/`.
pub const BUNDLED: &[(&str, &str)] = &[
    (
        "1-topic-16-partitions-1kb",
        include_str!("../workloads/1-topic-16-partitions-1kb.toml"),
    ),
    (
        "1-topic-100-partitions-1kb",
        include_str!("../workloads/1-topic-100-partitions-1kb.toml"),
    ),
    ("max-rate-100b", include_str!("../workloads/max-rate-100b.toml")),
    ("max-rate-1kb", include_str!("../workloads/max-rate-1kb.toml")),
    ("max-rate-64kb", include_str!("../workloads/max-rate-64kb.toml")),
];

/// Bytes at the start of every value that carry the send time.
pub const TIMESTAMP_BYTES: usize = 8;
/// Largest message accepted (the broker's default max message size).
pub const MESSAGE_BYTES_MAX: usize = 1 << 20;
/// Upper bounds that keep a typo from exhausting the host.
pub const TOPICS_MAX: u32 = 10_000;
pub const PARTITIONS_PER_TOPIC_MAX: u32 = 10_000;
pub const CLIENTS_MAX: u32 = 1_024;
/// Consumer groups per run; their members together stay within `CLIENTS_MAX`.
pub const SUBSCRIPTIONS_MAX: u32 = 64;
pub const DURATION_S_MAX: f64 = 7.0 * 24.0 * 3600.0;

/// One benchmark run's description. Every field has a default, so a file
/// names only what differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Workload {
    /// Shown in reports.
    pub name: String,
    pub topics: u32,
    pub partitions_per_topic: u32,
    /// Bytes per message value (at least 8: the send time travels there).
    pub message_size: usize,
    /// Payload bytes come from this file (cut or repeated to
    /// `message_size`); random bytes when absent.
    pub payload_file: Option<String>,
    /// Producer instances in all, split over the executors.
    pub producers: u32,
    /// With `subscriptions = 0`: consumer instances in all, the partitions
    /// split statically among them. With subscriptions: members per
    /// subscription (consumer group).
    pub consumers: u32,
    /// Consumer groups (OMB's subscriptions), each reading every message of
    /// every topic once; 0: no groups, the static split above.
    pub subscriptions: u32,
    /// Messages per second over all producers; 0 = as fast as the bounded
    /// in-flight window allows (max-rate mode).
    pub producer_rate: f64,
    /// Seconds run but left out of the results.
    pub warmup_s: f64,
    /// Seconds measured.
    pub duration_s: f64,
    /// "0", "1" or "all".
    pub acks: String,
    /// "none", "gzip", "snappy", "lz4" or "zstd".
    pub compression: String,
    pub linger_ms: u64,
    pub batch_bytes: usize,
    /// Each message gets a distinct key (spread by murmur2) instead of the
    /// sticky partitioner.
    pub keyed: bool,
    /// Unacknowledged messages per producer; `send` waits beyond it.
    pub inflight_max: u32,
    /// Flush policy of the topics the run creates ("every-append",
    /// "interval:MS", "bytes:N"); the broker default when absent.
    pub flush: Option<String>,
    /// Max-rate mode: producers pause while more than this many
    /// consumptions are due (acknowledged x [`fanout`](Workload::fanout) -
    /// consumed, so over all subscriptions), so the rate found is the
    /// maximum *sustainable* one (consumers keep up). 0: 64 MiB worth of
    /// messages.
    pub backlog_max: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            name: "default".to_string(),
            topics: 1,
            partitions_per_topic: 16,
            message_size: 1024,
            payload_file: None,
            producers: 2,
            consumers: 2,
            subscriptions: 0,
            producer_rate: 10_000.0,
            warmup_s: 2.0,
            duration_s: 10.0,
            acks: "1".to_string(),
            compression: "none".to_string(),
            linger_ms: 1,
            batch_bytes: 64 << 10,
            keyed: false,
            inflight_max: 4096,
            flush: None,
            backlog_max: 0,
        }
    }
}

/// Field overrides from the command line; `None` keeps the workload's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub topics: Option<u32>,
    pub partitions_per_topic: Option<u32>,
    pub message_size: Option<usize>,
    pub payload_file: Option<String>,
    pub producers: Option<u32>,
    pub consumers: Option<u32>,
    pub subscriptions: Option<u32>,
    pub producer_rate: Option<f64>,
    pub warmup_s: Option<f64>,
    pub duration_s: Option<f64>,
    pub acks: Option<String>,
    pub compression: Option<String>,
    pub linger_ms: Option<u64>,
    pub batch_bytes: Option<usize>,
    pub keyed: Option<bool>,
    pub inflight_max: Option<u32>,
    pub flush: Option<String>,
}

impl Workload {
    /// Parses a workload from TOML text.
    pub fn from_toml(text: &str) -> Result<Workload, String> {
        toml::from_str(text).map_err(|e| format!("workload: {e}"))
    }

    /// Loads `spec`: a bundled workload's name, or a path to a TOML file.
    pub fn load(spec: &str) -> Result<Workload, String> {
        let name = spec.trim_end_matches(".toml");
        if let Some((_, text)) = BUNDLED.iter().find(|(n, _)| *n == name) {
            return Workload::from_toml(text);
        }
        let path = Path::new(spec);
        let text = std::fs::read_to_string(path).map_err(|e| {
            let names: Vec<&str> = BUNDLED.iter().map(|(n, _)| *n).collect();
            format!(
                "workload {spec}: {e} (not a file, nor one of the bundled: {})",
                names.join(", ")
            )
        })?;
        let mut w = Workload::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if w.name == Workload::default().name {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                w.name = stem.to_string();
            }
        }
        Ok(w)
    }

    /// Applies command-line overrides.
    pub fn apply(&mut self, o: &Overrides) {
        fn set<T: Clone>(field: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *field = v.clone();
            }
        }
        set(&mut self.topics, &o.topics);
        set(&mut self.partitions_per_topic, &o.partitions_per_topic);
        set(&mut self.message_size, &o.message_size);
        if o.payload_file.is_some() {
            self.payload_file = o.payload_file.clone();
        }
        set(&mut self.producers, &o.producers);
        set(&mut self.consumers, &o.consumers);
        set(&mut self.subscriptions, &o.subscriptions);
        set(&mut self.producer_rate, &o.producer_rate);
        set(&mut self.warmup_s, &o.warmup_s);
        set(&mut self.duration_s, &o.duration_s);
        set(&mut self.acks, &o.acks);
        set(&mut self.compression, &o.compression);
        set(&mut self.linger_ms, &o.linger_ms);
        set(&mut self.batch_bytes, &o.batch_bytes);
        set(&mut self.keyed, &o.keyed);
        set(&mut self.inflight_max, &o.inflight_max);
        if o.flush.is_some() {
            self.flush = o.flush.clone();
        }
    }

    /// Checks every field against its bound.
    pub fn validate(&self) -> Result<(), String> {
        let range = |name: &str, v: u64, lo: u64, hi: u64| {
            if v < lo || v > hi {
                Err(format!("{name} must be {lo}..={hi}, not {v}"))
            } else {
                Ok(())
            }
        };
        range("topics", self.topics.into(), 1, TOPICS_MAX.into())?;
        range(
            "partitions_per_topic",
            self.partitions_per_topic.into(),
            1,
            PARTITIONS_PER_TOPIC_MAX.into(),
        )?;
        range(
            "message_size",
            self.message_size as u64,
            TIMESTAMP_BYTES as u64,
            MESSAGE_BYTES_MAX as u64,
        )?;
        range("producers", self.producers.into(), 1, CLIENTS_MAX.into())?;
        range("consumers", self.consumers.into(), 0, CLIENTS_MAX.into())?;
        range("subscriptions", self.subscriptions.into(), 0, SUBSCRIPTIONS_MAX.into())?;
        if self.subscriptions > 0 {
            if self.consumers == 0 {
                return Err(format!(
                    "subscriptions = {} needs consumers >= 1 (consumers per subscription)",
                    self.subscriptions
                ));
            }
            let members = u64::from(self.subscriptions) * u64::from(self.consumers);
            if members > u64::from(CLIENTS_MAX) {
                return Err(format!(
                    "subscriptions x consumers (members of all groups) must be <= {CLIENTS_MAX}, not {} x {} = {members}",
                    self.subscriptions, self.consumers
                ));
            }
        }
        range("inflight_max", self.inflight_max.into(), 1, 1 << 20)?;
        range("batch_bytes", self.batch_bytes as u64, 1, 64 << 20)?;
        range("linger_ms", self.linger_ms, 0, 60_000)?;
        if !(self.producer_rate.is_finite() && self.producer_rate >= 0.0) {
            return Err(format!("producer_rate must be >= 0, not {}", self.producer_rate));
        }
        for (name, v) in [("warmup_s", self.warmup_s), ("duration_s", self.duration_s)] {
            if !(v.is_finite() && (0.0..=DURATION_S_MAX).contains(&v)) {
                return Err(format!("{name} must be 0..={DURATION_S_MAX}, not {v}"));
            }
        }
        if self.duration_s <= 0.0 {
            return Err("duration_s must be > 0".into());
        }
        self.acks()?;
        self.compression()?;
        if let Some(f) = &self.flush {
            sluice::config::parse_flush(f)?;
        }
        Ok(())
    }

    pub fn acks(&self) -> Result<Acks, String> {
        match self.acks.as_str() {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            other => Err(format!("acks must be 0, 1 or all, not {other:?}")),
        }
    }

    pub fn compression(&self) -> Result<Compression, String> {
        match self.compression.as_str() {
            "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "snappy" => Ok(Compression::Snappy),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            other => Err(format!(
                "compression must be none, gzip, snappy, lz4 or zstd, not {other:?}"
            )),
        }
    }

    pub fn max_rate(&self) -> bool {
        self.producer_rate == 0.0
    }

    /// How many times each acknowledged message is consumed in a complete
    /// run: once per subscription with groups, once with the static split,
    /// never without consumers. Backlog and drain compare
    /// `acknowledged x fanout` with the consumed count.
    pub fn fanout(&self) -> u64 {
        match (self.subscriptions, self.consumers) {
            (0, 0) => 0,
            (0, _) => 1,
            (n, _) => n.into(),
        }
    }

    /// Consumer instances in all: every group's members, or the static
    /// consumers.
    pub fn consumer_instances(&self) -> u32 {
        self.consumers.saturating_mul(self.subscriptions.max(1))
    }

    /// The consumer backlog (messages) at which max-rate producers pause.
    pub fn backlog_max(&self) -> u64 {
        match self.backlog_max {
            0 => ((64u64 << 20) / self.message_size.max(1) as u64).max(u64::from(self.inflight_max)),
            n => n,
        }
    }

    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup_s)
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration_s)
    }

    /// The payload template: `message_size` bytes from the payload file
    /// (repeated or cut), or pseudo-random bytes (so compression has
    /// realistic work). The first 8 bytes are overwritten per message.
    pub fn payload(&self) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(self.message_size);
        match &self.payload_file {
            Some(path) => {
                let data = std::fs::read(path).map_err(|e| format!("payload_file {path}: {e}"))?;
                if data.is_empty() {
                    return Err(format!("payload_file {path} is empty"));
                }
                while out.len() < self.message_size {
                    let take = (self.message_size - out.len()).min(data.len());
                    out.extend_from_slice(&data[..take]);
                }
            }
            None => {
                // xorshift64*: deterministic, no dependency.
                let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
                while out.len() < self.message_size {
                    x ^= x >> 12;
                    x ^= x << 25;
                    x ^= x >> 27;
                    let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
                    let take = (self.message_size - out.len()).min(8);
                    out.extend_from_slice(&v.to_le_bytes()[..take]);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundled_workload_parses_and_validates() {
        for (name, text) in BUNDLED {
            let w = Workload::from_toml(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&w.name, name);
            w.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let w = Workload::load("max-rate-64kb").unwrap();
        assert!(w.max_rate());
        assert_eq!(w.message_size, 65_536);
        assert_eq!(
            Workload::load("1-topic-100-partitions-1kb")
                .unwrap()
                .partitions_per_topic,
            100
        );
    }

    #[test]
    fn file_fields_and_defaults() {
        let w = Workload::from_toml("topics = 3\nmessage_size = 100\nacks = \"all\"\nkeyed = true\n").unwrap();
        assert_eq!(w.topics, 3);
        assert_eq!(w.message_size, 100);
        assert_eq!(w.acks().unwrap(), Acks::All);
        assert!(w.keyed);
        assert_eq!(w.partitions_per_topic, Workload::default().partitions_per_topic);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_rejected() {
        assert!(Workload::from_toml("topicz = 3\n").is_err());
        assert!(Workload::from_toml("topics = \"x\"\n").is_err());
        let bad = |f: &dyn Fn(&mut Workload)| {
            let mut w = Workload::default();
            f(&mut w);
            w.validate().is_err()
        };
        assert!(bad(&|w| w.message_size = 4));
        assert!(bad(&|w| w.topics = 0));
        assert!(bad(&|w| w.producer_rate = -1.0));
        assert!(bad(&|w| w.producer_rate = f64::NAN));
        assert!(bad(&|w| w.acks = "2".into()));
        assert!(bad(&|w| w.compression = "brotli".into()));
        assert!(bad(&|w| w.duration_s = 0.0));
        assert!(bad(&|w| w.flush = Some("sometimes".into())));
        assert!(Workload::default().validate().is_ok());
        assert!(bad(&|w| w.subscriptions = SUBSCRIPTIONS_MAX + 1));
        assert!(Workload::load("/nonexistent/workload.toml").is_err());
    }

    #[test]
    fn subscriptions_are_groups_of_consumers() {
        let w = Workload::from_toml("subscriptions = 3\nconsumers = 4\n").unwrap();
        w.validate().unwrap();
        assert_eq!((w.subscriptions, w.fanout(), w.consumer_instances()), (3, 3, 12));
        let d = Workload::default();
        assert_eq!((d.subscriptions, d.fanout(), d.consumer_instances()), (0, 1, 2));
        let none = Workload {
            consumers: 0,
            ..Workload::default()
        };
        none.validate().unwrap();
        assert_eq!((none.fanout(), none.consumer_instances()), (0, 0));

        let err = |f: &dyn Fn(&mut Workload)| {
            let mut w = Workload::default();
            f(&mut w);
            w.validate().unwrap_err()
        };
        let e = err(&|w| {
            w.subscriptions = 2;
            w.consumers = 0;
        });
        assert!(e.contains("subscriptions = 2 needs consumers >= 1"), "{e}");
        let e = err(&|w| {
            w.subscriptions = 2;
            w.consumers = CLIENTS_MAX / 2 + 1;
        });
        assert!(e.contains("subscriptions x consumers") && e.contains("= 1026"), "{e}");
        let e = err(&|w| w.subscriptions = 65);
        assert!(e.contains("subscriptions must be 0..=64, not 65"), "{e}");
        let ok = Workload {
            subscriptions: 2,
            consumers: CLIENTS_MAX / 2,
            ..Workload::default()
        };
        ok.validate().unwrap();

        let mut w = Workload::default();
        w.apply(&Overrides {
            subscriptions: Some(2),
            consumers: Some(3),
            ..Overrides::default()
        });
        assert_eq!((w.subscriptions, w.consumers, w.fanout()), (2, 3, 2));
        w.apply(&Overrides::default());
        assert_eq!(w.subscriptions, 2);
    }

    #[test]
    fn flags_override_the_file() {
        let mut w = Workload::load("1-topic-16-partitions-1kb").unwrap();
        let before = w.clone();
        w.apply(&Overrides {
            producer_rate: Some(0.0),
            duration_s: Some(2.0),
            compression: Some("lz4".into()),
            keyed: Some(true),
            ..Overrides::default()
        });
        assert!(w.max_rate());
        assert_eq!(w.duration_s, 2.0);
        assert_eq!(w.compression().unwrap(), Compression::Lz4);
        assert!(w.keyed);
        assert_eq!(w.partitions_per_topic, before.partitions_per_topic);
        assert_eq!(w.message_size, before.message_size);
        w.apply(&Overrides::default());
        assert!(w.max_rate());
    }

    #[test]
    fn payload_has_the_asked_size() {
        let w = Workload {
            message_size: 1000,
            ..Workload::default()
        };
        let p = w.payload().unwrap();
        assert_eq!(p.len(), 1000);
        assert_eq!(p, w.payload().unwrap());
        let dir = std::env::temp_dir().join(format!("loadgen-payload-{}", std::process::id()));
        std::fs::write(&dir, b"abc").unwrap();
        let w = Workload {
            message_size: 10,
            payload_file: Some(dir.display().to_string()),
            ..Workload::default()
        };
        assert_eq!(w.payload().unwrap(), b"abcabcabca");
        let _ = std::fs::remove_file(&dir);
    }
}
