//! Scripted scenarios of the coordinator, one behaviour each.

use super::fixture::*;
use super::*;
use crate::api::{JoinGroupMember, LeavingMember};

#[test]
fn single_member_joins_syncs_and_is_stable() {
    let mut fx = Fixture::new(0);
    let (token, actions) = fx.join("c1", "", RANGE);
    assert_eq!(actions.len(), 1);
    let a = join_reply(&actions, token).member_id;
    // "{client_id}-{uuid v4}"
    let uuid = a.strip_prefix("c1-").expect("client id prefix");
    assert_eq!(uuid.len(), 36);
    assert_eq!([8, 13, 18, 23].map(|i| &uuid[i..=i]), ["-"; 4]);
    assert_eq!(&uuid[14..15], "4");
    assert_eq!(
        join_reply(&actions, token),
        ok_join(1, &a, &a, "range", vec![listed(&a, None, "sub")])
    );
    assert_eq!(fx.state(), Some(GroupState::CompletingRebalance));
    assert_eq!(fx.heartbeat(&a, 1), ErrorCode::None);

    let (token, actions) = fx.sync(&a, 1, assign(&[(a.as_str(), "p0")]));
    assert_eq!(
        actions,
        vec![Action::Reply {
            token,
            response: Response::SyncGroup(ok_sync("range", "p0")),
        }]
    );
    assert_eq!(fx.state(), Some(GroupState::Stable));

    // Stable: a repeated sync gets the stored assignment at once.
    let (token, actions) = fx.sync(&a, 1, Vec::new());
    assert_eq!(sync_reply(&actions, token), ok_sync("range", "p0"));
    assert_eq!(fx.heartbeat(&a, 1), ErrorCode::None);
    // Only the session is left to watch.
    assert_eq!(fx.coordinator.next_deadline(), Some(fx.now_ms + u64::from(SESSION_MS)));
}

#[test]
fn three_members_joining_within_the_initial_delay_form_one_generation() {
    let mut fx = Fixture::new(3_000);
    let (ta, actions) = fx.join("c1", "", RANGE);
    assert!(actions.is_empty());
    assert_eq!(fx.state(), Some(GroupState::PreparingRebalance));
    assert_eq!(fx.coordinator.next_deadline(), Some(3_000));
    assert!(fx.advance(1_000).is_empty());
    let (tb, actions) = fx.join("c2", "", RANGE);
    assert!(actions.is_empty());
    assert!(fx.advance(1_000).is_empty());
    let (tc, actions) = fx.join("c3", "", RANGE);
    assert!(actions.is_empty());
    assert!(fx.advance(999).is_empty());
    // Members arrived in the first window: wait one more (Kafka's InitialDelayedJoin).
    assert!(fx.advance(1).is_empty());
    assert_eq!(fx.coordinator.next_deadline(), Some(6_000));
    let actions = fx.advance(3_000);
    assert_eq!(actions.len(), 3);
    let [a, b, c] = [ta, tb, tc].map(|t| join_reply(&actions, t).member_id);
    let all = vec![
        listed(&a, None, "sub"),
        listed(&b, None, "sub"),
        listed(&c, None, "sub"),
    ];
    assert_eq!(join_reply(&actions, ta), ok_join(1, &a, &a, "range", all));
    assert_eq!(join_reply(&actions, tb), ok_join(1, &b, &a, "range", Vec::new()));
    assert_eq!(join_reply(&actions, tc), ok_join(1, &c, &a, "range", Vec::new()));
    assert_eq!(fx.state(), Some(GroupState::CompletingRebalance));
}

#[test]
fn initial_delay_never_exceeds_the_rebalance_timeout() {
    let mut fx = Fixture::new(3_000);
    let (first, _) = fx.join("c0", "", RANGE);
    let mut actions = Vec::new();
    // A new member in every window keeps extending, up to the rebalance timeout.
    for i in 1..=20 {
        actions.extend(fx.advance(2_000));
        if !replies_to(&actions, first).is_empty() {
            break;
        }
        actions.extend(fx.join(&format!("c{i}"), "", RANGE).1);
    }
    assert_eq!(join_reply(&actions, first).generation_id, 1);
    assert_eq!(fx.now_ms, u64::from(REBALANCE_MS));
}

