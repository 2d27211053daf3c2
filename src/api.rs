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

/// Defines [`ErrorCode`] and its wire mapping from one list, so a code
/// cannot be added to the enum and forgotten in the decoder.
macro_rules! error_codes {
    ($($name:ident = $code:literal,)*) => {
        /// Stable error codes carried in responses.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(i16)]
        pub enum ErrorCode {
            $($name = $code,)*
        }

        impl ErrorCode {
            /// The error for a code received from the wire; unknown codes map to `Unknown`.
            pub fn from_code(code: i16) -> ErrorCode {
                match code {
                    $($code => ErrorCode::$name,)*
                    _ => ErrorCode::Unknown,
                }
            }
        }
    };
}

error_codes! {
    Unknown = -1,
    None = 0,
    OffsetOutOfRange = 1,
    CorruptMessage = 2,
    UnknownTopicOrPartition = 3,
    LeaderNotAvailable = 5,
    NotLeaderOrFollower = 6,
    RequestTimedOut = 7,
    ReplicaNotAvailable = 9,
    MessageTooLarge = 10,
    OffsetMetadataTooLarge = 12,
    CoordinatorLoadInProgress = 14,
    CoordinatorNotAvailable = 15,
    NotCoordinator = 16,
    InvalidTopic = 17,
    NotEnoughReplicas = 19,
    InvalidRequiredAcks = 21,
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
    InvalidReplicationFactor = 38,
    InvalidReplicaAssignment = 39,
    InvalidConfig = 40,
    InvalidRequest = 42,
    OutOfOrderSequenceNumber = 45,
    DuplicateSequenceNumber = 46,
    InvalidProducerEpoch = 47,
    StorageError = 56,
    UnknownProducerId = 59,
    NonEmptyGroup = 68,
    GroupIdNotFound = 69,
    FetchSessionIdNotFound = 70,
    FencedLeaderEpoch = 74,
    UnknownLeaderEpoch = 76,
    MemberIdRequired = 79,
    GroupMaxSizeReached = 81,
    FencedInstanceId = 82,
    NoReassignmentInProgress = 85,
    InvalidRecord = 87,
}

impl ErrorCode {
    pub fn code(self) -> i16 {
        self as i16
    }

    /// Errors a client may retry after a short back-off. A storage error
    /// is one (as Kafka's KAFKA_STORAGE_ERROR): in a cluster, the leader
    /// whose disk failed hands its partitions over.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeaderOrFollower
                | ErrorCode::RequestTimedOut
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::UnknownTopicOrPartition
                | ErrorCode::CoordinatorLoadInProgress
                | ErrorCode::CoordinatorNotAvailable
                | ErrorCode::NotCoordinator
                | ErrorCode::StorageError
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
    FindCoordinator = 7,
    JoinGroup = 8,
    SyncGroup = 9,
    Heartbeat = 10,
    LeaveGroup = 11,
    OffsetCommit = 12,
    OffsetFetch = 13,
    ListGroups = 14,
    DescribeGroups = 15,
    DeleteGroups = 16,
    CreatePartitions = 17,
    InitProducerId = 18,
}

