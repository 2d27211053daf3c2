//! The consumer-group coordinator: Kafka's classic group protocol (JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup) as a sans-IO state machine.
//!
//! Owns the membership state of every group one shard coordinates: members,
//! generations, the chosen assignor, the leader and the assignments it handed
//! out. Committed offsets live elsewhere (the offsets topic);
//! [`Coordinator::validate_commit`] only says whether a commit may be accepted.
//!
//! Events in, actions out. Every call takes the time as `now_ms` and returns
//! [`Action`]s; nothing here reads a clock, does I/O, spawns or blocks, and
//! the only randomness (member ids) comes from the seed. Requests that must
//! wait (a JoinGroup while the group rebalances, a follower's SyncGroup before
//! the leader's) are held under the IO layer's [`Token`] and answered by a
//! later call, each exactly once. The IO layer runs one `Coordinator` per
//! shard, on that shard's thread, and calls [`Coordinator::tick`] once
//! [`Coordinator::next_deadline`] has passed.
//!
//! Group lifecycle, in Kafka's state names:
//!
//! ```text
//! Empty ─join─► PreparingRebalance ─all rejoined, or timeout─► CompletingRebalance ─leader's sync─► Stable
//!                 ▲       └─no member left─► Empty                  │                              │
//!                 └────── join, leave, session expiry, missing sync ┴──────────────────────────────┘
//! ```
//!
//! Invariants, checked by `Group::verify` after every call in debug builds:
//! - a group is Empty exactly when it has no members;
//! - a member holds at most one request: a JoinGroup only while
//!   PreparingRebalance, a SyncGroup only while CompletingRebalance;
//! - while CompletingRebalance or Stable the leader is a member and every
//!   member supports the chosen protocol;
//! - while Stable every member holds an assignment of the current generation
//!   and no request is held;
//! - the members' protocols always have one in common (a join that would
//!   break this is refused), so a protocol can always be chosen;
//! - `Coordinator::timers` holds each group with a deadline once, under
//!   `Group::next_deadline`, and every deadline a call sets lies after its
//!   `now_ms`, so one `tick` settles everything due.
//!
//! Layout: this file holds the public API and the per-shard `Coordinator`;
//! `group.rs` one group's state, liveness (heartbeats, leaves, timers),
//! commit validation and `Group::verify`; `rebalance.rs` the JoinGroup and
//! SyncGroup phases; `member.rs` a member's state. Tests: `tests.rs`
//! (scripted scenarios over `fixture.rs`) and `sim.rs` (the seeded simulation).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

pub(crate) use crate::rng::SplitMix64;

use crate::api::{
    DescribedGroup, DescribedMember, ErrorCode, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, LeftMember, ListedGroup, Response, SyncGroupRequest, SyncGroupResponse,
};

use group::Group;
use member::Held;

mod group;
mod member;
mod rebalance;

#[cfg(test)]
mod fixture;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

/// Opaque id of a pending client request, chosen by the IO layer; replies
/// name it so the IO layer can route them.
pub type Token = u64;

/// Limits and timing of group coordination (Kafka's `group.*` broker configs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// Smallest session timeout a member may ask for (`group.min.session.timeout.ms`).
    pub min_session_timeout_ms: u32,
    /// Largest session timeout a member may ask for (`group.max.session.timeout.ms`).
    pub max_session_timeout_ms: u32,
    /// How long a group that was Empty waits for more members before its first
    /// rebalance completes (`group.initial.rebalance.delay.ms`); 0 disables it.
    pub initial_rebalance_delay_ms: u32,
    /// Most members a group may have; new members beyond it get `GroupMaxSizeReached`.
    pub max_group_size: usize,
}

impl Default for CoordinatorConfig {
    fn default() -> CoordinatorConfig {
        CoordinatorConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 300_000,
            initial_rebalance_delay_ms: 3_000,
            max_group_size: 1_000,
        }
    }
}

/// Who sent a JoinGroup, as the IO layer knows it (shown by DescribeGroups).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientInfo {
    pub client_id: String,
    /// Shared by every request of a connection: cloning it per request is a
    /// reference count, not an allocation.
    pub client_host: std::sync::Arc<str>,
}

/// What the IO layer must do after a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer the request identified by `token` (responses are
    /// `Response::JoinGroup`, `SyncGroup`, `Heartbeat` or `LeaveGroup`).
    Reply { token: Token, response: Response },
    /// The group has no members any more (the IO layer uses this to start
    /// offset-retention clocks).
    Emptied { group_id: String },
}

