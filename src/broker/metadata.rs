//! Topic metadata of a single node: topics, their partitions' shard
//! placement and per-topic config, durable in `<data>/meta/topics`.
//!
//! Owned (written) by shard 0, the controller of a single node; every shard
//! reads immutable snapshots (`Arc<Metadata>`), swapped whole on change.
//!
//! File format: magic "SLMD" u32 | version u16 | reserved u16 | body_len
//! u32 | crc32c(body) u32 | body (TOML). Written to a temp file, fsynced,
//! renamed over the old one, directory fsynced: a crash leaves the old or
//! the new file whole, never half of one. A file that fails its checks
//! stops the node with a clear message (it is never silently replaced).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::api::{ErrorCode, FlushConfig, TopicConfig};
use crate::envelope::{self, Envelope};

const ENVELOPE: Envelope = Envelope {
    magic: *b"SLMD",
    version: 1,
};
const BODY_BYTES_MAX: usize = 64 << 20;
/// Kafka's limit on topic name length.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Partitions one topic may have on this node.
pub const PARTITIONS_MAX: u32 = 10_000;

/// A topic's config as stored (here and in the cluster's metadata log).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfigFile {
    retention_ms: Option<i64>,
    retention_bytes: Option<i64>,
    segment_bytes: Option<u64>,
    max_message_bytes: Option<u32>,
    flush: Option<String>,
}

impl From<&TopicConfig> for TopicConfigFile {
    fn from(c: &TopicConfig) -> Self {
        TopicConfigFile {
            retention_ms: c.retention_ms,
            retention_bytes: c.retention_bytes,
            segment_bytes: c.segment_bytes,
            max_message_bytes: c.max_message_bytes,
            flush: c.flush.map(|f| match f {
                FlushConfig::EveryAppend => "every-append".to_string(),
                FlushConfig::IntervalMs(ms) => format!("interval:{ms}"),
                FlushConfig::Bytes(n) => format!("bytes:{n}"),
            }),
        }
    }
}

impl TopicConfigFile {
    pub fn to_config(&self) -> Result<TopicConfig, String> {
        Ok(TopicConfig {
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            segment_bytes: self.segment_bytes,
            max_message_bytes: self.max_message_bytes,
            flush: self.flush.as_deref().map(crate::config::parse_flush).transpose()?,
        })
    }
}

/// One topic: the shard of each partition, and its config overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    pub name: String,
    /// `shards[p]` owns partition p.
    pub shards: Vec<u32>,
    pub config: TopicConfig,
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicFile {
    name: String,
    shards: Vec<u32>,
    config: TopicConfigFile,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct MetadataFile {
    topics: Vec<TopicFile>,
}

/// An immutable view of all topics.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    pub topics: BTreeMap<String, TopicMeta>,
}

impl Metadata {
    pub fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    /// The shard owning `topic`/`partition`, if both exist.
    pub fn owner(&self, topic: &str, partition: u32) -> Option<u32> {
        self.topics.get(topic)?.shards.get(partition as usize).copied()
    }

    /// Partitions per shard, for even placement.
    pub fn load_per_shard(&self, shards: usize) -> Vec<usize> {
        let mut load = vec![0usize; shards];
        for t in self.topics.values() {
            for &s in &t.shards {
                if let Some(l) = load.get_mut(s as usize) {
                    *l += 1;
                }
            }
        }
        load
    }

    /// Places `partitions` new partitions: each on the currently least
    /// loaded shard (lowest index on ties), so shards stay even.
    pub fn place(&self, partitions: u32, shards: usize) -> Vec<u32> {
        let mut load = self.load_per_shard(shards);
        (0..partitions)
            .map(|_| {
                let (shard, _) = load.iter().enumerate().min_by_key(|&(i, l)| (*l, i)).unwrap_or((0, &0));
                load[shard] += 1;
                shard as u32
            })
            .collect()
    }

