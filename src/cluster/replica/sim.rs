//! Seeded simulation of one replicated partition on 3 to 5 brokers, a
//! controller and a producer, over a network that loses, delays,
//! duplicates and reorders messages and can be cut between any two
//! parties; brokers crash (keeping their disk) and restart. After every
//! step it checks Kafka's guarantees:
//! - every record acknowledged with acks=all is in the committed log, at
//!   the offset it was acknowledged with, forever;
//! - every replica's log below its high watermark is a prefix of the
//!   committed log (so replicas agree there, and a consumer, who reads
//!   only below a high watermark, never sees a record that later
//!   disappears);
//! - the replica that leads in the controller's current epoch holds the
//!   whole committed log (a deposed leader that has not heard yet may
//!   lag, but can neither advance its high watermark nor acknowledge);
//! - at most one broker leads in any epoch;
//! - no high watermark moves backwards, and no truncation cuts below one.
//!
//! At the end the network heals and every broker restarts; the partition
//! must then take and acknowledge a write and every replica converge.
//! Replay a failing seed with SLUICE_REPLICATION_SEED=<seed> cargo test
//! --lib cluster::replica; search further with
//! SLUICE_REPLICATION_SEEDS=<count> (e.g. in --release). A seed that
//! fails beyond the default range goes into [`REGRESSION_SEEDS`], which
//! every run replays.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::rng::SplitMix64;

const SEEDS: u64 = 3000;
/// Seeds that once failed outside `0..SEEDS`, replayed by every run.
///
/// - 9883: a late, repeated answer to an earlier ISR change dropped the
///   leader's pending expansion; the high watermark passed the new member
///   the controller then elected (the leader settled its pending change
///   on any answer; now only a newer partition epoch settles it).
///
/// (Seed 2907, inside the default range: a restarted leader acted on a
/// delayed state from before its crash, at its old epoch with a stale
/// ISR, and acknowledged alone; the simulated broker now waits for a
/// state holding its new incarnation, as the real one does.)
const REGRESSION_SEEDS: &[u64] = &[9883];
const STEPS: usize = 300;
const CONTROLLER: u32 = 0;
const CLIENT: u32 = 99;
const LAG_MAX_MS: i64 = 30;
const SESSION_TIMEOUT_MS: i64 = 40;
const HEARTBEAT_EVERY_MS: i64 = 8;
const STATE_RESEND_EVERY_MS: i64 = 25;
const FETCH_TIMEOUT_MS: i64 = 12;
const FETCH_BATCHES_MAX: usize = 4;
const ALTER_RESEND_EVERY_MS: i64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Batch {
    epoch: Epoch,
    id: u64,
}

#[derive(Debug, Clone)]
enum Msg {
    /// The partition's state, with the recipient's incarnation as the
    /// controller knows it: a restarted broker acts only on a state that
    /// already holds its new incarnation (the real broker waits for its
    /// own registration in the applied metadata, `ClusterView::current`),
    /// never on one from before its crash.
    State {
        leader: Option<NodeId>,
        leader_epoch: Epoch,
        partition_epoch: i32,
        isr: Vec<NodeId>,
        incarnation: u32,
    },
    AlterAnswer {
        leader_epoch: Epoch,
        partition_epoch: i32,
        isr: Vec<NodeId>,
    },
    Heartbeat {
        incarnation: u32,
    },
    Alter(AlterIsr),
    /// With a sequence number the answer echoes (a correlation id).
    Fetch(ReplicaFetch, u64),
    FetchResp {
        seq: u64,
        leader_epoch: Epoch,
        fetch_offset: i64,
        verdict: FetchVerdict,
        batches: Vec<Batch>,
    },
    Produce {
        id: u64,
    },
    Ack {
        id: u64,
        offset: Option<i64>,
    },
}

/// What survives a crash.
#[derive(Debug, Clone, Default)]
struct Disk {
    log: Vec<Batch>,
    cache: EpochCache,
    hw: i64,
}

#[derive(Debug, Clone)]
enum Role {
    Leader(LeaderState),
    Follower(FollowerState),
    Idle,
}

