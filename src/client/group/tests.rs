//! Unit tests of the group member's pure parts: the leader's plan, error
//! mapping, commit and offset-fetch shaping, config validation.

use super::plan::{
    answered, commit_topics, committed_offsets, coordinator_endpoint, first_commit_error, lost_coordinator, recovery,
    response_error,
};
use super::*;
use crate::api::{
    CoordinatorInfo, JoinGroupMember, OffsetCommitTopicResponse, OffsetFetchPartitionResponse,
    OffsetFetchTopicResponse, PartitionError, PartitionInfo, TopicConfig, TopicInfo,
};
use bytes::Bytes;

fn member(id: &str, topics: &[&str]) -> JoinGroupMember {
    let s = Subscription::new(topics.iter().map(|t| t.to_string()).collect());
    JoinGroupMember {
        member_id: id.to_string(),
        group_instance_id: None,
        metadata: s.encode().expect("encodes"),
    }
}

fn topic_info(name: &str, partitions: u32, error: ErrorCode) -> TopicInfo {
    TopicInfo {
        name: name.to_string(),
        error,
        partitions: (0..partitions)
            .map(|p| PartitionInfo {
                isr: Vec::new(),
                replicas: Vec::new(),
                partition: p,
                error: ErrorCode::None,
                leader: 0,
                shard: 0,
                shard_port: 1,
                log_start_offset: 0,
                high_watermark: 0,
            })
            .collect(),
        config: TopicConfig::default(),
    }
}

/// The leader's whole pipeline, from the JoinGroup members to the bytes
/// each member receives, for every assignor.
fn plan(name: &str, joined: &[JoinGroupMember], metadata: &[TopicInfo]) -> BTreeMap<String, Vec<(String, u32)>> {
    let members = decode_members(joined);
    let counts = partition_counts(metadata);
    let chosen = assignor::by_name(name).expect("known assignor");
    let encoded = encode_assignments(&members, &chosen.assign(&members, &counts)).expect("encodes");
    encoded
        .into_iter()
        .map(|m| {
            let a = Assignment::decode(&m.assignment).expect("decodes");
            (m.member_id, assigned_partitions(&a))
        })
        .collect()
}

#[test]
fn leader_assignments_are_disjoint_and_cover_every_partition() {
    let joined = [
        member("b", &["t", "u"]),
        member("a", &["t"]),
        member("c", &["u", "missing"]),
    ];
    let metadata = [
        topic_info("t", 4, ErrorCode::None),
        topic_info("u", 3, ErrorCode::None),
        topic_info("missing", 0, ErrorCode::UnknownTopicOrPartition),
    ];
    assert_eq!(subscribed_topics(&decode_members(&joined)), ["missing", "t", "u"]);
    for name in assignor::ALL {
        let got = plan(name, &joined, &metadata);
        assert_eq!(got.len(), 3, "{name}: every member gets an assignment: {got:?}");
        let mut all: Vec<(String, u32)> = got.values().flatten().cloned().collect();
        all.sort();
        let want: Vec<(String, u32)> = (0..4)
            .map(|p| ("t".to_string(), p))
            .chain((0..3).map(|p| ("u".to_string(), p)))
            .collect();
        assert_eq!(all, want, "{name}: each partition exactly once: {got:?}");
        for (m, parts) in &got {
            let joined_as = joined.iter().find(|j| j.member_id == *m).expect("member");
            let s = Subscription::decode(&joined_as.metadata).expect("decodes");
            assert!(
                parts.iter().all(|(t, _)| s.topics.contains(t)),
                "{name}: {m} got only its topics"
            );
        }
    }
}

#[test]
fn a_member_with_a_bad_subscription_gets_nothing_and_the_rest_proceed() {
    let mut bad = member("z", &["t"]);
    bad.metadata = Bytes::from_static(&[0, 0, 0, 0, 0, 9]);
    let dup = member("a", &["t"]);
    let got = plan(
        "range",
        &[member("a", &["t"]), bad, dup],
        &[topic_info("t", 2, ErrorCode::None)],
    );
    assert_eq!(got.len(), 2, "repeated member ids count once: {got:?}");
    assert_eq!(got["a"], [("t".to_string(), 0), ("t".to_string(), 1)]);
    assert!(got["z"].is_empty());
}

