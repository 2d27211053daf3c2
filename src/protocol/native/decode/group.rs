//! Decoding of the consumer-group APIs (ApiKeys 7 to 16).
//!
//! The mirror of `encode/group.rs`: a plain string reads as "" when absent;
//! a string the model holds as `Option<String>` reads as `None` when absent
//! and `Some` (possibly "") when present; `OffsetFetchRequest.topics` reads
//! as `None` (every partition) when absent and `Some` even when empty. No
//! group body owns payload bytes, so a frame that carries any is rejected by
//! the caller's payload check. Required fields (group ids, topic names) are
//! enforced by the verifier before anything here runs.
use bytes::Bytes;
use flatbuffers::{ForwardsUOffset, Vector};

use super::{error_code, fb, tables, NativeError, Result, MISSING_BODY};
use crate::api::{
    CoordinatorInfo, DescribedGroup, DescribedMember, GroupResult, HeartbeatRequest, JoinGroupMember,
    JoinGroupProtocol, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, LeavingMember,
    LeftMember, ListedGroup, MemberAssignment, OffsetCommitPartition, OffsetCommitRequest, OffsetCommitTopic,
    OffsetCommitTopicResponse, OffsetFetchPartitionResponse, OffsetFetchTopic, OffsetFetchTopicResponse,
    PartitionError, Request, Response, SyncGroupRequest, SyncGroupResponse,
};

/// The group request bodies; any other body type is unknown.
pub(super) fn request_body(root: &fb::RequestFrame<'_>) -> Result<Request> {
    let req = match root.body_type() {
        fb::RequestBody::FindCoordinatorRequest => {
            let b = root.body_as_find_coordinator_request().ok_or(MISSING_BODY)?;
            Request::FindCoordinator {
                group_id: b.group_id().to_owned(),
            }
        }
        fb::RequestBody::JoinGroupRequest => {
            join_group_request(root.body_as_join_group_request().ok_or(MISSING_BODY)?)?
        }
        fb::RequestBody::SyncGroupRequest => {
            sync_group_request(root.body_as_sync_group_request().ok_or(MISSING_BODY)?)?
        }
        fb::RequestBody::HeartbeatRequest => {
            let b = root.body_as_heartbeat_request().ok_or(MISSING_BODY)?;
            Request::Heartbeat(HeartbeatRequest {
                group_id: b.group_id().to_owned(),
                generation_id: b.generation_id(),
                member_id: string(b.member_id()),
                group_instance_id: nullable(b.group_instance_id()),
            })
        }
        fb::RequestBody::LeaveGroupRequest => {
            let b = root.body_as_leave_group_request().ok_or(MISSING_BODY)?;
            let members = tables(b.members(), |m| {
                Ok(LeavingMember {
                    member_id: string(m.member_id()),
                    group_instance_id: nullable(m.group_instance_id()),
                })
            })?;
            Request::LeaveGroup(LeaveGroupRequest {
                group_id: b.group_id().to_owned(),
                members,
            })
        }
        fb::RequestBody::OffsetCommitRequest => {
            offset_commit_request(root.body_as_offset_commit_request().ok_or(MISSING_BODY)?)?
        }
        fb::RequestBody::OffsetFetchRequest => {
            let b = root.body_as_offset_fetch_request().ok_or(MISSING_BODY)?;
            // Absent: every committed offset; present, even empty: only these.
            let topics = match b.topics() {
                None => None,
                Some(v) => Some(tables(Some(v), offset_fetch_topic)?),
            };
            Request::OffsetFetch {
                group_id: b.group_id().to_owned(),
                topics,
            }
        }
        fb::RequestBody::ListGroupsRequest => {
            let b = root.body_as_list_groups_request().ok_or(MISSING_BODY)?;
            Request::ListGroups {
                states: strings(b.states()),
            }
        }
        fb::RequestBody::DescribeGroupsRequest => {
            let b = root.body_as_describe_groups_request().ok_or(MISSING_BODY)?;
            Request::DescribeGroups {
                groups: strings(b.groups()),
            }
        }
        fb::RequestBody::DeleteGroupsRequest => {
            let b = root.body_as_delete_groups_request().ok_or(MISSING_BODY)?;
            Request::DeleteGroups {
                groups: strings(b.groups()),
            }
        }
        _ => return Err(NativeError::Invalid("unknown request body type")),
    };
    Ok(req)
}