#[test]
fn a_join_during_a_rebalance_joins_the_same_generation() {
    let mut fx = Fixture::new(3_000);
    let [a, b] = <[String; 2]>::try_from(stable_group(&mut fx, &["c1", "c2"])).unwrap();
    let (tc, actions) = fx.join("c3", "", RANGE);
    assert!(actions.is_empty());
    assert_eq!(fx.state(), Some(GroupState::PreparingRebalance));
    let (ta, actions) = fx.join("c1", &a, RANGE);
    assert!(actions.is_empty());
    let (td, actions) = fx.join("c4", "", RANGE);
    assert!(actions.is_empty());
    let (tb, actions) = fx.join("c2", &b, RANGE);
    assert_eq!(actions.len(), 4);
    let c = join_reply(&actions, tc).member_id;
    let d = join_reply(&actions, td).member_id;
    let all: Vec<JoinGroupMember> = [&a, &b, &c, &d].iter().map(|m| listed(m, None, "sub")).collect();
    assert_eq!(join_reply(&actions, ta), ok_join(2, &a, &a, "range", all));
    for (token, member) in [(tb, &b), (tc, &c), (td, &d)] {
        assert_eq!(join_reply(&actions, token), ok_join(2, member, &a, "range", Vec::new()));
    }
}

#[test]
fn a_join_while_stable_rebalances_and_members_learn_by_heartbeat() {
    let mut fx = Fixture::new(3_000);
    let [a, b] = <[String; 2]>::try_from(stable_group(&mut fx, &["c1", "c2"])).unwrap();
    let (tc, actions) = fx.join("c3", "", RANGE);
    assert!(actions.is_empty());
    assert_eq!(fx.heartbeat(&a, 1), ErrorCode::RebalanceInProgress);
    assert_eq!(fx.heartbeat(&b, 1), ErrorCode::RebalanceInProgress);
    // A commit is still accepted before the member rejoins (Kafka).
    assert_eq!(fx.commit(1, &a, None), Ok(()));
    let (ta, actions) = fx.join("c1", &a, RANGE);
    assert!(actions.is_empty());
    let (tb, actions) = fx.join("c2", &b, RANGE);
    assert_eq!(actions.len(), 3);
    let c = join_reply(&actions, tc).member_id;
    let all = vec![
        listed(&a, None, "sub"),
        listed(&b, None, "sub"),
        listed(&c, None, "sub"),
    ];
    assert_eq!(join_reply(&actions, ta), ok_join(2, &a, &a, "range", all));
    assert_eq!(join_reply(&actions, tb), ok_join(2, &b, &a, "range", Vec::new()));
    assert_eq!(join_reply(&actions, tc), ok_join(2, &c, &a, "range", Vec::new()));

    let (tb, actions) = fx.sync(&b, 2, Vec::new());
    assert!(actions.is_empty());
    let (tc, actions) = fx.sync(&c, 2, Vec::new());
    assert!(actions.is_empty());
    // The leader leaves b out: it gets empty bytes.
    let (ta, actions) = fx.sync(
        &a,
        2,
        assign(&[(a.as_str(), "x"), (c.as_str(), "z"), ("stranger", "?")]),
    );
    assert_eq!(actions.len(), 3);
    assert_eq!(sync_reply(&actions, ta), ok_sync("range", "x"));
    assert_eq!(sync_reply(&actions, tb), ok_sync("range", ""));
    assert_eq!(sync_reply(&actions, tc), ok_sync("range", "z"));
    assert_eq!(fx.state(), Some(GroupState::Stable));
    assert_eq!(fx.heartbeat(&a, 1), ErrorCode::IllegalGeneration);
    assert_eq!(fx.heartbeat(&a, 2), ErrorCode::None);
}

#[test]
fn a_member_that_misses_heartbeats_is_removed_and_the_rest_rebalance() {
    let mut fx = Fixture::new(3_000);
    let [a, b, c] = <[String; 3]>::try_from(stable_group(&mut fx, &["c1", "c2", "c3"])).unwrap();
    assert_eq!(fx.now_ms, 6_000);
    for _ in 0..2 {
        assert!(fx.advance(4_000).is_empty());
        assert_eq!(fx.heartbeat(&b, 1), ErrorCode::None);
        assert_eq!(fx.heartbeat(&c, 1), ErrorCode::None);
    }
    // a was last heard of at 6_000: its session ended at 16_000.
    assert!(fx.advance(4_000).is_empty());
    assert_eq!(fx.state(), Some(GroupState::PreparingRebalance));
    assert_eq!(fx.heartbeat(&a, 1), ErrorCode::UnknownMemberId);
    assert_eq!(fx.heartbeat(&b, 1), ErrorCode::RebalanceInProgress);
    let (tb, actions) = fx.join("c2", &b, RANGE);
    assert!(actions.is_empty());
    let (tc, actions) = fx.join("c3", &c, RANGE);
    assert_eq!(actions.len(), 2);
    let all = vec![listed(&b, None, "sub"), listed(&c, None, "sub")];
    assert_eq!(join_reply(&actions, tb), ok_join(2, &b, &b, "range", all));
    assert_eq!(join_reply(&actions, tc), ok_join(2, &c, &b, "range", Vec::new()));
}