/// A group's state, under Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members (possibly committed offsets).
    Empty,
    /// Members are (re)joining; JoinGroup replies are held.
    PreparingRebalance,
    /// A generation is formed; waiting for the leader's assignments.
    CompletingRebalance,
    /// Every member has (or can fetch) its assignment.
    Stable,
    /// Not coordinated here (only ever reported, never stored).
    Dead,
}

impl GroupState {
    /// Kafka's name of the state, as ListGroups and DescribeGroups report it.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// All groups coordinated by one shard.
#[derive(Debug)]
pub struct Coordinator {
    config: CoordinatorConfig,
    rng: SplitMix64,
    groups: BTreeMap<String, Group>,
    /// Each group with a deadline, under its earliest one (`Group::timer_ms`).
    timers: BTreeSet<(u64, String)>,
}

impl Coordinator {
    /// A coordinator with no groups; `seed` drives member-id generation.
    ///
    /// Panics on a config no group could work with (validate user input before).
    pub fn new(config: CoordinatorConfig, seed: u64) -> Coordinator {
        assert!(
            config.min_session_timeout_ms >= 1,
            "min_session_timeout_ms must be at least 1"
        );
        assert!(
            config.min_session_timeout_ms <= config.max_session_timeout_ms,
            "min_session_timeout_ms must not exceed max_session_timeout_ms"
        );
        assert!(config.max_group_size >= 1, "max_group_size must be at least 1");
        Coordinator {
            config,
            rng: SplitMix64(seed),
            groups: BTreeMap::new(),
            timers: BTreeSet::new(),
        }
    }

    /// JoinGroup. A new member (empty `member_id`) is given an id and admitted
    /// at once (no MEMBER_ID_REQUIRED round trip). The reply is held while the
    /// group rebalances.
    pub fn join(&mut self, now_ms: u64, token: Token, client: ClientInfo, req: JoinGroupRequest) -> Vec<Action> {
        let mut out = Vec::new();
        let call = JoinCall {
            now_ms,
            token,
            req: &req,
        };
        if let Err(error) = self.try_join(&call, client, &mut out) {
            out.push(reply(token, join_error(&req.member_id, error)));
        }
        self.after(&req.group_id);
        out
    }

    fn try_join(&mut self, call: &JoinCall<'_>, client: ClientInfo, out: &mut Vec<Action>) -> Result<(), ErrorCode> {
        let req = call.req;
        if req.group_id.is_empty() {
            return Err(ErrorCode::InvalidGroupId);
        }
        let session_ms = req.session_timeout_ms;
        if session_ms < self.config.min_session_timeout_ms || session_ms > self.config.max_session_timeout_ms {
            return Err(ErrorCode::InvalidSessionTimeout);
        }
        if !req.member_id.is_empty() {
            let group = self.groups.get_mut(&req.group_id).ok_or(ErrorCode::UnknownMemberId)?;
            return group.join_known_member(call, &self.config, out);
        }
        // Checked before the group is created, so a refused join leaves nothing behind.
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return Err(ErrorCode::InconsistentGroupProtocol);
        }
        let group = self
            .groups
            .entry(req.group_id.clone())
            .or_insert_with(|| Group::new(req.group_id.clone()));
        let prefix = req.group_instance_id.as_deref().unwrap_or(&client.client_id);
        let member_id = group.fresh_member_id(prefix, &mut self.rng);
        group.join_new_member(call, client, member_id, &self.config, out)
    }

    /// SyncGroup. Followers' syncs are held until the leader's arrives with
    /// the assignments; in Stable the stored assignment is returned at once.
    pub fn sync(&mut self, now_ms: u64, token: Token, req: SyncGroupRequest) -> Vec<Action> {
        let mut out = Vec::new();
        let result = if req.group_id.is_empty() {
            Err(ErrorCode::InvalidGroupId)
        } else {
            match self.groups.get_mut(&req.group_id) {
                None => Err(ErrorCode::UnknownMemberId),
                Some(group) => group.sync(now_ms, token, &req, &mut out),
            }
        };
        if let Err(error) = result {
            out.push(reply(token, sync_error(error)));
        }
        self.after(&req.group_id);
        out
    }

