//! The controller's decisions on one partition: who leads, at which
//! epoch, with which ISR. Applied by the controller to its state (in the
//! cluster, as commands of the replicated metadata log), then sent to the
//! replicas.

use super::{AlterIsr, Epoch, NodeId};

/// Why an ISR change is refused; the leader gets the current state back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum AlterIsrError {
    #[error("not the leader at this epoch")]
    FencedLeaderEpoch,
    #[error("partition epoch {got} is stale (now {current})")]
    StalePartitionEpoch { got: i32, current: i32 },
    #[error("ISR {0:?} names a non-replica, a fenced broker, or leaves out the leader")]
    InvalidIsr(Vec<NodeId>),
}

/// One partition as the controller sees it. Invariants: the leader (if
/// any) is in the ISR; the ISR is a non-empty subset of the replicas;
/// `leader_epoch` grows on every leader change and `partition_epoch` on
/// every change at all. Unclean election is off: a leader is only ever
/// chosen from the ISR, so it holds every record below any high
/// watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionControl {
    /// Preference order; `replicas[0]` is the preferred leader.
    pub replicas: Vec<NodeId>,
    /// `None`: offline (no live ISR member).
    pub leader: Option<NodeId>,
    pub leader_epoch: Epoch,
    pub partition_epoch: i32,
    pub isr: Vec<NodeId>,
}

