//! The applied cluster metadata as every shard reads it: an immutable
//! snapshot of [`ClusterState`], swapped whole by shard 0 each time the
//! controller quorum applies commands. Readers never wait on the quorum
//! and never see half of a change.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use super::metadata::{ClusterState, PartitionState};
use super::replica::NodeId;

#[derive(Debug)]
pub struct ClusterView {
    me: NodeId,
    /// This run's incarnation, once the controller runtime has started.
    incarnation: AtomicU64,
    /// The cluster this node belongs to, once known: recorded in the data
    /// directory, or learned from the quorum. It never changes after.
    cluster_id: OnceLock<String>,
    current: RwLock<Arc<ClusterState>>,
}

impl ClusterView {
    pub fn new(me: NodeId) -> ClusterView {
        ClusterView {
            me,
            incarnation: AtomicU64::new(0),
            cluster_id: OnceLock::new(),
            current: RwLock::new(Arc::new(ClusterState::default())),
        }
    }

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.get().map(String::as_str)
    }

    /// Sets the cluster id if none is known; returns the one that holds.
    pub fn learn_cluster_id(&self, id: &str) -> &str {
        self.cluster_id.get_or_init(|| id.to_string())
    }

    /// What this node says first on an inter-broker connection of `kind`.
    pub fn hello(&self, kind: u8) -> super::handshake::Hello {
        super::handshake::Hello {
            kind,
            node: self.me,
            cluster_id: self.cluster_id().map(str::to_string),
        }
    }

    pub fn set_incarnation(&self, incarnation: u64) {
        self.incarnation.store(incarnation, Ordering::SeqCst);
    }

    /// Whether the applied state is recent enough to act on: it holds
    /// this run's registration. Before that, a restarted node's
    /// state may still name it leader at an epoch the cluster has left
    /// behind (registering a new incarnation ends those leaderships).
    pub fn current(&self, state: &ClusterState) -> bool {
        let incarnation = self.incarnation.load(Ordering::SeqCst);
        state
            .brokers
            .get(&self.me)
            .is_some_and(|b| b.incarnation == incarnation)
    }

    pub fn snapshot(&self) -> Arc<ClusterState> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Shard 0, after the quorum applied commands.
    pub fn publish(&self, state: ClusterState) {
        let next = Arc::new(state);
        match self.current.write() {
            Ok(mut g) => *g = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }
}

impl ClusterState {
    pub fn partition(&self, topic: &str, partition: u32) -> Option<&PartitionState> {
        self.topics.get(topic)?.partitions.get(partition as usize)
    }

    /// Whether `node` holds a replica of the partition.
    pub fn hosts(&self, topic: &str, partition: u32, node: NodeId) -> bool {
        self.partition(topic, partition)
            .is_some_and(|p| p.replicas.contains(&node))
    }
}
