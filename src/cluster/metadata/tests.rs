use proptest::prelude::*;

use super::*;
use crate::cluster::placement;

fn endpoints(id: NodeId) -> BrokerEndpoints {
    BrokerEndpoints {
        kafka: format!("127.0.0.1:{}", 9092 + id),
        native: format!("127.0.0.1:{}", 9192 + id),
        cluster: format!("127.0.0.1:{}", 9292 + id),
    }
}

fn cluster(n: NodeId) -> ClusterState {
    let mut s = ClusterState::default();
    for id in 1..=n {
        s.apply(&Command::RegisterBroker {
            id,
            incarnation: 1,
            endpoints: endpoints(id),
        })
        .expect("registers");
    }
    s
}

fn create(s: &mut ClusterState, name: &str, partitions: u32, rf: usize) {
    let brokers: Vec<NodeId> = s.brokers.keys().copied().collect();
    let assignment = placement::assign(&brokers, 0, partitions, rf, 0).expect("fits");
    s.apply(&Command::CreateTopic {
        name: name.into(),
        min_insync_replicas: 2,
        assignment,
        config: Default::default(),
    })
    .expect("creates");
}

fn leader(s: &ClusterState, topic: &str, p: usize) -> (Option<NodeId>, Epoch) {
    let st = &s.topics[topic].partitions[p];
    (st.leader, st.leader_epoch)
}

#[test]
fn fencing_moves_leaders_and_preferred_election_brings_them_back() {
    let mut s = cluster(3);
    create(&mut s, "t", 3, 3);
    assert_eq!(leader(&s, "t", 0), (Some(1), 0));
    let moved = s.apply(&Command::FenceBroker { id: 1 }).expect("fences");
    assert_eq!(
        moved,
        Applied::Partitions(vec![("t".into(), 0), ("t".into(), 1), ("t".into(), 2)])
    );
    assert_eq!(leader(&s, "t", 0), (Some(2), 1));
    assert!(!s.topics["t"].partitions[0].isr.contains(&1));
    // Back, but out of the ISR until its leader adds it.
    s.apply(&Command::UnfenceBroker { id: 1 }).expect("unfences");
    assert_eq!(leader(&s, "t", 0), (Some(2), 1));
    let st = s.topics["t"].partitions[0].clone();
    s.apply(&Command::AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader: 2,
        leader_epoch: st.leader_epoch,
        partition_epoch: st.partition_epoch,
        isr: vec![1, 2, 3],
    })
    .expect("expands");
    s.apply(&Command::ElectPreferred {
        topic: "t".into(),
        partition: 0,
    })
    .expect("elects");
    assert_eq!(leader(&s, "t", 0), (Some(1), 2));
}

#[test]
fn a_restarted_leader_starts_a_new_epoch() {
    let mut s = cluster(3);
    create(&mut s, "t", 1, 3);
    s.apply(&Command::RegisterBroker {
        id: 1,
        incarnation: 2,
        endpoints: endpoints(1),
    })
    .expect("re-registers");
    let (l, epoch) = leader(&s, "t", 0);
    assert!(epoch > 0, "a new epoch");
    assert_eq!(l, Some(2));
    // The same incarnation again (a retried registration) changes nothing.
    let before = s.clone();
    s.apply(&Command::RegisterBroker {
        id: 1,
        incarnation: 2,
        endpoints: endpoints(1),
    })
    .expect("re-registers");
    assert_eq!(s, before);
}

#[test]
fn invalid_commands_change_nothing() {
    let mut s = cluster(3);
    create(&mut s, "t", 2, 2);
    let before = s.clone();
    let bad = [
        Command::CreateTopic {
            name: "t".into(),
            min_insync_replicas: 1,
            assignment: vec![vec![1]],
            config: Default::default(),
        },
        Command::CreateTopic {
            name: "u".into(),
            min_insync_replicas: 1,
            assignment: vec![vec![1, 1]],
            config: Default::default(),
        },
        Command::CreateTopic {
            name: "u".into(),
            min_insync_replicas: 1,
            assignment: vec![vec![7]],
            config: Default::default(),
        },
        Command::CreateTopic {
            name: "u".into(),
            min_insync_replicas: 1,
            assignment: vec![],
            config: Default::default(),
        },
        Command::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 5,
            isr: vec![1],
        },
        Command::AlterPartition {
            topic: "t".into(),
            partition: 9,
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            isr: vec![1],
        },
        Command::FenceBroker { id: 42 },
        Command::DeleteTopic { name: "nope".into() },
    ];
    for cmd in bad {
        assert!(s.apply(&cmd).is_err(), "{cmd:?} applied");
        assert_eq!(s, before, "{cmd:?} changed the state");
    }
}