    /// `name` grown to `total` partitions: the existing ones keep their
    /// shards, only the new ones are placed (evenly, as `place` does).
    /// Errors: no such topic, or `total` not above the current count or
    /// above `PARTITIONS_MAX`.
    pub fn grow(&self, name: &str, total: u32, shards: usize) -> Result<TopicMeta, (ErrorCode, String)> {
        let Some(topic) = self.topic(name) else {
            return Err((ErrorCode::UnknownTopicOrPartition, format!("no topic {name}")));
        };
        let current = topic.shards.len();
        if total as usize <= current {
            return Err((
                ErrorCode::InvalidPartitions,
                format!("topic {name} has {current} partitions; the new count {total} must be larger"),
            ));
        }
        if total > PARTITIONS_MAX {
            return Err((
                ErrorCode::InvalidPartitions,
                format!("partitions must be at most {PARTITIONS_MAX}, not {total}"),
            ));
        }
        let added = total - current as u32;
        let mut grown = topic.clone();
        grown.shards.extend(self.place(added, shards));
        assert_eq!(grown.shards.len(), total as usize);
        assert_eq!(
            grown.shards[..current],
            topic.shards[..],
            "existing placement is unchanged"
        );
        Ok(grown)
    }
}

/// Checks what a new topic asks for before it is placed: its name and
/// its partition count (whether it already exists is the caller's to ask).
pub fn check_new_topic(nt: &crate::api::NewTopic) -> Result<(), (ErrorCode, String)> {
    validate_topic_name(&nt.name).map_err(|m| (ErrorCode::InvalidTopic, m))?;
    if nt.partitions == 0 || nt.partitions > PARTITIONS_MAX {
        return Err((
            ErrorCode::InvalidPartitions,
            format!("partitions must be 1..={PARTITIONS_MAX}"),
        ));
    }
    Ok(())
}

/// Whether a client may delete `name`: the offsets topic is the groups'.
pub fn check_deletable(name: &str) -> Result<(), (ErrorCode, String)> {
    if name == crate::group::offsets::OFFSETS_TOPIC {
        return Err((
            ErrorCode::InvalidTopic,
            format!("{name} is internal: delete groups instead"),
        ));
    }
    Ok(())
}

