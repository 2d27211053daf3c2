//! Encoding of the consumer-group APIs (ApiKeys 7 to 16).
//!
//! No group body carries a payload: member metadata and assignments are
//! small and opaque, so they go inside the FlatBuffer as `[ubyte]` vectors.
//! Two kinds of strings are written differently, and the decoder mirrors
//! both: a plain `String` is left out when empty (absent reads as ""); an
//! `Option<String>` is left out only when `None`, so `Some("")` survives.
use bytes::Bytes;
use flatbuffers::{Vector, WIPOffset};

use super::{fb, opt_string, opt_vec, strings, Body, Fbb};
use crate::api::{
    CoordinatorInfo, DescribedGroup, DescribedMember, ErrorCode, GroupResult, HeartbeatRequest, JoinGroupMember,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListedGroup, OffsetCommitRequest,
    OffsetCommitTopic, OffsetCommitTopicResponse, OffsetFetchTopic, OffsetFetchTopicResponse, SyncGroupRequest,
    SyncGroupResponse,
};

pub(super) fn find_coordinator_request(fbb: &mut Fbb<'_>, group_id: &str) -> (fb::RequestBody, Body) {
    let group_id = Some(fbb.create_string(group_id));
    let b = fb::FindCoordinatorRequest::create(fbb, &fb::FindCoordinatorRequestArgs { group_id });
    (fb::RequestBody::FindCoordinatorRequest, b.as_union_value())
}

pub(super) fn join_group_request(fbb: &mut Fbb<'_>, r: &JoinGroupRequest) -> (fb::RequestBody, Body) {
    let protocols: Vec<_> = r
        .protocols
        .iter()
        .map(|p| {
            let name = Some(fbb.create_string(&p.name));
            let metadata = opaque(fbb, &p.metadata);
            fb::JoinGroupProtocol::create(fbb, &fb::JoinGroupProtocolArgs { name, metadata })
        })
        .collect();
    let args = fb::JoinGroupRequestArgs {
        group_id: Some(fbb.create_string(&r.group_id)),
        session_timeout_ms: r.session_timeout_ms,
        rebalance_timeout_ms: r.rebalance_timeout_ms,
        member_id: opt_string(fbb, &r.member_id),
        group_instance_id: nullable_string(fbb, r.group_instance_id.as_deref()),
        protocol_type: opt_string(fbb, &r.protocol_type),
        protocols: opt_vec(fbb, &protocols),
    };
    let b = fb::JoinGroupRequest::create(fbb, &args);
    (fb::RequestBody::JoinGroupRequest, b.as_union_value())
}

pub(super) fn sync_group_request(fbb: &mut Fbb<'_>, r: &SyncGroupRequest) -> (fb::RequestBody, Body) {
    let assignments: Vec<_> = r
        .assignments
        .iter()
        .map(|a| {
            let member_id = opt_string(fbb, &a.member_id);
            let assignment = opaque(fbb, &a.assignment);
            fb::MemberAssignment::create(fbb, &fb::MemberAssignmentArgs { member_id, assignment })
        })
        .collect();
    let args = fb::SyncGroupRequestArgs {
        group_id: Some(fbb.create_string(&r.group_id)),
        generation_id: r.generation_id,
        member_id: opt_string(fbb, &r.member_id),
        group_instance_id: nullable_string(fbb, r.group_instance_id.as_deref()),
        protocol_type: nullable_string(fbb, r.protocol_type.as_deref()),
        protocol_name: nullable_string(fbb, r.protocol_name.as_deref()),
        assignments: opt_vec(fbb, &assignments),
    };
    let b = fb::SyncGroupRequest::create(fbb, &args);
    (fb::RequestBody::SyncGroupRequest, b.as_union_value())
}

