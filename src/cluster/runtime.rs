//! Cluster mode on shard 0: the inter-broker listener and connections, the
//! controller quorum ticked by a timer, and the active controller's duties
//! (registering brokers from their heartbeats, fencing the ones that stop).
//!
//! A node named in `--voters` is a controller voter and a broker (KRaft's
//! combined mode): it runs a [`QuorumNode`] over the metadata log. Any
//! other node is a broker only, an observer of the log: it fetches the
//! applied state from a voter (preferring the active controller) over a
//! request/answer connection, and registers, heartbeats and proposes
//! through the active controller like any broker.
//!
//! Inter-broker frames: `len u32 | kind u8 | payload`, big-endian, `len`
//! counting kind and payload and bounded. Every connection starts with
//! the [`handshake`]: who the opener is and which cluster it belongs to;
//! a peer of another cluster is refused. A controller connection then
//! carries frames one way, from the node that opened it; raft messages
//! are taken from voters only, and are framed and checked again inside
//! (see `raft::frame`). Messages to a peer that is down are dropped: raft
//! resends.
//!
//! The cluster id: the first active controller issues one (a UUID, in the
//! metadata log). Each node records it in its data directory once it
//! learns it, and says it in every hello. A node that a majority of the
//! voters refuse as belonging to another cluster stops with that message,
//! having touched nothing of theirs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};

use futures_channel::oneshot;

use super::fetch;
use super::handshake::{self, Backoff, Greeting, Hello, KIND_HELLO, KIND_HELLO_META};
use super::identity::{NodeRole, Voter};
use super::metadata::{Applied, BrokerEndpoints, ClusterState, Command, CommandError};
use super::raft::{FileStorage, QuorumConfig, QuorumNode};
use super::view::ClusterView;
use crate::broker::Shard;
use crate::config::{ClusterSettings, ServeConfig};
use crate::watermark::Watermark;
use serde::{Deserialize, Serialize};

/// One raft tick; elections take `election_ticks` (10) of them.
const TICK: Duration = Duration::from_millis(100);
/// How often a broker tells the active controller it is alive.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);
/// Largest inter-broker frame.
const FRAME_BYTES_MAX: usize = (64 << 20) + 1024;
/// Largest first frame: a stranger gets no big buffer before it says who
/// it is.
const HELLO_BYTES_MAX: usize = 80;
/// How long a new connection may take to say who it is.
const HELLO_TIMEOUT: Duration = Duration::from_secs(2);
/// Inbound inter-broker connections open at once: a bound on what
/// strangers can hold (each for at most the hello timeout), well above
/// what the peers need. The inter-broker listener belongs on a private
/// network, as Kafka's does: a flood above this also delays the peers.
const INBOUND_MAX: usize = 64;
/// Frames queued for one peer before new ones are dropped.
const PEER_QUEUE_FRAMES: usize = 1024;
/// A command the controller proposed is proposed again after this.
const REPROPOSE_AFTER: Duration = Duration::from_secs(1);
/// How long a voter holds an observer's metadata fetch when nothing is new.
const META_WAIT: Duration = Duration::from_millis(500);
/// How long an observer waits for a metadata answer.
const META_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

const KIND_RAFT: u8 = 2;
const KIND_HEARTBEAT: u8 = 3;
/// A command for the active controller to propose: `req u64 | command`.
const KIND_PROPOSE: u8 = 4;
/// The outcome of a forwarded proposal: `req u64 | answer`.
const KIND_PROPOSED: u8 = 5;
/// An observer asks for the metadata: `known_index u64`.
const KIND_META_FETCH: u8 = 12;
/// A voter's answer: `index u64 | term u64 | controller u32 (0: none) |
/// state` (the state's bytes when `index` is past the known index, else
/// nothing).
const KIND_META: u8 = 13;

/// What a proposer hears once its command is applied (or could not be).
pub type Answer = Result<Applied, ProposeError>;

/// Why a proposal did not change the state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Applied, and refused by the state machine (a topic that exists, a
    /// stale ISR change): proposing it again gets the same answer.
    #[error(transparent)]
    Refused(#[from] CommandError),
    /// Lost to a change of controller, or there is none yet: it may have
    /// been applied or not; propose it again.
    #[error("{0}; retry")]
    Retry(String),
    /// Not proposed, or not answered in time.
    #[error("{0}")]
    Failed(String),
}

/// Who waits for a proposal's outcome.
enum Waiter {
    Local(oneshot::Sender<Answer>),
    /// A proposal forwarded by another node: answer it there.
    Remote {
        node: u32,
        req: u64,
    },
}

type Quorum = QuorumNode<ClusterState, FileStorage>;

/// How this node takes part in the metadata log.
enum Member {
    /// A controller voter: it runs the quorum.
    Voter(Box<Quorum>),
    /// A broker only: the state as a voter last sent it.
    Observer(Observed),
}

#[derive(Default)]
struct Observed {
    state: ClusterState,
    applied_index: u64,
    term: u64,
    controller: Option<u32>,
}

/// What the controller knows of a broker from its heartbeats.
struct Seen {
    at: Instant,
    incarnation: u64,
    endpoints: BrokerEndpoints,
}

/// What every outgoing connection of shard 0 shares: who this node is,
/// the cluster id to say, and the voters that refused it as belonging to
/// another cluster.
struct LinkContext {
    view: Arc<ClusterView>,
    voters: Vec<u32>,
    /// Voter → the cluster id it said it runs, while it refuses this node.
    refusals: RefCell<HashMap<u32, String>>,
}

impl LinkContext {
    /// Notes how `peer` answered a hello.
    fn heard(&self, peer: u32, greeting: &Greeting) {
        if !self.voters.contains(&peer) {
            return;
        }
        let mut refusals = self.refusals.borrow_mut();
        match greeting {
            Greeting::Refused {
                cluster_id: Some(theirs),
                ..
            } if Some(theirs.as_str()) != self.view.cluster_id() => {
                refusals.insert(peer, theirs.clone());
            }
            _ => {
                refusals.remove(&peer);
            }
        }
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("me", &self.me)
            .field("controller", &self.controller())
            .field("term", &self.term())
            .finish_non_exhaustive()
    }
}

