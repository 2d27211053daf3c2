//! The leader's replication state for one partition.

use std::collections::{BTreeMap, BTreeSet};

use super::{EpochCache, FetchVerdict, NodeId, ReplicaFetch, UNDEFINED_EPOCH};
use crate::cluster::replica::Epoch;

/// A request to the controller to make `isr` the partition's ISR (Kafka's
/// AlterPartition), valid only against `partition_epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterIsr {
    pub leader: NodeId,
    pub leader_epoch: Epoch,
    pub partition_epoch: i32,
    pub isr: Vec<NodeId>,
}

#[derive(Debug, Clone, Copy)]
struct Progress {
    /// The follower's log end as of its last valid fetch; -1 until then.
    log_end: i64,
    /// When it last had everything the leader had (Kafka's
    /// lastCaughtUpTimeMs).
    caught_up_ms: i64,
    /// The leader's log end at the follower's previous fetch.
    leader_end_at_last_fetch: i64,
    last_fetch_ms: i64,
}

/// The leader side. Invariants: `me` is in `isr`; `hw` never decreases;
/// at most one ISR change is in flight.
#[derive(Debug, Clone)]
pub struct LeaderState {
    me: NodeId,
    epoch: Epoch,
    partition_epoch: i32,
    isr: BTreeSet<NodeId>,
    /// An ISR change sent to the controller and not yet answered.
    pending: Option<BTreeSet<NodeId>>,
    followers: BTreeMap<NodeId, Progress>,
    hw: i64,
    /// This epoch's first offset: a follower rejoins the ISR only once it
    /// has reached it (it then holds nothing of an older, divergent tail).
    epoch_start: i64,
    min_isr: usize,
}

