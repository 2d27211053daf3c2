//! Errors of the controller quorum. Operating errors (a peer's bad bytes,
//! a damaged or failing disk, a refused proposal) are typed values.

use std::path::PathBuf;

use super::frame::FrameError;
use super::state_machine::CodecError;

/// What went wrong in storage: reading or writing the raft log, the hard
/// state or the snapshot.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O operation failed; `op` names what was being done.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is damaged or inconsistent with the others; nothing was
    /// changed. The node cannot start from this directory as it is.
    #[error("raft storage {path} is damaged: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// An earlier write failed, so memory may be ahead of the disk: every
    /// later write is refused until the storage is reopened from disk.
    #[error("raft storage is failed after an earlier error ({reason}); reopen to recover")]
    Failed { reason: String },
    /// Raft asked for something that breaks the log's invariants (a gap, an
    /// overwrite below the snapshot). A bug, reported instead of applied.
    #[error("raft storage invariant violated: {0}")]
    Invariant(String),
}

impl StorageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        StorageError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Why a peer's message was refused by [`super::QuorumNode::step`]. The
/// message is dropped; the node is unchanged and keeps working.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("bad message frame: {0}")]
    Frame(#[from] FrameError),
    #[error("undecodable raft message: {0}")]
    Decode(String),
    #[error("node {from} is not a voter of this quorum")]
    UnknownPeer { from: u64 },
    #[error("message claims to be from node {claimed} but arrived from node {from}")]
    SenderMismatch { claimed: u64, from: u64 },
    #[error("message is addressed to node {to}, this is node {me}")]
    WrongRecipient { to: u64, me: u64 },
    #[error("message type {0} is not accepted from a peer")]
    UnexpectedType(String),
    /// Decodable, but impossible from a correct peer (a gap in appended
    /// entries, a commit beyond our log, an entry that overwrites our
    /// committed prefix, a foreign voter set in a snapshot...).
    #[error("inconsistent raft message: {0}")]
    Inconsistent(String),
    #[error("entry {index} carries an undecodable command: {reason}")]
    BadCommand { index: u64, reason: CodecError },
    #[error("snapshot at index {index} does not restore: {reason}")]
    BadSnapshot { index: u64, reason: CodecError },
    /// raft-rs refused the message.
    #[error("raft refused the message: {0}")]
    Raft(String),
}

/// An error of the quorum node as a whole.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A peer's message was refused; the node keeps working.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// The node's configuration cannot work (checked at construction).
    #[error("invalid quorum configuration: {0}")]
    Config(String),
    /// The storage cannot be opened or does not match the configuration.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The node stopped (fail-stop) after an error it cannot recover from in
    /// memory: a failed write, an undecodable committed entry, a panic inside
    /// raft-rs. Every later call returns this; reopening from storage is the
    /// way back.
    #[error("quorum node {node_id} is halted: {reason}")]
    Halted { node_id: u64, reason: String },
}

/// Why a proposal was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader takes proposals; `leader_hint` is the leader this
    /// node knows of, if any.
    #[error("not the leader (leader: {leader_hint:?})")]
    NotLeader { leader_hint: Option<u64> },
    /// The command does not encode.
    #[error("command does not encode: {0}")]
    Encode(CodecError),
    /// The encoded command is larger than `command_bytes_max`.
    #[error("command of {bytes} bytes exceeds the maximum of {max} bytes")]
    TooLarge { bytes: usize, max: usize },
    /// raft-rs dropped it (uncommitted bytes over `uncommitted_bytes_max`,
    /// or a leadership transfer in progress); retry later.
    #[error("proposal dropped by raft: {0}")]
    Dropped(String),
    /// The node is halted (see [`Error::Halted`]).
    #[error("quorum node is halted: {0}")]
    Halted(String),
}
