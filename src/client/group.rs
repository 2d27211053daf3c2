//! `GroupConsumer`: a member of a consumer group (Kafka's classic protocol,
//! eager rebalancing) that reads the partitions the group gives it with a
//! [`Consumer`].
//!
//! A member finds its group's coordinator (FindCoordinator), joins
//! (JoinGroup, one protocol per assignor, each carrying the same
//! ConsumerProtocol subscription), and syncs (SyncGroup): the member the
//! coordinator elects leader runs the chosen assignor over every member's
//! subscription and hands out the assignments. A background task heartbeats
//! while the member is in a generation; an answer that says the group is
//! rebalancing (or forgot the member) flags a rejoin that the next `poll`
//! carries out. Offsets are committed to the coordinator (OffsetCommit) and
//! read back from it (OffsetFetch) when partitions are assigned.
//!
//! Invariants:
//! - Eager: before rejoining, the member commits (with auto-commit), tells
//!   the listener `Revoked` and stops fetching every partition it had; the
//!   partitions of a generation are fetched only once that generation's
//!   SyncGroup answered. So between two generations it owns nothing.
//! - A partition reaches the fetching `Consumer` only with its start known:
//!   the committed offset, else (no commit) `ConsumerConfig::reset`. A
//!   committed partition never starts from the reset policy.
//! - Outside `install`, the `Consumer`'s assignment equals `assignment`.
//! - The heartbeat task applies an answer only while the generation and
//!   member id it beat with are still current: a late answer about a
//!   generation already left never sends the member round again.
//! - Every wait is bounded: each request has a timeout (a JoinGroup or
//!   SyncGroup, which the coordinator holds during the rebalance, waits
//!   `rebalance_timeout + request_timeout`), a call retries a lost
//!   coordinator at most `ClientConfig::retries_max` times, and a join gives
//!   up (to be resumed by the next `poll`) after `JOIN_ROUNDS_MAX` rounds.
//!
//! Shard: the consumer and its heartbeat task live on the executor that
//! created them; `!Send`. State the task shares is in `Cell`/`RefCell`, never
//! borrowed across an `.await`. The task ends when the consumer is closed or
//! dropped (it holds only a `Weak`, and is cancelled on drop).
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use glommio::task::JoinHandle;

use super::cluster::unexpected;
use super::metadata::Endpoint;
use super::{Client, ClientError, ConsumedRecord, Consumer, ConsumerConfig, SeekTo};
use crate::api::{
    CoordinatorInfo, ErrorCode, HeartbeatRequest, JoinGroupMember, JoinGroupProtocol, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeavingMember, MemberAssignment, OffsetCommitPartition, OffsetCommitRequest,
    OffsetCommitTopic, OffsetCommitTopicResponse, OffsetFetchTopic, OffsetFetchTopicResponse, Request, Response,
    SyncGroupRequest, TopicInfo,
};
use crate::group::assignor::{self, AssignmentMap, MemberSubscription};
use crate::group::consumer_protocol::{Assignment, Subscription, PROTOCOL_TYPE};

/// The generation of a member that is not in one (joining, or never joined).
const NO_GENERATION: i32 = -1;
/// Join rounds (JoinGroup + SyncGroup) one `poll` tries before it reports
/// the last failure; the next `poll` resumes.
const JOIN_ROUNDS_MAX: u32 = 32;

/// Settings of a group member. Start from [`GroupConfig::new`].
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// The group to join.
    pub group_id: String,
    /// Static membership (KIP-345): a member that comes back with the same
    /// instance id within the session timeout gets its partitions back
    /// without a rebalance. A static member does not leave the group on
    /// `close`. `None`: a dynamic member.
    pub group_instance_id: Option<String>,
    /// How long the coordinator waits for a heartbeat before it removes the
    /// member (the broker bounds it, by default to 6 s ..= 300 s).
    pub session_timeout: Duration,
    /// How long the coordinator waits for every member to rejoin once a
    /// rebalance starts.
    pub rebalance_timeout: Duration,
    /// Time between heartbeats; must be below `session_timeout` (a third of
    /// it is usual). A rebalance reaches a member within about this long.
    pub heartbeat_interval: Duration,
    /// Assignor names, most preferred first: "range", "roundrobin",
    /// "sticky". The coordinator picks the first every member supports.
    pub assignors: Vec<String>,
    /// Commit every assigned partition's position from `poll` every
    /// `auto_commit_interval`, before partitions are revoked and on `close`.
    pub auto_commit: bool,
    /// Time between automatic commits.
    pub auto_commit_interval: Duration,
}