    /// Heartbeat: refreshes the session; `RebalanceInProgress` tells the
    /// member to rejoin. Always answered at once.
    pub fn heartbeat(&mut self, now_ms: u64, token: Token, req: HeartbeatRequest) -> Vec<Action> {
        let error = if req.group_id.is_empty() {
            ErrorCode::InvalidGroupId
        } else {
            match self.groups.get_mut(&req.group_id) {
                None => ErrorCode::UnknownMemberId,
                Some(group) => group.heartbeat(now_ms, &req),
            }
        };
        self.after(&req.group_id);
        vec![reply(token, Response::Heartbeat { error })]
    }

    /// LeaveGroup: removes each listed member (static members may be named by
    /// instance id alone), answering their held requests with `UnknownMemberId`.
    pub fn leave(&mut self, now_ms: u64, token: Token, req: LeaveGroupRequest) -> Vec<Action> {
        let mut out = Vec::new();
        let response = if req.group_id.is_empty() {
            LeaveGroupResponse {
                error: ErrorCode::InvalidGroupId,
                members: Vec::new(),
            }
        } else {
            let mut group = self.groups.get_mut(&req.group_id);
            let mut members = Vec::with_capacity(req.members.len());
            for who in &req.members {
                let error = match group.as_deref_mut() {
                    None => ErrorCode::UnknownMemberId,
                    Some(group) => group.leave(now_ms, who, &self.config, &mut out),
                };
                members.push(LeftMember {
                    member_id: who.member_id.clone(),
                    group_instance_id: who.group_instance_id.clone(),
                    error,
                });
            }
            LeaveGroupResponse {
                error: ErrorCode::None,
                members,
            }
        };
        out.push(reply(token, Response::LeaveGroup(response)));
        self.after(&req.group_id);
        out
    }

