//! Decoding of native frames into the neutral model.
//!
//! Order of checks: the frame must hold its FlatBuffer (`Truncated`); the
//! FlatBuffer must pass the bounded verifier (`Verify`); the header must name
//! a known API and a supported version; the body must be of the header's
//! API; field values must be in range (`Invalid`); the `records_len` of the
//! partitions must consume the payload exactly. Only then is a value
//! returned. Record data is sliced from the frame (`Bytes::slice`), never
//! copied. Nothing here panics on input.
//!
//! The group APIs, which carry no payload, are decoded in `group`; the
//! producer APIs beyond Produce in `producer`.
use bytes::Bytes;
use flatbuffers::{Follow, ForwardsUOffset, Vector};

use super::generated::sluice::native as fb;
use super::{frame, NativeError, SUPPORTED};
use crate::api::{
    Acks, ApiKey, ApiVersionRange, BrokerInfo, ErrorCode, FetchPartition, FetchPartitionResponse, FetchTopic,
    FetchTopicResponse, FlushConfig, ListOffsetsPartition, ListOffsetsPartitionResponse, ListOffsetsTopic,
    ListOffsetsTopicResponse, NewPartitions, NewTopic, OffsetSpec, PartitionInfo, ProducePartition,
    ProducePartitionResponse, ProduceTopic, ProduceTopicResponse, Request, RequestHeader, Response, ResponseHeader,
    TopicConfig, TopicInfo, TopicResult,
};

mod group;
mod producer;

type Result<T> = std::result::Result<T, NativeError>;
type Tables<'a, T> = Option<Vector<'a, ForwardsUOffset<T>>>;

/// The payload region of a frame, handed out partition by partition.
struct Payload {
    bytes: Bytes,
    taken: usize,
}

impl Payload {
    /// The next `len` bytes, zero-copy; `Invalid` if fewer remain.
    fn take(&mut self, len: u32) -> Result<Bytes> {
        let len = len as usize;
        if len > self.bytes.len() - self.taken {
            return Err(NativeError::Invalid("records_len exceeds the payload"));
        }
        let chunk = self.bytes.slice(self.taken..self.taken + len);
        self.taken += len;
        Ok(chunk)
    }

    /// Checks that every payload byte belongs to some partition.
    fn finish(self) -> Result<()> {
        if self.taken != self.bytes.len() {
            return Err(NativeError::Invalid("records_len sum is less than the payload"));
        }
        Ok(())
    }
}

/// Decodes a request frame body (the bytes after the length prefix).
pub fn decode_request(frame: Bytes) -> Result<(RequestHeader, Request)> {
    let (fb_bytes, payload_at) = frame::split(&frame)?;
    let opts = frame::verifier_options(fb_bytes.len());
    let root = flatbuffers::root_with_opts::<fb::RequestFrame>(&opts, fb_bytes)?;
    let h = root.header();
    let api = ApiKey::from_u16(h.api()).ok_or(NativeError::UnknownApi(h.api()))?;
    check_version(api, h.version())?;
    let header = RequestHeader {
        correlation_id: h.correlation_id(),
        api,
        version: h.version(),
        client_id: h.client_id().unwrap_or_default().to_owned(),
    };
    if request_body_api(root.body_type()) != Some(api) {
        return Err(NativeError::Invalid("request body does not match the header's api"));
    }
    let mut payload = Payload {
        bytes: frame.slice(payload_at..),
        taken: 0,
    };
    let req = request_body(&root, &mut payload)?;
    payload.finish()?;
    debug_assert_eq!(req.api(), api);
    Ok((header, req))
}

/// Decodes a response frame body (the bytes after the length prefix) that
/// answers a request of `expected_api`. An `Error` body answers any API.
pub fn decode_response(frame: Bytes, expected_api: ApiKey) -> Result<(ResponseHeader, Response)> {
    let (fb_bytes, payload_at) = frame::split(&frame)?;
    let opts = frame::verifier_options(fb_bytes.len());
    let root = flatbuffers::root_with_opts::<fb::ResponseFrame>(&opts, fb_bytes)?;
    let header = ResponseHeader {
        correlation_id: root.header().correlation_id(),
    };
    let body_type = root.body_type();
    if body_type != fb::ResponseBody::ErrorResponse && response_body_api(body_type) != Some(expected_api) {
        return Err(NativeError::Invalid("response body does not match the request's api"));
    }
    let mut payload = Payload {
        bytes: frame.slice(payload_at..),
        taken: 0,
    };
    let resp = response_body(&root, &mut payload)?;
    payload.finish()?;
    Ok((header, resp))
}

fn check_version(api: ApiKey, version: u16) -> Result<()> {
    let supported = SUPPORTED
        .iter()
        .any(|r| r.api == api && (r.min_version..=r.max_version).contains(&version));
    if !supported {
        return Err(NativeError::UnsupportedVersion { api, version });
    }
    Ok(())
}