pub(super) fn heartbeat_request(fbb: &mut Fbb<'_>, r: &HeartbeatRequest) -> (fb::RequestBody, Body) {
    let args = fb::HeartbeatRequestArgs {
        group_id: Some(fbb.create_string(&r.group_id)),
        generation_id: r.generation_id,
        member_id: opt_string(fbb, &r.member_id),
        group_instance_id: nullable_string(fbb, r.group_instance_id.as_deref()),
    };
    let b = fb::HeartbeatRequest::create(fbb, &args);
    (fb::RequestBody::HeartbeatRequest, b.as_union_value())
}

pub(super) fn leave_group_request(fbb: &mut Fbb<'_>, r: &LeaveGroupRequest) -> (fb::RequestBody, Body) {
    let members: Vec<_> = r
        .members
        .iter()
        .map(|m| {
            let args = fb::LeavingMemberArgs {
                member_id: opt_string(fbb, &m.member_id),
                group_instance_id: nullable_string(fbb, m.group_instance_id.as_deref()),
            };
            fb::LeavingMember::create(fbb, &args)
        })
        .collect();
    let args = fb::LeaveGroupRequestArgs {
        group_id: Some(fbb.create_string(&r.group_id)),
        members: opt_vec(fbb, &members),
    };
    let b = fb::LeaveGroupRequest::create(fbb, &args);
    (fb::RequestBody::LeaveGroupRequest, b.as_union_value())
}

pub(super) fn offset_commit_request(fbb: &mut Fbb<'_>, r: &OffsetCommitRequest) -> (fb::RequestBody, Body) {
    let topics: Vec<_> = r.topics.iter().map(|t| offset_commit_topic(fbb, t)).collect();
    let args = fb::OffsetCommitRequestArgs {
        group_id: Some(fbb.create_string(&r.group_id)),
        generation_id: r.generation_id,
        member_id: opt_string(fbb, &r.member_id),
        group_instance_id: nullable_string(fbb, r.group_instance_id.as_deref()),
        topics: opt_vec(fbb, &topics),
    };
    let b = fb::OffsetCommitRequest::create(fbb, &args);
    (fb::RequestBody::OffsetCommitRequest, b.as_union_value())
}

fn offset_commit_topic<'a>(fbb: &mut Fbb<'a>, t: &OffsetCommitTopic) -> WIPOffset<fb::OffsetCommitTopic<'a>> {
    let parts: Vec<_> = t
        .partitions
        .iter()
        .map(|p| {
            let args = fb::OffsetCommitPartitionArgs {
                partition: p.partition,
                offset: p.offset,
                leader_epoch: p.leader_epoch,
                metadata: nullable_string(fbb, p.metadata.as_deref()),
            };
            fb::OffsetCommitPartition::create(fbb, &args)
        })
        .collect();
    let name = Some(fbb.create_string(&t.name));
    let partitions = opt_vec(fbb, &parts);
    fb::OffsetCommitTopic::create(fbb, &fb::OffsetCommitTopicArgs { name, partitions })
}

pub(super) fn offset_fetch_request(
    fbb: &mut Fbb<'_>,
    group_id: &str,
    topics: Option<&[OffsetFetchTopic]>,
) -> (fb::RequestBody, Body) {
    // Absent means every committed offset; an empty vector means none.
    let topics = topics.map(|topics| {
        let offsets: Vec<_> = topics.iter().map(|t| offset_fetch_topic(fbb, t)).collect();
        fbb.create_vector(&offsets)
    });
    let group_id = Some(fbb.create_string(group_id));
    let b = fb::OffsetFetchRequest::create(fbb, &fb::OffsetFetchRequestArgs { group_id, topics });
    (fb::RequestBody::OffsetFetchRequest, b.as_union_value())
}

fn offset_fetch_topic<'a>(fbb: &mut Fbb<'a>, t: &OffsetFetchTopic) -> WIPOffset<fb::OffsetFetchTopic<'a>> {
    let name = Some(fbb.create_string(&t.name));
    let partitions = (!t.partitions.is_empty()).then(|| fbb.create_vector(&t.partitions));
    fb::OffsetFetchTopic::create(fbb, &fb::OffsetFetchTopicArgs { name, partitions })
}

