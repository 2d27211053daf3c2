//! The Kafka wire protocol, through the `kafka-protocol` crate's generated
//! codecs (never hand-written ones): frames, request headers, and the
//! mapping between Kafka messages and the neutral model in [`crate::api`].
//!
//! A frame is `i32 BE size | request header | body`. The header's version
//! depends on the API key and version (the crate's `header_version`); the
//! response header is v0 or v1 likewise, and always v0 for ApiVersions.
//!
//! Invariants: a frame size is checked against the caller's maximum before
//! anything is allocated for it; a request whose header cannot be parsed is
//! an `Err` (the caller closes the connection), anything after a parsed
//! header gets an answer: ApiVersions and DescribeCluster are answered
//! here, unsupported APIs and versions and undecodable bodies get an error
//! response at the request's version, and only what the broker must handle
//! becomes an [`api::Request`]. Record batches pass through as `Bytes` slices of the
//! frame on the way in. Runs on whichever shard owns the connection; holds
//! no state.

mod admin;
mod data;
mod gather;
mod group;
mod producer;
mod reassign;
#[cfg(test)]
mod tests;
mod versions;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::api::{self, ErrorCode};
pub use versions::SUPPORTED;

/// Bytes of the size prefix that precedes every frame.
pub const FRAME_PREFIX_BYTES: usize = 4;
/// The smallest request header: api key, version, correlation id.
const HEADER_BYTES_MIN: usize = 8;

/// Why a frame cannot be served at all; the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge { len: usize, max: usize },
    #[error("negative frame size {0}")]
    NegativeSize(i32),
    #[error("request header truncated ({0} bytes)")]
    HeaderTruncated(usize),
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("unreadable request header: {0}")]
    Header(String),
}

/// This node as Kafka clients see it: where they reach it (sent in
/// Metadata, FindCoordinator and DescribeCluster) and its topic defaults
/// (the effective config of a topic without overrides, in DescribeConfigs).
#[derive(Debug, Clone)]
pub struct Advertised {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
    pub topic_defaults: api::TopicConfig,
    /// Cluster mode: the applied metadata (the cluster's id and brokers).
    pub cluster: Option<std::sync::Arc<crate::cluster::view::ClusterView>>,
}

/// The parts of a request header the answer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub api_key: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: String,
    /// What the answer needs from the request body besides the broker's
    /// response.
    pub echo: Echo,
}

/// Parts of a request body kept for its answer, for APIs whose neutral
/// request does not carry everything the Kafka answer must say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Echo {
    #[default]
    None,
    /// Answered from a Metadata request for the topic resources.
    DescribeConfigs {
        resources: Vec<admin::ConfigResource>,
        include_synonyms: bool,
    },
}

/// What to do with a request whose header was parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Hand it to the broker, then encode its answer with [`encode_response`].
    Broker(api::Request),
    /// Send this frame as the answer; the broker is not involved.
    Reply(Bytes),
    /// Cluster administration for the broker; encode its answer with
    /// [`encode_admin`].
    Admin(api::ClusterAdmin),
    /// No answer can be formed (an API whose error response we cannot
    /// build): log the reason and close the connection.
    Close(String),
}

/// What a body decoder produced: a request for the broker, or an answer
/// the adapter gives itself (a request the broker model cannot express).
enum Decoded {
    Request(api::Request),
    Response(api::Response),
    /// A request whose answer also needs the echo.
    WithEcho(api::Request, Echo),
    /// Refused as a whole with this error (the API's error response).
    Refused(ErrorCode, String),
}

/// Parses the 4-byte size prefix of a frame, bounded by `frame_bytes_max`.
pub fn frame_len(prefix: [u8; FRAME_PREFIX_BYTES], frame_bytes_max: usize) -> Result<usize, KafkaError> {
    let size = i32::from_be_bytes(prefix);
    let len = usize::try_from(size).map_err(|_| KafkaError::NegativeSize(size))?;
    if len > frame_bytes_max {
        return Err(KafkaError::FrameTooLarge {
            len,
            max: frame_bytes_max,
        });
    }
    Ok(len)
}

