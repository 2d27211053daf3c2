//! [`QuorumNode`]: one voter of the controller quorum, raft-rs's `RawNode`
//! driven sans-IO: the caller ticks it, hands it peers' bytes, proposes
//! commands on the leader and polls it for bytes to send and commands
//! applied. It never does network I/O and never reads a clock; its only
//! I/O is the [`LogStorage`] it writes during `poll`, before anything that
//! depends on that write is returned.
//!
//! Invariants:
//! - entries are applied to the state machine once each, in log order, and
//!   only once committed; `applied_index <= commit_index`;
//! - nothing raft-rs asks to persist is acknowledged to a peer before it is
//!   durable: `poll` persists entries, hard state and snapshots first and
//!   returns the messages after;
//! - after every `snapshot_interval_entries` applied entries the state
//!   machine is snapshotted and the log compacted below
//!   `applied_index - log_retained_entries`, so the log held (and replayed
//!   on restart) stays under `snapshot_interval_entries +
//!   log_retained_entries` entries plus what is not yet applied;
//! - fail-stop: a storage error, an undecodable committed entry or a panic
//!   inside raft-rs halts the node; every later call returns
//!   [`Error::Halted`] and reopening from storage is the way back (in raft,
//!   a stopped node is always safe);
//! - election timeouts are drawn from a seeded generator, not raft-rs's
//!   thread RNG, so that a seeded simulation replays exactly.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use raft::prelude::{ConfState, Entry, EntryType, MessageType, Snapshot};
use raft::{ProgressState, RawNode, SnapshotStatus, StateRole};

use super::config::QuorumConfig;
use super::entry;
use super::error::{Error, MessageError, ProposeError};
use super::inbound::{self, LocalView};
use super::logger::raft_logger;
use super::state_machine::StateMachine;
use super::storage::{LogStorage, RaftStore};

/// Ready rounds handled by one `poll`; what is left waits for the next.
const READY_ROUNDS_MAX: usize = 64;

/// A message for a peer: hand `bytes` to node `to`'s [`QuorumNode::step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub to: u64,
    pub bytes: Bytes,
}

/// A committed command, applied to the local state machine, and what
/// applying it returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied<C, O> {
    pub index: u64,
    pub term: u64,
    pub command: C,
    pub outcome: O,
}

/// What one [`QuorumNode::poll`] produced.
#[derive(Debug)]
pub struct Output<C, O> {
    /// Messages to send, each to one peer, in order.
    pub messages: Vec<Outgoing>,
    /// Commands applied to the state machine, in log order.
    pub applied: Vec<Applied<C, O>>,
    /// The state machine was replaced by the leader's snapshot at this
    /// index: `applied` commands below it came before the replacement,
    /// those above it after.
    pub restored_snapshot: Option<u64>,
}

impl<C, O> Default for Output<C, O> {
    fn default() -> Self {
        Output {
            messages: Vec::new(),
            applied: Vec::new(),
            restored_snapshot: None,
        }
    }
}

/// Where a proposal landed in the log: it is committed once an entry is
/// applied at `index` with this `term`; an entry of another term there
/// means it was lost with a change of leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    pub index: u64,
    pub term: u64,
}

/// One voter of the controller quorum over storage `St`, replicating `S`.
pub struct QuorumNode<S: StateMachine, St: LogStorage> {
    raw: RawNode<RaftStore<St>>,
    config: QuorumConfig,
    voters: ConfState,
    state: S,
    applied_index: u64,
    applied_term: u64,
    snapshot_index: u64,
    /// Where the last failed snapshot attempt was (retried an interval later).
    snapshot_failed_at: u64,
    /// A leader's snapshot already decoded by `step`, for `poll` to install.
    pending_restore: Option<(u64, u64, S)>,
    /// Ticks each follower has spent waiting on a snapshot.
    snapshot_ticks: BTreeMap<u64, usize>,
    rng: u64,
    seen_role: (u64, StateRole),
    halted: Option<String>,
}