pub(super) fn list_groups_request(fbb: &mut Fbb<'_>, states: &[String]) -> (fb::RequestBody, Body) {
    let states = (!states.is_empty()).then(|| strings(fbb, states));
    let b = fb::ListGroupsRequest::create(fbb, &fb::ListGroupsRequestArgs { states });
    (fb::RequestBody::ListGroupsRequest, b.as_union_value())
}

pub(super) fn describe_groups_request(fbb: &mut Fbb<'_>, groups: &[String]) -> (fb::RequestBody, Body) {
    let groups = (!groups.is_empty()).then(|| strings(fbb, groups));
    let b = fb::DescribeGroupsRequest::create(fbb, &fb::DescribeGroupsRequestArgs { groups });
    (fb::RequestBody::DescribeGroupsRequest, b.as_union_value())
}

pub(super) fn delete_groups_request(fbb: &mut Fbb<'_>, groups: &[String]) -> (fb::RequestBody, Body) {
    let groups = (!groups.is_empty()).then(|| strings(fbb, groups));
    let b = fb::DeleteGroupsRequest::create(fbb, &fb::DeleteGroupsRequestArgs { groups });
    (fb::RequestBody::DeleteGroupsRequest, b.as_union_value())
}

pub(super) fn find_coordinator_response(fbb: &mut Fbb<'_>, c: &CoordinatorInfo) -> (fb::ResponseBody, Body) {
    let args = fb::FindCoordinatorResponseArgs {
        error: c.error.code(),
        node_id: c.node_id,
        host: opt_string(fbb, &c.host),
        port: c.port,
        shard: c.shard,
        shard_port: c.shard_port,
    };
    let b = fb::FindCoordinatorResponse::create(fbb, &args);
    (fb::ResponseBody::FindCoordinatorResponse, b.as_union_value())
}

pub(super) fn join_group_response(fbb: &mut Fbb<'_>, r: &JoinGroupResponse) -> (fb::ResponseBody, Body) {
    let members: Vec<_> = r.members.iter().map(|m| join_group_member(fbb, m)).collect();
    let args = fb::JoinGroupResponseArgs {
        error: r.error.code(),
        generation_id: r.generation_id,
        protocol_type: nullable_string(fbb, r.protocol_type.as_deref()),
        protocol_name: nullable_string(fbb, r.protocol_name.as_deref()),
        leader: opt_string(fbb, &r.leader),
        member_id: opt_string(fbb, &r.member_id),
        members: opt_vec(fbb, &members),
    };
    let b = fb::JoinGroupResponse::create(fbb, &args);
    (fb::ResponseBody::JoinGroupResponse, b.as_union_value())
}

fn join_group_member<'a>(fbb: &mut Fbb<'a>, m: &JoinGroupMember) -> WIPOffset<fb::JoinGroupMember<'a>> {
    let args = fb::JoinGroupMemberArgs {
        member_id: opt_string(fbb, &m.member_id),
        group_instance_id: nullable_string(fbb, m.group_instance_id.as_deref()),
        metadata: opaque(fbb, &m.metadata),
    };
    fb::JoinGroupMember::create(fbb, &args)
}

pub(super) fn sync_group_response(fbb: &mut Fbb<'_>, r: &SyncGroupResponse) -> (fb::ResponseBody, Body) {
    let args = fb::SyncGroupResponseArgs {
        error: r.error.code(),
        protocol_type: nullable_string(fbb, r.protocol_type.as_deref()),
        protocol_name: nullable_string(fbb, r.protocol_name.as_deref()),
        assignment: opaque(fbb, &r.assignment),
    };
    let b = fb::SyncGroupResponse::create(fbb, &args);
    (fb::ResponseBody::SyncGroupResponse, b.as_union_value())
}