#[test]
fn when_the_leader_leaves_a_new_leader_is_chosen() {
    let mut fx = Fixture::new(3_000);
    let [a, b, c] = <[String; 3]>::try_from(stable_group(&mut fx, &["c1", "c2", "c3"])).unwrap();
    let (response, actions) = fx.leave(&[(a.as_str(), None), ("ghost", None)]);
    assert_eq!(actions.len(), 1);
    assert_eq!(
        response,
        LeaveGroupResponse {
            error: ErrorCode::None,
            members: vec![
                LeftMember {
                    member_id: a.clone(),
                    group_instance_id: None,
                    error: ErrorCode::None,
                },
                LeftMember {
                    member_id: "ghost".to_owned(),
                    group_instance_id: None,
                    error: ErrorCode::UnknownMemberId,
                },
            ],
        }
    );
    assert_eq!(fx.state(), Some(GroupState::PreparingRebalance));
    assert_eq!(fx.heartbeat(&c, 1), ErrorCode::RebalanceInProgress);
    let (tc, actions) = fx.join("c3", &c, RANGE);
    assert!(actions.is_empty());
    let (tb, actions) = fx.join("c2", &b, RANGE);
    let all = vec![listed(&b, None, "sub"), listed(&c, None, "sub")];
    assert_eq!(join_reply(&actions, tb), ok_join(2, &b, &b, "range", all));
    assert_eq!(join_reply(&actions, tc), ok_join(2, &c, &b, "range", Vec::new()));
    assert_eq!(fx.leader(), Some(b));
}

#[test]
fn members_whose_sync_never_comes_are_removed_after_the_rebalance_timeout() {
    let mut fx = Fixture::new(3_000);
    let (ta, _) = fx.join("c1", "", RANGE);
    let (tb, _) = fx.join("c2", "", RANGE);
    let actions = fx.settle();
    let a = join_reply(&actions, ta).member_id;
    let b = join_reply(&actions, tb).member_id;
    let (tb_sync, actions) = fx.sync(&b, 1, Vec::new());
    assert!(actions.is_empty());
    // The leader heartbeats but never sends its assignments.
    for _ in 0..5 {
        assert!(fx.advance(5_000).is_empty());
        assert_eq!(fx.heartbeat(&a, 1), ErrorCode::None);
    }
    assert_eq!(fx.state(), Some(GroupState::CompletingRebalance));
    let actions = fx.advance(5_000);
    assert_eq!(fx.now_ms, 6_000 + u64::from(REBALANCE_MS));
    assert_eq!(
        actions,
        vec![Action::Reply {
            token: tb_sync,
            response: sync_error(ErrorCode::RebalanceInProgress),
        }]
    );
    assert_eq!(fx.state(), Some(GroupState::PreparingRebalance));
    assert_eq!(fx.heartbeat(&a, 1), ErrorCode::UnknownMemberId);
    let (tb, actions) = fx.join("c2", &b, RANGE);
    assert_eq!(
        join_reply(&actions, tb),
        ok_join(2, &b, &b, "range", vec![listed(&b, None, "sub")])
    );
}

