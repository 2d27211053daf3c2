//! The partition log: segment files of Kafka v2 record batches written with
//! direct I/O, their offset and time indexes, recovery, retention, the
//! flush policy with group commit, and the batch cache.
//!
//! Storage knows nothing of protocols. A [`Log`] belongs to the shard that
//! owns its partition: it is `!Send` and is never touched by another thread.

mod cache;
pub mod epochs;
mod error;
pub mod index;
mod log;
mod probe;
pub mod producers;
pub mod segment;
mod writer;

pub use cache::{BatchCache, CacheBudget};
pub use error::{Result, StorageError};
pub use log::{AppendInfo, Log, LogRead, RetentionOutcome};
pub use writer::BLOCK_BYTES;

use std::time::Duration;

/// When appended data is made durable with fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Before an append completes (group-committed: appends that wait at
    /// the same time share one fdatasync).
    EveryAppend,
    /// At most this long after data is appended.
    Interval(Duration),
    /// Once this many bytes are appended but not yet synced.
    Bytes(u64),
}

/// Configuration of one partition log. Units are in the names.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A segment rolls before it would grow past this (at most 4 GiB - 1,
    /// since index positions are 32 bits).
    pub segment_bytes_max: u64,
    /// A segment rolls once it is older than this: since it was created, or
    /// for a segment found on disk at open, since its first batch.
    pub segment_age_ms_max: u64,
    /// Sealed segments whose newest record is older than this are deleted.
    pub retention_ms: Option<u64>,
    /// Oldest sealed segments are deleted while the log is larger than this.
    pub retention_bytes: Option<u64>,
    /// An offset index entry is added after at least this many bytes.
    pub index_interval_bytes: u64,
    pub flush: FlushPolicy,
    /// Largest batch `append` accepts (Kafka's max.message.bytes).
    pub batch_bytes_max: usize,
    /// Byte budget of the batch cache.
    pub cache_bytes_max: usize,
    /// Size of each direct-I/O staging chunk: the largest single write.
    pub write_chunk_bytes: usize,
    /// Full chunks that may wait for a write before appends wait too.
    pub write_behind_chunks_max: usize,
    /// Reserve a segment's blocks ahead of its writes (fallocate), so a full
    /// disk fails an append before anything of it is accepted, never in the
    /// middle of a write.
    pub preallocate: bool,
    /// How far ahead of the write position blocks are reserved. Small
    /// enough that thousands of partitions do not reserve a whole segment
    /// each; large enough that the fallocate is rare.
    pub preallocate_step_bytes: u64,
    /// An idempotent producer that has written nothing for this long is
    /// forgotten (Kafka's producer.id.expiration.ms); its next batch must
    /// then start a new sequence.
    pub producer_id_expiration_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: 1 << 30,
            segment_age_ms_max: 7 * 24 * 3600 * 1000,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            index_interval_bytes: 4096,
            flush: FlushPolicy::EveryAppend,
            batch_bytes_max: 1 << 20,
            cache_bytes_max: 64 << 20,
            write_chunk_bytes: 1 << 20,
            write_behind_chunks_max: 4,
            preallocate: true,
            preallocate_step_bytes: 32 << 20,
            producer_id_expiration_ms: 24 * 3600 * 1000,
        }
    }
}

impl LogConfig {
    /// Checks the limits that the log's invariants rely on.
    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(StorageError::Config(m));
        if self.segment_bytes_max < BLOCK_BYTES || self.segment_bytes_max > u64::from(u32::MAX) {
            return fail(format!(
                "segment_bytes_max {} must be in [4096, 4294967295]",
                self.segment_bytes_max
            ));
        }
        if self.write_chunk_bytes == 0 || self.write_chunk_bytes as u64 % BLOCK_BYTES != 0 {
            return fail(format!(
                "write_chunk_bytes {} must be a positive multiple of 4096",
                self.write_chunk_bytes
            ));
        }
        if self.write_behind_chunks_max == 0 {
            return fail("write_behind_chunks_max must be at least 1".into());
        }
        if self.batch_bytes_max < crate::record::BATCH_HEADER_BYTES
            || self.batch_bytes_max as u64 > self.segment_bytes_max
        {
            return fail(format!(
                "batch_bytes_max {} must be between 61 and segment_bytes_max",
                self.batch_bytes_max
            ));
        }
        if self.index_interval_bytes == 0 {
            return fail("index_interval_bytes must be positive".into());
        }
        if let FlushPolicy::Interval(d) = self.flush {
            if d.is_zero() {
                return fail("flush interval must be positive (use EveryAppend)".into());
            }
        }
        Ok(())
    }
}
