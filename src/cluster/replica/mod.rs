//! Replication of one partition, Kafka's ISR model, as sans-IO state
//! machines: the leader's view ([`LeaderState`]: follower progress, the
//! in-sync replica set, the high watermark, acks=all admission), the
//! follower's ([`FollowerState`]: what to fetch, where to truncate), the
//! leader-epoch cache ([`EpochCache`]), and the controller's decisions on
//! a partition ([`PartitionControl`]: elections, fencing, ISR changes).
//!
//! They know offsets and epochs, never bytes or sockets: the owner shard
//! runs them next to the partition's log and moves data; the simulator in
//! `sim` (tests) runs them against an adversarial network and checks
//! Kafka's guarantees after every step.
//!
//! The protocol, as Kafka since KIP-320/KIP-595: a follower fetches with
//! the leader epoch it believes in, its log end and the epoch of its last
//! batch; the leader refuses a stale or future epoch, answers "diverging"
//! when the follower's last epoch ended earlier in its own log (the
//! follower then truncates and fetches again), and otherwise takes the
//! fetch offset as the follower's log end. The high watermark is the
//! smallest log end over the ISR (including a pending change, so it is
//! never computed over fewer replicas than the controller may elect
//! from). ISR changes are proposed by the leader and made by the
//! controller, compare-and-set on the partition epoch.

mod control;
mod follower;
mod leader;
#[cfg(test)]
mod sim;

pub use crate::storage::epochs::{Epoch, EpochCache, UNDEFINED_EPOCH};
pub use control::{AlterIsrError, PartitionControl};
pub use follower::FollowerState;
pub use leader::{AlterIsr, LeaderState};

/// A broker's id in the cluster.
pub type NodeId = u32;

/// A follower's fetch, as far as replication cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaFetch {
    pub replica: NodeId,
    /// The leader epoch the follower is following.
    pub leader_epoch: Epoch,
    /// The follower's log end: it has every offset below.
    pub fetch_offset: i64,
    /// Epoch of the follower's last batch ([`UNDEFINED_EPOCH`] if empty).
    pub last_fetched_epoch: Epoch,
}

/// The leader's answer to a [`ReplicaFetch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchVerdict {
    /// Send the batches from the fetch offset; the follower may expose
    /// offsets below `high_watermark`.
    Serve { high_watermark: i64 },
    /// The follower's log diverges: its last epoch ended at `end_offset`
    /// here (`epoch` is the largest epoch this leader knows that is not
    /// newer than the follower's). Truncate, then fetch again.
    Diverging { epoch: Epoch, end_offset: i64 },
    /// The follower follows an older epoch: it must learn the new leader.
    FencedLeaderEpoch,
    /// The follower knows a newer epoch than this leader: this leader is
    /// stale and must not serve.
    UnknownLeaderEpoch,
    /// Not a replica of this partition.
    NotReplica,
}