#[test]
fn members_that_do_not_rejoin_in_time_are_removed_and_waiting_ones_kept() {
    let mut fx = Fixture::new(3_000);
    let [a, b, c] = <[String; 3]>::try_from(stable_group(&mut fx, &["c1", "c2", "c3"])).unwrap();
    let (td, _) = fx.join("c4", "", RANGE);
    let (ta, _) = fx.join("c1", &a, RANGE);
    let (tc, _) = fx.join("c3", &c, RANGE);
    // b keeps heartbeating but never rejoins; a's held join outlives its session timeout.
    let mut actions = Vec::new();
    for _ in 0..6 {
        assert!(actions.is_empty());
        assert_eq!(fx.heartbeat(&b, 1), ErrorCode::RebalanceInProgress);
        actions = fx.advance(5_000);
    }
    assert_eq!(actions.len(), 3);
    let d = join_reply(&actions, td).member_id;
    let all = vec![
        listed(&a, None, "sub"),
        listed(&c, None, "sub"),
        listed(&d, None, "sub"),
    ];
    assert_eq!(join_reply(&actions, ta), ok_join(2, &a, &a, "range", all));
    assert_eq!(join_reply(&actions, tc), ok_join(2, &c, &a, "range", Vec::new()));
    assert_eq!(fx.heartbeat(&b, 1), ErrorCode::UnknownMemberId);
}

#[test]
fn a_member_leaving_while_its_request_is_held_gets_unknown_member_id() {
    let mut fx = Fixture::new(3_000);
    let [a, b, c] = <[String; 3]>::try_from(stable_group(&mut fx, &["c1", "c2", "c3"])).unwrap();
    let (ta, _) = fx.join("c1", &a, RANGE);
    let (response, actions) = fx.leave(&[(a.as_str(), None)]);
    assert_eq!(response.members[0].error, ErrorCode::None);
    assert_eq!(
        join_reply(&actions, ta),
        join_response_error("", ErrorCode::UnknownMemberId)
    );
    let (tb, _) = fx.join("c2", &b, RANGE);
    let (tc, actions) = fx.join("c3", &c, RANGE);
    assert_eq!(join_reply(&actions, tb).generation_id, 2);
    assert_eq!(join_reply(&actions, tc).leader, b);
    // A follower's held sync, when the follower leaves.
    let (tc, actions) = fx.sync(&c, 2, Vec::new());
    assert!(actions.is_empty());
    let (_, actions) = fx.leave(&[(c.as_str(), None)]);
    assert_eq!(
        sync_reply(&actions, tc),
        sync_response_error(ErrorCode::UnknownMemberId)
    );
    assert_eq!(fx.state(), Some(GroupState::PreparingRebalance));
}

#[test]
fn a_second_join_while_one_is_held_answers_the_first() {
    let mut fx = Fixture::new(3_000);
    let [a, b] = <[String; 2]>::try_from(stable_group(&mut fx, &["c1", "c2"])).unwrap();
    let (ta1, actions) = fx.join("c1", &a, RANGE);
    assert!(actions.is_empty());
    let (ta2, actions) = fx.join("c1", &a, RANGE);
    assert_eq!(
        actions,
        vec![Action::Reply {
            token: ta1,
            response: join_error(&a, ErrorCode::RebalanceInProgress),
        }]
    );
    let (tb, actions) = fx.join("c2", &b, RANGE);
    assert_eq!(actions.len(), 2);
    assert!(replies_to(&actions, ta1).is_empty());
    assert_eq!(join_reply(&actions, ta2).generation_id, 2);
    assert_eq!(join_reply(&actions, tb).generation_id, 2);
}