/// Parses the request header of `frame` (the bytes after the size prefix).
fn decode_header(frame: &mut Bytes) -> Result<Header, KafkaError> {
    let Some(fixed) = frame.first_chunk::<HEADER_BYTES_MIN>() else {
        return Err(KafkaError::HeaderTruncated(frame.len()));
    };
    let key_raw = i16::from_be_bytes([fixed[0], fixed[1]]);
    let version = i16::from_be_bytes([fixed[2], fixed[3]]);
    let api_key = ApiKey::try_from(key_raw).map_err(|()| KafkaError::UnknownApiKey(key_raw))?;
    let header_version = api_key.request_header_version(version);
    let h = RequestHeader::decode(frame, header_version).map_err(|e| KafkaError::Header(e.to_string()))?;
    debug_assert_eq!(h.request_api_key, key_raw);
    Ok(Header {
        api_key,
        version,
        correlation_id: h.correlation_id,
        client_id: h.client_id.map(|c| c.to_string()).unwrap_or_default(),
        echo: Echo::None,
    })
}

/// Decodes one frame (without its size prefix) into its header and what
/// to do with it. `Err` only when the header itself is unreadable.
pub fn decode_request(mut frame: Bytes, node: &Advertised) -> Result<(Header, Action), KafkaError> {
    let mut header = decode_header(&mut frame)?;
    if header.api_key == ApiKey::ApiVersions {
        let reply = versions::api_versions(&header, &mut frame);
        return Ok((header, Action::Reply(reply)));
    }
    let supported = versions::range_of(header.api_key).is_some_and(|r| r.contains(&header.version));
    if !supported {
        let action = error_action(&header, ErrorCode::UnsupportedVersion, "unsupported api or version");
        return Ok((header, action));
    }
    if matches!(
        header.api_key,
        ApiKey::AlterPartitionReassignments | ApiKey::ListPartitionReassignments
    ) {
        let action = match reassign::decode(&header, &mut frame) {
            Ok(op) => Action::Admin(op),
            Err(e) => error_action(&header, ErrorCode::InvalidRequest, &e),
        };
        return Ok((header, action));
    }
    if header.api_key == ApiKey::DescribeCluster {
        let action = match admin::describe_cluster(&header, node, &mut frame) {
            Ok(reply) => Action::Reply(reply),
            Err(e) => error_action(&header, ErrorCode::InvalidRequest, &e),
        };
        return Ok((header, action));
    }
    let action = match decode_body(header.api_key, header.version, &mut frame, node) {
        Ok(Decoded::Request(req)) => Action::Broker(req),
        Ok(Decoded::WithEcho(req, echo)) => {
            header.echo = echo;
            Action::Broker(req)
        }
        Ok(Decoded::Response(resp)) => Action::Reply(encode_single(&header, node, resp)),
        Ok(Decoded::Refused(error, why)) => error_action(&header, error, &why),
        Err(e) => {
            tracing::debug!(api = ?header.api_key, version = header.version, error = %e, "undecodable request body");
            error_action(&header, ErrorCode::InvalidRequest, &e)
        }
    };
    Ok((header, action))
}

fn error_action(header: &Header, error: ErrorCode, why: &str) -> Action {
    match versions::error_frame(header, error) {
        Some(frame) => Action::Reply(frame),
        None => Action::Close(format!("{why}: {:?} v{}", header.api_key, header.version)),
    }
}