impl LeaderState {
    /// Takes leadership at `epoch` with the controller's `isr`, the local
    /// log ending at `log_end` and the local high watermark `hw`. Followers
    /// count as caught up now, so none is dropped before it could fetch.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: NodeId,
        epoch: Epoch,
        partition_epoch: i32,
        replicas: &[NodeId],
        isr: &[NodeId],
        log_end: i64,
        hw: i64,
        min_isr: usize,
        now_ms: i64,
    ) -> LeaderState {
        let followers = replicas
            .iter()
            .filter(|&&r| r != me)
            .map(|&r| {
                let p = Progress {
                    log_end: -1,
                    caught_up_ms: now_ms,
                    leader_end_at_last_fetch: -1,
                    last_fetch_ms: now_ms,
                };
                (r, p)
            })
            .collect();
        let mut isr: BTreeSet<NodeId> = isr.iter().copied().collect();
        isr.insert(me);
        let mut s = LeaderState {
            me,
            epoch,
            partition_epoch,
            isr,
            pending: None,
            followers,
            hw: hw.min(log_end),
            epoch_start: log_end,
            min_isr: min_isr.max(1),
        };
        s.advance_hw(log_end);
        s
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub fn high_watermark(&self) -> i64 {
        self.hw
    }

    /// Each follower's log end as of its last fetch (-1 before its first)
    /// and whether it is in the ISR.
    pub fn followers(&self) -> impl Iterator<Item = (NodeId, i64, bool)> + '_ {
        self.followers
            .iter()
            .map(|(&id, p)| (id, p.log_end, self.isr.contains(&id)))
    }

    /// Whether an acks=all produce may be appended: the ISR the controller
    /// knows has at least min.insync.replicas members.
    pub fn acks_all_allowed(&self) -> bool {
        self.isr.len() >= self.min_isr
    }

    /// Recomputes the high watermark over the ISR plus a pending change
    /// (the widest set the controller may hold while the change is in
    /// flight); true if it moved. Runs on every append and fetch: no
    /// allocation.
    fn advance_hw(&mut self, log_end: i64) -> bool {
        let mut min = log_end;
        for &r in self.isr.iter().chain(self.pending.iter().flatten()) {
            if r != self.me {
                let end = self.followers.get(&r).map_or(-1, |p| p.log_end);
                min = min.min(end);
            }
        }
        if min > self.hw {
            self.hw = min;
            true
        } else {
            false
        }
    }

    /// The local log now ends at `log_end`; true if the high watermark moved.
    pub fn on_local_append(&mut self, log_end: i64) -> bool {
        self.advance_hw(log_end)
    }

    /// Judges a follower's fetch and takes its progress; may propose an
    /// ISR expansion. `cache` and `log_end` are the leader's log's.
    pub fn on_fetch(
        &mut self,
        f: &ReplicaFetch,
        cache: &EpochCache,
        log_end: i64,
        now_ms: i64,
    ) -> (FetchVerdict, Option<AlterIsr>) {
        if f.leader_epoch < self.epoch {
            return (FetchVerdict::FencedLeaderEpoch, None);
        }
        if f.leader_epoch > self.epoch {
            return (FetchVerdict::UnknownLeaderEpoch, None);
        }
        let Some(progress) = self.followers.get(&f.replica).copied() else {
            return (FetchVerdict::NotReplica, None);
        };
        if f.fetch_offset > log_end {
            // More than the leader has: it must be divergent.
            let (epoch, end_offset) = cache.end_offset_for(f.last_fetched_epoch, log_end);
            return (FetchVerdict::Diverging { epoch, end_offset }, None);
        }
        if f.last_fetched_epoch != UNDEFINED_EPOCH {
            let (epoch, end_offset) = cache.end_offset_for(f.last_fetched_epoch, log_end);
            if epoch != f.last_fetched_epoch || end_offset < f.fetch_offset {
                return (FetchVerdict::Diverging { epoch, end_offset }, None);
            }
        }
        let caught_up_ms = if f.fetch_offset >= log_end {
            now_ms
        } else if f.fetch_offset >= progress.leader_end_at_last_fetch {
            progress.last_fetch_ms
        } else {
            progress.caught_up_ms
        };
        self.followers.insert(
            f.replica,
            Progress {
                log_end: f.fetch_offset,
                caught_up_ms: caught_up_ms.max(progress.caught_up_ms),
                leader_end_at_last_fetch: log_end,
                last_fetch_ms: now_ms,
            },
        );
        self.advance_hw(log_end);
        let expand = !self.isr.contains(&f.replica)
            && self.pending.is_none()
            && f.fetch_offset >= self.hw
            && f.fetch_offset >= self.epoch_start;
        let alter = expand.then(|| {
            let mut next = self.isr.clone();
            next.insert(f.replica);
            self.propose(next)
        });
        (
            FetchVerdict::Serve {
                high_watermark: self.hw,
            },
            alter,
        )
    }

    /// Proposes dropping in-sync followers that have not caught up within
    /// `lag_max_ms` (Kafka's replica.lag.time.max.ms).
    pub fn tick(&mut self, now_ms: i64, lag_max_ms: i64) -> Option<AlterIsr> {
        if self.pending.is_some() {
            return None;
        }
        let laggards: Vec<NodeId> = self
            .isr
            .iter()
            .copied()
            .filter(|&r| r != self.me)
            .filter(|r| {
                self.followers
                    .get(r)
                    .is_some_and(|p| now_ms - p.caught_up_ms > lag_max_ms)
            })
            .collect();
        if laggards.is_empty() {
            return None;
        }
        let next = self.isr.iter().copied().filter(|r| !laggards.contains(r)).collect();
        Some(self.propose(next))
    }

    fn propose(&mut self, next: BTreeSet<NodeId>) -> AlterIsr {
        let req = AlterIsr {
            leader: self.me,
            leader_epoch: self.epoch,
            partition_epoch: self.partition_epoch,
            isr: next.iter().copied().collect(),
        };
        self.pending = Some(next);
        req
    }

    /// The ISR change in flight, to send again until the controller
    /// answers. It is never dropped unanswered: an expansion the controller
    /// made but whose answer was lost would otherwise leave the controller
    /// electing from a replica the high watermark no longer waits for.
    pub fn pending_request(&self) -> Option<AlterIsr> {
        self.pending.as_ref().map(|next| AlterIsr {
            leader: self.me,
            leader_epoch: self.epoch,
            partition_epoch: self.partition_epoch,
            isr: next.iter().copied().collect(),
        })
    }

    /// The replica set changed at this epoch (a reassignment): new
    /// replicas are tracked as followers from now, counted caught up now
    /// (as at the start of a leadership), and outside the ISR until they
    /// catch up; the ones that left are forgotten.
    pub fn set_replicas(&mut self, replicas: &[NodeId], now_ms: i64) {
        self.followers.retain(|id, _| replicas.contains(id));
        for &r in replicas.iter().filter(|&&r| r != self.me) {
            self.followers.entry(r).or_insert(Progress {
                log_end: -1,
                caught_up_ms: now_ms,
                leader_end_at_last_fetch: -1,
                last_fetch_ms: now_ms,
            });
        }
    }

    /// The controller's state of the partition at this leader epoch (an
    /// ISR change made or refused, a replica fenced); older ones are
    /// ignored. Only a newer state settles a pending change: one at this
    /// partition epoch may be a late or repeated answer to an earlier
    /// request while the controller has made the pending one, and dropping
    /// the pending expansion then would let the high watermark pass a
    /// replica the controller may elect (replication simulation, seed
    /// 9883). A refusal at this epoch leaves the change pending, resent
    /// until the state moves on.
    pub fn on_partition_update(&mut self, isr: &[NodeId], partition_epoch: i32, log_end: i64) {
        if partition_epoch <= self.partition_epoch {
            return;
        }
        self.partition_epoch = partition_epoch;
        self.isr = isr.iter().copied().collect();
        self.isr.insert(self.me);
        self.pending = None;
        self.advance_hw(log_end);
    }
}