#[test]
fn requests_with_wrong_generation_member_or_group_are_refused() {
    let mut fx = Fixture::new(0);
    let (token, actions) = fx.join("c1", "", RANGE);
    let a = join_reply(&actions, token).member_id;
    fx.sync(&a, 1, assign(&[(a.as_str(), "p")]));

    assert_eq!(fx.heartbeat("ghost", 1), ErrorCode::UnknownMemberId);
    assert_eq!(fx.heartbeat(&a, 7), ErrorCode::IllegalGeneration);
    let unknown_group = HeartbeatRequest {
        group_id: "nope".to_owned(),
        generation_id: 1,
        member_id: a.clone(),
        group_instance_id: None,
    };
    let actions = fx.coordinator.heartbeat(0, 99, unknown_group);
    assert_eq!(
        actions,
        vec![Action::Reply {
            token: 99,
            response: Response::Heartbeat {
                error: ErrorCode::UnknownMemberId
            },
        }]
    );

    let (token, actions) = fx.sync(&a, 2, Vec::new());
    assert_eq!(
        sync_reply(&actions, token),
        sync_response_error(ErrorCode::IllegalGeneration)
    );
    let (token, actions) = fx.sync("ghost", 1, Vec::new());
    assert_eq!(
        sync_reply(&actions, token),
        sync_response_error(ErrorCode::UnknownMemberId)
    );
    let mut wrong_protocol = SyncGroupRequest {
        group_id: GROUP.to_owned(),
        generation_id: 1,
        member_id: a.clone(),
        group_instance_id: None,
        protocol_type: None,
        protocol_name: Some("roundrobin".to_owned()),
        assignments: Vec::new(),
    };
    let actions = fx.coordinator.sync(0, 100, wrong_protocol.clone());
    assert_eq!(
        sync_reply(&actions, 100),
        sync_response_error(ErrorCode::InconsistentGroupProtocol)
    );
    wrong_protocol.group_id = "nope".to_owned();
    let actions = fx.coordinator.sync(0, 101, wrong_protocol);
    assert_eq!(
        sync_reply(&actions, 101),
        sync_response_error(ErrorCode::UnknownMemberId)
    );

    let (token, actions) = fx.join("c1", "ghost", RANGE);
    assert_eq!(
        join_reply(&actions, token),
        join_response_error("ghost", ErrorCode::UnknownMemberId)
    );
    let mut req = join_request("ghost", None, RANGE);
    req.group_id = "nope".to_owned();
    let (token, actions) = fx.join_with("c1", req);
    assert_eq!(
        join_reply(&actions, token),
        join_response_error("ghost", ErrorCode::UnknownMemberId)
    );
    for timeout_ms in [5_999, 300_001] {
        let mut req = join_request("", None, RANGE);
        req.session_timeout_ms = timeout_ms;
        let (token, actions) = fx.join_with("c1", req);
        assert_eq!(
            join_reply(&actions, token),
            join_response_error("", ErrorCode::InvalidSessionTimeout)
        );
    }
    assert_eq!(fx.coordinator.group_ids(), vec![GROUP.to_owned()]);

    // During a rebalance, heartbeats and syncs of the old generation are told to rejoin.
    fx.join("c2", "", RANGE);
    assert_eq!(fx.heartbeat(&a, 1), ErrorCode::RebalanceInProgress);
    let (token, actions) = fx.sync(&a, 1, Vec::new());
    assert_eq!(
        sync_reply(&actions, token),
        sync_response_error(ErrorCode::RebalanceInProgress)
    );
}

#[test]
fn an_empty_group_id_is_invalid() {
    let mut fx = Fixture::new(0);
    let mut req = join_request("", None, RANGE);
    req.group_id = String::new();
    let (token, actions) = fx.join_with("c1", req);
    assert_eq!(
        join_reply(&actions, token),
        join_response_error("", ErrorCode::InvalidGroupId)
    );
    let sync = SyncGroupRequest {
        group_id: String::new(),
        generation_id: 1,
        member_id: "m".to_owned(),
        group_instance_id: None,
        protocol_type: None,
        protocol_name: None,
        assignments: Vec::new(),
    };
    let actions = fx.coordinator.sync(0, 1, sync);
    assert_eq!(sync_reply(&actions, 1), sync_response_error(ErrorCode::InvalidGroupId));
    let heartbeat = HeartbeatRequest {
        group_id: String::new(),
        generation_id: 1,
        member_id: "m".to_owned(),
        group_instance_id: None,
    };
    let actions = fx.coordinator.heartbeat(0, 2, heartbeat);
    assert_eq!(
        reply_to(&actions, 2),
        Response::Heartbeat {
            error: ErrorCode::InvalidGroupId
        }
    );
    let leave = LeaveGroupRequest {
        group_id: String::new(),
        members: vec![LeavingMember {
            member_id: "m".to_owned(),
            group_instance_id: None,
        }],
    };
    let actions = fx.coordinator.leave(0, 3, leave);
    let expected = LeaveGroupResponse {
        error: ErrorCode::InvalidGroupId,
        members: Vec::new(),
    };
    assert_eq!(reply_to(&actions, 3), Response::LeaveGroup(expected));
    assert!(fx.coordinator.group_ids().is_empty());
}

