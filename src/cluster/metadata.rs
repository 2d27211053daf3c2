//! Cluster metadata as a deterministic state machine: the commands of the
//! replicated metadata log and the state every node gets by applying them
//! in order (brokers and their addresses, fencing, topics with their
//! partitions' replicas, leaders, epochs and ISR, producer-id blocks).
//!
//! Decisions that depend on time or on the proposer's view (a heartbeat
//! that did not come, where a new topic's replicas go) are made by the
//! active controller and recorded in the command, so that applying the log
//! never consults a clock or a random number: every node that applies the
//! same log holds the same state. A command that is not valid against the
//! state (a stale ISR change, a topic that already exists) is applied as a
//! no-op with an error the proposer hears about; it never panics and never
//! diverges the replicas.
//!
//! Encoded as TOML (commands are small and rare; snapshots are read once
//! at start), inside the raft log's own framing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::broker::metadata::TopicConfigFile;

use super::replica::{AlterIsr, AlterIsrError, Epoch, NodeId, PartitionControl};

/// How to reach a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoints {
    /// HOST:PORT of the Kafka listener, as advertised.
    pub kafka: String,
    /// HOST:PORT of the native listener.
    pub native: String,
    /// HOST:PORT of the inter-broker listener.
    pub cluster: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broker {
    pub endpoints: BrokerEndpoints,
    /// Changes on every restart: a broker that comes back before its
    /// session expired still starts its leaderships over at a new epoch.
    pub incarnation: u64,
    pub fenced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub replicas: Vec<NodeId>,
    pub leader: Option<NodeId>,
    pub leader_epoch: Epoch,
    pub partition_epoch: i32,
    pub isr: Vec<NodeId>,
    /// A reassignment in progress: the replicas the partition moves onto
    /// (`replicas` holds them and the leaving ones until it completes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Vec<NodeId>>,
    /// Of those, the replicas the reassignment adds (not replicas before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<NodeId>,
    /// The replicas before the reassignment, in their order: what a
    /// cancellation goes back to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<NodeId>,
}

impl From<&PartitionControl> for PartitionState {
    fn from(p: &PartitionControl) -> Self {
        PartitionState {
            replicas: p.replicas.clone(),
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: p.isr.clone(),
            target: None,
            adding: Vec::new(),
            before: Vec::new(),
        }
    }
}

impl PartitionState {
    /// Takes the controller's decision, keeping a reassignment in progress.
    fn set(&mut self, c: &PartitionControl) {
        let (target, adding, before) = (
            self.target.take(),
            std::mem::take(&mut self.adding),
            std::mem::take(&mut self.before),
        );
        *self = PartitionState {
            target,
            adding,
            before,
            ..c.into()
        };
    }

    /// Completes the reassignment in progress if its target replicas are
    /// all in sync. True if it did.
    fn settle_reassignment(&mut self, alive: &dyn Fn(NodeId) -> bool) -> bool {
        let Some(target) = self.target.clone() else {
            return false;
        };
        let mut control = self.control();
        if !control.complete_reassignment(&target, alive) {
            return false;
        }
        self.target = None;
        self.adding.clear();
        self.before.clear();
        self.set(&control);
        true
    }

