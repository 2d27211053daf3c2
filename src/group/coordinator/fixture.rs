//! Test fixture of the coordinator: request builders, reply extractors and
//! a coordinator driven by a manual clock.

use super::*;
use crate::api::{JoinGroupMember, JoinGroupProtocol, LeavingMember, MemberAssignment};

pub(super) const GROUP: &str = "g";
pub(super) const SESSION_MS: u32 = 10_000;
pub(super) const REBALANCE_MS: u32 = 30_000;
pub(super) const RANGE: &[(&str, &str)] = &[("range", "sub")];

pub(super) fn protocols(list: &[(&str, &str)]) -> Vec<JoinGroupProtocol> {
    list.iter()
        .map(|(name, metadata)| JoinGroupProtocol {
            name: (*name).to_owned(),
            metadata: Bytes::copy_from_slice(metadata.as_bytes()),
        })
        .collect()
}

pub(super) fn join_request(member_id: &str, instance_id: Option<&str>, list: &[(&str, &str)]) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: GROUP.to_owned(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        member_id: member_id.to_owned(),
        group_instance_id: instance_id.map(str::to_owned),
        protocol_type: "consumer".to_owned(),
        protocols: protocols(list),
    }
}

pub(super) fn client(client_id: &str) -> ClientInfo {
    ClientInfo {
        client_id: client_id.to_owned(),
        client_host: "/10.0.0.1".into(),
    }
}

pub(super) fn assign(pairs: &[(&str, &str)]) -> Vec<MemberAssignment> {
    pairs
        .iter()
        .map(|(member_id, bytes)| MemberAssignment {
            member_id: (*member_id).to_owned(),
            assignment: Bytes::copy_from_slice(bytes.as_bytes()),
        })
        .collect()
}

pub(super) fn replies_to(actions: &[Action], token: Token) -> Vec<&Response> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Reply { token: t, response } if *t == token => Some(response),
            _ => None,
        })
        .collect()
}

pub(super) fn reply_to(actions: &[Action], token: Token) -> Response {
    let replies = replies_to(actions, token);
    assert_eq!(replies.len(), 1, "expected one reply to token {token} in {actions:?}");
    replies[0].clone()
}

pub(super) fn join_reply(actions: &[Action], token: Token) -> JoinGroupResponse {
    match reply_to(actions, token) {
        Response::JoinGroup(response) => response,
        other => panic!("not a JoinGroup reply: {other:?}"),
    }
}

pub(super) fn sync_reply(actions: &[Action], token: Token) -> SyncGroupResponse {
    match reply_to(actions, token) {
        Response::SyncGroup(response) => response,
        other => panic!("not a SyncGroup reply: {other:?}"),
    }
}

pub(super) fn join_response_error(member_id: &str, error: ErrorCode) -> JoinGroupResponse {
    match join_error(member_id, error) {
        Response::JoinGroup(response) => response,
        _ => unreachable!(),
    }
}

pub(super) fn sync_response_error(error: ErrorCode) -> SyncGroupResponse {
    match sync_error(error) {
        Response::SyncGroup(response) => response,
        _ => unreachable!(),
    }
}

pub(super) fn ok_join(
    generation_id: i32,
    member_id: &str,
    leader: &str,
    protocol: &str,
    members: Vec<JoinGroupMember>,
) -> JoinGroupResponse {
    JoinGroupResponse {
        error: ErrorCode::None,
        generation_id,
        protocol_type: Some("consumer".to_owned()),
        protocol_name: Some(protocol.to_owned()),
        leader: leader.to_owned(),
        member_id: member_id.to_owned(),
        members,
    }
}

pub(super) fn listed(member_id: &str, instance_id: Option<&str>, metadata: &str) -> JoinGroupMember {
    JoinGroupMember {
        member_id: member_id.to_owned(),
        group_instance_id: instance_id.map(str::to_owned),
        metadata: Bytes::copy_from_slice(metadata.as_bytes()),
    }
}

pub(super) fn ok_sync(protocol: &str, assignment: &str) -> SyncGroupResponse {
    SyncGroupResponse {
        error: ErrorCode::None,
        protocol_type: Some("consumer".to_owned()),
        protocol_name: Some(protocol.to_owned()),
        assignment: Bytes::copy_from_slice(assignment.as_bytes()),
    }
}

/// One coordinator, a clock and a token counter.
pub(super) struct Fixture {
    pub(super) coordinator: Coordinator,
    pub(super) now_ms: u64,
    next_token: Token,
}

impl Fixture {
    pub(super) fn new(initial_delay_ms: u32) -> Fixture {
        Fixture::with_config(CoordinatorConfig {
            initial_rebalance_delay_ms: initial_delay_ms,
            ..CoordinatorConfig::default()
        })
    }

    pub(super) fn with_config(config: CoordinatorConfig) -> Fixture {
        Fixture {
            coordinator: Coordinator::new(config, 42),
            now_ms: 0,
            next_token: 1,
        }
    }

    fn token(&mut self) -> Token {
        self.next_token += 1;
        self.next_token
    }