pub(super) fn heartbeat_response(fbb: &mut Fbb<'_>, error: ErrorCode) -> (fb::ResponseBody, Body) {
    let b = fb::HeartbeatResponse::create(fbb, &fb::HeartbeatResponseArgs { error: error.code() });
    (fb::ResponseBody::HeartbeatResponse, b.as_union_value())
}

pub(super) fn leave_group_response(fbb: &mut Fbb<'_>, r: &LeaveGroupResponse) -> (fb::ResponseBody, Body) {
    let members: Vec<_> = r
        .members
        .iter()
        .map(|m| {
            let args = fb::LeftMemberArgs {
                member_id: opt_string(fbb, &m.member_id),
                group_instance_id: nullable_string(fbb, m.group_instance_id.as_deref()),
                error: m.error.code(),
            };
            fb::LeftMember::create(fbb, &args)
        })
        .collect();
    let args = fb::LeaveGroupResponseArgs {
        error: r.error.code(),
        members: opt_vec(fbb, &members),
    };
    let b = fb::LeaveGroupResponse::create(fbb, &args);
    (fb::ResponseBody::LeaveGroupResponse, b.as_union_value())
}

pub(super) fn offset_commit_response(
    fbb: &mut Fbb<'_>,
    topics: &[OffsetCommitTopicResponse],
) -> (fb::ResponseBody, Body) {
    let topics: Vec<_> = topics
        .iter()
        .map(|t| {
            let parts: Vec<_> = t
                .partitions
                .iter()
                .map(|p| {
                    let args = fb::PartitionErrorArgs {
                        partition: p.partition,
                        error: p.error.code(),
                    };
                    fb::PartitionError::create(fbb, &args)
                })
                .collect();
            let name = Some(fbb.create_string(&t.name));
            let partitions = opt_vec(fbb, &parts);
            fb::OffsetCommitTopicResponse::create(fbb, &fb::OffsetCommitTopicResponseArgs { name, partitions })
        })
        .collect();
    let topics = opt_vec(fbb, &topics);
    let b = fb::OffsetCommitResponse::create(fbb, &fb::OffsetCommitResponseArgs { topics });
    (fb::ResponseBody::OffsetCommitResponse, b.as_union_value())
}

pub(super) fn offset_fetch_response(
    fbb: &mut Fbb<'_>,
    error: ErrorCode,
    topics: &[OffsetFetchTopicResponse],
) -> (fb::ResponseBody, Body) {
    let topics: Vec<_> = topics.iter().map(|t| offset_fetch_topic_response(fbb, t)).collect();
    let args = fb::OffsetFetchResponseArgs {
        error: error.code(),
        topics: opt_vec(fbb, &topics),
    };
    let b = fb::OffsetFetchResponse::create(fbb, &args);
    (fb::ResponseBody::OffsetFetchResponse, b.as_union_value())
}

fn offset_fetch_topic_response<'a>(
    fbb: &mut Fbb<'a>,
    t: &OffsetFetchTopicResponse,
) -> WIPOffset<fb::OffsetFetchTopicResponse<'a>> {
    let parts: Vec<_> = t
        .partitions
        .iter()
        .map(|p| {
            let args = fb::OffsetFetchPartitionResponseArgs {
                partition: p.partition,
                offset: p.offset,
                leader_epoch: p.leader_epoch,
                metadata: nullable_string(fbb, p.metadata.as_deref()),
                error: p.error.code(),
            };
            fb::OffsetFetchPartitionResponse::create(fbb, &args)
        })
        .collect();
    let name = Some(fbb.create_string(&t.name));
    let partitions = opt_vec(fbb, &parts);
    fb::OffsetFetchTopicResponse::create(fbb, &fb::OffsetFetchTopicResponseArgs { name, partitions })
}