/// Request union members are listed in ApiKey order, so the discriminant is
/// ApiKey + 1.
fn request_body_api(t: fb::RequestBody) -> Option<ApiKey> {
    ApiKey::from_u16(u16::from(t.0).checked_sub(1)?)
}

/// The API a response body answers; `None` for `ErrorResponse`, which
/// answers any, and for unknown types. Named one by one because
/// `ErrorResponse` sits between ListOffsets and FindCoordinator.
fn response_body_api(t: fb::ResponseBody) -> Option<ApiKey> {
    use fb::ResponseBody as B;
    let api = match t {
        B::ApiVersionsResponse => ApiKey::ApiVersions,
        B::MetadataResponse => ApiKey::Metadata,
        B::CreateTopicsResponse => ApiKey::CreateTopics,
        B::DeleteTopicsResponse => ApiKey::DeleteTopics,
        B::ProduceResponse => ApiKey::Produce,
        B::FetchResponse => ApiKey::Fetch,
        B::ListOffsetsResponse => ApiKey::ListOffsets,
        B::FindCoordinatorResponse => ApiKey::FindCoordinator,
        B::JoinGroupResponse => ApiKey::JoinGroup,
        B::SyncGroupResponse => ApiKey::SyncGroup,
        B::HeartbeatResponse => ApiKey::Heartbeat,
        B::LeaveGroupResponse => ApiKey::LeaveGroup,
        B::OffsetCommitResponse => ApiKey::OffsetCommit,
        B::OffsetFetchResponse => ApiKey::OffsetFetch,
        B::ListGroupsResponse => ApiKey::ListGroups,
        B::DescribeGroupsResponse => ApiKey::DescribeGroups,
        B::DeleteGroupsResponse => ApiKey::DeleteGroups,
        B::CreatePartitionsResponse => ApiKey::CreatePartitions,
        B::InitProducerIdResponse => ApiKey::InitProducerId,
        _ => return None,
    };
    Some(api)
}

const MISSING_BODY: NativeError = NativeError::Invalid("body missing");

fn request_body(root: &fb::RequestFrame<'_>, payload: &mut Payload) -> Result<Request> {
    let req = match root.body_type() {
        fb::RequestBody::ApiVersionsRequest => {
            root.body_as_api_versions_request().ok_or(MISSING_BODY)?;
            Request::ApiVersions
        }
        fb::RequestBody::MetadataRequest => {
            let b = root.body_as_metadata_request().ok_or(MISSING_BODY)?;
            Request::Metadata {
                topics: b.topics().map(|v| v.iter().map(str::to_owned).collect()),
            }
        }
        fb::RequestBody::CreateTopicsRequest => {
            let b = root.body_as_create_topics_request().ok_or(MISSING_BODY)?;
            Request::CreateTopics {
                topics: tables(b.topics(), new_topic)?,
            }
        }
        fb::RequestBody::DeleteTopicsRequest => {
            let b = root.body_as_delete_topics_request().ok_or(MISSING_BODY)?;
            Request::DeleteTopics {
                names: b
                    .names()
                    .map(|v| v.iter().map(str::to_owned).collect())
                    .unwrap_or_default(),
            }
        }
        fb::RequestBody::ProduceRequest => {
            let b = root.body_as_produce_request().ok_or(MISSING_BODY)?;
            produce_request(b, payload)?
        }
        fb::RequestBody::FetchRequest => {
            let b = root.body_as_fetch_request().ok_or(MISSING_BODY)?;
            Request::Fetch {
                max_wait_ms: b.max_wait_ms(),
                min_bytes: b.min_bytes(),
                max_bytes: b.max_bytes(),
                topics: tables(b.topics(), fetch_topic)?,
            }
        }
        fb::RequestBody::ListOffsetsRequest => {
            let b = root.body_as_list_offsets_request().ok_or(MISSING_BODY)?;
            Request::ListOffsets {
                topics: tables(b.topics(), list_offsets_topic)?,
            }
        }
        fb::RequestBody::CreatePartitionsRequest => {
            let b = root.body_as_create_partitions_request().ok_or(MISSING_BODY)?;
            Request::CreatePartitions {
                topics: tables(b.topics(), |t| {
                    Ok(NewPartitions {
                        name: t.name().to_owned(),
                        count: t.count(),
                    })
                })?,
                validate_only: b.validate_only(),
            }
        }
        fb::RequestBody::InitProducerIdRequest => producer::init_producer_id_request(root)?,
        // The group APIs, or a body type this side does not know.
        _ => group::request_body(root)?,
    };
    Ok(req)
}

