//! Cluster mode on shard 0: the inter-broker listener and connections, the
//! controller quorum ticked by a timer, and the active controller's duties
//! (registering brokers from their heartbeats, fencing the ones that stop).
//!
//! This is the controller half of the cluster. Every node is a voter
//! (KRaft's combined mode); replicated partitions come next and will read
//! the applied [`ClusterState`].
//!
//! Inter-broker frames: `len u32 | kind u8 | payload`, big-endian, `len`
//! counting kind and payload and bounded. A connection carries frames one
//! way, from the node that opened it; its first frame says who that is
//! (`Hello`), and a node that is not a voter is refused. Raft's own
//! messages are framed and checked again inside (see `raft::frame`).
//! Messages to a peer that is down are dropped: raft resends.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::ToSocketAddrs;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};

use futures_channel::oneshot;

use super::fetch;
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
const HELLO_BYTES_MAX: usize = 64;
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

const KIND_HELLO: u8 = 1;
const KIND_RAFT: u8 = 2;
const KIND_HEARTBEAT: u8 = 3;
/// A command for the active controller to propose: `req u64 | command`.
const KIND_PROPOSE: u8 = 4;
/// The outcome of a forwarded proposal: `req u64 | answer`.
const KIND_PROPOSED: u8 = 5;

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

/// What the controller knows of a broker from its heartbeats.
struct Seen {
    at: Instant,
    incarnation: u64,
    endpoints: BrokerEndpoints,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("me", &self.me)
            .field("controller", &self.controller())
            .field("term", &self.quorum.term())
            .finish_non_exhaustive()
    }
}

