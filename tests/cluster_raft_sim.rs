//! Deterministic simulation of the controller quorum (`sluice::cluster::raft`).
//!
//! 3 and 5 voters over `MemStorage`, driven by a seeded scheduler that
//! loses, delays, reorders and duplicates messages, partitions the
//! network, and crashes and restarts nodes from their disks. After every
//! step it checks:
//! - at most one leader per term, and no node votes twice in a term;
//! - every node applies the same commands at the same indexes, in order
//!   (its state is the digest of a prefix of the one committed history);
//! - a command acknowledged as committed (applied on its proposer at the
//!   index and term the proposal got) is in that history, and so on every
//!   node that gets that far;
//! - a node's commit index never goes back, and its log stays bounded by
//!   the snapshot interval (compaction works);
//!
//! and, once the faults stop and the network heals, that a new command
//! commits and every node converges within a bounded number of steps.
//!
//! A failure names its seed; `SLUICE_RAFT_SEED=<n>` replays that seed
//! alone, `SLUICE_RAFT_SEEDS=<count>` runs more (or fewer) seeds.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use sluice::cluster::raft::{LogStorage, MemDisk, MemStorage, ProposeError, QuorumConfig, QuorumNode};

use sluice::cluster::raft::testkit::{chain, Ledger, Put};
use sluice::rng::SplitMix64 as Rng;

type Node = QuorumNode<Ledger, MemStorage>;

// ---------------------------------------------------------------- scheduler

struct InFlight {
    deliver_at: u64,
    from: u64,
    to: u64,
    bytes: bytes::Bytes,
}

/// Steps between two ticks of the nodes' clocks.
const TICK_STEPS: u64 = 5;

/// How hostile the world is.
#[derive(Clone, Copy)]
struct Faults {
    loss_pct: u64,
    duplicate_pct: u64,
    delay_steps_max: u64,
    clock_skip_pct: u64,
    crash_per_mille: u64,
    partition_per_mille: u64,
}

const CALM: Faults = Faults {
    loss_pct: 0,
    duplicate_pct: 0,
    delay_steps_max: 2,
    clock_skip_pct: 0,
    crash_per_mille: 0,
    partition_per_mille: 0,
};

/// One committed command, as first seen applied anywhere, with the digest
/// and count of the history up to it.
struct Committed {
    index: u64,
    term: u64,
    value: u64,
    digest: u64,
    count: u64,
}

struct Sim {
    rng: Rng,
    config: QuorumConfig,
    disks: Vec<MemDisk>,
    nodes: Vec<Option<Node>>,
    net: Vec<InFlight>,
    /// Side of each node; messages cross only between equal sides.
    sides: Vec<u8>,
    now: u64,
    next_value: u64,
    faults: Faults,
    /// term -> the leader seen in it.
    leaders: BTreeMap<u64, u64>,
    /// (node, term) -> the vote on disk.
    votes: BTreeMap<(u64, u64), u64>,
    history: Vec<Committed>,
    /// Proposals awaiting their fate, per node: (index, term, value).
    pending: Vec<Vec<(u64, u64, u64)>>,
    /// index -> value, acknowledged as committed.
    acked: BTreeMap<u64, u64>,
    commit_seen: Vec<u64>,
    snapshots_restored: Vec<u64>,
    commands_applied: Vec<u64>,
}

impl Sim {
    fn new(seed: u64, voters: u64, interval: u64, retained: u64) -> Sim {
        let ids: Vec<u64> = (1..=voters).collect();
        let mut config = QuorumConfig::new(1, ids.clone());
        config.snapshot_interval_entries = interval;
        config.log_retained_entries = retained;
        config.snapshot_timeout_ticks = 20;
        config.election_seed = seed;
        let disks: Vec<MemDisk> = ids.iter().map(|_| MemDisk::new()).collect();
        let mut sim = Sim {
            rng: Rng(seed ^ 0x51u64.rotate_left(40)),
            nodes: Vec::new(),
            disks,
            net: Vec::new(),
            sides: vec![0; voters as usize],
            now: 0,
            next_value: 1,
            faults: CALM,
            leaders: BTreeMap::new(),
            votes: BTreeMap::new(),
            history: Vec::new(),
            pending: vec![Vec::new(); voters as usize],
            acked: BTreeMap::new(),
            commit_seen: vec![0; voters as usize],
            snapshots_restored: vec![0; voters as usize],
            commands_applied: vec![0; voters as usize],
            config,
        };
        for id in ids {
            let node = sim.open(id);
            sim.nodes.push(Some(node));
        }
        sim
    }

