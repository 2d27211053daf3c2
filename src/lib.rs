//! Sluice: a Kafka-model streaming broker, thread-per-core on io_uring.
//!
//! Module map (see DESIGN.md): `record` owns the Kafka v2 RecordBatch format,
//! `storage` the on-disk partition log, `api` the protocol-neutral request
//! model, `broker` shards and partitions, `server` listeners and
//! connections, `config` the typed configuration.
pub mod api;
pub mod broker;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod envelope;
pub mod group;
pub mod metrics;
pub mod protocol;
pub mod record;
pub mod recv_buf;
pub mod rng;
pub mod server;
pub mod storage;
pub mod watermark;
