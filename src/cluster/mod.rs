//! The cluster: replicated partitions (Kafka's ISR model) and the
//! controller quorum that owns cluster metadata.
//!
//! Everything here that decides is sans-IO — events in, actions out, time
//! injected — so that a seeded simulator can drive it through crashes,
//! lost and reordered messages and partitions, and check Kafka's
//! guarantees after every step:
//! - `replica`: one partition's replication state on its leader and on a
//!   follower: follower progress, ISR membership, the high watermark,
//!   leader epochs and the truncation of a divergent tail;
//! - `identity`: which cluster and node a data directory belongs to,
//!   checked before anything touches it;
//! - `placement`: where a new topic's replicas go (Kafka's pattern);
//! - `metadata`: the commands of the metadata log and the state every
//!   node gets by applying them;
//! - `raft`: the controller quorum, an adapter over an existing Raft
//!   library (no home-made consensus) that replicates the metadata log;
//! - `runtime`: cluster mode on shard 0: inter-broker connections, the
//!   quorum's timer, registration, heartbeats and fencing;
//! - `view`: the applied metadata as every shard reads it;
//! - `handshake`: the first exchange on every inter-broker connection:
//!   who is calling, from which cluster;
//! - `fetch`: the inter-broker replica fetch: its wire format, and the
//!   fetchers through which followers pull from their leaders.
pub mod fetch;
pub mod handshake;
pub mod identity;
pub mod metadata;
pub mod placement;
pub mod raft;
pub mod replica;
pub mod runtime;
pub mod view;
