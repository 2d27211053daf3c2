//! [`QuorumConfig`]: how a quorum node is set up, every limit named with
//! its unit, checked when the node starts, and its translation into
//! raft-rs's `Config`.

use super::error::Error;
use super::file_storage::ENTRY_BYTES_MAX;

/// Bytes a frame and protobuf add around a command in an entry or message.
const ENTRY_OVERHEAD_BYTES: usize = 64;

/// How a quorum node is set up. Times are in ticks: the caller decides
/// how long a tick is (e.g. 100 ms).
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// This node's id (non-zero, one of `voters`).
    pub node_id: u64,
    /// The quorum's voters (KRaft's controller.quorum.voters); static.
    pub voters: Vec<u64>,
    /// A follower that hears no leader for a random time in
    /// `[election_ticks, 2 * election_ticks)` starts an election; a leader
    /// that hears no quorum for `election_ticks` steps down.
    pub election_ticks: usize,
    /// A leader sends heartbeats every `heartbeat_ticks`.
    pub heartbeat_ticks: usize,
    /// Snapshot the state machine and compact the log after this many
    /// applied entries.
    pub snapshot_interval_entries: u64,
    /// Entries kept below a snapshot, so that a follower slightly behind
    /// catches up from the log rather than by snapshot.
    pub log_retained_entries: u64,
    /// Most entry bytes in one append message.
    pub append_bytes_max: u64,
    /// Most append messages in flight to one follower.
    pub inflight_appends_max: usize,
    /// Most bytes of proposed, uncommitted entries; proposals beyond are refused.
    pub uncommitted_bytes_max: u64,
    /// Largest encoded command accepted by `propose`.
    pub command_bytes_max: usize,
    /// Largest message accepted by `step`. It bounds the snapshots a
    /// follower can receive, so it must exceed the state machine's size.
    pub message_bytes_max: usize,
    /// A follower that has not confirmed a snapshot after this many ticks is
    /// sent it again (the transport may have dropped it silently).
    pub snapshot_timeout_ticks: usize,
    /// Seed of the election-timeout generator (mixed with the node id).
    pub election_seed: u64,
}

impl QuorumConfig {
    /// The defaults for node `node_id` of the quorum `voters`.
    pub fn new(node_id: u64, voters: Vec<u64>) -> Self {
        QuorumConfig {
            node_id,
            voters,
            election_ticks: 10,
            heartbeat_ticks: 1,
            snapshot_interval_entries: 1000,
            log_retained_entries: 100,
            append_bytes_max: 1 << 20,
            inflight_appends_max: 64,
            uncommitted_bytes_max: 16 << 20,
            command_bytes_max: 1 << 20,
            message_bytes_max: 64 << 20,
            snapshot_timeout_ticks: 50,
            election_seed: 0,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let bad = |why: String| Err(Error::Config(why));
        let mut voters = self.voters.clone();
        voters.sort_unstable();
        voters.dedup();
        if voters.len() != self.voters.len() || voters.is_empty() || voters.contains(&0) {
            return bad(format!("voters {:?} must be distinct non-zero ids", self.voters));
        }
        if !voters.contains(&self.node_id) {
            return bad(format!(
                "node {} is not one of the voters {:?}",
                self.node_id, self.voters
            ));
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return bad("election_ticks must exceed heartbeat_ticks > 0".into());
        }
        if self.snapshot_interval_entries == 0 || self.snapshot_timeout_ticks == 0 {
            return bad("snapshot_interval_entries and snapshot_timeout_ticks must be positive".into());
        }
        if self.command_bytes_max + ENTRY_OVERHEAD_BYTES > ENTRY_BYTES_MAX
            || self.command_bytes_max + ENTRY_OVERHEAD_BYTES > self.message_bytes_max
        {
            return bad(format!(
                "command_bytes_max {} must leave room in an entry ({ENTRY_BYTES_MAX}) and a message ({})",
                self.command_bytes_max, self.message_bytes_max
            ));
        }
        if self.message_bytes_max > u32::MAX as usize || self.inflight_appends_max == 0 {
            return bad("message_bytes_max must fit a frame; inflight_appends_max must be positive".into());
        }
        Ok(())
    }

    pub(crate) fn raft_config(&self, applied: u64) -> raft::Config {
        raft::Config {
            id: self.node_id,
            election_tick: self.election_ticks,
            heartbeat_tick: self.heartbeat_ticks,
            min_election_tick: self.election_ticks,
            max_election_tick: 2 * self.election_ticks,
            applied,
            max_size_per_msg: self.append_bytes_max,
            max_inflight_msgs: self.inflight_appends_max,
            max_uncommitted_size: self.uncommitted_bytes_max,
            // A leader cut off from a quorum steps down; a rejoining node
            // that was partitioned away does not depose a working leader.
            check_quorum: true,
            pre_vote: true,
            ..raft::Config::default()
        }
    }
}
