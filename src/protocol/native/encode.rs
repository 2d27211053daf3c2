//! Encoding of the neutral model into native frames.
//!
//! Only metadata goes through the FlatBuffer builder. Record data is never
//! copied: produce records and stored fetch chunks are handed back as the
//! very `Bytes` given, after the chunk holding the FlatBuffer, in the order
//! the FlatBuffer lists their partitions (the order the decoder slices them
//! in). Invariant: the `records_len` written for each partition is the sum
//! of the chunk lengths pushed for it, so the lengths always add up to the
//! payload. Encoding cannot fail on valid model values; a frame over 4 GiB
//! is a caller bug and panics.
//!
//! The group APIs, which carry no payload, are encoded in `group`; the
//! producer APIs beyond Produce in `producer`.
use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, UnionWIPOffset, Vector, WIPOffset};

use super::frame;
use super::generated::sluice::native as fb;
use crate::api::{
    Acks, ApiKey, ApiVersionRange, BrokerInfo, FetchTopic, FetchTopicResponse, FlushConfig, ListOffsetsTopic,
    ListOffsetsTopicResponse, NewPartitions, NewTopic, OffsetSpec, PartitionInfo, ProduceTopic, ProduceTopicResponse,
    Request, RequestHeader, Response, ResponseHeader, TopicConfig, TopicInfo, TopicResult,
};

mod group;
mod producer;

/// Initial builder capacity: enough for every request but large metadata,
/// fetch and produce messages, which grow the builder by doubling.
const BUILDER_BYTES_INITIAL: usize = 1024;

type Fbb<'a> = FlatBufferBuilder<'a>;
type Body = WIPOffset<UnionWIPOffset>;
type StrVec<'a> = WIPOffset<Vector<'a, ForwardsUOffset<&'a str>>>;

/// Record chunks that follow the FlatBuffer, in FlatBuffer order.
#[derive(Default)]
struct Payload {
    chunks: Vec<Bytes>,
    len: usize,
}

impl Payload {
    /// Appends one partition's records; returns their total length.
    fn push_all<'b>(&mut self, records: impl IntoIterator<Item = &'b Bytes>) -> u32 {
        let mut len = 0usize;
        for chunk in records {
            len += chunk.len();
            self.chunks.push(chunk.clone());
        }
        self.len += len;
        u32::try_from(len).expect("one partition's records fit in a native frame (< 4 GiB)")
    }
}

/// Encodes a request into the chunks of one frame (prefix included).
pub fn encode_request(header: &RequestHeader, req: &Request) -> Vec<Bytes> {
    debug_assert_eq!(header.api, req.api(), "the header names the body's api");
    let mut fbb = Fbb::with_capacity(BUILDER_BYTES_INITIAL);
    let mut payload = Payload::default();
    let (body_type, body) = request_body(&mut fbb, req, &mut payload);
    finish_request(&mut fbb, header, header.api as u16, body_type, body);
    frame::assemble(fbb, payload.chunks, payload.len)
}

/// Encodes a response into the chunks of one frame (prefix included).
/// `api` is the API of the request answered; `Response::Error` may answer any.
pub fn encode_response(header: &ResponseHeader, api: ApiKey, resp: &Response) -> Vec<Bytes> {
    debug_assert!(
        super::response_api(resp).is_none_or(|a| a == api),
        "a {api:?} request is answered with {resp:?}"
    );
    let mut fbb = Fbb::with_capacity(BUILDER_BYTES_INITIAL);
    let mut payload = Payload::default();
    let (body_type, body) = response_body(&mut fbb, resp, &mut payload);
    let h = fb::ResponseHeader::create(
        &mut fbb,
        &fb::ResponseHeaderArgs {
            correlation_id: header.correlation_id,
        },
    );
    let root = fb::ResponseFrame::create(
        &mut fbb,
        &fb::ResponseFrameArgs {
            header: Some(h),
            body_type,
            body: Some(body),
        },
    );
    fbb.finish(root, None);
    frame::assemble(fbb, payload.chunks, payload.len)
}

