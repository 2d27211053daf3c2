//! Group API values for the native codec tests: every request and
//! response of the group APIs, with each `None` vs `Some("")` and absent vs
//! empty distinction the model makes. Shared by `native_codec.rs` (every API
//! round-trips, mutated frames never panic) and `native_codec_group.rs`
//! (group-only checks), each including it with `#[path]`.
use bytes::Bytes;
use sluice::api::*;

/// The group APIs, with every `None` vs `Some("")` and absent vs empty
/// distinction the model makes.
pub fn group_requests() -> Vec<Request> {
    let protocol = |name: &str, metadata: &'static [u8]| JoinGroupProtocol {
        name: name.into(),
        metadata: Bytes::from_static(metadata),
    };
    let join = |member_id: &str, group_instance_id: Option<&str>, protocols| {
        Request::JoinGroup(JoinGroupRequest {
            group_id: "payments-consumers".into(),
            session_timeout_ms: 45_000,
            rebalance_timeout_ms: 300_000,
            member_id: member_id.into(),
            group_instance_id: group_instance_id.map(Into::into),
            protocol_type: "consumer".into(),
            protocols,
        })
    };
    let commit_partition = |partition, leader_epoch, metadata: Option<&str>| OffsetCommitPartition {
        partition,
        offset: 1_000 + i64::from(partition),
        leader_epoch,
        metadata: metadata.map(Into::into),
    };
    vec![
        Request::FindCoordinator {
            group_id: "payments-consumers".into(),
        },
        Request::FindCoordinator {
            group_id: String::new(),
        },
        join(
            "",
            None,
            vec![protocol("cooperative-sticky", b"\x00\x01sub"), protocol("range", b"")],
        ),
        join("member-1-uuid", Some("host-1"), vec![protocol("range", &[0xff; 300])]),
        join("member-1-uuid", Some(""), vec![]),
        Request::JoinGroup(JoinGroupRequest {
            group_id: String::new(),
            session_timeout_ms: 0,
            rebalance_timeout_ms: u32::MAX,
            member_id: String::new(),
            group_instance_id: None,
            protocol_type: String::new(),
            protocols: vec![],
        }),
        Request::SyncGroup(SyncGroupRequest {
            group_id: "g".into(),
            generation_id: 7,
            member_id: "leader".into(),
            group_instance_id: Some("host-1".into()),
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignments: vec![
                MemberAssignment {
                    member_id: "leader".into(),
                    assignment: Bytes::from_static(b"\x00\x03assigned"),
                },
                MemberAssignment {
                    member_id: String::new(),
                    assignment: Bytes::new(),
                },
            ],
        }),
        Request::SyncGroup(SyncGroupRequest {
            group_id: "g".into(),
            generation_id: -1,
            member_id: "follower".into(),
            group_instance_id: None,
            protocol_type: Some(String::new()),
            protocol_name: None,
            assignments: vec![],
        }),
        Request::Heartbeat(HeartbeatRequest {
            group_id: "g".into(),
            generation_id: 3,
            member_id: "m".into(),
            group_instance_id: None,
        }),
        Request::Heartbeat(HeartbeatRequest {
            group_id: "g".into(),
            generation_id: i32::MIN,
            member_id: String::new(),
            group_instance_id: Some(String::new()),
        }),
        Request::LeaveGroup(LeaveGroupRequest {
            group_id: "g".into(),
            members: vec![
                LeavingMember {
                    member_id: "m1".into(),
                    group_instance_id: None,
                },
                LeavingMember {
                    member_id: String::new(),
                    group_instance_id: Some("host-2".into()),
                },
                LeavingMember {
                    member_id: String::new(),
                    group_instance_id: Some(String::new()),
                },
            ],
        }),
        Request::LeaveGroup(LeaveGroupRequest {
            group_id: "g".into(),
            members: vec![],
        }),
        Request::OffsetCommit(OffsetCommitRequest {
            group_id: "g".into(),
            generation_id: 7,
            member_id: "m".into(),
            group_instance_id: Some("host-1".into()),
            topics: vec![
                OffsetCommitTopic {
                    name: "orders".into(),
                    partitions: vec![
                        commit_partition(0, -1, None),
                        commit_partition(1, 0, Some("")),
                        commit_partition(2, 5, Some("checkpoint 17")),
                    ],
                },
                OffsetCommitTopic {
                    name: "empty".into(),
                    partitions: vec![],
                },
            ],
        }),
        // A manual-assignment commit from outside the group protocol.
        Request::OffsetCommit(OffsetCommitRequest {
            group_id: "g".into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
            topics: vec![],
        }),
        Request::OffsetFetch {
            group_id: "g".into(),
            topics: None,
        },
        Request::OffsetFetch {
            group_id: "g".into(),
            topics: Some(vec![]),
        },
        Request::OffsetFetch {
            group_id: "g".into(),
            topics: Some(vec![
                OffsetFetchTopic {
                    name: "orders".into(),
                    partitions: vec![0, 3, u32::MAX],
                },
                OffsetFetchTopic {
                    name: "none".into(),
                    partitions: vec![],
                },
            ]),
        },
        Request::ListGroups { states: vec![] },
        Request::ListGroups {
            states: vec!["Stable".into(), "Empty".into(), String::new()],
        },
        Request::DescribeGroups { groups: vec![] },
        Request::DescribeGroups {
            groups: vec!["a".into(), String::new()],
        },
        Request::DeleteGroups { groups: vec![] },
        Request::DeleteGroups {
            groups: vec!["old-group".into()],
        },
    ]
}

