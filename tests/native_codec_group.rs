//! The native codec on the group APIs: absent and empty values stay apart,
//! malformed or cut group frames are rejected, and arbitrary group requests
//! and responses round-trip. The fixed group fixtures live in
//! `common/group_fixtures.rs`, shared with `native_codec.rs` (where every
//! API, the group ones included, round-trips and survives mutation).
use bytes::Bytes;
use proptest::prelude::*;
use sluice::api::*;
use sluice::protocol::native::{
    decode_request, decode_response, encode_request, encode_response, frame_len, NativeError, FRAME_PREFIX_BYTES,
};

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

/// Absent and empty are different values wherever the model says so: the
/// encoder must not fold `Some("")` into `None` nor `Some(vec![])` into `None`.
#[test]
fn group_absent_and_empty_stay_apart() {
    let round_trip = |req: Request| {
        let body = frame_body(&encode_request(&header(req.api(), 1), &req));
        decode_request(body).unwrap().1
    };
    for topics in [None, Some(vec![])] {
        let req = Request::OffsetFetch {
            group_id: "g".into(),
            topics: topics.clone(),
        };
        assert_eq!(
            round_trip(req),
            Request::OffsetFetch {
                group_id: "g".into(),
                topics
            }
        );
    }
    for group_instance_id in [None, Some(String::new()), Some("i".to_string())] {
        let req = Request::Heartbeat(HeartbeatRequest {
            group_id: String::new(),
            generation_id: 0,
            member_id: String::new(),
            group_instance_id: group_instance_id.clone(),
        });
        let Request::Heartbeat(decoded) = round_trip(req) else {
            panic!("not a heartbeat")
        };
        assert_eq!(decoded.group_instance_id, group_instance_id);
    }
}

/// Group bodies own no payload bytes, so any byte after their FlatBuffer is
/// rejected; and a frame cut short anywhere is reported as truncated.
#[test]
fn malformed_group_frames_are_rejected() {
    let requests = group_requests()
        .into_iter()
        .map(|r| (r.api(), frame_body(&encode_request(&header(r.api(), 1), &r)), true));
    let responses = group_responses().into_iter().map(|(api, r)| {
        let body = frame_body(&encode_response(&ResponseHeader { correlation_id: 1 }, api, &r));
        (api, body, false)
    });
    for (api, body, is_request) in requests.chain(responses) {
        let decode = |b: Bytes| {
            if is_request {
                decode_request(b).map(|_| ())
            } else {
                decode_response(b, api).map(|_| ())
            }
        };
        assert_eq!(decode(body.clone()), Ok(()), "{api:?}");
        let mut padded = body.to_vec();
        padded.push(0);
        assert_eq!(
            decode(Bytes::from(padded)),
            Err(NativeError::Invalid("records_len sum is less than the payload")),
            "{api:?}"
        );
        for len in 0..body.len() {
            assert_eq!(
                decode(body.slice(..len)),
                Err(NativeError::Truncated),
                "{api:?} cut at {len}"
            );
        }
    }
}

/// A string: often empty (absent on the wire), sometimes not ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z0-9.-]{1,12}", "\\PC{1,8}"]
}

fn texts() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(text(), 0..4)
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

fn opaque() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..48).prop_map(Bytes::from)
}

/// Known codes and, through -1 and gaps, Unknown.
fn error_code() -> impl Strategy<Value = ErrorCode> {
    (-1i16..90).prop_map(ErrorCode::from_code)
}