    pub(super) fn join_with(&mut self, client_id: &str, req: JoinGroupRequest) -> (Token, Vec<Action>) {
        let token = self.token();
        (token, self.coordinator.join(self.now_ms, token, client(client_id), req))
    }

    pub(super) fn join(&mut self, client_id: &str, member_id: &str, list: &[(&str, &str)]) -> (Token, Vec<Action>) {
        self.join_with(client_id, join_request(member_id, None, list))
    }

    pub(super) fn sync_as(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        assignments: Vec<MemberAssignment>,
    ) -> (Token, Vec<Action>) {
        let token = self.token();
        let req = SyncGroupRequest {
            group_id: GROUP.to_owned(),
            generation_id,
            member_id: member_id.to_owned(),
            group_instance_id: instance_id.map(str::to_owned),
            protocol_type: Some("consumer".to_owned()),
            protocol_name: None,
            assignments,
        };
        (token, self.coordinator.sync(self.now_ms, token, req))
    }

    pub(super) fn sync(
        &mut self,
        member_id: &str,
        generation_id: i32,
        assignments: Vec<MemberAssignment>,
    ) -> (Token, Vec<Action>) {
        self.sync_as(member_id, None, generation_id, assignments)
    }

    pub(super) fn heartbeat_as(&mut self, member_id: &str, instance_id: Option<&str>, generation_id: i32) -> ErrorCode {
        let token = self.token();
        let req = HeartbeatRequest {
            group_id: GROUP.to_owned(),
            generation_id,
            member_id: member_id.to_owned(),
            group_instance_id: instance_id.map(str::to_owned),
        };
        let actions = self.coordinator.heartbeat(self.now_ms, token, req);
        match actions.as_slice() {
            [Action::Reply {
                token: t,
                response: Response::Heartbeat { error },
            }] if *t == token => *error,
            other => panic!("heartbeat answered with {other:?}"),
        }
    }

    pub(super) fn heartbeat(&mut self, member_id: &str, generation_id: i32) -> ErrorCode {
        self.heartbeat_as(member_id, None, generation_id)
    }

    pub(super) fn leave(&mut self, members: &[(&str, Option<&str>)]) -> (LeaveGroupResponse, Vec<Action>) {
        let token = self.token();
        let req = LeaveGroupRequest {
            group_id: GROUP.to_owned(),
            members: members
                .iter()
                .map(|(member_id, instance_id)| LeavingMember {
                    member_id: (*member_id).to_owned(),
                    group_instance_id: instance_id.map(str::to_owned),
                })
                .collect(),
        };
        let actions = self.coordinator.leave(self.now_ms, token, req);
        match reply_to(&actions, token) {
            Response::LeaveGroup(response) => (response, actions),
            other => panic!("not a LeaveGroup reply: {other:?}"),
        }
    }

    pub(super) fn commit(
        &mut self,
        generation_id: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ErrorCode> {
        self.coordinator
            .validate_commit(self.now_ms, GROUP, generation_id, member_id, instance_id)
    }

    pub(super) fn advance(&mut self, ms: u64) -> Vec<Action> {
        self.now_ms += ms;
        self.coordinator.tick(self.now_ms)
    }

    /// Runs a fresh group's initial delay (3 s) to its end: members that
    /// joined in the first window earn it a second one.
    pub(super) fn settle(&mut self) -> Vec<Action> {
        let mut actions = self.advance(3_000);
        actions.extend(self.advance(3_000));
        actions
    }

    pub(super) fn state(&self) -> Option<GroupState> {
        self.coordinator.state(GROUP)
    }

    pub(super) fn generation(&self) -> i32 {
        self.coordinator.groups[GROUP].generation_id
    }

    pub(super) fn leader(&self) -> Option<String> {
        self.coordinator.groups[GROUP].leader_id.clone()
    }
}

/// Joins `clients` (dynamic, "range") into a fresh group within the initial
/// delay and syncs them: one generation, the first client leads, member
/// `m` is assigned "asg-m". Returns the member ids in join order.
pub(super) fn stable_group(fx: &mut Fixture, clients: &[&str]) -> Vec<String> {
    let tokens: Vec<Token> = clients.iter().map(|c| fx.join(c, "", RANGE).0).collect();
    let mut actions = Vec::new();
    for _ in 0..100 {
        if tokens.iter().all(|t| !replies_to(&actions, *t).is_empty()) {
            break;
        }
        actions.extend(fx.advance(1_000));
    }
    let ids: Vec<String> = tokens.iter().map(|t| join_reply(&actions, *t).member_id).collect();
    let generation = fx.generation();
    let assignments: Vec<MemberAssignment> = ids
        .iter()
        .map(|id| MemberAssignment {
            member_id: id.clone(),
            assignment: Bytes::from(format!("asg-{id}")),
        })
        .collect();
    // Followers first (held), then the leader's sync releases everyone.
    for id in ids.iter().skip(1) {
        let (token, actions) = fx.sync(id, generation, Vec::new());
        assert!(replies_to(&actions, token).is_empty());
    }
    fx.sync(&ids[0], generation, assignments);
    assert_eq!(fx.state(), Some(GroupState::Stable));
    ids
}
