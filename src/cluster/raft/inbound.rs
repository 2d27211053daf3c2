//! Checks on a peer's message before raft-rs sees it.
//!
//! raft-rs trusts its input: a message that decodes but could not come
//! from a correct peer can trip one of its internal assertions (a commit
//! index beyond the log, a gap in appended entries) and panic. Raft is not
//! Byzantine-tolerant and these checks do not try to make it so; they
//! refuse, with a typed error, what the transport cannot vouch for (frame,
//! sender, recipient, type) and what is impossible from a correct peer at
//! the point raft-rs would act on it. A correct peer's message, however
//! late, duplicated or reordered, always passes.

use protobuf::Message as _;
use raft::prelude::{ConfState, EntryType, Message, MessageType};

use super::error::MessageError;
use super::frame::{self, MAGIC_MESSAGE};

/// What the checks need to know of the local raft.
pub(crate) struct LocalView {
    pub(crate) term: u64,
    pub(crate) last_index: u64,
}

/// Decodes a framed raft message.
pub(crate) fn decode(bytes: &[u8], message_bytes_max: usize) -> Result<Message, MessageError> {
    let payload = frame::decode(MAGIC_MESSAGE, bytes, message_bytes_max)?;
    Message::parse_from_bytes(payload).map_err(|e| MessageError::Decode(e.to_string()))
}

/// Frames a raft message for a peer.
pub(crate) fn encode(msg: &Message) -> Result<Vec<u8>, String> {
    let payload = msg
        .write_to_bytes()
        .map_err(|e| format!("raft message does not encode: {e}"))?;
    frame::encode(MAGIC_MESSAGE, &payload).map_err(|e| e.to_string())
}

/// Sender, recipient and type: what the transport can vouch for.
pub(crate) fn check_envelope(msg: &Message, from: u64, me: u64, voters: &[u64]) -> Result<(), MessageError> {
    if from == me || !voters.contains(&from) {
        return Err(MessageError::UnknownPeer { from });
    }
    if msg.from != from {
        return Err(MessageError::SenderMismatch {
            claimed: msg.from,
            from,
        });
    }
    if msg.to != me {
        return Err(MessageError::WrongRecipient { to: msg.to, me });
    }
    // raft-rs takes a term-0 message for a local one.
    if msg.term == 0 {
        return Err(MessageError::Inconsistent("peer message without a term".into()));
    }
    use MessageType::*;
    match msg.get_msg_type() {
        MsgAppend
        | MsgAppendResponse
        | MsgRequestVote
        | MsgRequestVoteResponse
        | MsgRequestPreVote
        | MsgRequestPreVoteResponse
        | MsgSnapshot
        | MsgHeartbeat
        | MsgHeartbeatResponse
        | MsgTimeoutNow => Ok(()),
        // Local messages, and what this adapter never sends (proposals go
        // to the leader's caller, not through raft's forwarding).
        other => Err(MessageError::UnexpectedType(format!("{other:?}"))),
    }
}

/// What is impossible from a correct peer, given the local log.
pub(crate) fn check_consistency(msg: &Message, local: &LocalView, voters: &ConfState) -> Result<(), MessageError> {
    let inconsistent = |what: String| Err(MessageError::Inconsistent(what));
    match msg.get_msg_type() {
        MessageType::MsgAppend => {
            // Every entry has a term >= 1, so only index 0 has term 0; raft-rs
            // reads "term 0" beyond its log, and would append with a gap.
            if (msg.index == 0) != (msg.log_term == 0) || msg.log_term > msg.term {
                return inconsistent(format!(
                    "append after index {} of term {} in term {}",
                    msg.index, msg.log_term, msg.term
                ));
            }
            let mut prev_term = msg.log_term;
            for (i, e) in msg.entries.iter().enumerate() {
                let want = msg.index.saturating_add(1 + i as u64);
                if e.index != want {
                    return inconsistent(format!("appended entry {i} has index {}, expected {want}", e.index));
                }
                if e.term < prev_term || e.term > msg.term {
                    return inconsistent(format!(
                        "appended entry {} has term {} (previous {prev_term}, message term {})",
                        e.index, e.term, msg.term
                    ));
                }
                if e.get_entry_type() != EntryType::EntryNormal {
                    return inconsistent(format!("appended entry {} is a configuration change", e.index));
                }
                prev_term = e.term;
            }
        }
        // A leader sends min(commit, what we acknowledged).
        MessageType::MsgHeartbeat if msg.term >= local.term && msg.commit > local.last_index => {
            return inconsistent(format!(
                "heartbeat commits {} beyond our last index {}",
                msg.commit, local.last_index
            ));
        }
        // In our own term, we are the leader that sent the append being
        // answered, and a leader's log only grows within its term.
        MessageType::MsgAppendResponse if msg.term == local.term && msg.index > local.last_index => {
            return inconsistent(format!(
                "append response acknowledges {} beyond our last index {}",
                msg.index, local.last_index
            ));
        }
        MessageType::MsgSnapshot => {
            let Some(snap) = msg.snapshot.as_ref() else {
                return inconsistent("snapshot message without a snapshot".into());
            };
            let meta = snap.get_metadata();
            if meta.index == 0 {
                return inconsistent("snapshot at index 0".into());
            }
            if !same_voters(meta.get_conf_state(), voters) {
                return inconsistent(format!(
                    "snapshot names voters {:?}, this quorum is {:?}",
                    meta.get_conf_state().get_voters(),
                    voters.get_voters()
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether two configurations have the same voters and no learners or
/// joint state (this quorum's membership is static).
pub(crate) fn same_voters(a: &ConfState, b: &ConfState) -> bool {
    let sorted = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v
    };
    sorted(a.get_voters()) == sorted(b.get_voters())
        && a.get_learners().is_empty()
        && a.get_voters_outgoing().is_empty()
        && a.get_learners_next().is_empty()
}
