//! The member state a `GroupConsumer` shares with its heartbeat task, the
//! coordinator calls made on its behalf (finding the coordinator, retrying
//! while it is lost, OffsetCommit, OffsetFetch) and the heartbeat task.
//!
//! Shard: lives on the consumer's executor; `Cell`/`RefCell` state is never
//! borrowed across an `.await`.
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Weak;
use std::time::Duration;

use crate::api::{ErrorCode, HeartbeatRequest, OffsetCommitRequest, OffsetFetchTopic, Request, Response};
use crate::client::cluster::unexpected;
use crate::client::metadata::Endpoint;
use crate::client::{Client, ClientError};

use super::plan::{
    answered, by_topic, commit_topics, committed_offsets, coordinator_endpoint, first_commit_error, lost_coordinator,
    recovery, Recovery,
};
use super::{GroupConfig, NO_GENERATION};

/// Member state shared by the consumer and its heartbeat task.
pub(super) struct Member {
    pub(super) client: Client,
    pub(super) config: GroupConfig,
    /// Given by the coordinator on the first join; empty before, and after
    /// the coordinator forgot the member.
    pub(super) member_id: RefCell<String>,
    /// The current generation, `NO_GENERATION` while joining or unjoined.
    pub(super) generation: Cell<i32>,
    /// The next `poll` must rejoin.
    pub(super) rejoin: Cell<bool>,
    pub(super) coordinator: RefCell<Option<Endpoint>>,
    /// A failure the heartbeat task saw that the next `poll` reports.
    pub(super) fatal: RefCell<Option<ClientError>>,
}

impl Member {
    pub(super) fn member_id(&self) -> String {
        self.member_id.borrow().clone()
    }

    pub(super) fn group_id(&self) -> &str {
        &self.config.group_id
    }

    /// The coordinator forgot this member: join again as a new one.
    fn reset_member_id(&self) {
        self.member_id.borrow_mut().clear();
        self.rejoin.set(true);
    }

    /// Acts on a code from the coordinator about this member's standing.
    pub(super) fn apply(&self, code: ErrorCode) -> Recovery {
        let r = recovery(code);
        match r {
            Recovery::Rejoin => self.rejoin.set(true),
            Recovery::RejoinAsNew => self.reset_member_id(),
            Recovery::FindCoordinator => self.forget_coordinator(),
            Recovery::Fail => {}
        }
        r
    }

    fn forget_coordinator(&self) {
        self.coordinator.borrow_mut().take();
    }

    /// The coordinator's endpoint, asked of any broker if not known.
    async fn coordinator(&self) -> Result<Endpoint, ClientError> {
        if let Some(e) = self.coordinator.borrow().clone() {
            return Ok(e);
        }
        let req = Request::FindCoordinator {
            group_id: self.config.group_id.clone(),
        };
        let info = match self.client.send_any(req).await? {
            Response::FindCoordinator(info) => info,
            other => return Err(unexpected("FindCoordinator", &other)),
        };
        if info.error != ErrorCode::None {
            let what = format!("finding the coordinator of group {}", self.group_id());
            return Err(ClientError::broker(info.error, what));
        }
        let endpoint = coordinator_endpoint(&info, self.client.config().shard_aware)?;
        tracing::debug!(group = %self.group_id(), %endpoint, shard = info.shard, "found the group coordinator");
        *self.coordinator.borrow_mut() = Some(endpoint.clone());
        Ok(endpoint)
    }

    /// One attempt at `req` on the coordinator; forgets the coordinator if
    /// the outcome says it is lost.
    async fn send_once(&self, req: Request, limit: Duration) -> Result<Response, ClientError> {
        let result = match self.coordinator().await {
            Ok(endpoint) => self.client.send(&endpoint, req, Some(limit)).await,
            Err(e) => Err(e),
        };
        if lost_coordinator(&result) {
            self.forget_coordinator();
        }
        result
    }

    /// `req` on the coordinator, finding it again (after a back-off) while
    /// it is lost, at most `retries_max` times. The last answer comes back
    /// as it is, error code and all.
    pub(super) async fn call(&self, req: Request, limit: Duration) -> Result<Response, ClientError> {
        let mut attempt = 0;
        loop {
            let result = self.send_once(req.clone(), limit).await;
            if !lost_coordinator(&result) || attempt >= self.client.config().retries_max {
                return result;
            }
            attempt += 1;
            tracing::debug!(group = %self.group_id(), api = ?req.api(), attempt, "coordinator lost; finding it again");
            glommio::timer::sleep(self.client.config().backoff(attempt)).await;
        }
    }

