//! Kafka's ConsumerProtocol: the subscription a member puts in JoinGroup's
//! protocol metadata and the assignment the leader hands out through
//! SyncGroup. The coordinator treats both as opaque bytes; members (and
//! tools that describe groups) read them.
//!
//! ```text
//! bytes = i16 version | ConsumerProtocolSubscription or ...Assignment at that version
//! ```
//!
//! The struct fields are the `kafka-protocol` crate's generated codec; this
//! module owns the version prefix, the choice of version and the conversion
//! to plain types. Invariants:
//!
//! - decoding never panics and never allocates more than a small multiple of
//!   the input: every count and length is checked against the bytes left
//!   before the generated decoder runs (`LengthCheck`);
//! - a version newer than we know is read as the newest we know and the
//!   fields it appended are ignored, as Kafka's `ConsumerProtocol` does
//!   (forward compatibility); bytes after the fields of a known version are
//!   ignored likewise; negative versions are rejected;
//! - encoding writes the lowest version that carries every field that is
//!   set, so older decoders read what they can and lose nothing.
//!
//! Pure: no I/O, no shard affinity.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

/// The JoinGroup protocol type of Kafka consumers.
pub const PROTOCOL_TYPE: &str = "consumer";

/// The newest subscription version this module reads and writes.
pub const SUBSCRIPTION_VERSION_MAX: i16 = 3;

/// The newest assignment version this module reads.
pub const ASSIGNMENT_VERSION_MAX: i16 = 3;

/// The version [`Assignment::encode`] writes. Every assignment version has
/// the same fields, so the oldest one is the one every client reads.
pub const ASSIGNMENT_VERSION_ENCODED: i16 = 0;

/// [`Subscription::generation_id`] when the member does not know (or its
/// client predates subscription v2).
pub const GENERATION_ID_UNKNOWN: i32 = -1;

// `LengthCheck` walks the layouts of versions up to the maxima above; a
// crate upgrade that adds a version must extend it before raising them.
const _: () = assert!(ConsumerProtocolSubscription::VERSIONS.max == SUBSCRIPTION_VERSION_MAX);
const _: () = assert!(ConsumerProtocolAssignment::VERSIONS.max == ASSIGNMENT_VERSION_MAX);

const VERSION_BYTES: usize = 2;
const SUBSCRIPTION: &str = "subscription";
const ASSIGNMENT: &str = "assignment";

/// Why ConsumerProtocol bytes could not be decoded or encoded. Every
/// variant is an operating error (what a peer sent or what a caller asked
/// for); nothing here panics on input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The input ends inside a field.
    #[error("{message}: truncated in {field}: {needed} bytes needed, {remaining} left")]
    Truncated {
        /// "subscription" or "assignment".
        message: &'static str,
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the input.
        remaining: usize,
    },
    /// The version prefix is negative.
    #[error("{message}: unsupported version {version}")]
    UnsupportedVersion {
        /// "subscription" or "assignment".
        message: &'static str,
        /// The version read.
        version: i16,
    },
    /// A count or length is negative where that is not allowed (null for a
    /// field that cannot be null included), or announces more items than
    /// the bytes left could hold.
    #[error("{message}: invalid length {length} for {field} with {remaining} bytes left")]
    InvalidLength {
        /// "subscription" or "assignment".
        message: &'static str,
        /// The field whose length or count is wrong.
        field: &'static str,
        /// The length or count read.
        length: i32,
        /// Bytes left in the input after it.
        remaining: usize,
    },
    /// The generated decoder rejected the bytes (e.g. a string that is not
    /// UTF-8).
    #[error("{message} v{version}: malformed: {reason}")]
    Malformed {
        /// "subscription" or "assignment".
        message: &'static str,
        /// The version the bytes were decoded as.
        version: i16,
        /// The decoder's explanation.
        reason: String,
    },
    /// A value does not fit its wire field (a string over 32767 bytes).
    #[error("{message} v{version}: cannot encode: {reason}")]
    Encode {
        /// "subscription" or "assignment".
        message: &'static str,
        /// The version being written.
        version: i16,
        /// The encoder's explanation.
        reason: String,
    },
}

