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

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::api::{
    DescribedGroup, DescribedMember, ErrorCode, HeartbeatRequest, JoinGroupMember, JoinGroupProtocol, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, LeavingMember, LeftMember, ListedGroup, MemberAssignment,
    Response, SyncGroupRequest, SyncGroupResponse,
};

/// Opaque id of a pending client request, chosen by the IO layer; replies
/// name it so the IO layer can route them.
pub type Token = u64;

/// Draws of a fresh member id before concluding that the generator is broken
/// (a collision among 122 random bits is not expected even once).
const MEMBER_ID_DRAWS_MAX: usize = 8;

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
    pub client_host: String,
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
                client_host: member.client.client_host.clone(),
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

/// A request the coordinator answers later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Join(Token),
    Sync(Token),
}

/// What the leader assigned a member, and in which generation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Assignment {
    generation_id: i32,
    bytes: Bytes,
}

#[derive(Debug)]
struct Member {
    id: String,
    instance_id: Option<String>,
    client: ClientInfo,
    session_timeout_ms: u32,
    rebalance_timeout_ms: u32,
    /// In the member's order of preference.
    protocols: Vec<JoinGroupProtocol>,
    /// Order of first arrival in the group: picks leaders and orders listings.
    join_seq: u64,
    /// When the member is removed unless it is heard from (ignored while a
    /// request is held: a waiting member cannot heartbeat).
    session_deadline_ms: u64,
    held: Option<Held>,
    assignment: Option<Assignment>,
}

impl Member {
    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol)
    }

    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    fn refresh(&mut self, now_ms: u64) {
        self.session_deadline_ms = now_ms.saturating_add(u64::from(self.session_timeout_ms));
    }

    /// Takes the held request (to be answered); an answered member's session starts afresh.
    fn release(&mut self, now_ms: u64) -> Option<Held> {
        let held = self.held.take();
        if held.is_some() {
            self.refresh(now_ms);
        }
        held
    }

    fn update(&mut self, req: &JoinGroupRequest) {
        self.protocols = req.protocols.clone();
        self.session_timeout_ms = req.session_timeout_ms;
        self.rebalance_timeout_ms = effective_rebalance_timeout_ms(req);
    }
}

/// JoinGroup v0 has no rebalance timeout (0 here): Kafka then uses the
/// session timeout. Never 0, so every deadline lies in the future.
fn effective_rebalance_timeout_ms(req: &JoinGroupRequest) -> u32 {
    if req.rebalance_timeout_ms == 0 {
        req.session_timeout_ms
    } else {
        req.rebalance_timeout_ms
    }
}

#[derive(Debug)]
enum Phase {
    Empty,
    PreparingRebalance(Rebalance),
    CompletingRebalance(Generation),
    Stable(Generation),
}

#[derive(Debug)]
struct Rebalance {
    /// When the join phase ends even if not every member has rejoined (or,
    /// during the initial delay, when the current delay window closes).
    deadline_ms: u64,
    initial_delay: Option<InitialDelay>,
}

/// Kafka's InitialDelayedJoin: a group that was Empty waits in windows of
/// `delay_ms`; a window in which a new member arrived is followed by another,
/// up to `cap_ms` (the rebalance timeout). Never ends early.
#[derive(Debug)]
struct InitialDelay {
    delay_ms: u64,
    cap_ms: u64,
    member_added: bool,
}

#[derive(Debug)]
struct Generation {
    protocol: String,
    /// Members of this generation whose SyncGroup has not arrived yet; they
    /// are removed at `sync_deadline_ms` (Kafka's pending-sync expiration).
    pending_sync: BTreeSet<String>,
    sync_deadline_ms: u64,
}

#[derive(Debug)]
struct Group {
    id: String,
    generation_id: i32,
    /// Set by the first member of an Empty group; kept while Empty (Kafka lists it).
    protocol_type: Option<String>,
    members: BTreeMap<String, Member>,
    /// group.instance.id -> member id, for every static member.
    static_members: BTreeMap<String, String>,
    /// The current generation's leader; across a rebalance, the previous one
    /// (preferred again if it rejoins), `None` once it is gone.
    leader_id: Option<String>,
    phase: Phase,
    join_seq_next: u64,
    /// The key under which `Coordinator::timers` files this group.
    timer_ms: Option<u64>,
}

impl Group {
    fn new(id: String) -> Group {
        Group {
            id,
            generation_id: 0,
            protocol_type: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            leader_id: None,
            phase: Phase::Empty,
            join_seq_next: 0,
            timer_ms: None,
        }
    }

    fn state(&self) -> GroupState {
        match self.phase {
            Phase::Empty => GroupState::Empty,
            Phase::PreparingRebalance(_) => GroupState::PreparingRebalance,
            Phase::CompletingRebalance(_) => GroupState::CompletingRebalance,
            Phase::Stable(_) => GroupState::Stable,
        }
    }

    /// The current generation's protocol, while one is formed.
    fn protocol(&self) -> Option<&str> {
        match &self.phase {
            Phase::CompletingRebalance(generation) | Phase::Stable(generation) => Some(&generation.protocol),
            Phase::Empty | Phase::PreparingRebalance(_) => None,
        }
    }