/// Decodes the body of a supported API at a supported version.
fn decode_body(key: ApiKey, v: i16, body: &mut Bytes, node: &Advertised) -> Result<Decoded, String> {
    use kafka_protocol::messages as m;
    fn dec<T: Decodable>(body: &mut Bytes, v: i16) -> Result<T, String> {
        T::decode(body, v).map_err(|e| e.to_string())
    }
    let req = match key {
        ApiKey::Produce => return Ok(data::produce(dec::<m::ProduceRequest>(body, v)?)),
        ApiKey::Fetch => return Ok(data::fetch(dec::<m::FetchRequest>(body, v)?)),
        ApiKey::ListOffsets => data::list_offsets(dec::<m::ListOffsetsRequest>(body, v)?),
        ApiKey::Metadata => data::metadata(dec::<m::MetadataRequest>(body, v)?),
        ApiKey::CreateTopics => return Ok(data::create_topics(dec::<m::CreateTopicsRequest>(body, v)?)),
        ApiKey::DeleteTopics => data::delete_topics(dec::<m::DeleteTopicsRequest>(body, v)?),
        ApiKey::FindCoordinator => {
            return Ok(group::find_coordinator(
                dec::<m::FindCoordinatorRequest>(body, v)?,
                node,
            ))
        }
        ApiKey::JoinGroup => group::join_group(dec::<m::JoinGroupRequest>(body, v)?, v),
        ApiKey::SyncGroup => group::sync_group(dec::<m::SyncGroupRequest>(body, v)?),
        ApiKey::Heartbeat => group::heartbeat(dec::<m::HeartbeatRequest>(body, v)?),
        ApiKey::LeaveGroup => group::leave_group(dec::<m::LeaveGroupRequest>(body, v)?, v),
        ApiKey::OffsetCommit => group::offset_commit(dec::<m::OffsetCommitRequest>(body, v)?),
        ApiKey::OffsetFetch => group::offset_fetch(dec::<m::OffsetFetchRequest>(body, v)?),
        ApiKey::ListGroups => group::list_groups(dec::<m::ListGroupsRequest>(body, v)?),
        ApiKey::DescribeGroups => group::describe_groups(dec::<m::DescribeGroupsRequest>(body, v)?),
        ApiKey::DeleteGroups => group::delete_groups(dec::<m::DeleteGroupsRequest>(body, v)?),
        ApiKey::CreatePartitions => admin::create_partitions(dec::<m::CreatePartitionsRequest>(body, v)?),
        ApiKey::DescribeConfigs => return admin::describe_configs(dec::<m::DescribeConfigsRequest>(body, v)?),
        ApiKey::InitProducerId => producer::init_producer_id(dec::<m::InitProducerIdRequest>(body, v)?),
        other => return Err(format!("{other:?} has no decoder")),
    };
    Ok(Decoded::Request(req))
}

/// Encodes the broker's answer to the request with `header` as one frame
/// (size prefix included) at the request's version, in chunks: a Fetch
/// answer carries its record data as the stored chunks, uncopied. An
/// answer that does not fit the request (a bug) or fails to encode becomes
/// an error frame.
pub fn encode_response(header: &Header, node: &Advertised, resp: api::Response) -> Vec<Bytes> {
    try_encode_chunks(header, node, resp).unwrap_or_else(|e| vec![encoding_failed(header, &e)])
}

fn try_encode_chunks(header: &Header, node: &Advertised, resp: api::Response) -> Result<Vec<Bytes>, String> {
    match (header.api_key, resp) {
        (ApiKey::Fetch, api::Response::Fetch { topics }) => {
            data::fetch_frame(header.correlation_id, header.version, topics)
        }
        (_, resp) => try_encode_response(header, node, resp).map(|frame| vec![frame]),
    }
}

/// The frame answering a cluster administration request.
pub fn encode_admin(header: &Header, answer: api::ClusterAdminAnswer) -> Bytes {
    reassign::encode(header, answer).unwrap_or_else(|e| encoding_failed(header, &e))
}

/// [`encode_response`] for an answer without record data: one frame.
fn encode_single(header: &Header, node: &Advertised, resp: api::Response) -> Bytes {
    try_encode_response(header, node, resp).unwrap_or_else(|e| encoding_failed(header, &e))
}

fn encoding_failed(header: &Header, why: &str) -> Bytes {
    tracing::warn!(api = ?header.api_key, version = header.version, error = %why, "answering with an error response");
    versions::error_frame(header, ErrorCode::Unknown).unwrap_or_default()
}