/// What a consumer sends in JoinGroup: the topics it wants, and since v1
/// what it owns, so a sticky assignor can keep partitions where they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The topics the member subscribes to.
    pub topics: Vec<String>,
    /// Assignor-specific data, passed to the leader unread.
    pub user_data: Option<Bytes>,
    /// Topic and partitions the member owns now (v1+).
    pub owned_partitions: Vec<(String, Vec<i32>)>,
    /// The generation in which the member got `owned_partitions` (v2+);
    /// [`GENERATION_ID_UNKNOWN`] when unknown.
    pub generation_id: i32,
    /// The member's rack, for rack-aware assignors (v3+).
    pub rack_id: Option<String>,
}

impl Default for Subscription {
    fn default() -> Self {
        Subscription {
            topics: Vec::new(),
            user_data: None,
            owned_partitions: Vec::new(),
            generation_id: GENERATION_ID_UNKNOWN,
            rack_id: None,
        }
    }
}

impl Subscription {
    /// A subscription to `topics` with nothing else set.
    pub fn new(topics: Vec<String>) -> Self {
        Subscription {
            topics,
            ..Subscription::default()
        }
    }

    /// The lowest version that carries every field that is set: v3 for a
    /// rack, v2 for a known generation, v1 for owned partitions, else v0.
    pub fn version(&self) -> i16 {
        if self.rack_id.is_some() {
            3
        } else if self.generation_id != GENERATION_ID_UNKNOWN {
            2
        } else if !self.owned_partitions.is_empty() {
            1
        } else {
            0
        }
    }

    /// The wire bytes at [`Subscription::version`]. Fails only when a
    /// string is over 32767 bytes (or data over 2 GiB).
    pub fn encode(&self) -> Result<Bytes, ProtocolError> {
        let owned = self
            .owned_partitions
            .iter()
            .map(|(topic, partitions)| {
                OwnedTopic::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(partitions.clone())
            })
            .collect();
        let raw = ConsumerProtocolSubscription::default()
            .with_topics(self.topics.iter().map(|t| StrBytes::from_string(t.clone())).collect())
            .with_user_data(self.user_data.clone())
            .with_owned_partitions(owned)
            .with_generation_id(self.generation_id)
            .with_rack_id(self.rack_id.clone().map(StrBytes::from_string));
        encode_versioned(SUBSCRIPTION, &raw, self.version())
    }

    /// Reads any version: 0..=3 as written, newer ones as v3.
    pub fn decode(buf: &[u8]) -> Result<Subscription, ProtocolError> {
        let (wire_version, body) = split_version(SUBSCRIPTION, buf)?;
        let version = wire_version.min(SUBSCRIPTION_VERSION_MAX);
        LengthCheck::subscription(body, version)?;
        let raw: ConsumerProtocolSubscription = decode_versioned(SUBSCRIPTION, body, version)?;
        Ok(Subscription {
            topics: raw.topics.iter().map(|t| t.as_str().to_owned()).collect(),
            user_data: raw.user_data,
            owned_partitions: raw
                .owned_partitions
                .into_iter()
                .map(|tp| (tp.topic.as_str().to_owned(), tp.partitions))
                .collect(),
            generation_id: raw.generation_id,
            rack_id: raw.rack_id.map(|r| r.as_str().to_owned()),
        })
    }
}

/// What the leader gives a member through SyncGroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    /// Topic and partitions assigned to the member.
    pub partitions: Vec<(String, Vec<i32>)>,
    /// Assignor-specific data, passed to the member unread.
    pub user_data: Option<Bytes>,
}