#[test]
fn producer_id_blocks_never_overlap_and_never_wrap() {
    let mut s = cluster(2);
    let a = s.apply(&Command::AllocateProducerIds { broker: 1, count: 1000 });
    let b = s.apply(&Command::AllocateProducerIds { broker: 2, count: 1000 });
    assert_eq!((a, b), (Ok(Applied::ProducerIds(0)), Ok(Applied::ProducerIds(1000))));
    s.next_producer_id = i64::MAX - 10;
    assert_eq!(
        s.apply(&Command::AllocateProducerIds { broker: 1, count: 1000 }),
        Err(CommandError::ProducerIdsExhausted)
    );
    assert_eq!(s.next_producer_id, i64::MAX - 10);
}

#[test]
fn malformed_bytes_are_errors() {
    for bytes in [
        &b""[..],
        b"\xff\xfe",
        b"type = \"warp_drive\"",
        b"type = \"fence_broker\"\nid = -1",
    ] {
        assert!(Command::decode(bytes).is_err(), "{bytes:?}");
    }
    assert!(ClusterState::decode(b"brokers = 3").is_err());
}

fn command() -> impl Strategy<Value = Command> {
    let id = 1u32..6;
    prop_oneof![
        (id.clone(), 1u64..4).prop_map(|(id, incarnation)| Command::RegisterBroker {
            id,
            incarnation,
            endpoints: endpoints(id),
        }),
        id.clone().prop_map(|id| Command::FenceBroker { id }),
        id.clone().prop_map(|id| Command::UnfenceBroker { id }),
        ("[a-c]", 1u32..4, 1usize..4, 0u32..5).prop_map(|(name, partitions, rf, start)| {
            let assignment = placement::assign(&[1, 2, 3, 4, 5], 0, partitions, rf, start).expect("fits");
            Command::CreateTopic {
                name,
                min_insync_replicas: 2,
                assignment,
                config: Default::default(),
            }
        }),
        "[a-c]".prop_map(|name| Command::DeleteTopic { name }),
        (
            "[a-c]",
            0u32..3,
            id.clone(),
            0i32..4,
            0i32..8,
            prop::collection::vec(1u32..6, 1..4)
        )
            .prop_map(|(topic, partition, leader, leader_epoch, partition_epoch, isr)| {
                Command::AlterPartition {
                    topic,
                    partition,
                    leader,
                    leader_epoch,
                    partition_epoch,
                    isr,
                }
            }),
        ("[a-c]", 0u32..3).prop_map(|(topic, partition)| Command::ElectPreferred { topic, partition }),
        (id, 1u32..2000).prop_map(|(broker, count)| Command::AllocateProducerIds { broker, count }),
    ]
}

proptest! {
    /// Replicas that apply the same log hold the same state, whatever the
    /// log; commands and snapshots survive their encoding; and the
    /// controller's invariants hold after every command.
    #[test]
    fn the_same_log_gives_the_same_state(cmds in prop::collection::vec(command(), 1..60)) {
        let (mut a, mut b) = (ClusterState::default(), ClusterState::default());
        for cmd in &cmds {
            let wire = Command::decode(&cmd.encode().map_err(TestCaseError::fail)?).map_err(TestCaseError::fail)?;
            prop_assert_eq!(&wire, cmd);
            let ra = a.apply(cmd);
            let rb = b.apply(&wire);
            prop_assert_eq!(ra, rb);
            for t in a.topics.values() {
                for p in &t.partitions {
                    prop_assert!(!p.isr.is_empty());
                    prop_assert!(p.isr.iter().all(|r| p.replicas.contains(r)));
                    if let Some(l) = p.leader {
                        prop_assert!(p.isr.contains(&l), "leader {} outside the ISR {:?}", l, p.isr);
                        prop_assert!(!a.brokers[&l].fenced, "fenced leader {}", l);
                    }
                }
            }
        }
        prop_assert_eq!(&a, &b);
        let snap = ClusterState::decode(&a.encode().map_err(TestCaseError::fail)?).map_err(TestCaseError::fail)?;
        prop_assert_eq!(snap, a);
    }
}

