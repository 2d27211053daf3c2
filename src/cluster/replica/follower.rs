//! The follower's replication state for one partition.

use super::{Epoch, EpochCache, NodeId, ReplicaFetch, UNDEFINED_EPOCH};

/// A follower of `leader` at `epoch`. Its high watermark is the leader's,
/// capped at its own log end, and never decreases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerState {
    pub me: NodeId,
    pub leader: NodeId,
    pub epoch: Epoch,
    hw: i64,
}

impl FollowerState {
    /// Follows `leader` at `epoch`, keeping the high watermark it had.
    pub fn new(me: NodeId, leader: NodeId, epoch: Epoch, hw: i64) -> FollowerState {
        FollowerState { me, leader, epoch, hw }
    }

    pub fn high_watermark(&self) -> i64 {
        self.hw
    }

    /// The next fetch for a log ending at `log_end` with epochs `cache`.
    pub fn fetch(&self, cache: &EpochCache, log_end: i64) -> ReplicaFetch {
        ReplicaFetch {
            replica: self.me,
            leader_epoch: self.epoch,
            fetch_offset: log_end,
            last_fetched_epoch: cache.latest_epoch(),
        }
    }

    /// Where to cut the log after the leader said it diverges (KIP-279):
    /// the leader's end of `epoch`, or where this log's epochs up to
    /// `epoch` end if that is earlier (what follows is of newer epochs the
    /// leader does not have there). With no common epoch, the whole log
    /// goes (`log_start`). The next fetch checks again, so a cut that is
    /// not yet deep enough is found and deepened.
    pub fn truncation_point(cache: &EpochCache, log_start: i64, log_end: i64, epoch: Epoch, end_offset: i64) -> i64 {
        if epoch == UNDEFINED_EPOCH || end_offset < 0 {
            return log_start;
        }
        match cache.end_offset_for(epoch, log_end) {
            (UNDEFINED_EPOCH, _) => log_start,
            (_, my_end) => end_offset.min(my_end).clamp(log_start, log_end),
        }
    }

    /// Takes the leader's high watermark from a fetch answer; returns the
    /// follower's (capped at its log end, never lower than before).
    pub fn on_leader_hw(&mut self, leader_hw: i64, log_end: i64) -> i64 {
        self.hw = self.hw.max(leader_hw.min(log_end));
        self.hw
    }
}
