//! Header and version handling, decoding into the neutral model, and
//! encoding of every answer at the edges of its advertised range.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::*;
use crate::api::{Acks, Request, Response};

fn node() -> Advertised {
    Advertised {
        node_id: 7,
        host: "127.0.0.1".into(),
        port: 9092,
        topic_defaults: crate::api::TopicConfig::default(),
        cluster: None,
    }
}

/// A request frame (without the size prefix) as a client writes it.
fn request<T: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &T) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("unit")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .expect("header encodes");
    body.encode(&mut buf, version).expect("body encodes");
    buf.freeze()
}

/// Splits an answer frame into its correlation id and body, reading the
/// response header at the version a client would.
/// A response frame, whole or in chunks.
trait Frame {
    fn whole(&self) -> Bytes;
}

impl Frame for Bytes {
    fn whole(&self) -> Bytes {
        self.clone()
    }
}

impl Frame for Vec<Bytes> {
    fn whole(&self) -> Bytes {
        self.concat().into()
    }
}

fn answer(frame: &impl Frame, key: ApiKey, version: i16) -> (i32, Bytes) {
    let mut buf = frame.whole();
    let size = buf.get_i32();
    assert_eq!(size as usize, buf.len(), "size prefix matches");
    let header = ResponseHeader::decode(&mut buf, key.response_header_version(version)).expect("response header");
    (header.correlation_id, buf)
}

fn reply(action: Action) -> Bytes {
    match action {
        Action::Reply(frame) => frame,
        other => panic!("expected a reply, got {other:?}"),
    }
}

#[test]
fn api_versions_v3_flexible_request_gets_a_v0_response_header() {
    let body = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("unit"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    let frame = request(ApiKey::ApiVersions, 3, 42, &body);
    let (header, action) = decode_request(frame, &node()).expect("decodes");
    assert_eq!(
        (header.api_key, header.version, header.correlation_id),
        (ApiKey::ApiVersions, 3, 42)
    );
    assert_eq!(header.client_id, "unit");
    let frame = reply(action);
    // Header v0: size, correlation id, then the body at once (no tagged fields).
    assert_eq!(ApiKey::ApiVersions.response_header_version(3), 0);
    let (cid, mut body) = answer(&frame, ApiKey::ApiVersions, 3);
    assert_eq!(cid, 42);
    let resp = ApiVersionsResponse::decode(&mut body, 3).expect("body");
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.api_keys.len(), SUPPORTED.len());
    let produce = resp
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Produce as i16)
        .expect("produce listed");
    assert_eq!((produce.min_version, produce.max_version), (3, 9));
}

#[test]
fn api_versions_above_ours_gets_unsupported_version_at_v0() {
    let frame = request(ApiKey::ApiVersions, 4, 5, &ApiVersionsRequest::default());
    let (_, action) = decode_request(frame, &node()).expect("decodes");
    let (cid, mut body) = answer(&reply(action), ApiKey::ApiVersions, 0);
    assert_eq!(cid, 5);
    let resp = ApiVersionsResponse::decode(&mut body, 0).expect("v0 body");
    assert_eq!(resp.error_code, ErrorCode::UnsupportedVersion.code());
    assert!(!resp.api_keys.is_empty(), "the client learns what we serve");
}

#[test]
fn unsupported_api_gets_unsupported_version() {
    let frame = request(ApiKey::EndTxn, 4, 9, &EndTxnRequest::default());
    let (header, action) = decode_request(frame, &node()).expect("decodes");
    assert_eq!(header.api_key, ApiKey::EndTxn);
    let (cid, mut body) = answer(&reply(action), ApiKey::EndTxn, 4);
    assert_eq!(cid, 9);
    let resp = EndTxnResponse::decode(&mut body, 4).expect("body");
    assert_eq!(resp.error_code, ErrorCode::UnsupportedVersion.code());
}

#[test]
fn supported_api_at_an_unsupported_version_is_answered() {
    let frame = request(ApiKey::Heartbeat, 4, 3, &HeartbeatRequest::default());
    assert!(matches!(decode_request(frame, &node()), Ok((_, Action::Broker(_)))));
    // JoinGroup is served up to v9; the codec knows no v10, so pick an API
    // whose served range stops below the codec's: Fetch v13+.
    let frame = request(ApiKey::Fetch, 13, 4, &FetchRequest::default());
    let (_, action) = decode_request(frame, &node()).expect("decodes");
    let (cid, mut body) = answer(&reply(action), ApiKey::Fetch, 13);
    assert_eq!(cid, 4);
    let resp = FetchResponse::decode(&mut body, 13).expect("body");
    assert_eq!(resp.error_code, ErrorCode::UnsupportedVersion.code());
}