    fn open(&self, id: u64) -> Node {
        let mut config = self.config.clone();
        config.node_id = id;
        match Node::new(config, MemStorage::open(&self.disks[id as usize - 1])) {
            Ok(node) => node,
            Err(e) => panic!("node {id} does not (re)start from its disk: {e}"),
        }
    }

    fn n(&self) -> usize {
        self.nodes.len()
    }

    fn idx(id: u64) -> usize {
        id as usize - 1
    }

    /// Polls node `id`, sends its messages through the faulty network and
    /// checks what it applied.
    fn poll(&mut self, id: u64) {
        let Some(node) = self.nodes[Self::idx(id)].as_mut() else {
            return;
        };
        let out = match node.poll() {
            Ok(out) => out,
            Err(e) => panic!("node {id} poll failed: {e}"),
        };
        if out.restored_snapshot.is_some() {
            self.snapshots_restored[Self::idx(id)] += 1;
            // Proposals the snapshot covers can no longer be told apart.
            let covered = out.restored_snapshot.unwrap_or(0);
            self.pending[Self::idx(id)].retain(|p| p.0 > covered);
        }
        for a in &out.applied {
            self.record_applied(id, a.index, a.term, a.command.0);
        }
        for m in out.messages {
            if self.rng.percent(self.faults.loss_pct) {
                continue;
            }
            let copies = if self.rng.percent(self.faults.duplicate_pct) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let delay = self.rng.below(self.faults.delay_steps_max + 1);
                self.net.push(InFlight {
                    deliver_at: self.now + delay,
                    from: id,
                    to: m.to,
                    bytes: m.bytes.clone(),
                });
            }
        }
        self.check_node(id);
    }

    fn record_applied(&mut self, id: u64, index: u64, term: u64, value: u64) {
        self.commands_applied[Self::idx(id)] += 1;
        match self.history.binary_search_by_key(&index, |c| c.index) {
            Ok(at) => {
                let c = &self.history[at];
                if (c.term, c.value) != (term, value) {
                    panic!(
                        "node {id} applied value {value} (term {term}) at index {index}, \
                         but value {} (term {}) was committed there",
                        c.value, c.term
                    );
                }
            }
            Err(at) => {
                if at != self.history.len() {
                    panic!("node {id} applied index {index} that no node applied before a later one");
                }
                let (digest, count) = self.history.last().map_or((0, 0), |c| (c.digest, c.count));
                self.history.push(Committed {
                    index,
                    term,
                    value,
                    digest: chain(digest, index, value),
                    count: count + 1,
                });
            }
        }
        let pending = &mut self.pending[Self::idx(id)];
        pending.retain(|&(p_index, p_term, p_value)| {
            if p_index != index {
                return p_index > index;
            }
            if p_term == term && p_value == value {
                self.acked.insert(index, value);
            }
            false
        });
    }

    /// Checks one node against the committed history and its own past.
    fn check_node(&mut self, id: u64) {
        let Some(node) = self.nodes[Self::idx(id)].as_ref() else {
            return;
        };
        let state = *node.state();
        if state.last_index > 0 {
            let Ok(at) = self.history.binary_search_by_key(&state.last_index, |c| c.index) else {
                panic!("node {id} is at index {} that was never committed", state.last_index);
            };
            let c = &self.history[at];
            if (c.digest, c.count) != (state.digest, state.count) {
                panic!(
                    "node {id} diverged: at index {} it has {} commands (digest {:#x}), history has {} ({:#x})",
                    state.last_index, state.count, state.digest, c.count, c.digest
                );
            }
        }
        let commit = node.commit_index();
        if commit < self.commit_seen[Self::idx(id)] {
            panic!(
                "node {id} commit index went back from {} to {commit}",
                self.commit_seen[Self::idx(id)]
            );
        }
        self.commit_seen[Self::idx(id)] = commit;
        let cache = node.storage().cache();
        let held = node.applied_index().saturating_sub(cache.boundary().0);
        let bound = self.config.snapshot_interval_entries + self.config.log_retained_entries;
        if held > bound {
            panic!("node {id} holds {held} applied entries in its log, more than {bound}: compaction failed");
        }
        // A proposal no longer in its proposer's log was overwritten by
        // another leader's entries: it was never acknowledged, and is lost.
        self.pending[Self::idx(id)].retain(|&(index, term, _)| cache.term(index) == Some(term));
        let hs = cache.hard_state();
        if hs.vote != 0 {
            let vote = *self.votes.entry((id, hs.term)).or_insert(hs.vote);
            if vote != hs.vote {
                panic!("node {id} voted for {vote} and then {} in term {}", hs.vote, hs.term);
            }
        }
        if node.is_leader() {
            let leader = *self.leaders.entry(node.term()).or_insert(id);
            if leader != id {
                panic!("two leaders in term {}: {leader} and {id}", node.term());
            }
        }
    }

    /// Delivers every message due by now, in random order (with random
    /// delays, that is the reordering).
    fn deliver_due(&mut self) {
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.net.len() {
            if self.net[i].deliver_at <= self.now {
                due.push(self.net.swap_remove(i));
            } else {
                i += 1;
            }
        }
        while !due.is_empty() {
            let m = due.swap_remove(self.rng.below(due.len() as u64) as usize);
            self.deliver(m);
        }
    }

    fn deliver(&mut self, m: InFlight) {
        let (from, to) = (m.from, m.to);
        if self.sides[Self::idx(from)] != self.sides[Self::idx(to)] {
            return;
        }
        let Some(node) = self.nodes[Self::idx(to)].as_mut() else {
            return;
        };
        if let Err(e) = node.step(from, &m.bytes) {
            panic!("node {to} refused a correct message from {from}: {e}");
        }
        self.poll(to);
    }

    /// Ticks every live node; under faults a node's clock may skip a tick.
    fn tick_all(&mut self) {
        for id in 1..=self.n() as u64 {
            if self.rng.percent(self.faults.clock_skip_pct) {
                continue;
            }
            if let Some(node) = self.nodes[Self::idx(id)].as_mut() {
                if let Err(e) = node.tick() {
                    panic!("node {id} tick failed: {e}");
                }
                self.poll(id);
            }
        }
    }

    fn leader(&self) -> Option<u64> {
        // The live leader of the highest term (a deposed one may not know yet).
        self.nodes
            .iter()
            .flatten()
            .filter(|n| n.is_leader())
            .max_by_key(|n| n.term())
            .map(|n| n.node_id())
    }

    /// Proposes a fresh value on `id`; returns its (index, value) if taken.
    fn propose_on(&mut self, id: u64) -> Option<(u64, u64)> {
        let value = self.next_value;
        let node = self.nodes[Self::idx(id)].as_mut()?;
        match node.propose(&Put(value)) {
            Ok(p) => {
                self.next_value += 1;
                self.pending[Self::idx(id)].push((p.index, p.term, value));
                self.poll(id);
                Some((p.index, value))
            }
            Err(ProposeError::NotLeader { .. } | ProposeError::Dropped(_)) => None,
            Err(e) => panic!("node {id} propose failed: {e}"),
        }
    }

    fn crash(&mut self, id: u64) {
        self.nodes[Self::idx(id)] = None;
        self.pending[Self::idx(id)].clear();
        self.commit_seen[Self::idx(id)] = 0;
    }

    fn restart(&mut self, id: u64) {
        let node = self.open(id);
        self.nodes[Self::idx(id)] = Some(node);
        self.poll(id);
    }

    fn down(&self) -> Vec<u64> {
        (1..=self.n() as u64)
            .filter(|&id| self.nodes[Self::idx(id)].is_none())
            .collect()
    }

    /// Advances time by one step: delivers what is due, ticks every
    /// `TICK_STEPS`.
    fn advance(&mut self) {
        self.now += 1;
        self.deliver_due();
        if self.now % TICK_STEPS == 0 {
            self.tick_all();
        }
    }

    /// One scheduler step under the current faults.
    fn step(&mut self) {
        self.advance();
        let n = self.n() as u64;
        let f = self.faults;
        if self.rng.percent(25) {
            let target = if self.rng.percent(80) {
                self.leader()
            } else {
                Some(1 + self.rng.below(n))
            };
            if let Some(id) = target {
                self.propose_on(id);
            }
        }
        if self.rng.below(1000) < f.crash_per_mille {
            let down = self.down();
            if self.rng.percent(50) && !down.is_empty() {
                let id = down[self.rng.below(down.len() as u64) as usize];
                self.restart(id);
            } else if (down.len() as u64) < n.div_ceil(2) {
                // Half the time the leader: that is where the bugs are.
                let id = match self.leader() {
                    Some(l) if self.rng.percent(50) => l,
                    _ => 1 + self.rng.below(n),
                };
                if self.nodes[Self::idx(id)].is_some() {
                    self.crash(id);
                }
            }
        }
        if self.rng.below(1000) < f.partition_per_mille {
            let roll = self.rng.below(10);
            if roll < 4 {
                self.sides.iter_mut().for_each(|s| *s = 0);
            } else if let (true, Some(l)) = (roll < 7, self.leader()) {
                // Isolate the leader.
                self.sides.iter_mut().for_each(|s| *s = 0);
                self.sides[Self::idx(l)] = 1;
            } else {
                for s in self.sides.iter_mut() {
                    *s = (self.rng.next_u64() & 1) as u8;
                }
            }
        }
    }

    /// Stops the faults, heals the network, restarts every node, and
    /// requires a fresh command to commit everywhere within `steps_max`.
    fn heal_and_converge(&mut self, steps_max: u64) {
        self.faults = CALM;
        self.sides.iter_mut().for_each(|s| *s = 0);
        for id in self.down() {
            self.restart(id);
        }
        // (proposer, index, value) of a fresh command that must commit.
        let mut marker: Option<(u64, u64, u64)> = None;
        for _ in 0..steps_max {
            self.step_calm();
            match marker {
                None => {
                    if let Some(leader) = self.leader() {
                        marker = self.propose_on(leader).map(|(index, value)| (leader, index, value));
                    }
                }
                Some((node, index, value)) if self.acked.get(&index) != Some(&value) => {
                    // Lost with a change of leader: propose it again.
                    if !self.pending[Self::idx(node)]
                        .iter()
                        .any(|p| (p.0, p.2) == (index, value))
                    {
                        marker = None;
                    }
                }
                Some(_) => {
                    let top = self.history.last().map_or(0, |c| c.index);
                    if self.nodes.iter().flatten().all(|n| n.state().last_index == top) {
                        let max_acked = self.acked.keys().next_back().copied().unwrap_or(0);
                        assert!(
                            top >= max_acked,
                            "acknowledged index {max_acked} is beyond the history {top}"
                        );
                        return;
                    }
                }
            }
        }
        panic!(
            "no convergence {steps_max} steps after healing: leader {:?}, applied {:?}, history top {:?}",
            self.leader(),
            self.nodes
                .iter()
                .flatten()
                .map(|n| n.applied_index())
                .collect::<Vec<_>>(),
            self.history.last().map(|c| c.index)
        );
    }

    /// A step with only deliveries and ticks (no proposals, no faults).
    fn step_calm(&mut self) {
        self.advance();
    }
}

