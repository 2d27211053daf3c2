//! Errors of the record module: every way a batch, a record or a compressed
//! payload can be rejected. Typed so callers (produce path, log recovery,
//! clients) can tell a torn write from a bad client from an oversized batch.
//!
//! Invariant: decoding paths return these, they never panic on input.
use thiserror::Error;

/// Why a batch, a record or a compressed payload was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    /// The buffer ends before the structure being read does.
    #[error("buffer too short for a record batch")]
    TooShort,
    /// The magic byte is not 2 (only the v2 RecordBatch is supported).
    #[error("unsupported record batch magic {0} (only 2 is supported)")]
    BadMagic(i8),
    /// The batch length field is below the header size or disagrees with the
    /// bytes given.
    #[error("bad record batch length field")]
    BadLength,
    /// The CRC-32C stored in the header does not match the bytes.
    #[error("record batch CRC mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    CrcMismatch {
        /// The CRC stored in the batch header.
        expected: u32,
        /// The CRC computed over the batch bytes.
        actual: u32,
    },
    /// Compression bits 0-2 of the attributes name no known codec.
    #[error("unknown compression id {0}")]
    UnknownCompression(u8),
    /// A compression name (config value) that is not none|gzip|snappy|lz4|zstd.
    #[error("unknown compression name {0:?}")]
    UnknownCompressionName(String),
    /// A size exceeds its limit (batch size or decompressed size).
    #[error("size {size} exceeds the limit of {max} bytes")]
    TooLarge {
        /// The size found (for decompression: at least this many bytes).
        size: usize,
        /// The limit it exceeds.
        max: usize,
    },
    /// The bytes are structurally invalid; the text says which rule broke.
    #[error("corrupt record batch: {0}")]
    Corrupt(&'static str),
    /// The codec rejected the compressed payload.
    #[error("decompression failed: {0}")]
    Decompress(String),
    /// The codec failed to compress (in practice: never, short of OOM).
    #[error("compression failed: {0}")]
    Compress(String),
}