/// Shard 0's cluster state: the quorum node (or the observed state) and
/// the controller duties.
pub struct Cluster {
    me: u32,
    member: Member,
    /// Outgoing controller connections: the voters', and those opened to
    /// brokers that are not voters when there is something to tell them.
    peers: HashMap<u32, (String, LocalSender<Bytes>)>,
    links: Rc<LinkContext>,
    data_dir: PathBuf,
    role: NodeRole,
    /// Why this node must stop (it belongs to another cluster).
    fatal: Option<String>,
    incarnation: u64,
    endpoints: BrokerEndpoints,
    session_timeout: Duration,
    /// While this node leads: heartbeats heard, and since when it leads
    /// (a new controller gives every broker a full session first).
    seen: HashMap<u32, Seen>,
    leading_since: Option<Instant>,
    proposed: HashMap<u32, Instant>,
    init_proposed: Option<Instant>,
    last_heartbeat: Option<Instant>,
    /// Proposals of this leader by log index: the term they were proposed
    /// in, and who waits. An entry applied at that index in another term
    /// means the proposal was lost.
    pending: HashMap<u64, (u64, Waiter)>,
    /// Proposals this node forwarded to the controller, by request id,
    /// with the controller they went to.
    forwarded: HashMap<u64, (u32, oneshot::Sender<Answer>)>,
    next_req: u64,
    /// The applied state as every shard reads it, republished after each
    /// apply; `changed` counts the republications.
    view: Arc<ClusterView>,
    changed: Rc<Watermark>,
    /// How often the active controller moves leadership back to preferred
    /// replicas, and when it last did.
    rebalance_every: Duration,
    last_rebalance: Option<Instant>,
}

impl Cluster {
    /// A voter opens the quorum's storage in `<data_dir>/raft/` (blocking;
    /// at start); every node prepares its voter connections' queues.
    pub fn open(
        cfg: &ServeConfig,
        settings: &ClusterSettings,
        view: Arc<ClusterView>,
    ) -> Result<(Cluster, Vec<PeerLink>), String> {
        let incarnation = incarnation();
        let member = if settings.is_voter() {
            let storage = FileStorage::open(&cfg.data_dir).map_err(|e| e.to_string())?;
            let voters: Vec<u64> = settings.voters.iter().map(|v| u64::from(v.id)).collect();
            let mut qc = QuorumConfig::new(u64::from(settings.node_id), voters);
            qc.election_seed = incarnation;
            Member::Voter(Box::new(
                QuorumNode::new(qc, storage).map_err(|e| format!("controller quorum: {e}"))?,
            ))
        } else {
            Member::Observer(Observed::default())
        };
        let links = Rc::new(LinkContext {
            view: view.clone(),
            voters: settings.voters.iter().map(|v| v.id).collect(),
            refusals: RefCell::new(HashMap::new()),
        });
        let mut peers = HashMap::new();
        let mut outgoing = Vec::new();
        for v in settings.voters.iter().filter(|v| v.id != settings.node_id) {
            let (tx, rx) = local_channel::new_bounded(PEER_QUEUE_FRAMES);
            peers.insert(v.id, (v.addr.clone(), tx));
            outgoing.push(PeerLink {
                links: links.clone(),
                peer: v.id,
                addr: v.addr.clone(),
                rx,
            });
        }
        let endpoints = BrokerEndpoints {
            kafka: format!("{}:{}", cfg.kafka_advertised.0, cfg.kafka_advertised.1),
            native: cfg.native_addr.to_string(),
            cluster: settings.cluster_advertised.clone(),
        };
        view.set_incarnation(incarnation);
        let mut cluster = Cluster {
            me: settings.node_id,
            member,
            peers,
            links,
            data_dir: cfg.data_dir.clone(),
            role: NodeRole::Cluster {
                node_id: settings.node_id,
                voters: settings.voters.clone(),
            },
            fatal: None,
            incarnation,
            endpoints,
            session_timeout: Duration::from_millis(cfg.broker_session_timeout_ms),
            seen: HashMap::new(),
            leading_since: None,
            proposed: HashMap::new(),
            init_proposed: None,
            last_heartbeat: None,
            pending: HashMap::new(),
            forwarded: HashMap::new(),
            next_req: 0,
            view,
            changed: Rc::new(Watermark::new(0)),
            rebalance_every: Duration::from_millis(cfg.leader_imbalance_check_interval_ms),
            last_rebalance: None,
        };
        cluster.publish();
        Ok((cluster, outgoing))
    }

    pub fn state(&self) -> &ClusterState {
        match &self.member {
            Member::Voter(q) => q.state(),
            Member::Observer(o) => &o.state,
        }
    }

    fn is_leader(&self) -> bool {
        matches!(&self.member, Member::Voter(q) if q.is_leader())
    }

    fn term(&self) -> u64 {
        match &self.member {
            Member::Voter(q) => q.term(),
            Member::Observer(o) => o.term,
        }
    }

    fn applied_index(&self) -> u64 {
        match &self.member {
            Member::Voter(q) => q.applied_index(),
            Member::Observer(o) => o.applied_index,
        }
    }

    /// Why this node must stop, if it must.
    pub fn fatal(&self) -> Option<&str> {
        self.fatal.as_deref()
    }

    /// Counts the changes of the applied state (for the reconciler).
    pub fn changed(&self) -> Rc<Watermark> {
        self.changed.clone()
    }

    /// Republishes the applied state for the shards, once it is known to
    /// be this cluster's; records the cluster id when first learned.
    fn publish(&mut self) {
        if self.fatal.is_some() {
            return;
        }
        if let Some(id) = self.state().cluster_id.clone() {
            let known = self.view.cluster_id().map(str::to_string);
            match known {
                Some(k) if k != id => {
                    self.stop(format!(
                        "the metadata names cluster {id}, but this data directory belongs to cluster {k}"
                    ));
                    return;
                }
                Some(_) => {}
                None => {
                    if let Err(e) = super::identity::record_cluster_id(&self.data_dir, &self.role, &id) {
                        // Learned again at the next start; nothing depends on it until then.
                        tracing::warn!(error = %e, "could not record the cluster id");
                    }
                    self.view.learn_cluster_id(&id);
                    tracing::info!(cluster_id = %id, "joined the cluster");
                }
            }
        }
        self.view.publish(self.state().clone());
        self.changed.set(self.changed.get() + 1);
    }