/// Writes the root of a request; `api` is separate from `header` so that
/// tests can build frames whose header contradicts their body.
pub(crate) fn finish_request(
    fbb: &mut Fbb<'_>,
    header: &RequestHeader,
    api: u16,
    body_type: fb::RequestBody,
    body: Body,
) {
    let client_id = opt_string(fbb, &header.client_id);
    let args = fb::RequestHeaderArgs {
        correlation_id: header.correlation_id,
        api,
        version: header.version,
        client_id,
    };
    let h = fb::RequestHeader::create(fbb, &args);
    let root = fb::RequestFrame::create(
        fbb,
        &fb::RequestFrameArgs {
            header: Some(h),
            body_type,
            body: Some(body),
        },
    );
    fbb.finish(root, None);
}

fn request_body(fbb: &mut Fbb<'_>, req: &Request, payload: &mut Payload) -> (fb::RequestBody, Body) {
    match req {
        Request::ApiVersions => {
            let b = fb::ApiVersionsRequest::create(fbb, &fb::ApiVersionsRequestArgs {});
            (fb::RequestBody::ApiVersionsRequest, b.as_union_value())
        }
        Request::Metadata { topics } => {
            // Absent means every topic; an empty vector means none.
            let topics = topics.as_ref().map(|t| strings(fbb, t));
            let b = fb::MetadataRequest::create(fbb, &fb::MetadataRequestArgs { topics });
            (fb::RequestBody::MetadataRequest, b.as_union_value())
        }
        Request::CreateTopics { topics } => {
            let topics: Vec<_> = topics.iter().map(|t| new_topic(fbb, t)).collect();
            let topics = opt_vec(fbb, &topics);
            let b = fb::CreateTopicsRequest::create(fbb, &fb::CreateTopicsRequestArgs { topics });
            (fb::RequestBody::CreateTopicsRequest, b.as_union_value())
        }
        Request::DeleteTopics { names } => {
            let names = (!names.is_empty()).then(|| strings(fbb, names));
            let b = fb::DeleteTopicsRequest::create(fbb, &fb::DeleteTopicsRequestArgs { names });
            (fb::RequestBody::DeleteTopicsRequest, b.as_union_value())
        }
        Request::Produce {
            acks,
            timeout_ms,
            topics,
        } => {
            let b = produce_request(fbb, *acks, *timeout_ms, topics, payload);
            (fb::RequestBody::ProduceRequest, b.as_union_value())
        }
        Request::Fetch {
            max_wait_ms,
            min_bytes,
            max_bytes,
            topics,
        } => {
            let topics: Vec<_> = topics.iter().map(|t| fetch_topic(fbb, t)).collect();
            let topics = opt_vec(fbb, &topics);
            let args = fb::FetchRequestArgs {
                max_wait_ms: *max_wait_ms,
                min_bytes: *min_bytes,
                max_bytes: *max_bytes,
                topics,
            };
            let b = fb::FetchRequest::create(fbb, &args);
            (fb::RequestBody::FetchRequest, b.as_union_value())
        }
        Request::ListOffsets { topics } => {
            let topics: Vec<_> = topics.iter().map(|t| list_offsets_topic(fbb, t)).collect();
            let topics = opt_vec(fbb, &topics);
            let b = fb::ListOffsetsRequest::create(fbb, &fb::ListOffsetsRequestArgs { topics });
            (fb::RequestBody::ListOffsetsRequest, b.as_union_value())
        }
        Request::FindCoordinator { group_id } => group::find_coordinator_request(fbb, group_id),
        Request::JoinGroup(r) => group::join_group_request(fbb, r),
        Request::SyncGroup(r) => group::sync_group_request(fbb, r),
        Request::Heartbeat(r) => group::heartbeat_request(fbb, r),
        Request::LeaveGroup(r) => group::leave_group_request(fbb, r),
        Request::OffsetCommit(r) => group::offset_commit_request(fbb, r),
        Request::OffsetFetch { group_id, topics } => group::offset_fetch_request(fbb, group_id, topics.as_deref()),
        Request::ListGroups { states } => group::list_groups_request(fbb, states),
        Request::DescribeGroups { groups } => group::describe_groups_request(fbb, groups),
        Request::DeleteGroups { groups } => group::delete_groups_request(fbb, groups),
        Request::CreatePartitions { topics, validate_only } => create_partitions_request(fbb, topics, *validate_only),
        Request::InitProducerId {
            transactional_id,
            transaction_timeout_ms,
            producer_id,
            producer_epoch,
        } => producer::init_producer_id_request(
            fbb,
            transactional_id.as_deref(),
            *transaction_timeout_ms,
            *producer_id,
            *producer_epoch,
        ),
    }
}