fn join_group_request(b: fb::JoinGroupRequest<'_>) -> Result<Request> {
    let protocols = tables(b.protocols(), |p| {
        Ok(JoinGroupProtocol {
            name: p.name().to_owned(),
            metadata: opaque(p.metadata()),
        })
    })?;
    Ok(Request::JoinGroup(JoinGroupRequest {
        group_id: b.group_id().to_owned(),
        session_timeout_ms: b.session_timeout_ms(),
        rebalance_timeout_ms: b.rebalance_timeout_ms(),
        member_id: string(b.member_id()),
        group_instance_id: nullable(b.group_instance_id()),
        protocol_type: string(b.protocol_type()),
        protocols,
    }))
}

fn sync_group_request(b: fb::SyncGroupRequest<'_>) -> Result<Request> {
    let assignments = tables(b.assignments(), |a| {
        Ok(MemberAssignment {
            member_id: string(a.member_id()),
            assignment: opaque(a.assignment()),
        })
    })?;
    Ok(Request::SyncGroup(SyncGroupRequest {
        group_id: b.group_id().to_owned(),
        generation_id: b.generation_id(),
        member_id: string(b.member_id()),
        group_instance_id: nullable(b.group_instance_id()),
        protocol_type: nullable(b.protocol_type()),
        protocol_name: nullable(b.protocol_name()),
        assignments,
    }))
}

fn offset_commit_request(b: fb::OffsetCommitRequest<'_>) -> Result<Request> {
    let topics = tables(b.topics(), |t| {
        let partitions = tables(t.partitions(), |p| {
            Ok(OffsetCommitPartition {
                partition: p.partition(),
                offset: p.offset(),
                leader_epoch: p.leader_epoch(),
                metadata: nullable(p.metadata()),
            })
        })?;
        Ok(OffsetCommitTopic {
            name: t.name().to_owned(),
            partitions,
        })
    })?;
    Ok(Request::OffsetCommit(OffsetCommitRequest {
        group_id: b.group_id().to_owned(),
        generation_id: b.generation_id(),
        member_id: string(b.member_id()),
        group_instance_id: nullable(b.group_instance_id()),
        topics,
    }))
}

fn offset_fetch_topic(t: fb::OffsetFetchTopic<'_>) -> Result<OffsetFetchTopic> {
    Ok(OffsetFetchTopic {
        name: t.name().to_owned(),
        partitions: t.partitions().map(|v| v.iter().collect()).unwrap_or_default(),
    })
}

/// The group response bodies; any other body type is unknown.
pub(super) fn response_body(root: &fb::ResponseFrame<'_>) -> Result<Response> {
    let resp = match root.body_type() {
        fb::ResponseBody::FindCoordinatorResponse => {
            let b = root.body_as_find_coordinator_response().ok_or(MISSING_BODY)?;
            Response::FindCoordinator(CoordinatorInfo {
                kafka: String::new(),
                error: error_code(b.error()),
                node_id: b.node_id(),
                host: string(b.host()),
                port: b.port(),
                shard: b.shard(),
                shard_port: b.shard_port(),
            })
        }
        fb::ResponseBody::JoinGroupResponse => {
            join_group_response(root.body_as_join_group_response().ok_or(MISSING_BODY)?)?
        }
        fb::ResponseBody::SyncGroupResponse => {
            let b = root.body_as_sync_group_response().ok_or(MISSING_BODY)?;
            Response::SyncGroup(SyncGroupResponse {
                error: error_code(b.error()),
                protocol_type: nullable(b.protocol_type()),
                protocol_name: nullable(b.protocol_name()),
                assignment: opaque(b.assignment()),
            })
        }
        fb::ResponseBody::HeartbeatResponse => {
            let b = root.body_as_heartbeat_response().ok_or(MISSING_BODY)?;
            Response::Heartbeat {
                error: error_code(b.error()),
            }
        }
        fb::ResponseBody::LeaveGroupResponse => {
            let b = root.body_as_leave_group_response().ok_or(MISSING_BODY)?;
            let members = tables(b.members(), |m| {
                Ok(LeftMember {
                    member_id: string(m.member_id()),
                    group_instance_id: nullable(m.group_instance_id()),
                    error: error_code(m.error()),
                })
            })?;
            Response::LeaveGroup(LeaveGroupResponse {
                error: error_code(b.error()),
                members,
            })
        }
        fb::ResponseBody::OffsetCommitResponse => {
            let b = root.body_as_offset_commit_response().ok_or(MISSING_BODY)?;
            Response::OffsetCommit {
                topics: tables(b.topics(), offset_commit_topic_response)?,
            }
        }
        fb::ResponseBody::OffsetFetchResponse => {
            let b = root.body_as_offset_fetch_response().ok_or(MISSING_BODY)?;
            Response::OffsetFetch {
                error: error_code(b.error()),
                topics: tables(b.topics(), offset_fetch_topic_response)?,
            }
        }
        fb::ResponseBody::ListGroupsResponse => {
            let b = root.body_as_list_groups_response().ok_or(MISSING_BODY)?;
            let groups = tables(b.groups(), |g| {
                Ok(ListedGroup {
                    group_id: g.group_id().to_owned(),
                    protocol_type: string(g.protocol_type()),
                    state: string(g.state()),
                })
            })?;
            Response::ListGroups {
                error: error_code(b.error()),
                groups,
            }
        }
        fb::ResponseBody::DescribeGroupsResponse => {
            let b = root.body_as_describe_groups_response().ok_or(MISSING_BODY)?;
            Response::DescribeGroups {
                groups: tables(b.groups(), described_group)?,
            }
        }
        fb::ResponseBody::DeleteGroupsResponse => {
            let b = root.body_as_delete_groups_response().ok_or(MISSING_BODY)?;
            let groups = tables(b.groups(), |g| {
                Ok(GroupResult {
                    group_id: g.group_id().to_owned(),
                    error: error_code(g.error()),
                })
            })?;
            Response::DeleteGroups { groups }
        }
        _ => return Err(NativeError::Invalid("unknown response body type")),
    };
    Ok(resp)
}

