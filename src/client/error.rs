//! Errors of the native client: transport (I/O, timeouts, closed
//! connections), protocol (frames the codec rejects), broker answers with an
//! error code, and misuse (records too large, bad addresses).
//!
//! Invariant: every failure that comes from the network is one of these;
//! the client never panics on what a broker sends. The enum is `Clone` so
//! that one failed batch can fail every record's delivery future.
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::api::{ApiKey, ErrorCode};
use crate::protocol::native::NativeError;
use crate::record::RecordError;

/// Why a client operation failed.
#[derive(Debug, Clone, Error)]
pub enum ClientError {
    /// Connecting, reading or writing a socket failed.
    #[error("i/o error: {0}")]
    Io(#[source] Arc<std::io::Error>),
    /// A frame from the broker could not be decoded (or framed).
    #[error("protocol error: {0}")]
    Protocol(#[from] NativeError),
    /// The broker answered with an error code.
    #[error("broker error {code}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Broker {
        /// The code the broker sent.
        code: ErrorCode,
        /// The broker's explanation, or what the client was doing.
        message: String,
    },
    /// No answer within the request timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection closed (or broke) before the answer came.
    #[error("connection to {addr} closed: {reason}")]
    ConnectionClosed {
        /// The peer address.
        addr: String,
        /// What closed it.
        reason: String,
    },
    /// The broker does not support an API (or version) this client needs.
    #[error("the broker does not support {api:?} version {version}")]
    Unsupported {
        /// The API asked for.
        api: ApiKey,
        /// The version this client speaks.
        version: u16,
    },
    /// A record (or batch) is larger than the configured maximum.
    #[error("record of {size} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// The encoded size.
        size: usize,
        /// The limit (`ProducerConfig::request_bytes_max`).
        max: usize,
    },
    /// Building or reading a record batch failed.
    #[error("record batch: {0}")]
    Record(#[from] RecordError),
    /// An address or argument is unusable.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The producer (or client) was closed before the operation finished.
    #[error("closed before the operation finished")]
    Closed,
}

impl ClientError {
    /// A broker error with `code` and a message.
    pub fn broker(code: ErrorCode, message: impl Into<String>) -> ClientError {
        ClientError::Broker {
            code,
            message: message.into(),
        }
    }

    /// The broker's error code, if this is a broker error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Failures worth retrying after a back-off: transport failures and
    /// the broker's retriable codes.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Io(_) | ClientError::Timeout(_) | ClientError::ConnectionClosed { .. } => true,
            ClientError::Broker { code, .. } => code.is_retriable(),
            _ => false,
        }
    }

    /// The failure says our metadata is stale: the partition moved or the
    /// topic changed.
    pub fn wants_metadata_refresh(&self) -> bool {
        match self {
            ClientError::Broker { code, .. } => needs_metadata_refresh(*code),
            ClientError::ConnectionClosed { .. } | ClientError::Io(_) => true,
            _ => false,
        }
    }
}

/// Codes after which the metadata cache is refreshed before a retry.
pub(crate) fn needs_metadata_refresh(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::UnknownTopicOrPartition | ErrorCode::NotLeaderOrFollower | ErrorCode::StorageError
    )
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        ClientError::Io(Arc::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retriable_follows_the_broker_code_and_transport() {
        assert!(ClientError::broker(ErrorCode::NotLeaderOrFollower, "").is_retriable());
        assert!(!ClientError::broker(ErrorCode::TopicAlreadyExists, "").is_retriable());
        assert!(ClientError::Timeout(Duration::from_secs(1)).is_retriable());
        assert!(ClientError::from(std::io::Error::other("x")).is_retriable());
        assert!(!ClientError::Closed.is_retriable());
        assert!(ClientError::broker(ErrorCode::UnknownTopicOrPartition, "").wants_metadata_refresh());
        assert!(!ClientError::broker(ErrorCode::RequestTimedOut, "").wants_metadata_refresh());
    }
}
