//! Data and topic APIs: Produce, Fetch, ListOffsets, Metadata,
//! CreateTopics, DeleteTopics, between Kafka messages and the neutral model.
//!
//! Record batches pass through untouched: a produce's `records` is the
//! slice of the received frame; a fetch answers with the stored batches.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::{gather, ms_in, partition_in, partition_out, Advertised, Decoded};
use crate::api::{self, Acks, ErrorCode, OffsetSpec, Request, Response};
use crate::group::offsets::OFFSETS_TOPIC;

/// Kafka's ListOffsets timestamps that name a position, not a time.
const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;
/// CreateTopics' "the broker's default" for partitions.
const DEFAULT_PARTITIONS: u32 = 1;

pub(super) fn topic_name(s: String) -> TopicName {
    TopicName(StrBytes::from_string(s))
}

pub(super) fn text(s: String) -> StrBytes {
    StrBytes::from_string(s)
}

pub(super) fn produce(req: ProduceRequest) -> Decoded {
    let topics: Vec<api::ProduceTopic> = req
        .topic_data
        .into_iter()
        .map(|t| api::ProduceTopic {
            name: t.name.0.to_string(),
            partitions: t
                .partition_data
                .into_iter()
                .map(|p| api::ProducePartition {
                    partition: partition_in(p.index),
                    records: p.records.unwrap_or_default(),
                })
                .collect(),
        })
        .collect();
    match Acks::from_i16(req.acks) {
        Some(acks) => Decoded::Request(Request::Produce {
            acks,
            timeout_ms: ms_in(req.timeout_ms),
            topics,
        }),
        None => Decoded::Response(Response::Produce {
            topics: topics
                .into_iter()
                .map(|t| api::ProduceTopicResponse {
                    name: t.name,
                    partitions: t
                        .partitions
                        .into_iter()
                        .map(|p| api::ProducePartitionResponse {
                            partition: p.partition,
                            error: ErrorCode::InvalidRequiredAcks,
                            base_offset: -1,
                            log_start_offset: -1,
                        })
                        .collect(),
                })
                .collect(),
        }),
    }
}

pub(super) fn produce_response(topics: Vec<api::ProduceTopicResponse>) -> ProduceResponse {
    let responses = topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    PartitionProduceResponse::default()
                        .with_index(partition_out(p.partition))
                        .with_error_code(p.error.code())
                        .with_base_offset(p.base_offset)
                        .with_log_start_offset(p.log_start_offset)
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(topic_name(t.name))
                .with_partition_responses(partitions)
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}

/// A sessionless fetch (the answer's session id is 0, so clients send
/// full fetches). Incremental sessions are refused.
pub(super) fn fetch(req: FetchRequest) -> Decoded {
    if req.session_id != 0 {
        let why = format!("fetch session {} does not exist", req.session_id);
        return Decoded::Refused(ErrorCode::FetchSessionIdNotFound, why);
    }
    let topics = req
        .topics
        .into_iter()
        .map(|t| api::FetchTopic {
            name: t.topic.0.to_string(),
            partitions: t
                .partitions
                .into_iter()
                .map(|p| api::FetchPartition {
                    partition: partition_in(p.partition),
                    offset: p.fetch_offset,
                    max_bytes: u32::try_from(p.partition_max_bytes).unwrap_or(0),
                })
                .collect(),
        })
        .collect();
    Decoded::Request(Request::Fetch {
        max_wait_ms: ms_in(req.max_wait_ms),
        min_bytes: u32::try_from(req.min_bytes).unwrap_or(0),
        max_bytes: u32::try_from(req.max_bytes).unwrap_or(u32::MAX),
        topics,
    })
}

/// Fetch's first flexible version: compact byte lengths from here on.
const FETCH_FIRST_FLEXIBLE: i16 = 12;