fn create_partitions_request(
    fbb: &mut Fbb<'_>,
    topics: &[NewPartitions],
    validate_only: bool,
) -> (fb::RequestBody, Body) {
    let topics: Vec<_> = topics
        .iter()
        .map(|t| {
            let name = Some(fbb.create_string(&t.name));
            fb::NewPartitions::create(fbb, &fb::NewPartitionsArgs { name, count: t.count })
        })
        .collect();
    let topics = opt_vec(fbb, &topics);
    let args = fb::CreatePartitionsRequestArgs { topics, validate_only };
    let b = fb::CreatePartitionsRequest::create(fbb, &args);
    (fb::RequestBody::CreatePartitionsRequest, b.as_union_value())
}

fn new_topic<'a>(fbb: &mut Fbb<'a>, t: &NewTopic) -> WIPOffset<fb::NewTopic<'a>> {
    let name = Some(fbb.create_string(&t.name));
    let config = topic_config(fbb, &t.config);
    fb::NewTopic::create(
        fbb,
        &fb::NewTopicArgs {
            name,
            partitions: t.partitions,
            config,
        },
    )
}

fn produce_request<'a>(
    fbb: &mut Fbb<'a>,
    acks: Acks,
    timeout_ms: u32,
    topics: &[ProduceTopic],
    payload: &mut Payload,
) -> WIPOffset<fb::ProduceRequest<'a>> {
    let mut topic_offsets = Vec::with_capacity(topics.len());
    for t in topics {
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let records_len = payload.push_all([&p.records]);
            let args = fb::ProducePartitionArgs {
                partition: p.partition,
                records_len,
            };
            parts.push(fb::ProducePartition::create(fbb, &args));
        }
        let name = Some(fbb.create_string(&t.name));
        let partitions = opt_vec(fbb, &parts);
        topic_offsets.push(fb::ProduceTopic::create(
            fbb,
            &fb::ProduceTopicArgs { name, partitions },
        ));
    }
    let topics = opt_vec(fbb, &topic_offsets);
    fb::ProduceRequest::create(
        fbb,
        &fb::ProduceRequestArgs {
            acks: acks.as_i16(),
            timeout_ms,
            topics,
        },
    )
}

fn fetch_topic<'a>(fbb: &mut Fbb<'a>, t: &FetchTopic) -> WIPOffset<fb::FetchTopic<'a>> {
    let parts: Vec<_> = t
        .partitions
        .iter()
        .map(|p| {
            let args = fb::FetchPartitionArgs {
                partition: p.partition,
                offset: p.offset,
                max_bytes: p.max_bytes,
            };
            fb::FetchPartition::create(fbb, &args)
        })
        .collect();
    let name = Some(fbb.create_string(&t.name));
    let partitions = opt_vec(fbb, &parts);
    fb::FetchTopic::create(fbb, &fb::FetchTopicArgs { name, partitions })
}

