//! A partition's part in replication (cluster mode): its role as the
//! controller last said (leader, follower, or neither yet), the high
//! watermark that role computes, and the leader's and the follower's steps
//! on the log. The decisions are `cluster::replica`'s sans-IO state
//! machines; this module feeds them the log's offsets and epochs and moves
//! the bytes.
//!
//! Runs on the partition's owner shard only. No `RefCell` borrow is held
//! across an `.await`.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::Partition;
use crate::api::ErrorCode;
use crate::cluster::fetch::{FetchPartition, Fetched};
use crate::cluster::metadata::PartitionState;
use crate::cluster::replica::{AlterIsr, Epoch, FetchVerdict, FollowerState, LeaderState, NodeId, ReplicaFetch};
use crate::record;
use crate::storage::StorageError;
use crate::watermark::Watermark;

/// What the controller says a partition is now, for its owner shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleUpdate {
    pub topic: String,
    pub partition: u32,
    pub state: PartitionState,
    pub min_insync: u16,
    /// The leader's inter-broker address, when the leader is another node.
    pub leader_addr: Option<String>,
}

#[derive(Debug)]
enum Role {
    /// No leader alive, or none heard of yet.
    Unassigned,
    Leader(LeaderState),
    Follower(FollowerState),
}

/// What a role update changed, for the shard to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleChange {
    /// Nothing the shard must act on (the same role, maybe a new ISR).
    Kept,
    /// Now the leader: its duties run while `generation` is current.
    Leading { generation: u64 },
    /// Now following `leader`, reached at `addr`.
    Following { leader: NodeId, addr: String },
    /// Neither: no fetcher, no duties.
    Idle,
}

/// The replication side of a partition in cluster mode.
#[derive(Debug)]
pub struct Replica {
    me: NodeId,
    role: RefCell<Role>,
    /// The high watermark as the role computes it: consumers read below.
    hw: Watermark,
    /// Bumped on every role change; the tasks of an older role stop.
    generation: Cell<u64>,
    /// When the pending ISR change was last sent to the controller.
    alter_sent: Cell<Option<Instant>>,
}

/// How long an unanswered ISR change waits before it is sent again.
const ALTER_RESEND_AFTER: Duration = Duration::from_secs(2);

impl Replica {
    pub fn new(me: NodeId, log_start: i64) -> Replica {
        Replica {
            me,
            role: RefCell::new(Role::Unassigned),
            // Learned again from the leader (or, leading, from the ISR):
            // never ahead of what the cluster has committed.
            hw: Watermark::new(log_start),
            generation: Cell::new(0),
            alter_sent: Cell::new(None),
        }
    }

    pub fn high_watermark(&self) -> &Watermark {
        &self.hw
    }

    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// The epoch this node leads at, if it leads.
    pub fn leader_epoch(&self) -> Option<Epoch> {
        match &*self.role.borrow() {
            Role::Leader(ls) => Some(ls.epoch()),
            _ => None,
        }
    }

    /// The leader this node follows, and at which epoch.
    pub fn following(&self) -> Option<(NodeId, Epoch)> {
        match &*self.role.borrow() {
            Role::Follower(fs) => Some((fs.leader, fs.epoch)),
            _ => None,
        }
    }

    fn bump(&self) -> u64 {
        let g = self.generation.get() + 1;
        self.generation.set(g);
        // Producers waiting on the old role re-check it.
        self.hw.wake_all();
        self.alter_sent.set(None);
        g
    }
}

fn now_ms() -> i64 {
    crate::record::now_ms()
}

impl Partition {
    /// The replication state; `None` on a single node.
    pub fn replica(&self) -> Option<&Replica> {
        self.cluster.as_ref()
    }

    /// Leader: one line on its replication, for `GET /cluster`:
    /// `replication T-P epoch E hw H end X follower F end Y lag L in-sync|out`.
    pub fn replication_report(&self) -> Option<String> {
        use std::fmt::Write as _;
        let r = self.cluster.as_ref()?;
        let role = r.role.borrow();
        let Role::Leader(ls) = &*role else {
            return None;
        };
        let end = self.log.next_offset();
        let mut line = format!(
            "replication {}-{} epoch {} hw {} end {end}",
            self.topic,
            self.index,
            ls.epoch(),
            ls.high_watermark()
        );
        for (id, log_end, in_sync) in ls.followers() {
            let lag = if log_end < 0 { end } else { end - log_end };
            let state = if in_sync { "in-sync" } else { "out" };
            let _ = write!(line, " follower {id} end {log_end} lag {lag} {state}");
        }
        Some(line)
    }

