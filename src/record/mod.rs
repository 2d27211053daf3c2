//! The Kafka v2 RecordBatch (magic 2): the one format Sluice stores on disk
//! and sends on both wire protocols.
//!
//! Owns: the 61-byte batch header layout ([`batch`]), the validator and the
//! in-place stamp used on the produce path, the record iterator
//! ([`records`]), the batch builder ([`builder`]) and the compression codecs
//! ([`codec`]).
//!
//! Invariants:
//! - A batch accepted by [`validate`] is exactly one whole batch whose length
//!   field matches its byte count, whose size is within the caller's limit and
//!   whose CRC-32C over bytes `21..` matches. Validation never allocates and
//!   never decompresses.
//! - [`stamp`] touches only base offset and partition leader epoch, the two
//!   fields outside the CRC, so a stamped batch stays valid.
//! - Every length read from input is bounded by the bytes that remain before
//!   anything is allocated; decompression output is bounded by a caller
//!   limit. Malformed input yields a [`RecordError`], never a panic.
//!
//! Pure functions over byte buffers: no I/O, no shard affinity; any shard
//! may call them.
pub mod batch;
pub mod builder;
pub mod codec;
mod error;
pub mod records;
mod varint;

pub use batch::{
    batch_size, stamp, stamp_log_append_time, validate, BatchHeader, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES, MAGIC_V2,
};
pub use builder::BatchBuilder;
pub use codec::Compression;
pub use error::RecordError;

/// Now as a record timestamp: milliseconds since the Unix epoch (0 if the
/// clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
pub use records::{records, Record, RecordHeader, RecordIter};