#[test]
fn assignment_partitions_are_sorted_unique_and_non_negative() {
    let a = Assignment {
        partitions: vec![("u".into(), vec![2, -1, 0]), ("t".into(), vec![3, 3, 1])],
        user_data: None,
    };
    let got = assigned_partitions(&a);
    let want = [("t", 1), ("t", 3), ("u", 0), ("u", 2)].map(|(t, p)| (t.to_string(), p));
    assert_eq!(got, want);
    assert_eq!(
        owned_partitions(&got),
        [("t".to_string(), vec![1, 3]), ("u".to_string(), vec![0, 2])]
    );
    assert!(assigned_partitions(&Assignment::decode(&[]).expect("empty is empty")).is_empty());
}

#[test]
fn join_protocols_follow_the_preference_and_carry_the_subscription() {
    let sub = Subscription {
        topics: vec!["t".into()],
        owned_partitions: vec![("t".into(), vec![0, 2])],
        generation_id: 7,
        ..Subscription::default()
    };
    let names: Vec<String> = ["sticky", "range", "sticky"].map(String::from).to_vec();
    let got = join_protocols(&names, &sub).expect("known assignors");
    assert_eq!(
        got.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["sticky", "range"]
    );
    for p in &got {
        assert_eq!(Subscription::decode(&p.metadata).expect("decodes"), sub);
    }
    assert!(join_protocols(&["cooperative-sticky".to_string()], &sub).is_err());
}

#[test]
fn config_validation() {
    assert!(GroupConfig::new("g").validate().is_ok());
    assert!(GroupConfig::new("").validate().is_err());
    let slow_beats = GroupConfig {
        heartbeat_interval: Duration::from_secs(10),
        ..GroupConfig::new("g")
    };
    assert!(slow_beats.validate().is_err());
    let unknown = GroupConfig {
        assignors: vec!["range".into(), "nope".into()],
        ..GroupConfig::new("g")
    };
    assert!(unknown.validate().is_err());
    let none = GroupConfig {
        assignors: Vec::new(),
        ..GroupConfig::new("g")
    };
    assert!(none.validate().is_err());
}

#[test]
fn error_codes_map_to_recoveries() {
    use ErrorCode::*;
    assert_eq!(recovery(RebalanceInProgress), Recovery::Rejoin);
    assert_eq!(recovery(IllegalGeneration), Recovery::Rejoin);
    assert_eq!(recovery(UnknownMemberId), Recovery::RejoinAsNew);
    for c in [NotCoordinator, CoordinatorNotAvailable, CoordinatorLoadInProgress] {
        assert_eq!(recovery(c), Recovery::FindCoordinator, "{c}");
    }
    for c in [
        InconsistentGroupProtocol,
        InvalidSessionTimeout,
        InvalidGroupId,
        GroupMaxSizeReached,
    ] {
        assert_eq!(recovery(c), Recovery::Fail, "{c}");
    }
}