struct Node {
    id: NodeId,
    up: bool,
    incarnation: u32,
    disk: Disk,
    role: Role,
    /// The newest (leader epoch, partition epoch) heard from the controller.
    known: (Epoch, i32),
    fetch_sent_ms: Option<i64>,
    /// Sequence number of the fetch in flight; other answers are stale.
    fetch_seq: u64,
    last_heartbeat_ms: i64,
    alter_sent_ms: i64,
    /// Produce requests appended and waiting for the high watermark.
    waiting: Vec<(u64, i64)>,
}

impl Node {
    fn log_end(&self) -> i64 {
        self.disk.log.len() as i64
    }
}

struct Controller {
    part: PartitionControl,
    last_heartbeat: BTreeMap<NodeId, i64>,
    incarnation: BTreeMap<NodeId, u32>,
    fenced: BTreeSet<NodeId>,
    last_resend_ms: i64,
}

struct Sim {
    rng: SplitMix64,
    now: i64,
    nodes: Vec<Node>,
    ctrl: Controller,
    /// Messages in flight by delivery time.
    net: BTreeMap<i64, Vec<(u32, u32, Msg)>>,
    cut: BTreeSet<(u32, u32)>,
    loss: f64,
    /// min.insync.replicas: 1 lets a lone leader append and move its
    /// high watermark while an ISR change is in flight.
    min_isr: usize,
    /// Longest delay of a message to or from the controller.
    controller_delay: u64,
    next_id: u64,
    /// The longest high-watermark prefix any replica has exposed.
    committed: Vec<Batch>,
    /// Acknowledged writes: id -> offset.
    acked: BTreeMap<u64, i64>,
    /// Who led each epoch.
    leaders: BTreeMap<Epoch, NodeId>,
    hw_seen: BTreeMap<NodeId, i64>,
    /// Per node: how much of its log is known to equal the committed log.
    agreed: Vec<usize>,
    stats: BTreeMap<&'static str, u64>,
    /// SLUICE_REPLICATION_TRACE=1 prints every delivery (with one seed).
    trace: bool,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = SplitMix64(seed);
        let n = rng.between(3, 5) as u32;
        let replicas: Vec<NodeId> = (1..=n).collect();
        let nodes = replicas
            .iter()
            .map(|&id| Node {
                id,
                up: true,
                incarnation: 0,
                disk: Disk::default(),
                role: Role::Idle,
                known: (UNDEFINED_EPOCH, -1),
                fetch_sent_ms: None,
                fetch_seq: 0,
                last_heartbeat_ms: 0,
                alter_sent_ms: 0,
                waiting: Vec::new(),
            })
            .collect();
        let loss = [0.0, 0.02, 0.1][rng.between(0, 2) as usize];
        let min_isr = rng.between(1, 2) as usize;
        let controller_delay = rng.between(3, 12);
        let mut sim = Sim {
            rng,
            now: 0,
            nodes,
            ctrl: Controller {
                part: PartitionControl::new(replicas.clone()),
                last_heartbeat: replicas.iter().map(|&r| (r, 0)).collect(),
                incarnation: replicas.iter().map(|&r| (r, 0)).collect(),
                fenced: BTreeSet::new(),
                last_resend_ms: 0,
            },
            net: BTreeMap::new(),
            cut: BTreeSet::new(),
            loss,
            min_isr,
            controller_delay,
            next_id: 1,
            committed: Vec::new(),
            acked: BTreeMap::new(),
            leaders: BTreeMap::new(),
            hw_seen: BTreeMap::new(),
            agreed: vec![0; n as usize],
            stats: BTreeMap::new(),
            trace: std::env::var_os("SLUICE_REPLICATION_TRACE").is_some(),
        };
        sim.broadcast_state();
        sim
    }

    fn count(&mut self, what: &'static str) {
        *self.stats.entry(what).or_default() += 1;
    }

    fn node(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    fn send(&mut self, from: u32, to: u32, msg: Msg) {
        let key = (from.min(to), from.max(to));
        if self.cut.contains(&key) || self.rng.chance(self.loss) {
            return;
        }
        let max_delay = if from == CONTROLLER || to == CONTROLLER {
            self.controller_delay
        } else {
            3
        };
        let at = self.now + self.rng.between(0, max_delay) as i64;
        if self.rng.chance(0.03) {
            let later = at + self.rng.between(1, 9) as i64;
            self.net.entry(later).or_default().push((from, to, msg.clone()));
        }
        self.net.entry(at).or_default().push((from, to, msg));
    }

    fn broadcast_state(&mut self) {
        let p = self.ctrl.part.clone();
        for r in p.replicas.clone() {
            let incarnation = self.ctrl.incarnation.get(&r).copied().unwrap_or(0);
            self.send(
                CONTROLLER,
                r,
                Msg::State {
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    isr: p.isr.clone(),
                    incarnation,
                },
            );
        }
        self.ctrl.last_resend_ms = self.now;
    }

    // ---- the controller ----

    fn controller_tick(&mut self) {
        let expired: Vec<NodeId> = self
            .ctrl
            .last_heartbeat
            .iter()
            .filter(|(r, &t)| !self.ctrl.fenced.contains(r) && self.now - t > SESSION_TIMEOUT_MS)
            .map(|(&r, _)| r)
            .collect();
        for r in expired {
            self.fence(r);
        }
        if self.now - self.ctrl.last_resend_ms >= STATE_RESEND_EVERY_MS {
            self.broadcast_state();
        }
    }

    fn fence(&mut self, r: NodeId) {
        self.ctrl.fenced.insert(r);
        let fenced = self.ctrl.fenced.clone();
        if self.ctrl.part.on_fenced(r, &|x| !fenced.contains(&x)) {
            self.count("fenced");
            self.broadcast_state();
        }
    }

    fn controller_receive(&mut self, from: NodeId, msg: Msg) {
        match msg {
            Msg::Heartbeat { incarnation } => {
                self.ctrl.last_heartbeat.insert(from, self.now);
                let known = self.ctrl.incarnation.insert(from, incarnation).unwrap_or(0);
                if incarnation != known && !self.ctrl.fenced.contains(&from) {
                    // Restarted before its session expired: its
                    // leaderships start over at a new epoch.
                    self.fence(from);
                }
                if self.ctrl.fenced.remove(&from) {
                    let fenced = self.ctrl.fenced.clone();
                    self.ctrl.part.on_unfenced(from, &|x| !fenced.contains(&x));
                    self.broadcast_state();
                }
            }
            Msg::Alter(req) => {
                let fenced = self.ctrl.fenced.clone();
                let ok = self.ctrl.part.alter_isr(&req, &|x| !fenced.contains(&x)).is_ok();
                self.count(if ok { "isr change" } else { "isr change refused" });
                let p = self.ctrl.part.clone();
                self.send(
                    CONTROLLER,
                    from,
                    Msg::AlterAnswer {
                        leader_epoch: p.leader_epoch,
                        partition_epoch: p.partition_epoch,
                        isr: p.isr.clone(),
                    },
                );
                if ok {
                    self.broadcast_state();
                }
            }
            _ => {}
        }
    }

    // ---- a broker ----

    fn node_tick(&mut self, id: NodeId) {
        let now = self.now;
        if !self.node(id).up {
            return;
        }
        if now - self.node(id).last_heartbeat_ms >= HEARTBEAT_EVERY_MS {
            let incarnation = self.node(id).incarnation;
            self.node(id).last_heartbeat_ms = now;
            self.send(id, CONTROLLER, Msg::Heartbeat { incarnation });
        }
        let n = self.node(id);
        let mut out = Vec::new();
        match &mut n.role {
            Role::Leader(l) => {
                if let Some(req) = l.tick(now, LAG_MAX_MS) {
                    n.alter_sent_ms = now;
                    out.push((CONTROLLER, Msg::Alter(req)));
                } else if now - n.alter_sent_ms >= ALTER_RESEND_EVERY_MS {
                    if let Some(req) = l.pending_request() {
                        n.alter_sent_ms = now;
                        out.push((CONTROLLER, Msg::Alter(req)));
                    }
                }
            }
            Role::Follower(f) => {
                let due = n.fetch_sent_ms.is_none_or(|t| now - t >= FETCH_TIMEOUT_MS);
                if due {
                    let log_end = n.disk.log.len() as i64;
                    n.fetch_seq += 1;
                    out.push((f.leader, Msg::Fetch(f.fetch(&n.disk.cache, log_end), n.fetch_seq)));
                    n.fetch_sent_ms = Some(now);
                }
            }
            Role::Idle => {}
        }
        for (to, msg) in out {
            self.send(id, to, msg);
        }
    }

    fn node_receive(&mut self, id: NodeId, from: u32, msg: Msg) {
        if !self.node(id).up {
            return;
        }
        match msg {
            Msg::State {
                leader,
                leader_epoch,
                partition_epoch,
                isr,
                incarnation,
            } => {
                if incarnation == self.node(id).incarnation {
                    self.on_state(id, leader, leader_epoch, partition_epoch, &isr);
                } else {
                    self.count("state from before a restart ignored");
                }
            }
            Msg::AlterAnswer {
                leader_epoch,
                partition_epoch,
                isr,
            } => {
                let n = self.node(id);
                let log_end = n.log_end();
                // The answer is the partition's state at that time; like
                // the brokers, a leader takes only a newer one, at its epoch.
                if let Role::Leader(l) = &mut n.role {
                    if l.epoch() == leader_epoch {
                        l.on_partition_update(&isr, partition_epoch, log_end);
                    }
                }
                self.settle_acks(id);
            }
            Msg::Produce { id: req } => self.on_produce(id, req),
            Msg::Fetch(f, seq) => self.on_fetch(id, from, f, seq),
            Msg::FetchResp {
                seq,
                leader_epoch,
                fetch_offset,
                verdict,
                batches,
            } => self.on_fetch_resp(id, seq, leader_epoch, fetch_offset, verdict, batches),
            _ => {}
        }
    }

    fn on_state(&mut self, id: NodeId, leader: Option<NodeId>, epoch: Epoch, pe: i32, isr: &[NodeId]) {
        let now = self.now;
        let min_isr = self.min_isr;
        let replicas = self.ctrl.part.replicas.clone();
        let n = self.node(id);
        if (epoch, pe) <= n.known {
            return;
        }
        n.known = (epoch, pe);
        let log_end = n.log_end();
        match (&mut n.role, leader) {
            (Role::Leader(l), Some(me)) if me == id && l.epoch() == epoch => {
                l.on_partition_update(isr, pe, log_end);
            }
            (_, Some(me)) if me == id => {
                let l = LeaderState::new(id, epoch, pe, &replicas, isr, log_end, n.disk.hw, min_isr, now);
                n.disk.cache.assign(epoch, log_end);
                n.role = Role::Leader(l);
                n.alter_sent_ms = now;
                self.count("became leader");
            }
            (Role::Follower(f), Some(other)) if f.leader == other && f.epoch == epoch => {}
            (_, Some(other)) => {
                n.role = Role::Follower(FollowerState::new(id, other, epoch, n.disk.hw));
                n.fetch_sent_ms = None;
            }
            (_, None) => n.role = Role::Idle,
        }
        if !matches!(self.node(id).role, Role::Leader(_)) {
            self.fail_waiting(id);
        }
        self.settle_acks(id);
    }

    fn fail_waiting(&mut self, id: NodeId) {
        let waiting = std::mem::take(&mut self.node(id).waiting);
        for (req, _) in waiting {
            self.send(id, CLIENT, Msg::Ack { id: req, offset: None });
        }
    }

    fn on_produce(&mut self, id: NodeId, req: u64) {
        let n = self.node(id);
        let offset = n.log_end();
        let Role::Leader(l) = &mut n.role else {
            self.send(id, CLIENT, Msg::Ack { id: req, offset: None });
            return;
        };
        if !l.acks_all_allowed() {
            self.count("not enough replicas");
            self.send(id, CLIENT, Msg::Ack { id: req, offset: None });
            return;
        }
        n.disk.log.push(Batch {
            epoch: l.epoch(),
            id: req,
        });
        l.on_local_append(offset + 1);
        n.waiting.push((req, offset));
        self.settle_acks(id);
    }

    /// Answers the produce requests below the high watermark (if the ISR
    /// still meets min.insync.replicas, else NOT_ENOUGH_REPLICAS after
    /// append), and writes the high watermark to disk.
    fn settle_acks(&mut self, id: NodeId) {
        let n = self.node(id);
        let Role::Leader(l) = &n.role else { return };
        let (hw, enough) = (l.high_watermark(), l.acks_all_allowed());
        n.disk.hw = n.disk.hw.max(hw);
        let (done, keep): (Vec<_>, Vec<_>) = n.waiting.drain(..).partition(|&(_, off)| off < hw);
        n.waiting = keep;
        for (req, offset) in done {
            let offset = enough.then_some(offset);
            self.send(id, CLIENT, Msg::Ack { id: req, offset });
        }
    }

    fn on_fetch(&mut self, id: NodeId, from: u32, f: ReplicaFetch, seq: u64) {
        let now = self.now;
        let n = self.node(id);
        let log_end = n.log_end();
        let (verdict, alter, epoch) = match &mut n.role {
            Role::Leader(l) => {
                let (v, a) = l.on_fetch(&f, &n.disk.cache, log_end, now);
                (v, a, l.epoch())
            }
            _ if f.leader_epoch > n.known.0 => (FetchVerdict::UnknownLeaderEpoch, None, n.known.0),
            _ => (FetchVerdict::FencedLeaderEpoch, None, n.known.0),
        };
        let batches = match verdict {
            FetchVerdict::Serve { .. } => {
                let start = f.fetch_offset as usize;
                let end = (start + FETCH_BATCHES_MAX).min(n.disk.log.len());
                n.disk.log[start..end].to_vec()
            }
            _ => Vec::new(),
        };
        if alter.is_some() {
            n.alter_sent_ms = now;
        }
        self.send(
            id,
            from,
            Msg::FetchResp {
                seq,
                leader_epoch: epoch,
                fetch_offset: f.fetch_offset,
                verdict,
                batches,
            },
        );
        if let Some(req) = alter {
            self.send(id, CONTROLLER, Msg::Alter(req));
        }
        self.settle_acks(id);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_fetch_resp(
        &mut self,
        id: NodeId,
        seq: u64,
        epoch: Epoch,
        fetch_offset: i64,
        verdict: FetchVerdict,
        batches: Vec<Batch>,
    ) {
        let n = self.node(id);
        let log_end = n.log_end();
        let Role::Follower(f) = &mut n.role else { return };
        if seq != n.fetch_seq || f.epoch != epoch || fetch_offset != log_end {
            return; // an answer to an earlier fetch
        }
        n.fetch_sent_ms = None;
        match verdict {
            FetchVerdict::Serve { high_watermark } => {
                for b in batches {
                    let offset = n.disk.log.len() as i64;
                    n.disk.cache.assign(b.epoch, offset);
                    n.disk.log.push(b);
                }
                let end = n.disk.log.len() as i64;
                n.disk.hw = f.on_leader_hw(high_watermark, end);
            }
            FetchVerdict::Diverging { epoch, end_offset } => {
                let cut = FollowerState::truncation_point(&n.disk.cache, 0, log_end, epoch, end_offset);
                assert!(
                    cut >= n.disk.hw,
                    "node {id} truncates to {cut}, below its high watermark {}",
                    n.disk.hw
                );
                n.disk.log.truncate(cut as usize);
                n.disk.cache.truncate_from_end(cut);
                let i = id as usize - 1;
                self.agreed[i] = self.agreed[i].min(cut as usize);
                self.count("truncated");
            }
            FetchVerdict::FencedLeaderEpoch | FetchVerdict::UnknownLeaderEpoch | FetchVerdict::NotReplica => {}
        }
    }

    // ---- faults ----

    fn crash(&mut self, id: NodeId) {
        let n = self.node(id);
        if !n.up {
            return;
        }
        n.up = false;
        n.role = Role::Idle;
        n.waiting.clear();
        if self.trace {
            eprintln!("t={} crash {id}", self.now);
        }
        self.count("crash");
    }

    fn restart(&mut self, id: NodeId) {
        let now = self.now;
        let n = self.node(id);
        if n.up {
            return;
        }
        n.up = true;
        n.incarnation += 1;
        n.known = (UNDEFINED_EPOCH, -1);
        n.fetch_sent_ms = None;
        n.last_heartbeat_ms = now - HEARTBEAT_EVERY_MS;
        if self.trace {
            eprintln!("t={now} restart {id}");
        }
        self.count("restart");
    }

    fn random_link(&mut self) -> (u32, u32) {
        let n = self.nodes.len() as u32;
        let a = self.rng.between(0, u64::from(n)) as u32;
        let mut b = self.rng.between(0, u64::from(n)) as u32;
        if a == b {
            b = (b + 1) % (n + 1);
        }
        (a.min(b), a.max(b))
    }

    // ---- driving ----

    fn deliver_due(&mut self) {
        let now = self.now;
        let mut due = Vec::new();
        while let Some(entry) = self.net.first_entry() {
            if *entry.key() > now {
                break;
            }
            due.extend(entry.remove());
        }
        // Messages due together arrive in any order.
        for k in (1..due.len()).rev() {
            let j = self.rng.between(0, k as u64) as usize;
            due.swap(k, j);
        }
        for (from, to, msg) in due {
            if self.trace {
                eprintln!("t={} {from} -> {to}: {msg:?}", self.now);
            }
            match to {
                CONTROLLER => self.controller_receive(from, msg),
                CLIENT => {
                    if let Msg::Ack {
                        id,
                        offset: Some(offset),
                    } = msg
                    {
                        // Committed stays as it is below its end (every
                        // check compares against it), so checking an
                        // acknowledgement once, when it arrives, is enough.
                        let at = self.committed.get(offset as usize).map(|b| b.id);
                        assert_eq!(at, Some(id), "acknowledged write {id} at {offset} is not committed");
                        self.acked.insert(id, offset);
                        self.count("acked");
                    }
                }
                node => self.node_receive(node, from, msg),
            }
            self.check();
        }
    }

    fn step(&mut self, faults: bool) {
        self.now += 1;
        let roll = self.rng.between(0, 99);
        let n = self.nodes.len() as u32;
        match roll {
            0..=39 => {
                // The producer sends to the leader it last heard of.
                if let Some(leader) = self.ctrl.part.leader {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.send(CLIENT, leader, Msg::Produce { id });
                }
            }
            40..=41 if faults => {
                let victim = self.rng.between(1, u64::from(n)) as u32;
                self.crash(victim);
            }
            42..=45 if faults => {
                let back = self.rng.between(1, u64::from(n)) as u32;
                self.restart(back);
            }
            46..=47 if faults => {
                let link = self.random_link();
                self.cut.insert(link);
                self.count("cut");
            }
            48..=51 if faults => {
                self.cut.clear();
            }
            _ => {}
        }
        self.controller_tick();
        for id in 1..=n {
            self.node_tick(id);
        }
        self.deliver_due();
        self.check();
    }

    // ---- the guarantees ----

    /// Checks that `node`'s log agrees with the committed log up to
    /// `upto`, comparing only what was not compared before.
    fn agree(&mut self, node: usize, upto: usize, what: &str) {
        let n = &self.nodes[node];
        let from = self.agreed[node].min(upto);
        assert!(
            n.disk.log.len() >= upto && n.disk.log[from..upto] == self.committed[from..upto],
            "node {}: {what}",
            n.id
        );
        self.agreed[node] = self.agreed[node].max(upto);
    }

    fn check(&mut self) {
        for i in 0..self.nodes.len() {
            let (id, up, hw, len) = {
                let n = &self.nodes[i];
                (n.id, n.up, n.disk.hw, n.disk.log.len())
            };
            if !up {
                continue;
            }
            assert!(hw as usize <= len, "node {id}: hw {hw} past its log end");
            let seen = self.hw_seen.entry(id).or_insert(0);
            assert!(hw >= *seen, "node {id}: hw went back from {seen} to {hw}");
            *seen = hw;
            let hw = hw as usize;
            self.agree(
                i,
                hw.min(self.committed.len()),
                "its log below its hw differs from the committed log",
            );
            if hw > self.committed.len() {
                if self.trace {
                    eprintln!("t={} committed {} -> {hw} by node {id}", self.now, self.committed.len());
                }
                let from = self.committed.len();
                let more = self.nodes[i].disk.log[from..hw].to_vec();
                self.committed.extend(more);
                self.agreed[i] = hw;
            }
        }
        for i in 0..self.nodes.len() {
            let n = &self.nodes[i];
            if let (true, Role::Leader(l)) = (n.up, &n.role) {
                let (epoch, id) = (l.epoch(), n.id);
                let who = *self.leaders.entry(epoch).or_insert(id);
                assert_eq!(who, id, "two leaders in epoch {epoch}");
                if epoch != self.ctrl.part.leader_epoch {
                    // Deposed and not told yet: it can neither advance
                    // its high watermark nor acknowledge anything.
                    continue;
                }
                let c = self.committed.len();
                self.agree(i, c, "the leader lacks committed records");
            }
        }
    }

    /// Heals the network, restarts everyone, and requires progress.
    fn settle(&mut self) {
        self.cut.clear();
        self.loss = 0.0;
        for id in 1..=self.nodes.len() as u32 {
            self.restart(id);
        }
        let acked_before = self.acked.len();
        for _ in 0..600 {
            self.step(false);
        }
        assert!(self.acked.len() > acked_before, "no write acknowledged after healing");
        let logs: Vec<_> = self.nodes.iter().map(|n| n.disk.log.clone()).collect();
        let hws: Vec<_> = self.nodes.iter().map(|n| n.disk.hw).collect();
        // Stop producing and let followers catch up.
        for _ in 0..200 {
            self.now += 1;
            self.controller_tick();
            for id in 1..=self.nodes.len() as u32 {
                self.node_tick(id);
            }
            self.deliver_due();
            self.check();
        }
        let first = &self.nodes[0].disk.log;
        assert!(
            self.nodes.iter().all(|n| &n.disk.log == first),
            "replicas did not converge: {logs:?} hws {hws:?}"
        );
    }
}

struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "replication simulation failed at seed {0}: replay with SLUICE_REPLICATION_SEED={0}",
                self.0
            );
        }
    }
}