#[test]
fn joins_without_a_protocol_in_common_are_refused() {
    let mut fx = Fixture::new(3_000);
    let (ta, _) = fx.join("c1", "", &[("range", "a")]);
    let (token, actions) = fx.join("c2", "", &[("roundrobin", "b")]);
    assert_eq!(
        join_reply(&actions, token),
        join_response_error("", ErrorCode::InconsistentGroupProtocol)
    );
    let mut other_type = join_request("", None, &[("range", "b")]);
    other_type.protocol_type = "connect".to_owned();
    let (token, actions) = fx.join_with("c2", other_type);
    assert_eq!(
        join_reply(&actions, token),
        join_response_error("", ErrorCode::InconsistentGroupProtocol)
    );
    let (token, actions) = fx.join("c2", "", &[]);
    assert_eq!(
        join_reply(&actions, token),
        join_response_error("", ErrorCode::InconsistentGroupProtocol)
    );
    let (tb, actions) = fx.join("c2", "", &[("roundrobin", "b"), ("range", "b")]);
    assert!(actions.is_empty());
    let actions = fx.settle();
    let a = join_reply(&actions, ta).member_id;
    let b = join_reply(&actions, tb).member_id;
    // Only "range" is common: b's metadata for it is what the leader sees.
    let all = vec![listed(&a, None, "a"), listed(&b, None, "b")];
    assert_eq!(join_reply(&actions, ta), ok_join(1, &a, &a, "range", all));
    // A rejoin may not drop the last protocol shared with the others.
    let (token, actions) = fx.join("c2", &b, &[("roundrobin", "b")]);
    assert_eq!(
        join_reply(&actions, token),
        join_response_error(&b, ErrorCode::InconsistentGroupProtocol)
    );
}

#[test]
fn the_protocol_most_members_prefer_wins_and_ties_go_to_the_smallest_name() {
    for (preferences, chosen) in [
        (
            vec![
                ["range", "roundrobin"],
                ["roundrobin", "range"],
                ["roundrobin", "range"],
            ],
            "roundrobin",
        ),
        (vec![["roundrobin", "range"], ["range", "roundrobin"]], "range"),
    ] {
        let mut fx = Fixture::new(3_000);
        let tokens: Vec<Token> = preferences
            .iter()
            .enumerate()
            .map(|(i, names)| fx.join(&format!("c{i}"), "", &[(names[0], "m"), (names[1], "m")]).0)
            .collect();
        let actions = fx.settle();
        for token in tokens {
            assert_eq!(join_reply(&actions, token).protocol_name.as_deref(), Some(chosen));
        }
    }
}

#[test]
fn commits_are_validated_by_kafka_rules() {
    let mut fx = Fixture::new(0);
    // A "simple" commit creates the group, Empty, as Kafka does.
    assert_eq!(fx.coordinator.validate_commit(0, "simple", -1, "", None), Ok(()));
    assert_eq!(fx.coordinator.state("simple"), Some(GroupState::Empty));
    assert_eq!(fx.coordinator.validate_commit(0, "simple", -1, "", None), Ok(()));
    assert_eq!(
        fx.coordinator.validate_commit(0, "other", 3, "m", None),
        Err(ErrorCode::IllegalGeneration)
    );
    assert_eq!(fx.coordinator.state("other"), None);

    let (token, actions) = fx.join("c1", "", RANGE);
    let a = join_reply(&actions, token).member_id;
    assert_eq!(fx.commit(-1, "", None), Err(ErrorCode::UnknownMemberId));
    assert_eq!(fx.commit(1, &a, None), Err(ErrorCode::RebalanceInProgress));
    fx.sync(&a, 1, assign(&[(a.as_str(), "p")]));
    assert_eq!(fx.commit(1, &a, None), Ok(()));
    assert_eq!(fx.commit(2, &a, None), Err(ErrorCode::IllegalGeneration));
    assert_eq!(fx.commit(1, "ghost", None), Err(ErrorCode::UnknownMemberId));
    assert_eq!(fx.commit(1, &a, Some("inst")), Err(ErrorCode::UnknownMemberId));
    // An accepted commit refreshes the session.
    assert!(fx.advance(9_000).is_empty());
    assert_eq!(fx.commit(1, &a, None), Ok(()));
    assert_eq!(fx.coordinator.next_deadline(), Some(19_000));
    // PreparingRebalance still accepts the current generation.
    fx.join("c2", "", RANGE);
    assert_eq!(fx.state(), Some(GroupState::PreparingRebalance));
    assert_eq!(fx.commit(1, &a, None), Ok(()));
}