    /// Expires sessions, ends rebalances whose timeout passed, finishes the
    /// initial-join delay and expires pending syncs, for every group due by `now_ms`.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let due: Vec<String> = self
            .timers
            .iter()
            .take_while(|(at_ms, _)| *at_ms <= now_ms)
            .map(|(_, group_id)| group_id.clone())
            .collect();
        for group_id in due {
            if let Some(group) = self.groups.get_mut(&group_id) {
                group.on_timer(now_ms, &self.config, &mut out);
            }
            self.after(&group_id);
            if let Some(group) = self.groups.get(&group_id) {
                debug_assert!(
                    group.timer_ms.is_none_or(|at_ms| at_ms > now_ms),
                    "group {group_id} still due"
                );
            }
        }
        out
    }

    /// Earliest time at which [`Coordinator::tick`] would do something (None if
    /// nothing is scheduled).
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.first().map(|(at_ms, _)| *at_ms)
    }

    /// For OffsetCommit: `Ok` if a commit with this generation and member may be
    /// accepted, by Kafka's rules:
    /// - generation < 0 on an unknown or Empty group is a "simple" commit from
    ///   outside group management: accepted (an unknown group is created Empty,
    ///   as Kafka does, so it can be listed and deleted);
    /// - generation >= 0 on an unknown group: `IllegalGeneration`;
    /// - otherwise the member must be current (`UnknownMemberId`,
    ///   `FencedInstanceId`) and of the current generation (`IllegalGeneration`);
    ///   an anonymous commit to a group with members gets `UnknownMemberId`;
    /// - CompletingRebalance: `RebalanceInProgress`. PreparingRebalance accepts
    ///   the current generation, so members can commit before they rejoin.
    ///
    /// An accepted commit counts as a heartbeat of its member.
    pub fn validate_commit(
        &mut self,
        now_ms: u64,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), ErrorCode> {
        let result = match self.groups.get_mut(group_id) {
            Some(group) => group.validate_commit(now_ms, generation_id, member_id, group_instance_id),
            None if generation_id < 0 => {
                self.groups.insert(group_id.to_owned(), Group::new(group_id.to_owned()));
                Ok(())
            }
            None => Err(ErrorCode::IllegalGeneration),
        };
        self.after(group_id);
        result
    }

    /// Groups whose state is one of `states` (Kafka's names, any case); all
    /// groups if `states` is empty. Sorted by group id.
    pub fn list(&self, states: &[String]) -> Vec<ListedGroup> {
        self.groups
            .values()
            .filter(|group| states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(group.state().as_str())))
            .map(|group| ListedGroup {
                group_id: group.id.clone(),
                protocol_type: group.protocol_type.clone().unwrap_or_default(),
                state: group.state().as_str().to_owned(),
            })
            .collect()
    }

    /// DescribeGroups for one group. An unknown group is reported as "Dead"
    /// with no error (Kafka before DescribeGroups v6). Members come in join
    /// order; their metadata and the protocol name are filled while a
    /// generation is formed (CompletingRebalance, Stable), assignments once
    /// the leader has sent them (Stable).
    pub fn describe(&self, group_id: &str) -> DescribedGroup {
        let Some(group) = self.groups.get(group_id) else {
            return DescribedGroup {
                group_id: group_id.to_owned(),
                error: ErrorCode::None,
                state: GroupState::Dead.as_str().to_owned(),
                protocol_type: String::new(),
                protocol_name: String::new(),
                members: Vec::new(),
            };
        };
        let protocol = group.protocol();
        let stable = group.state() == GroupState::Stable;
        let members = group
            .in_join_order()
            .into_iter()
            .map(|member| DescribedMember {
                member_id: member.id.clone(),
                group_instance_id: member.instance_id.clone(),
                client_id: member.client.client_id.clone(),
                client_host: member.client.client_host.to_string(),
                metadata: protocol.map(|p| member.metadata_for(p)).unwrap_or_default(),
                assignment: member
                    .assignment
                    .as_ref()
                    .filter(|_| stable)
                    .map(|a| a.bytes.clone())
                    .unwrap_or_default(),
            })
            .collect();
        DescribedGroup {
            group_id: group.id.clone(),
            error: ErrorCode::None,
            state: group.state().as_str().to_owned(),
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol_name: protocol.unwrap_or_default().to_owned(),
            members,
        }
    }

    /// Removes an Empty group's membership state: `Err(NonEmptyGroup)` if it
    /// has members, `Err(GroupIdNotFound)` if it is unknown.
    pub fn delete(&mut self, group_id: &str) -> Result<(), ErrorCode> {
        let group = self.groups.get(group_id).ok_or(ErrorCode::GroupIdNotFound)?;
        if group.state() != GroupState::Empty {
            return Err(ErrorCode::NonEmptyGroup);
        }
        if let Some(at_ms) = group.timer_ms {
            self.timers.remove(&(at_ms, group_id.to_owned()));
        }
        self.groups.remove(group_id);
        Ok(())
    }

    /// The state of a group, `None` if it is unknown here.
    pub fn state(&self, group_id: &str) -> Option<GroupState> {
        self.groups.get(group_id).map(Group::state)
    }

    /// Every group known here, sorted.
    pub fn group_ids(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }

    /// Bookkeeping after a call touched `group_id`: re-files its deadline and,
    /// in debug builds, checks its invariants.
    fn after(&mut self, group_id: &str) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        let next_ms = group.next_deadline();
        if group.timer_ms != next_ms {
            if let Some(at_ms) = group.timer_ms {
                self.timers.remove(&(at_ms, group_id.to_owned()));
            }
            if let Some(at_ms) = next_ms {
                self.timers.insert((at_ms, group_id.to_owned()));
            }
            group.timer_ms = next_ms;
        }
        if cfg!(debug_assertions) {
            group.verify(&self.config);
        }
    }
}

/// One JoinGroup being handled.
struct JoinCall<'a> {
    now_ms: u64,
    token: Token,
    req: &'a JoinGroupRequest,
}

fn next_generation(generation_id: i32) -> i32 {
    // Restarting at 1 after i32::MAX rebalances keeps generations positive:
    // negative ones mean "no generation" to OffsetCommit.
    generation_id.checked_add(1).unwrap_or(1)
}

fn reply(token: Token, response: Response) -> Action {
    Action::Reply { token, response }
}

fn join_error(member_id: &str, error: ErrorCode) -> Response {
    Response::JoinGroup(JoinGroupResponse {
        error,
        generation_id: -1,
        protocol_type: None,
        protocol_name: None,
        leader: String::new(),
        member_id: member_id.to_owned(),
        members: Vec::new(),
    })
}

fn sync_error(error: ErrorCode) -> Response {
    Response::SyncGroup(SyncGroupResponse {
        error,
        protocol_type: None,
        protocol_name: None,
        assignment: Bytes::new(),
    })
}

/// Answers a held request with an error.
fn reject_held(held: Held, member_id: &str, error: ErrorCode, out: &mut Vec<Action>) {
    let (token, response) = match held {
        Held::Join(token) => (token, join_error(member_id, error)),
        Held::Sync(token) => (token, sync_error(error)),
    };
    out.push(reply(token, response));
}