#[test]
fn a_lost_coordinator_is_recognised_in_answers_and_transport_failures() {
    let hb = |error| Ok(Response::Heartbeat { error });
    assert!(lost_coordinator(&hb(ErrorCode::NotCoordinator)));
    assert!(!lost_coordinator(&hb(ErrorCode::None)));
    assert!(!lost_coordinator(&hb(ErrorCode::RebalanceInProgress)));
    let closed = ClientError::ConnectionClosed {
        addr: "x".into(),
        reason: "reset".into(),
    };
    assert!(lost_coordinator(&Err(closed)));
    assert!(lost_coordinator(&Err(ClientError::Timeout(Duration::from_secs(1)))));
    assert!(lost_coordinator(&Err(ClientError::broker(
        ErrorCode::CoordinatorLoadInProgress,
        ""
    ))));
    assert!(!lost_coordinator(&Err(ClientError::broker(
        ErrorCode::InvalidGroupId,
        ""
    ))));
    assert!(!lost_coordinator(&Err(ClientError::Invalid("x".into()))));
    let commit = Response::OffsetCommit {
        topics: vec![OffsetCommitTopicResponse {
            name: "t".into(),
            partitions: vec![
                PartitionError {
                    partition: 0,
                    error: ErrorCode::None,
                },
                PartitionError {
                    partition: 1,
                    error: ErrorCode::NotCoordinator,
                },
            ],
        }],
    };
    assert_eq!(response_error(&commit), Some(ErrorCode::NotCoordinator));
    assert!(lost_coordinator(&Ok(commit)));
}

#[test]
fn the_coordinator_endpoint_is_the_shard_port_when_shard_aware() {
    let info = CoordinatorInfo {
        kafka: String::new(),
        error: ErrorCode::None,
        node_id: 0,
        host: "10.0.0.1".into(),
        port: 9192,
        shard: 1,
        shard_port: 9194,
    };
    assert_eq!(coordinator_endpoint(&info, true).expect("address").port, 9194);
    assert_eq!(coordinator_endpoint(&info, false).expect("address").port, 9192);
    let nowhere = CoordinatorInfo {
        host: String::new(),
        ..info
    };
    let e = coordinator_endpoint(&nowhere, true).expect_err("no address");
    assert_eq!(e.code(), Some(ErrorCode::CoordinatorNotAvailable));
}

#[test]
fn commits_group_by_topic_and_report_the_first_failure() {
    let req = commit_topics(&[("u", 1, 10), ("t", 0, 5), ("u", 0, 7)]);
    assert_eq!(req.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["t", "u"]);
    assert_eq!(
        req[1]
            .partitions
            .iter()
            .map(|p| (p.partition, p.offset))
            .collect::<Vec<_>>(),
        [(1, 10), (0, 7)]
    );
    let answer = |errors: &[(u32, ErrorCode)]| OffsetCommitTopicResponse {
        name: "u".into(),
        partitions: errors
            .iter()
            .map(|&(partition, error)| PartitionError { partition, error })
            .collect(),
    };
    let ok = [answer(&[(1, ErrorCode::None), (0, ErrorCode::None)])];
    assert_eq!(first_commit_error(&ok), None);
    assert!(answered(&ok, "u", 0) && !answered(&ok, "t", 0));
    let failed = [answer(&[(1, ErrorCode::None), (0, ErrorCode::IllegalGeneration)])];
    assert_eq!(
        first_commit_error(&failed),
        Some(("u".into(), 0, ErrorCode::IllegalGeneration))
    );
}

#[test]
fn committed_offsets_skip_partitions_without_a_commit() {
    let part = |partition, offset, error| OffsetFetchPartitionResponse {
        partition,
        offset,
        leader_epoch: -1,
        metadata: None,
        error,
    };
    let topics = [OffsetFetchTopicResponse {
        name: "t".into(),
        partitions: vec![
            part(0, 42, ErrorCode::None),
            part(1, -1, ErrorCode::None),
            part(2, 9, ErrorCode::UnknownTopicOrPartition),
            part(3, 17, ErrorCode::None), // not asked for
        ],
    }];
    let wanted: Vec<(String, u32)> = (0..3).map(|p| ("t".to_string(), p)).collect();
    let got = committed_offsets(&topics, &wanted).expect("no errors");
    assert_eq!(got.into_iter().collect::<Vec<_>>(), [(("t".to_string(), 0), 42)]);
    let failing = [OffsetFetchTopicResponse {
        name: "t".into(),
        partitions: vec![part(1, -1, ErrorCode::CoordinatorLoadInProgress)],
    }];
    assert_eq!(
        committed_offsets(&failing, &wanted),
        Err(("t".to_string(), 1, ErrorCode::CoordinatorLoadInProgress))
    );
}