#[test]
fn only_empty_groups_are_deleted() {
    let mut fx = Fixture::new(0);
    assert_eq!(fx.coordinator.delete(GROUP), Err(ErrorCode::GroupIdNotFound));
    let (token, actions) = fx.join("c1", "", RANGE);
    let a = join_reply(&actions, token).member_id;
    assert_eq!(fx.coordinator.delete(GROUP), Err(ErrorCode::NonEmptyGroup));
    let (_, actions) = fx.leave(&[(a.as_str(), None)]);
    assert!(actions.contains(&Action::Emptied {
        group_id: GROUP.to_owned()
    }));
    assert_eq!(fx.state(), Some(GroupState::Empty));
    assert_eq!(fx.generation(), 2);
    assert_eq!(fx.coordinator.next_deadline(), None);
    assert_eq!(fx.coordinator.delete(GROUP), Ok(()));
    assert_eq!(fx.state(), None);
    assert!(fx.coordinator.group_ids().is_empty());
    assert!(fx.coordinator.list(&[]).is_empty());
}

#[test]
fn a_group_over_its_size_limit_refuses_new_members() {
    let mut fx = Fixture::with_config(CoordinatorConfig {
        max_group_size: 2,
        ..CoordinatorConfig::default()
    });
    fx.join("c1", "", RANGE);
    fx.join("c2", "", RANGE);
    let (token, actions) = fx.join("c3", "", RANGE);
    assert_eq!(
        join_reply(&actions, token),
        join_response_error("", ErrorCode::GroupMaxSizeReached)
    );
    assert_eq!(fx.coordinator.groups[GROUP].members.len(), 2);
}

#[test]
fn a_restarted_static_member_replaces_its_old_id() {
    let mut fx = Fixture::new(3_000);
    let (ta, _) = fx.join_with("c1", join_request("", Some("i-a"), RANGE));
    let (tb, _) = fx.join("c2", "", RANGE);
    let actions = fx.settle();
    let a = join_reply(&actions, ta).member_id;
    let b = join_reply(&actions, tb).member_id;
    assert!(
        a.starts_with("i-a-"),
        "static member ids start with the instance id: {a}"
    );
    fx.sync(&b, 1, Vec::new());
    fx.sync_as(&a, Some("i-a"), 1, assign(&[(a.as_str(), "pa"), (b.as_str(), "pb")]));
    assert_eq!(fx.state(), Some(GroupState::Stable));

    // Restart with the same protocols: no rebalance; the reply names the old
    // leader id so the restarted leader does not run the assignor.
    let (token, actions) = fx.join_with("c1", join_request("", Some("i-a"), RANGE));
    assert_eq!(actions.len(), 1);
    let a2 = join_reply(&actions, token).member_id;
    assert_ne!(a2, a);
    assert_eq!(join_reply(&actions, token), ok_join(1, &a2, &a, "range", Vec::new()));
    assert_eq!(fx.state(), Some(GroupState::Stable));
    assert_eq!(fx.heartbeat_as(&a, Some("i-a"), 1), ErrorCode::FencedInstanceId);
    assert_eq!(fx.heartbeat(&a, 1), ErrorCode::UnknownMemberId);
    assert_eq!(fx.commit(1, &a, Some("i-a")), Err(ErrorCode::FencedInstanceId));
    assert_eq!(fx.heartbeat_as(&a2, Some("i-a"), 1), ErrorCode::None);
    let (token, actions) = fx.sync_as(&a2, Some("i-a"), 1, Vec::new());
    assert_eq!(sync_reply(&actions, token), ok_sync("range", "pa"));
    assert_eq!(fx.leader(), Some(a2.clone()));

    // Restart with new metadata: a rebalance; a restart while that join is
    // held fences the held join.
    let (ta3, actions) = fx.join_with("c1", join_request("", Some("i-a"), &[("range", "sub-2")]));
    assert!(actions.is_empty());
    assert_eq!(fx.state(), Some(GroupState::PreparingRebalance));
    let (ta4, actions) = fx.join_with("c1", join_request("", Some("i-a"), &[("range", "sub-2")]));
    let fenced = join_reply(&actions, ta3);
    assert_eq!(fenced.error, ErrorCode::FencedInstanceId);
    assert!(fenced.member_id.starts_with("i-a-"));
    let (tb, actions) = fx.join("c2", &b, RANGE);
    let a4 = join_reply(&actions, ta4).member_id;
    let all = vec![listed(&a4, Some("i-a"), "sub-2"), listed(&b, None, "sub")];
    assert_eq!(join_reply(&actions, ta4), ok_join(2, &a4, &a4, "range", all));
    assert_eq!(join_reply(&actions, tb), ok_join(2, &b, &a4, "range", Vec::new()));

    // A static member can be removed by instance id alone.
    let (response, _) = fx.leave(&[("", Some("i-a"))]);
    assert_eq!(response.members[0].error, ErrorCode::None);
    assert!(!fx.coordinator.groups[GROUP].members.contains_key(&a4));
}