    /// Takes the controller's word on this partition. Stale updates (an
    /// older leader epoch) change nothing.
    pub fn apply_role(&self, u: &RoleUpdate) -> RoleChange {
        let Some(r) = &self.cluster else {
            return RoleChange::Kept;
        };
        let s = &u.state;
        let log_end = self.log.next_offset();
        let mut role = r.role.borrow_mut();
        let current_epoch = match &*role {
            Role::Leader(ls) => Some(ls.epoch()),
            Role::Follower(fs) => Some(fs.epoch),
            Role::Unassigned => None,
        };
        if current_epoch.is_some_and(|e| s.leader_epoch < e) {
            return RoleChange::Kept;
        }
        match s.leader {
            Some(l) if l == r.me => {
                if let Role::Leader(ls) = &mut *role {
                    if ls.epoch() == s.leader_epoch {
                        ls.set_replicas(&s.replicas, now_ms());
                        ls.on_partition_update(&s.isr, s.partition_epoch, log_end);
                        r.hw.advance(ls.high_watermark());
                        return RoleChange::Kept;
                    }
                }
                let ls = LeaderState::new(
                    r.me,
                    s.leader_epoch,
                    s.partition_epoch,
                    &s.replicas,
                    &s.isr,
                    log_end,
                    r.hw.get(),
                    usize::from(u.min_insync),
                    now_ms(),
                );
                r.hw.advance(ls.high_watermark());
                tracing::info!(topic = %self.topic, partition = self.index, epoch = s.leader_epoch,
                    isr = ?s.isr, log_end, "leading");
                *role = Role::Leader(ls);
                drop(role);
                RoleChange::Leading { generation: r.bump() }
            }
            Some(l) => {
                let addr = u.leader_addr.clone().unwrap_or_default();
                if let Role::Follower(fs) = &*role {
                    if fs.leader == l && fs.epoch == s.leader_epoch {
                        return RoleChange::Following { leader: l, addr };
                    }
                }
                tracing::info!(topic = %self.topic, partition = self.index, leader = l,
                    epoch = s.leader_epoch, log_end, "following");
                *role = Role::Follower(FollowerState::new(r.me, l, s.leader_epoch, r.hw.get()));
                drop(role);
                r.bump();
                RoleChange::Following { leader: l, addr }
            }
            None => {
                if matches!(&*role, Role::Unassigned) {
                    return RoleChange::Idle;
                }
                tracing::info!(topic = %self.topic, partition = self.index, "no leader");
                *role = Role::Unassigned;
                drop(role);
                r.bump();
                RoleChange::Idle
            }
        }
    }

    /// The partition is going away (its topic was deleted): the tasks of
    /// its role stop, and waiters re-check and give up.
    pub fn retire(&self) {
        if let Some(r) = &self.cluster {
            *r.role.borrow_mut() = Role::Unassigned;
            r.bump();
        }
    }

    /// Leader: the log grew to `log_end`; moves the high watermark when
    /// the ISR is this node alone.
    pub(crate) fn on_leader_append(&self) {
        if let Some(r) = &self.cluster {
            if let Role::Leader(ls) = &mut *r.role.borrow_mut() {
                ls.on_local_append(self.log.next_offset());
                r.hw.advance(ls.high_watermark());
            }
        }
    }

    /// Whether acks=all may append now (the ISR meets min.insync.replicas).
    pub(super) fn acks_all_allowed(&self) -> bool {
        match &self.cluster {
            None => true,
            Some(r) => match &*r.role.borrow() {
                Role::Leader(ls) => ls.acks_all_allowed(),
                _ => false,
            },
        }
    }