impl PartitionControl {
    /// A new partition: the preferred replica leads, all are in sync.
    pub fn new(replicas: Vec<NodeId>) -> PartitionControl {
        PartitionControl {
            leader: replicas.first().copied(),
            isr: replicas.clone(),
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }

    fn set_leader(&mut self, leader: Option<NodeId>) {
        self.leader = leader;
        self.leader_epoch += 1;
        self.partition_epoch += 1;
    }

    /// The first live ISR member in preference order.
    fn pick(&self, alive: &dyn Fn(NodeId) -> bool) -> Option<NodeId> {
        self.replicas
            .iter()
            .copied()
            .find(|r| self.isr.contains(r) && alive(*r))
    }

    /// `node` stopped heartbeating (or restarted: its leaderships start
    /// over at a new epoch). Leadership moves to a live ISR member and the
    /// node leaves the ISR, unless it is the last member (then it stays
    /// in, with no leader, so it can lead again when it returns: it holds
    /// everything committed). True if anything changed.
    pub fn on_fenced(&mut self, node: NodeId, alive: &dyn Fn(NodeId) -> bool) -> bool {
        let was_leader = self.leader == Some(node);
        let in_isr = self.isr.contains(&node);
        if !was_leader && !in_isr {
            return false;
        }
        if in_isr && self.isr.len() > 1 {
            self.isr.retain(|&r| r != node);
        }
        if was_leader {
            let next = self.pick(&|r| r != node && alive(r));
            self.set_leader(next);
        } else {
            self.partition_epoch += 1;
        }
        true
    }

    /// The leader of `leader_epoch` hands over (its log failed: a full
    /// disk, a device error): it leaves the ISR and the first other live
    /// ISR member leads at a new epoch. Refused, changing nothing, if the
    /// epoch is not the current one, or if no other ISR member is live
    /// (the partition is better kept by a leader that cannot write than
    /// given to one that lacks acknowledged records).
    pub fn resign(
        &mut self,
        leader: NodeId,
        leader_epoch: Epoch,
        alive: &dyn Fn(NodeId) -> bool,
    ) -> Result<(), AlterIsrError> {
        if self.leader != Some(leader) || self.leader_epoch != leader_epoch {
            return Err(AlterIsrError::FencedLeaderEpoch);
        }
        let Some(next) = self.pick(&|r| r != leader && alive(r)) else {
            return Err(AlterIsrError::InvalidIsr(self.isr.clone()));
        };
        self.isr.retain(|&r| r != leader);
        self.set_leader(Some(next));
        Ok(())
    }

    /// `node` is alive again: an offline partition whose ISR holds it gets
    /// it as leader. True if anything changed.
    pub fn on_unfenced(&mut self, node: NodeId, alive: &dyn Fn(NodeId) -> bool) -> bool {
        if self.leader.is_some() || !self.isr.contains(&node) {
            return false;
        }
        let next = self.pick(alive);
        let changed = next.is_some();
        if changed {
            self.set_leader(next);
        }
        changed
    }

    /// Moves leadership back to the preferred replica if it is a live ISR
    /// member. True if it moved.
    pub fn elect_preferred(&mut self, alive: &dyn Fn(NodeId) -> bool) -> bool {
        let Some(&preferred) = self.replicas.first() else {
            return false;
        };
        if self.leader == Some(preferred) || !self.isr.contains(&preferred) || !alive(preferred) {
            return false;
        }
        self.set_leader(Some(preferred));
        true
    }

    /// Starts moving the partition onto `target` (Kafka's reassignment):
    /// the replicas become `target` followed by the current replicas not in
    /// it, which keep receiving data until the new ones are in sync. The
    /// ISR and the leader are unchanged. False if `target` already is the
    /// replica set.
    pub fn begin_reassignment(&mut self, target: &[NodeId]) -> bool {
        if self.replicas == target {
            return false;
        }
        let mut replicas = target.to_vec();
        replicas.extend(self.replicas.iter().copied().filter(|r| !target.contains(r)));
        self.replicas = replicas;
        self.partition_epoch += 1;
        true
    }

    /// Finishes a reassignment once every replica of `target` is in sync:
    /// the replicas become `target`, the others leave the ISR, and if the
    /// leader is leaving, the first live in-sync replica of `target` takes
    /// over. False (nothing changed) while some target replica lags.
    pub fn complete_reassignment(&mut self, target: &[NodeId], alive: &dyn Fn(NodeId) -> bool) -> bool {
        if !target.iter().all(|r| self.isr.contains(r)) {
            return false;
        }
        self.settle_on(target, alive);
        true
    }

    /// Cancels a reassignment (Kafka's AlterPartitionReassignments with no
    /// replicas): back to the `original` replicas, the added ones leave
    /// the ISR, and if the leader was one of them, an in-sync original
    /// replica takes over. False (nothing changed) if no original replica
    /// is in sync: that would leave the partition without a leader.
    pub fn cancel_reassignment(&mut self, original: &[NodeId], alive: &dyn Fn(NodeId) -> bool) -> bool {
        if !original.iter().any(|r| self.isr.contains(r)) {
            return false;
        }
        self.settle_on(original, alive);
        true
    }

    fn settle_on(&mut self, target: &[NodeId], alive: &dyn Fn(NodeId) -> bool) {
        self.replicas = target.to_vec();
        self.isr.retain(|r| target.contains(r));
        if self.leader.is_some_and(|l| !target.contains(&l)) {
            let next = self.pick(alive);
            self.set_leader(next);
        } else {
            self.partition_epoch += 1;
        }
    }

    /// Kafka's AlterPartition from the leader: compare-and-set on the
    /// partition epoch. A new member must be alive (a fenced broker never
    /// joins).
    pub fn alter_isr(&mut self, req: &AlterIsr, alive: &dyn Fn(NodeId) -> bool) -> Result<(), AlterIsrError> {
        if self.leader != Some(req.leader) || req.leader_epoch != self.leader_epoch {
            return Err(AlterIsrError::FencedLeaderEpoch);
        }
        if req.partition_epoch != self.partition_epoch {
            return Err(AlterIsrError::StalePartitionEpoch {
                got: req.partition_epoch,
                current: self.partition_epoch,
            });
        }
        let valid = req.isr.contains(&req.leader)
            && req.isr.iter().all(|r| self.replicas.contains(r))
            && req.isr.iter().all(|r| self.isr.contains(r) || alive(*r));
        if !valid {
            return Err(AlterIsrError::InvalidIsr(req.isr.clone()));
        }
        let mut isr = req.isr.clone();
        isr.sort_unstable();
        isr.dedup();
        self.isr = isr;
        self.partition_epoch += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reassignment_adds_the_new_replicas_first_and_drops_the_old_ones_once_in_sync() {
        let alive = |_| true;
        let mut p = PartitionControl::new(vec![1, 2, 3]);
        // Move off 1 (the leader) onto 4.
        assert!(p.begin_reassignment(&[4, 2, 3]));
        assert_eq!(p.replicas, vec![4, 2, 3, 1]);
        assert_eq!((p.leader, p.leader_epoch, p.isr.clone()), (Some(1), 0, vec![1, 2, 3]));
        // 4 has not caught up: nothing moves yet.
        assert!(!p.complete_reassignment(&[4, 2, 3], &alive));
        assert_eq!(p.replicas, vec![4, 2, 3, 1]);
        // 4 joins the ISR (the leader's AlterPartition), then it completes:
        // 1 leaves the replicas and the ISR, and leadership moves into the
        // target at a new epoch.
        let req = AlterIsr {
            leader: 1,
            leader_epoch: 0,
            partition_epoch: p.partition_epoch,
            isr: vec![1, 2, 3, 4],
        };
        p.alter_isr(&req, &alive).expect("expansion");
        let before = p.partition_epoch;
        assert!(p.complete_reassignment(&[4, 2, 3], &alive));
        assert_eq!(p.replicas, vec![4, 2, 3]);
        assert_eq!(p.isr, vec![2, 3, 4]);
        assert_eq!((p.leader, p.leader_epoch), (Some(4), 1));
        assert!(p.partition_epoch > before);
        // Shrinking to a subset needs no catching up, and keeps the leader.
        let mut q = PartitionControl::new(vec![1, 2, 3]);
        assert!(q.begin_reassignment(&[1, 2]));
        assert!(q.complete_reassignment(&[1, 2], &alive));
        assert_eq!(
            (q.replicas.clone(), q.isr.clone(), q.leader, q.leader_epoch),
            (vec![1, 2], vec![1, 2], Some(1), 0)
        );
        // The same replicas: nothing to do.
        assert!(!q.begin_reassignment(&[1, 2]));
    }

    #[test]
    fn failover_moves_leadership_within_the_isr_and_back() {
        let mut p = PartitionControl::new(vec![1, 2, 3]);
        let all = |_| true;
        assert_eq!((p.leader, p.leader_epoch), (Some(1), 0));
        assert!(p.on_fenced(1, &|r| r != 1));
        assert_eq!((p.leader, p.leader_epoch, p.isr.clone()), (Some(2), 1, vec![2, 3]));
        // Node 1 returns; it rejoins the ISR through the leader, then
        // preferred election gives it leadership back.
        assert!(!p.on_unfenced(1, &all));
        let pe = p.partition_epoch;
        let req = AlterIsr {
            leader: 2,
            leader_epoch: 1,
            partition_epoch: pe,
            isr: vec![1, 2, 3],
        };
        assert_eq!(p.alter_isr(&req, &all), Ok(()));
        // The same request again is stale.
        assert!(matches!(
            p.alter_isr(&req, &all),
            Err(AlterIsrError::StalePartitionEpoch { .. })
        ));
        assert!(p.elect_preferred(&all));
        assert_eq!((p.leader, p.leader_epoch), (Some(1), 2));
    }

    #[test]
    fn the_last_isr_member_keeps_the_partition_until_it_returns() {
        let mut p = PartitionControl::new(vec![1, 2]);
        p.on_fenced(2, &|r| r == 1);
        assert_eq!(p.isr, vec![1]);
        p.on_fenced(1, &|_| false);
        assert_eq!((p.leader, p.isr.clone()), (None, vec![1]));
        // Node 2 is back but out of sync: no unclean election.
        assert!(!p.on_unfenced(2, &|r| r == 2));
        assert_eq!(p.leader, None);
        assert!(p.on_unfenced(1, &|_| true));
        assert_eq!(p.leader, Some(1));
    }

    #[test]
    fn isr_changes_come_only_from_the_current_leader() {
        let mut p = PartitionControl::new(vec![1, 2, 3]);
        let stale = AlterIsr {
            leader: 2,
            leader_epoch: 0,
            partition_epoch: 0,
            isr: vec![2],
        };
        assert_eq!(p.alter_isr(&stale, &|_| true), Err(AlterIsrError::FencedLeaderEpoch));
        let dropping_leader = AlterIsr {
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            isr: vec![2, 3],
        };
        assert!(matches!(
            p.alter_isr(&dropping_leader, &|_| true),
            Err(AlterIsrError::InvalidIsr(_))
        ));
        p.on_fenced(3, &|r| r != 3);
        let pe = p.partition_epoch;
        let adding_fenced = AlterIsr {
            leader: 1,
            leader_epoch: 0,
            partition_epoch: pe,
            isr: vec![1, 2, 3],
        };
        assert!(matches!(
            p.alter_isr(&adding_fenced, &|r| r != 3),
            Err(AlterIsrError::InvalidIsr(_))
        ));
    }
}