#[test]
fn a_reassignment_completes_when_the_new_replicas_are_in_sync() {
    let mut s = cluster(4);
    create(&mut s, "t", 1, 3);
    let before = s.topics["t"].partitions[0].clone();
    assert_eq!((before.replicas.clone(), before.leader), (vec![1, 2, 3], Some(1)));
    // Onto 4, 2, 3: 4 joins as a replica, nothing else moves yet.
    let cmd = Command::ReassignPartition {
        topic: "t".into(),
        partition: 0,
        replicas: vec![4, 2, 3],
    };
    assert_eq!(s.apply(&cmd), Ok(Applied::Partitions(vec![("t".into(), 0)])));
    let moving = s.topics["t"].partitions[0].clone();
    assert_eq!(moving.replicas, vec![4, 2, 3, 1]);
    assert_eq!(moving.target, Some(vec![4, 2, 3]));
    assert_eq!(moving.adding, vec![4]);
    assert_eq!((moving.leader, moving.leader_epoch), (Some(1), 0));
    // The state survives the metadata log's snapshot encoding.
    assert_eq!(ClusterState::decode(&s.encode().expect("encodes")).expect("decodes"), s);
    // The leader adds 4 to the ISR: that completes it, and 1 (leaving)
    // hands leadership to 4 at a new epoch.
    s.apply(&Command::AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader: 1,
        leader_epoch: 0,
        partition_epoch: moving.partition_epoch,
        isr: vec![1, 2, 3, 4],
    })
    .expect("expands");
    let done = s.topics["t"].partitions[0].clone();
    assert_eq!(
        (done.replicas, done.isr, done.target),
        (vec![4, 2, 3], vec![2, 3, 4], None)
    );
    assert_eq!((done.leader, done.leader_epoch), (Some(4), 1));
    // Bad targets change nothing.
    let before = s.clone();
    for replicas in [vec![], vec![2, 2], vec![9]] {
        let bad = Command::ReassignPartition {
            topic: "t".into(),
            partition: 0,
            replicas,
        };
        assert!(s.apply(&bad).is_err());
        assert_eq!(s, before);
    }
}

#[test]
fn partitions_are_added_once_continuing_the_placement() {
    let mut s = cluster(3);
    create(&mut s, "t", 2, 2);
    s.apply(&Command::FenceBroker { id: 3 }).expect("fences");
    let brokers: Vec<NodeId> = s.brokers.keys().copied().collect();
    let assignment = placement::assign(&brokers, 2, 2, 2, 0).expect("fits");
    let add = Command::AddPartitions {
        topic: "t".into(),
        from: 2,
        assignment: assignment.clone(),
    };
    s.apply(&add).expect("adds");
    let t = &s.topics["t"];
    assert_eq!(t.partitions.len(), 4);
    for (i, p) in t.partitions[2..].iter().enumerate() {
        assert_eq!(p.replicas, assignment[i]);
        // Led by the first replica that is live.
        assert_eq!(p.leader, p.replicas.iter().copied().find(|&r| r != 3));
    }
    // Applied twice (a retried proposal): the second changes nothing.
    let before = s.clone();
    assert_eq!(
        s.apply(&add),
        Err(CommandError::PartitionCount {
            topic: "t".into(),
            has: 4,
            expected: 2
        })
    );
    assert_eq!(s, before);
    for bad in [
        Command::AddPartitions {
            topic: "nope".into(),
            from: 0,
            assignment: vec![vec![1]],
        },
        Command::AddPartitions {
            topic: "t".into(),
            from: 4,
            assignment: vec![],
        },
        Command::AddPartitions {
            topic: "t".into(),
            from: 4,
            assignment: vec![vec![1, 1]],
        },
        Command::AddPartitions {
            topic: "t".into(),
            from: 4,
            assignment: vec![vec![9]],
        },
    ] {
        assert!(s.apply(&bad).is_err(), "{bad:?}");
        assert_eq!(s, before, "{bad:?} changed the state");
    }
}