// ---------------------------------------------------------------- runner

fn seeds(default_count: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("SLUICE_RAFT_SEED") {
        return vec![seed.trim().parse().expect("SLUICE_RAFT_SEED is a number")];
    }
    let count = std::env::var("SLUICE_RAFT_SEEDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default_count);
    (0..count).collect()
}

/// Runs `scenario` for every seed; a failure names the seed to replay.
fn run_seeds(test: &str, default_count: u64, scenario: impl Fn(u64)) {
    for seed in seeds(default_count) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| scenario(seed))) {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "{test}: seed {seed} failed: {msg}\n\
                 replay: SLUICE_RAFT_SEED={seed} cargo test --test cluster_raft_sim {test}"
            );
        }
    }
}

fn chaos(seed: u64, voters: u64, steps: u64) -> Sim {
    let mut sim = Sim::new(seed, voters, 20, 5);
    let mut rng = Rng(seed.wrapping_mul(31) ^ 0xc4a0);
    sim.faults = Faults {
        loss_pct: rng.below(25),
        duplicate_pct: rng.below(10),
        delay_steps_max: 1 + rng.below(3 * TICK_STEPS * 2),
        clock_skip_pct: rng.below(10),
        crash_per_mille: rng.below(30),
        partition_per_mille: rng.below(30),
    };
    for _ in 0..steps {
        sim.step();
    }
    sim.heal_and_converge(4000);
    sim
}

