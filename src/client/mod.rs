//! The native Rust client of Sluice: admin, producer and consumer over the
//! native (FlatBuffers) protocol.
//!
//! Owns: connections and their response demultiplexing ([`Connection`]),
//! the metadata cache and connection pool ([`Client`]), topic admin
//! (methods on [`Client`]), the batching producer ([`Producer`]), the
//! consumer of assigned partitions ([`Consumer`]) and the consumer-group
//! member ([`GroupConsumer`]), which joins a group through its coordinator
//! and reads the partitions the group gives it.
//!
//! The client is shard-aware: metadata tells which shard owns each
//! partition and the port that shard listens on, and requests for a
//! partition go straight there, so the broker never forwards them across
//! cores. Records travel as Kafka v2 record batches built and read with
//! [`crate::record`].
//!
//! Runtime: everything runs inside a glommio `LocalExecutor` and is
//! `!Send`; one client per executor (thread). Every queue has a named
//! bound: requests in flight per connection, producer buffer bytes,
//! fetches in flight, frame size.
//!
//! ```no_run
//! use sluice::client::{Client, ClientConfig, Consumer, ConsumerConfig, Producer, ProducerConfig, SeekTo};
//! # async fn demo() -> Result<(), sluice::client::ClientError> {
//! let client = Client::connect("127.0.0.1:9192", ClientConfig::default()).await?;
//! client.create_topic("events", 4, Default::default()).await?;
//! let producer = Producer::new(client.clone(), ProducerConfig::default());
//! let sent = producer.send("events", Some("k".into()), Some("v".into()), Vec::new()).await?;
//! let mut consumer = Consumer::new(client, ConsumerConfig::default());
//! consumer.assign("events", &[sent.partition]);
//! consumer.seek("events", sent.partition, SeekTo::Offset(sent.offset)).await?;
//! let records = consumer.poll(std::time::Duration::from_secs(1)).await?;
//! # Ok(()) }
//! ```
mod accumulator;
mod admin;
mod cluster;
mod config;
mod connection;
mod consumer;
mod demux;
mod error;
#[cfg(test)]
mod fake_broker;
mod fetched;
mod group;
mod metadata;
mod notify;
mod partitioner;
mod producer;
#[cfg(test)]
mod tests;

pub use cluster::Client;
pub use config::{ClientConfig, ConsumerConfig, OffsetReset, ProducerConfig};
pub use connection::{Connection, REQUEST_VERSION};
pub use consumer::{Consumer, SeekTo};
pub use error::ClientError;
pub use fetched::ConsumedRecord;
pub use group::{GroupConfig, GroupConsumer, Rebalance};
pub use metadata::Endpoint;
pub use partitioner::{murmur2, partition_for_key, Partitioner};
pub use producer::{DeliveryResult, Producer, RecordMetadata};