#[test]
fn bad_headers_are_errors_and_bad_bodies_get_answers() {
    assert!(matches!(
        decode_request(Bytes::from_static(&[0, 3, 0]), &node()),
        Err(KafkaError::HeaderTruncated(3))
    ));
    assert!(matches!(
        decode_request(Bytes::from_static(&[0x7f, 0, 0, 1, 0, 0, 0, 1, 0, 0]), &node()),
        Err(KafkaError::UnknownApiKey(0x7f00))
    ));
    assert!(matches!(
        frame_len((-1i32).to_be_bytes(), 1 << 20),
        Err(KafkaError::NegativeSize(-1))
    ));
    assert!(matches!(
        frame_len((2i32 << 20).to_be_bytes(), 1 << 20),
        Err(KafkaError::FrameTooLarge { .. })
    ));
    assert_eq!(frame_len(100i32.to_be_bytes(), 1 << 20).expect("fits"), 100);
    // A Heartbeat v0 header followed by a body cut short.
    let mut frame = request(ApiKey::Heartbeat, 0, 11, &HeartbeatRequest::default()).to_vec();
    frame.truncate(frame.len() - 3);
    let (_, action) = decode_request(Bytes::from(frame), &node()).expect("header parses");
    let (cid, mut body) = answer(&reply(action), ApiKey::Heartbeat, 0);
    assert_eq!(cid, 11);
    let resp = HeartbeatResponse::decode(&mut body, 0).expect("body");
    assert_eq!(resp.error_code, ErrorCode::InvalidRequest.code());
}

#[test]
fn produce_records_are_slices_of_the_frame() {
    let records = Bytes::from_static(b"pretend these are record batches");
    let body = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(2)
                .with_records(Some(records.clone()))])]);
    for version in [3, 9] {
        let frame = request(ApiKey::Produce, version, 1, &body);
        let range = frame.as_ptr_range();
        let (_, action) = decode_request(frame.clone(), &node()).expect("decodes");
        let Action::Broker(Request::Produce { acks, topics, .. }) = action else {
            panic!("not a produce: {action:?}");
        };
        assert_eq!(acks, Acks::All);
        let p = &topics[0].partitions[0];
        assert_eq!((topics[0].name.as_str(), p.partition), ("t", 2));
        assert_eq!(p.records, records);
        assert!(range.contains(&p.records.as_ptr()), "no copy");
    }
    let bad_acks = body.with_acks(2);
    let (_, action) = decode_request(request(ApiKey::Produce, 9, 1, &bad_acks), &node()).expect("decodes");
    let (_, mut body) = answer(&reply(action), ApiKey::Produce, 9);
    let resp = ProduceResponse::decode(&mut body, 9).expect("body");
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code,
        ErrorCode::InvalidRequiredAcks.code()
    );
}

#[test]
fn an_incremental_fetch_session_is_refused_with_its_own_code() {
    let body = FetchRequest::default().with_session_id(7).with_session_epoch(1);
    let (_, action) = decode_request(request(ApiKey::Fetch, 12, 3, &body), &node()).expect("decodes");
    let (_, mut body) = answer(&reply(action), ApiKey::Fetch, 12);
    let resp = FetchResponse::decode(&mut body, 12).expect("body");
    assert_eq!(resp.error_code, ErrorCode::FetchSessionIdNotFound.code());
}

#[test]
fn metadata_request_maps_null_and_named_topics() {
    let all = MetadataRequest::default().with_topics(None);
    let (_, action) = decode_request(request(ApiKey::Metadata, 12, 1, &all), &node()).expect("decodes");
    assert_eq!(action, Action::Broker(Request::Metadata { topics: None }));
    let named = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("a"))))]));
    let (_, action) = decode_request(request(ApiKey::Metadata, 1, 1, &named), &node()).expect("decodes");
    assert_eq!(
        action,
        Action::Broker(Request::Metadata {
            topics: Some(vec!["a".into()])
        })
    );
}