    fn stop(&mut self, why: String) {
        tracing::error!("{why}; stopping this node");
        self.fatal = Some(why);
    }

    pub fn controller(&self) -> Option<u32> {
        match &self.member {
            Member::Voter(q) => q.leader().and_then(|l| u32::try_from(l).ok()),
            Member::Observer(o) => o.controller,
        }
    }

    fn send(&mut self, to: u32, frame: Bytes) {
        self.link_to_broker(to);
        if let Some((_, tx)) = self.peers.get(&to) {
            // A full queue means the peer is down or slow: drop, raft resends.
            let _ = tx.try_send(frame);
        }
    }

    /// Opens (or, if its address changed, reopens) a connection to a
    /// broker that is not a voter, at the address it registered. Voters'
    /// connections are opened at start.
    fn link_to_broker(&mut self, to: u32) {
        if self.links.voters.contains(&to) || to == self.me {
            return;
        }
        let addr = match self.seen.get(&to) {
            Some(s) => s.endpoints.cluster.clone(),
            None => match self.state().brokers.get(&to) {
                Some(b) => b.endpoints.cluster.clone(),
                None => return,
            },
        };
        if self.peers.get(&to).is_some_and(|(a, _)| *a == addr) {
            return;
        }
        let (tx, rx) = local_channel::new_bounded(PEER_QUEUE_FRAMES);
        // Dropping the old sender ends the old connection's task.
        self.peers.insert(to, (addr.clone(), tx));
        let link = PeerLink {
            links: self.links.clone(),
            peer: to,
            addr,
            rx,
        };
        glommio::spawn_local(peer_loop(link)).detach();
    }