fn join_group_response(b: fb::JoinGroupResponse<'_>) -> Result<Response> {
    let members = tables(b.members(), |m| {
        Ok(JoinGroupMember {
            member_id: string(m.member_id()),
            group_instance_id: nullable(m.group_instance_id()),
            metadata: opaque(m.metadata()),
        })
    })?;
    Ok(Response::JoinGroup(JoinGroupResponse {
        error: error_code(b.error()),
        generation_id: b.generation_id(),
        protocol_type: nullable(b.protocol_type()),
        protocol_name: nullable(b.protocol_name()),
        leader: string(b.leader()),
        member_id: string(b.member_id()),
        members,
    }))
}

fn offset_commit_topic_response(t: fb::OffsetCommitTopicResponse<'_>) -> Result<OffsetCommitTopicResponse> {
    let partitions = tables(t.partitions(), |p| {
        Ok(PartitionError {
            partition: p.partition(),
            error: error_code(p.error()),
        })
    })?;
    Ok(OffsetCommitTopicResponse {
        name: t.name().to_owned(),
        partitions,
    })
}

fn offset_fetch_topic_response(t: fb::OffsetFetchTopicResponse<'_>) -> Result<OffsetFetchTopicResponse> {
    let partitions = tables(t.partitions(), |p| {
        Ok(OffsetFetchPartitionResponse {
            partition: p.partition(),
            offset: p.offset(),
            leader_epoch: p.leader_epoch(),
            metadata: nullable(p.metadata()),
            error: error_code(p.error()),
        })
    })?;
    Ok(OffsetFetchTopicResponse {
        name: t.name().to_owned(),
        partitions,
    })
}

fn described_group(g: fb::DescribedGroup<'_>) -> Result<DescribedGroup> {
    let members = tables(g.members(), |m| {
        Ok(DescribedMember {
            member_id: string(m.member_id()),
            group_instance_id: nullable(m.group_instance_id()),
            client_id: string(m.client_id()),
            client_host: string(m.client_host()),
            metadata: opaque(m.metadata()),
            assignment: opaque(m.assignment()),
        })
    })?;
    Ok(DescribedGroup {
        group_id: g.group_id().to_owned(),
        error: error_code(g.error()),
        state: string(g.state()),
        protocol_type: string(g.protocol_type()),
        protocol_name: string(g.protocol_name()),
        members,
    })
}

/// A plain string: absent reads as "".
fn string(s: Option<&str>) -> String {
    s.unwrap_or_default().to_owned()
}

/// An optional string: absent is `None`, present (even "") is `Some`.
fn nullable(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

/// A vector of strings: absent reads as empty.
fn strings(v: Option<Vector<'_, ForwardsUOffset<&str>>>) -> Vec<String> {
    v.map(|v| v.iter().map(str::to_owned).collect()).unwrap_or_default()
}

/// Opaque member metadata or assignment: absent reads as empty. Copied
/// rather than sliced from the frame: the coordinator keeps these for the
/// life of a membership, and a slice would pin the whole receive buffer.
/// Their size is bounded by the verified frame.
fn opaque(v: Option<Vector<'_, u8>>) -> Bytes {
    v.map(|v| Bytes::copy_from_slice(v.bytes())).unwrap_or_default()
}