#[test]
fn three_voters_under_faults() {
    run_seeds("three_voters_under_faults", 250, |seed| {
        chaos(seed, 3, 800);
    });
}

#[test]
fn five_voters_under_faults() {
    run_seeds("five_voters_under_faults", 120, |seed| {
        chaos(seed ^ 0x5_0000, 5, 800);
    });
}

/// The same seed gives the same run, step for step (raft-rs's own
/// election-timeout RNG is overridden by the node's seeded one).
#[test]
fn a_seed_replays_exactly() {
    let fingerprint = |sim: &Sim| {
        (
            sim.now,
            sim.leaders.clone(),
            sim.acked.clone(),
            sim.history.last().map(|c| (c.index, c.digest)),
            sim.snapshots_restored.clone(),
        )
    };
    for seed in [3, 17] {
        let a = fingerprint(&chaos(seed, 5, 800));
        let b = fingerprint(&chaos(seed, 5, 800));
        assert_eq!(a, b, "seed {seed} did not replay exactly");
    }
}

/// A node partitioned away while many more entries than the snapshot
/// interval commit rejoins by snapshot (not by replaying history), and the
/// other nodes' logs stay bounded meanwhile.
#[test]
fn a_partitioned_node_rejoins_by_snapshot() {
    run_seeds("a_partitioned_node_rejoins_by_snapshot", 20, |seed| {
        let interval = 50;
        let mut sim = Sim::new(seed, 3, interval, 10);
        while sim.leader().is_none() {
            sim.step_calm();
        }
        let leader = sim.leader().unwrap_or(1);
        let away = 1 + (leader % 3);
        sim.sides[Sim::idx(away)] = 1;
        let before = sim.commands_applied[Sim::idx(away)];
        let mut proposed = 0;
        for _ in 0..100 * interval {
            if proposed >= 6 * interval {
                break;
            }
            if let Some(l) = sim.leader() {
                if sim.propose_on(l).is_some() {
                    proposed += 1;
                }
            }
            for _ in 0..2 {
                sim.step_calm();
            }
        }
        assert_eq!(proposed, 6 * interval, "the majority side stopped taking proposals");
        for id in 1..=3 {
            if id != away {
                let node = sim.nodes[Sim::idx(id)].as_ref().expect("up");
                let held = node.storage().cache().entries().len() as u64;
                assert!(
                    held <= 2 * interval,
                    "node {id} holds {held} entries: the log is not bounded"
                );
            }
        }
        sim.sides[Sim::idx(away)] = 0;
        sim.heal_and_converge(4000);
        assert!(
            sim.snapshots_restored[Sim::idx(away)] >= 1,
            "node {away} caught up without a snapshot"
        );
        let replayed = sim.commands_applied[Sim::idx(away)] - before;
        assert!(
            replayed < 2 * interval,
            "node {away} replayed {replayed} commands instead of installing a snapshot"
        );
    });
}