fn group_request() -> impl Strategy<Value = Request> {
    use proptest::collection::vec;
    let join = (
        text(),
        any::<u32>(),
        any::<u32>(),
        text(),
        opt_text(),
        text(),
        vec((text(), opaque()), 0..4),
    )
        .prop_map(
            |(group_id, session_timeout_ms, rebalance_timeout_ms, member_id, group_instance_id, protocol_type, p)| {
                Request::JoinGroup(JoinGroupRequest {
                    group_id,
                    session_timeout_ms,
                    rebalance_timeout_ms,
                    member_id,
                    group_instance_id,
                    protocol_type,
                    protocols: p
                        .into_iter()
                        .map(|(name, metadata)| JoinGroupProtocol { name, metadata })
                        .collect(),
                })
            },
        );
    let sync = (
        text(),
        any::<i32>(),
        text(),
        opt_text(),
        opt_text(),
        opt_text(),
        vec((text(), opaque()), 0..4),
    )
        .prop_map(
            |(group_id, generation_id, member_id, group_instance_id, protocol_type, protocol_name, a)| {
                Request::SyncGroup(SyncGroupRequest {
                    group_id,
                    generation_id,
                    member_id,
                    group_instance_id,
                    protocol_type,
                    protocol_name,
                    assignments: a
                        .into_iter()
                        .map(|(member_id, assignment)| MemberAssignment { member_id, assignment })
                        .collect(),
                })
            },
        );
    let heartbeat = (text(), any::<i32>(), text(), opt_text()).prop_map(
        |(group_id, generation_id, member_id, group_instance_id)| {
            Request::Heartbeat(HeartbeatRequest {
                group_id,
                generation_id,
                member_id,
                group_instance_id,
            })
        },
    );
    let leave = (text(), vec((text(), opt_text()), 0..4)).prop_map(|(group_id, m)| {
        let members = m
            .into_iter()
            .map(|(member_id, group_instance_id)| LeavingMember {
                member_id,
                group_instance_id,
            })
            .collect();
        Request::LeaveGroup(LeaveGroupRequest { group_id, members })
    });
    let commit_partition = (any::<u32>(), any::<i64>(), any::<i32>(), opt_text()).prop_map(
        |(partition, offset, leader_epoch, metadata)| OffsetCommitPartition {
            partition,
            offset,
            leader_epoch,
            metadata,
        },
    );
    let commit_topic =
        (text(), vec(commit_partition, 0..4)).prop_map(|(name, partitions)| OffsetCommitTopic { name, partitions });
    let commit = (text(), any::<i32>(), text(), opt_text(), vec(commit_topic, 0..3)).prop_map(
        |(group_id, generation_id, member_id, group_instance_id, topics)| {
            Request::OffsetCommit(OffsetCommitRequest {
                group_id,
                generation_id,
                member_id,
                group_instance_id,
                topics,
            })
        },
    );
    let fetch_topic =
        (text(), vec(any::<u32>(), 0..4)).prop_map(|(name, partitions)| OffsetFetchTopic { name, partitions });
    let fetch = (text(), proptest::option::of(vec(fetch_topic, 0..3)))
        .prop_map(|(group_id, topics)| Request::OffsetFetch { group_id, topics });
    prop_oneof![
        text().prop_map(|group_id| Request::FindCoordinator { group_id }),
        join,
        sync,
        heartbeat,
        leave,
        commit,
        fetch,
        texts().prop_map(|states| Request::ListGroups { states }),
        texts().prop_map(|groups| Request::DescribeGroups { groups }),
        texts().prop_map(|groups| Request::DeleteGroups { groups }),
    ]
}

