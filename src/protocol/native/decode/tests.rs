//! Unit tests of the decoder on frames the public encoder cannot produce:
//! contradictory headers, out-of-range values, lengths that do not add up.
use flatbuffers::{FlatBufferBuilder, UnionWIPOffset, WIPOffset};

use super::*;
use crate::protocol::native::encode::finish_request;

type Build = fn(&mut FlatBufferBuilder<'static>) -> (fb::RequestBody, WIPOffset<UnionWIPOffset>);

fn request(api: u16, version: u16, build: Build, payload: &'static [u8]) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let (body_type, body) = build(&mut fbb);
    let header = RequestHeader {
        correlation_id: 42,
        api: ApiKey::Metadata,
        version,
        client_id: "t".into(),
    };
    finish_request(&mut fbb, &header, api, body_type, body);
    let chunks = frame::assemble(fbb, vec![Bytes::from_static(payload)], payload.len());
    let frame: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    Bytes::from(frame).slice(frame::FRAME_PREFIX_BYTES..)
}

fn metadata(fbb: &mut FlatBufferBuilder<'static>) -> (fb::RequestBody, WIPOffset<UnionWIPOffset>) {
    let b = fb::MetadataRequest::create(fbb, &fb::MetadataRequestArgs { topics: None });
    (fb::RequestBody::MetadataRequest, b.as_union_value())
}

fn produce(fbb: &mut FlatBufferBuilder<'static>, acks: i16, records_len: u32) -> WIPOffset<UnionWIPOffset> {
    let p = fb::ProducePartition::create(
        fbb,
        &fb::ProducePartitionArgs {
            partition: 0,
            records_len,
        },
    );
    let partitions = Some(fbb.create_vector(&[p]));
    let name = Some(fbb.create_string("t"));
    let t = fb::ProduceTopic::create(fbb, &fb::ProduceTopicArgs { name, partitions });
    let topics = Some(fbb.create_vector(&[t]));
    fb::ProduceRequest::create(
        fbb,
        &fb::ProduceRequestArgs {
            acks,
            timeout_ms: 1,
            topics,
        },
    )
    .as_union_value()
}

#[test]
fn a_valid_hand_built_frame_decodes() {
    let (h, req) = decode_request(request(1, 0, metadata, b"")).unwrap();
    assert_eq!(
        (h.correlation_id, h.api, h.client_id.as_str()),
        (42, ApiKey::Metadata, "t")
    );
    assert_eq!(req, Request::Metadata { topics: None });
}

#[test]
fn unknown_api_and_version_are_rejected_after_the_header_is_read() {
    let frame = request(77, 0, metadata, b"");
    assert_eq!(decode_request(frame.clone()), Err(NativeError::UnknownApi(77)));
    assert_eq!(frame::peek_correlation_id(&frame), Some(42));
    let err = decode_request(request(1, 9, metadata, b"")).unwrap_err();
    assert_eq!(
        err,
        NativeError::UnsupportedVersion {
            api: ApiKey::Metadata,
            version: 9
        }
    );
}

#[test]
fn body_must_match_the_header_api() {
    let err = decode_request(request(ApiKey::Fetch as u16, 0, metadata, b"")).unwrap_err();
    assert!(matches!(err, NativeError::Invalid(_)), "{err:?}");
}

#[test]
fn unknown_body_type_is_invalid() {
    fn build(fbb: &mut FlatBufferBuilder<'static>) -> (fb::RequestBody, WIPOffset<UnionWIPOffset>) {
        let b = fb::MetadataRequest::create(fbb, &fb::MetadataRequestArgs { topics: None });
        (fb::RequestBody(200), b.as_union_value())
    }
    assert!(matches!(
        decode_request(request(1, 0, build, b"")),
        Err(NativeError::Invalid(_))
    ));
}

#[test]
fn acks_must_be_kafka_numbers() {
    fn build(fbb: &mut FlatBufferBuilder<'static>) -> (fb::RequestBody, WIPOffset<UnionWIPOffset>) {
        (fb::RequestBody::ProduceRequest, produce(fbb, 2, 3))
    }
    let err = decode_request(request(ApiKey::Produce as u16, 0, build, b"abc")).unwrap_err();
    assert_eq!(err, NativeError::Invalid("acks must be 0, 1 or -1"));
}

#[test]
fn records_len_must_consume_the_payload_exactly() {
    fn build(fbb: &mut FlatBufferBuilder<'static>) -> (fb::RequestBody, WIPOffset<UnionWIPOffset>) {
        (fb::RequestBody::ProduceRequest, produce(fbb, 1, 3))
    }
    let api = ApiKey::Produce as u16;
    assert!(decode_request(request(api, 0, build, b"abc")).is_ok());
    let short = decode_request(request(api, 0, build, b"ab")).unwrap_err();
    assert_eq!(short, NativeError::Invalid("records_len exceeds the payload"));
    let long = decode_request(request(api, 0, build, b"abcd")).unwrap_err();
    assert_eq!(long, NativeError::Invalid("records_len sum is less than the payload"));
}

#[test]
fn unknown_offset_and_flush_kinds_are_invalid() {
    fn offsets(fbb: &mut FlatBufferBuilder<'static>) -> (fb::RequestBody, WIPOffset<UnionWIPOffset>) {
        let spec = fb::OffsetSpec::new(fb::OffsetKind(9), 0);
        let p = fb::ListOffsetsPartition::create(
            fbb,
            &fb::ListOffsetsPartitionArgs {
                partition: 0,
                spec: Some(&spec),
            },
        );
        let partitions = Some(fbb.create_vector(&[p]));
        let name = Some(fbb.create_string("t"));
        let t = fb::ListOffsetsTopic::create(fbb, &fb::ListOffsetsTopicArgs { name, partitions });
        let topics = Some(fbb.create_vector(&[t]));
        let b = fb::ListOffsetsRequest::create(fbb, &fb::ListOffsetsRequestArgs { topics });
        (fb::RequestBody::ListOffsetsRequest, b.as_union_value())
    }
    fn flush(fbb: &mut FlatBufferBuilder<'static>) -> (fb::RequestBody, WIPOffset<UnionWIPOffset>) {
        let f = fb::FlushPolicy::create(
            fbb,
            &fb::FlushPolicyArgs {
                kind: fb::FlushKind(7),
                value: 1,
            },
        );
        let args = fb::TopicConfigArgs {
            flush: Some(f),
            ..Default::default()
        };
        let config = Some(fb::TopicConfig::create(fbb, &args));
        let name = Some(fbb.create_string("t"));
        let t = fb::NewTopic::create(
            fbb,
            &fb::NewTopicArgs {
                name,
                partitions: 1,
                config,
            },
        );
        let topics = Some(fbb.create_vector(&[t]));
        let b = fb::CreateTopicsRequest::create(fbb, &fb::CreateTopicsRequestArgs { topics });
        (fb::RequestBody::CreateTopicsRequest, b.as_union_value())
    }
    let err = decode_request(request(ApiKey::ListOffsets as u16, 0, offsets, b"")).unwrap_err();
    assert_eq!(err, NativeError::Invalid("unknown offset spec kind"));
    let err = decode_request(request(ApiKey::CreateTopics as u16, 0, flush, b"")).unwrap_err();
    assert_eq!(err, NativeError::Invalid("unknown flush kind"));
}

#[test]
fn a_missing_required_name_fails_verification() {
    fn build(fbb: &mut FlatBufferBuilder<'static>) -> (fb::RequestBody, WIPOffset<UnionWIPOffset>) {
        // Written by hand: the generated builder refuses to omit a required field.
        let start = fbb.start_table();
        let t: WIPOffset<fb::FetchTopic> = WIPOffset::new(fbb.end_table(start).value());
        let topics = Some(fbb.create_vector(&[t]));
        let args = fb::FetchRequestArgs {
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 0,
            topics,
        };
        (
            fb::RequestBody::FetchRequest,
            fb::FetchRequest::create(fbb, &args).as_union_value(),
        )
    }
    let err = decode_request(request(ApiKey::Fetch as u16, 0, build, b"")).unwrap_err();
    assert!(matches!(err, NativeError::Verify(_)), "{err:?}");
}

/// Each union member maps to the API of the same name; every API has exactly
/// one request and one response member; `NONE` and `ErrorResponse` map to none.
#[test]
fn body_types_map_to_the_api_of_their_name() {
    for api in ApiKey::ALL {
        let requests: Vec<_> = (0..=u8::MAX)
            .map(fb::RequestBody)
            .filter(|t| request_body_api(*t) == Some(api))
            .collect();
        assert_eq!(requests.len(), 1, "{api:?}");
        assert_eq!(requests[0].variant_name(), Some(format!("{api:?}Request").as_str()));
        let responses: Vec<_> = (0..=u8::MAX)
            .map(fb::ResponseBody)
            .filter(|t| response_body_api(*t) == Some(api))
            .collect();
        assert_eq!(responses.len(), 1, "{api:?}");
        assert_eq!(responses[0].variant_name(), Some(format!("{api:?}Response").as_str()));
    }
    assert_eq!(request_body_api(fb::RequestBody::NONE), None);
    assert_eq!(response_body_api(fb::ResponseBody::NONE), None);
    assert_eq!(response_body_api(fb::ResponseBody::ErrorResponse), None);
}

fn heartbeat(fbb: &mut FlatBufferBuilder<'static>) -> (fb::RequestBody, WIPOffset<UnionWIPOffset>) {
    let group_id = Some(fbb.create_string("g"));
    let args = fb::HeartbeatRequestArgs {
        group_id,
        generation_id: 1,
        member_id: None,
        group_instance_id: None,
    };
    let b = fb::HeartbeatRequest::create(fbb, &args);
    (fb::RequestBody::HeartbeatRequest, b.as_union_value())
}

#[test]
fn a_group_body_must_match_the_header_api() {
    let (_, req) = decode_request(request(ApiKey::Heartbeat as u16, 0, heartbeat, b"")).unwrap();
    assert_eq!(
        req,
        Request::Heartbeat(crate::api::HeartbeatRequest {
            group_id: "g".into(),
            generation_id: 1,
            member_id: String::new(),
            group_instance_id: None,
        })
    );
    for api in [
        ApiKey::JoinGroup,
        ApiKey::SyncGroup,
        ApiKey::LeaveGroup,
        ApiKey::ListOffsets,
    ] {
        let err = decode_request(request(api as u16, 0, heartbeat, b"")).unwrap_err();
        assert_eq!(
            err,
            NativeError::Invalid("request body does not match the header's api")
        );
    }
}

#[test]
fn a_missing_group_id_fails_verification() {
    fn top_level(fbb: &mut FlatBufferBuilder<'static>) -> (fb::RequestBody, WIPOffset<UnionWIPOffset>) {
        // Written by hand: the generated builder refuses to omit a required field.
        let start = fbb.start_table();
        let b: WIPOffset<fb::JoinGroupRequest> = WIPOffset::new(fbb.end_table(start).value());
        (fb::RequestBody::JoinGroupRequest, b.as_union_value())
    }
    fn nested(fbb: &mut FlatBufferBuilder<'static>) -> (fb::RequestBody, WIPOffset<UnionWIPOffset>) {
        let start = fbb.start_table();
        let t: WIPOffset<fb::OffsetCommitTopic> = WIPOffset::new(fbb.end_table(start).value());
        let topics = Some(fbb.create_vector(&[t]));
        let group_id = Some(fbb.create_string("g"));
        let args = fb::OffsetCommitRequestArgs {
            group_id,
            topics,
            ..Default::default()
        };
        let b = fb::OffsetCommitRequest::create(fbb, &args);
        (fb::RequestBody::OffsetCommitRequest, b.as_union_value())
    }
    let err = decode_request(request(ApiKey::JoinGroup as u16, 0, top_level, b"")).unwrap_err();
    assert!(
        matches!(err, NativeError::Verify(ref m) if m.contains("group_id")),
        "{err:?}"
    );
    let err = decode_request(request(ApiKey::OffsetCommit as u16, 0, nested, b"")).unwrap_err();
    assert!(
        matches!(err, NativeError::Verify(ref m) if m.contains("name")),
        "{err:?}"
    );
}

/// A response frame body (after the prefix) built from `body`.
fn response(
    build: impl FnOnce(&mut FlatBufferBuilder<'static>) -> (fb::ResponseBody, Option<WIPOffset<UnionWIPOffset>>),
) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let (body_type, body) = build(&mut fbb);
    let header = fb::ResponseHeader::create(&mut fbb, &fb::ResponseHeaderArgs { correlation_id: 9 });
    let root = fb::ResponseFrame::create(
        &mut fbb,
        &fb::ResponseFrameArgs {
            header: Some(header),
            body_type,
            body,
        },
    );
    fbb.finish(root, None);
    let chunks = frame::assemble(fbb, Vec::new(), 0);
    let frame: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    Bytes::from(frame).slice(frame::FRAME_PREFIX_BYTES..)
}

#[test]
fn a_group_body_type_without_its_body_fails_verification() {
    let frame = response(|_| (fb::ResponseBody::JoinGroupResponse, None));
    let err = decode_response(frame.clone(), ApiKey::JoinGroup).unwrap_err();
    assert!(matches!(err, NativeError::Verify(_)), "{err:?}");
    assert_eq!(frame::peek_correlation_id(&frame), Some(9));
}

#[test]
fn unknown_error_codes_in_group_responses_read_as_unknown() {
    let frame = response(|fbb| {
        let group_id = Some(fbb.create_string("g"));
        let r = fb::GroupResult::create(
            fbb,
            &fb::GroupResultArgs {
                group_id,
                error: 12_345,
            },
        );
        let groups = Some(fbb.create_vector(&[r]));
        let b = fb::DeleteGroupsResponse::create(fbb, &fb::DeleteGroupsResponseArgs { groups });
        (fb::ResponseBody::DeleteGroupsResponse, Some(b.as_union_value()))
    });
    let (_, resp) = decode_response(frame, ApiKey::DeleteGroups).unwrap();
    assert_eq!(
        resp,
        Response::DeleteGroups {
            groups: vec![crate::api::GroupResult {
                group_id: "g".into(),
                error: ErrorCode::Unknown,
            }],
        }
    );
}