fn list_offsets_topic<'a>(fbb: &mut Fbb<'a>, t: &ListOffsetsTopic) -> WIPOffset<fb::ListOffsetsTopic<'a>> {
    let parts: Vec<_> = t
        .partitions
        .iter()
        .map(|p| {
            let spec = match p.spec {
                OffsetSpec::Earliest => fb::OffsetSpec::new(fb::OffsetKind::Earliest, 0),
                OffsetSpec::Latest => fb::OffsetSpec::new(fb::OffsetKind::Latest, 0),
                OffsetSpec::Timestamp(ms) => fb::OffsetSpec::new(fb::OffsetKind::Timestamp, ms),
            };
            let args = fb::ListOffsetsPartitionArgs {
                partition: p.partition,
                spec: Some(&spec),
            };
            fb::ListOffsetsPartition::create(fbb, &args)
        })
        .collect();
    let name = Some(fbb.create_string(&t.name));
    let partitions = opt_vec(fbb, &parts);
    fb::ListOffsetsTopic::create(fbb, &fb::ListOffsetsTopicArgs { name, partitions })
}

fn response_body(fbb: &mut Fbb<'_>, resp: &Response, payload: &mut Payload) -> (fb::ResponseBody, Body) {
    match resp {
        Response::ApiVersions { apis } => {
            let apis: Vec<_> = apis.iter().map(api_version_range).collect();
            let apis = (!apis.is_empty()).then(|| fbb.create_vector(&apis));
            let b = fb::ApiVersionsResponse::create(fbb, &fb::ApiVersionsResponseArgs { apis });
            (fb::ResponseBody::ApiVersionsResponse, b.as_union_value())
        }
        Response::Metadata { brokers, topics } => {
            let brokers: Vec<_> = brokers.iter().map(|b| broker_info(fbb, b)).collect();
            let brokers = opt_vec(fbb, &brokers);
            let topics: Vec<_> = topics.iter().map(|t| topic_info(fbb, t)).collect();
            let topics = opt_vec(fbb, &topics);
            let b = fb::MetadataResponse::create(fbb, &fb::MetadataResponseArgs { brokers, topics });
            (fb::ResponseBody::MetadataResponse, b.as_union_value())
        }
        Response::CreateTopics { topics } => {
            let topics = topic_results(fbb, topics);
            let b = fb::CreateTopicsResponse::create(fbb, &fb::CreateTopicsResponseArgs { topics });
            (fb::ResponseBody::CreateTopicsResponse, b.as_union_value())
        }
        Response::DeleteTopics { topics } => {
            let topics = topic_results(fbb, topics);
            let b = fb::DeleteTopicsResponse::create(fbb, &fb::DeleteTopicsResponseArgs { topics });
            (fb::ResponseBody::DeleteTopicsResponse, b.as_union_value())
        }
        Response::Produce { topics } => {
            let topics: Vec<_> = topics.iter().map(|t| produce_topic_response(fbb, t)).collect();
            let topics = opt_vec(fbb, &topics);
            let b = fb::ProduceResponse::create(fbb, &fb::ProduceResponseArgs { topics });
            (fb::ResponseBody::ProduceResponse, b.as_union_value())
        }
        Response::Fetch { topics } => {
            let topics: Vec<_> = topics.iter().map(|t| fetch_topic_response(fbb, t, payload)).collect();
            let topics = opt_vec(fbb, &topics);
            let b = fb::FetchResponse::create(fbb, &fb::FetchResponseArgs { topics });
            (fb::ResponseBody::FetchResponse, b.as_union_value())
        }
        Response::ListOffsets { topics } => {
            let topics: Vec<_> = topics.iter().map(|t| list_offsets_topic_response(fbb, t)).collect();
            let topics = opt_vec(fbb, &topics);
            let b = fb::ListOffsetsResponse::create(fbb, &fb::ListOffsetsResponseArgs { topics });
            (fb::ResponseBody::ListOffsetsResponse, b.as_union_value())
        }
        Response::FindCoordinator(c) => group::find_coordinator_response(fbb, c),
        Response::JoinGroup(r) => group::join_group_response(fbb, r),
        Response::SyncGroup(r) => group::sync_group_response(fbb, r),
        Response::Heartbeat { error } => group::heartbeat_response(fbb, *error),
        Response::LeaveGroup(r) => group::leave_group_response(fbb, r),
        Response::OffsetCommit { topics } => group::offset_commit_response(fbb, topics),
        Response::OffsetFetch { error, topics } => group::offset_fetch_response(fbb, *error, topics),
        Response::ListGroups { error, groups } => group::list_groups_response(fbb, *error, groups),
        Response::DescribeGroups { groups } => group::describe_groups_response(fbb, groups),
        Response::DeleteGroups { groups } => group::delete_groups_response(fbb, groups),
        Response::CreatePartitions { topics } => {
            let topics = topic_results(fbb, topics);
            let b = fb::CreatePartitionsResponse::create(fbb, &fb::CreatePartitionsResponseArgs { topics });
            (fb::ResponseBody::CreatePartitionsResponse, b.as_union_value())
        }
        Response::InitProducerId {
            error,
            producer_id,
            producer_epoch,
        } => producer::init_producer_id_response(fbb, *error, *producer_id, *producer_epoch),
        Response::Error { error, message } => {
            let message = opt_string(fbb, message);
            let b = fb::ErrorResponse::create(
                fbb,
                &fb::ErrorResponseArgs {
                    error: error.code(),
                    message,
                },
            );
            (fb::ResponseBody::ErrorResponse, b.as_union_value())
        }
    }
}