impl<S: StateMachine, St: LogStorage> QuorumNode<S, St> {
    /// Starts (or restarts) a node on `storage`: the state machine is
    /// restored from the stored snapshot, and the committed entries after it
    /// are applied again by the first `poll`.
    pub fn new(config: QuorumConfig, storage: St) -> Result<Self, Error> {
        config.validate()?;
        let mut sorted = config.voters.clone();
        sorted.sort_unstable();
        let voters = ConfState::from((sorted, Vec::<u64>::new()));
        let cache = storage.cache();
        let (state, applied_index, applied_term) = match cache.snapshot() {
            Some(snap) => {
                let meta = snap.get_metadata();
                if !inbound::same_voters(meta.get_conf_state(), &voters) {
                    return Err(Error::Config(format!(
                        "voters {:?} do not match the stored configuration {:?}",
                        config.voters,
                        meta.get_conf_state().get_voters()
                    )));
                }
                let state = S::restore(&snap.data)
                    .map_err(|e| Error::Config(format!("stored snapshot at {} does not restore: {e}", meta.index)))?;
                (state, meta.index, meta.term)
            }
            None => (S::default(), 0, 0),
        };
        let raft_config = config.raft_config(applied_index);
        let store = RaftStore {
            inner: storage,
            voters: voters.clone(),
        };
        let logger = raft_logger(config.node_id);
        let raw = catch_unwind(AssertUnwindSafe(|| RawNode::new(&raft_config, store, &logger)))
            .map_err(|p| Error::Config(format!("raft-rs refused the stored state: {}", panic_text(&p))))?
            .map_err(|e| Error::Config(format!("raft-rs refused the configuration: {e}")))?;
        let mut node = QuorumNode {
            rng: config.election_seed ^ config.node_id.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            seen_role: (raw.raft.term, raw.raft.state),
            raw,
            voters,
            state,
            applied_index,
            applied_term,
            snapshot_index: applied_index,
            snapshot_failed_at: 0,
            pending_restore: None,
            snapshot_ticks: BTreeMap::new(),
            halted: None,
            config,
        };
        node.reseed_election_timeout();
        Ok(node)
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) -> Result<(), Error> {
        self.check_halted()?;
        self.guarded("tick", |raw| raw.tick())?;
        self.expire_snapshots();
        self.observe_role();
        Ok(())
    }

    /// Starts an election now instead of waiting for the timeout.
    pub fn campaign(&mut self) -> Result<(), Error> {
        self.check_halted()?;
        let result = self.guarded("campaign", |raw| raw.campaign())?;
        self.observe_role();
        result.map_err(|e| MessageError::Raft(e.to_string()).into())
    }

    /// Takes a message that arrived from peer `from`. A malformed message,
    /// one from a node outside the quorum, or one impossible from a correct
    /// peer is refused with an error and changes nothing.
    pub fn step(&mut self, from: u64, bytes: &[u8]) -> Result<(), Error> {
        self.check_halted()?;
        let msg = inbound::decode(bytes, self.config.message_bytes_max)?;
        inbound::check_envelope(&msg, from, self.config.node_id, &self.config.voters)?;
        let local = LocalView {
            term: self.raw.raft.term,
            last_index: self.raw.raft.raft_log.last_index(),
        };
        inbound::check_consistency(&msg, &local, &self.voters)?;
        for e in msg.entries.iter() {
            entry::decode::<S::Command>(&e.data)
                .map_err(|reason| MessageError::BadCommand { index: e.index, reason })?;
        }
        if let (MessageType::MsgSnapshot, Some(snap)) = (msg.get_msg_type(), msg.snapshot.as_ref()) {
            let meta = snap.get_metadata();
            // raft-rs ignores a snapshot that does not move past the commit index.
            if meta.index > self.raw.raft.raft_log.committed {
                let state = S::restore(&snap.data).map_err(|reason| MessageError::BadSnapshot {
                    index: meta.index,
                    reason,
                })?;
                self.pending_restore = Some((meta.index, meta.term, state));
            }
        }
        let result = self.guarded("step", |raw| raw.step(msg))?;
        self.observe_role();
        result.map_err(|e| MessageError::Raft(e.to_string()).into())
    }