    fn control(&self) -> PartitionControl {
        PartitionControl {
            replicas: self.replicas.clone(),
            leader: self.leader,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            isr: self.isr.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicState {
    pub min_insync_replicas: u16,
    pub partitions: Vec<PartitionState>,
    /// The topic's own config (retention, segment size, flush policy).
    #[serde(default)]
    pub config: TopicConfigFile,
}

/// The replicated state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Issued once by the first controller (a random UUID); every node
    /// records it and refuses peers and data of another cluster.
    #[serde(default)]
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<NodeId, Broker>,
    pub topics: BTreeMap<String, TopicState>,
    /// The first producer id not yet handed to any broker.
    pub next_producer_id: i64,
}

/// A command of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Names the cluster, once: the first controller issues the id.
    InitCluster {
        id: String,
    },
    /// A broker started (or restarted: a new incarnation).
    RegisterBroker {
        id: NodeId,
        incarnation: u64,
        endpoints: BrokerEndpoints,
    },
    /// The controller stopped hearing from `id` within its session.
    FenceBroker {
        id: NodeId,
    },
    /// Heartbeats from `id` resumed.
    UnfenceBroker {
        id: NodeId,
    },
    /// `assignment[p]` are partition p's replicas, preferred leader first.
    CreateTopic {
        name: String,
        min_insync_replicas: u16,
        assignment: Vec<Vec<NodeId>>,
        #[serde(default)]
        config: TopicConfigFile,
    },
    DeleteTopic {
        name: String,
    },
    /// Kafka's CreatePartitions: `assignment[i]` are the replicas of the
    /// new partition `from + i`, preferred leader first. Applied only if
    /// the topic still has `from` partitions (a proposal applied twice
    /// adds once).
    AddPartitions {
        topic: String,
        from: u32,
        assignment: Vec<Vec<NodeId>>,
    },
    /// Kafka's AlterPartition from a partition's leader.
    AlterPartition {
        topic: String,
        partition: u32,
        leader: NodeId,
        leader_epoch: Epoch,
        partition_epoch: i32,
        isr: Vec<NodeId>,
    },
    /// Move the partition onto `replicas` (Kafka's reassignment): the new
    /// replicas catch up before the old ones leave.
    ReassignPartition {
        topic: String,
        partition: u32,
        replicas: Vec<NodeId>,
    },
    /// The leader of `leader_epoch` cannot write (its log failed): the
    /// next live ISR member takes over.
    ResignLeader {
        topic: String,
        partition: u32,
        leader: NodeId,
        leader_epoch: Epoch,
    },
    /// Abandon the reassignment in progress: back to the replicas from
    /// before it.
    CancelReassignment {
        topic: String,
        partition: u32,
    },
    /// Move leadership back to the preferred replica if it is in sync.
    ElectPreferred {
        topic: String,
        partition: u32,
    },
    /// Hand a block of producer ids to a broker.
    AllocateProducerIds {
        broker: NodeId,
        count: u32,
    },
}

/// Why a command changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CommandError {
    #[error("broker {0} is not registered")]
    UnknownBroker(NodeId),
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("topic or partition {0}-{1} does not exist")]
    UnknownPartition(String, u32),
    #[error("invalid assignment: {0}")]
    InvalidAssignment(String),
    #[error(transparent)]
    AlterIsr(#[from] AlterIsrError),
    #[error("producer ids are exhausted")]
    ProducerIdsExhausted,
    #[error("no reassignment of {0}-{1} is in progress")]
    NoReassignment(String, u32),
    #[error("{0}-{1}: none of the replicas from before the reassignment is in sync; cancelling would leave it without a leader")]
    CancelUnsafe(String, u32),
    #[error("topic {topic} has {has} partitions, not {expected}")]
    PartitionCount { topic: String, has: u32, expected: u32 },
    #[error("the cluster is already named {0}")]
    ClusterNamed(String),
}

/// What applying a command did, for the proposer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// Partitions whose leader, epoch or ISR changed.
    Partitions(Vec<(String, u32)>),
    /// The first id of the block handed out.
    ProducerIds(i64),
}

impl ClusterState {
    /// The brokers that are registered and not fenced.
    pub fn live(&self) -> Vec<NodeId> {
        self.brokers
            .iter()
            .filter(|(_, b)| !b.fenced)
            .map(|(&id, _)| id)
            .collect()
    }

