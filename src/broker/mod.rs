//! The broker core: per-shard partition ownership, the cross-shard mesh,
//! the node's topic metadata and its producer ids. Protocol adapters call `Shard::handle`
//! with neutral `api::Request`s; nothing here knows a wire format.

mod groups;
pub mod metadata;
pub mod partition;
mod producer_ids;
mod replication;
mod shard;

pub use metadata::{Metadata, MetadataStore, TopicMeta};
pub use partition::Partition;
pub use producer_ids::{ProducerIdAllocator, ProducerIdError};
pub use shard::{Shard, ShardMsg};