/// Every node crashes and restarts from its disk, over and over, while
/// commands commit: nothing acknowledged is lost and restarts replay at
/// most a snapshot interval of entries.
#[test]
fn whole_cluster_restarts_lose_nothing() {
    run_seeds("whole_cluster_restarts_lose_nothing", 20, |seed| {
        let mut sim = Sim::new(seed, 3, 25, 5);
        for round in 0..6 {
            for _ in 0..300 {
                sim.step_calm();
                if sim.rng.percent(30) {
                    if let Some(l) = sim.leader() {
                        sim.propose_on(l);
                    }
                }
            }
            for id in 1..=3 {
                sim.crash(id);
            }
            for id in 1..=3 {
                let before = sim.commands_applied[Sim::idx(id)];
                sim.restart(id);
                let replayed = sim.commands_applied[Sim::idx(id)] - before;
                assert!(
                    replayed <= 25 + 5,
                    "round {round}: node {id} replayed {replayed} commands at restart"
                );
            }
        }
        sim.heal_and_converge(4000);
        let top = sim.history.last().map_or(0, |c| c.index);
        for (&index, _) in sim.acked.iter() {
            assert!(index <= top);
        }
        assert!(
            sim.acked.len() > 50,
            "too little committed to mean anything: {}",
            sim.acked.len()
        );
    });
}
