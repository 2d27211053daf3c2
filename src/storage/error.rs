//! Errors of the storage layer. Operating errors (disk, bad input) are typed
//! values; programmer errors are panics.

use std::path::PathBuf;

use crate::record::RecordError;

/// What went wrong in a storage operation.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The batch offered to `append` failed validation; nothing was written.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] RecordError),
    /// The batch is larger than the log accepts (`batch_bytes_max`).
    #[error("record batch of {size} bytes exceeds the maximum of {max} bytes")]
    BatchTooLarge { size: usize, max: usize },
    /// A read asked for an offset outside `[log_start_offset, next_offset]`.
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange { offset: i64, log_start: i64, log_end: i64 },
    /// The configuration cannot work (checked when a log is opened).
    #[error("invalid log configuration: {0}")]
    Config(String),
    /// An I/O operation failed. `op` names what the log was doing.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A replicated batch does not start at this log's end.
    #[error("replicated batch starts at offset {got}, but the log ends at {expected}")]
    OffsetMismatch { expected: i64, got: i64 },
    /// A batch of an idempotent producer does not continue its sequence
    /// (or its epoch is stale); nothing was written.
    #[error("{0}")]
    Sequence(#[from] crate::storage::producers::SequenceError),
    /// An earlier write failed, so the in-memory state may be ahead of the
    /// disk. The log refuses further appends until it is reopened, which
    /// recovers it from what is on disk.
    #[error("log {path} is failed after an earlier I/O error ({reason}); reopen to recover")]
    Failed { path: PathBuf, reason: String },
}

/// Shorthand for results of storage operations.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl StorageError {
    /// Wraps an I/O error (std or glommio) with what was being done and where.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, err: impl Into<std::io::Error>) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source: err.into(),
        }
    }

    /// True when the disk is full (ENOSPC or EDQUOT).
    pub fn is_disk_full(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)),
            _ => false,
        }
    }
}