fn try_encode_response(header: &Header, node: &Advertised, resp: api::Response) -> Result<Bytes, String> {
    let (key, v, cid) = (header.api_key, header.version, header.correlation_id);
    match (key, resp) {
        (ApiKey::Produce, api::Response::Produce { topics }) => frame(cid, key, v, &data::produce_response(topics)),
        (ApiKey::ListOffsets, api::Response::ListOffsets { topics }) => {
            frame(cid, key, v, &data::list_offsets_response(topics))
        }
        (ApiKey::Metadata, api::Response::Metadata { brokers, topics }) => {
            frame(cid, key, v, &data::metadata_response(node, &brokers, topics, v))
        }
        (ApiKey::CreateTopics, api::Response::CreateTopics { topics }) => {
            frame(cid, key, v, &data::create_topics_response(topics))
        }
        (ApiKey::DeleteTopics, api::Response::DeleteTopics { topics }) => {
            frame(cid, key, v, &data::delete_topics_response(topics, v))
        }
        (ApiKey::FindCoordinator, api::Response::FindCoordinator(c)) => {
            frame(cid, key, v, &group::find_coordinator_response(node, c, v))
        }
        (ApiKey::JoinGroup, api::Response::JoinGroup(r)) => frame(cid, key, v, &group::join_group_response(r, v)),
        (ApiKey::SyncGroup, api::Response::SyncGroup(r)) => frame(cid, key, v, &group::sync_group_response(r, v)),
        (ApiKey::Heartbeat, api::Response::Heartbeat { error }) => {
            frame(cid, key, v, &group::heartbeat_response(error))
        }
        (ApiKey::LeaveGroup, api::Response::LeaveGroup(r)) => frame(cid, key, v, &group::leave_group_response(r, v)),
        (ApiKey::OffsetCommit, api::Response::OffsetCommit { topics }) => {
            frame(cid, key, v, &group::offset_commit_response(topics))
        }
        (ApiKey::OffsetFetch, api::Response::OffsetFetch { error, topics }) => {
            frame(cid, key, v, &group::offset_fetch_response(error, topics, v))
        }
        (ApiKey::ListGroups, api::Response::ListGroups { error, groups }) => {
            frame(cid, key, v, &group::list_groups_response(error, groups, v))
        }
        (ApiKey::DescribeGroups, api::Response::DescribeGroups { groups }) => {
            frame(cid, key, v, &group::describe_groups_response(groups, v))
        }
        (ApiKey::DeleteGroups, api::Response::DeleteGroups { groups }) => {
            frame(cid, key, v, &group::delete_groups_response(groups))
        }
        (ApiKey::CreatePartitions, api::Response::CreatePartitions { topics }) => {
            frame(cid, key, v, &admin::create_partitions_response(topics))
        }
        (
            ApiKey::InitProducerId,
            api::Response::InitProducerId {
                error,
                producer_id,
                producer_epoch,
            },
        ) => frame(
            cid,
            key,
            v,
            &producer::init_producer_id_response(error, producer_id, producer_epoch),
        ),
        (ApiKey::DescribeConfigs, api::Response::Metadata { topics, .. }) => {
            let body = admin::describe_configs_response(&header.echo, node, &topics, v)?;
            frame(cid, key, v, &body)
        }
        (_, api::Response::Error { error, message }) => Err(format!("{error}: {message}")),
        (_, other) => Err(format!("answer {other:?} does not fit the request")),
    }
}

/// One response frame: size prefix, response header (at the version the
/// API's response needs), body at version `v`.
fn frame<T: Encodable>(correlation_id: i32, key: ApiKey, v: i16, body: &T) -> Result<Bytes, String> {
    let header_version = key.response_header_version(v);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header.compute_size(header_version).map_err(|e| e.to_string())?
        + body.compute_size(v).map_err(|e| e.to_string())?;
    let size_i32 = i32::try_from(size).map_err(|_| format!("response of {size} bytes is too large"))?;
    let mut buf = BytesMut::with_capacity(FRAME_PREFIX_BYTES + size);
    buf.put_i32(size_i32);
    header.encode(&mut buf, header_version).map_err(|e| e.to_string())?;
    body.encode(&mut buf, v).map_err(|e| e.to_string())?;
    debug_assert_eq!(buf.len(), FRAME_PREFIX_BYTES + size, "compute_size agrees with encode");
    Ok(buf.freeze())
}

/// A Kafka partition index as the neutral model's; negative ones become
/// `u32::MAX`, which names no partition (the broker answers unknown).
fn partition_in(index: i32) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

/// The neutral model's partition index as Kafka's.
fn partition_out(index: u32) -> i32 {
    i32::try_from(index).unwrap_or(-1)
}

/// A millisecond count from the wire, negative meaning zero.
fn ms_in(ms: i32) -> u32 {
    u32::try_from(ms).unwrap_or(0)
}