impl GroupConfig {
    /// Kafka's defaults for a member of `group_id`: 10 s session, 30 s
    /// rebalance timeout, 3 s heartbeats, range then round-robin then
    /// sticky, auto-commit every 5 s.
    pub fn new(group_id: &str) -> GroupConfig {
        GroupConfig {
            group_id: group_id.to_string(),
            group_instance_id: None,
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(3),
            assignors: assignor::ALL.iter().map(|s| s.to_string()).collect(),
            auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
        }
    }

    /// Misconfigurations the coordinator would reject later, or never
    /// notice (heartbeats slower than the session).
    fn validate(&self) -> Result<(), ClientError> {
        if self.group_id.is_empty() {
            return Err(ClientError::Invalid("the group id is empty".into()));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.session_timeout {
            return Err(ClientError::Invalid(format!(
                "heartbeat interval {:?} must be above zero and below the session timeout {:?}",
                self.heartbeat_interval, self.session_timeout
            )));
        }
        if self.assignors.is_empty() {
            return Err(ClientError::Invalid("no assignor configured".into()));
        }
        match self.assignors.iter().find(|a| assignor::by_name(a).is_none()) {
            Some(a) => Err(ClientError::Invalid(format!(
                "unknown assignor {a:?} (known: {:?})",
                assignor::ALL
            ))),
            None => Ok(()),
        }
    }
}

/// What a rebalance did to this member, as the listener set with
/// [`GroupConsumer::on_rebalance`] hears it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalance {
    /// These partitions are no longer fetched (before a rejoin, after the
    /// auto-commit; and on `close`). Only sent when something was assigned.
    Revoked(Vec<(String, u32)>),
    /// The partitions of the new generation, positioned and about to be
    /// fetched (possibly none).
    Assigned(Vec<(String, u32)>),
}

/// What a member does about an error code from its coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    /// Rejoin with the same member id.
    Rejoin,
    /// Forget the member id, then rejoin as a new member.
    RejoinAsNew,
    /// Find the coordinator again, then retry.
    FindCoordinator,
    /// Nothing to do: report it.
    Fail,
}

fn recovery(code: ErrorCode) -> Recovery {
    match code {
        ErrorCode::RebalanceInProgress | ErrorCode::IllegalGeneration => Recovery::Rejoin,
        ErrorCode::UnknownMemberId => Recovery::RejoinAsNew,
        ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable | ErrorCode::CoordinatorLoadInProgress => {
            Recovery::FindCoordinator
        }
        _ => Recovery::Fail,
    }
}

/// The error code a group response carries (`None` if it succeeded or is
/// not a group response); for OffsetCommit, the first partition's error.
fn response_error(resp: &Response) -> Option<ErrorCode> {
    let code = match resp {
        Response::FindCoordinator(info) => info.error,
        Response::JoinGroup(r) => r.error,
        Response::SyncGroup(r) => r.error,
        Response::Heartbeat { error } => *error,
        Response::LeaveGroup(r) => r.error,
        Response::OffsetFetch { error, .. } => *error,
        Response::OffsetCommit { topics } => first_commit_error(topics).map_or(ErrorCode::None, |(_, _, e)| e),
        Response::Error { error, .. } => *error,
        _ => ErrorCode::None,
    };
    (code != ErrorCode::None).then_some(code)
}

/// The outcome says the coordinator moved, is loading, or is unreachable.
fn lost_coordinator(result: &Result<Response, ClientError>) -> bool {
    match result {
        Ok(resp) => response_error(resp).is_some_and(|c| recovery(c) == Recovery::FindCoordinator),
        Err(ClientError::Broker { code, .. }) => recovery(*code) == Recovery::FindCoordinator,
        Err(e) => e.is_retriable(),
    }
}

