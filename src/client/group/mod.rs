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
//!
//! Layout: this file holds the public API (`GroupConsumer`, `GroupConfig`,
//! `Rebalance`); `member.rs` the state shared with the heartbeat task, the
//! coordinator calls and the task itself; `plan.rs` the pure helpers (error
//! mapping, the leader's plan, commit and offset-fetch shaping).
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::task::JoinHandle;

use super::cluster::unexpected;
use super::{Client, ClientError, ConsumedRecord, Consumer, ConsumerConfig, SeekTo};
use crate::api::{
    ErrorCode, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeavingMember, MemberAssignment, Request,
    Response, SyncGroupRequest,
};
use crate::group::assignor;
use crate::group::consumer_protocol::{Assignment, Subscription, PROTOCOL_TYPE};

use member::{commit_offsets, fetch_committed, heartbeat_loop, Member};
use plan::{
    assigned_partitions, by_topic, decode_members, encode_assignments, join_protocols, millis_u32, owned_partitions,
    partition_counts, subscribed_topics, Recovery,
};

mod member;
mod plan;
#[cfg(test)]
mod tests;

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

/// What `on_rebalance` installs.
type Listener = Box<dyn FnMut(&Rebalance)>;

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