#[test]
fn replication_keeps_kafkas_guarantees_under_faults() {
    let seeds: Vec<u64> = match std::env::var("SLUICE_REPLICATION_SEED") {
        Ok(seed) => vec![seed.parse().expect("SLUICE_REPLICATION_SEED is a u64")],
        Err(_) => {
            let count = std::env::var("SLUICE_REPLICATION_SEEDS")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(SEEDS);
            (0..count).chain(REGRESSION_SEEDS.iter().copied()).collect()
        }
    };
    let mut total: BTreeMap<&'static str, u64> = BTreeMap::new();
    for seed in seeds {
        let _guard = SeedGuard(seed);
        let mut sim = Sim::new(seed);
        for _ in 0..STEPS {
            sim.step(true);
        }
        sim.settle();
        for (k, v) in sim.stats {
            *total.entry(k).or_default() += v;
        }
    }
    eprintln!("replication simulation: {total:?}");
    if std::env::var("SLUICE_REPLICATION_SEED").is_err() {
        // The faults reached the corners that matter, not just the happy path.
        for what in [
            "acked",
            "became leader",
            "crash",
            "truncated",
            "isr change",
            "fenced",
            "not enough replicas",
        ] {
            assert!(total.get(what).copied().unwrap_or(0) > 0, "never saw {what}: {total:?}");
        }
    }
}