/// Where the member talks to its coordinator: the coordinating shard's own
/// port when shard-aware, else the broker's shared port.
fn coordinator_endpoint(info: &CoordinatorInfo, shard_aware: bool) -> Result<Endpoint, ClientError> {
    let port = if shard_aware { info.shard_port } else { info.port };
    if info.host.is_empty() || port == 0 {
        return Err(ClientError::broker(
            ErrorCode::CoordinatorNotAvailable,
            format!("FindCoordinator named no address ({}:{port})", info.host),
        ));
    }
    Ok(Endpoint {
        host: info.host.clone(),
        port,
    })
}

fn millis_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Member state shared by the consumer and its heartbeat task.
struct Member {
    client: Client,
    config: GroupConfig,
    /// Given by the coordinator on the first join; empty before, and after
    /// the coordinator forgot the member.
    member_id: RefCell<String>,
    /// The current generation, `NO_GENERATION` while joining or unjoined.
    generation: Cell<i32>,
    /// The next `poll` must rejoin.
    rejoin: Cell<bool>,
    coordinator: RefCell<Option<Endpoint>>,
    /// A failure the heartbeat task saw that the next `poll` reports.
    fatal: RefCell<Option<ClientError>>,
}

impl Member {
    fn member_id(&self) -> String {
        self.member_id.borrow().clone()
    }

    fn group_id(&self) -> &str {
        &self.config.group_id
    }

    /// The coordinator forgot this member: join again as a new one.
    fn reset_member_id(&self) {
        self.member_id.borrow_mut().clear();
        self.rejoin.set(true);
    }

    /// Acts on a code from the coordinator about this member's standing.
    fn apply(&self, code: ErrorCode) -> Recovery {
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
    async fn call(&self, req: Request, limit: Duration) -> Result<Response, ClientError> {
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
async fn heartbeat_loop(member: Weak<Member>) {
    let mut failures = 0u32;
    loop {
        let pause = match member.upgrade() {
            Some(m) => m.beat(&mut failures).await,
            None => return,
        };
        glommio::timer::sleep(pause).await;
    }
}

/// What `on_rebalance` installs.
type Listener = Box<dyn FnMut(&Rebalance)>;

/// A partition whose committed offset could not be read, and why.
type OffsetFailure = (String, u32, ErrorCode);

/// A consumer that shares the partitions of its subscribed topics with the
/// other members of its group.
pub struct GroupConsumer {
    member: Rc<Member>,
    consumer: Consumer,
    /// The subscription, sorted.
    topics: Vec<String>,
    /// The subscription the current generation was joined with.
    joined_topics: Option<Vec<String>>,
    /// Partitions fetched now, sorted; empty between generations.
    assignment: Vec<(String, u32)>,
    /// The newest generation's partitions and that generation, kept through
    /// a revocation for the next join's subscription (sticky assignors).
    owned: Vec<(String, u32)>,
    owned_generation: i32,
    /// Synced but not yet installed (its committed offsets not yet read).
    pending: Option<Vec<(String, u32)>>,
    listener: Option<Listener>,
    heartbeat: Option<JoinHandle<()>>,
    next_auto_commit: Instant,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("group", &self.member.config.group_id)
            .field("member_id", &*self.member.member_id.borrow())
            .field("generation", &self.member.generation.get())
            .field("topics", &self.topics)
            .field("assignment", &self.assignment)
            .finish()
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.cancel();
        }
    }
}

impl GroupConsumer {
    /// A member of `group.group_id` reading through `client`. It subscribes
    /// to nothing and contacts nobody until `subscribe` and `poll`.
    pub fn new(client: Client, consumer: ConsumerConfig, group: GroupConfig) -> GroupConsumer {
        GroupConsumer {
            consumer: Consumer::new(client.clone(), consumer),
            member: Rc::new(Member {
                client,
                config: group,
                member_id: RefCell::new(String::new()),
                generation: Cell::new(NO_GENERATION),
                rejoin: Cell::new(false),
                coordinator: RefCell::new(None),
                fatal: RefCell::new(None),
            }),
            topics: Vec::new(),
            joined_topics: None,
            assignment: Vec::new(),
            owned: Vec::new(),
            owned_generation: NO_GENERATION,
            pending: None,
            listener: None,
            heartbeat: None,
            next_auto_commit: Instant::now(),
        }
    }

