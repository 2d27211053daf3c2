//! Why a native frame could not be framed or decoded.
//!
//! Every variant is an operating error caused by what a peer sent: the
//! codec returns it and never panics on input. [`NativeError::code`] maps it
//! to the stable error code the broker answers with.
use thiserror::Error;

use crate::api::{ApiKey, ErrorCode};

/// A frame the native codec rejects.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NativeError {
    /// The length prefix announces more bytes than the configured maximum.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The announced frame length (bytes after the prefix).
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The frame ends before the FlatBuffer length or the FlatBuffer does.
    #[error("frame truncated")]
    Truncated,
    /// The FlatBuffer failed verification (bad offsets, sizes, nesting, limits).
    #[error("invalid flatbuffer: {0}")]
    Verify(String),
    /// The header names an API this codec does not know.
    #[error("unknown api key {0}")]
    UnknownApi(u16),
    /// The header names a version of a known API this codec does not speak.
    #[error("unsupported version {version} of {api:?}")]
    UnsupportedVersion {
        /// The API asked for.
        api: ApiKey,
        /// The version asked for.
        version: u16,
    },
    /// The FlatBuffer is well formed but its contents break the protocol:
    /// record lengths that do not add up to the payload, an unknown acks
    /// value, a body that does not match the header's API, ...
    #[error("invalid frame: {0}")]
    Invalid(&'static str),
}

impl NativeError {
    /// The error code to answer the sender of the bad frame with.
    pub fn code(&self) -> ErrorCode {
        match self {
            NativeError::FrameTooLarge { .. } => ErrorCode::MessageTooLarge,
            NativeError::UnknownApi(_) | NativeError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            NativeError::Truncated | NativeError::Verify(_) | NativeError::Invalid(_) => ErrorCode::InvalidRequest,
        }
    }
}

impl From<flatbuffers::InvalidFlatbuffer> for NativeError {
    fn from(e: flatbuffers::InvalidFlatbuffer) -> Self {
        NativeError::Verify(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(NativeError::Truncated.code(), ErrorCode::InvalidRequest);
        assert_eq!(NativeError::Invalid("x").code(), ErrorCode::InvalidRequest);
        assert_eq!(NativeError::Verify("x".into()).code(), ErrorCode::InvalidRequest);
        assert_eq!(NativeError::UnknownApi(99).code(), ErrorCode::UnsupportedVersion);
        let e = NativeError::UnsupportedVersion {
            api: ApiKey::Fetch,
            version: 3,
        };
        assert_eq!(e.code(), ErrorCode::UnsupportedVersion);
        assert_eq!(
            NativeError::FrameTooLarge { len: 2, max: 1 }.code(),
            ErrorCode::MessageTooLarge
        );
    }
}