    /// Persists, applies and sends what the quorum has ready.
    fn flush(&mut self) {
        let Member::Voter(quorum) = &mut self.member else {
            return;
        };
        if quorum.halted().is_some() {
            return;
        }
        match quorum.poll() {
            Ok(out) => {
                if !out.applied.is_empty() || out.restored_snapshot.is_some() {
                    self.publish();
                }
                for m in out.messages {
                    if let Ok(to) = u32::try_from(m.to) {
                        self.send(to, frame(KIND_RAFT, &m.bytes));
                    }
                }
                for a in out.applied {
                    match &a.outcome {
                        Ok(_) => tracing::debug!(index = a.index, command = ?a.command, "applied"),
                        Err(e) => {
                            tracing::debug!(index = a.index, command = ?a.command, error = %e, "applied as a no-op")
                        }
                    }
                    if let Some((term, waiter)) = self.pending.remove(&a.index) {
                        let answer = if term == a.term {
                            a.outcome.map_err(ProposeError::Refused)
                        } else {
                            Err(ProposeError::Retry(
                                "the proposal was lost to a change of controller".into(),
                            ))
                        };
                        self.answer(waiter, answer);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "controller quorum failed; this node stops taking part"),
        }
    }

    /// An observer takes a voter's answer: the state if it is newer than
    /// what it holds, and who the controller is.
    fn observe(&mut self, answer: MetaAnswer) {
        let Member::Observer(o) = &mut self.member else {
            return;
        };
        if answer.term >= o.term {
            o.term = answer.term;
            o.controller = answer.controller;
        }
        match answer.state {
            Some(state) if answer.index > o.applied_index => {
                o.state = state;
                o.applied_index = answer.index;
                self.publish();
            }
            _ => {}
        }
    }

    /// What a voter tells an observer that knows the state up to `known`.
    fn meta_answer(&self, known: u64) -> Result<Bytes, String> {
        let index = self.applied_index();
        let mut p = BytesMut::new();
        p.put_u64(index);
        p.put_u64(self.term());
        p.put_u32(self.controller().unwrap_or(0));
        if index > known {
            p.put_slice(&self.state().encode()?);
        }
        Ok(frame(KIND_META, &p))
    }

    /// Proposes `cmd` through the active controller (this node, or the one
    /// it forwards to); the answer comes once the command is applied here
    /// or there. The caller bounds the wait.
    pub fn propose(&mut self, cmd: &Command) -> oneshot::Receiver<Answer> {
        let (tx, rx) = oneshot::channel();
        self.submit(cmd, Waiter::Local(tx));
        rx
    }

    fn submit(&mut self, cmd: &Command, waiter: Waiter) {
        if let Member::Voter(quorum) = &mut self.member {
            if quorum.is_leader() {
                match quorum.propose(cmd) {
                    Ok(p) => {
                        self.pending.insert(p.index, (p.term, waiter));
                        self.flush();
                    }
                    Err(e) => self.answer(waiter, Err(ProposeError::Failed(e.to_string()))),
                }
                return;
            }
        }
        match (self.controller(), waiter) {
            (Some(c), Waiter::Local(tx)) => match cmd.encode() {
                Ok(bytes) => {
                    self.next_req += 1;
                    let req = self.next_req;
                    self.forwarded.insert(req, (c, tx));
                    let mut p = BytesMut::with_capacity(8 + bytes.len());
                    p.put_u64(req);
                    p.put_slice(&bytes);
                    self.send(c, frame(KIND_PROPOSE, &p));
                }
                Err(e) => {
                    let _ = tx.send(Err(ProposeError::Failed(e)));
                }
            },
            // Forwarded to a node that no longer leads: the proposer retries.
            (_, waiter) => self.answer(waiter, Err(ProposeError::Retry("no active controller here".into()))),
        }
    }

    fn answer(&mut self, waiter: Waiter, answer: Answer) {
        match waiter {
            Waiter::Local(tx) => {
                let _ = tx.send(answer);
            }
            Waiter::Remote { node, req } => self.send(node, proposed_frame(req, &answer)),
        }
    }

    fn on_propose(&mut self, from: u32, mut b: Bytes) {
        if b.remaining() < 8 {
            tracing::warn!(from, "refused a truncated proposal");
            return;
        }
        let req = b.get_u64();
        let waiter = Waiter::Remote { node: from, req };
        match Command::decode(&b) {
            Ok(cmd) => self.submit(&cmd, waiter),
            Err(e) => self.answer(waiter, Err(ProposeError::Failed(format!("undecodable command: {e}")))),
        }
    }

    fn on_proposed(&mut self, from: u32, b: Bytes) {
        match parse_proposed(b) {
            Ok((req, answer)) => {
                if let Some((_, tx)) = self.forwarded.remove(&req) {
                    let _ = tx.send(answer);
                }
            }
            Err(e) => tracing::warn!(from, error = %e, "refused a proposal answer"),
        }
    }

    fn on_raft(&mut self, from: u32, bytes: &[u8]) {
        let Member::Voter(quorum) = &mut self.member else {
            tracing::warn!(from, "refused a controller message: this node is not a voter");
            return;
        };
        if let Err(e) = quorum.step(u64::from(from), bytes) {
            tracing::warn!(from, error = %e, "refused a controller message");
        }
        self.flush();
    }

    fn on_heartbeat(&mut self, from: u32, incarnation: u64, endpoints: BrokerEndpoints) {
        self.seen.insert(
            from,
            Seen {
                at: Instant::now(),
                incarnation,
                endpoints,
            },
        );
    }

    /// One timer tick: raft's clock, this broker's heartbeat, and the
    /// active controller's duties.
    fn tick(&mut self) {
        if self.fatal.is_some() {
            return;
        }
        let refused_by = self.links.refusals.borrow().len();
        if refused_by > self.links.voters.len() / 2 {
            let mut named: Vec<String> = self
                .links
                .refusals
                .borrow()
                .iter()
                .map(|(v, id)| format!("{v} ({id})"))
                .collect();
            named.sort();
            self.stop(format!(
                "voters {} refuse this node as belonging to another cluster (this data directory: {}); \
                 give it an empty data directory to join them",
                named.join(", "),
                self.view.cluster_id().unwrap_or("none")
            ));
            return;
        }
        if let Member::Voter(quorum) = &mut self.member {
            if quorum.halted().is_some() {
                // Reported once, when it halted; a restart recovers from disk.
                return;
            }
            if let Err(e) = quorum.tick() {
                tracing::error!(error = %e, "controller quorum failed; this node stops taking part");
            }
        }
        let now = Instant::now();
        if self.last_heartbeat.is_none_or(|t| now - t >= HEARTBEAT_EVERY) {
            self.last_heartbeat = Some(now);
            match self.controller() {
                Some(c) if c == self.me => self.on_heartbeat(self.me, self.incarnation, self.endpoints.clone()),
                Some(c) => self.send(c, heartbeat_frame(self.incarnation, &self.endpoints)),
                None => {}
            }
        }
        if self.is_leader() {
            self.controller_duties(now);
        } else {
            self.leading_since = None;
            self.seen.clear();
            self.proposed.clear();
            self.init_proposed = None;
            // Not leading: nothing proposed here will be answered here.
            for (_, (_, waiter)) in std::mem::take(&mut self.pending) {
                self.answer(waiter, Err(ProposeError::Retry("the controller changed".into())));
            }
        }
        // Callers that gave up.
        self.forwarded.retain(|_, (_, tx)| !tx.is_canceled());
        // Forwarded to a controller that is no longer the one: its answer
        // may never come; the proposer retries.
        let controller = self.controller();
        let lost: Vec<u64> = self
            .forwarded
            .iter()
            .filter(|(_, (to, _))| Some(*to) != controller)
            .map(|(&req, _)| req)
            .collect();
        for req in lost {
            if let Some((_, tx)) = self.forwarded.remove(&req) {
                let _ = tx.send(Err(ProposeError::Retry("the controller changed".into())));
            }
        }
        self.flush();
    }

    /// Proposes a preferred-leader election for every partition whose
    /// preferred replica is live and in sync but does not lead (Kafka's
    /// auto.leader.rebalance, and `sluice cluster elect-leaders`). Returns
    /// how many were proposed; each is answered like any proposal.
    pub fn elect_preferred_leaders(&mut self) -> usize {
        let moves = self.state().imbalanced();
        for (topic, partition) in &moves {
            tracing::info!(topic, partition, "proposing the preferred leader");
            let cmd = Command::ElectPreferred {
                topic: topic.clone(),
                partition: *partition,
            };
            // Answered once applied; nobody waits: a failed election is
            // tried again at the next check.
            drop(self.propose(&cmd));
        }
        moves.len()
    }

    fn controller_duties(&mut self, now: Instant) {
        let Member::Voter(quorum) = &mut self.member else {
            return;
        };
        let since = *self.leading_since.get_or_insert(now);
        // The first controller names the cluster (a voter whose data
        // directory already knows the name keeps it).
        if quorum.state().cluster_id.is_none() && self.init_proposed.is_none_or(|t| now - t >= REPROPOSE_AFTER) {
            self.init_proposed = Some(now);
            let id = match self.view.cluster_id() {
                Some(id) => id.to_string(),
                None => crate::rng::SplitMix64(self.incarnation ^ 0x5EED_C1A5_7E12_1D00).uuid(),
            };
            tracing::info!(cluster_id = %id, "naming the cluster");
            if let Err(e) = quorum.propose(&Command::InitCluster { id }) {
                tracing::warn!(error = %e, "proposal refused");
            }
        }
        // A new controller first gives every broker a session to come
        // back, then balances leadership every interval.
        let due = self
            .last_rebalance
            .map_or(now - since >= self.session_timeout, |t| now - t >= self.rebalance_every);
        if due && !self.rebalance_every.is_zero() {
            self.last_rebalance = Some(now);
            self.elect_preferred_leaders();
        }
        let Member::Voter(quorum) = &mut self.member else {
            return;
        };
        let mut commands = Vec::new();
        for (&id, seen) in &self.seen {
            let fresh = now - seen.at < self.session_timeout;
            if !fresh {
                continue;
            }
            match quorum.state().brokers.get(&id) {
                Some(b) if b.incarnation == seen.incarnation && b.endpoints == seen.endpoints => {
                    if b.fenced {
                        commands.push((id, Command::UnfenceBroker { id }));
                    }
                }
                _ => commands.push((
                    id,
                    Command::RegisterBroker {
                        id,
                        incarnation: seen.incarnation,
                        endpoints: seen.endpoints.clone(),
                    },
                )),
            }
        }
        if now - since >= self.session_timeout {
            for (&id, b) in &quorum.state().brokers {
                let silent = self.seen.get(&id).is_none_or(|s| now - s.at >= self.session_timeout);
                if !b.fenced && silent {
                    commands.push((id, Command::FenceBroker { id }));
                }
            }
        }
        for (id, cmd) in commands {
            if self.proposed.get(&id).is_some_and(|t| now - *t < REPROPOSE_AFTER) {
                continue;
            }
            self.proposed.insert(id, now);
            tracing::info!(command = ?cmd, "controller proposes");
            if let Err(e) = quorum.propose(&cmd) {
                tracing::warn!(error = %e, "proposal refused");
            }
        }
    }

    /// A plain-text view for `GET /cluster` and `sluice cluster describe`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let controller = self.controller().map_or("none".to_string(), |c| c.to_string());
        let _ = writeln!(
            out,
            "node {} controller {controller} term {} applied {} {}",
            self.me,
            self.term(),
            self.applied_index(),
            match self.member {
                Member::Voter(_) => "voter",
                Member::Observer(_) => "broker",
            }
        );
        let _ = writeln!(
            out,
            "cluster {}",
            self.state().cluster_id.as_deref().unwrap_or("unnamed")
        );
        for (id, b) in &self.state().brokers {
            let _ = writeln!(
                out,
                "broker {id} {} kafka {} native {} cluster {} incarnation {}",
                if b.fenced { "fenced" } else { "live" },
                b.endpoints.kafka,
                b.endpoints.native,
                b.endpoints.cluster,
                b.incarnation
            );
        }
        for (name, t) in &self.state().topics {
            for (i, p) in t.partitions.iter().enumerate() {
                let leader = p.leader.map_or("none".to_string(), |l| l.to_string());
                let _ = write!(
                    out,
                    "partition {name}-{i} leader {leader} epoch {} replicas {:?} isr {:?}",
                    p.leader_epoch, p.replicas, p.isr
                );
                match &p.target {
                    Some(target) => {
                        let _ = writeln!(out, " reassigning-to {target:?}");
                    }
                    None => out.push('\n'),
                }
            }
        }
        out
    }
}

/// A fresh incarnation: differs on every start of a node.
fn incarnation() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(40)
}

