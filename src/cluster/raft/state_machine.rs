//! What the quorum replicates: a deterministic state machine fed with
//! commands, and the codec that turns a command into the bytes of a raft
//! entry and back.
//!
//! Invariants the adapter relies on:
//! - `apply` is deterministic: the same commands in the same order give
//!   the same state on every node, whatever node, time or shard;
//! - `restore(snapshot())` gives a state equal to the one snapshotted;
//! - `CommandCodec::decode(encode(c)) == c`, and `decode` never panics:
//!   its input comes from peers and from disk;
//! - a command that is invalid against the state is applied as a no-op
//!   with an error `Outcome` (for the proposer), never a panic: it is
//!   already committed, and every node must reach the same state.

/// Why a command or a snapshot could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

impl CodecError {
    /// An error that says what was wrong with the input.
    pub fn new(reason: impl Into<String>) -> Self {
        CodecError(reason.into())
    }
}

/// The wire form of a replicated command.
pub trait CommandCodec: Sized {
    /// Appends the command's bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError>;
    /// Decodes a command from exactly `bytes`; malformed input is an error,
    /// never a panic.
    fn decode(bytes: &[u8]) -> Result<Self, CodecError>;
}

/// A replicated state machine: every node applies the committed log to its
/// own copy, in log order.
pub trait StateMachine: Default {
    /// What an entry of the log asks the state machine to do.
    type Command: CommandCodec;
    /// What applying a command tells its proposer (e.g. "topic exists").
    type Outcome;

    /// Applies the command committed at `index`.
    fn apply(&mut self, index: u64, cmd: &Self::Command) -> Self::Outcome;

    /// The whole state, as bytes that [`StateMachine::restore`] reads back.
    /// A failure skips this snapshot (the log is compacted later).
    fn snapshot(&self) -> Result<Vec<u8>, CodecError>;

    /// Rebuilds a state from [`StateMachine::snapshot`]'s bytes (from disk or
    /// from the leader); malformed input is an error, never a panic.
    fn restore(bytes: &[u8]) -> Result<Self, CodecError>;
}