/// One answer of every kind the broker gives, with the fields that vary
/// by version filled in.
fn answers() -> Vec<(ApiKey, Response)> {
    use crate::api::{
        CoordinatorInfo, DescribedGroup, DescribedMember, FetchPartitionResponse, FetchTopicResponse, GroupResult,
        JoinGroupMember, JoinGroupResponse, LeaveGroupResponse, LeftMember, ListOffsetsPartitionResponse,
        ListOffsetsTopicResponse, ListedGroup, OffsetCommitTopicResponse, OffsetFetchPartitionResponse,
        OffsetFetchTopicResponse, PartitionError, PartitionInfo, ProducePartitionResponse, ProduceTopicResponse,
        SyncGroupResponse, TopicConfig, TopicInfo, TopicResult,
    };
    let member = JoinGroupMember {
        member_id: "m".into(),
        group_instance_id: Some("static".into()),
        metadata: Bytes::from_static(b"meta"),
    };
    vec![
        (
            ApiKey::Produce,
            Response::Produce {
                topics: vec![ProduceTopicResponse {
                    name: "t".into(),
                    partitions: vec![ProducePartitionResponse {
                        partition: 0,
                        error: ErrorCode::None,
                        base_offset: 10,
                        log_start_offset: 0,
                    }],
                }],
            },
        ),
        (
            ApiKey::Fetch,
            Response::Fetch {
                topics: vec![FetchTopicResponse {
                    name: "t".into(),
                    partitions: vec![FetchPartitionResponse {
                        partition: 0,
                        error: ErrorCode::None,
                        high_watermark: 5,
                        log_start_offset: 0,
                        records: vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")],
                    }],
                }],
            },
        ),
        (
            ApiKey::ListOffsets,
            Response::ListOffsets {
                topics: vec![ListOffsetsTopicResponse {
                    name: "t".into(),
                    partitions: vec![ListOffsetsPartitionResponse {
                        partition: 0,
                        error: ErrorCode::None,
                        offset: 3,
                    }],
                }],
            },
        ),
        (
            ApiKey::Metadata,
            Response::Metadata {
                brokers: vec![],
                topics: vec![TopicInfo {
                    name: "t".into(),
                    error: ErrorCode::None,
                    partitions: vec![PartitionInfo {
                        isr: Vec::new(),
                        replicas: Vec::new(),
                        partition: 0,
                        error: ErrorCode::None,
                        leader: 7,
                        shard: 0,
                        shard_port: 1,
                        log_start_offset: 0,
                        high_watermark: 0,
                    }],
                    config: TopicConfig::default(),
                }],
            },
        ),
        (
            ApiKey::CreateTopics,
            Response::CreateTopics {
                topics: vec![TopicResult {
                    name: "t".into(),
                    error: ErrorCode::TopicAlreadyExists,
                    message: "exists".into(),
                }],
            },
        ),
        (
            ApiKey::DeleteTopics,
            Response::DeleteTopics {
                topics: vec![TopicResult {
                    name: "t".into(),
                    error: ErrorCode::None,
                    message: String::new(),
                }],
            },
        ),
        (
            ApiKey::FindCoordinator,
            Response::FindCoordinator(CoordinatorInfo {
                kafka: String::new(),
                error: ErrorCode::None,
                node_id: 7,
                host: "native-host".into(),
                port: 1,
                shard: 0,
                shard_port: 2,
            }),
        ),
        (
            ApiKey::JoinGroup,
            Response::JoinGroup(JoinGroupResponse {
                error: ErrorCode::None,
                generation_id: 1,
                protocol_type: Some("consumer".into()),
                protocol_name: None,
                leader: "m".into(),
                member_id: "m".into(),
                members: vec![member],
            }),
        ),
        (
            ApiKey::SyncGroup,
            Response::SyncGroup(SyncGroupResponse {
                error: ErrorCode::None,
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                assignment: Bytes::from_static(b"a"),
            }),
        ),
        (ApiKey::Heartbeat, Response::Heartbeat { error: ErrorCode::None }),
        (
            ApiKey::LeaveGroup,
            Response::LeaveGroup(LeaveGroupResponse {
                error: ErrorCode::None,
                members: vec![LeftMember {
                    member_id: "m".into(),
                    group_instance_id: Some("static".into()),
                    error: ErrorCode::UnknownMemberId,
                }],
            }),
        ),
        (
            ApiKey::OffsetCommit,
            Response::OffsetCommit {
                topics: vec![OffsetCommitTopicResponse {
                    name: "t".into(),
                    partitions: vec![PartitionError {
                        partition: 0,
                        error: ErrorCode::None,
                    }],
                }],
            },
        ),
        (
            ApiKey::OffsetFetch,
            Response::OffsetFetch {
                error: ErrorCode::None,
                topics: vec![OffsetFetchTopicResponse {
                    name: "t".into(),
                    partitions: vec![OffsetFetchPartitionResponse {
                        partition: 0,
                        offset: 4,
                        leader_epoch: 2,
                        metadata: None,
                        error: ErrorCode::None,
                    }],
                }],
            },
        ),
        (
            ApiKey::ListGroups,
            Response::ListGroups {
                error: ErrorCode::None,
                groups: vec![ListedGroup {
                    group_id: "g".into(),
                    protocol_type: "consumer".into(),
                    state: "Stable".into(),
                }],
            },
        ),
        (
            ApiKey::DescribeGroups,
            Response::DescribeGroups {
                groups: vec![DescribedGroup {
                    group_id: "g".into(),
                    error: ErrorCode::None,
                    state: "Stable".into(),
                    protocol_type: "consumer".into(),
                    protocol_name: "range".into(),
                    members: vec![DescribedMember {
                        member_id: "m".into(),
                        group_instance_id: Some("static".into()),
                        client_id: "c".into(),
                        client_host: "/127.0.0.1".into(),
                        metadata: Bytes::new(),
                        assignment: Bytes::new(),
                    }],
                }],
            },
        ),
        (
            ApiKey::DeleteGroups,
            Response::DeleteGroups {
                groups: vec![GroupResult {
                    group_id: "g".into(),
                    error: ErrorCode::None,
                }],
            },
        ),
        (
            ApiKey::InitProducerId,
            Response::InitProducerId {
                error: ErrorCode::None,
                producer_id: 1_000_000_007,
                producer_epoch: 0,
            },
        ),
        (
            ApiKey::CreatePartitions,
            Response::CreatePartitions {
                topics: vec![
                    TopicResult {
                        name: "t".into(),
                        error: ErrorCode::None,
                        message: String::new(),
                    },
                    TopicResult {
                        name: "u".into(),
                        error: ErrorCode::InvalidPartitions,
                        message: "smaller".into(),
                    },
                ],
            },
        ),
    ]
}