pub(super) fn list_groups_response(
    fbb: &mut Fbb<'_>,
    error: ErrorCode,
    groups: &[ListedGroup],
) -> (fb::ResponseBody, Body) {
    let groups: Vec<_> = groups
        .iter()
        .map(|g| {
            let args = fb::ListedGroupArgs {
                group_id: Some(fbb.create_string(&g.group_id)),
                protocol_type: opt_string(fbb, &g.protocol_type),
                state: opt_string(fbb, &g.state),
            };
            fb::ListedGroup::create(fbb, &args)
        })
        .collect();
    let args = fb::ListGroupsResponseArgs {
        error: error.code(),
        groups: opt_vec(fbb, &groups),
    };
    let b = fb::ListGroupsResponse::create(fbb, &args);
    (fb::ResponseBody::ListGroupsResponse, b.as_union_value())
}

pub(super) fn describe_groups_response(fbb: &mut Fbb<'_>, groups: &[DescribedGroup]) -> (fb::ResponseBody, Body) {
    let groups: Vec<_> = groups.iter().map(|g| described_group(fbb, g)).collect();
    let groups = opt_vec(fbb, &groups);
    let b = fb::DescribeGroupsResponse::create(fbb, &fb::DescribeGroupsResponseArgs { groups });
    (fb::ResponseBody::DescribeGroupsResponse, b.as_union_value())
}

fn described_group<'a>(fbb: &mut Fbb<'a>, g: &DescribedGroup) -> WIPOffset<fb::DescribedGroup<'a>> {
    let members: Vec<_> = g.members.iter().map(|m| described_member(fbb, m)).collect();
    let args = fb::DescribedGroupArgs {
        group_id: Some(fbb.create_string(&g.group_id)),
        error: g.error.code(),
        state: opt_string(fbb, &g.state),
        protocol_type: opt_string(fbb, &g.protocol_type),
        protocol_name: opt_string(fbb, &g.protocol_name),
        members: opt_vec(fbb, &members),
    };
    fb::DescribedGroup::create(fbb, &args)
}

fn described_member<'a>(fbb: &mut Fbb<'a>, m: &DescribedMember) -> WIPOffset<fb::DescribedMember<'a>> {
    let args = fb::DescribedMemberArgs {
        member_id: opt_string(fbb, &m.member_id),
        group_instance_id: nullable_string(fbb, m.group_instance_id.as_deref()),
        client_id: opt_string(fbb, &m.client_id),
        client_host: opt_string(fbb, &m.client_host),
        metadata: opaque(fbb, &m.metadata),
        assignment: opaque(fbb, &m.assignment),
    };
    fb::DescribedMember::create(fbb, &args)
}

pub(super) fn delete_groups_response(fbb: &mut Fbb<'_>, groups: &[GroupResult]) -> (fb::ResponseBody, Body) {
    let groups: Vec<_> = groups
        .iter()
        .map(|g| {
            let args = fb::GroupResultArgs {
                group_id: Some(fbb.create_string(&g.group_id)),
                error: g.error.code(),
            };
            fb::GroupResult::create(fbb, &args)
        })
        .collect();
    let groups = opt_vec(fbb, &groups);
    let b = fb::DeleteGroupsResponse::create(fbb, &fb::DeleteGroupsResponseArgs { groups });
    (fb::ResponseBody::DeleteGroupsResponse, b.as_union_value())
}

/// `None` stays absent and `Some` is written even when empty, so the two
/// decode distinctly.
fn nullable_string<'a>(fbb: &mut Fbb<'a>, s: Option<&str>) -> Option<WIPOffset<&'a str>> {
    s.map(|s| fbb.create_string(s))
}

/// Opaque bytes as a `[ubyte]` vector; empty is left out (absent reads as empty).
fn opaque<'a>(fbb: &mut Fbb<'a>, b: &Bytes) -> Option<WIPOffset<Vector<'a, u8>>> {
    (!b.is_empty()).then(|| fbb.create_vector(b.as_ref()))
}