    /// Sends one heartbeat if the member is in a generation and acts on the
    /// answer. Returns the pause before the next one.
    async fn beat(&self, failures: &mut u32) -> Duration {
        let interval = self.config.heartbeat_interval;
        let (generation, member_id) = (self.generation.get(), self.member_id());
        if generation == NO_GENERATION || member_id.is_empty() {
            *failures = 0;
            return interval;
        }
        let req = Request::Heartbeat(HeartbeatRequest {
            group_id: self.config.group_id.clone(),
            generation_id: generation,
            member_id: member_id.clone(),
            group_instance_id: self.config.group_instance_id.clone(),
        });
        let limit = self.client.config().request_timeout.min(self.config.session_timeout);
        let outcome = match self.send_once(req, limit).await {
            Ok(Response::Heartbeat { error: ErrorCode::None }) => Ok(()),
            Ok(Response::Heartbeat { error }) => Err(ClientError::broker(error, "heartbeat")),
            Ok(other) => Err(unexpected("Heartbeat", &other)),
            Err(e) => Err(e),
        };
        if self.generation.get() != generation || *self.member_id.borrow() != member_id {
            return interval; // about a generation this member has left
        }
        let Err(e) = outcome else {
            *failures = 0;
            return interval;
        };
        let group = self.group_id();
        let code = e.code();
        match code.map(|c| self.apply(c)) {
            Some(Recovery::Rejoin | Recovery::RejoinAsNew) => {
                tracing::debug!(%group, error = %e, "heartbeat: rejoin needed");
                interval
            }
            // `send_once` forgot the coordinator: the next beat finds it again.
            Some(Recovery::FindCoordinator) => self.after_failed_beat(failures, &e),
            None if e.is_retriable() => self.after_failed_beat(failures, &e),
            _ if code == Some(ErrorCode::FencedInstanceId) => {
                tracing::warn!(%group, error = %e, "fenced by a member with the same instance id");
                self.rejoin.set(true);
                self.fatal.borrow_mut().get_or_insert(e);
                interval
            }
            _ => {
                tracing::warn!(%group, error = %e, "heartbeat failed");
                interval
            }
        }
    }

    /// The pause after a heartbeat that did not reach the coordinator.
    fn after_failed_beat(&self, failures: &mut u32, e: &ClientError) -> Duration {
        *failures = failures.saturating_add(1);
        tracing::debug!(group = %self.group_id(), error = %e, failures, "heartbeat failed; finding the coordinator again");
        self.client
            .config()
            .backoff(*failures)
            .min(self.config.heartbeat_interval)
    }
}

/// Heartbeats while the member is in a generation, until the consumer is
/// gone. Holds the member only while a heartbeat is in flight.
pub(super) async fn heartbeat_loop(member: Weak<Member>) {
    let mut failures = 0u32;
    loop {
        let pause = match member.upgrade() {
            Some(m) => m.beat(&mut failures).await,
            None => return,
        };
        glommio::timer::sleep(pause).await;
    }
}

/// OffsetCommit for `offsets` in the member's generation.
pub(super) async fn commit_offsets(member: &Member, offsets: &[(&str, u32, i64)]) -> Result<(), ClientError> {
    if offsets.is_empty() {
        return Ok(());
    }
    if let Some((t, p, o)) = offsets.iter().find(|(_, _, o)| *o < 0) {
        return Err(ClientError::Invalid(format!("offset {o} for {t}/{p} is negative")));
    }
    let req = Request::OffsetCommit(OffsetCommitRequest {
        group_id: member.config.group_id.clone(),
        generation_id: member.generation.get(),
        member_id: member.member_id(),
        group_instance_id: member.config.group_instance_id.clone(),
        topics: commit_topics(offsets),
    });
    let topics = match member.call(req, member.client.config().request_timeout).await? {
        Response::OffsetCommit { topics } => topics,
        other => return Err(unexpected("OffsetCommit", &other)),
    };
    let failed = first_commit_error(&topics).or_else(|| {
        let (t, p, _) = offsets.iter().find(|(t, p, _)| !answered(&topics, t, *p))?;
        Some((t.to_string(), *p, ErrorCode::Unknown))
    });
    match failed {
        None => Ok(()),
        Some((topic, partition, code)) => {
            member.apply(code);
            let what = format!("committing {topic}/{partition} for group {}", member.group_id());
            Err(ClientError::broker(code, what))
        }
    }
}

/// The group's committed offsets of `partitions` (those with one).
pub(super) async fn fetch_committed(
    member: &Member,
    partitions: &[(String, u32)],
) -> Result<BTreeMap<(String, u32), i64>, ClientError> {
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    let topics = by_topic(partitions)
        .into_iter()
        .map(|(name, partitions)| OffsetFetchTopic {
            name: name.to_string(),
            partitions,
        })
        .collect();
    let req = Request::OffsetFetch {
        group_id: member.config.group_id.clone(),
        topics: Some(topics),
    };
    match member.call(req, member.client.config().request_timeout).await? {
        Response::OffsetFetch {
            error: ErrorCode::None,
            topics,
        } => committed_offsets(&topics, partitions).map_err(|(t, p, code)| {
            ClientError::broker(
                code,
                format!("committed offset of {t}/{p} in group {}", member.group_id()),
            )
        }),
        Response::OffsetFetch { error, .. } => Err(ClientError::broker(
            error,
            format!("committed offsets of group {}", member.group_id()),
        )),
        other => Err(unexpected("OffsetFetch", &other)),
    }
}