/// Decodes an answer body as a client would, at `version`.
fn decodes(key: ApiKey, version: i16, body: &mut Bytes) -> bool {
    macro_rules! ok {
        ($ty:ty) => {
            <$ty>::decode(body, version).is_ok()
        };
    }
    match key {
        ApiKey::Produce => ok!(ProduceResponse),
        ApiKey::Fetch => ok!(FetchResponse),
        ApiKey::ListOffsets => ok!(ListOffsetsResponse),
        ApiKey::Metadata => ok!(MetadataResponse),
        ApiKey::CreateTopics => ok!(CreateTopicsResponse),
        ApiKey::DeleteTopics => ok!(DeleteTopicsResponse),
        ApiKey::FindCoordinator => ok!(FindCoordinatorResponse),
        ApiKey::JoinGroup => ok!(JoinGroupResponse),
        ApiKey::SyncGroup => ok!(SyncGroupResponse),
        ApiKey::Heartbeat => ok!(HeartbeatResponse),
        ApiKey::LeaveGroup => ok!(LeaveGroupResponse),
        ApiKey::OffsetCommit => ok!(OffsetCommitResponse),
        ApiKey::OffsetFetch => ok!(OffsetFetchResponse),
        ApiKey::ListGroups => ok!(ListGroupsResponse),
        ApiKey::DescribeGroups => ok!(DescribeGroupsResponse),
        ApiKey::DeleteGroups => ok!(DeleteGroupsResponse),
        ApiKey::CreatePartitions => ok!(CreatePartitionsResponse),
        ApiKey::DescribeConfigs => ok!(DescribeConfigsResponse),
        ApiKey::DescribeCluster => ok!(DescribeClusterResponse),
        ApiKey::InitProducerId => ok!(InitProducerIdResponse),
        other => panic!("no decoder for {other:?}"),
    }
}