/// The Fetch answer as one frame in chunks (size prefix included): the
/// crate encodes everything but the record data, and each partition's
/// stored batches go into the frame as they are, never copied (see
/// [`super::gather`]).
pub(super) fn fetch_frame(
    correlation_id: i32,
    v: i16,
    topics: Vec<api::FetchTopicResponse>,
) -> Result<Vec<Bytes>, String> {
    let mut records = VecDeque::new();
    let mut responses = Vec::with_capacity(topics.len());
    for t in topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let field = if p.records.iter().all(Bytes::is_empty) {
                Bytes::new()
            } else {
                records.push_back(p.records);
                gather::placeholder()
            };
            partitions.push(
                PartitionData::default()
                    .with_partition_index(partition_out(p.partition))
                    .with_error_code(p.error.code())
                    .with_high_watermark(p.high_watermark)
                    // No transactions: everything below the high watermark is stable.
                    .with_last_stable_offset(p.high_watermark)
                    .with_log_start_offset(p.log_start_offset)
                    .with_records(Some(field)),
            );
        }
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(topic_name(t.name))
                .with_partitions(partitions),
        );
    }
    let body = FetchResponse::default().with_session_id(0).with_responses(responses);
    let header_version = ApiKey::Fetch.response_header_version(v);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let mut out = gather::GatherBuf::new(BytesMut::with_capacity(1024), records, v >= FETCH_FIRST_FLEXIBLE);
    header.encode(&mut out, header_version).map_err(|e| e.to_string())?;
    body.encode(&mut out, v).map_err(|e| e.to_string())?;
    let mut chunks = out.finish()?;
    let size: usize = chunks.iter().map(Bytes::len).sum();
    let size = i32::try_from(size).map_err(|_| format!("response of {size} bytes is too large"))?;
    chunks.insert(0, Bytes::copy_from_slice(&size.to_be_bytes()));
    Ok(chunks)
}

pub(super) fn list_offsets(req: ListOffsetsRequest) -> Request {
    let topics = req
        .topics
        .into_iter()
        .map(|t| api::ListOffsetsTopic {
            name: t.name.0.to_string(),
            partitions: t
                .partitions
                .into_iter()
                .map(|p| api::ListOffsetsPartition {
                    partition: partition_in(p.partition_index),
                    spec: match p.timestamp {
                        LATEST_TIMESTAMP => OffsetSpec::Latest,
                        EARLIEST_TIMESTAMP => OffsetSpec::Earliest,
                        ts => OffsetSpec::Timestamp(ts),
                    },
                })
                .collect(),
        })
        .collect();
    Request::ListOffsets { topics }
}

pub(super) fn list_offsets_response(topics: Vec<api::ListOffsetsTopicResponse>) -> ListOffsetsResponse {
    let topics = topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(partition_out(p.partition))
                        .with_error_code(p.error.code())
                        .with_timestamp(-1)
                        .with_offset(p.offset)
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic_name(t.name))
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// No topic is created by asking for its metadata
/// (`allow_auto_topic_creation` is ignored).
pub(super) fn metadata(req: MetadataRequest) -> Request {
    let topics = req
        .topics
        .map(|ts| ts.into_iter().filter_map(|t| t.name).map(|n| n.0.to_string()).collect());
    Request::Metadata { topics }
}