pub fn group_responses() -> Vec<(ApiKey, Response)> {
    let coordinator = |error, host: &str| CoordinatorInfo {
        kafka: String::new(),
        error,
        node_id: 2,
        host: host.into(),
        port: 9092,
        shard: 3,
        shard_port: 9096,
    };
    let join_member = |id: &str, instance: Option<&str>, metadata: &'static [u8]| JoinGroupMember {
        member_id: id.into(),
        group_instance_id: instance.map(Into::into),
        metadata: Bytes::from_static(metadata),
    };
    let fetched = |partition, offset, metadata: Option<&str>, error| OffsetFetchPartitionResponse {
        partition,
        offset,
        leader_epoch: if offset < 0 { -1 } else { 4 },
        metadata: metadata.map(Into::into),
        error,
    };
    let described_member = |id: &str, instance: Option<&str>| DescribedMember {
        member_id: id.into(),
        group_instance_id: instance.map(Into::into),
        client_id: "sluice-consumer".into(),
        client_host: "/10.0.0.7".into(),
        metadata: Bytes::from_static(b"\x00\x01subscription"),
        assignment: Bytes::from_static(b"\x00\x03assignment"),
    };
    vec![
        (
            ApiKey::FindCoordinator,
            Response::FindCoordinator(coordinator(ErrorCode::None, "broker-2.example")),
        ),
        (
            ApiKey::FindCoordinator,
            Response::FindCoordinator(coordinator(ErrorCode::CoordinatorNotAvailable, "")),
        ),
        (
            ApiKey::JoinGroup,
            Response::JoinGroup(JoinGroupResponse {
                error: ErrorCode::None,
                generation_id: 7,
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                leader: "m1".into(),
                member_id: "m1".into(),
                members: vec![
                    join_member("m1", None, b"\x00\x01orders"),
                    join_member("m2", Some("host-2"), b""),
                    join_member("m3", Some(""), &[0; 64]),
                ],
            }),
        ),
        (
            ApiKey::JoinGroup,
            Response::JoinGroup(JoinGroupResponse {
                error: ErrorCode::MemberIdRequired,
                generation_id: -1,
                protocol_type: None,
                protocol_name: Some(String::new()),
                leader: String::new(),
                member_id: "assigned-id".into(),
                members: vec![],
            }),
        ),
        (
            ApiKey::SyncGroup,
            Response::SyncGroup(SyncGroupResponse {
                error: ErrorCode::None,
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                assignment: Bytes::from_static(b"\x00\x03orders:0,1"),
            }),
        ),
        (
            ApiKey::SyncGroup,
            Response::SyncGroup(SyncGroupResponse {
                error: ErrorCode::RebalanceInProgress,
                protocol_type: Some(String::new()),
                protocol_name: None,
                assignment: Bytes::new(),
            }),
        ),
        (ApiKey::Heartbeat, Response::Heartbeat { error: ErrorCode::None }),
        (
            ApiKey::Heartbeat,
            Response::Heartbeat {
                error: ErrorCode::RebalanceInProgress,
            },
        ),
        (
            ApiKey::Heartbeat,
            Response::Heartbeat {
                error: ErrorCode::Unknown,
            },
        ),
        (
            ApiKey::LeaveGroup,
            Response::LeaveGroup(LeaveGroupResponse {
                error: ErrorCode::None,
                members: vec![
                    LeftMember {
                        member_id: "m1".into(),
                        group_instance_id: None,
                        error: ErrorCode::None,
                    },
                    LeftMember {
                        member_id: String::new(),
                        group_instance_id: Some("host-9".into()),
                        error: ErrorCode::UnknownMemberId,
                    },
                    LeftMember {
                        member_id: "m3".into(),
                        group_instance_id: Some(String::new()),
                        error: ErrorCode::FencedInstanceId,
                    },
                ],
            }),
        ),
        (
            ApiKey::LeaveGroup,
            Response::LeaveGroup(LeaveGroupResponse {
                error: ErrorCode::NotCoordinator,
                members: vec![],
            }),
        ),
        (
            ApiKey::OffsetCommit,
            Response::OffsetCommit {
                topics: vec![
                    OffsetCommitTopicResponse {
                        name: "orders".into(),
                        partitions: vec![
                            PartitionError {
                                partition: 0,
                                error: ErrorCode::None,
                            },
                            PartitionError {
                                partition: 1,
                                error: ErrorCode::IllegalGeneration,
                            },
                        ],
                    },
                    OffsetCommitTopicResponse {
                        name: "empty".into(),
                        partitions: vec![],
                    },
                ],
            },
        ),
        (ApiKey::OffsetCommit, Response::OffsetCommit { topics: vec![] }),
        (
            ApiKey::OffsetFetch,
            Response::OffsetFetch {
                error: ErrorCode::None,
                topics: vec![OffsetFetchTopicResponse {
                    name: "orders".into(),
                    partitions: vec![
                        fetched(0, 42, Some("checkpoint"), ErrorCode::None),
                        fetched(1, -1, None, ErrorCode::None),
                        fetched(2, 0, Some(""), ErrorCode::None),
                        fetched(3, -1, None, ErrorCode::UnknownTopicOrPartition),
                    ],
                }],
            },
        ),
        (
            ApiKey::OffsetFetch,
            Response::OffsetFetch {
                error: ErrorCode::CoordinatorLoadInProgress,
                topics: vec![],
            },
        ),
        (
            ApiKey::ListGroups,
            Response::ListGroups {
                error: ErrorCode::None,
                groups: vec![
                    ListedGroup {
                        group_id: "g1".into(),
                        protocol_type: "consumer".into(),
                        state: "Stable".into(),
                    },
                    ListedGroup {
                        group_id: String::new(),
                        protocol_type: String::new(),
                        state: "Empty".into(),
                    },
                ],
            },
        ),
        (
            ApiKey::ListGroups,
            Response::ListGroups {
                error: ErrorCode::CoordinatorNotAvailable,
                groups: vec![],
            },
        ),
        (
            ApiKey::DescribeGroups,
            Response::DescribeGroups {
                groups: vec![
                    DescribedGroup {
                        group_id: "g1".into(),
                        error: ErrorCode::None,
                        state: "Stable".into(),
                        protocol_type: "consumer".into(),
                        protocol_name: "range".into(),
                        members: vec![described_member("m1", None), described_member("m2", Some("host-2"))],
                    },
                    DescribedGroup {
                        group_id: "gone".into(),
                        error: ErrorCode::GroupIdNotFound,
                        state: "Dead".into(),
                        protocol_type: String::new(),
                        protocol_name: String::new(),
                        members: vec![],
                    },
                    DescribedGroup {
                        group_id: "rebalancing".into(),
                        error: ErrorCode::None,
                        state: "PreparingRebalance".into(),
                        protocol_type: "consumer".into(),
                        protocol_name: String::new(),
                        members: vec![DescribedMember {
                            metadata: Bytes::new(),
                            assignment: Bytes::new(),
                            ..described_member("", Some(""))
                        }],
                    },
                ],
            },
        ),
        (ApiKey::DescribeGroups, Response::DescribeGroups { groups: vec![] }),
        (
            ApiKey::DeleteGroups,
            Response::DeleteGroups {
                groups: vec![
                    GroupResult {
                        group_id: "old".into(),
                        error: ErrorCode::None,
                    },
                    GroupResult {
                        group_id: "busy".into(),
                        error: ErrorCode::NonEmptyGroup,
                    },
                ],
            },
        ),
        (ApiKey::DeleteGroups, Response::DeleteGroups { groups: vec![] }),
    ]
}