/// Checks a topic name the way Kafka does.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("topic name {name:?} is not allowed"));
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(format!("topic name is longer than {TOPIC_NAME_BYTES_MAX} bytes"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(format!(
            "topic name {name:?} may only hold ASCII letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// The durable metadata and its current snapshot. Shared by all shards;
/// only shard 0 calls `update`.
#[derive(Debug)]
pub struct MetadataStore {
    dir: PathBuf,
    current: RwLock<Arc<Metadata>>,
}

impl MetadataStore {
    /// Loads `<data_dir>/meta/topics`, or starts empty if there is none.
    pub fn open(data_dir: &Path) -> Result<MetadataStore, String> {
        let dir = data_dir.join("meta");
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let path = dir.join("topics");
        let meta = match std::fs::read(&path) {
            Ok(bytes) => decode(&bytes).map_err(|e| {
                format!(
                    "topic metadata {} is damaged ({e}); refusing to start rather than lose topics. \
                     Restore it from a backup or move it away to start with no topics.",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Metadata::default(),
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        let _ = std::fs::remove_file(dir.join("topics.tmp"));
        Ok(MetadataStore {
            dir,
            current: RwLock::new(Arc::new(meta)),
        })
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Metadata> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Persists `next` durably, then makes it the current snapshot.
    /// Blocking file I/O: called only for admin operations, on shard 0.
    pub fn update(&self, next: Metadata) -> Result<(), String> {
        let bytes = encode(&next)?;
        envelope::replace_file(&self.dir, "topics", &bytes)
            .map_err(|e| format!("writing {}: {e}", self.dir.join("topics").display()))?;
        let next = Arc::new(next);
        match self.current.write() {
            Ok(mut g) => *g = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        Ok(())
    }
}

fn encode(meta: &Metadata) -> Result<Vec<u8>, String> {
    let file = MetadataFile {
        topics: meta
            .topics
            .values()
            .map(|t| TopicFile {
                name: t.name.clone(),
                shards: t.shards.clone(),
                config: (&t.config).into(),
            })
            .collect(),
    };
    let body = toml::to_string(&file).map_err(|e| format!("encoding metadata: {e}"))?;
    ENVELOPE.seal(body.as_bytes()).map_err(|e| e.to_string())
}

fn decode(bytes: &[u8]) -> Result<Metadata, String> {
    let body = ENVELOPE.open(bytes, BODY_BYTES_MAX).map_err(|e| e.to_string())?;
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    let file: MetadataFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut meta = Metadata::default();
    for t in file.topics {
        validate_topic_name(&t.name)?;
        let config = t.config.to_config()?;
        meta.topics.insert(
            t.name.clone(),
            TopicMeta {
                name: t.name,
                shards: t.shards,
                config,
            },
        );
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metadata {
        let mut m = Metadata::default();
        let shards = m.place(5, 2);
        let config = TopicConfig {
            retention_ms: Some(5),
            flush: Some(FlushConfig::IntervalMs(9)),
            ..Default::default()
        };
        m.topics.insert(
            "a.b-c_d".into(),
            TopicMeta {
                name: "a.b-c_d".into(),
                shards,
                config,
            },
        );
        m
    }

    #[test]
    fn placement_is_even() {
        let m = sample();
        assert_eq!(m.topic("a.b-c_d").map(|t| t.shards.clone()), Some(vec![0, 1, 0, 1, 0]));
        assert_eq!(m.place(3, 2), vec![1, 0, 1]);
    }

    #[test]
    fn growing_keeps_placement_and_checks_counts() {
        let m = sample();
        let grown = m.grow("a.b-c_d", 8, 2).expect("grows");
        // Shard 0 holds 3 of the 5, shard 1 holds 2: the new ones even it out.
        assert_eq!(grown.shards, vec![0, 1, 0, 1, 0, 1, 0, 1]);
        assert_eq!(
            grown.config,
            m.topic("a.b-c_d").map(|t| t.config.clone()).unwrap_or_default()
        );
        for (total, error) in [
            (5, ErrorCode::InvalidPartitions),
            (3, ErrorCode::InvalidPartitions),
            (PARTITIONS_MAX + 1, ErrorCode::InvalidPartitions),
        ] {
            assert_eq!(m.grow("a.b-c_d", total, 2).map_err(|e| e.0), Err(error), "{total}");
        }
        assert_eq!(
            m.grow("nope", 9, 2).map_err(|e| e.0),
            Err(ErrorCode::UnknownTopicOrPartition)
        );
    }

    #[test]
    fn store_round_trips_and_rejects_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = MetadataStore::open(dir.path()).expect("open empty");
        assert!(store.snapshot().topics.is_empty());
        store.update(sample()).expect("update");
        let again = MetadataStore::open(dir.path()).expect("reopen");
        assert_eq!(again.snapshot().topics, sample().topics);
        let path = dir.path().join("meta/topics");
        let good = std::fs::read(&path).expect("read");
        for at in [0, 5, 9, 13, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            std::fs::write(&path, &bad).expect("write");
            let err = MetadataStore::open(dir.path()).expect_err("damage detected");
            assert!(err.contains("refusing to start"), "{err}");
        }
        // A leftover temp file from a crash mid-update is ignored.
        std::fs::write(&path, &good).expect("restore");
        std::fs::write(dir.path().join("meta/topics.tmp"), b"half").expect("tmp");
        assert_eq!(
            MetadataStore::open(dir.path()).expect("open").snapshot().topics,
            sample().topics
        );
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        for bad in ["", ".", "..", "a b", "a/b", "ü"] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