    /// Applies one committed command. Deterministic: no clock, no
    /// randomness, no I/O.
    pub fn apply(&mut self, cmd: &Command) -> Result<Applied, CommandError> {
        match cmd {
            Command::InitCluster { id } => match &self.cluster_id {
                Some(named) => Err(CommandError::ClusterNamed(named.clone())),
                None => {
                    self.cluster_id = Some(id.clone());
                    Ok(Applied::Done)
                }
            },
            Command::RegisterBroker {
                id,
                incarnation,
                endpoints,
            } => {
                let restarted = self.brokers.get(id).is_some_and(|b| b.incarnation != *incarnation);
                let mut changed = Vec::new();
                if restarted {
                    // Its leaderships start over at new epochs.
                    changed = self.fence(*id);
                }
                self.brokers.insert(
                    *id,
                    Broker {
                        endpoints: endpoints.clone(),
                        incarnation: *incarnation,
                        fenced: false,
                    },
                );
                changed.extend(self.unfence(*id));
                Ok(Applied::Partitions(changed))
            }
            Command::FenceBroker { id } => {
                if !self.brokers.contains_key(id) {
                    return Err(CommandError::UnknownBroker(*id));
                }
                Ok(Applied::Partitions(self.fence(*id)))
            }
            Command::UnfenceBroker { id } => {
                if !self.brokers.contains_key(id) {
                    return Err(CommandError::UnknownBroker(*id));
                }
                Ok(Applied::Partitions(self.unfence(*id)))
            }
            Command::CreateTopic {
                name,
                min_insync_replicas,
                assignment,
                config,
            } => {
                if self.topics.contains_key(name) {
                    return Err(CommandError::TopicExists(name.clone()));
                }
                for (p, replicas) in assignment.iter().enumerate() {
                    self.check_replicas(replicas)
                        .map_err(|e| CommandError::InvalidAssignment(format!("partition {p}: {e}")))?;
                }
                if assignment.is_empty() {
                    return Err(CommandError::InvalidAssignment("no partitions".into()));
                }
                let partitions = self.new_partitions(assignment);
                self.topics.insert(
                    name.clone(),
                    TopicState {
                        min_insync_replicas: *min_insync_replicas,
                        partitions,
                        config: config.clone(),
                    },
                );
                Ok(Applied::Done)
            }
            Command::AddPartitions {
                topic,
                from,
                assignment,
            } => {
                let has = match self.topics.get(topic) {
                    Some(t) => t.partitions.len() as u32,
                    None => return Err(CommandError::UnknownPartition(topic.clone(), *from)),
                };
                if has != *from {
                    return Err(CommandError::PartitionCount {
                        topic: topic.clone(),
                        has,
                        expected: *from,
                    });
                }
                if assignment.is_empty() {
                    return Err(CommandError::InvalidAssignment("no partitions to add".into()));
                }
                for (i, replicas) in assignment.iter().enumerate() {
                    self.check_replicas(replicas).map_err(|e| {
                        CommandError::InvalidAssignment(format!("partition {}: {e}", *from as usize + i))
                    })?;
                }
                let added = self.new_partitions(assignment);
                if let Some(t) = self.topics.get_mut(topic) {
                    t.partitions.extend(added);
                }
                Ok(Applied::Done)
            }
            Command::DeleteTopic { name } => self
                .topics
                .remove(name)
                .map(|_| Applied::Done)
                .ok_or_else(|| CommandError::UnknownPartition(name.clone(), 0)),
            Command::AlterPartition {
                topic,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
            } => {
                let req = AlterIsr {
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                    isr: isr.clone(),
                };
                let live = self.live();
                let state = self.partition_mut(topic, *partition)?;
                let mut control = state.control();
                control.alter_isr(&req, &|r| live.contains(&r))?;
                state.set(&control);
                state.settle_reassignment(&|r| live.contains(&r));
                Ok(Applied::Partitions(vec![(topic.clone(), *partition)]))
            }
            Command::ReassignPartition {
                topic,
                partition,
                replicas,
            } => {
                self.check_replicas(replicas)?;
                let live = self.live();
                let state = self.partition_mut(topic, *partition)?;
                // A new target replaces one in progress: the replicas it
                // had added stay until this one completes.
                let mut control = state.control();
                let before = match state.target {
                    Some(_) => state.before.clone(),
                    None => state.replicas.clone(),
                };
                if !control.begin_reassignment(replicas) && state.target.is_none() {
                    return Ok(Applied::Done);
                }
                state.before = before;
                let adding: Vec<NodeId> = replicas
                    .iter()
                    .copied()
                    .filter(|r| !state.replicas.contains(r) || state.adding.contains(r))
                    .collect();
                state.set(&control);
                state.target = Some(replicas.clone());
                state.adding = adding;
                state.settle_reassignment(&|r| live.contains(&r));
                Ok(Applied::Partitions(vec![(topic.clone(), *partition)]))
            }
            Command::ResignLeader {
                topic,
                partition,
                leader,
                leader_epoch,
            } => {
                let live = self.live();
                let state = self.partition_mut(topic, *partition)?;
                let mut control = state.control();
                control.resign(*leader, *leader_epoch, &|r| live.contains(&r))?;
                state.set(&control);
                Ok(Applied::Partitions(vec![(topic.clone(), *partition)]))
            }
            Command::CancelReassignment { topic, partition } => {
                let live = self.live();
                let state = self.partition_mut(topic, *partition)?;
                if state.target.is_none() {
                    return Err(CommandError::NoReassignment(topic.clone(), *partition));
                }
                let original: Vec<NodeId> = if state.before.is_empty() {
                    // Recorded by a version that did not keep the order.
                    state
                        .replicas
                        .iter()
                        .copied()
                        .filter(|r| !state.adding.contains(r))
                        .collect()
                } else {
                    state.before.clone()
                };
                let mut control = state.control();
                if !control.cancel_reassignment(&original, &|r| live.contains(&r)) {
                    return Err(CommandError::CancelUnsafe(topic.clone(), *partition));
                }
                state.set(&control);
                state.target = None;
                state.adding.clear();
                state.before.clear();
                Ok(Applied::Partitions(vec![(topic.clone(), *partition)]))
            }
            Command::ElectPreferred { topic, partition } => {
                let live = self.live();
                let state = self.partition_mut(topic, *partition)?;
                let mut control = state.control();
                let moved = control.elect_preferred(&|r| live.contains(&r));
                state.set(&control);
                Ok(Applied::Partitions(if moved {
                    vec![(topic.clone(), *partition)]
                } else {
                    Vec::new()
                }))
            }
            Command::AllocateProducerIds { broker, count } => {
                if !self.brokers.contains_key(broker) {
                    return Err(CommandError::UnknownBroker(*broker));
                }
                let first = self.next_producer_id;
                self.next_producer_id = first
                    .checked_add(i64::from(*count))
                    .ok_or(CommandError::ProducerIdsExhausted)?;
                Ok(Applied::ProducerIds(first))
            }
        }
    }