    fn in_join_order(&self) -> Vec<&Member> {
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|member| member.join_seq);
        members
    }

    fn ids_in_join_order(&self) -> Vec<String> {
        self.in_join_order()
            .into_iter()
            .map(|member| member.id.clone())
            .collect()
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    fn fresh_member_id(&self, prefix: &str, rng: &mut SplitMix64) -> String {
        for _ in 0..MEMBER_ID_DRAWS_MAX {
            let member_id = format!("{prefix}-{}", rng.uuid());
            if !self.members.contains_key(&member_id) {
                return member_id;
            }
        }
        panic!("group {}: {MEMBER_ID_DRAWS_MAX} member ids drawn, all taken", self.id);
    }

    /// Kafka's validateCurrentMember: a static member must be named by its
    /// current member id (else it is a fenced zombie), and the member must exist.
    fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), ErrorCode> {
        if let Some(instance_id) = instance_id {
            match self.static_members.get(instance_id) {
                Some(current) if current != member_id => return Err(ErrorCode::FencedInstanceId),
                Some(_) => {}
                None => return Err(ErrorCode::UnknownMemberId),
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(ErrorCode::UnknownMemberId)
        }
    }

    /// Whether a member with these protocols may join: the protocol type must
    /// be the group's (any, if the group is Empty), and one of the protocols
    /// must be supported by every member other than `except` (the member
    /// itself when it rejoins).
    fn supports(&self, protocol_type: &str, protocols: &[JoinGroupProtocol], except: Option<&str>) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|protocol| {
            self.members
                .values()
                .filter(|member| Some(member.id.as_str()) != except)
                .all(|member| member.supports(&protocol.name))
        })
    }

    /// The longest rebalance timeout among the members (0 if none).
    fn rebalance_timeout_ms(&self) -> u64 {
        self.members
            .values()
            .map(|member| u64::from(member.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    fn next_deadline(&self) -> Option<u64> {
        let phase_ms = match &self.phase {
            Phase::Empty => None,
            Phase::PreparingRebalance(rebalance) => Some(rebalance.deadline_ms),
            Phase::CompletingRebalance(generation) | Phase::Stable(generation) => {
                (!generation.pending_sync.is_empty()).then_some(generation.sync_deadline_ms)
            }
        };
        let session_ms = self
            .members
            .values()
            .filter(|member| member.held.is_none())
            .map(|member| member.session_deadline_ms)
            .min();
        phase_ms.into_iter().chain(session_ms).min()
    }

    fn join_new_member(
        &mut self,
        call: &JoinCall<'_>,
        client: ClientInfo,
        member_id: String,
        config: &CoordinatorConfig,
        out: &mut Vec<Action>,
    ) -> Result<(), ErrorCode> {
        let req = call.req;
        let replaced = req
            .group_instance_id
            .as_ref()
            .and_then(|instance_id| self.static_members.get(instance_id))
            .cloned();
        if !self.supports(&req.protocol_type, &req.protocols, replaced.as_deref()) {
            return Err(ErrorCode::InconsistentGroupProtocol);
        }
        if let Some(old_id) = replaced {
            self.replace_static_member(call, client, &old_id, member_id, config, out);
            return Ok(());
        }
        if self.members.len() >= config.max_group_size {
            return Err(ErrorCode::GroupMaxSizeReached);
        }
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        let mut member = Member {
            id: member_id.clone(),
            instance_id: req.group_instance_id.clone(),
            client,
            session_timeout_ms: 0,
            rebalance_timeout_ms: 0,
            protocols: Vec::new(),
            join_seq: self.join_seq_next,
            session_deadline_ms: 0,
            held: None,
            assignment: None,
        };
        member.update(req);
        member.refresh(call.now_ms);
        self.join_seq_next += 1;
        if let Some(instance_id) = &member.instance_id {
            self.static_members.insert(instance_id.clone(), member_id.clone());
        }
        self.members.insert(member_id.clone(), member);
        if let Phase::PreparingRebalance(Rebalance {
            initial_delay: Some(delay),
            ..
        }) = &mut self.phase
        {
            delay.member_added = true;
        }
        self.prepare_rebalance(call.now_ms, config.initial_rebalance_delay_ms, out);
        self.hold(&member_id, Held::Join(call.token), out);
        self.maybe_complete_join(call.now_ms, out);
        Ok(())
    }

    /// KIP-345: a static member that lost its member id (it restarted) takes
    /// its seat back under a new id; the old id is fenced. In Stable, with
    /// unchanged protocols, that happens without a rebalance.
    fn replace_static_member(
        &mut self,
        call: &JoinCall<'_>,
        client: ClientInfo,
        old_id: &str,
        new_id: String,
        config: &CoordinatorConfig,
        out: &mut Vec<Action>,
    ) {
        let Some(mut member) = self.members.remove(old_id) else {
            panic!("group {}: static member {old_id} is not a member", self.id);
        };
        if let Some(held) = member.release(call.now_ms) {
            reject_held(held, old_id, ErrorCode::FencedInstanceId, out);
        }
        let unchanged = member.protocols == call.req.protocols;
        member.id = new_id.clone();
        member.client = client;
        member.update(call.req);
        member.refresh(call.now_ms);
        if let Some(instance_id) = &member.instance_id {
            self.static_members.insert(instance_id.clone(), new_id.clone());
        }
        self.members.insert(new_id.clone(), member);
        let previous_leader = self.leader_id.clone().unwrap_or_default();
        if self.is_leader(old_id) {
            self.leader_id = Some(new_id.clone());
        }
        if let Phase::CompletingRebalance(generation) | Phase::Stable(generation) = &mut self.phase {
            if generation.pending_sync.remove(old_id) {
                generation.pending_sync.insert(new_id.clone());
            }
        }
        if unchanged && matches!(self.phase, Phase::Stable(_)) {
            // The reply names the leader as it was, so a restarted leader does not
            // run the assignor: a Stable group would ignore its assignments.
            let response = self.generation_response(&new_id, &previous_leader, false);
            out.push(reply(call.token, response));
            return;
        }
        // CompletingRebalance: the leader may be assigning to the old id, so start over.
        self.prepare_rebalance(call.now_ms, config.initial_rebalance_delay_ms, out);
        self.hold(&new_id, Held::Join(call.token), out);
        self.maybe_complete_join(call.now_ms, out);
    }

    fn join_known_member(
        &mut self,
        call: &JoinCall<'_>,
        config: &CoordinatorConfig,
        out: &mut Vec<Action>,
    ) -> Result<(), ErrorCode> {
        let req = call.req;
        self.validate_member(&req.member_id, req.group_instance_id.as_deref())?;
        if !self.supports(&req.protocol_type, &req.protocols, Some(&req.member_id)) {
            return Err(ErrorCode::InconsistentGroupProtocol);
        }
        let is_leader = self.is_leader(&req.member_id);
        let Some(member) = self.members.get_mut(&req.member_id) else {
            return Err(ErrorCode::UnknownMemberId);
        };
        member.refresh(call.now_ms);
        let unchanged = member.protocols == req.protocols;
        let rebalance = match self.phase {
            Phase::Empty => return Err(ErrorCode::UnknownMemberId),
            Phase::PreparingRebalance(_) => true,
            Phase::CompletingRebalance(_) => !unchanged,
            // The leader rejoining forces a rebalance: that is how it reacts to
            // changes the member metadata does not show (e.g. new partitions).
            Phase::Stable(_) => is_leader || !unchanged,
        };
        if !rebalance {
            // Nothing changed (the member may have lost the first reply): the
            // current generation again, with the members if it is the leader.
            let leader = self.leader_id.clone().unwrap_or_default();
            let response = self.generation_response(&req.member_id, &leader, is_leader);
            out.push(reply(call.token, response));
            return Ok(());
        }
        member.update(req);
        self.prepare_rebalance(call.now_ms, config.initial_rebalance_delay_ms, out);
        self.hold(&req.member_id, Held::Join(call.token), out);
        self.maybe_complete_join(call.now_ms, out);
        Ok(())
    }

    /// Holds a member's request; one it already held is answered with
    /// `RebalanceInProgress` (its client has moved on).
    fn hold(&mut self, member_id: &str, held: Held, out: &mut Vec<Action>) {
        let Some(member) = self.members.get_mut(member_id) else {
            panic!("group {}: holding a request of non-member {member_id}", self.id);
        };
        if let Some(previous) = member.held.replace(held) {
            reject_held(previous, member_id, ErrorCode::RebalanceInProgress, out);
        }
    }

    /// Moves Empty, CompletingRebalance or Stable into PreparingRebalance
    /// (no-op if already there). Held syncs are answered with `RebalanceInProgress`.
    fn prepare_rebalance(&mut self, now_ms: u64, initial_delay_ms: u32, out: &mut Vec<Action>) {
        let was_empty = match self.phase {
            Phase::PreparingRebalance(_) => return,
            Phase::CompletingRebalance(_) => {
                for member_id in self.ids_in_join_order() {
                    if let Some(held) = self.members.get_mut(&member_id).and_then(|m| m.release(now_ms)) {
                        reject_held(held, &member_id, ErrorCode::RebalanceInProgress, out);
                    }
                }
                false
            }
            Phase::Stable(_) => false,
            Phase::Empty => true,
        };
        let timeout_ms = self.rebalance_timeout_ms();
        let rebalance = if was_empty && initial_delay_ms > 0 {
            let delay_ms = u64::from(initial_delay_ms);
            Rebalance {
                deadline_ms: now_ms + delay_ms,
                initial_delay: Some(InitialDelay {
                    delay_ms,
                    cap_ms: now_ms + delay_ms.max(timeout_ms),
                    member_added: false,
                }),
            }
        } else {
            Rebalance {
                deadline_ms: now_ms + timeout_ms,
                initial_delay: None,
            }
        };
        self.phase = Phase::PreparingRebalance(rebalance);
    }

    /// Completes the join phase once every member has rejoined (or none is left).
    fn maybe_complete_join(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        let Phase::PreparingRebalance(rebalance) = &self.phase else {
            return;
        };
        let all_joined = self.members.values().all(|m| matches!(m.held, Some(Held::Join(_))));
        if self.members.is_empty() || (rebalance.initial_delay.is_none() && all_joined) {
            self.complete_join(now_ms, out);
        }
    }

    /// Ends the join phase: dynamic members that did not rejoin are dropped
    /// (static ones keep their seat until their session expires, KIP-345),
    /// then a new generation is formed and every held join answered.
    fn complete_join(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        debug_assert!(matches!(self.phase, Phase::PreparingRebalance(_)));
        let dropped: Vec<String> = self
            .members
            .values()
            .filter(|member| member.held.is_none() && member.instance_id.is_none())
            .map(|member| member.id.clone())
            .collect();
        for member_id in &dropped {
            self.members.remove(member_id);
        }
        if self
            .leader_id
            .as_ref()
            .is_some_and(|leader| !self.members.contains_key(leader))
        {
            self.leader_id = None;
        }
        if self.members.is_empty() {
            self.generation_id = next_generation(self.generation_id);
            self.leader_id = None;
            self.phase = Phase::Empty;
            out.push(Action::Emptied {
                group_id: self.id.clone(),
            });
            return;
        }
        let joined: Vec<String> = self
            .in_join_order()
            .into_iter()
            .filter(|member| member.held.is_some())
            .map(|member| member.id.clone())
            .collect();
        let Some(first_joined) = joined.first() else {
            // Only static members that have not rejoined remain: wait for them to
            // rejoin or for their sessions to expire.
            self.phase = Phase::PreparingRebalance(Rebalance {
                deadline_ms: now_ms + self.rebalance_timeout_ms(),
                initial_delay: None,
            });
            return;
        };
        if !self.leader_id.as_ref().is_some_and(|leader| joined.contains(leader)) {
            self.leader_id = Some(first_joined.clone());
        }
        self.generation_id = next_generation(self.generation_id);
        self.phase = Phase::CompletingRebalance(Generation {
            protocol: self.select_protocol(),
            pending_sync: self.members.keys().cloned().collect(),
            sync_deadline_ms: now_ms + self.rebalance_timeout_ms(),
        });
        let leader = self.leader_id.clone().unwrap_or_default();
        for member_id in self.ids_in_join_order() {
            let response = self.generation_response(&member_id, &leader, member_id == leader);
            let Some(member) = self.members.get_mut(&member_id) else {
                continue;
            };
            member.assignment = None;
            // Every member's session starts afresh with the generation (as in Kafka).
            let held = member.held.take();
            member.refresh(now_ms);
            if let Some(Held::Join(token)) = held {
                out.push(reply(token, response));
            }
        }
    }

    /// Kafka's vote: among the protocols every member supports, each member
    /// votes for its most preferred; most votes wins, a tie goes to the
    /// smallest name.
    fn select_protocol(&self) -> String {
        let candidates: BTreeSet<&str> = self
            .members
            .values()
            .flat_map(|member| member.protocols.iter().map(|p| p.name.as_str()))
            .filter(|name| self.members.values().all(|member| member.supports(name)))
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(choice) = member.protocols.iter().find(|p| candidates.contains(p.name.as_str())) {
                *votes.entry(choice.name.as_str()).or_default() += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, count) in votes {
            if best.is_none_or(|(_, best_count)| count > best_count) {
                best = Some((name, count));
            }
        }
        match best {
            Some((name, _)) => name.to_owned(),
            None => panic!("group {}: members share no protocol", self.id),
        }
    }

    fn generation_response(&self, member_id: &str, leader: &str, with_members: bool) -> Response {
        let protocol = self.protocol();
        let members = if with_members {
            self.in_join_order()
                .into_iter()
                .map(|member| JoinGroupMember {
                    member_id: member.id.clone(),
                    group_instance_id: member.instance_id.clone(),
                    metadata: protocol.map(|p| member.metadata_for(p)).unwrap_or_default(),
                })
                .collect()
        } else {
            Vec::new()
        };
        Response::JoinGroup(JoinGroupResponse {
            error: ErrorCode::None,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: protocol.map(str::to_owned),
            leader: leader.to_owned(),
            member_id: member_id.to_owned(),
            members,
        })
    }

    fn sync(
        &mut self,
        now_ms: u64,
        token: Token,
        req: &SyncGroupRequest,
        out: &mut Vec<Action>,
    ) -> Result<(), ErrorCode> {
        self.validate_member(&req.member_id, req.group_instance_id.as_deref())?;
        if req.generation_id != self.generation_id {
            return Err(ErrorCode::IllegalGeneration);
        }
        if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| self.protocol_type.as_ref() != Some(t))
        {
            return Err(ErrorCode::InconsistentGroupProtocol);
        }
        if let (Some(name), Some(protocol)) = (&req.protocol_name, self.protocol()) {
            if name != protocol {
                return Err(ErrorCode::InconsistentGroupProtocol);
            }
        }
        let is_leader = self.is_leader(&req.member_id);
        match &mut self.phase {
            Phase::Empty => Err(ErrorCode::UnknownMemberId),
            Phase::PreparingRebalance(_) => Err(ErrorCode::RebalanceInProgress),
            Phase::Stable(generation) => {
                generation.pending_sync.remove(&req.member_id);
                let response = self.assignment_response(&req.member_id);
                if let Some(member) = self.members.get_mut(&req.member_id) {
                    member.refresh(now_ms);
                }
                out.push(reply(token, response));
                Ok(())
            }
            Phase::CompletingRebalance(generation) => {
                generation.pending_sync.remove(&req.member_id);
                self.hold(&req.member_id, Held::Sync(token), out);
                if is_leader {
                    self.complete_sync(now_ms, &req.assignments, out);
                }
                Ok(())
            }
        }
    }

    /// The leader's assignments arrived: store them (members it left out get
    /// empty bytes, entries for non-members are ignored), answer every held
    /// sync, go Stable.
    fn complete_sync(&mut self, now_ms: u64, assignments: &[MemberAssignment], out: &mut Vec<Action>) {
        self.phase = match std::mem::replace(&mut self.phase, Phase::Empty) {
            Phase::CompletingRebalance(generation) => Phase::Stable(generation),
            other => other,
        };
        let by_member: BTreeMap<&str, &Bytes> = assignments
            .iter()
            .map(|a| (a.member_id.as_str(), &a.assignment))
            .collect();
        let generation_id = self.generation_id;
        for member_id in self.ids_in_join_order() {
            let Some(member) = self.members.get_mut(&member_id) else {
                continue;
            };
            member.assignment = Some(Assignment {
                generation_id,
                bytes: by_member
                    .get(member_id.as_str())
                    .map(|b| (*b).clone())
                    .unwrap_or_default(),
            });
            if let Some(held) = member.release(now_ms) {
                let response = self.assignment_response(&member_id);
                match held {
                    Held::Sync(token) => out.push(reply(token, response)),
                    Held::Join(_) => reject_held(held, &member_id, ErrorCode::RebalanceInProgress, out),
                }
            }
        }
    }

    fn assignment_response(&self, member_id: &str) -> Response {
        let assignment = self
            .members
            .get(member_id)
            .and_then(|member| member.assignment.as_ref())
            .map(|a| a.bytes.clone())
            .unwrap_or_default();
        Response::SyncGroup(SyncGroupResponse {
            error: ErrorCode::None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol().map(str::to_owned),
            assignment,
        })
    }

    fn heartbeat(&mut self, now_ms: u64, req: &HeartbeatRequest) -> ErrorCode {
        if let Err(error) = self.validate_member(&req.member_id, req.group_instance_id.as_deref()) {
            return error;
        }
        if req.generation_id != self.generation_id {
            return ErrorCode::IllegalGeneration;
        }
        if let Some(member) = self.members.get_mut(&req.member_id) {
            member.refresh(now_ms);
        }
        match self.phase {
            Phase::Empty => ErrorCode::UnknownMemberId,
            Phase::PreparingRebalance(_) => ErrorCode::RebalanceInProgress,
            Phase::CompletingRebalance(_) | Phase::Stable(_) => ErrorCode::None,
        }
    }

    fn leave(
        &mut self,
        now_ms: u64,
        who: &LeavingMember,
        config: &CoordinatorConfig,
        out: &mut Vec<Action>,
    ) -> ErrorCode {
        let member_id = if who.member_id.is_empty() {
            // Administrative removal of a static member by instance id alone.
            let current = who
                .group_instance_id
                .as_ref()
                .and_then(|instance_id| self.static_members.get(instance_id));
            match current {
                Some(member_id) => member_id.clone(),
                None => return ErrorCode::UnknownMemberId,
            }
        } else {
            if let Err(error) = self.validate_member(&who.member_id, who.group_instance_id.as_deref()) {
                return error;
            }
            who.member_id.clone()
        };
        self.remove_member(now_ms, &member_id, config, out);
        ErrorCode::None
    }

    /// Removes a member (left, expired, or never synced), answering its held
    /// request with `UnknownMemberId`, and rebalances the rest.
    fn remove_member(&mut self, now_ms: u64, member_id: &str, config: &CoordinatorConfig, out: &mut Vec<Action>) {
        let Some(mut member) = self.members.remove(member_id) else {
            return;
        };
        if let Some(instance_id) = &member.instance_id {
            self.static_members.remove(instance_id);
        }
        if let Some(held) = member.release(now_ms) {
            // Kafka answers with an empty member id: the client must join afresh.
            reject_held(held, "", ErrorCode::UnknownMemberId, out);
        }
        if self.is_leader(member_id) {
            self.leader_id = None;
        }
        self.prepare_rebalance(now_ms, config.initial_rebalance_delay_ms, out);
        self.maybe_complete_join(now_ms, out);
    }

    fn validate_commit(
        &mut self,
        now_ms: u64,
        generation_id: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ErrorCode> {
        if generation_id < 0 && self.members.is_empty() {
            return Ok(());
        }
        if generation_id < 0 && member_id.is_empty() && instance_id.is_none() {
            // Only members may commit to a group that has members.
            return Err(ErrorCode::UnknownMemberId);
        }
        self.validate_member(member_id, instance_id)?;
        if generation_id != self.generation_id {
            return Err(ErrorCode::IllegalGeneration);
        }
        match self.phase {
            Phase::CompletingRebalance(_) => Err(ErrorCode::RebalanceInProgress),
            Phase::Empty | Phase::PreparingRebalance(_) | Phase::Stable(_) => {
                if let Some(member) = self.members.get_mut(member_id) {
                    member.refresh(now_ms);
                }
                Ok(())
            }
        }
    }

    /// Everything due by `now_ms`: expired sessions, the end of the join phase
    /// or of an initial-delay window, and members whose sync never came.
    fn on_timer(&mut self, now_ms: u64, config: &CoordinatorConfig, out: &mut Vec<Action>) {
        let expired: Vec<String> = self
            .in_join_order()
            .into_iter()
            .filter(|member| member.held.is_none() && member.session_deadline_ms <= now_ms)
            .map(|member| member.id.clone())
            .collect();
        for member_id in expired {
            self.remove_member(now_ms, &member_id, config, out);
        }
        match &mut self.phase {
            Phase::PreparingRebalance(rebalance) if rebalance.deadline_ms <= now_ms => {
                if let Some(delay) = &mut rebalance.initial_delay {
                    if delay.member_added && now_ms < delay.cap_ms {
                        delay.member_added = false;
                        rebalance.deadline_ms = (now_ms + delay.delay_ms).min(delay.cap_ms);
                        return;
                    }
                }
                self.complete_join(now_ms, out);
            }
            Phase::CompletingRebalance(generation) | Phase::Stable(generation)
                if !generation.pending_sync.is_empty() && generation.sync_deadline_ms <= now_ms =>
            {
                let never_synced: Vec<String> = generation.pending_sync.iter().cloned().collect();
                for member_id in never_synced {
                    self.remove_member(now_ms, &member_id, config, out);
                }
            }
            _ => {}
        }
    }

    /// Asserts the module invariants (see the header).
    fn verify(&self, config: &CoordinatorConfig) {
        let id = &self.id;
        assert_eq!(
            matches!(self.phase, Phase::Empty),
            self.members.is_empty(),
            "group {id}: Empty iff no members"
        );
        assert!(
            self.members.len() <= config.max_group_size,
            "group {id}: too many members"
        );
        let static_count = self.members.values().filter(|m| m.instance_id.is_some()).count();
        assert_eq!(
            self.static_members.len(),
            static_count,
            "group {id}: static member index"
        );
        for (member_id, member) in &self.members {
            assert_eq!(&member.id, member_id, "group {id}: member filed under another id");
            if let Some(instance_id) = &member.instance_id {
                assert_eq!(
                    self.static_members.get(instance_id),
                    Some(member_id),
                    "group {id}: static index"
                );
            }
            let held_ok = match member.held {
                None => true,
                Some(Held::Join(_)) => matches!(self.phase, Phase::PreparingRebalance(_)),
                Some(Held::Sync(_)) => matches!(self.phase, Phase::CompletingRebalance(_)),
            };
            assert!(
                held_ok,
                "group {id}: member {member_id} holds {:?} in {:?}",
                member.held,
                self.state()
            );
        }
        if let Some(first) = self.members.values().next() {
            let shared = first
                .protocols
                .iter()
                .any(|p| self.members.values().all(|m| m.supports(&p.name)));
            assert!(shared, "group {id}: members share no protocol");
        }
        match &self.phase {
            Phase::Empty => assert!(self.leader_id.is_none(), "group {id}: Empty with a leader"),
            Phase::PreparingRebalance(rebalance) => {
                if let Some(delay) = &rebalance.initial_delay {
                    assert!(
                        rebalance.deadline_ms <= delay.cap_ms,
                        "group {id}: initial delay past its cap"
                    );
                }
            }
            Phase::CompletingRebalance(generation) | Phase::Stable(generation) => {
                let leader = self.leader_id.as_ref().filter(|l| self.members.contains_key(*l));
                assert!(leader.is_some(), "group {id}: generation without a leader");
                assert!(self.members.values().all(|m| m.supports(&generation.protocol)));
                assert!(generation.pending_sync.iter().all(|m| self.members.contains_key(m)));
                let stable = matches!(self.phase, Phase::Stable(_));
                for member in self.members.values() {
                    let current = member
                        .assignment
                        .as_ref()
                        .is_some_and(|a| a.generation_id == self.generation_id);
                    assert_eq!(current, stable, "group {id}: member {} assignment vs state", member.id);
                }
            }
        }
    }
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

/// SplitMix64: the seeded generator behind member ids (and the tests).
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 128 random bits laid out as a version-4 UUID.
    fn uuid(&mut self) -> String {
        let high = (self.next_u64() & !0xF000) | 0x4000;
        let low = (self.next_u64() & !(0xC << 60)) | (0x8 << 60);
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            high >> 32,
            (high >> 16) & 0xFFFF,
            high & 0xFFFF,
            low >> 48,
            low & 0xFFFF_FFFF_FFFF
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUP: &str = "g";
    const SESSION_MS: u32 = 10_000;
    const REBALANCE_MS: u32 = 30_000;
    const RANGE: &[(&str, &str)] = &[("range", "sub")];

    fn protocols(list: &[(&str, &str)]) -> Vec<JoinGroupProtocol> {
        list.iter()
            .map(|(name, metadata)| JoinGroupProtocol {
                name: (*name).to_owned(),
                metadata: Bytes::copy_from_slice(metadata.as_bytes()),
            })
            .collect()
    }

    fn join_request(member_id: &str, instance_id: Option<&str>, list: &[(&str, &str)]) -> JoinGroupRequest {
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

    fn client(client_id: &str) -> ClientInfo {
        ClientInfo {
            client_id: client_id.to_owned(),
            client_host: "/10.0.0.1".to_owned(),
        }
    }

    fn assign(pairs: &[(&str, &str)]) -> Vec<MemberAssignment> {
        pairs
            .iter()
            .map(|(member_id, bytes)| MemberAssignment {
                member_id: (*member_id).to_owned(),
                assignment: Bytes::copy_from_slice(bytes.as_bytes()),
            })
            .collect()
    }

    fn replies_to(actions: &[Action], token: Token) -> Vec<&Response> {
        actions
            .iter()
            .filter_map(|action| match action {
                Action::Reply { token: t, response } if *t == token => Some(response),
                _ => None,
            })
            .collect()
    }

    fn reply_to(actions: &[Action], token: Token) -> Response {
        let replies = replies_to(actions, token);
        assert_eq!(replies.len(), 1, "expected one reply to token {token} in {actions:?}");
        replies[0].clone()
    }

    fn join_reply(actions: &[Action], token: Token) -> JoinGroupResponse {
        match reply_to(actions, token) {
            Response::JoinGroup(response) => response,
            other => panic!("not a JoinGroup reply: {other:?}"),
        }
    }

    fn sync_reply(actions: &[Action], token: Token) -> SyncGroupResponse {
        match reply_to(actions, token) {
            Response::SyncGroup(response) => response,
            other => panic!("not a SyncGroup reply: {other:?}"),
        }
    }

    fn join_response_error(member_id: &str, error: ErrorCode) -> JoinGroupResponse {
        match join_error(member_id, error) {
            Response::JoinGroup(response) => response,
            _ => unreachable!(),
        }
    }

    fn sync_response_error(error: ErrorCode) -> SyncGroupResponse {
        match sync_error(error) {
            Response::SyncGroup(response) => response,
            _ => unreachable!(),
        }
    }

    fn ok_join(
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

    fn listed(member_id: &str, instance_id: Option<&str>, metadata: &str) -> JoinGroupMember {
        JoinGroupMember {
            member_id: member_id.to_owned(),
            group_instance_id: instance_id.map(str::to_owned),
            metadata: Bytes::copy_from_slice(metadata.as_bytes()),
        }
    }

    fn ok_sync(protocol: &str, assignment: &str) -> SyncGroupResponse {
        SyncGroupResponse {
            error: ErrorCode::None,
            protocol_type: Some("consumer".to_owned()),
            protocol_name: Some(protocol.to_owned()),
            assignment: Bytes::copy_from_slice(assignment.as_bytes()),
        }
    }

    /// One coordinator, a clock and a token counter.
    struct Fixture {
        coordinator: Coordinator,
        now_ms: u64,
        next_token: Token,
    }

    impl Fixture {
        fn new(initial_delay_ms: u32) -> Fixture {
            Fixture::with_config(CoordinatorConfig {
                initial_rebalance_delay_ms: initial_delay_ms,
                ..CoordinatorConfig::default()
            })
        }

        fn with_config(config: CoordinatorConfig) -> Fixture {
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

        fn join_with(&mut self, client_id: &str, req: JoinGroupRequest) -> (Token, Vec<Action>) {
            let token = self.token();
            (token, self.coordinator.join(self.now_ms, token, client(client_id), req))
        }

        fn join(&mut self, client_id: &str, member_id: &str, list: &[(&str, &str)]) -> (Token, Vec<Action>) {
            self.join_with(client_id, join_request(member_id, None, list))
        }

        fn sync_as(
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

        fn sync(
            &mut self,
            member_id: &str,
            generation_id: i32,
            assignments: Vec<MemberAssignment>,
        ) -> (Token, Vec<Action>) {
            self.sync_as(member_id, None, generation_id, assignments)
        }

        fn heartbeat_as(&mut self, member_id: &str, instance_id: Option<&str>, generation_id: i32) -> ErrorCode {
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

        fn heartbeat(&mut self, member_id: &str, generation_id: i32) -> ErrorCode {
            self.heartbeat_as(member_id, None, generation_id)
        }

        fn leave(&mut self, members: &[(&str, Option<&str>)]) -> (LeaveGroupResponse, Vec<Action>) {
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

        fn commit(&mut self, generation_id: i32, member_id: &str, instance_id: Option<&str>) -> Result<(), ErrorCode> {
            self.coordinator
                .validate_commit(self.now_ms, GROUP, generation_id, member_id, instance_id)
        }

        fn advance(&mut self, ms: u64) -> Vec<Action> {
            self.now_ms += ms;
            self.coordinator.tick(self.now_ms)
        }

        /// Runs a fresh group's initial delay (3 s) to its end: members that
        /// joined in the first window earn it a second one.
        fn settle(&mut self) -> Vec<Action> {
            let mut actions = self.advance(3_000);
            actions.extend(self.advance(3_000));
            actions
        }

        fn state(&self) -> Option<GroupState> {
            self.coordinator.state(GROUP)
        }

        fn generation(&self) -> i32 {
            self.coordinator.groups[GROUP].generation_id
        }

        fn leader(&self) -> Option<String> {
            self.coordinator.groups[GROUP].leader_id.clone()
        }
    }

    /// Joins `clients` (dynamic, "range") into a fresh group within the initial
    /// delay and syncs them: one generation, the first client leads, member
    /// `m` is assigned "asg-m". Returns the member ids in join order.
    fn stable_group(fx: &mut Fixture, clients: &[&str]) -> Vec<String> {
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
            client_host: "/10.0.0.1".to_owned(),
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

    // Seeded simulation: clients that behave like real ones (join, sync when
    // told, heartbeat, commit, leave, crash and restart) against one group,
    // with time advancing at random. Replay a failure with
    // SLUICE_COORDINATOR_SEED=<seed> cargo test --lib group::coordinator.

    const SIM_SEEDS: u64 = 500;
    const SIM_STEPS: usize = 200;
    const SIM_CLIENTS: usize = 5;
    /// Ticks the final drain may take before everything must be answered.
    const SIM_DRAIN_TICKS_MAX: usize = 1_000;
    /// Protocol sets clients join with; the last one shares nothing with the first.
    const SIM_PROTOCOLS: [&[(&str, &str)]; 3] = [
        &[("range", "a")],
        &[("range", "b"), ("roundrobin", "b")],
        &[("roundrobin", "c")],
    ];

    impl SplitMix64 {
        fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum SimState {
        /// Not in the group: joins when next picked.
        Out,
        Joining,
        /// Got its JoinGroup answer: syncs when next picked.
        MustSync,
        Syncing,
        /// Has its assignment: heartbeats, commits, leaves, rejoins or crashes.
        Active,
        /// Crashed (or fenced): sends nothing until it restarts.
        Silent,
    }

    #[derive(Debug)]
    struct SimClient {
        client_id: String,
        instance_id: Option<String>,
        session_timeout_ms: u32,
        rebalance_timeout_ms: u32,
        protocols: usize,
        member_id: String,
        generation_id: i32,
        leader: bool,
        members: Vec<String>,
        state: SimState,
        /// The join or sync it waits for; answers to older tokens are stale.
        waiting_for: Option<Token>,
    }

    /// What the simulation saw, to show it is not vacuous.
    #[derive(Debug, Default)]
    struct SimStats {
        stable_steps: u64,
        generations: u64,
        emptied: u64,
        /// "join RebalanceInProgress" and the like, for every reply (stale ones too).
        outcomes: BTreeMap<String, u64>,
    }

    struct Sim {
        rng: SplitMix64,
        coordinator: Coordinator,
        now_ms: u64,
        next_token: Token,
        clients: Vec<SimClient>,
        /// Every token not answered yet, and whose it is.
        unanswered: BTreeMap<Token, usize>,
        /// Generation -> the member told it leads that generation.
        leaders: BTreeMap<i32, String>,
        last_generation: i32,
        stats: SimStats,
    }

    impl Sim {
        fn new(seed: u64) -> Sim {
            let mut rng = SplitMix64(seed);
            let config = CoordinatorConfig {
                min_session_timeout_ms: 6_000,
                max_session_timeout_ms: 30_000,
                initial_rebalance_delay_ms: if rng.chance(50) { 0 } else { 3_000 },
                max_group_size: 4,
            };
            let clients = (0..SIM_CLIENTS)
                .map(|i| {
                    let session_timeout_ms = 6_000 + rng.below(10_001) as u32;
                    SimClient {
                        client_id: format!("c{i}"),
                        instance_id: (i < 2).then(|| format!("inst-{i}")),
                        session_timeout_ms,
                        rebalance_timeout_ms: session_timeout_ms + rng.below(20_001) as u32,
                        protocols: rng.below(2) as usize,
                        member_id: String::new(),
                        generation_id: -1,
                        leader: false,
                        members: Vec::new(),
                        state: SimState::Out,
                        waiting_for: None,
                    }
                })
                .collect();
            Sim {
                coordinator: Coordinator::new(config, rng.next_u64()),
                rng,
                now_ms: 0,
                next_token: 0,
                clients,
                unanswered: BTreeMap::new(),
                leaders: BTreeMap::new(),
                last_generation: 0,
                stats: SimStats::default(),
            }
        }

        fn token(&mut self, client: usize) -> Token {
            self.next_token += 1;
            self.unanswered.insert(self.next_token, client);
            self.next_token
        }

        fn step(&mut self) {
            let before = self.coordinator.state(GROUP);
            let actions = if self.rng.chance(25) {
                self.now_ms += self.rng.below(3_000);
                self.tick()
            } else {
                let client = self.rng.below(SIM_CLIENTS as u64) as usize;
                self.act(client)
            };
            self.deliver(before, actions);
            self.check();
        }

        fn tick(&mut self) -> Vec<Action> {
            let actions = self.coordinator.tick(self.now_ms);
            let next = self.coordinator.next_deadline();
            assert!(
                next.is_none_or(|at_ms| at_ms > self.now_ms),
                "tick left work due: {next:?}"
            );
            actions
        }

        fn act(&mut self, i: usize) -> Vec<Action> {
            match self.clients[i].state {
                SimState::Out => self.send_join(i),
                // A client that timed out retries its join while the first is held.
                SimState::Joining if self.rng.chance(10) => self.send_join(i),
                // Closed mid-rebalance: the held request is answered as the member leaves.
                SimState::Joining | SimState::Syncing if self.rng.chance(3) => self.send_leave(i),
                SimState::MustSync => self.send_sync(i),
                SimState::Joining | SimState::Syncing => Vec::new(),
                SimState::Active => match self.rng.below(100) {
                    0..=59 => self.send_heartbeat(i),
                    60..=69 => {
                        self.commit(i);
                        Vec::new()
                    }
                    70..=73 => self.send_leave(i),
                    74..=78 => {
                        self.clients[i].protocols = self.rng.below(SIM_PROTOCOLS.len() as u64) as usize;
                        self.send_join(i)
                    }
                    79..=83 => {
                        self.clients[i].state = SimState::Silent;
                        Vec::new()
                    }
                    84..=88 => self.send_sync(i),
                    89..=90 if self.clients[i].instance_id.is_some() => self.send_impostor_join(i),
                    _ => self.send_join(i),
                },
                SimState::Silent if self.rng.chance(15) => {
                    // Restart: a new process knows no member id (a static one keeps its instance id).
                    self.clients[i].member_id.clear();
                    self.send_join(i)
                }
                SimState::Silent => Vec::new(),
            }
        }

        fn send_join(&mut self, i: usize) -> Vec<Action> {
            let token = self.token(i);
            let c = &mut self.clients[i];
            c.state = SimState::Joining;
            c.waiting_for = Some(token);
            let req = JoinGroupRequest {
                group_id: GROUP.to_owned(),
                session_timeout_ms: c.session_timeout_ms,
                rebalance_timeout_ms: c.rebalance_timeout_ms,
                member_id: c.member_id.clone(),
                group_instance_id: c.instance_id.clone(),
                protocol_type: "consumer".to_owned(),
                protocols: protocols(SIM_PROTOCOLS[c.protocols]),
            };
            let info = client(&c.client_id);
            self.coordinator.join(self.now_ms, token, info, req)
        }

        /// A second process starts with client `i`'s instance id while `i`
        /// keeps running: it takes the seat, and `i` must learn it is fenced.
        /// The impostor then falls silent (its answer is stale for `i`).
        fn send_impostor_join(&mut self, i: usize) -> Vec<Action> {
            let token = self.token(i);
            let c = &self.clients[i];
            let req = JoinGroupRequest {
                session_timeout_ms: c.session_timeout_ms,
                rebalance_timeout_ms: c.rebalance_timeout_ms,
                ..join_request("", c.instance_id.as_deref(), SIM_PROTOCOLS[c.protocols])
            };
            let info = client(&format!("{}-impostor", c.client_id));
            self.coordinator.join(self.now_ms, token, info, req)
        }

        fn send_sync(&mut self, i: usize) -> Vec<Action> {
            let token = self.token(i);
            let c = &mut self.clients[i];
            c.state = SimState::Syncing;
            c.waiting_for = Some(token);
            let assignments = if c.leader {
                c.members
                    .iter()
                    .map(|member_id| MemberAssignment {
                        member_id: member_id.clone(),
                        assignment: Bytes::from(format!("{}:{member_id}", c.generation_id)),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let req = SyncGroupRequest {
                group_id: GROUP.to_owned(),
                generation_id: c.generation_id,
                member_id: c.member_id.clone(),
                group_instance_id: c.instance_id.clone(),
                protocol_type: Some("consumer".to_owned()),
                protocol_name: None,
                assignments,
            };
            self.coordinator.sync(self.now_ms, token, req)
        }

        fn send_heartbeat(&mut self, i: usize) -> Vec<Action> {
            let token = self.token(i);
            let c = &self.clients[i];
            let req = HeartbeatRequest {
                group_id: GROUP.to_owned(),
                generation_id: c.generation_id,
                member_id: c.member_id.clone(),
                group_instance_id: c.instance_id.clone(),
            };
            let actions = self.coordinator.heartbeat(self.now_ms, token, req);
            assert_eq!(replies_to(&actions, token).len(), 1, "heartbeats are answered at once");
            actions
        }

        fn send_leave(&mut self, i: usize) -> Vec<Action> {
            let token = self.token(i);
            let c = &self.clients[i];
            let req = LeaveGroupRequest {
                group_id: GROUP.to_owned(),
                members: vec![LeavingMember {
                    member_id: c.member_id.clone(),
                    group_instance_id: c.instance_id.clone(),
                }],
            };
            let actions = self.coordinator.leave(self.now_ms, token, req);
            assert_eq!(replies_to(&actions, token).len(), 1, "leaves are answered at once");
            actions
        }

        fn commit(&mut self, i: usize) {
            let c = &self.clients[i];
            let current = self.coordinator.groups.get(GROUP).is_some_and(|group| {
                group.state() == GroupState::Stable
                    && group.generation_id == c.generation_id
                    && group.members.contains_key(&c.member_id)
            });
            let result = self.coordinator.validate_commit(
                self.now_ms,
                GROUP,
                c.generation_id,
                &c.member_id,
                c.instance_id.as_deref(),
            );
            if current {
                assert_eq!(result, Ok(()), "a current member of a Stable group may commit");
            }
            if let Err(error) = result {
                assert!(matches!(
                    error,
                    ErrorCode::RebalanceInProgress
                        | ErrorCode::IllegalGeneration
                        | ErrorCode::UnknownMemberId
                        | ErrorCode::FencedInstanceId
                ));
            }
        }

        fn deliver(&mut self, before: Option<GroupState>, actions: Vec<Action>) {
            let mut emptied = 0;
            for action in actions {
                let (token, response) = match action {
                    Action::Emptied { group_id } => {
                        assert_eq!(group_id, GROUP);
                        emptied += 1;
                        continue;
                    }
                    Action::Reply { token, response } => (token, response),
                };
                let Some(i) = self.unanswered.remove(&token) else {
                    panic!("token {token} answered twice, or never issued: {response:?}");
                };
                let current = self.clients[i].waiting_for == Some(token);
                let outcome = match &response {
                    Response::JoinGroup(r) => format!("join {:?}", r.error),
                    Response::SyncGroup(r) => format!("sync {:?}", r.error),
                    Response::Heartbeat { error } => format!("heartbeat {error:?}"),
                    Response::LeaveGroup(r) => format!("leave {:?}", r.members.first().map(|m| m.error)),
                    other => format!("{other:?}"),
                };
                *self.stats.outcomes.entry(outcome).or_default() += 1;
                match response {
                    Response::JoinGroup(r) => {
                        self.note_leader(&r);
                        if current {
                            self.on_join(i, r);
                        }
                    }
                    Response::SyncGroup(r) if current => self.on_sync(i, r),
                    Response::SyncGroup(_) => {}
                    Response::Heartbeat { error } => self.on_error(i, error),
                    Response::LeaveGroup(r) => {
                        assert_eq!(r.error, ErrorCode::None);
                        self.clients[i].member_id.clear();
                        self.clients[i].state = SimState::Out;
                    }
                    other => panic!("unexpected response {other:?}"),
                }
            }
            let after = self.coordinator.state(GROUP);
            let became_empty = before.is_some_and(|s| s != GroupState::Empty) && after == Some(GroupState::Empty);
            assert_eq!(emptied, usize::from(became_empty), "Emptied iff the group became Empty");
            self.stats.emptied += emptied as u64;
        }

        /// Checks, on every JoinGroup answer (stale or not), that no two
        /// members are told they lead the same generation.
        fn note_leader(&mut self, r: &JoinGroupResponse) {
            if r.error != ErrorCode::None || r.leader != r.member_id {
                assert!(
                    r.error != ErrorCode::None || r.members.is_empty(),
                    "only the leader gets the members"
                );
                return;
            }
            assert!(
                r.members.iter().any(|m| m.member_id == r.member_id),
                "leader missing from members"
            );
            let first = self
                .leaders
                .entry(r.generation_id)
                .or_insert_with(|| r.member_id.clone());
            assert_eq!(*first, r.member_id, "two leaders of generation {}", r.generation_id);
        }

        fn on_join(&mut self, i: usize, r: JoinGroupResponse) {
            let c = &mut self.clients[i];
            c.waiting_for = None;
            match r.error {
                ErrorCode::None => {
                    assert!(r.generation_id >= 1);
                    assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
                    assert!(r.protocol_name.is_some());
                    c.leader = r.leader == r.member_id;
                    c.member_id = r.member_id;
                    c.generation_id = r.generation_id;
                    c.members = r.members.into_iter().map(|m| m.member_id).collect();
                    c.state = SimState::MustSync;
                }
                ErrorCode::InconsistentGroupProtocol => {
                    c.protocols = 1;
                    c.state = SimState::Out;
                }
                ErrorCode::RebalanceInProgress | ErrorCode::GroupMaxSizeReached => c.state = SimState::Out,
                error => self.on_error(i, error),
            }
        }

        fn on_sync(&mut self, i: usize, r: SyncGroupResponse) {
            let c = &mut self.clients[i];
            c.waiting_for = None;
            if r.error == ErrorCode::None {
                let prefix = format!("{}:", c.generation_id);
                assert!(
                    r.assignment.starts_with(prefix.as_bytes()),
                    "client {i} got {:?} in generation {}",
                    r.assignment,
                    c.generation_id
                );
                c.state = SimState::Active;
            } else {
                self.on_error(i, r.error);
            }
        }

        /// What a real client does on an error (or `None`) from the coordinator.
        fn on_error(&mut self, i: usize, error: ErrorCode) {
            let c = &mut self.clients[i];
            match error {
                ErrorCode::None => {}
                ErrorCode::RebalanceInProgress | ErrorCode::IllegalGeneration => c.state = SimState::Out,
                ErrorCode::UnknownMemberId => {
                    c.member_id.clear();
                    c.state = SimState::Out;
                }
                // Another process owns the instance id now: shut down.
                ErrorCode::FencedInstanceId => c.state = SimState::Silent,
                other => panic!("client {i}: unexpected error {other:?}"),
            }
        }

        fn check(&mut self) {
            let coordinator = &self.coordinator;
            for group in coordinator.groups.values() {
                group.verify(&coordinator.config);
                assert_eq!(
                    group.timer_ms,
                    group.next_deadline(),
                    "group {} filed under a stale deadline",
                    group.id
                );
            }
            let filed = coordinator.groups.values().filter(|g| g.timer_ms.is_some()).count();
            assert_eq!(coordinator.timers.len(), filed);
            let earliest = coordinator.groups.values().filter_map(Group::next_deadline).min();
            assert_eq!(coordinator.next_deadline(), earliest);
            let Some(group) = coordinator.groups.get(GROUP) else {
                return;
            };
            assert!(group.generation_id >= self.last_generation, "generation went back");
            self.stats.generations += u64::from(group.generation_id > self.last_generation);
            self.last_generation = group.generation_id;
            if group.state() == GroupState::Stable {
                self.stats.stable_steps += 1;
                for member in group.members.values() {
                    let current = member
                        .assignment
                        .as_ref()
                        .is_some_and(|a| a.generation_id == group.generation_id);
                    assert!(current, "Stable member {} without a current assignment", member.id);
                }
            }
        }

        /// Every client stops; time runs until nothing is scheduled. Every
        /// token must have been answered exactly once, the group must be Empty.
        fn drain(&mut self) {
            for c in &mut self.clients {
                c.state = SimState::Silent;
            }
            for _ in 0..SIM_DRAIN_TICKS_MAX {
                let Some(at_ms) = self.coordinator.next_deadline() else {
                    break;
                };
                let before = self.coordinator.state(GROUP);
                self.now_ms = self.now_ms.max(at_ms);
                let actions = self.tick();
                self.deliver(before, actions);
                self.check();
            }
            assert!(self.unanswered.is_empty(), "never answered: {:?}", self.unanswered);
            assert_eq!(self.coordinator.next_deadline(), None);
            assert!(self.coordinator.state(GROUP).is_none_or(|s| s == GroupState::Empty));
        }
    }

    /// Prints the seed of a failing simulation run.
    struct SeedGuard(u64);

    impl Drop for SeedGuard {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!(
                    "coordinator simulation failed at seed {0}: replay with SLUICE_COORDINATOR_SEED={0}",
                    self.0
                );
            }
        }
    }

    #[test]
    fn randomized_clients_keep_the_invariants() {
        let seeds: Vec<u64> = match std::env::var("SLUICE_COORDINATOR_SEED") {
            Ok(seed) => vec![seed.parse().expect("SLUICE_COORDINATOR_SEED is a u64")],
            Err(_) => (0..SIM_SEEDS).collect(),
        };
        let mut total = SimStats::default();
        for seed in seeds {
            let _guard = SeedGuard(seed);
            let mut sim = Sim::new(seed);
            for _ in 0..SIM_STEPS {
                sim.step();
            }
            sim.drain();
            total.stable_steps += sim.stats.stable_steps;
            total.generations += sim.stats.generations;
            total.emptied += sim.stats.emptied;
            for (what, count) in sim.stats.outcomes {
                *total.outcomes.entry(what).or_default() += count;
            }
        }
        eprintln!("coordinator simulation: {total:?}");
        if std::env::var("SLUICE_COORDINATOR_SEED").is_err() {
            // The clients reached every interesting corner, not just the happy path.
            assert!(total.stable_steps > 0 && total.generations > 0 && total.emptied > 0);
            for what in [
                "join None",
                "join RebalanceInProgress",
                "join UnknownMemberId",
                "join FencedInstanceId",
                "join InconsistentGroupProtocol",
                "join GroupMaxSizeReached",
                "sync None",
                "sync RebalanceInProgress",
                "sync UnknownMemberId",
                "sync FencedInstanceId",
                "leave Some(None)",
                "heartbeat None",
                "heartbeat RebalanceInProgress",
                "heartbeat UnknownMemberId",
                "heartbeat FencedInstanceId",
            ] {
                assert!(
                    total.outcomes.get(what).is_some_and(|n| *n > 0),
                    "never saw {what}: {total:?}"
                );
            }
        }
    }
}