    /// Subscribes to `topics` (replacing the subscription); a change makes
    /// the next `poll` rejoin. Topics that do not exist yet are assigned
    /// from the first rebalance after they do.
    pub fn subscribe(&mut self, topics: &[&str]) {
        let set: BTreeSet<&str> = topics.iter().copied().filter(|t| !t.is_empty()).collect();
        self.topics = set.into_iter().map(str::to_string).collect();
    }

    /// Calls `f` on every rebalance: `Revoked` before a rejoin (after the
    /// auto-commit) and on `close`, `Assigned` once the new partitions are
    /// positioned. Replaces an earlier listener.
    pub fn on_rebalance(&mut self, f: impl FnMut(&Rebalance) + 'static) {
        self.listener = Some(Box::new(f));
    }

    /// Records from the assigned partitions. Joins (or rejoins) the group
    /// first when needed, which may take as long as the rebalance does;
    /// commits when an auto-commit is due; then fetches for what is left of
    /// `limit`. Fails if the subscription is empty, if the group refuses
    /// the member (the broker's code says why), or on fetch errors that
    /// retrying cannot fix.
    pub async fn poll(&mut self, limit: Duration) -> Result<Vec<ConsumedRecord>, ClientError> {
        let started = Instant::now();
        if self.topics.is_empty() {
            return Err(ClientError::Invalid("subscribe to a topic before polling".into()));
        }
        self.ensure_active().await?;
        if self.member.config.auto_commit && Instant::now() >= self.next_auto_commit {
            self.next_auto_commit = Instant::now() + self.member.config.auto_commit_interval;
            if let Err(e) = self.commit().await {
                tracing::warn!(group = %self.member.group_id(), error = %e, "auto-commit failed");
            }
        }
        debug_assert_eq!(
            self.consumer.assignment(),
            self.assignment,
            "the consumer fetches the assignment"
        );
        self.consumer.poll(limit.saturating_sub(started.elapsed())).await
    }

    /// Commits the position (the offset of the next record to read) of
    /// every assigned partition that has one. Fails, and makes the next
    /// `poll` rejoin, if the group moved on to another generation.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        let offsets: Vec<(&str, u32, i64)> = self
            .assignment
            .iter()
            .filter_map(|(t, p)| Some((t.as_str(), *p, self.consumer.position(t, *p)?)))
            .collect();
        commit_offsets(&self.member, &offsets).await
    }

    /// Commits `(topic, partition, next offset to read)` for the group, as
    /// of this member's generation. Fails, and makes the next `poll`
    /// rejoin, if the group rebalances or moved on (RebalanceInProgress,
    /// IllegalGeneration, UnknownMemberId): those offsets did not take.
    pub async fn commit_offsets<T: AsRef<str>>(&mut self, offsets: &[(T, u32, i64)]) -> Result<(), ClientError> {
        let offsets: Vec<(&str, u32, i64)> = offsets.iter().map(|(t, p, o)| (t.as_ref(), *p, *o)).collect();
        commit_offsets(&self.member, &offsets).await
    }

    /// The group's committed offset of a partition (`None`: nothing
    /// committed), asked of the coordinator now.
    pub async fn committed(&self, topic: &str, partition: u32) -> Result<Option<i64>, ClientError> {
        let wanted = [(topic.to_string(), partition)];
        let found = fetch_committed(&self.member, &wanted).await?;
        Ok(found.get(&(topic.to_string(), partition)).copied())
    }

    /// The partitions this member fetches now, sorted.
    pub fn assignment(&self) -> Vec<(String, u32)> {
        self.assignment.clone()
    }

    /// The position (next offset to read) of an assigned partition.
    pub fn position(&self, topic: &str, partition: u32) -> Option<i64> {
        self.consumer.position(topic, partition)
    }

    /// The id the coordinator gave this member; empty before the first join
    /// and after the coordinator forgot it.
    pub fn member_id(&self) -> String {
        self.member.member_id()
    }

    /// The current generation; -1 while joining or not joined.
    pub fn generation(&self) -> i32 {
        self.member.generation.get()
    }