impl ApiKey {
    pub const ALL: [ApiKey; 19] = [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::CreateTopics,
        ApiKey::DeleteTopics,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::FindCoordinator,
        ApiKey::JoinGroup,
        ApiKey::SyncGroup,
        ApiKey::Heartbeat,
        ApiKey::LeaveGroup,
        ApiKey::OffsetCommit,
        ApiKey::OffsetFetch,
        ApiKey::ListGroups,
        ApiKey::DescribeGroups,
        ApiKey::DeleteGroups,
        ApiKey::CreatePartitions,
        ApiKey::InitProducerId,
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
    /// How many copies, and how many must be in sync for acks=all; unset
    /// means the broker's defaults. Cluster mode only: a single node holds
    /// one copy of everything.
    pub replication: Replication,
}

/// A topic's replication factor and min.insync.replicas, as asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replication {
    pub factor: Option<u16>,
    pub min_insync: Option<u16>,
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

/// One assignment protocol a joining member supports, in preference order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupProtocol {
    /// The assignor name, e.g. "range".
    pub name: String,
    /// Opaque to the coordinator (for consumers: the ConsumerProtocol subscription).
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupRequest {
    pub group_id: String,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    /// Empty for a member joining for the first time.
    pub member_id: String,
    /// Static membership (KIP-345); `None` for dynamic members.
    pub group_instance_id: Option<String>,
    pub protocol_type: String,
    pub protocols: Vec<JoinGroupProtocol>,
}

/// The assignment the group leader hands one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAssignment {
    pub member_id: String,
    /// Opaque to the coordinator (for consumers: the ConsumerProtocol assignment).
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// Only the leader sends assignments; followers send none.
    pub assignments: Vec<MemberAssignment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeavingMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroupRequest {
    pub group_id: String,
    pub members: Vec<LeavingMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitPartition {
    pub partition: u32,
    pub offset: i64,
    /// -1 when unknown.
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitTopic {
    pub name: String,
    pub partitions: Vec<OffsetCommitPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitRequest {
    pub group_id: String,
    /// -1 with an empty member id: a commit from outside the group protocol
    /// (manual assignment), accepted only while the group has no members.
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub topics: Vec<OffsetCommitTopic>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchTopic {
    pub name: String,
    pub partitions: Vec<u32>,
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
    /// Which broker (and shard) coordinates `group_id`.
    FindCoordinator {
        group_id: String,
    },
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    /// `topics: None` fetches every committed offset of the group.
    OffsetFetch {
        group_id: String,
        topics: Option<Vec<OffsetFetchTopic>>,
    },
    /// Empty `states` lists groups in any state.
    ListGroups {
        states: Vec<String>,
    },
    DescribeGroups {
        groups: Vec<String>,
    },
    DeleteGroups {
        groups: Vec<String>,
    },
    /// Grows topics to a new total partition count; existing partitions
    /// stay where they are. `validate_only` checks without changing anything.
    CreatePartitions {
        topics: Vec<NewPartitions>,
        validate_only: bool,
    },
    /// A producer id for an idempotent producer (Kafka's InitProducerId).
    /// Without a transactional id the broker hands out a fresh id with
    /// epoch 0 whatever `producer_id`/`producer_epoch` say (KIP-360: a
    /// non-transactional producer that lost its state simply starts over);
    /// with one it refuses: transactions are not supported.
    InitProducerId {
        transactional_id: Option<String>,
        /// Only meaningful with a transactional id.
        transaction_timeout_ms: i32,
        /// The id and epoch the producer already has, -1 if none.
        producer_id: i64,
        producer_epoch: i16,
    },
}

/// A topic to grow in CreatePartitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPartitions {
    pub name: String,
    /// The new total number of partitions (not the number to add).
    pub count: u32,
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
            Request::FindCoordinator { .. } => ApiKey::FindCoordinator,
            Request::JoinGroup(_) => ApiKey::JoinGroup,
            Request::SyncGroup(_) => ApiKey::SyncGroup,
            Request::Heartbeat(_) => ApiKey::Heartbeat,
            Request::LeaveGroup(_) => ApiKey::LeaveGroup,
            Request::OffsetCommit(_) => ApiKey::OffsetCommit,
            Request::OffsetFetch { .. } => ApiKey::OffsetFetch,
            Request::ListGroups { .. } => ApiKey::ListGroups,
            Request::DescribeGroups { .. } => ApiKey::DescribeGroups,
            Request::DeleteGroups { .. } => ApiKey::DeleteGroups,
            Request::CreatePartitions { .. } => ApiKey::CreatePartitions,
            Request::InitProducerId { .. } => ApiKey::InitProducerId,
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
    /// HOST:PORT of its Kafka listener as advertised. Not carried by the
    /// native protocol.
    pub kafka: String,
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
    /// The replicas (preferred leader first) and the ISR. Not carried by
    /// the native protocol (its clients need only the leader).
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub error: ErrorCode,
    pub partitions: Vec<PartitionInfo>,
    pub config: TopicConfig,
}

impl TopicInfo {
    /// The answer for a topic that does not exist.
    pub fn unknown(name: String) -> TopicInfo {
        TopicInfo {
            name,
            error: ErrorCode::UnknownTopicOrPartition,
            partitions: Vec::new(),
            config: TopicConfig::default(),
        }
    }
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorInfo {
    pub error: ErrorCode,
    pub node_id: i32,
    pub host: String,
    /// The broker's shared native port.
    pub port: u16,
    /// The shard that runs the coordinator, and its own port.
    pub shard: u32,
    pub shard_port: u16,
    /// Cluster mode: HOST:PORT of the coordinator's Kafka listener; empty
    /// on a single node (the Kafka adapter knows its own).
    pub kafka: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupResponse {
    pub error: ErrorCode,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    /// The id this member must use from now on (assigned on first join).
    pub member_id: String,
    /// Every member with the chosen protocol's metadata: only for the leader.
    pub members: Vec<JoinGroupMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupResponse {
    pub error: ErrorCode,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub error: ErrorCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroupResponse {
    pub error: ErrorCode,
    pub members: Vec<LeftMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionError {
    pub partition: u32,
    pub error: ErrorCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitTopicResponse {
    pub name: String,
    pub partitions: Vec<PartitionError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchPartitionResponse {
    pub partition: u32,
    /// -1 when the group has no committed offset for the partition.
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub error: ErrorCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchTopicResponse {
    pub name: String,
    pub partitions: Vec<OffsetFetchPartitionResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    /// Kafka's names: Empty, PreparingRebalance, CompletingRebalance, Stable, Dead.
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The chosen protocol's metadata this member joined with.
    pub metadata: Bytes,
    /// What the leader assigned it in the current generation.
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroup {
    pub group_id: String,
    pub error: ErrorCode,
    pub state: String,
    pub protocol_type: String,
    /// The chosen assignor, empty unless Stable or CompletingRebalance.
    pub protocol_name: String,
    pub members: Vec<DescribedMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupResult {
    pub group_id: String,
    pub error: ErrorCode,
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
    FindCoordinator(CoordinatorInfo),
    JoinGroup(JoinGroupResponse),
    SyncGroup(SyncGroupResponse),
    Heartbeat {
        error: ErrorCode,
    },
    LeaveGroup(LeaveGroupResponse),
    OffsetCommit {
        topics: Vec<OffsetCommitTopicResponse>,
    },
    OffsetFetch {
        error: ErrorCode,
        topics: Vec<OffsetFetchTopicResponse>,
    },
    ListGroups {
        error: ErrorCode,
        groups: Vec<ListedGroup>,
    },
    DescribeGroups {
        groups: Vec<DescribedGroup>,
    },
    DeleteGroups {
        groups: Vec<GroupResult>,
    },
    CreatePartitions {
        topics: Vec<TopicResult>,
    },
    /// `producer_id` and `producer_epoch` are -1 on error.
    InitProducerId {
        error: ErrorCode,
        producer_id: i64,
        producer_epoch: i16,
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

/// Cluster administration that only the Kafka wire carries (native
/// clients use the admin endpoints on the metrics port, `sluice partition
/// reassign`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterAdmin {
    /// Move each (topic, partition) onto these replicas, preferred leader
    /// first (Kafka's AlterPartitionReassignments); `None` asks to cancel.
    Reassign(Vec<(String, u32, Option<Vec<u32>>)>),
    /// The reassignments in progress among these partitions, or all
    /// (Kafka's ListPartitionReassignments).
    ListReassignments(Option<Vec<(String, u32)>>),
}

/// The answer to a [`ClusterAdmin`] request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterAdminAnswer {
    /// One result per partition asked for, in order.
    Reassign(Vec<PartitionResult>),
    Reassignments(Vec<OngoingReassignment>),
    /// Refused as a whole (e.g. not in cluster mode).
    Refused(ErrorCode, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionResult {
    pub topic: String,
    pub partition: u32,
    pub error: ErrorCode,
    pub message: String,
}

/// A partition moving: all its replicas now, those joining, those leaving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OngoingReassignment {
    pub topic: String,
    pub partition: u32,
    pub replicas: Vec<u32>,
    pub adding: Vec<u32>,
    pub removing: Vec<u32>,
}
