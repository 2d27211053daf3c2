//! The protocol-neutral request and response model.
//!
//! Both wire protocols (native FlatBuffers, and later Kafka) decode into these
//! types and encode from them; the broker core handles them once. Record data
//! is carried as `Bytes` holding whole Kafka v2 record batches, sliced from
//! the receive buffer on the way in and handed to the socket as-is on the way
//! out: no protocol layer copies or re-encodes it.
//!
//! Error codes are stable numbers (Kafka's where Kafka has one), never reused.

use bytes::Bytes;

/// Stable error codes carried in responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum ErrorCode {
    None = 0,
    OffsetOutOfRange = 1,
    CorruptMessage = 2,
    UnknownTopicOrPartition = 3,
    NotLeaderOrFollower = 6,
    RequestTimedOut = 7,
    MessageTooLarge = 10,
    CoordinatorLoadInProgress = 14,
    CoordinatorNotAvailable = 15,
    NotCoordinator = 16,
    InvalidTopic = 17,
    NotEnoughReplicas = 19,
    IllegalGeneration = 22,
    InconsistentGroupProtocol = 23,
    InvalidGroupId = 24,
    UnknownMemberId = 25,
    InvalidSessionTimeout = 26,
    RebalanceInProgress = 27,
    InvalidCommitOffsetSize = 28,
    UnsupportedVersion = 35,
    TopicAlreadyExists = 36,
    InvalidPartitions = 37,
    InvalidConfig = 40,
    InvalidRequest = 42,
    StorageError = 56,
    NonEmptyGroup = 68,
    GroupIdNotFound = 69,
    MemberIdRequired = 79,
    GroupMaxSizeReached = 81,
    FencedInstanceId = 82,
    Unknown = -1,
}

impl ErrorCode {
    pub fn code(self) -> i16 {
        self as i16
    }

    /// The error for a code received from the wire; unknown codes map to `Unknown`.
    pub fn from_code(code: i16) -> ErrorCode {
        use ErrorCode::*;
        match code {
            0 => None,
            1 => OffsetOutOfRange,
            2 => CorruptMessage,
            3 => UnknownTopicOrPartition,
            6 => NotLeaderOrFollower,
            7 => RequestTimedOut,
            10 => MessageTooLarge,
            14 => CoordinatorLoadInProgress,
            15 => CoordinatorNotAvailable,
            16 => NotCoordinator,
            17 => InvalidTopic,
            19 => NotEnoughReplicas,
            22 => IllegalGeneration,
            23 => InconsistentGroupProtocol,
            24 => InvalidGroupId,
            25 => UnknownMemberId,
            26 => InvalidSessionTimeout,
            27 => RebalanceInProgress,
            28 => InvalidCommitOffsetSize,
            35 => UnsupportedVersion,
            36 => TopicAlreadyExists,
            37 => InvalidPartitions,
            40 => InvalidConfig,
            42 => InvalidRequest,
            56 => StorageError,
            68 => NonEmptyGroup,
            69 => GroupIdNotFound,
            79 => MemberIdRequired,
            81 => GroupMaxSizeReached,
            82 => FencedInstanceId,
            _ => Unknown,
        }
    }

    /// Errors a client may retry after a short back-off.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeaderOrFollower
                | ErrorCode::RequestTimedOut
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::UnknownTopicOrPartition
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}({})", self.code())
    }
}

/// The APIs of the native protocol. Numbers are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ApiKey {
    ApiVersions = 0,
    Metadata = 1,
    CreateTopics = 2,
    DeleteTopics = 3,
    Produce = 4,
    Fetch = 5,
    ListOffsets = 6,
}

impl ApiKey {
    pub const ALL: [ApiKey; 7] = [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::CreateTopics,
        ApiKey::DeleteTopics,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
    ];

    pub fn from_u16(v: u16) -> Option<ApiKey> {
        ApiKey::ALL.into_iter().find(|k| *k as u16 == v)
    }
}

/// What a producer waits for before its request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// No answer at all (fire and forget).
    None,
    /// The leader has appended the batch.
    Leader,
    /// Every in-sync replica has it and it is durable per the flush policy.
    All,
}

impl Acks {
    /// Kafka's numbers: 0, 1, -1.
    pub fn from_i16(v: i16) -> Option<Acks> {
        match v {
            0 => Some(Acks::None),
            1 => Some(Acks::Leader),
            -1 => Some(Acks::All),
            _ => None,
        }
    }