/// Shard 0's cluster state: the quorum node and the controller duties.
pub struct Cluster {
    me: u32,
    quorum: Quorum,
    peers: HashMap<u32, LocalSender<Bytes>>,
    incarnation: u64,
    endpoints: BrokerEndpoints,
    session_timeout: Duration,
    /// While this node leads: heartbeats heard, and since when it leads
    /// (a new controller gives every broker a full session first).
    seen: HashMap<u32, Seen>,
    leading_since: Option<Instant>,
    proposed: HashMap<u32, Instant>,
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
    /// Opens the quorum's storage in `<data_dir>/raft/` (blocking; at
    /// start) and prepares the peers' queues.
    pub fn open(
        cfg: &ServeConfig,
        settings: &ClusterSettings,
        view: Arc<ClusterView>,
    ) -> Result<(Cluster, Vec<PeerLink>), String> {
        let storage = FileStorage::open(&cfg.data_dir).map_err(|e| e.to_string())?;
        let voters: Vec<u64> = settings.voters.iter().map(|v| u64::from(v.id)).collect();
        let mut qc = QuorumConfig::new(u64::from(settings.node_id), voters);
        qc.election_seed = incarnation();
        let quorum = QuorumNode::new(qc, storage).map_err(|e| format!("controller quorum: {e}"))?;
        let mut peers = HashMap::new();
        let mut links = Vec::new();
        for v in settings.voters.iter().filter(|v| v.id != settings.node_id) {
            let (tx, rx) = local_channel::new_bounded(PEER_QUEUE_FRAMES);
            peers.insert(v.id, tx);
            links.push(PeerLink {
                me: settings.node_id,
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
        let incarnation = incarnation();
        view.set_incarnation(incarnation);
        let cluster = Cluster {
            me: settings.node_id,
            quorum,
            peers,
            incarnation,
            endpoints,
            session_timeout: Duration::from_millis(cfg.broker_session_timeout_ms),
            seen: HashMap::new(),
            leading_since: None,
            proposed: HashMap::new(),
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
        Ok((cluster, links))
    }

    pub fn state(&self) -> &ClusterState {
        self.quorum.state()
    }

    /// Counts the changes of the applied state (for the reconciler).
    pub fn changed(&self) -> Rc<Watermark> {
        self.changed.clone()
    }

    fn publish(&self) {
        self.view.publish(self.quorum.state().clone());
        self.changed.set(self.changed.get() + 1);
    }

    pub fn controller(&self) -> Option<u32> {
        self.quorum.leader().and_then(|l| u32::try_from(l).ok())
    }

    fn send(&self, to: u32, frame: Bytes) {
        if let Some(tx) = self.peers.get(&to) {
            // A full queue means the peer is down or slow: drop, raft resends.
            let _ = tx.try_send(frame);
        }
    }

    /// Persists, applies and sends what the quorum has ready.
    fn flush(&mut self) {
        if self.quorum.halted().is_some() {
            return;
        }
        match self.quorum.poll() {
            Ok(out) => {
                if !out.applied.is_empty() {
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

    /// Proposes `cmd` through the active controller (this node, or the one
    /// it forwards to); the answer comes once the command is applied here
    /// or there. The caller bounds the wait.
    pub fn propose(&mut self, cmd: &Command) -> oneshot::Receiver<Answer> {
        let (tx, rx) = oneshot::channel();
        self.submit(cmd, Waiter::Local(tx));
        rx
    }

    fn submit(&mut self, cmd: &Command, waiter: Waiter) {
        if self.quorum.is_leader() {
            match self.quorum.propose(cmd) {
                Ok(p) => {
                    self.pending.insert(p.index, (p.term, waiter));
                    self.flush();
                }
                Err(e) => self.answer(waiter, Err(ProposeError::Failed(e.to_string()))),
            }
            return;
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

    fn answer(&self, waiter: Waiter, answer: Answer) {
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
        if let Err(e) = self.quorum.step(u64::from(from), bytes) {
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
        if self.quorum.halted().is_some() {
            // Reported once, when it halted; a restart recovers from disk.
            return;
        }
        if let Err(e) = self.quorum.tick() {
            tracing::error!(error = %e, "controller quorum failed; this node stops taking part");
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
        if self.quorum.is_leader() {
            self.controller_duties(now);
        } else {
            self.leading_since = None;
            self.seen.clear();
            self.proposed.clear();
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
        let since = *self.leading_since.get_or_insert(now);
        // A new controller first gives every broker a session to come
        // back, then balances leadership every interval.
        let due = self
            .last_rebalance
            .map_or(now - since >= self.session_timeout, |t| now - t >= self.rebalance_every);
        if due && !self.rebalance_every.is_zero() {
            self.last_rebalance = Some(now);
            self.elect_preferred_leaders();
        }
        let mut commands = Vec::new();
        for (&id, seen) in &self.seen {
            let fresh = now - seen.at < self.session_timeout;
            if !fresh {
                continue;
            }
            match self.quorum.state().brokers.get(&id) {
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
            for (&id, b) in &self.quorum.state().brokers {
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
            if let Err(e) = self.quorum.propose(&cmd) {
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
            "node {} controller {controller} term {} applied {}",
            self.me,
            self.quorum.term(),
            self.quorum.applied_index()
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

fn frame(kind: u8, payload: &[u8]) -> Bytes {
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
/// `topic=T&partition=P&replicas=1,2,3` (the query of
/// `POST /cluster/reassign`).
pub fn parse_reassign(query: &str) -> Result<Command, String> {
    let (mut topic, mut partition, mut replicas) = (None, None, None);
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
            _ => return Err(format!("unknown parameter {k:?}")),
        }
    }
    Ok(Command::ReassignPartition {
        topic: topic.ok_or("topic= is missing")?,
        partition: partition.ok_or("partition= is missing")?,
        replicas: replicas.ok_or("replicas= is missing")?,
    })
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
            ProposeError::Refused(CommandError::ProducerIdsExhausted) => ErrorCode::Unknown,
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
    me: u32,
    peer: u32,
    addr: String,
    rx: LocalReceiver<Bytes>,
}

/// Keeps a connection to the peer open and writes its queued frames;
/// reconnects with a growing pause when it breaks.
async fn peer_loop(link: PeerLink) {
    let mut pause = Duration::from_millis(50);
    let hello = frame(KIND_HELLO, &link.me.to_be_bytes());
    loop {
        let addr = link.addr.to_socket_addrs().ok().and_then(|mut a| a.next());
        let stream = match addr {
            Some(a) => TcpStream::connect(a).await.ok(),
            None => None,
        };
        let Some(mut stream) = stream else {
            glommio::timer::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
            continue;
        };
        let _ = stream.set_nodelay(true);
        pause = Duration::from_millis(50);
        if stream.write_all(&hello).await.is_err() {
            continue;
        }
        tracing::debug!(peer = link.peer, addr = %link.addr, "connected to peer");
        while let Some(f) = link.rx.recv().await {
            if stream.write_all(&f).await.is_err() {
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
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    let mut buf = Bytes::from(buf);
    let kind = buf.get_u8();
    Ok((kind, buf))
}

/// Serves one incoming peer connection.
async fn serve_peer(cluster: Rc<RefCell<Cluster>>, shard: Rc<Shard>, voters: Rc<Vec<u32>>, mut stream: TcpStream) {
    let peer = stream.peer_addr().map_or_else(|_| "?".to_string(), |a| a.to_string());
    let hello = glommio::timer::timeout(HELLO_TIMEOUT, async {
        Ok(read_frame(&mut stream, HELLO_BYTES_MAX).await)
    });
    let (kind, from) = match hello.await {
        Ok(Ok((kind @ (KIND_HELLO | fetch::KIND_HELLO_FETCH), b))) if b.len() == 4 => {
            (kind, u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
        _ => {
            tracing::warn!(%peer, "refusing an inter-broker connection that does not introduce itself");
            return;
        }
    };
    if !voters.contains(&from) {
        tracing::warn!(%peer, from, "refusing an inter-broker connection from a node outside the cluster");
        return;
    }
    if kind == fetch::KIND_HELLO_FETCH {
        serve_fetcher(shard, from, stream).await;
        return;
    }
    loop {
        match read_frame(&mut stream, FRAME_BYTES_MAX).await {
            Ok((KIND_RAFT, b)) => cluster.borrow_mut().on_raft(from, &b),
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
    let voters: Rc<Vec<u32>> = Rc::new(settings.voters.iter().map(|v| v.id).collect());
    for link in links {
        glommio::spawn_local(peer_loop(link)).detach();
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
                    let (c, voters, open, shard) = (c.clone(), voters.clone(), open.clone(), shard.clone());
                    open.set(open.get() + 1);
                    glommio::spawn_local(async move {
                        serve_peer(c, shard, voters, stream).await;
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
        for bad in [
            "",
            "topic=t",
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