#[test]
fn a_cancelled_reassignment_goes_back_to_the_replicas_before_it() {
    let mut s = cluster(5);
    create(&mut s, "t", 1, 3);
    let cancel = Command::CancelReassignment {
        topic: "t".into(),
        partition: 0,
    };
    assert_eq!(s.apply(&cancel), Err(CommandError::NoReassignment("t".into(), 0)));
    let before = s.topics["t"].partitions[0].clone();
    assert_eq!(before.replicas, vec![1, 2, 3]);
    // Onto 4, 5, 3; then the leader fails and 4 (in sync by now) leads.
    s.apply(&Command::ReassignPartition {
        topic: "t".into(),
        partition: 0,
        replicas: vec![4, 5, 3],
    })
    .expect("starts");
    let moving = s.topics["t"].partitions[0].clone();
    s.apply(&Command::AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader: 1,
        leader_epoch: moving.leader_epoch,
        partition_epoch: moving.partition_epoch,
        isr: vec![1, 2, 3, 4],
    })
    .expect("4 in sync");
    s.apply(&Command::FenceBroker { id: 1 }).expect("fences");
    s.apply(&Command::FenceBroker { id: 2 }).expect("fences");
    s.apply(&Command::FenceBroker { id: 3 }).expect("fences");
    assert_eq!(s.topics["t"].partitions[0].leader, Some(4));
    // No original replica in sync: cancelling would leave no leader.
    let stuck = s.clone();
    assert_eq!(s.apply(&cancel), Err(CommandError::CancelUnsafe("t".into(), 0)));
    assert_eq!(s, stuck);
    // 3 comes back and rejoins the ISR: cancelling now returns to 1, 2, 3
    // with 3 leading at a new epoch; 4 and 5 leave.
    s.apply(&Command::UnfenceBroker { id: 3 }).expect("unfences");
    let p = s.topics["t"].partitions[0].clone();
    s.apply(&Command::AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader: 4,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        isr: vec![3, 4],
    })
    .expect("3 back in sync");
    let epoch = s.topics["t"].partitions[0].leader_epoch;
    assert_eq!(s.apply(&cancel), Ok(Applied::Partitions(vec![("t".into(), 0)])));
    let back = s.topics["t"].partitions[0].clone();
    assert_eq!(
        (back.replicas, back.isr, back.target, back.adding),
        (vec![1, 2, 3], vec![3], None, vec![])
    );
    assert_eq!(back.leader, Some(3));
    assert!(back.leader_epoch > epoch);
}

#[test]
fn a_leader_whose_log_failed_hands_over_to_a_live_isr_member() {
    let mut s = cluster(3);
    create(&mut s, "t", 1, 3);
    let resign = |epoch| Command::ResignLeader {
        topic: "t".into(),
        partition: 0,
        leader: 1,
        leader_epoch: epoch,
    };
    // A stale epoch changes nothing.
    let before = s.clone();
    assert!(s.apply(&resign(7)).is_err());
    assert_eq!(s, before);
    s.apply(&resign(0)).expect("hands over");
    let p = s.topics["t"].partitions[0].clone();
    assert_eq!((p.leader, p.leader_epoch), (Some(2), 1));
    assert_eq!(p.isr, vec![2, 3]);
    // The last live ISR member keeps the partition: nobody else has all
    // that was acknowledged.
    s.apply(&Command::FenceBroker { id: 3 }).expect("fences");
    let alone = s.clone();
    let last = Command::ResignLeader {
        topic: "t".into(),
        partition: 0,
        leader: 2,
        leader_epoch: s.topics["t"].partitions[0].leader_epoch,
    };
    assert!(s.apply(&last).is_err());
    assert_eq!(s, alone);
}
