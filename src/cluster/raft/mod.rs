//! The controller quorum: cluster metadata as a replicated log, run by an
//! existing Raft library behind a thin sans-IO adapter. No home-made
//! consensus: elections, log matching, commitment and snapshot transfer
//! are raft-rs's; this module persists, applies, validates and frames.
//!
//! # Which library, and why
//!
//! **tikv/raft-rs** (crate `raft` 0.7). Its `RawNode` is already sans-IO
//! and synchronous: the caller ticks it, steps messages in and drains a
//! `Ready` (entries and hard state to persist, committed entries to apply,
//! messages to send). That is exactly the shape of a glommio shard that
//! owns its state and does its own I/O, and of a seeded simulator. It is
//! the consensus core of TiKV, a port of etcd's raft (pre-vote,
//! check-quorum, flow control, snapshot transfer).
//!
//! Facts checked when choosing it (Rust 1.95, crates.io only, no protoc):
//! - `raft-proto`'s `build.rs` generates its protobuf code at build time
//!   through `protobuf-build` 0.14. With `prost-codec`, that calls
//!   `prost-build` 0.11, which needs a `protoc` on `PATH` or in `PROTOC`
//!   (none here). With `protobuf-codec` (used here), it runs the `protoc`
//!   binary that `protobuf-build` ships inside its crate (`bin/protoc-linux-
//!   x86_64`, also aarch64), so the build needs nothing installed.
//! - It builds and runs with Rust 1.95 (protobuf 2.28, slog 2.8, rand 0.8).
//! - protobuf 2.28 bounds every length by the remaining input before it
//!   allocates, limits message nesting to 100 and skips an unknown group
//!   iteratively (a nested one is an error), so a peer's bytes cannot make
//!   it allocate or recurse without bound; the frame is bounded before it
//!   is parsed (`message_bytes_max`).
//! - raft-rs draws election timeouts from `rand::thread_rng()`; the node
//!   overrides each draw from its own seeded generator (see `node.rs`) so
//!   that a simulation replays exactly. Everything else in it is
//!   deterministic (its maps use a fixed hasher).
//!
//! openraft was the alternative. Its stable 0.9 line depends on tokio
//! (rt, sync, time) unconditionally and runs its `RaftCore` as a spawned
//! task fed through channels, calling the network, log store and state
//! machine through async traits and owning the election and heartbeat
//! timers (its `singlethreaded` feature only drops the `Send` bounds;
//! 0.10, still alpha, makes the runtime pluggable but keeps that shape).
//! It is not sans-IO: a thread-per-core glommio shard and a seeded
//! simulator would both have to wrap a runtime and a clock they do not own.
//!
//! # What is here
//! - [`QuorumNode`]: one voter; `tick`, `step`, `propose`, `poll`; set up
//!   by a [`QuorumConfig`].
//! - [`StateMachine`] and [`CommandCodec`]: what is replicated, what
//!   applying a command tells its proposer, and the command's wire form
//!   (for the broker: the metadata image and its commands).
//! - [`LogStorage`]: what survives a crash; [`MemStorage`] on a [`MemDisk`]
//!   (tests, simulation) and [`FileStorage`] in `<data_dir>/raft/`.
//!
//! Every message and file is framed with a magic, a version, a length and
//! a CRC-32C (`frame.rs`) around raft-rs's own generated protobuf.
//!
//! # Where it runs
//! On shard 0 of a node whose id is among the voters. Everything here is
//! `!Send` by design (`MemDisk` is `Rc`): one shard owns the node, ticks it
//! from a timer, feeds it what the cluster listener receives, and hands
//! `Output::messages` to the cluster transport.

mod config;
mod entry;
mod error;
mod file_storage;
mod frame;
mod inbound;
mod logger;
mod node;
mod state_machine;
mod storage;

#[doc(hidden)]
pub mod testkit;
#[cfg(test)]
mod tests;

pub use config::QuorumConfig;
pub use error::{Error, MessageError, ProposeError, StorageError};
pub use file_storage::{FileStorage, ENTRY_BYTES_MAX, SNAPSHOT_BYTES_MAX};
pub use frame::FrameError;
pub use node::{Applied, Outgoing, Output, Proposal, QuorumNode};
pub use state_machine::{CodecError, CommandCodec, StateMachine};
pub use storage::{LogCache, LogStorage, MemDisk, MemStorage};
