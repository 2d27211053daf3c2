//! Committed offsets: their record encoding in the internal offsets topic
//! and the in-memory view a coordinator rebuilds by replaying its partition.
//!
//! Each commit is one record in a v2 batch appended to the partition of
//! `__consumer_offsets` that the group hashes to:
//!
//! ```text
//! key   = u8 version (1) | u16 len | group | u16 len | topic | u32 partition
//! value = u8 version (1) | i64 offset | i32 leader epoch | i64 commit ms
//!         | i16 metadata len (-1: none) | metadata
//! ```
//!
//! A null value is a tombstone: the group's offset for that partition is
//! gone (group deleted or expired). Replaying the partition from its start
//! and applying every record in order gives the current view; the last
//! record for a key wins. All integers are big-endian.
//!
//! Pure: no I/O. The broker's group service owns the log and feeds records
//! in and out.

use std::collections::{BTreeMap, HashMap};

use bytes::{BufMut, Bytes, BytesMut};

/// The internal topic that holds committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

const KEY_VERSION: u8 = 1;
const VALUE_VERSION: u8 = 1;

/// Which partition of the offsets topic holds `group_id`'s offsets: a
/// stable hash (FNV-1a, not Java's String.hashCode: Sluice need not place
/// groups where Kafka would, only the same way every time).
pub fn partition_for(group_id: &str, partitions: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in group_id.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % partitions.max(1)
}

/// A committed offset for one partition of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    /// When it was committed (ms since the epoch): offsets retention
    /// counts from the newest commit of an empty group.
    pub commit_ms: i64,
}

/// Names one committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OffsetKey {
    pub group: String,
    pub topic: String,
    pub partition: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OffsetRecordError {
    #[error("offset record key is malformed: {0}")]
    Key(&'static str),
    #[error("offset record value is malformed: {0}")]
    Value(&'static str),
    #[error("offset record version {0} is newer than this broker knows")]
    Version(u8),
}

/// The record key for `key`.
pub fn encode_key(key: &OffsetKey) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + 4 + key.group.len() + key.topic.len() + 4);
    b.put_u8(KEY_VERSION);
    put_str(&mut b, &key.group);
    put_str(&mut b, &key.topic);
    b.put_u32(key.partition);
    b.freeze()
}

/// The record value for `offset`.
pub fn encode_value(offset: &CommittedOffset) -> Bytes {
    let meta = offset.metadata.as_deref();
    let mut b = BytesMut::with_capacity(1 + 8 + 4 + 8 + 2 + meta.map_or(0, str::len));
    b.put_u8(VALUE_VERSION);
    b.put_i64(offset.offset);
    b.put_i32(offset.leader_epoch);
    b.put_i64(offset.commit_ms);
    match meta {
        None => b.put_i16(-1),
        Some(m) => put_str(&mut b, m),
    }
    b.freeze()
}

fn put_str(b: &mut BytesMut, s: &str) {
    // Group ids, topic names and metadata are bounded far below 32 KiB by
    // the request checks; clamp rather than wrap just in case.
    let bytes = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
    b.put_u16(bytes.len() as u16);
    b.put_slice(bytes);
}

/// Longest metadata string a commit may carry (Kafka's
/// offset.metadata.max.bytes default).
pub const METADATA_MAX_BYTES: usize = 4096;

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.buf.split_at_checked(n)?;
        self.buf = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|b| b.try_into().ok())
    }

    fn str(&mut self) -> Option<String> {
        let len = u16::from_be_bytes(self.array()?);
        let bytes = self.take(usize::from(len))?;
        String::from_utf8(bytes.to_vec()).ok()
    }
}

