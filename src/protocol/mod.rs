//! Wire protocols: thin adapters between bytes on a socket and the
//! protocol-neutral model in [`crate::api`]. A protocol module never touches
//! storage or partitions; it decodes, encodes and bounds what it reads.
pub mod kafka;
pub mod native;