pub(crate) fn frame(kind: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + payload.len());
    b.put_u32((payload.len() + 1) as u32);
    b.put_u8(kind);
    b.put_slice(payload);
    b.freeze()
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_u16(s.len().min(u16::MAX as usize) as u16);
    b.put_slice(&s.as_bytes()[..s.len().min(u16::MAX as usize)]);
}

fn heartbeat_frame(incarnation: u64, e: &BrokerEndpoints) -> Bytes {
    let mut p = BytesMut::new();
    p.put_u64(incarnation);
    for s in [&e.kafka, &e.native, &e.cluster] {
        put_str(&mut p, s);
    }
    frame(KIND_HEARTBEAT, &p)
}

fn get_str(b: &mut Bytes) -> Result<String, String> {
    if b.remaining() < 2 {
        return Err("truncated string".into());
    }
    let n = b.get_u16() as usize;
    if b.remaining() < n {
        return Err("truncated string".into());
    }
    String::from_utf8(b.split_to(n).to_vec()).map_err(|_| "a string that is not UTF-8".into())
}

/// `req u64 | tag u8 | value`: 0 done, 1 producer ids (`first i64`), 2
/// partitions changed, 3 failed (`message`), 4 retry (`message`), 5
/// refused (the command error, TOML).
#[derive(Serialize, Deserialize)]
struct Refusal {
    error: CommandError,
}

fn proposed_frame(req: u64, answer: &Answer) -> Bytes {
    let mut p = BytesMut::new();
    p.put_u64(req);
    match answer {
        Ok(Applied::Done) => p.put_u8(0),
        Ok(Applied::ProducerIds(first)) => {
            p.put_u8(1);
            p.put_i64(*first);
        }
        Ok(Applied::Partitions(_)) => p.put_u8(2),
        Err(ProposeError::Failed(m)) => {
            p.put_u8(3);
            put_str(&mut p, m);
        }
        Err(ProposeError::Retry(m)) => {
            p.put_u8(4);
            put_str(&mut p, m);
        }
        Err(ProposeError::Refused(e)) => match toml::to_string(&Refusal { error: e.clone() }) {
            Ok(text) => {
                p.put_u8(5);
                put_str(&mut p, &text);
            }
            Err(_) => {
                p.put_u8(3);
                put_str(&mut p, &e.to_string());
            }
        },
    }
    frame(KIND_PROPOSED, &p)
}

fn parse_proposed(mut b: Bytes) -> Result<(u64, Answer), String> {
    if b.remaining() < 9 {
        return Err("truncated answer".into());
    }
    let req = b.get_u64();
    let answer = match b.get_u8() {
        0 => Ok(Applied::Done),
        1 if b.remaining() == 8 => Ok(Applied::ProducerIds(b.get_i64())),
        2 => Ok(Applied::Partitions(Vec::new())),
        3 => Err(ProposeError::Failed(get_str(&mut b)?)),
        4 => Err(ProposeError::Retry(get_str(&mut b)?)),
        5 => {
            let refusal: Refusal = toml::from_str(&get_str(&mut b)?).map_err(|e| format!("a refusal: {e}"))?;
            Err(ProposeError::Refused(refusal.error))
        }
        tag => return Err(format!("unknown answer tag {tag}")),
    };
    Ok((req, answer))
}

/// The reassignment an admin request asks for:
/// `topic=T&partition=P&replicas=1,2,3`, or `topic=T&partition=P&cancel=true`
/// (the query of `POST /cluster/reassign`).
pub fn parse_reassign(query: &str) -> Result<Command, String> {
    let (mut topic, mut partition, mut replicas, mut cancel) = (None, None, None, false);
    for pair in query.split('&') {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not KEY=VALUE"))?;
        match k {
            "topic" => topic = Some(v.to_string()),
            "partition" => partition = Some(v.parse::<u32>().map_err(|_| format!("bad partition {v:?}"))?),
            "replicas" => {
                let ids: Result<Vec<u32>, _> = v.split(',').map(str::parse).collect();
                replicas = Some(ids.map_err(|_| format!("bad replicas {v:?}"))?);
            }
            "cancel" => cancel = v == "true",
            _ => return Err(format!("unknown parameter {k:?}")),
        }
    }
    let topic = topic.ok_or("topic= is missing")?;
    let partition = partition.ok_or("partition= is missing")?;
    match (replicas, cancel) {
        (Some(replicas), false) => Ok(Command::ReassignPartition {
            topic,
            partition,
            replicas,
        }),
        (None, true) => Ok(Command::CancelReassignment { topic, partition }),
        (Some(_), true) => Err("replicas= and cancel=true exclude each other".into()),
        (None, false) => Err("replicas= is missing".into()),
    }
}