    /// A replica list must be non-empty, name each broker once, and only
    /// registered brokers.
    /// New partitions on `assignment`, each led by its first live replica.
    fn new_partitions(&self, assignment: &[Vec<NodeId>]) -> Vec<PartitionState> {
        let live = self.live();
        assignment
            .iter()
            .map(|replicas| {
                let mut p = PartitionControl::new(replicas.clone());
                // A replica that is down now cannot lead.
                if p.leader.is_some_and(|l| !live.contains(&l)) {
                    p.leader = p.replicas.iter().copied().find(|r| live.contains(r));
                }
                PartitionState::from(&p)
            })
            .collect()
    }

    fn check_replicas(&self, replicas: &[NodeId]) -> Result<(), CommandError> {
        let mut distinct = replicas.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        if replicas.is_empty() || distinct.len() != replicas.len() {
            return Err(CommandError::InvalidAssignment(format!(
                "{replicas:?} is empty or repeats a broker"
            )));
        }
        match replicas.iter().find(|b| !self.brokers.contains_key(b)) {
            Some(b) => Err(CommandError::UnknownBroker(*b)),
            None => Ok(()),
        }
    }

    fn partition_mut(&mut self, topic: &str, partition: u32) -> Result<&mut PartitionState, CommandError> {
        self.topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(partition as usize))
            .ok_or_else(|| CommandError::UnknownPartition(topic.to_string(), partition))
    }

    /// Runs `change` on every partition's control state; returns the ones
    /// it changed.
    fn each_partition(
        &mut self,
        change: impl Fn(&mut PartitionControl, &dyn Fn(NodeId) -> bool) -> bool,
    ) -> Vec<(String, u32)> {
        let live = self.live();
        let alive = |r: NodeId| live.contains(&r);
        let mut changed = Vec::new();
        for (name, topic) in &mut self.topics {
            for (i, state) in topic.partitions.iter_mut().enumerate() {
                let mut control = state.control();
                if change(&mut control, &alive) {
                    state.set(&control);
                    changed.push((name.clone(), i as u32));
                }
            }
        }
        changed
    }

    fn fence(&mut self, id: NodeId) -> Vec<(String, u32)> {
        if let Some(b) = self.brokers.get_mut(&id) {
            b.fenced = true;
        }
        self.each_partition(|p, alive| p.on_fenced(id, alive))
    }

    fn unfence(&mut self, id: NodeId) -> Vec<(String, u32)> {
        if let Some(b) = self.brokers.get_mut(&id) {
            b.fenced = false;
        }
        self.each_partition(|p, alive| p.on_unfenced(id, alive))
    }

    /// Partitions whose preferred replica (the first) is live and in sync
    /// but does not lead: what a preferred-leader election would move.
    pub fn imbalanced(&self) -> Vec<(String, u32)> {
        let live = self.live();
        let mut out = Vec::new();
        for (name, t) in &self.topics {
            for (i, p) in t.partitions.iter().enumerate() {
                let Some(&preferred) = p.replicas.first() else {
                    continue;
                };
                if p.leader != Some(preferred) && p.isr.contains(&preferred) && live.contains(&preferred) {
                    out.push((name.clone(), i as u32));
                }
            }
        }
        out
    }

    /// The state as a snapshot (for the metadata log's compaction).
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        toml::to_string(self).map(String::into_bytes).map_err(|e| e.to_string())
    }

    pub fn decode(bytes: &[u8]) -> Result<ClusterState, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

impl Command {
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        toml::to_string(self).map(String::into_bytes).map_err(|e| e.to_string())
    }

    pub fn decode(bytes: &[u8]) -> Result<Command, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests;

impl crate::cluster::raft::CommandCodec for Command {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), crate::cluster::raft::CodecError> {
        out.extend(Command::encode(self).map_err(crate::cluster::raft::CodecError::new)?);
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<Self, crate::cluster::raft::CodecError> {
        Command::decode(bytes).map_err(crate::cluster::raft::CodecError::new)
    }
}

/// The metadata log's state machine: committed commands applied in order.
impl crate::cluster::raft::StateMachine for ClusterState {
    type Command = Command;
    type Outcome = Result<Applied, CommandError>;

    fn apply(&mut self, _index: u64, cmd: &Command) -> Self::Outcome {
        ClusterState::apply(self, cmd)
    }

    fn snapshot(&self) -> Result<Vec<u8>, crate::cluster::raft::CodecError> {
        self.encode().map_err(crate::cluster::raft::CodecError::new)
    }

    fn restore(bytes: &[u8]) -> Result<Self, crate::cluster::raft::CodecError> {
        ClusterState::decode(bytes).map_err(crate::cluster::raft::CodecError::new)
    }
}