/// Decodes a record of the offsets topic.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<(OffsetKey, Option<CommittedOffset>), OffsetRecordError> {
    let mut k = Reader { buf: key };
    match k.u8() {
        Some(KEY_VERSION) => {}
        Some(v) => return Err(OffsetRecordError::Version(v)),
        None => return Err(OffsetRecordError::Key("empty")),
    }
    let group = k.str().ok_or(OffsetRecordError::Key("group id"))?;
    let topic = k.str().ok_or(OffsetRecordError::Key("topic"))?;
    let partition = u32::from_be_bytes(k.array().ok_or(OffsetRecordError::Key("partition"))?);
    let key = OffsetKey {
        group,
        topic,
        partition,
    };
    let Some(value) = value else {
        return Ok((key, None));
    };
    let mut v = Reader { buf: value };
    match v.u8() {
        Some(VALUE_VERSION) => {}
        Some(ver) => return Err(OffsetRecordError::Version(ver)),
        None => return Err(OffsetRecordError::Value("empty")),
    }
    let offset = i64::from_be_bytes(v.array().ok_or(OffsetRecordError::Value("offset"))?);
    let leader_epoch = i32::from_be_bytes(v.array().ok_or(OffsetRecordError::Value("leader epoch"))?);
    let commit_ms = i64::from_be_bytes(v.array().ok_or(OffsetRecordError::Value("commit time"))?);
    let meta_len: [u8; 2] = v.array().ok_or(OffsetRecordError::Value("metadata"))?;
    let metadata = if i16::from_be_bytes(meta_len) < 0 {
        None
    } else {
        let len = usize::from(u16::from_be_bytes(meta_len));
        let bytes = v.take(len).ok_or(OffsetRecordError::Value("metadata"))?;
        Some(String::from_utf8(bytes.to_vec()).map_err(|_| OffsetRecordError::Value("metadata is not UTF-8"))?)
    };
    Ok((
        key,
        Some(CommittedOffset {
            offset,
            leader_epoch,
            metadata,
            commit_ms,
        }),
    ))
}

/// The committed offsets of the groups of one coordinator.
#[derive(Debug, Default)]
pub struct OffsetStore {
    groups: HashMap<String, BTreeMap<(String, u32), CommittedOffset>>,
}

impl OffsetStore {
    /// Applies one record (a commit, or with `None` a tombstone).
    pub fn apply(&mut self, key: OffsetKey, value: Option<CommittedOffset>) {
        match value {
            Some(v) => {
                self.groups
                    .entry(key.group)
                    .or_default()
                    .insert((key.topic, key.partition), v);
            }
            None => {
                if let Some(offsets) = self.groups.get_mut(&key.group) {
                    offsets.remove(&(key.topic, key.partition));
                    if offsets.is_empty() {
                        self.groups.remove(&key.group);
                    }
                }
            }
        }
    }

    pub fn get(&self, group: &str, topic: &str, partition: u32) -> Option<&CommittedOffset> {
        self.groups.get(group)?.get(&(topic.to_string(), partition))
    }