    pub fn as_i16(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Which offset ListOffsets asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    /// The first offset whose record timestamp is at or after this (ms).
    Timestamp(i64),
}

/// How a topic's partitions make data durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushConfig {
    EveryAppend,
    IntervalMs(u64),
    Bytes(u64),
}

/// Per-topic configuration; `None` means the broker default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicConfig {
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<i64>,
    pub segment_bytes: Option<u64>,
    pub max_message_bytes: Option<u32>,
    pub flush: Option<FlushConfig>,
}

/// Header of every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    pub correlation_id: i32,
    pub api: ApiKey,
    pub version: u16,
    pub client_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    pub partitions: u32,
    pub config: TopicConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartition {
    pub partition: u32,
    /// One or more whole v2 record batches, back to back.
    pub records: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceTopic {
    pub name: String,
    pub partitions: Vec<ProducePartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartition {
    pub partition: u32,
    pub offset: i64,
    pub max_bytes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopic {
    pub name: String,
    pub partitions: Vec<FetchPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsPartition {
    pub partition: u32,
    pub spec: OffsetSpec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsTopic {
    pub name: String,
    pub partitions: Vec<ListOffsetsPartition>,
}

/// A request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    ApiVersions,
    /// `topics: None` lists every topic.
    Metadata {
        topics: Option<Vec<String>>,
    },
    CreateTopics {
        topics: Vec<NewTopic>,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    Produce {
        acks: Acks,
        timeout_ms: u32,
        topics: Vec<ProduceTopic>,
    },
    Fetch {
        max_wait_ms: u32,
        min_bytes: u32,
        max_bytes: u32,
        topics: Vec<FetchTopic>,
    },
    ListOffsets {
        topics: Vec<ListOffsetsTopic>,
    },
}

impl Request {
    pub fn api(&self) -> ApiKey {
        match self {
            Request::ApiVersions => ApiKey::ApiVersions,
            Request::Metadata { .. } => ApiKey::Metadata,
            Request::CreateTopics { .. } => ApiKey::CreateTopics,
            Request::DeleteTopics { .. } => ApiKey::DeleteTopics,
            Request::Produce { .. } => ApiKey::Produce,
            Request::Fetch { .. } => ApiKey::Fetch,
            Request::ListOffsets { .. } => ApiKey::ListOffsets,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiVersionRange {
    pub api: ApiKey,
    pub min_version: u16,
    pub max_version: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: u32,
    pub error: ErrorCode,
    pub leader: i32,
    /// The shard (core) of the leader that owns the partition.
    pub shard: u32,
    /// That shard's own port: a client connecting there skips the cross-core hop.
    pub shard_port: u16,
    pub log_start_offset: i64,
    pub high_watermark: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub error: ErrorCode,
    pub partitions: Vec<PartitionInfo>,
    pub config: TopicConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicResult {
    pub name: String,
    pub error: ErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartitionResponse {
    pub partition: u32,
    pub error: ErrorCode,
    /// Offset given to the first record of the first batch, -1 on error.
    pub base_offset: i64,
    pub log_start_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceTopicResponse {
    pub name: String,
    pub partitions: Vec<ProducePartitionResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartitionResponse {
    pub partition: u32,
    pub error: ErrorCode,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Whole stored batches, as stored (each element one or more batches).
    pub records: Vec<Bytes>,
}

impl FetchPartitionResponse {
    pub fn records_bytes(&self) -> usize {
        self.records.iter().map(Bytes::len).sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopicResponse {
    pub name: String,
    pub partitions: Vec<FetchPartitionResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsPartitionResponse {
    pub partition: u32,
    pub error: ErrorCode,
    /// -1 when no record matches a timestamp lookup.
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsTopicResponse {
    pub name: String,
    pub partitions: Vec<ListOffsetsPartitionResponse>,
}

/// A response body. `Error` answers a request that could not be decoded
/// or is not supported, so the client learns why instead of being dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    ApiVersions {
        apis: Vec<ApiVersionRange>,
    },
    Metadata {
        brokers: Vec<BrokerInfo>,
        topics: Vec<TopicInfo>,
    },
    CreateTopics {
        topics: Vec<TopicResult>,
    },
    DeleteTopics {
        topics: Vec<TopicResult>,
    },
    Produce {
        topics: Vec<ProduceTopicResponse>,
    },
    Fetch {
        topics: Vec<FetchTopicResponse>,
    },
    ListOffsets {
        topics: Vec<ListOffsetsTopicResponse>,
    },
    Error {
        error: ErrorCode,
        message: String,
    },
}

/// Header of every response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHeader {
    pub correlation_id: i32,
}
