//! The broker core: per-shard partition ownership, the cross-shard mesh,
//! and the node's topic metadata. Protocol adapters call `Shard::handle`
//! with neutral `api::Request`s; nothing here knows a wire format.

mod groups;
pub mod metadata;
pub mod partition;
mod shard;

pub use metadata::{Metadata, MetadataStore, TopicMeta};
pub use partition::Partition;
pub use shard::{Shard, ShardMsg};