fn new_topic(t: fb::NewTopic<'_>) -> Result<NewTopic> {
    Ok(NewTopic {
        replication: Default::default(),
        name: t.name().to_owned(),
        partitions: t.partitions(),
        config: topic_config(t.config())?,
    })
}

fn produce_request(b: fb::ProduceRequest<'_>, payload: &mut Payload) -> Result<Request> {
    let acks = Acks::from_i16(b.acks()).ok_or(NativeError::Invalid("acks must be 0, 1 or -1"))?;
    let topics = tables(b.topics(), |t| {
        let partitions = tables(t.partitions(), |p| {
            Ok(ProducePartition {
                partition: p.partition(),
                records: payload.take(p.records_len())?,
            })
        })?;
        Ok(ProduceTopic {
            name: t.name().to_owned(),
            partitions,
        })
    })?;
    Ok(Request::Produce {
        acks,
        timeout_ms: b.timeout_ms(),
        topics,
    })
}

fn fetch_topic(t: fb::FetchTopic<'_>) -> Result<FetchTopic> {
    let partitions = tables(t.partitions(), |p| {
        Ok(FetchPartition {
            partition: p.partition(),
            offset: p.offset(),
            max_bytes: p.max_bytes(),
        })
    })?;
    Ok(FetchTopic {
        name: t.name().to_owned(),
        partitions,
    })
}

fn list_offsets_topic(t: fb::ListOffsetsTopic<'_>) -> Result<ListOffsetsTopic> {
    let partitions = tables(t.partitions(), |p| {
        let s = p.spec();
        let spec = match s.kind() {
            fb::OffsetKind::Earliest => OffsetSpec::Earliest,
            fb::OffsetKind::Latest => OffsetSpec::Latest,
            fb::OffsetKind::Timestamp => OffsetSpec::Timestamp(s.timestamp_ms()),
            _ => return Err(NativeError::Invalid("unknown offset spec kind")),
        };
        Ok(ListOffsetsPartition {
            partition: p.partition(),
            spec,
        })
    })?;
    Ok(ListOffsetsTopic {
        name: t.name().to_owned(),
        partitions,
    })
}

fn response_body(root: &fb::ResponseFrame<'_>, payload: &mut Payload) -> Result<Response> {
    let resp = match root.body_type() {
        fb::ResponseBody::ApiVersionsResponse => {
            let b = root.body_as_api_versions_response().ok_or(MISSING_BODY)?;
            // APIs this side does not know are skipped: a newer peer may offer more.
            let apis = b
                .apis()
                .map(|v| v.iter().filter_map(api_version_range).collect())
                .unwrap_or_default();
            Response::ApiVersions { apis }
        }
        fb::ResponseBody::MetadataResponse => {
            let b = root.body_as_metadata_response().ok_or(MISSING_BODY)?;
            Response::Metadata {
                brokers: tables(b.brokers(), broker_info)?,
                topics: tables(b.topics(), topic_info)?,
            }
        }
        fb::ResponseBody::CreateTopicsResponse => {
            let b = root.body_as_create_topics_response().ok_or(MISSING_BODY)?;
            Response::CreateTopics {
                topics: tables(b.topics(), topic_result)?,
            }
        }
        fb::ResponseBody::DeleteTopicsResponse => {
            let b = root.body_as_delete_topics_response().ok_or(MISSING_BODY)?;
            Response::DeleteTopics {
                topics: tables(b.topics(), topic_result)?,
            }
        }
        fb::ResponseBody::ProduceResponse => {
            let b = root.body_as_produce_response().ok_or(MISSING_BODY)?;
            Response::Produce {
                topics: tables(b.topics(), produce_topic_response)?,
            }
        }
        fb::ResponseBody::FetchResponse => {
            let b = root.body_as_fetch_response().ok_or(MISSING_BODY)?;
            Response::Fetch {
                topics: tables(b.topics(), |t| fetch_topic_response(t, payload))?,
            }
        }
        fb::ResponseBody::ListOffsetsResponse => {
            let b = root.body_as_list_offsets_response().ok_or(MISSING_BODY)?;
            Response::ListOffsets {
                topics: tables(b.topics(), list_offsets_topic_response)?,
            }
        }
        fb::ResponseBody::ErrorResponse => {
            let b = root.body_as_error_response().ok_or(MISSING_BODY)?;
            Response::Error {
                error: error_code(b.error()),
                message: b.message().unwrap_or_default().to_owned(),
            }
        }
        fb::ResponseBody::CreatePartitionsResponse => {
            let b = root.body_as_create_partitions_response().ok_or(MISSING_BODY)?;
            Response::CreatePartitions {
                topics: tables(b.topics(), topic_result)?,
            }
        }
        fb::ResponseBody::InitProducerIdResponse => producer::init_producer_id_response(root)?,
        // The group APIs, or a body type this side does not know.
        _ => group::response_body(root)?,
    };
    Ok(resp)
}