    /// Every committed offset of `group`, ordered by topic and partition.
    pub fn group(&self, group: &str) -> impl Iterator<Item = (&str, u32, &CommittedOffset)> {
        self.groups
            .get(group)
            .into_iter()
            .flat_map(|m| m.iter().map(|((t, p), o)| (t.as_str(), *p, o)))
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    /// Groups with at least one committed offset.
    pub fn group_ids(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    /// Keys of every offset of `group`: what deleting the group tombstones.
    pub fn keys_of(&self, group: &str) -> Vec<OffsetKey> {
        self.group(group)
            .map(|(topic, partition, _)| OffsetKey {
                group: group.to_string(),
                topic: topic.to_string(),
                partition,
            })
            .collect()
    }

    /// Groups whose newest commit is older than `retention_ms` and that
    /// `is_empty` says have no members: their offsets have expired.
    pub fn expired_groups(&self, now_ms: i64, retention_ms: i64, is_empty: impl Fn(&str) -> bool) -> Vec<String> {
        self.groups
            .iter()
            .filter(|(g, offsets)| {
                let newest = offsets.values().map(|o| o.commit_ms).max().unwrap_or(i64::MIN);
                newest < now_ms.saturating_sub(retention_ms) && is_empty(g)
            })
            .map(|(g, _)| g.clone())
            .collect()
    }

    /// Every live offset: what a snapshot rewrites.
    pub fn all(&self) -> impl Iterator<Item = (OffsetKey, &CommittedOffset)> {
        self.groups.iter().flat_map(|(g, m)| {
            m.iter().map(move |((t, p), o)| {
                (
                    OffsetKey {
                        group: g.clone(),
                        topic: t.clone(),
                        partition: *p,
                    },
                    o,
                )
            })
        })
    }

    pub fn len(&self) -> usize {
        self.groups.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(g: &str, t: &str, p: u32) -> OffsetKey {
        OffsetKey {
            group: g.into(),
            topic: t.into(),
            partition: p,
        }
    }

    fn off(offset: i64, metadata: Option<&str>, commit_ms: i64) -> CommittedOffset {
        CommittedOffset {
            offset,
            leader_epoch: 3,
            metadata: metadata.map(str::to_string),
            commit_ms,
        }
    }

    #[test]
    fn records_round_trip() {
        for value in [
            None,
            Some(off(42, None, 7)),
            Some(off(-1, Some(""), 1)),
            Some(off(9, Some("ü"), 2)),
        ] {
            let k = key("grp", "topic-a", 17);
            let kb = encode_key(&k);
            let vb = value.as_ref().map(encode_value);
            assert_eq!(decode(&kb, vb.as_deref()), Ok((k, value)));
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let kb = encode_key(&key("g", "t", 1));
        let vb = encode_value(&off(5, Some("meta"), 9));
        for n in 0..kb.len() {
            assert!(decode(&kb[..n], Some(&vb)).is_err(), "key cut at {n}");
        }
        for n in 0..vb.len() {
            assert!(decode(&kb, Some(&vb[..n])).is_err(), "value cut at {n}");
        }
        let mut newer = kb.to_vec();
        newer[0] = 9;
        assert_eq!(decode(&newer, None), Err(OffsetRecordError::Version(9)));
    }

    #[test]
    fn last_record_wins_and_tombstones_remove() {
        let mut s = OffsetStore::default();
        s.apply(key("g", "t", 0), Some(off(1, None, 1)));
        s.apply(key("g", "t", 0), Some(off(5, None, 2)));
        s.apply(key("g", "t", 1), Some(off(8, None, 2)));
        s.apply(key("h", "t", 0), Some(off(3, None, 2)));
        assert_eq!(s.get("g", "t", 0).map(|o| o.offset), Some(5));
        assert_eq!(s.len(), 3);
        s.apply(key("g", "t", 0), None);
        s.apply(key("g", "t", 1), None);
        assert!(!s.has_group("g"));
        assert!(s.has_group("h"));
        assert_eq!(s.keys_of("h"), vec![key("h", "t", 0)]);
    }

    #[test]
    fn only_old_offsets_of_empty_groups_expire() {
        let mut s = OffsetStore::default();
        s.apply(key("old-empty", "t", 0), Some(off(1, None, 100)));
        s.apply(key("old-busy", "t", 0), Some(off(1, None, 100)));
        s.apply(key("fresh", "t", 0), Some(off(1, None, 950)));
        s.apply(key("mixed", "t", 0), Some(off(1, None, 100)));
        s.apply(key("mixed", "t", 1), Some(off(1, None, 990)));
        let mut expired = s.expired_groups(1000, 500, |g| g != "old-busy");
        expired.sort();
        assert_eq!(expired, vec!["old-empty".to_string()]);
    }

    #[test]
    fn partition_for_is_stable_and_in_range() {
        assert_eq!(partition_for("group-1", 8), partition_for("group-1", 8));
        for i in 0..1000 {
            assert!(partition_for(&format!("g{i}"), 7) < 7);
        }
        assert_eq!(partition_for("anything", 0), 0);
        let spread: std::collections::HashSet<u32> = (0..100).map(|i| partition_for(&format!("g{i}"), 8)).collect();
        assert_eq!(spread.len(), 8, "100 groups should use all 8 partitions");
    }
}