#[test]
fn every_answer_encodes_at_every_advertised_version() {
    for (key, resp) in answers() {
        let range = versions::range_of(key).expect("served");
        for version in range {
            let header = Header {
                api_key: key,
                version,
                correlation_id: 77,
                client_id: String::new(),
                echo: Echo::None,
            };
            let frame = try_encode_chunks(&header, &node(), resp.clone())
                .unwrap_or_else(|e| panic!("{key:?} v{version} encodes: {e}"));
            let (cid, mut body) = answer(&frame, key, version);
            assert_eq!(cid, 77, "{key:?} v{version}");
            assert!(decodes(key, version, &mut body), "{key:?} v{version} decodes");
            assert!(!body.has_remaining(), "{key:?} v{version}: nothing left over");
        }
    }
}

#[test]
fn fetch_answer_carries_the_batches_and_coordinator_the_kafka_port() {
    let answers = answers();
    let (_, fetch) = answers.iter().find(|(k, _)| *k == ApiKey::Fetch).expect("fetch");
    let header = Header {
        api_key: ApiKey::Fetch,
        version: 12,
        correlation_id: 1,
        client_id: String::new(),
        echo: Echo::None,
    };
    let (_, mut body) = answer(&encode_response(&header, &node(), fetch.clone()), ApiKey::Fetch, 12);
    let resp = FetchResponse::decode(&mut body, 12).expect("body");
    assert_eq!(resp.session_id, 0);
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.records.as_deref(), Some(&b"onetwo"[..]));
    assert_eq!((p.high_watermark, p.last_stable_offset), (5, 5));

    let (_, coordinator) = answers
        .iter()
        .find(|(k, _)| *k == ApiKey::FindCoordinator)
        .expect("coordinator");
    let header = Header {
        api_key: ApiKey::FindCoordinator,
        version: 3,
        ..header
    };
    let frame = encode_response(&header, &node(), coordinator.clone());
    let (_, mut body) = answer(&frame, ApiKey::FindCoordinator, 3);
    let resp = FindCoordinatorResponse::decode(&mut body, 3).expect("body");
    assert_eq!((resp.node_id.0, resp.host.as_str(), resp.port), (7, "127.0.0.1", 9092));
}

/// A DescribeConfigs request as a client sends it: one topic (only two
/// keys), one broker, one unknown topic, one unsupported resource type.
fn describe_configs_request() -> DescribeConfigsRequest {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let resource = |t: i8, name: &'static str, keys: Option<Vec<&'static str>>| {
        DescribeConfigsResource::default()
            .with_resource_type(t)
            .with_resource_name(StrBytes::from_static_str(name))
            .with_configuration_keys(keys.map(|k| k.into_iter().map(StrBytes::from_static_str).collect()))
    };
    DescribeConfigsRequest::default()
        .with_resources(vec![
            resource(2, "t", Some(vec!["retention.ms", "segment.bytes"])),
            resource(4, "7", None),
            resource(2, "gone", None),
            resource(32, "g", None),
        ])
        .with_include_synonyms(true)
}

#[test]
fn describe_configs_answers_from_metadata_in_resource_order() {
    use crate::api::{TopicConfig, TopicInfo};
    let mut node = node();
    node.topic_defaults.segment_bytes = Some(4096);
    for version in 1..=4 {
        let frame = request(ApiKey::DescribeConfigs, version, 5, &describe_configs_request());
        let (header, action) = decode_request(frame, &node).expect("decodes");
        let Action::Broker(Request::Metadata { topics }) = action else {
            panic!("expected a metadata request, got {action:?}");
        };
        assert_eq!(topics, Some(vec!["t".to_string(), "gone".to_string()]));
        let info = |name: &str, error| TopicInfo {
            name: name.into(),
            error,
            partitions: Vec::new(),
            config: TopicConfig {
                retention_ms: Some(60_000),
                ..TopicConfig::default()
            },
        };
        let resp = Response::Metadata {
            brokers: Vec::new(),
            topics: vec![
                info("t", ErrorCode::None),
                info("gone", ErrorCode::UnknownTopicOrPartition),
            ],
        };
        let (cid, mut body) = answer(&encode_response(&header, &node, resp), ApiKey::DescribeConfigs, version);
        assert_eq!(cid, 5);
        let resp = DescribeConfigsResponse::decode(&mut body, version).expect("body");
        let r = &resp.results;
        assert_eq!(r.len(), 4, "v{version}");
        let configs: Vec<(&str, Option<&str>, i8)> = r[0]
            .configs
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_deref(), c.config_source))
            .collect();
        assert_eq!(
            configs,
            vec![("retention.ms", Some("60000"), 1), ("segment.bytes", Some("4096"), 4)],
            "v{version}"
        );
        assert_eq!(r[0].configs[0].synonyms.len(), 2, "override, then the default");
        assert_eq!(
            (r[1].error_code, r[1].configs.len()),
            (0, 0),
            "a broker has no configs yet"
        );
        assert_eq!(r[2].error_code, ErrorCode::UnknownTopicOrPartition.code());
        assert_eq!(r[3].error_code, ErrorCode::InvalidRequest.code());
    }
}