    /// Leaves the group: commits (with auto-commit), revokes, stops
    /// heartbeating and sends LeaveGroup so the others take over at once.
    /// A static member does not send LeaveGroup (its partitions wait for it
    /// until its session times out). Dropping without `close` leaves the
    /// coordinator to notice after the session timeout.
    pub async fn close(mut self) -> Result<(), ClientError> {
        if let Some(h) = self.heartbeat.take() {
            h.cancel();
        }
        self.revoke("closing").await;
        let member_id = self.member.member_id();
        self.member.generation.set(NO_GENERATION);
        if member_id.is_empty() || self.member.config.group_instance_id.is_some() {
            return Ok(());
        }
        let req = Request::LeaveGroup(LeaveGroupRequest {
            group_id: self.member.config.group_id.clone(),
            members: vec![LeavingMember {
                member_id: member_id.clone(),
                group_instance_id: None,
            }],
        });
        let limit = self.member.client.config().request_timeout;
        let code = match self.member.call(req, limit).await? {
            Response::LeaveGroup(r) if r.error != ErrorCode::None => r.error,
            Response::LeaveGroup(r) => r
                .members
                .iter()
                .find(|m| m.member_id == member_id)
                .map_or(ErrorCode::None, |m| m.error),
            other => return Err(unexpected("LeaveGroup", &other)),
        };
        match code {
            // Already gone (session expired): nothing left to leave.
            ErrorCode::None | ErrorCode::UnknownMemberId => Ok(()),
            code => Err(ClientError::broker(
                code,
                format!("leaving group {}", self.member.group_id()),
            )),
        }
    }

    fn tell(&mut self, event: Rebalance) {
        if let Some(f) = self.listener.as_mut() {
            f(&event);
        }
    }

    fn needs_join(&self) -> bool {
        self.member.generation.get() == NO_GENERATION
            || self.member.rejoin.get()
            || self.joined_topics.as_ref() != Some(&self.topics)
    }