#[test]
fn a_static_member_that_does_not_rejoin_keeps_its_seat_until_its_session_ends() {
    let mut fx = Fixture::new(3_000);
    let (ta, _) = fx.join_with("c1", join_request("", Some("i-a"), RANGE));
    let (tb, _) = fx.join("c2", "", RANGE);
    let actions = fx.settle();
    let a = join_reply(&actions, ta).member_id;
    let b = join_reply(&actions, tb).member_id;
    fx.sync(&b, 1, Vec::new());
    fx.sync_as(&a, Some("i-a"), 1, assign(&[(a.as_str(), "pa"), (b.as_str(), "pb")]));
    // b (not the leader) rejoins with new metadata: a rebalance a does not take part in.
    let (tb, actions) = fx.join("c2", &b, &[("range", "new")]);
    assert!(actions.is_empty());
    let mut actions = Vec::new();
    for _ in 0..6 {
        assert_eq!(fx.heartbeat_as(&a, Some("i-a"), 1), ErrorCode::RebalanceInProgress);
        actions.extend(fx.advance(5_000));
    }
    // The timeout passed: a (static) stays although it did not rejoin; b leads.
    let all = vec![listed(&a, Some("i-a"), "sub"), listed(&b, None, "new")];
    assert_eq!(join_reply(&actions, tb), ok_join(2, &b, &b, "range", all));
    assert_eq!(fx.heartbeat_as(&a, Some("i-a"), 1), ErrorCode::IllegalGeneration);
    let (token, actions) = fx.join_with("c1", join_request(&a, Some("i-a"), RANGE));
    assert_eq!(join_reply(&actions, token), ok_join(2, &a, &b, "range", Vec::new()));
}

#[test]
fn describe_and_list_report_kafka_names() {
    let mut fx = Fixture::new(3_000);
    assert_eq!(
        fx.coordinator.describe("nope"),
        DescribedGroup {
            group_id: "nope".to_owned(),
            error: ErrorCode::None,
            state: "Dead".to_owned(),
            protocol_type: String::new(),
            protocol_name: String::new(),
            members: Vec::new(),
        }
    );
    let [a, b] = <[String; 2]>::try_from(stable_group(&mut fx, &["c1", "c2"])).unwrap();
    let member = |id: &str, client_id: &str, metadata: &str, assignment: String| DescribedMember {
        member_id: id.to_owned(),
        group_instance_id: None,
        client_id: client_id.to_owned(),
        client_host: "/10.0.0.1".into(),
        metadata: Bytes::copy_from_slice(metadata.as_bytes()),
        assignment: Bytes::from(assignment),
    };
    assert_eq!(
        fx.coordinator.describe(GROUP),
        DescribedGroup {
            group_id: GROUP.to_owned(),
            error: ErrorCode::None,
            state: "Stable".to_owned(),
            protocol_type: "consumer".to_owned(),
            protocol_name: "range".to_owned(),
            members: vec![
                member(&a, "c1", "sub", format!("asg-{a}")),
                member(&b, "c2", "sub", format!("asg-{b}")),
            ],
        }
    );
    let stable = vec![ListedGroup {
        group_id: GROUP.to_owned(),
        protocol_type: "consumer".to_owned(),
        state: "Stable".to_owned(),
    }];
    assert_eq!(fx.coordinator.list(&[]), stable);
    assert_eq!(fx.coordinator.list(&["stable".to_owned()]), stable);
    assert!(fx.coordinator.list(&["Empty".to_owned()]).is_empty());

    // Mid-rebalance: no protocol, metadata or assignments yet.
    fx.join("c3", "", RANGE);
    let described = fx.coordinator.describe(GROUP);
    assert_eq!(described.state, "PreparingRebalance");
    assert_eq!(described.protocol_name, "");
    assert_eq!(described.members.len(), 3);
    assert!(described
        .members
        .iter()
        .all(|m| m.metadata.is_empty() && m.assignment.is_empty()));
}