#[test]
fn describe_cluster_names_this_node_as_broker_and_controller() {
    for version in 0..=1 {
        let frame = request(ApiKey::DescribeCluster, version, 9, &DescribeClusterRequest::default());
        let (_, action) = decode_request(frame, &node()).expect("decodes");
        let (cid, mut body) = answer(&reply(action), ApiKey::DescribeCluster, version);
        assert_eq!(cid, 9);
        let resp = DescribeClusterResponse::decode(&mut body, version).expect("body");
        assert_eq!(
            (resp.error_code, resp.cluster_id.as_str(), resp.controller_id.0),
            (0, "sluice-7", 7)
        );
        let b = &resp.brokers[0];
        assert_eq!((b.broker_id.0, b.host.as_str(), b.port), (7, "127.0.0.1", 9092));
    }
}

#[test]
fn create_partitions_maps_to_the_neutral_request() {
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    let topic = |name: &'static str, count| {
        CreatePartitionsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(name)))
            .with_count(count)
    };
    for version in 0..=3 {
        let body = CreatePartitionsRequest::default()
            .with_topics(vec![topic("t", 6), topic("u", -1)])
            .with_validate_only(true);
        let (_, action) =
            decode_request(request(ApiKey::CreatePartitions, version, 1, &body), &node()).expect("decodes");
        let Action::Broker(Request::CreatePartitions { topics, validate_only }) = action else {
            panic!("expected CreatePartitions, got {action:?}");
        };
        assert!(validate_only);
        let got: Vec<(&str, u32)> = topics.iter().map(|t| (t.name.as_str(), t.count)).collect();
        assert_eq!(got, vec![("t", 6), ("u", 0)], "v{version}");
    }
}

#[test]
fn init_producer_id_maps_to_the_neutral_request_at_every_version() {
    for version in 0..=5 {
        // A transactional producer; the id and epoch exist from v3 on.
        let mut body = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))))
            .with_transaction_timeout_ms(60_000);
        if version >= 3 {
            body = body.with_producer_id(ProducerId(42)).with_producer_epoch(3);
        }
        let (_, action) = decode_request(request(ApiKey::InitProducerId, version, 1, &body), &node()).expect("decodes");
        let (producer_id, producer_epoch) = if version >= 3 { (42, 3) } else { (-1, -1) };
        let expected = Request::InitProducerId {
            transactional_id: Some("tx".into()),
            transaction_timeout_ms: 60_000,
            producer_id,
            producer_epoch,
        };
        assert_eq!(action, Action::Broker(expected), "v{version}");
        // An idempotent producer: no transactional id (null, not "").
        let idempotent = InitProducerIdRequest::default().with_transactional_id(None);
        let (_, action) =
            decode_request(request(ApiKey::InitProducerId, version, 2, &idempotent), &node()).expect("decodes");
        let Action::Broker(Request::InitProducerId { transactional_id, .. }) = action else {
            panic!("expected InitProducerId, got {action:?}");
        };
        assert_eq!(transactional_id, None, "v{version}");
    }
}

#[test]
fn init_producer_id_answer_carries_id_epoch_and_error() {
    for (version, error, id, epoch) in [(0, ErrorCode::None, 7, 0), (5, ErrorCode::UnsupportedVersion, -1, -1)] {
        let header = Header {
            api_key: ApiKey::InitProducerId,
            version,
            correlation_id: 3,
            client_id: String::new(),
            echo: Echo::None,
        };
        let resp = Response::InitProducerId {
            error,
            producer_id: id,
            producer_epoch: epoch,
        };
        let (cid, mut body) = answer(
            &encode_response(&header, &node(), resp),
            ApiKey::InitProducerId,
            version,
        );
        assert_eq!(cid, 3);
        let resp = InitProducerIdResponse::decode(&mut body, version).expect("body");
        assert_eq!(
            (resp.error_code, resp.producer_id.0, resp.producer_epoch),
            (error.code(), id, epoch),
            "v{version}"
        );
    }
}