    /// Joins until in a generation with its partitions positioned, or a
    /// failure to report.
    async fn ensure_active(&mut self) -> Result<(), ClientError> {
        if let Some(e) = self.member.fatal.borrow_mut().take() {
            return Err(e);
        }
        if self.needs_join() {
            self.member.config.validate()?;
            if self.heartbeat.is_none() {
                self.heartbeat = Some(glommio::spawn_local(heartbeat_loop(Rc::downgrade(&self.member))).detach());
            }
            self.revoke("rejoining").await;
        }
        let mut rounds = 0;
        while self.needs_join() {
            rounds += 1;
            match self.join_and_sync().await {
                Ok(Some(assigned)) => self.pending = Some(assigned),
                Ok(None) if rounds < JOIN_ROUNDS_MAX => {
                    glommio::timer::sleep(self.member.client.config().backoff(rounds)).await;
                }
                Ok(None) => {
                    return Err(ClientError::broker(
                        ErrorCode::RebalanceInProgress,
                        format!(
                            "group {} did not settle in {rounds} join rounds",
                            self.member.group_id()
                        ),
                    ))
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(assigned) = self.pending.take() {
            if let Err(e) = self.install(&assigned).await {
                self.pending = Some(assigned);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Eager revocation: commits (with auto-commit), tells the listener and
    /// stops fetching everything assigned.
    async fn revoke(&mut self, why: &str) {
        self.pending = None;
        if self.assignment.is_empty() {
            return;
        }
        if self.member.config.auto_commit {
            if let Err(e) = self.commit().await {
                tracing::warn!(group = %self.member.group_id(), error = %e, "auto-commit before {why} failed");
            }
        }
        let revoked = std::mem::take(&mut self.assignment);
        self.tell(Rebalance::Revoked(revoked.clone()));
        for (topic, partitions) in by_topic(&revoked) {
            self.consumer.unassign(topic, &partitions);
        }
        debug_assert!(
            self.consumer.assignment().is_empty(),
            "nothing is fetched between generations"
        );
    }

    /// The subscription this member joins with.
    fn subscription(&self) -> Subscription {
        Subscription {
            topics: self.topics.clone(),
            user_data: None,
            owned_partitions: owned_partitions(&self.owned),
            generation_id: self.owned_generation,
            rack_id: None,
        }
    }

    /// How long a JoinGroup or SyncGroup may wait: the coordinator holds it
    /// until the rebalance completes.
    fn join_limit(&self) -> Duration {
        let request_timeout = self.member.client.config().request_timeout;
        self.member.config.rebalance_timeout.saturating_add(request_timeout)
    }

    /// One join round: JoinGroup (again at once if the coordinator wants a
    /// member id first), the leader's assignment, SyncGroup. `Ok(None)`:
    /// the group asked for another round.
    async fn join_and_sync(&mut self) -> Result<Option<Vec<(String, u32)>>, ClientError> {
        let member = self.member.clone();
        let protocols = join_protocols(&member.config.assignors, &self.subscription())?;
        let topics = self.topics.clone();
        member.generation.set(NO_GENERATION);
        member.rejoin.set(false);
        let mut join = None;
        for _ in 0..2 {
            let req = Request::JoinGroup(JoinGroupRequest {
                group_id: member.config.group_id.clone(),
                session_timeout_ms: millis_u32(member.config.session_timeout),
                rebalance_timeout_ms: millis_u32(member.config.rebalance_timeout),
                member_id: member.member_id(),
                group_instance_id: member.config.group_instance_id.clone(),
                protocol_type: PROTOCOL_TYPE.to_string(),
                protocols: protocols.clone(),
            });
            match member.call(req, self.join_limit()).await? {
                Response::JoinGroup(r) if r.error == ErrorCode::MemberIdRequired => {
                    *member.member_id.borrow_mut() = r.member_id; // KIP-394: join again with it
                }
                Response::JoinGroup(r) => {
                    join = Some(r);
                    break;
                }
                other => return Err(unexpected("JoinGroup", &other)),
            }
        }
        let Some(join) = join else { return Ok(None) };
        if join.error != ErrorCode::None {
            return self.after_error(join.error, "joining").map(|()| None);
        }
        *member.member_id.borrow_mut() = join.member_id.clone();
        let assignments = if join.leader == join.member_id {
            self.lead(&join).await?
        } else {
            Vec::new()
        };
        let req = Request::SyncGroup(SyncGroupRequest {
            group_id: member.config.group_id.clone(),
            generation_id: join.generation_id,
            member_id: join.member_id.clone(),
            group_instance_id: member.config.group_instance_id.clone(),
            protocol_type: Some(PROTOCOL_TYPE.to_string()),
            protocol_name: join.protocol_name.clone(),
            assignments,
        });
        let sync = match member.call(req, self.join_limit()).await? {
            Response::SyncGroup(r) => r,
            other => return Err(unexpected("SyncGroup", &other)),
        };
        if sync.error != ErrorCode::None {
            return self.after_error(sync.error, "syncing with").map(|()| None);
        }
        let assignment = Assignment::decode(&sync.assignment)
            .map_err(|e| ClientError::Invalid(format!("the assignment of group {}: {e}", member.group_id())))?;
        member.generation.set(join.generation_id);
        self.joined_topics = Some(topics);
        let assigned = assigned_partitions(&assignment);
        tracing::debug!(group = %member.group_id(), generation = join.generation_id, member_id = %join.member_id,
            leader = join.leader == join.member_id, partitions = assigned.len(), "joined");
        Ok(Some(assigned))
    }

    /// After a JoinGroup or SyncGroup error: `Ok` to try another round.
    fn after_error(&self, code: ErrorCode, doing: &str) -> Result<(), ClientError> {
        match self.member.apply(code) {
            Recovery::Rejoin | Recovery::RejoinAsNew => Ok(()),
            // `call` already looked for the coordinator `retries_max` times.
            Recovery::FindCoordinator | Recovery::Fail => Err(ClientError::broker(
                code,
                format!("{doing} group {}", self.member.group_id()),
            )),
        }
    }

    /// The leader's part: runs the chosen assignor over every member's
    /// subscription, with fresh partition counts.
    async fn lead(&self, join: &JoinGroupResponse) -> Result<Vec<MemberAssignment>, ClientError> {
        let name = join.protocol_name.as_deref().unwrap_or_default();
        let chosen = assignor::by_name(name)
            .ok_or_else(|| ClientError::Invalid(format!("the coordinator chose assignor {name:?}, unknown here")))?;
        let members = decode_members(&join.members);
        let topics = subscribed_topics(&members);
        let counts = self.partition_counts(topics).await?;
        let plan = chosen.assign(&members, &counts);
        encode_assignments(&members, &plan)
    }

    async fn partition_counts(&self, topics: Vec<String>) -> Result<BTreeMap<String, u32>, ClientError> {
        if topics.is_empty() {
            return Ok(BTreeMap::new());
        }
        let client = &self.member.client;
        let mut attempt = 0;
        loop {
            match client.refresh_metadata(Some(topics.clone())).await {
                Ok(infos) => return Ok(partition_counts(&infos)),
                Err(e) if e.is_retriable() && attempt < client.config().retries_max => {
                    attempt += 1;
                    glommio::timer::sleep(client.config().backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Hands the synced partitions to the consumer, each at its committed
    /// offset (those without one start per the consumer's reset policy),
    /// then tells the listener.
    async fn install(&mut self, assigned: &[(String, u32)]) -> Result<(), ClientError> {
        debug_assert!(self.assignment.is_empty(), "eager: revoked before the next generation");
        let committed = fetch_committed(&self.member, assigned).await?;
        for (topic, partitions) in by_topic(assigned) {
            self.consumer.assign(topic, &partitions);
        }
        for ((topic, partition), offset) in &committed {
            self.consumer.seek(topic, *partition, SeekTo::Offset(*offset)).await?;
        }
        self.assignment = assigned.to_vec();
        self.owned = assigned.to_vec();
        self.owned_generation = self.member.generation.get();
        self.next_auto_commit = Instant::now() + self.member.config.auto_commit_interval;
        debug_assert_eq!(self.consumer.assignment(), self.assignment);
        self.tell(Rebalance::Assigned(assigned.to_vec()));
        Ok(())
    }
}

/// OffsetCommit for `offsets` in the member's generation.
async fn commit_offsets(member: &Member, offsets: &[(&str, u32, i64)]) -> Result<(), ClientError> {
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
async fn fetch_committed(
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

// ---- Pure helpers: the decisions, without I/O. ----

/// Partitions grouped by topic, topics and partitions in order.
fn by_topic(partitions: &[(String, u32)]) -> BTreeMap<&str, Vec<u32>> {
    let mut out: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (t, p) in partitions {
        out.entry(t.as_str()).or_default().push(*p);
    }
    for ps in out.values_mut() {
        ps.sort_unstable();
        ps.dedup();
    }
    out
}

/// What a member owns, in the subscription's terms.
fn owned_partitions(owned: &[(String, u32)]) -> Vec<(String, Vec<i32>)> {
    by_topic(owned)
        .into_iter()
        .map(|(t, ps)| {
            (
                t.to_string(),
                ps.into_iter().filter_map(|p| i32::try_from(p).ok()).collect(),
            )
        })
        .collect()
}

/// One JoinGroup protocol per configured assignor, in preference order,
/// each with the same subscription.
fn join_protocols(assignors: &[String], subscription: &Subscription) -> Result<Vec<JoinGroupProtocol>, ClientError> {
    let metadata = subscription
        .encode()
        .map_err(|e| ClientError::Invalid(format!("encoding the subscription: {e}")))?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for name in assignors {
        if assignor::by_name(name).is_none() {
            return Err(ClientError::Invalid(format!("unknown assignor {name:?}")));
        }
        if seen.insert(name.as_str()) {
            out.push(JoinGroupProtocol {
                name: name.clone(),
                metadata: metadata.clone(),
            });
        }
    }
    Ok(out)
}

/// The members the leader assigns to, with their subscriptions. A member
/// whose subscription does not decode subscribes to nothing (and is
/// assigned nothing) rather than stalling the whole group.
fn decode_members(members: &[JoinGroupMember]) -> Vec<MemberSubscription> {
    members
        .iter()
        .map(|m| MemberSubscription {
            member_id: m.member_id.clone(),
            group_instance_id: m.group_instance_id.clone(),
            subscription: Subscription::decode(&m.metadata).unwrap_or_else(|e| {
                tracing::warn!(member = %m.member_id, error = %e, "undecodable subscription; assigning it nothing");
                Subscription::default()
            }),
        })
        .collect()
}

/// Every topic some member subscribes to, sorted.
fn subscribed_topics(members: &[MemberSubscription]) -> Vec<String> {
    let set: BTreeSet<&String> = members.iter().flat_map(|m| &m.subscription.topics).collect();
    set.into_iter().cloned().collect()
}

/// Partition counts of the topics metadata describes without error.
fn partition_counts(topics: &[TopicInfo]) -> BTreeMap<String, u32> {
    topics
        .iter()
        .filter(|t| t.error == ErrorCode::None)
        .map(|t| (t.name.clone(), u32::try_from(t.partitions.len()).unwrap_or(u32::MAX)))
        .collect()
}

/// Each member's encoded assignment from the assignor's plan (an empty one
/// for a member the plan leaves out). Panics if the plan gives a partition
/// to two members: an assignor bug.
fn encode_assignments(
    members: &[MemberSubscription],
    plan: &AssignmentMap,
) -> Result<Vec<MemberAssignment>, ClientError> {
    let mut given = BTreeSet::new();
    let mut out = Vec::with_capacity(members.len());
    let mut seen = BTreeSet::new();
    for m in members.iter().filter(|m| seen.insert(m.member_id.as_str())) {
        let topics = plan.get(&m.member_id).cloned().unwrap_or_default();
        for (t, ps) in &topics {
            for p in ps {
                assert!(given.insert((t.clone(), *p)), "assignor gave {t}/{p} to two members");
            }
        }
        let assignment = Assignment {
            partitions: topics.into_iter().collect(),
            user_data: None,
        };
        let bytes = assignment
            .encode()
            .map_err(|e| ClientError::Invalid(format!("encoding the assignment of {}: {e}", m.member_id)))?;
        out.push(MemberAssignment {
            member_id: m.member_id.clone(),
            assignment: bytes,
        });
    }
    Ok(out)
}

/// The partitions an assignment gives, sorted, without repeats; negative
/// partition numbers (never valid) are dropped.
fn assigned_partitions(a: &Assignment) -> Vec<(String, u32)> {
    let set: BTreeSet<(String, u32)> = a
        .partitions
        .iter()
        .flat_map(|(t, ps)| ps.iter().filter_map(|p| Some((t.clone(), u32::try_from(*p).ok()?))))
        .collect();
    set.into_iter().collect()
}

/// OffsetCommit topics for `(topic, partition, offset)`s, topics in order.
fn commit_topics(offsets: &[(&str, u32, i64)]) -> Vec<OffsetCommitTopic> {
    let mut topics: BTreeMap<&str, Vec<OffsetCommitPartition>> = BTreeMap::new();
    for (t, p, o) in offsets {
        topics.entry(t).or_default().push(OffsetCommitPartition {
            partition: *p,
            offset: *o,
            leader_epoch: -1,
            metadata: None,
        });
    }
    topics
        .into_iter()
        .map(|(name, partitions)| OffsetCommitTopic {
            name: name.to_string(),
            partitions,
        })
        .collect()
}

/// The first partition of a commit answer that failed.
fn first_commit_error(topics: &[OffsetCommitTopicResponse]) -> Option<(String, u32, ErrorCode)> {
    topics.iter().find_map(|t| {
        let p = t.partitions.iter().find(|p| p.error != ErrorCode::None)?;
        Some((t.name.clone(), p.partition, p.error))
    })
}

fn answered(topics: &[OffsetCommitTopicResponse], topic: &str, partition: u32) -> bool {
    topics
        .iter()
        .any(|t| t.name == topic && t.partitions.iter().any(|p| p.partition == partition))
}

/// The committed offsets of `wanted` in an OffsetFetch answer. No commit
/// (offset -1, or an unknown partition) is no entry; another error fails
/// with its partition.
fn committed_offsets(
    topics: &[OffsetFetchTopicResponse],
    wanted: &[(String, u32)],
) -> Result<BTreeMap<(String, u32), i64>, OffsetFailure> {
    let mut out = BTreeMap::new();
    for t in topics {
        for p in &t.partitions {
            if !wanted.iter().any(|(wt, wp)| *wt == t.name && *wp == p.partition) {
                continue;
            }
            match p.error {
                ErrorCode::None if p.offset >= 0 => {
                    out.insert((t.name.clone(), p.partition), p.offset);
                }
                ErrorCode::None | ErrorCode::UnknownTopicOrPartition => {}
                code => return Err((t.name.clone(), p.partition, code)),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{OffsetFetchPartitionResponse, PartitionError, PartitionInfo, TopicConfig};
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
}