impl ProposeError {
    /// The code a client hears for it.
    pub fn code(&self) -> crate::api::ErrorCode {
        use crate::api::ErrorCode;
        match self {
            ProposeError::Refused(CommandError::TopicExists(_)) => ErrorCode::TopicAlreadyExists,
            ProposeError::Refused(CommandError::UnknownPartition(..)) => ErrorCode::UnknownTopicOrPartition,
            ProposeError::Refused(CommandError::InvalidAssignment(_) | CommandError::UnknownBroker(_)) => {
                ErrorCode::InvalidReplicaAssignment
            }
            ProposeError::Refused(CommandError::AlterIsr(_)) => ErrorCode::InvalidRequest,
            ProposeError::Refused(CommandError::PartitionCount { .. }) => ErrorCode::InvalidPartitions,
            ProposeError::Refused(CommandError::NoReassignment(..)) => ErrorCode::NoReassignmentInProgress,
            ProposeError::Refused(CommandError::CancelUnsafe(..)) => ErrorCode::InvalidReplicaAssignment,
            ProposeError::Refused(CommandError::ProducerIdsExhausted | CommandError::ClusterNamed(_)) => {
                ErrorCode::Unknown
            }
            ProposeError::Retry(_) | ProposeError::Failed(_) => ErrorCode::RequestTimedOut,
        }
    }
}

/// Proposes `cmd` and waits at most `within` for its outcome.
pub async fn propose_and_wait(cluster: &Rc<RefCell<Cluster>>, cmd: &Command, within: Duration) -> Answer {
    let rx = cluster.borrow_mut().propose(cmd);
    match glommio::timer::timeout(within, async { Ok(rx.await) }).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err(ProposeError::Failed("the proposal was dropped".into())),
        Err(_) => Err(ProposeError::Failed("no answer from the controller in time".into())),
    }
}

fn parse_heartbeat(mut b: Bytes) -> Result<(u64, BrokerEndpoints), String> {
    if b.remaining() < 8 {
        return Err("truncated heartbeat".into());
    }
    let incarnation = b.get_u64();
    let endpoints = BrokerEndpoints {
        kafka: get_str(&mut b)?,
        native: get_str(&mut b)?,
        cluster: get_str(&mut b)?,
    };
    if b.has_remaining() {
        return Err("trailing bytes in a heartbeat".into());
    }
    Ok((incarnation, endpoints))
}

/// The outgoing connection to one peer: its address and frame queue.
pub struct PeerLink {
    links: Rc<LinkContext>,
    peer: u32,
    addr: String,
    rx: LocalReceiver<Bytes>,
}

/// Keeps a connection to the peer open and writes its queued frames;
/// reconnects with a growing pause when it breaks. Ends when its queue's
/// sender is dropped.
async fn peer_loop(link: PeerLink) {
    const SECOND: Duration = Duration::from_secs(1);
    let mut backoff = Backoff::new();
    let mut next: Option<Bytes> = None;
    loop {
        let (mut stream, greeting) = match handshake::dial(&link.addr, &link.links.view.hello(KIND_HELLO)).await {
            Ok(dialed) => dialed,
            Err(e) => {
                tracing::debug!(peer = link.peer, error = %e, "could not reach the peer");
                backoff.wait(Duration::ZERO, SECOND).await;
                continue;
            }
        };
        link.links.heard(link.peer, &greeting);
        if let Greeting::Refused { reason, .. } = &greeting {
            tracing::warn!(peer = link.peer, addr = %link.addr, %reason, "peer refused this node");
            backoff.wait(SECOND, 5 * SECOND).await;
            continue;
        }
        backoff.reset();
        tracing::debug!(peer = link.peer, addr = %link.addr, "connected to peer");
        loop {
            let f = match next.take() {
                Some(f) => f,
                None => match link.rx.recv().await {
                    Some(f) => f,
                    None => return,
                },
            };
            if stream.write_all(&f).await.is_err() {
                // Raft resends; a proposal's answer is worth one more try.
                next = Some(f);
                break;
            }
        }
    }
}

/// Reads one frame of at most `max` bytes: (kind, payload).
pub(crate) async fn read_frame(stream: &mut TcpStream, max: usize) -> Result<(u8, Bytes), String> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await.map_err(|e| e.to_string())?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len == 0 || len > max {
        return Err(format!("frame of {len} bytes"));
    }
    let mut buf = crate::recv_buf::read_exact(stream, len)
        .await
        .map_err(|e| e.to_string())?;
    let kind = buf.get_u8();
    Ok((kind, buf))
}

/// Answers a hello: refused (with the reason, logged) or welcome.
async fn admit(cluster: &Rc<RefCell<Cluster>>, stream: &mut TcpStream, peer: &str, hello: &Hello) -> bool {
    let (ours, voter, broker) = {
        let c = cluster.borrow();
        (
            c.view.cluster_id().map(str::to_string),
            c.links.voters.contains(&hello.node),
            c.state().brokers.contains_key(&hello.node),
        )
    };
    let refusal = match handshake::check(ours.as_deref(), hello.cluster_id.as_deref()) {
        Err(why) => Some(why),
        Ok(()) if hello.kind == fetch::KIND_HELLO_FETCH && !voter && !broker => {
            Some(format!("node {} is not a broker of this cluster", hello.node))
        }
        Ok(()) if hello.node == 0 => Some("node id 0 is not a cluster member's".into()),
        Ok(()) => None,
    };
    let greeting = match &refusal {
        Some(reason) => {
            tracing::warn!(%peer, from = hello.node, %reason, "refusing an inter-broker connection");
            Greeting::Refused {
                cluster_id: ours,
                reason: reason.clone(),
            }
        }
        None => Greeting::Welcome { cluster_id: ours },
    };
    stream.write_all(&greeting.encode()).await.is_ok() && refusal.is_none()
}