fn api_version_range(r: &ApiVersionRange) -> fb::ApiVersionRange {
    fb::ApiVersionRange::new(r.api as u16, r.min_version, r.max_version)
}

fn broker_info<'a>(fbb: &mut Fbb<'a>, b: &BrokerInfo) -> WIPOffset<fb::BrokerInfo<'a>> {
    let host = Some(fbb.create_string(&b.host));
    fb::BrokerInfo::create(
        fbb,
        &fb::BrokerInfoArgs {
            node_id: b.node_id,
            host,
            port: b.port,
        },
    )
}

fn topic_info<'a>(fbb: &mut Fbb<'a>, t: &TopicInfo) -> WIPOffset<fb::TopicInfo<'a>> {
    let parts: Vec<_> = t.partitions.iter().map(|p| partition_info(fbb, p)).collect();
    let partitions = opt_vec(fbb, &parts);
    let name = Some(fbb.create_string(&t.name));
    let config = topic_config(fbb, &t.config);
    fb::TopicInfo::create(
        fbb,
        &fb::TopicInfoArgs {
            name,
            error: t.error.code(),
            partitions,
            config,
        },
    )
}

fn partition_info<'a>(fbb: &mut Fbb<'a>, p: &PartitionInfo) -> WIPOffset<fb::PartitionInfo<'a>> {
    let args = fb::PartitionInfoArgs {
        partition: p.partition,
        error: p.error.code(),
        leader: p.leader,
        shard: p.shard,
        shard_port: p.shard_port,
        log_start_offset: p.log_start_offset,
        high_watermark: p.high_watermark,
    };
    fb::PartitionInfo::create(fbb, &args)
}

type TopicResults<'a> = WIPOffset<Vector<'a, ForwardsUOffset<fb::TopicResult<'a>>>>;

fn topic_results<'a>(fbb: &mut Fbb<'a>, topics: &[TopicResult]) -> Option<TopicResults<'a>> {
    let offsets: Vec<_> = topics
        .iter()
        .map(|t| {
            let name = Some(fbb.create_string(&t.name));
            let message = opt_string(fbb, &t.message);
            fb::TopicResult::create(
                fbb,
                &fb::TopicResultArgs {
                    name,
                    error: t.error.code(),
                    message,
                },
            )
        })
        .collect();
    opt_vec(fbb, &offsets)
}

