//! The native wire protocol: FlatBuffers metadata plus raw record payloads.
//!
//! A frame on a stream, both directions:
//!
//! ```text
//! u32 BE frame_len | u32 BE fb_len | FlatBuffer (fb_len bytes) | payload
//! ```
//!
//! The FlatBuffer is a `RequestFrame` or `ResponseFrame` from
//! `schemas/sluice.fbs` (the contract; read its header for the rules). Record
//! data never enters it: each partition that carries records says how many
//! payload bytes are its own (`records_len`), in FlatBuffer order. So a
//! decoded produce request's records are slices of the received frame, and
//! an encoded fetch response is the FlatBuffer chunk followed by the stored
//! `Bytes` themselves, for vectored writes.
//!
//! Invariants: every incoming FlatBuffer passes the verifier under bounds
//! proportional to its size; every length is checked before it is used;
//! the `records_len` of all partitions add up to the payload exactly;
//! malformed input yields [`NativeError`], never a panic. The codec is
//! stateless and runs on whichever shard owns the connection.
//!
//! The generated code in `generated/` comes from `tools/gen-flatbuffers.sh`
//! and is never edited by hand; `--check` (run in CI) proves it current.
mod decode;
mod encode;
mod error;
mod frame;

#[allow(clippy::all, clippy::pedantic, clippy::nursery, warnings)]
#[rustfmt::skip]
#[path = "generated/sluice_generated.rs"]
mod generated;

pub use decode::{decode_request, decode_response};
pub use encode::{encode_request, encode_response};
pub use error::NativeError;
pub use frame::{frame_len, peek_correlation_id, FRAME_PREFIX_BYTES};

use crate::api::{ApiKey, ApiVersionRange, Response};

/// Every API and the versions of it this codec speaks.
pub const SUPPORTED: &[ApiVersionRange] = &[
    ApiVersionRange {
        api: ApiKey::ApiVersions,
        min_version: 0,
        max_version: 0,
    },
    ApiVersionRange {
        api: ApiKey::Metadata,
        min_version: 0,
        max_version: 0,
    },
    ApiVersionRange {
        api: ApiKey::CreateTopics,
        min_version: 0,
        max_version: 0,
    },
    ApiVersionRange {
        api: ApiKey::DeleteTopics,
        min_version: 0,
        max_version: 0,
    },
    ApiVersionRange {
        api: ApiKey::Produce,
        min_version: 0,
        max_version: 0,
    },
    ApiVersionRange {
        api: ApiKey::Fetch,
        min_version: 0,
        max_version: 0,
    },
    ApiVersionRange {
        api: ApiKey::ListOffsets,
        min_version: 0,
        max_version: 0,
    },
    ApiVersionRange {
        api: ApiKey::FindCoordinator,
        min_version: 0,
        max_version: 0,
    },
    ApiVersionRange {
        api: ApiKey::JoinGroup,
        min_version: 0,
        max_version: 0,
    },
    ApiVersionRange {
        api: ApiKey::SyncGroup,
        min_version: 0,
        max_version: 0,
    },
    ApiVersionRange {
        api: ApiKey::Heartbeat,
        min_version: 0,
        max_version: 0,
    },
    ApiVersionRange {
        api: ApiKey::LeaveGroup,
        min_version: 0,
        max_version: 0,
    },
    ApiVersionRange {
        api: ApiKey::OffsetCommit,
        min_version: 0,
        max_version: 0,
    },
    ApiVersionRange {
        api: ApiKey::OffsetFetch,
        min_version: 0,
        max_version: 0,
    },
    ApiVersionRange {
        api: ApiKey::ListGroups,
        min_version: 0,
        max_version: 0,
    },
    ApiVersionRange {
        api: ApiKey::DescribeGroups,
        min_version: 0,
        max_version: 0,
    },
    ApiVersionRange {
        api: ApiKey::DeleteGroups,
        min_version: 0,
        max_version: 0,
    },
    ApiVersionRange {
        api: ApiKey::CreatePartitions,
        min_version: 0,
        max_version: 0,
    },
    ApiVersionRange {
        api: ApiKey::InitProducerId,
        min_version: 0,
        max_version: 0,
    },
];

/// The API a response answers, or `None` for `Error`, which answers any.
fn response_api(resp: &Response) -> Option<ApiKey> {
    match resp {
        Response::ApiVersions { .. } => Some(ApiKey::ApiVersions),
        Response::Metadata { .. } => Some(ApiKey::Metadata),
        Response::CreateTopics { .. } => Some(ApiKey::CreateTopics),
        Response::DeleteTopics { .. } => Some(ApiKey::DeleteTopics),
        Response::Produce { .. } => Some(ApiKey::Produce),
        Response::Fetch { .. } => Some(ApiKey::Fetch),
        Response::ListOffsets { .. } => Some(ApiKey::ListOffsets),
        Response::FindCoordinator(_) => Some(ApiKey::FindCoordinator),
        Response::JoinGroup(_) => Some(ApiKey::JoinGroup),
        Response::SyncGroup(_) => Some(ApiKey::SyncGroup),
        Response::Heartbeat { .. } => Some(ApiKey::Heartbeat),
        Response::LeaveGroup(_) => Some(ApiKey::LeaveGroup),
        Response::OffsetCommit { .. } => Some(ApiKey::OffsetCommit),
        Response::OffsetFetch { .. } => Some(ApiKey::OffsetFetch),
        Response::ListGroups { .. } => Some(ApiKey::ListGroups),
        Response::DescribeGroups { .. } => Some(ApiKey::DescribeGroups),
        Response::DeleteGroups { .. } => Some(ApiKey::DeleteGroups),
        Response::CreatePartitions { .. } => Some(ApiKey::CreatePartitions),
        Response::InitProducerId { .. } => Some(ApiKey::InitProducerId),
        Response::Error { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_is_supported_once() {
        for api in ApiKey::ALL {
            assert_eq!(SUPPORTED.iter().filter(|r| r.api == api).count(), 1, "{api:?}");
        }
        assert_eq!(SUPPORTED.len(), ApiKey::ALL.len());
    }
}