#[test]
fn a_transaction_coordinator_lookup_names_this_node() {
    // Key types exist from v1 on.
    for version in 1..=3 {
        let mut body = FindCoordinatorRequest::default().with_key_type(1);
        body.key = StrBytes::from_static_str("tx");
        let (_, action) =
            decode_request(request(ApiKey::FindCoordinator, version, 4, &body), &node()).expect("decodes");
        let (_, mut body) = answer(&reply(action), ApiKey::FindCoordinator, version);
        let resp = FindCoordinatorResponse::decode(&mut body, version).expect("body");
        assert_eq!(
            (resp.error_code, resp.node_id.0, resp.host.as_str(), resp.port),
            (0, 7, "127.0.0.1", 9092),
            "v{version}"
        );
    }
    // No other key type has a coordinator here.
    let body = FindCoordinatorRequest::default().with_key_type(2);
    let (_, action) = decode_request(request(ApiKey::FindCoordinator, 3, 4, &body), &node()).expect("decodes");
    let (_, mut body) = answer(&reply(action), ApiKey::FindCoordinator, 3);
    let resp = FindCoordinatorResponse::decode(&mut body, 3).expect("body");
    assert_eq!(resp.error_code, ErrorCode::CoordinatorNotAvailable.code());
}

/// The Fetch answer gathered around the stored chunks is byte for byte
/// what the crate encodes with the records joined, at every version; and
/// every stored chunk is in the frame as it is, not copied.
#[test]
fn fetch_frames_hold_the_stored_chunks_uncopied_and_match_the_crate_encoding() {
    use crate::api::{FetchPartitionResponse, FetchTopicResponse};
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};

    let chunk = |n: usize, fill: u8| Bytes::from(vec![fill; n]);
    let part = |partition: u32, error: ErrorCode, records: Vec<Bytes>| FetchPartitionResponse {
        partition,
        error,
        high_watermark: 100 + i64::from(partition),
        log_start_offset: 3,
        records,
    };
    let topics = vec![
        FetchTopicResponse {
            name: "a".into(),
            partitions: vec![
                part(0, ErrorCode::None, vec![chunk(70_000, 1), chunk(10, 2), chunk(300, 3)]),
                part(1, ErrorCode::None, vec![]),
                part(2, ErrorCode::OffsetOutOfRange, vec![]),
                part(3, ErrorCode::None, vec![chunk(1, 4)]),
            ],
        },
        FetchTopicResponse {
            name: "b".into(),
            partitions: vec![part(7, ErrorCode::None, vec![chunk(200, 5), Bytes::new()])],
        },
    ];
    let stored: Vec<Bytes> = topics
        .iter()
        .flat_map(|t| t.partitions.iter().flat_map(|p| p.records.iter().cloned()))
        .filter(|c| !c.is_empty())
        .collect();
    for version in versions::range_of(ApiKey::Fetch).expect("served") {
        let header = Header {
            api_key: ApiKey::Fetch,
            version,
            correlation_id: 9,
            client_id: String::new(),
            echo: Echo::None,
        };
        let chunks = encode_response(&header, &node(), Response::Fetch { topics: topics.clone() });
        for s in &stored {
            assert!(
                chunks.iter().any(|c| c.as_ptr() == s.as_ptr() && c.len() == s.len()),
                "v{version}: a stored chunk of {} bytes was copied",
                s.len()
            );
        }
        let responses = topics
            .iter()
            .map(|t| {
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_string(t.name.clone())))
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                PartitionData::default()
                                    .with_partition_index(p.partition as i32)
                                    .with_error_code(p.error.code())
                                    .with_high_watermark(p.high_watermark)
                                    .with_last_stable_offset(p.high_watermark)
                                    .with_log_start_offset(p.log_start_offset)
                                    .with_records(Some(p.records.concat().into()))
                            })
                            .collect(),
                    )
            })
            .collect();
        let expected = FetchResponse::default().with_session_id(0).with_responses(responses);
        let expected = frame(9, ApiKey::Fetch, version, &expected).expect("crate encodes");
        assert_eq!(chunks.concat(), expected.to_vec(), "v{version}");
    }
}