/// The brokers (at their Kafka listeners) and each partition's leader,
/// replicas and ISR, as the broker reports them.
pub(super) fn metadata_response(
    node: &Advertised,
    brokers: &[api::BrokerInfo],
    topics: Vec<api::TopicInfo>,
    v: i16,
) -> MetadataResponse {
    let brokers = brokers
        .iter()
        .filter_map(|b| {
            let (host, port) = crate::config::parse_host_port(&b.kafka).ok()?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.node_id))
                    .with_host(text(host))
                    .with_port(i32::from(port)),
            )
        })
        .collect();
    let ids = |nodes: &[i32]| nodes.iter().map(|&n| BrokerId(n)).collect::<Vec<_>>();
    let topics = topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_error_code(p.error.code())
                        .with_partition_index(partition_out(p.partition))
                        .with_leader_id(BrokerId(if p.error == ErrorCode::None { p.leader } else { -1 }))
                        .with_replica_nodes(ids(&p.replicas))
                        .with_isr_nodes(ids(&p.isr))
                })
                .collect();
            MetadataResponseTopic::default()
                .with_error_code(t.error.code())
                .with_is_internal(t.name == OFFSETS_TOPIC)
                .with_name(Some(topic_name(t.name)))
                .with_partitions(partitions)
        })
        .collect();
    // Any node forwards admin requests to the controller quorum, so each
    // names itself.
    let mut resp = MetadataResponse::default()
        .with_brokers(brokers)
        .with_controller_id(BrokerId(node.node_id))
        .with_topics(topics);
    if v >= 2 {
        resp.cluster_id = Some(text(super::admin::cluster_id(node)));
    }
    resp
}

/// Creates topics with the configs the broker knows (retention.ms,
/// retention.bytes, segment.bytes, max.message.bytes,
/// min.insync.replicas) and the replication factor (-1: the broker's
/// default); other configs and manual assignments are ignored.
/// `validate_only` is refused rather than creating the topics.
pub(super) fn create_topics(req: CreateTopicsRequest) -> Decoded {
    if req.validate_only {
        let topics = req
            .topics
            .into_iter()
            .map(|t| api::TopicResult {
                name: t.name.0.to_string(),
                error: ErrorCode::InvalidRequest,
                message: "validate_only is not supported".into(),
            })
            .collect();
        return Decoded::Response(Response::CreateTopics { topics });
    }
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let mut config = api::TopicConfig::default();
            let mut replication = api::Replication {
                // -1 is the broker's default; 0 and other negatives are
                // refused by the broker (as u16::MAX, above any cluster).
                factor: (t.replication_factor != -1).then(|| u16::try_from(t.replication_factor).unwrap_or(u16::MAX)),
                min_insync: None,
            };
            for c in &t.configs {
                let value = c.value.as_deref().unwrap_or_default();
                match c.name.as_str() {
                    "retention.ms" => config.retention_ms = value.parse().ok(),
                    "retention.bytes" => config.retention_bytes = value.parse().ok(),
                    "segment.bytes" => config.segment_bytes = value.parse().ok(),
                    "max.message.bytes" => config.max_message_bytes = value.parse().ok(),
                    "min.insync.replicas" => replication.min_insync = Some(value.parse().unwrap_or(0)),
                    _ => {}
                }
            }
            api::NewTopic {
                replication,
                name: t.name.0.to_string(),
                // -1 (the broker's default) and other negatives; 0 is refused by the broker.
                partitions: u32::try_from(t.num_partitions).unwrap_or(DEFAULT_PARTITIONS),
                config,
            }
        })
        .collect();
    Decoded::Request(Request::CreateTopics { topics })
}

pub(super) fn create_topics_response(topics: Vec<api::TopicResult>) -> CreateTopicsResponse {
    let topics = topics
        .into_iter()
        .map(|t| {
            CreatableTopicResult::default()
                .with_name(topic_name(t.name))
                .with_error_code(t.error.code())
                .with_error_message((!t.message.is_empty()).then(|| text(t.message)))
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

pub(super) fn delete_topics(req: DeleteTopicsRequest) -> Request {
    Request::DeleteTopics {
        names: req.topic_names.into_iter().map(|n| n.0.to_string()).collect(),
    }
}

pub(super) fn delete_topics_response(topics: Vec<api::TopicResult>, v: i16) -> DeleteTopicsResponse {
    let responses = topics
        .into_iter()
        .map(|t| {
            let message = (v >= 5 && !t.message.is_empty()).then(|| text(t.message));
            DeletableTopicResult::default()
                .with_name(Some(topic_name(t.name)))
                .with_error_code(t.error.code())
                .with_error_message(message)
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
