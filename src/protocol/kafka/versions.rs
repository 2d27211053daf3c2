//! Which Kafka APIs and versions the adapter serves, the ApiVersions
//! answer, and error responses for requests that cannot be served
//! (unsupported APIs and versions, undecodable bodies).
//!
//! The ranges are exactly what `decode_body` and `encode_response`
//! implement; they stop before versions that need something the broker
//! model lacks (topic ids: Produce v13, Fetch v13; batched coordinator keys:
//! FindCoordinator v4; max-timestamp lookups: ListOffsets v7; fenced
//! brokers: DescribeCluster v2; transactions: InitProducerId v6).

use std::ops::RangeInclusive;

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;

use super::{frame, Header};
use crate::api::ErrorCode;

/// (api, min version, max version) for every API served.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 3),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::AlterPartitionReassignments, 0, 0),
    (ApiKey::ListPartitionReassignments, 0, 0),
];

/// The versions of `key` served, if any.
pub(super) fn range_of(key: ApiKey) -> Option<RangeInclusive<i16>> {
    SUPPORTED.iter().find(|(k, _, _)| *k == key).map(|&(_, lo, hi)| lo..=hi)
}

fn api_versions_body(error: ErrorCode) -> ApiVersionsResponse {
    let api_keys = SUPPORTED
        .iter()
        .map(|&(k, lo, hi)| {
            ApiVersion::default()
                .with_api_key(k as i16)
                .with_min_version(lo)
                .with_max_version(hi)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error.code())
        .with_api_keys(api_keys)
}

/// Answers ApiVersions. A version above ours gets a v0 answer with
/// UNSUPPORTED_VERSION and our ranges (the client retries with one of
/// them), as Kafka does; the response header is v0 at every version.
pub(super) fn api_versions(header: &Header, body: &mut Bytes) -> Bytes {
    let cid = header.correlation_id;
    let key = ApiKey::ApiVersions;
    let served = range_of(key).is_some_and(|r| r.contains(&header.version));
    let (version, error) = if !served {
        (0, ErrorCode::UnsupportedVersion)
    } else if ApiVersionsRequest::decode(body, header.version).is_err() {
        (header.version, ErrorCode::InvalidRequest)
    } else {
        (header.version, ErrorCode::None)
    };
    frame(cid, key, version, &api_versions_body(error)).unwrap_or_else(|e| {
        tracing::error!(error = %e, "encoding ApiVersions failed");
        Bytes::new()
    })
}

/// A response to `header`'s API at its version carrying `error`: the
/// top-level error code where the response has one, else an empty
/// response. `None` for APIs without a known response shape here, or
/// versions the codec does not know.
pub(super) fn error_frame(header: &Header, error: ErrorCode) -> Option<Bytes> {
    let (key, v, cid) = (header.api_key, header.version, header.correlation_id);
    if key == ApiKey::ApiVersions {
        return frame(cid, key, 0, &api_versions_body(error)).ok();
    }
    let known = key.valid_versions();
    if v < known.min || v > known.max {
        return None;
    }
    let code = error.code();
    // With the error in its top-level field; if that field does not exist
    // at this version (the encoder refuses), an empty response.
    macro_rules! with_error {
        ($ty:ty) => {{
            let mut body = <$ty>::default();
            body.error_code = code;
            frame(cid, key, v, &body).or_else(|_| frame(cid, key, v, &<$ty>::default()))
        }};
    }
    macro_rules! empty {
        ($ty:ty) => {
            frame(cid, key, v, &<$ty>::default())
        };
    }
    let encoded = match key {
        ApiKey::Produce => empty!(ProduceResponse),
        ApiKey::Fetch => with_error!(FetchResponse),
        ApiKey::ListOffsets => empty!(ListOffsetsResponse),
        ApiKey::Metadata => with_error!(MetadataResponse),
        ApiKey::OffsetCommit => empty!(OffsetCommitResponse),
        ApiKey::OffsetFetch => with_error!(OffsetFetchResponse),
        ApiKey::FindCoordinator => with_error!(FindCoordinatorResponse),
        ApiKey::JoinGroup => with_error!(JoinGroupResponse),
        ApiKey::Heartbeat => with_error!(HeartbeatResponse),
        ApiKey::LeaveGroup => with_error!(LeaveGroupResponse),
        ApiKey::SyncGroup => with_error!(SyncGroupResponse),
        ApiKey::DescribeGroups => empty!(DescribeGroupsResponse),
        ApiKey::ListGroups => with_error!(ListGroupsResponse),
        ApiKey::CreateTopics => empty!(CreateTopicsResponse),
        ApiKey::DeleteTopics => empty!(DeleteTopicsResponse),
        ApiKey::DeleteGroups => empty!(DeleteGroupsResponse),
        ApiKey::SaslHandshake => with_error!(SaslHandshakeResponse),
        ApiKey::SaslAuthenticate => with_error!(SaslAuthenticateResponse),
        ApiKey::InitProducerId => with_error!(InitProducerIdResponse),
        ApiKey::AddOffsetsToTxn => with_error!(AddOffsetsToTxnResponse),
        ApiKey::EndTxn => with_error!(EndTxnResponse),
        ApiKey::DescribeAcls => with_error!(DescribeAclsResponse),
        ApiKey::DescribeCluster => with_error!(DescribeClusterResponse),
        ApiKey::ListTransactions => with_error!(ListTransactionsResponse),
        ApiKey::OffsetDelete => with_error!(OffsetDeleteResponse),
        ApiKey::GetTelemetrySubscriptions => with_error!(GetTelemetrySubscriptionsResponse),
        ApiKey::PushTelemetry => with_error!(PushTelemetryResponse),
        ApiKey::ConsumerGroupHeartbeat => with_error!(ConsumerGroupHeartbeatResponse),
        ApiKey::DescribeConfigs => empty!(DescribeConfigsResponse),
        ApiKey::AlterConfigs => empty!(AlterConfigsResponse),
        ApiKey::IncrementalAlterConfigs => empty!(IncrementalAlterConfigsResponse),
        ApiKey::CreatePartitions => empty!(CreatePartitionsResponse),
        ApiKey::DeleteRecords => empty!(DeleteRecordsResponse),
        ApiKey::OffsetForLeaderEpoch => empty!(OffsetForLeaderEpochResponse),
        ApiKey::DescribeLogDirs => empty!(DescribeLogDirsResponse),
        ApiKey::AddPartitionsToTxn => empty!(AddPartitionsToTxnResponse),
        ApiKey::TxnOffsetCommit => empty!(TxnOffsetCommitResponse),
        ApiKey::DescribeProducers => empty!(DescribeProducersResponse),
        ApiKey::DescribeTransactions => empty!(DescribeTransactionsResponse),
        ApiKey::CreateAcls => empty!(CreateAclsResponse),
        ApiKey::DeleteAcls => empty!(DeleteAclsResponse),
        _ => return None,
    };
    encoded
        .map_err(|e| tracing::warn!(api = ?key, version = v, error = %e, "cannot encode an error response"))
        .ok()
}
