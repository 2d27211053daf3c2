//! The rebalance protocol of one group: JoinGroup (a member joins or
//! rejoins, the join phase ends, a generation is formed and every held join
//! answered) and SyncGroup (the leader's assignments are stored and every
//! held sync answered). Methods of `Group`; its state lives in `group.rs`.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::group::{Generation, Group, InitialDelay, Phase, Rebalance};
use super::member::{Assignment, Held, Member};
use super::{next_generation, reject_held, reply, Action, ClientInfo, CoordinatorConfig, JoinCall, Token};
use crate::api::{
    ErrorCode, JoinGroupMember, JoinGroupResponse, MemberAssignment, Response, SyncGroupRequest, SyncGroupResponse,
};

impl Group {
    pub(super) fn join_new_member(
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

    pub(super) fn join_known_member(
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
    pub(super) fn prepare_rebalance(&mut self, now_ms: u64, initial_delay_ms: u32, out: &mut Vec<Action>) {
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
    pub(super) fn maybe_complete_join(&mut self, now_ms: u64, out: &mut Vec<Action>) {
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
    pub(super) fn complete_join(&mut self, now_ms: u64, out: &mut Vec<Action>) {
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

    pub(super) fn sync(
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
}
