//! One group's state: its phase (Kafka's group state with the data that
//! phase needs), its members and static-member index, the leader and the
//! generation; plus what happens to a group outside a rebalance's own
//! requests: heartbeats, leaves, commit validation, timers, and the check
//! of the module invariants (see the `coordinator` header).

use std::collections::{BTreeMap, BTreeSet};

use super::member::{Held, Member};
use super::{reject_held, Action, CoordinatorConfig, GroupState, SplitMix64};
use crate::api::{ErrorCode, HeartbeatRequest, JoinGroupProtocol, LeavingMember};

/// Draws of a fresh member id before concluding that the generator is broken
/// (a collision among 122 random bits is not expected even once).
const MEMBER_ID_DRAWS_MAX: usize = 8;

#[derive(Debug)]
pub(super) enum Phase {
    Empty,
    PreparingRebalance(Rebalance),
    CompletingRebalance(Generation),
    Stable(Generation),
}

#[derive(Debug)]
pub(super) struct Rebalance {
    /// When the join phase ends even if not every member has rejoined (or,
    /// during the initial delay, when the current delay window closes).
    pub(super) deadline_ms: u64,
    pub(super) initial_delay: Option<InitialDelay>,
}

/// Kafka's InitialDelayedJoin: a group that was Empty waits in windows of
/// `delay_ms`; a window in which a new member arrived is followed by another,
/// up to `cap_ms` (the rebalance timeout). Never ends early.
#[derive(Debug)]
pub(super) struct InitialDelay {
    pub(super) delay_ms: u64,
    pub(super) cap_ms: u64,
    pub(super) member_added: bool,
}

#[derive(Debug)]
pub(super) struct Generation {
    pub(super) protocol: String,
    /// Members of this generation whose SyncGroup has not arrived yet; they
    /// are removed at `sync_deadline_ms` (Kafka's pending-sync expiration).
    pub(super) pending_sync: BTreeSet<String>,
    pub(super) sync_deadline_ms: u64,
}

#[derive(Debug)]
pub(super) struct Group {
    pub(super) id: String,
    pub(super) generation_id: i32,
    /// Set by the first member of an Empty group; kept while Empty (Kafka lists it).
    pub(super) protocol_type: Option<String>,
    pub(super) members: BTreeMap<String, Member>,
    /// group.instance.id -> member id, for every static member.
    pub(super) static_members: BTreeMap<String, String>,
    /// The current generation's leader; across a rebalance, the previous one
    /// (preferred again if it rejoins), `None` once it is gone.
    pub(super) leader_id: Option<String>,
    pub(super) phase: Phase,
    pub(super) join_seq_next: u64,
    /// The key under which `Coordinator::timers` files this group.
    pub(super) timer_ms: Option<u64>,
}

impl Group {
    pub(super) fn new(id: String) -> Group {
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

    pub(super) fn state(&self) -> GroupState {
        match self.phase {
            Phase::Empty => GroupState::Empty,
            Phase::PreparingRebalance(_) => GroupState::PreparingRebalance,
            Phase::CompletingRebalance(_) => GroupState::CompletingRebalance,
            Phase::Stable(_) => GroupState::Stable,
        }
    }

    /// The current generation's protocol, while one is formed.
    pub(super) fn protocol(&self) -> Option<&str> {
        match &self.phase {
            Phase::CompletingRebalance(generation) | Phase::Stable(generation) => Some(&generation.protocol),
            Phase::Empty | Phase::PreparingRebalance(_) => None,
        }
    }

    pub(super) fn in_join_order(&self) -> Vec<&Member> {
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|member| member.join_seq);
        members
    }

    pub(super) fn ids_in_join_order(&self) -> Vec<String> {
        self.in_join_order()
            .into_iter()
            .map(|member| member.id.clone())
            .collect()
    }

    pub(super) fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    pub(super) fn fresh_member_id(&self, prefix: &str, rng: &mut SplitMix64) -> String {
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
    pub(super) fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), ErrorCode> {
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
    pub(super) fn supports(&self, protocol_type: &str, protocols: &[JoinGroupProtocol], except: Option<&str>) -> bool {
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
    pub(super) fn rebalance_timeout_ms(&self) -> u64 {
        self.members
            .values()
            .map(|member| u64::from(member.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    pub(super) fn next_deadline(&self) -> Option<u64> {
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

    pub(super) fn heartbeat(&mut self, now_ms: u64, req: &HeartbeatRequest) -> ErrorCode {
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

    pub(super) fn leave(
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

    pub(super) fn validate_commit(
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
    pub(super) fn on_timer(&mut self, now_ms: u64, config: &CoordinatorConfig, out: &mut Vec<Action>) {
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
    pub(super) fn verify(&self, config: &CoordinatorConfig) {
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