/// Serves one incoming peer connection.
async fn serve_peer(cluster: Rc<RefCell<Cluster>>, shard: Rc<Shard>, mut stream: TcpStream) {
    let peer = stream.peer_addr().map_or_else(|_| "?".to_string(), |a| a.to_string());
    let hello = glommio::timer::timeout(HELLO_TIMEOUT, async {
        Ok(read_frame(&mut stream, HELLO_BYTES_MAX).await)
    });
    let hello = match hello.await {
        Ok(Ok((kind @ (KIND_HELLO | KIND_HELLO_META | fetch::KIND_HELLO_FETCH), b))) => Hello::decode(kind, b),
        _ => Err("no hello".to_string()),
    };
    let hello = match hello {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "refusing an inter-broker connection that does not introduce itself");
            return;
        }
    };
    if !admit(&cluster, &mut stream, &peer, &hello).await {
        return;
    }
    let from = hello.node;
    match hello.kind {
        fetch::KIND_HELLO_FETCH => return serve_fetcher(shard, from, stream).await,
        KIND_HELLO_META => return serve_meta(cluster, from, stream).await,
        _ => {}
    }
    let voter = cluster.borrow().links.voters.contains(&from);
    loop {
        match read_frame(&mut stream, FRAME_BYTES_MAX).await {
            Ok((KIND_RAFT, b)) if voter => cluster.borrow_mut().on_raft(from, &b),
            Ok((KIND_RAFT, _)) => {
                tracing::warn!(
                    from,
                    "closing an inter-broker connection: raft messages from a node that is not a voter"
                );
                return;
            }
            Ok((KIND_HEARTBEAT, b)) => match parse_heartbeat(b) {
                Ok((inc, endpoints)) => cluster.borrow_mut().on_heartbeat(from, inc, endpoints),
                Err(e) => tracing::warn!(from, error = %e, "refused a heartbeat"),
            },
            Ok((KIND_PROPOSE, b)) => cluster.borrow_mut().on_propose(from, b),
            Ok((KIND_PROPOSED, b)) => cluster.borrow_mut().on_proposed(from, b),
            Ok((kind, _)) => {
                tracing::warn!(from, kind, "closing an inter-broker connection: unknown frame kind");
                return;
            }
            Err(e) => {
                tracing::debug!(from, error = %e, "inter-broker connection closed");
                return;
            }
        }
    }
}

/// A voter serves an observer's metadata fetches, in order on the same
/// connection: each is held until the state moves past what the observer
/// knows, or [`META_WAIT`].
async fn serve_meta(cluster: Rc<RefCell<Cluster>>, from: u32, mut stream: TcpStream) {
    if !matches!(cluster.borrow().member, Member::Voter(_)) {
        tracing::warn!(from, "closing a metadata fetch: this node is not a voter");
        return;
    }
    loop {
        let known = match read_frame(&mut stream, HELLO_BYTES_MAX).await {
            Ok((KIND_META_FETCH, mut b)) if b.len() == 8 => b.get_u64(),
            Ok((kind, _)) => {
                tracing::warn!(from, kind, "closing a metadata connection: unexpected frame");
                return;
            }
            Err(e) => {
                tracing::debug!(from, error = %e, "metadata connection closed");
                return;
            }
        };
        let (changed, seen, behind) = {
            let c = cluster.borrow();
            (c.changed(), c.changed.get(), c.applied_index() <= known)
        };
        if behind {
            let _ = glommio::timer::timeout(META_WAIT, async {
                changed.wait_for(seen + 1).await;
                Ok(())
            })
            .await;
        }
        let answer = cluster.borrow().meta_answer(known);
        match answer {
            Ok(f) => {
                if stream.write_all(&f).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(from, error = %e, "could not encode the metadata");
                return;
            }
        }
    }
}

/// A voter's answer to a metadata fetch.
struct MetaAnswer {
    index: u64,
    term: u64,
    controller: Option<u32>,
    state: Option<ClusterState>,
}

fn parse_meta(mut b: Bytes) -> Result<MetaAnswer, String> {
    if b.remaining() < 20 {
        return Err("truncated metadata answer".into());
    }
    let index = b.get_u64();
    let term = b.get_u64();
    let controller = Some(b.get_u32()).filter(|&c| c != 0);
    let state = if b.has_remaining() {
        Some(ClusterState::decode(&b).map_err(|e| format!("undecodable metadata: {e}"))?)
    } else {
        None
    };
    Ok(MetaAnswer {
        index,
        term,
        controller,
        state,
    })
}