    /// Leader: waits until every ISR member holds the offsets below `end`
    /// (the high watermark reached it). Fails if leadership at `epoch` is
    /// lost meanwhile, or at `deadline`.
    pub(crate) async fn wait_replicated(&self, end: i64, epoch: Epoch, deadline: Instant) -> Result<(), ErrorCode> {
        let Some(r) = &self.cluster else {
            return Ok(());
        };
        loop {
            if r.hw.get() >= end {
                return Ok(());
            }
            if r.leader_epoch() != Some(epoch) {
                return Err(ErrorCode::NotLeaderOrFollower);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ErrorCode::RequestTimedOut);
            }
            // A role change wakes the waiters without reaching `end`; the
            // slice bounds the wait even if a wake-up were missed.
            let slice = (deadline - now).min(Duration::from_millis(200));
            let _ = glommio::timer::timeout(slice, async {
                r.hw.wait_for(end).await;
                Ok(())
            })
            .await;
        }
    }

    /// Leader: answers one partition of a follower's fetch. Returns the ISR
    /// change it calls for, if any, for the controller.
    pub async fn serve_replica(
        &self,
        replica: NodeId,
        f: &FetchPartition,
        max_bytes: usize,
    ) -> (Fetched, Option<AlterIsr>) {
        let Some(r) = &self.cluster else {
            return (Fetched::Error(ErrorCode::NotLeaderOrFollower), None);
        };
        let log_end = self.log.next_offset();
        let fetch = ReplicaFetch {
            replica,
            leader_epoch: f.leader_epoch,
            fetch_offset: f.fetch_offset,
            last_fetched_epoch: f.last_fetched_epoch,
        };
        let (verdict, alter) = {
            let mut role = r.role.borrow_mut();
            let Role::Leader(ls) = &mut *role else {
                return (Fetched::Error(ErrorCode::NotLeaderOrFollower), None);
            };
            let out = self.log.with_epochs(|c| ls.on_fetch(&fetch, c, log_end, now_ms()));
            r.hw.advance(ls.high_watermark());
            out
        };
        if alter.is_some() {
            r.alter_sent.set(Some(Instant::now()));
        }
        let fetched = match verdict {
            FetchVerdict::Serve { high_watermark } => {
                let log_start_offset = self.log.log_start_offset();
                if f.fetch_offset < log_start_offset {
                    Fetched::OutOfRange { log_start_offset }
                } else {
                    match self.log.read(f.fetch_offset, max_bytes.max(1), log_end).await {
                        Ok(read) => Fetched::Records {
                            high_watermark,
                            log_start_offset,
                            batches: read.batches,
                        },
                        Err(e) => Fetched::Error(super::error_code(&e)),
                    }
                }
            }
            FetchVerdict::Diverging { epoch, end_offset } => Fetched::Diverging { epoch, end_offset },
            FetchVerdict::FencedLeaderEpoch => Fetched::Error(ErrorCode::FencedLeaderEpoch),
            FetchVerdict::UnknownLeaderEpoch => Fetched::Error(ErrorCode::UnknownLeaderEpoch),
            FetchVerdict::NotReplica => Fetched::Error(ErrorCode::ReplicaNotAvailable),
        };
        (fetched, alter)
    }

    /// Leader: waits until a follower at `fetch_offset` knowing `hw` has
    /// something new (data, or a higher high watermark), or `deadline`.
    pub async fn wait_for_replica_news(&self, fetch_offset: i64, hw: i64, deadline: Instant) {
        let Some(r) = &self.cluster else {
            return;
        };
        let now = Instant::now();
        if deadline <= now || self.log.next_offset() > fetch_offset || r.hw.get() > hw {
            return;
        }
        let data = self.log.end_watermark().wait_for(fetch_offset + 1);
        let hw_moved = r.hw.wait_for(hw + 1);
        let _ = glommio::timer::timeout(deadline - now, async {
            futures_lite::future::or(data, hw_moved).await;
            Ok(())
        })
        .await;
    }

    /// Follower: the next fetch of this partition from `leader`, if it
    /// follows that leader.
    pub fn follower_fetch(&self, leader: NodeId) -> Option<FetchPartition> {
        let r = self.cluster.as_ref()?;
        let role = r.role.borrow();
        let Role::Follower(fs) = &*role else {
            return None;
        };
        if fs.leader != leader {
            return None;
        }
        let log_end = self.log.next_offset();
        let f = self.log.with_epochs(|c| fs.fetch(c, log_end));
        Some(FetchPartition {
            topic: self.topic.clone(),
            partition: self.index,
            leader_epoch: f.leader_epoch,
            fetch_offset: f.fetch_offset,
            last_fetched_epoch: f.last_fetched_epoch,
            high_watermark: fs.high_watermark(),
        })
    }

    /// Follower: applies the leader's answer to a fetch made at
    /// `leader`/`epoch`: appends the batches byte for byte, takes the high
    /// watermark, or truncates a divergent tail. An answer for a role this
    /// partition no longer has is dropped. Errors are the leader's or this
    /// log's; the next fetch starts again from the log's end.
    pub async fn apply_fetched(&self, leader: NodeId, epoch: Epoch, fetched: Fetched) -> Result<(), String> {
        let Some(r) = &self.cluster else {
            return Ok(());
        };
        if r.following() != Some((leader, epoch)) {
            return Ok(());
        }
        match fetched {
            Fetched::Records {
                high_watermark,
                batches,
                ..
            } => {
                for region in batches {
                    let mut at = 0;
                    while at < region.len() {
                        let size = match record::batch_size(&region[at..], region.len()) {
                            Ok(Some(size)) if at + size <= region.len() => size,
                            _ => return Err("a replica fetch answer with a broken batch".into()),
                        };
                        // A copy per batch, as on the leader: a slice would
                        // keep the whole answer (up to 16 MiB) alive in the
                        // batch cache for as long as any batch of it stays.
                        let batch = BytesMut::from(&region[at..at + size]);
                        at += size;
                        match self.log.append_replica(batch).await {
                            Ok(_) => {}
                            // A stale answer (the log moved meanwhile): fetch again.
                            Err(StorageError::OffsetMismatch { .. }) => return Ok(()),
                            Err(e) => return Err(e.to_string()),
                        }
                    }
                }
                if r.following() == Some((leader, epoch)) {
                    if let Role::Follower(fs) = &mut *r.role.borrow_mut() {
                        r.hw.advance(fs.on_leader_hw(high_watermark, self.log.next_offset()));
                    }
                }
                Ok(())
            }
            Fetched::Diverging { epoch: e, end_offset } => {
                let (start, end) = (self.log.log_start_offset(), self.log.next_offset());
                let to = self
                    .log
                    .with_epochs(|c| FollowerState::truncation_point(c, start, end, e, end_offset));
                tracing::info!(topic = %self.topic, partition = self.index, from = end, to, "truncating a divergent tail");
                self.log.truncate_to(to).await.map(|_| ()).map_err(|e| e.to_string())
            }
            Fetched::OutOfRange { log_start_offset } if log_start_offset > self.log.next_offset() => {
                tracing::info!(topic = %self.topic, partition = self.index, from = self.log.next_offset(),
                    to = log_start_offset, "the leader no longer holds what this replica lacks: starting again at its log start");
                self.log
                    .restart_at(log_start_offset)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Fetched::OutOfRange { log_start_offset } => Err(format!(
                "the leader's log starts at {log_start_offset}, above a fetch from {}",
                self.log.next_offset()
            )),
            Fetched::Error(code) => Err(format!("the leader answered {code}")),
        }
    }

    /// The epoch of this leadership (of `generation`) if its log failed
    /// (a full disk, a device error): it should hand the partition over.
    pub fn failed_leadership(&self, generation: u64) -> Option<(Epoch, String)> {
        let r = self.cluster.as_ref()?;
        if r.generation() != generation {
            return None;
        }
        let why = self.log.failure()?;
        Some((r.leader_epoch()?, why))
    }

    /// Leader duties on a timer: the ISR shrink Kafka's
    /// replica.lag.time.max.ms asks for, and resending an unanswered ISR
    /// change. `None` once the leadership of `generation` has ended.
    pub fn leader_tick(&self, generation: u64, lag_max_ms: i64) -> Option<Option<AlterIsr>> {
        let r = self.cluster.as_ref()?;
        if r.generation() != generation {
            return None;
        }
        let mut role = r.role.borrow_mut();
        let Role::Leader(ls) = &mut *role else {
            return None;
        };
        if let Some(alter) = ls.tick(now_ms(), lag_max_ms) {
            r.alter_sent.set(Some(Instant::now()));
            return Some(Some(alter));
        }
        let due = r.alter_sent.get().is_none_or(|t| t.elapsed() >= ALTER_RESEND_AFTER);
        match ls.pending_request() {
            Some(alter) if due => {
                r.alter_sent.set(Some(Instant::now()));
                Some(Some(alter))
            }
            _ => Some(None),
        }
    }
}