fn api_version_range(r: &fb::ApiVersionRange) -> Option<ApiVersionRange> {
    let api = ApiKey::from_u16(r.api())?;
    Some(ApiVersionRange {
        api,
        min_version: r.min_version(),
        max_version: r.max_version(),
    })
}

fn broker_info(b: fb::BrokerInfo<'_>) -> Result<BrokerInfo> {
    Ok(BrokerInfo {
        kafka: String::new(),
        node_id: b.node_id(),
        host: b.host().to_owned(),
        port: b.port(),
    })
}

fn topic_info(t: fb::TopicInfo<'_>) -> Result<TopicInfo> {
    let partitions = tables(t.partitions(), |p| {
        Ok(PartitionInfo {
            isr: Vec::new(),
            replicas: Vec::new(),
            partition: p.partition(),
            error: error_code(p.error()),
            leader: p.leader(),
            shard: p.shard(),
            shard_port: p.shard_port(),
            log_start_offset: p.log_start_offset(),
            high_watermark: p.high_watermark(),
        })
    })?;
    Ok(TopicInfo {
        name: t.name().to_owned(),
        error: error_code(t.error()),
        partitions,
        config: topic_config(t.config())?,
    })
}

fn topic_result(t: fb::TopicResult<'_>) -> Result<TopicResult> {
    Ok(TopicResult {
        name: t.name().to_owned(),
        error: error_code(t.error()),
        message: t.message().unwrap_or_default().to_owned(),
    })
}

fn produce_topic_response(t: fb::ProduceTopicResponse<'_>) -> Result<ProduceTopicResponse> {
    let partitions = tables(t.partitions(), |p| {
        Ok(ProducePartitionResponse {
            partition: p.partition(),
            error: error_code(p.error()),
            base_offset: p.base_offset(),
            log_start_offset: p.log_start_offset(),
        })
    })?;
    Ok(ProduceTopicResponse {
        name: t.name().to_owned(),
        partitions,
    })
}

/// A partition's records arrive as one slice of the frame (or none if empty),
/// whatever chunks the sender wrote them from.
fn fetch_topic_response(t: fb::FetchTopicResponse<'_>, payload: &mut Payload) -> Result<FetchTopicResponse> {
    let partitions = tables(t.partitions(), |p| {
        let records = payload.take(p.records_len())?;
        Ok(FetchPartitionResponse {
            partition: p.partition(),
            error: error_code(p.error()),
            high_watermark: p.high_watermark(),
            log_start_offset: p.log_start_offset(),
            records: if records.is_empty() { Vec::new() } else { vec![records] },
        })
    })?;
    Ok(FetchTopicResponse {
        name: t.name().to_owned(),
        partitions,
    })
}

fn list_offsets_topic_response(t: fb::ListOffsetsTopicResponse<'_>) -> Result<ListOffsetsTopicResponse> {
    let partitions = tables(t.partitions(), |p| {
        Ok(ListOffsetsPartitionResponse {
            partition: p.partition(),
            error: error_code(p.error()),
            offset: p.offset(),
        })
    })?;
    Ok(ListOffsetsTopicResponse {
        name: t.name().to_owned(),
        partitions,
    })
}

/// Absent means every setting at the broker default.
fn topic_config(c: Option<fb::TopicConfig<'_>>) -> Result<TopicConfig> {
    let Some(c) = c else { return Ok(TopicConfig::default()) };
    let flush = match c.flush() {
        None => None,
        Some(f) => Some(match f.kind() {
            fb::FlushKind::EveryAppend => FlushConfig::EveryAppend,
            fb::FlushKind::IntervalMs => FlushConfig::IntervalMs(f.value()),
            fb::FlushKind::Bytes => FlushConfig::Bytes(f.value()),
            _ => return Err(NativeError::Invalid("unknown flush kind")),
        }),
    };
    Ok(TopicConfig {
        retention_ms: c.retention_ms(),
        retention_bytes: c.retention_bytes(),
        segment_bytes: c.segment_bytes(),
        max_message_bytes: c.max_message_bytes(),
        flush,
    })
}

fn error_code(code: i16) -> ErrorCode {
    ErrorCode::from_code(code)
}

/// Maps a verified vector of tables (absent = empty). Its length is bounded
/// by the verified buffer, so the allocation is too.
fn tables<'a, T, U>(v: Tables<'a, T>, mut f: impl FnMut(T::Inner) -> Result<U>) -> Result<Vec<U>>
where
    T: Follow<'a> + 'a,
{
    let Some(v) = v else { return Ok(Vec::new()) };
    let mut out = Vec::with_capacity(v.len());
    for item in v.iter() {
        out.push(f(item)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