impl Assignment {
    /// The wire bytes at [`ASSIGNMENT_VERSION_ENCODED`]. Fails only when a
    /// topic name is over 32767 bytes (or data over 2 GiB).
    pub fn encode(&self) -> Result<Bytes, ProtocolError> {
        let assigned = self
            .partitions
            .iter()
            .map(|(topic, partitions)| {
                AssignedTopic::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(partitions.clone())
            })
            .collect();
        let raw = ConsumerProtocolAssignment::default()
            .with_assigned_partitions(assigned)
            .with_user_data(self.user_data.clone());
        encode_versioned(ASSIGNMENT, &raw, ASSIGNMENT_VERSION_ENCODED)
    }

    /// Reads any version: 0..=3 as written, newer ones as v3. Empty input
    /// is an empty assignment: what a broker hands a member the leader left
    /// out.
    pub fn decode(buf: &[u8]) -> Result<Assignment, ProtocolError> {
        if buf.is_empty() {
            return Ok(Assignment::default());
        }
        let (wire_version, body) = split_version(ASSIGNMENT, buf)?;
        let version = wire_version.min(ASSIGNMENT_VERSION_MAX);
        LengthCheck::assignment(body)?;
        let raw: ConsumerProtocolAssignment = decode_versioned(ASSIGNMENT, body, version)?;
        Ok(Assignment {
            partitions: raw
                .assigned_partitions
                .into_iter()
                .map(|tp| (tp.topic.as_str().to_owned(), tp.partitions))
                .collect(),
            user_data: raw.user_data,
        })
    }
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

fn encode_versioned<M: Encodable>(message: &'static str, raw: &M, version: i16) -> Result<Bytes, ProtocolError> {
    let size = raw
        .compute_size(version)
        .map_err(|e| encode_error(message, version, e))?;
    let mut buf = BytesMut::with_capacity(VERSION_BYTES + size);
    buf.put_i16(version);
    raw.encode(&mut buf, version)
        .map_err(|e| encode_error(message, version, e))?;
    debug_assert_eq!(
        buf.len(),
        VERSION_BYTES + size,
        "{message} v{version}: size computed != size written"
    );
    Ok(buf.freeze())
}

fn encode_error(message: &'static str, version: i16, e: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::Encode {
        message,
        version,
        reason: format!("{e:#}"),
    }
}

fn decode_versioned<M: Decodable>(message: &'static str, body: &[u8], version: i16) -> Result<M, ProtocolError> {
    let mut rest = body;
    M::decode(&mut rest, version).map_err(|e| ProtocolError::Malformed {
        message,
        version,
        reason: format!("{e:#}"),
    })
}

/// The version prefix and the bytes after it; negative versions rejected.
fn split_version<'a>(message: &'static str, buf: &'a [u8]) -> Result<(i16, &'a [u8]), ProtocolError> {
    let Some((head, body)) = buf.split_first_chunk::<VERSION_BYTES>() else {
        return Err(ProtocolError::Truncated {
            message,
            field: "version",
            needed: VERSION_BYTES,
            remaining: buf.len(),
        });
    };
    let version = i16::from_be_bytes(*head);
    if version < 0 {
        return Err(ProtocolError::UnsupportedVersion { message, version });
    }
    Ok((version, body))
}

/// A read-only walk over the wire layout that bounds every count and length
/// by the bytes left before the generated decoder runs. The generated
/// `Array` decoder calls `Vec::with_capacity(count)` on the count as read,
/// so 6 bytes announcing 2^31 topics would ask the allocator for 64 GiB: an
/// abort, not an error. The walk builds nothing; the crate decodes every
/// field afterwards. It rejects only what the crate would reject too.
struct LengthCheck<'a> {
    message: &'static str,
    rest: &'a [u8],
}