/// An observer keeps the applied metadata current: it fetches from a
/// voter, the active controller when it knows which, and moves on to
/// another voter when one fails.
async fn observe_loop(cluster: Rc<RefCell<Cluster>>, voters: Vec<Voter>) {
    let links = cluster.borrow().links.clone();
    let mut turn = 0usize;
    let mut pause = Duration::from_millis(50);
    loop {
        if cluster.borrow().fatal().is_some() {
            return;
        }
        let controller = cluster.borrow().controller();
        let voter = match controller.and_then(|c| voters.iter().find(|v| v.id == c)) {
            Some(v) => v.clone(),
            None => {
                turn += 1;
                voters[turn % voters.len()].clone()
            }
        };
        match observe_from(&cluster, &links, &voter).await {
            Ok(()) => pause = Duration::from_millis(50),
            Err(e) => {
                tracing::debug!(voter = voter.id, error = %e, "metadata fetch failed");
                // Try another voter next time.
                if let Member::Observer(o) = &mut cluster.borrow_mut().member {
                    o.controller = o.controller.filter(|&c| c != voter.id);
                }
                turn += 1;
                glommio::timer::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Fetches from one voter until it fails, or names another controller.
async fn observe_from(cluster: &Rc<RefCell<Cluster>>, links: &Rc<LinkContext>, voter: &Voter) -> Result<(), String> {
    let (mut stream, greeting) = handshake::dial(&voter.addr, &links.view.hello(KIND_HELLO_META)).await?;
    links.heard(voter.id, &greeting);
    if let Greeting::Refused { reason, .. } = greeting {
        glommio::timer::sleep(Duration::from_secs(1)).await;
        return Err(format!("refused: {reason}"));
    }
    loop {
        let known = cluster.borrow().applied_index();
        let mut req = BytesMut::with_capacity(8);
        req.put_u64(known);
        stream
            .write_all(&frame(KIND_META_FETCH, &req))
            .await
            .map_err(|e| e.to_string())?;
        let answer = glommio::timer::timeout(META_ANSWER_TIMEOUT, async {
            Ok(read_frame(&mut stream, FRAME_BYTES_MAX).await)
        })
        .await
        .map_err(|_| "no metadata answer in time".to_string())??;
        let answer = match answer {
            (KIND_META, b) => parse_meta(b)?,
            (kind, _) => return Err(format!("frame kind {kind} where metadata was expected")),
        };
        let named = answer.controller;
        cluster.borrow_mut().observe(answer);
        if named.is_some_and(|c| c != voter.id) && cluster.borrow().controller() == named {
            // Fresher from the controller itself.
            return Ok(());
        }
    }
}

/// Serves a follower's fetcher: its fetches, answered in order on the same
/// connection, until it closes or sends something else.
async fn serve_fetcher(shard: Rc<Shard>, from: u32, mut stream: TcpStream) {
    let mut small = BytesMut::new();
    loop {
        let req = match read_frame(&mut stream, FRAME_BYTES_MAX).await {
            Ok((fetch::KIND_FETCH, b)) => match fetch::FetchRequest::decode(b) {
                Ok(req) if req.replica == from => req,
                Ok(req) => {
                    tracing::warn!(
                        from,
                        replica = req.replica,
                        "closing a fetcher that fetches for another node"
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(from, error = %e, "closing a fetcher that sent a malformed fetch");
                    return;
                }
            },
            Ok((kind, _)) => {
                tracing::warn!(from, kind, "closing a fetcher connection: unexpected frame kind");
                return;
            }
            Err(e) => {
                tracing::debug!(from, error = %e, "fetcher connection closed");
                return;
            }
        };
        let answer = fetch::encode_answer(shard.serve_replica_fetch(req).await);
        if crate::protocol::write_chunks(&mut stream, &mut small, answer)
            .await
            .is_err()
        {
            return;
        }
        if !small.is_empty() && stream.write_all(&small.split()).await.is_err() {
            return;
        }
    }
}

/// Starts cluster mode on this (shard 0's) executor: the listener, the
/// peer connections and the ticker. Returns the shared state, for the
/// `/cluster` view.
pub fn start(
    cluster: Cluster,
    links: Vec<PeerLink>,
    settings: &ClusterSettings,
    shard: Rc<Shard>,
) -> Result<Rc<RefCell<Cluster>>, String> {
    let listener = TcpListener::bind(settings.cluster_addr)
        .map_err(|e| format!("cluster listener on {}: {e}", settings.cluster_addr))?;
    let cluster = Rc::new(RefCell::new(cluster));
    for link in links {
        glommio::spawn_local(peer_loop(link)).detach();
    }
    if !settings.is_voter() {
        glommio::spawn_local(observe_loop(cluster.clone(), settings.voters.clone())).detach();
    }
    let c = cluster.clone();
    let inbound_max = INBOUND_MAX.max(4 * settings.voters.len());
    let open = Rc::new(std::cell::Cell::new(0usize));
    glommio::spawn_local(async move {
        loop {
            match listener.accept().await {
                Ok(stream) if open.get() >= inbound_max => {
                    tracing::warn!(inbound_max, "refusing an inter-broker connection: too many open");
                    drop(stream);
                }
                Ok(stream) => {
                    let (c, open, shard) = (c.clone(), open.clone(), shard.clone());
                    open.set(open.get() + 1);
                    glommio::spawn_local(async move {
                        serve_peer(c, shard, stream).await;
                        open.set(open.get() - 1);
                    })
                    .detach();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an inter-broker connection failed");
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
    .detach();
    let c = cluster.clone();
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(TICK).await;
            c.borrow_mut().tick();
        }
    })
    .detach();
    Ok(cluster)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::replica::AlterIsrError;

    #[test]
    fn proposal_answers_round_trip_and_damage_is_refused() {
        for answer in [
            Ok(Applied::Done),
            Ok(Applied::ProducerIds(7000)),
            Ok(Applied::Partitions(Vec::new())),
            Err(ProposeError::Failed("no".into())),
            Err(ProposeError::Retry("again".into())),
            Err(ProposeError::Refused(CommandError::UnknownPartition("t".into(), 3))),
            Err(ProposeError::Refused(CommandError::AlterIsr(
                AlterIsrError::StalePartitionEpoch { got: 1, current: 2 },
            ))),
            Err(ProposeError::Refused(CommandError::ProducerIdsExhausted)),
        ] {
            let mut f = proposed_frame(9, &answer);
            f.advance(5);
            assert_eq!(parse_proposed(f.clone()), Ok((9, answer)));
            for len in 0..9 {
                assert!(parse_proposed(f.slice(..len)).is_err(), "cut at {len}");
            }
        }
        assert!(parse_proposed(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 1, 9])).is_err());
    }

    #[test]
    fn reassign_requests_parse_and_bad_ones_are_refused() {
        assert_eq!(
            parse_reassign("topic=orders.v1&partition=3&replicas=4,2,3"),
            Ok(Command::ReassignPartition {
                topic: "orders.v1".into(),
                partition: 3,
                replicas: vec![4, 2, 3],
            })
        );
        assert_eq!(
            parse_reassign("topic=t&partition=0&cancel=true"),
            Ok(Command::CancelReassignment {
                topic: "t".into(),
                partition: 0
            })
        );
        for bad in [
            "",
            "topic=t",
            "topic=t&partition=0&replicas=1&cancel=true",
            "topic=t&partition=0",
            "topic=t&partition=x&replicas=1",
            "topic=t&partition=0&replicas=1,,2",
            "what=1",
        ] {
            assert!(parse_reassign(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn heartbeats_round_trip_and_damage_is_refused() {
        let e = BrokerEndpoints {
            kafka: "h:1".into(),
            native: "h:2".into(),
            cluster: "h:3".into(),
        };
        let mut f = heartbeat_frame(42, &e);
        f.advance(5);
        assert_eq!(parse_heartbeat(f.clone()), Ok((42, e)));
        for len in 0..f.len() {
            assert!(parse_heartbeat(f.slice(..len)).is_err(), "cut at {len}");
        }
        let mut long = BytesMut::from(&f[..]);
        long.put_u8(0);
        assert!(parse_heartbeat(long.freeze()).is_err());
    }
}
