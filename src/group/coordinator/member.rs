//! A group member as the coordinator keeps it: its protocols, session and
//! rebalance timeouts, the request it holds (at most one) and the
//! assignment the leader gave it.

use bytes::Bytes;

use super::{ClientInfo, Token};
use crate::api::{JoinGroupProtocol, JoinGroupRequest};

/// A request the coordinator answers later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Held {
    Join(Token),
    Sync(Token),
}

/// What the leader assigned a member, and in which generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Assignment {
    pub(super) generation_id: i32,
    pub(super) bytes: Bytes,
}

#[derive(Debug)]
pub(super) struct Member {
    pub(super) id: String,
    pub(super) instance_id: Option<String>,
    pub(super) client: ClientInfo,
    pub(super) session_timeout_ms: u32,
    pub(super) rebalance_timeout_ms: u32,
    /// In the member's order of preference.
    pub(super) protocols: Vec<JoinGroupProtocol>,
    /// Order of first arrival in the group: picks leaders and orders listings.
    pub(super) join_seq: u64,
    /// When the member is removed unless it is heard from (ignored while a
    /// request is held: a waiting member cannot heartbeat).
    pub(super) session_deadline_ms: u64,
    pub(super) held: Option<Held>,
    pub(super) assignment: Option<Assignment>,
}

impl Member {
    pub(super) fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol)
    }

    pub(super) fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    pub(super) fn refresh(&mut self, now_ms: u64) {
        self.session_deadline_ms = now_ms.saturating_add(u64::from(self.session_timeout_ms));
    }

    /// Takes the held request (to be answered); an answered member's session starts afresh.
    pub(super) fn release(&mut self, now_ms: u64) -> Option<Held> {
        let held = self.held.take();
        if held.is_some() {
            self.refresh(now_ms);
        }
        held
    }

    pub(super) fn update(&mut self, req: &JoinGroupRequest) {
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