impl<'a> LengthCheck<'a> {
    /// Smallest encoding of one element: a string is an i16 length, a
    /// (topic, partitions) pair a string and an i32 count, a partition an i32.
    const STRING_BYTES_MIN: usize = 2;
    const TOPIC_PARTITIONS_BYTES_MIN: usize = 2 + 4;
    const PARTITION_BYTES: usize = 4;

    fn subscription(body: &'a [u8], version: i16) -> Result<(), ProtocolError> {
        let mut walk = LengthCheck {
            message: SUBSCRIPTION,
            rest: body,
        };
        for _ in 0..walk.count("topics", Self::STRING_BYTES_MIN)? {
            walk.string("topics", false)?;
        }
        walk.bytes("user_data")?;
        if version >= 1 {
            walk.topic_partitions("owned_partitions")?;
        }
        if version >= 2 {
            walk.int32("generation_id")?;
        }
        if version >= 3 {
            walk.string("rack_id", true)?;
        }
        Ok(())
    }

    fn assignment(body: &'a [u8]) -> Result<(), ProtocolError> {
        let mut walk = LengthCheck {
            message: ASSIGNMENT,
            rest: body,
        };
        walk.topic_partitions("assigned_partitions")?;
        walk.bytes("user_data")
    }

    fn topic_partitions(&mut self, field: &'static str) -> Result<(), ProtocolError> {
        for _ in 0..self.count(field, Self::TOPIC_PARTITIONS_BYTES_MIN)? {
            self.string(field, false)?;
            let partitions = self.count(field, Self::PARTITION_BYTES)?;
            // Cannot overflow: count() bounded it by the bytes left.
            self.take(field, partitions * Self::PARTITION_BYTES)?;
        }
        Ok(())
    }

    fn take(&mut self, field: &'static str, needed: usize) -> Result<(), ProtocolError> {
        match self.rest.get(needed..) {
            Some(rest) => {
                self.rest = rest;
                Ok(())
            }
            None => Err(ProtocolError::Truncated {
                message: self.message,
                field,
                needed,
                remaining: self.rest.len(),
            }),
        }
    }

    fn int16(&mut self, field: &'static str) -> Result<i16, ProtocolError> {
        self.fixed(field).map(i16::from_be_bytes)
    }

    fn int32(&mut self, field: &'static str) -> Result<i32, ProtocolError> {
        self.fixed(field).map(i32::from_be_bytes)
    }

    fn fixed<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ProtocolError> {
        let Some((head, rest)) = self.rest.split_first_chunk::<N>() else {
            return Err(ProtocolError::Truncated {
                message: self.message,
                field,
                needed: N,
                remaining: self.rest.len(),
            });
        };
        self.rest = rest;
        Ok(*head)
    }

    fn invalid(&self, field: &'static str, length: i32) -> ProtocolError {
        ProtocolError::InvalidLength {
            message: self.message,
            field,
            length,
            remaining: self.rest.len(),
        }
    }

    /// An array count, at most what the bytes left could hold.
    fn count(&mut self, field: &'static str, item_bytes_min: usize) -> Result<usize, ProtocolError> {
        let count = self.int32(field)?;
        match usize::try_from(count) {
            Ok(n) if n <= self.rest.len() / item_bytes_min => Ok(n),
            _ => Err(self.invalid(field, count)),
        }
    }

    fn string(&mut self, field: &'static str, nullable: bool) -> Result<(), ProtocolError> {
        let length = i32::from(self.int16(field)?);
        self.skip(field, length, nullable)
    }

    fn bytes(&mut self, field: &'static str) -> Result<(), ProtocolError> {
        let length = self.int32(field)?;
        self.skip(field, length, true)
    }

    fn skip(&mut self, field: &'static str, length: i32, nullable: bool) -> Result<(), ProtocolError> {
        match usize::try_from(length) {
            Ok(n) => self.take(field, n),
            Err(_) if length == -1 && nullable => Ok(()),
            Err(_) => Err(self.invalid(field, length)),
        }
    }
}

#[cfg(test)]
mod tests;