    /// Proposes a command; only the leader accepts. The command is
    /// committed once applied at the returned [`Proposal`]'s index and term.
    pub fn propose(&mut self, cmd: &S::Command) -> Result<Proposal, ProposeError> {
        if let Some(reason) = &self.halted {
            return Err(ProposeError::Halted(reason.clone()));
        }
        if !self.is_leader() {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader(),
            });
        }
        let data = entry::encode(cmd).map_err(ProposeError::Encode)?;
        if data.len() > self.config.command_bytes_max {
            return Err(ProposeError::TooLarge {
                bytes: data.len(),
                max: self.config.command_bytes_max,
            });
        }
        let result = self
            .guarded("propose", |raw| raw.propose(Vec::new(), data))
            .map_err(|e| ProposeError::Halted(e.to_string()))?;
        self.observe_role();
        result.map_err(|e| ProposeError::Dropped(e.to_string()))?;
        Ok(Proposal {
            index: self.raw.raft.raft_log.last_index(),
            term: self.raw.raft.term,
        })
    }

    /// Runs raft's Ready loop: persists what raft asks to (entries, hard
    /// state, snapshots), applies committed entries, snapshots and compacts
    /// when due, and returns the messages to send and the commands applied.
    pub fn poll(&mut self) -> Result<Output<S::Command, S::Outcome>, Error> {
        self.check_halted()?;
        let mut out = Output::default();
        for _ in 0..READY_ROUNDS_MAX {
            if !self.raw.has_ready() {
                break;
            }
            let round = catch_unwind(AssertUnwindSafe(|| self.handle_ready(&mut out)))
                .unwrap_or_else(|p| Err(format!("raft-rs panicked in poll: {}", panic_text(&p))));
            if let Err(reason) = round {
                return Err(self.halt(reason));
            }
        }
        if let Err(reason) = self.maybe_snapshot() {
            return Err(self.halt(reason));
        }
        Ok(out)
    }

    /// Tells raft that a message to `peer` could not be sent.
    pub fn report_unreachable(&mut self, peer: u64) {
        if self.halted.is_none() {
            self.raw.report_unreachable(peer);
        }
    }

    /// Tells raft whether a snapshot message reached `peer`.
    pub fn report_snapshot(&mut self, peer: u64, delivered: bool) {
        if self.halted.is_none() {
            let status = if delivered {
                SnapshotStatus::Finish
            } else {
                SnapshotStatus::Failure
            };
            self.raw.report_snapshot(peer, status);
            self.snapshot_ticks.remove(&peer);
        }
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<u64> {
        let id = self.raw.raft.leader_id;
        (id != 0).then_some(id)
    }

    /// Whether this node is the leader of its current term.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.config.node_id
    }

    /// The state machine, with every applied entry applied.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// The index of the last entry applied (or restored from a snapshot).
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The highest index this node knows to be committed.
    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// The index of the last snapshot taken or installed.
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    /// The storage (for its [`LogStorage::cache`]: what is held on disk).
    pub fn storage(&self) -> &St {
        &self.raw.store().inner
    }

    /// Why the node is halted, if it is.
    pub fn halted(&self) -> Option<&str> {
        self.halted.as_deref()
    }

    fn check_halted(&self) -> Result<(), Error> {
        match &self.halted {
            Some(reason) => Err(Error::Halted {
                node_id: self.config.node_id,
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn halt(&mut self, reason: String) -> Error {
        tracing::error!(node_id = self.config.node_id, %reason, "controller quorum node halted");
        self.halted = Some(reason.clone());
        Error::Halted {
            node_id: self.config.node_id,
            reason,
        }
    }

    /// Runs `f` on raft-rs; a panic inside halts the node instead of
    /// unwinding through the caller's shard.
    fn guarded<T>(&mut self, what: &str, f: impl FnOnce(&mut RawNode<RaftStore<St>>) -> T) -> Result<T, Error> {
        match catch_unwind(AssertUnwindSafe(|| f(&mut self.raw))) {
            Ok(v) => Ok(v),
            Err(p) => Err(self.halt(format!("raft-rs panicked in {what}: {}", panic_text(&p)))),
        }
    }

    /// raft-rs redraws the election timeout from its thread RNG whenever the
    /// term or role changes; redraw it from ours instead.
    fn observe_role(&mut self) {
        let now = (self.raw.raft.term, self.raw.raft.state);
        if now != self.seen_role {
            self.seen_role = now;
            self.reseed_election_timeout();
        }
    }

    fn reseed_election_timeout(&mut self) {
        let span = self.config.election_ticks as u64;
        let timeout = self.config.election_ticks + (splitmix64(&mut self.rng) % span) as usize;
        self.raw.raft.set_randomized_election_timeout(timeout);
    }

    /// A leader re-sends a snapshot that a follower has not confirmed for
    /// `snapshot_timeout_ticks` (raft-rs waits for a report otherwise).
    fn expire_snapshots(&mut self) {
        if !self.is_leader() {
            self.snapshot_ticks.clear();
            return;
        }
        let waiting: Vec<u64> = self
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(_, pr)| pr.state == ProgressState::Snapshot)
            .map(|(&id, _)| id)
            .collect();
        self.snapshot_ticks.retain(|id, _| waiting.contains(id));
        for id in waiting {
            let ticks = self.snapshot_ticks.entry(id).or_insert(0);
            *ticks += 1;
            if *ticks > self.config.snapshot_timeout_ticks {
                self.snapshot_ticks.remove(&id);
                self.raw.report_snapshot(id, SnapshotStatus::Failure);
            }
        }
    }

    fn handle_ready(&mut self, out: &mut Output<S::Command, S::Outcome>) -> Result<(), String> {
        let mut rd = self.raw.ready();
        self.collect(rd.take_messages(), out)?;
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            self.install(&snap, out)?;
        }
        let committed = rd.take_committed_entries();
        let store = &mut self.raw.mut_store().inner;
        store.append(rd.entries()).map_err(|e| e.to_string())?;
        if let Some(hs) = rd.hs() {
            store.set_hard_state(hs).map_err(|e| e.to_string())?;
        }
        self.apply(committed, out)?;
        self.collect(rd.take_persisted_messages(), out)?;
        let mut light = self.raw.advance(rd);
        if light.commit_index().is_some() {
            let hs = self.raw.raft.hard_state();
            self.raw
                .mut_store()
                .inner
                .set_hard_state(&hs)
                .map_err(|e| e.to_string())?;
        }
        self.collect(light.take_messages(), out)?;
        self.apply(light.take_committed_entries(), out)?;
        self.raw.advance_apply();
        Ok(())
    }

    fn collect(
        &self,
        msgs: Vec<raft::prelude::Message>,
        out: &mut Output<S::Command, S::Outcome>,
    ) -> Result<(), String> {
        for msg in msgs {
            let bytes = inbound::encode(&msg)?;
            if bytes.len() > self.config.message_bytes_max {
                tracing::warn!(
                    to = msg.to,
                    bytes = bytes.len(),
                    max = self.config.message_bytes_max,
                    "raft message larger than a peer accepts (message_bytes_max)"
                );
            }
            out.messages.push(Outgoing {
                to: msg.to,
                bytes: Bytes::from(bytes),
            });
        }
        Ok(())
    }

    /// Installs the leader's snapshot: storage first, then the state machine.
    fn install(&mut self, snap: &Snapshot, out: &mut Output<S::Command, S::Outcome>) -> Result<(), String> {
        let (index, term) = (snap.get_metadata().index, snap.get_metadata().term);
        self.raw
            .mut_store()
            .inner
            .install_snapshot(snap)
            .map_err(|e| e.to_string())?;
        let state = match self.pending_restore.take() {
            Some((i, t, state)) if (i, t) == (index, term) => state,
            _ => S::restore(&snap.data).map_err(|e| format!("snapshot at {index} does not restore: {e}"))?,
        };
        self.state = state;
        self.applied_index = index;
        self.applied_term = term;
        self.snapshot_index = index;
        out.restored_snapshot = Some(index);
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>, out: &mut Output<S::Command, S::Outcome>) -> Result<(), String> {
        for e in entries {
            if e.index != self.applied_index + 1 {
                return Err(format!(
                    "committed entry {} does not follow applied {}",
                    e.index, self.applied_index
                ));
            }
            self.applied_index = e.index;
            self.applied_term = e.term;
            if e.get_entry_type() != EntryType::EntryNormal {
                tracing::warn!(
                    index = e.index,
                    "skipping a configuration change: this quorum is static"
                );
                continue;
            }
            let cmd = entry::decode::<S::Command>(&e.data)
                .map_err(|err| format!("committed entry {} does not decode: {err}", e.index))?;
            if let Some(command) = cmd {
                let outcome = self.state.apply(e.index, &command);
                out.applied.push(Applied {
                    index: e.index,
                    term: e.term,
                    command,
                    outcome,
                });
            }
        }
        Ok(())
    }

    /// Snapshots the state machine and compacts the log when due.
    fn maybe_snapshot(&mut self) -> Result<(), String> {
        let interval = self.config.snapshot_interval_entries;
        if self.applied_index < self.snapshot_index.max(self.snapshot_failed_at) + interval {
            return Ok(());
        }
        let data = match self.state.snapshot() {
            Ok(data) => data,
            Err(e) => {
                // The log keeps growing until a later snapshot works.
                tracing::error!(node_id = self.config.node_id, index = self.applied_index, error = %e,
                    "state machine snapshot failed; the raft log is not compacted");
                self.snapshot_failed_at = self.applied_index;
                return Ok(());
            }
        };
        let mut snap = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = self.applied_index;
        meta.term = self.applied_term;
        meta.set_conf_state(self.voters.clone());
        let compact_index = self.applied_index.saturating_sub(self.config.log_retained_entries);
        self.raw
            .mut_store()
            .inner
            .compact(&snap, compact_index)
            .map_err(|e| e.to_string())?;
        self.snapshot_index = self.applied_index;
        Ok(())
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn panic_text(payload: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic".to_string()
    }
}