fn group_response() -> impl Strategy<Value = Response> {
    use proptest::collection::vec;
    let coordinator = (
        error_code(),
        any::<i32>(),
        text(),
        any::<u16>(),
        any::<u32>(),
        any::<u16>(),
    )
        .prop_map(|(error, node_id, host, port, shard, shard_port)| {
            Response::FindCoordinator(CoordinatorInfo {
                kafka: String::new(),
                error,
                node_id,
                host,
                port,
                shard,
                shard_port,
            })
        });
    let join_member =
        (text(), opt_text(), opaque()).prop_map(|(member_id, group_instance_id, metadata)| JoinGroupMember {
            member_id,
            group_instance_id,
            metadata,
        });
    let join = (
        (error_code(), any::<i32>(), opt_text(), opt_text()),
        (text(), text(), vec(join_member, 0..4)),
    )
        .prop_map(
            |((error, generation_id, protocol_type, protocol_name), (leader, member_id, members))| {
                Response::JoinGroup(JoinGroupResponse {
                    error,
                    generation_id,
                    protocol_type,
                    protocol_name,
                    leader,
                    member_id,
                    members,
                })
            },
        );
    let sync = (error_code(), opt_text(), opt_text(), opaque()).prop_map(
        |(error, protocol_type, protocol_name, assignment)| {
            Response::SyncGroup(SyncGroupResponse {
                error,
                protocol_type,
                protocol_name,
                assignment,
            })
        },
    );
    let left = (text(), opt_text(), error_code()).prop_map(|(member_id, group_instance_id, error)| LeftMember {
        member_id,
        group_instance_id,
        error,
    });
    let leave = (error_code(), vec(left, 0..4))
        .prop_map(|(error, members)| Response::LeaveGroup(LeaveGroupResponse { error, members }));
    let committed = (text(), vec((any::<u32>(), error_code()), 0..4)).prop_map(|(name, p)| {
        let partitions = p
            .into_iter()
            .map(|(partition, error)| PartitionError { partition, error })
            .collect();
        OffsetCommitTopicResponse { name, partitions }
    });
    let fetched_partition = (any::<u32>(), any::<i64>(), any::<i32>(), opt_text(), error_code()).prop_map(
        |(partition, offset, leader_epoch, metadata, error)| OffsetFetchPartitionResponse {
            partition,
            offset,
            leader_epoch,
            metadata,
            error,
        },
    );
    let fetched = (text(), vec(fetched_partition, 0..4))
        .prop_map(|(name, partitions)| OffsetFetchTopicResponse { name, partitions });
    let listed = (text(), text(), text()).prop_map(|(group_id, protocol_type, state)| ListedGroup {
        group_id,
        protocol_type,
        state,
    });
    let member = ((text(), opt_text(), text(), text()), (opaque(), opaque())).prop_map(
        |((member_id, group_instance_id, client_id, client_host), (metadata, assignment))| DescribedMember {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            metadata,
            assignment,
        },
    );
    let described = ((text(), error_code(), text()), (text(), text(), vec(member, 0..3))).prop_map(
        |((group_id, error, state), (protocol_type, protocol_name, members))| DescribedGroup {
            group_id,
            error,
            state,
            protocol_type,
            protocol_name,
            members,
        },
    );
    let deleted = (text(), error_code()).prop_map(|(group_id, error)| GroupResult { group_id, error });
    prop_oneof![
        coordinator,
        join,
        sync,
        error_code().prop_map(|error| Response::Heartbeat { error }),
        leave,
        vec(committed, 0..3).prop_map(|topics| Response::OffsetCommit { topics }),
        (error_code(), vec(fetched, 0..3)).prop_map(|(error, topics)| Response::OffsetFetch { error, topics }),
        (error_code(), vec(listed, 0..4)).prop_map(|(error, groups)| Response::ListGroups { error, groups }),
        vec(described, 0..3).prop_map(|groups| Response::DescribeGroups { groups }),
        vec(deleted, 0..4).prop_map(|groups| Response::DeleteGroups { groups }),
    ]
}

/// The API a response answers (never called with `Error`).
fn answered_api(resp: &Response) -> ApiKey {
    match resp {
        Response::ApiVersions { .. } => ApiKey::ApiVersions,
        Response::Metadata { .. } => ApiKey::Metadata,
        Response::CreateTopics { .. } => ApiKey::CreateTopics,
        Response::DeleteTopics { .. } => ApiKey::DeleteTopics,
        Response::Produce { .. } => ApiKey::Produce,
        Response::Fetch { .. } => ApiKey::Fetch,
        Response::ListOffsets { .. } => ApiKey::ListOffsets,
        Response::FindCoordinator(_) => ApiKey::FindCoordinator,
        Response::JoinGroup(_) => ApiKey::JoinGroup,
        Response::SyncGroup(_) => ApiKey::SyncGroup,
        Response::Heartbeat { .. } => ApiKey::Heartbeat,
        Response::LeaveGroup(_) => ApiKey::LeaveGroup,
        Response::OffsetCommit { .. } => ApiKey::OffsetCommit,
        Response::OffsetFetch { .. } => ApiKey::OffsetFetch,
        Response::ListGroups { .. } => ApiKey::ListGroups,
        Response::DescribeGroups { .. } => ApiKey::DescribeGroups,
        Response::DeleteGroups { .. } => ApiKey::DeleteGroups,
        Response::CreatePartitions { .. } => ApiKey::CreatePartitions,
        Response::InitProducerId { .. } => ApiKey::InitProducerId,
        Response::Error { .. } => unreachable!("Error answers any api"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_group_requests_round_trip(req in group_request(), correlation_id in any::<i32>()) {
        let h = header(req.api(), correlation_id);
        let (h2, req2) = decode_request(frame_body(&encode_request(&h, &req))).unwrap();
        prop_assert_eq!(h2, h);
        prop_assert_eq!(req2, req);
    }

    #[test]
    fn arbitrary_group_responses_round_trip(resp in group_response(), correlation_id in any::<i32>()) {
        let h = ResponseHeader { correlation_id };
        let api = answered_api(&resp);
        let (h2, resp2) = decode_response(frame_body(&encode_response(&h, api, &resp)), api).unwrap();
        prop_assert_eq!(h2, h);
        prop_assert_eq!(resp2, resp);
    }
}