fn produce_topic_response<'a>(fbb: &mut Fbb<'a>, t: &ProduceTopicResponse) -> WIPOffset<fb::ProduceTopicResponse<'a>> {
    let parts: Vec<_> = t
        .partitions
        .iter()
        .map(|p| {
            let args = fb::ProducePartitionResponseArgs {
                partition: p.partition,
                error: p.error.code(),
                base_offset: p.base_offset,
                log_start_offset: p.log_start_offset,
            };
            fb::ProducePartitionResponse::create(fbb, &args)
        })
        .collect();
    let name = Some(fbb.create_string(&t.name));
    let partitions = opt_vec(fbb, &parts);
    fb::ProduceTopicResponse::create(fbb, &fb::ProduceTopicResponseArgs { name, partitions })
}

fn fetch_topic_response<'a>(
    fbb: &mut Fbb<'a>,
    t: &FetchTopicResponse,
    payload: &mut Payload,
) -> WIPOffset<fb::FetchTopicResponse<'a>> {
    let parts: Vec<_> = t
        .partitions
        .iter()
        .map(|p| {
            let args = fb::FetchPartitionResponseArgs {
                partition: p.partition,
                error: p.error.code(),
                high_watermark: p.high_watermark,
                log_start_offset: p.log_start_offset,
                records_len: payload.push_all(&p.records),
            };
            fb::FetchPartitionResponse::create(fbb, &args)
        })
        .collect();
    let name = Some(fbb.create_string(&t.name));
    let partitions = opt_vec(fbb, &parts);
    fb::FetchTopicResponse::create(fbb, &fb::FetchTopicResponseArgs { name, partitions })
}

fn list_offsets_topic_response<'a>(
    fbb: &mut Fbb<'a>,
    t: &ListOffsetsTopicResponse,
) -> WIPOffset<fb::ListOffsetsTopicResponse<'a>> {
    let parts: Vec<_> = t
        .partitions
        .iter()
        .map(|p| {
            let args = fb::ListOffsetsPartitionResponseArgs {
                partition: p.partition,
                error: p.error.code(),
                offset: p.offset,
            };
            fb::ListOffsetsPartitionResponse::create(fbb, &args)
        })
        .collect();
    let name = Some(fbb.create_string(&t.name));
    let partitions = opt_vec(fbb, &parts);
    fb::ListOffsetsTopicResponse::create(fbb, &fb::ListOffsetsTopicResponseArgs { name, partitions })
}

/// `None` (field absent) when every setting is the broker default.
fn topic_config<'a>(fbb: &mut Fbb<'a>, c: &TopicConfig) -> Option<WIPOffset<fb::TopicConfig<'a>>> {
    if *c == TopicConfig::default() {
        return None;
    }
    let flush = c.flush.map(|f| {
        let (kind, value) = match f {
            FlushConfig::EveryAppend => (fb::FlushKind::EveryAppend, 0),
            FlushConfig::IntervalMs(ms) => (fb::FlushKind::IntervalMs, ms),
            FlushConfig::Bytes(bytes) => (fb::FlushKind::Bytes, bytes),
        };
        fb::FlushPolicy::create(fbb, &fb::FlushPolicyArgs { kind, value })
    });
    let args = fb::TopicConfigArgs {
        retention_ms: c.retention_ms,
        retention_bytes: c.retention_bytes,
        segment_bytes: c.segment_bytes,
        max_message_bytes: c.max_message_bytes,
        flush,
    };
    Some(fb::TopicConfig::create(fbb, &args))
}

fn strings<'a>(fbb: &mut Fbb<'a>, v: &[String]) -> StrVec<'a> {
    let offsets: Vec<_> = v.iter().map(|s| fbb.create_string(s)).collect();
    fbb.create_vector(&offsets)
}

/// An empty string is left out: absent reads as "".
fn opt_string<'a>(fbb: &mut Fbb<'a>, s: &str) -> Option<WIPOffset<&'a str>> {
    (!s.is_empty()).then(|| fbb.create_string(s))
}

/// An empty vector is left out: absent reads as empty.
fn opt_vec<'a, T: 'a>(
    fbb: &mut Fbb<'a>,
    offsets: &[WIPOffset<T>],
) -> Option<WIPOffset<Vector<'a, ForwardsUOffset<T>>>> {
    (!offsets.is_empty()).then(|| fbb.create_vector(offsets))
}
