//! Group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups,
//! DeleteGroups, mapped field for field onto the neutral model.
//!
//! Fields that exist only from some version on are set only at those
//! versions: the codec refuses to encode a non-default field its version
//! lacks.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{OffsetFetchResponsePartition, OffsetFetchResponseTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::data::{text, topic_name};
use super::{ms_in, partition_in, partition_out, Advertised, Decoded};
use crate::api::{self, ErrorCode, Request, Response};

/// FindCoordinator's key types: consumer groups, transactions.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

fn string(s: StrBytes) -> String {
    s.to_string()
}

fn group_name(s: String) -> GroupId {
    GroupId(text(s))
}

/// A transaction coordinator lookup names this node: transactions are not
/// supported, but a transactional producer learns that only from the
/// coordinator's answer to InitProducerId (UNSUPPORTED_VERSION, and a
/// warning in the broker's log). Answered "not available", it would retry
/// until its timeout without a word on either side.
pub(super) fn find_coordinator(req: FindCoordinatorRequest, node: &Advertised) -> Decoded {
    if req.key_type != KEY_TYPE_GROUP {
        let found = req.key_type == KEY_TYPE_TRANSACTION;
        return Decoded::Response(Response::FindCoordinator(api::CoordinatorInfo {
            kafka: String::new(),
            error: if found {
                ErrorCode::None
            } else {
                ErrorCode::CoordinatorNotAvailable
            },
            node_id: if found { node.node_id } else { -1 },
            // The Kafka answer carries `node`'s address, not these.
            host: String::new(),
            port: 0,
            shard: 0,
            shard_port: 0,
        }));
    }
    Decoded::Request(Request::FindCoordinator {
        group_id: string(req.key),
    })
}

/// The coordinator's node answered with the Kafka listener's address (the
/// neutral answer carries the native port).
pub(super) fn find_coordinator_response(node: &Advertised, c: api::CoordinatorInfo, v: i16) -> FindCoordinatorResponse {
    let found = c.error == ErrorCode::None;
    let (host, port) = crate::config::parse_host_port(&c.kafka).unwrap_or((node.host.clone(), node.port));
    let mut resp = FindCoordinatorResponse::default()
        .with_error_code(c.error.code())
        .with_node_id(BrokerId(if found { c.node_id } else { -1 }))
        .with_host(if found { text(host) } else { StrBytes::new() })
        .with_port(if found { i32::from(port) } else { -1 });
    if v >= 1 && !found {
        resp.error_message = Some(text(c.error.to_string()));
    }
    resp
}

pub(super) fn join_group(req: JoinGroupRequest, v: i16) -> Request {
    // v0 has no rebalance timeout: Kafka uses the session timeout.
    let rebalance_timeout_ms = if v == 0 {
        req.session_timeout_ms
    } else {
        req.rebalance_timeout_ms
    };
    Request::JoinGroup(api::JoinGroupRequest {
        group_id: req.group_id.0.to_string(),
        session_timeout_ms: ms_in(req.session_timeout_ms),
        rebalance_timeout_ms: ms_in(rebalance_timeout_ms),
        member_id: string(req.member_id),
        group_instance_id: req.group_instance_id.map(string),
        protocol_type: string(req.protocol_type),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| api::JoinGroupProtocol {
                name: string(p.name),
                metadata: p.metadata,
            })
            .collect(),
    })
}

pub(super) fn join_group_response(r: api::JoinGroupResponse, v: i16) -> JoinGroupResponse {
    let members = r
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(text(m.member_id))
                .with_group_instance_id(if v >= 5 { m.group_instance_id.map(text) } else { None })
                .with_metadata(m.metadata)
        })
        .collect();
    // The protocol name is nullable only from v7 on.
    let protocol_name = match r.protocol_name {
        Some(n) => Some(text(n)),
        None if v < 7 => Some(StrBytes::new()),
        None => None,
    };
    JoinGroupResponse::default()
        .with_error_code(r.error.code())
        .with_generation_id(r.generation_id)
        .with_protocol_type(if v >= 7 { r.protocol_type.map(text) } else { None })
        .with_protocol_name(protocol_name)
        .with_leader(text(r.leader))
        .with_member_id(text(r.member_id))
        .with_members(members)
}

pub(super) fn sync_group(req: SyncGroupRequest) -> Request {
    Request::SyncGroup(api::SyncGroupRequest {
        group_id: req.group_id.0.to_string(),
        generation_id: req.generation_id,
        member_id: string(req.member_id),
        group_instance_id: req.group_instance_id.map(string),
        protocol_type: req.protocol_type.map(string),
        protocol_name: req.protocol_name.map(string),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| api::MemberAssignment {
                member_id: string(a.member_id),
                assignment: a.assignment,
            })
            .collect(),
    })
}

pub(super) fn sync_group_response(r: api::SyncGroupResponse, v: i16) -> SyncGroupResponse {
    let mut resp = SyncGroupResponse::default()
        .with_error_code(r.error.code())
        .with_assignment(r.assignment);
    if v >= 5 {
        resp.protocol_type = r.protocol_type.map(text);
        resp.protocol_name = r.protocol_name.map(text);
    }
    resp
}

pub(super) fn heartbeat(req: HeartbeatRequest) -> Request {
    Request::Heartbeat(api::HeartbeatRequest {
        group_id: req.group_id.0.to_string(),
        generation_id: req.generation_id,
        member_id: string(req.member_id),
        group_instance_id: req.group_instance_id.map(string),
    })
}

pub(super) fn heartbeat_response(error: ErrorCode) -> HeartbeatResponse {
    HeartbeatResponse::default().with_error_code(error.code())
}

/// Up to v2 one member leaves; from v3 on, a batch.
pub(super) fn leave_group(req: LeaveGroupRequest, v: i16) -> Request {
    let members = if v < 3 {
        vec![api::LeavingMember {
            member_id: string(req.member_id),
            group_instance_id: None,
        }]
    } else {
        req.members
            .into_iter()
            .map(|m| api::LeavingMember {
                member_id: string(m.member_id),
                group_instance_id: m.group_instance_id.map(string),
            })
            .collect()
    };
    Request::LeaveGroup(api::LeaveGroupRequest {
        group_id: req.group_id.0.to_string(),
        members,
    })
}

pub(super) fn leave_group_response(r: api::LeaveGroupResponse, v: i16) -> LeaveGroupResponse {
    if v < 3 {
        // One member: its own error is the answer's.
        let member_error = r.members.first().map_or(ErrorCode::None, |m| m.error);
        let error = if r.error == ErrorCode::None {
            member_error
        } else {
            r.error
        };
        return LeaveGroupResponse::default().with_error_code(error.code());
    }
    let members = r
        .members
        .into_iter()
        .map(|m| {
            MemberResponse::default()
                .with_member_id(text(m.member_id))
                .with_group_instance_id(m.group_instance_id.map(text))
                .with_error_code(m.error.code())
        })
        .collect();
    LeaveGroupResponse::default()
        .with_error_code(r.error.code())
        .with_members(members)
}

pub(super) fn offset_commit(req: OffsetCommitRequest) -> Request {
    Request::OffsetCommit(api::OffsetCommitRequest {
        group_id: req.group_id.0.to_string(),
        generation_id: req.generation_id_or_member_epoch,
        member_id: string(req.member_id),
        group_instance_id: req.group_instance_id.map(string),
        topics: req
            .topics
            .into_iter()
            .map(|t| api::OffsetCommitTopic {
                name: t.name.0.to_string(),
                partitions: t
                    .partitions
                    .into_iter()
                    .map(|p| api::OffsetCommitPartition {
                        partition: partition_in(p.partition_index),
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.map(string),
                    })
                    .collect(),
            })
            .collect(),
    })
}

pub(super) fn offset_commit_response(topics: Vec<api::OffsetCommitTopicResponse>) -> OffsetCommitResponse {
    let topics = topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(partition_out(p.partition))
                        .with_error_code(p.error.code())
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic_name(t.name))
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

pub(super) fn offset_fetch(req: OffsetFetchRequest) -> Request {
    Request::OffsetFetch {
        group_id: req.group_id.0.to_string(),
        topics: req.topics.map(|ts| {
            ts.into_iter()
                .map(|t| api::OffsetFetchTopic {
                    name: t.name.0.to_string(),
                    partitions: t.partition_indexes.into_iter().map(partition_in).collect(),
                })
                .collect()
        }),
    }
}

pub(super) fn offset_fetch_response(
    error: ErrorCode,
    topics: Vec<api::OffsetFetchTopicResponse>,
    v: i16,
) -> OffsetFetchResponse {
    let topics = topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut out = OffsetFetchResponsePartition::default()
                        .with_partition_index(partition_out(p.partition))
                        .with_committed_offset(p.offset)
                        .with_metadata(Some(text(p.metadata.unwrap_or_default())))
                        .with_error_code(p.error.code());
                    if v >= 5 {
                        out.committed_leader_epoch = p.leader_epoch;
                    }
                    out
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(topic_name(t.name))
                .with_partitions(partitions)
        })
        .collect();
    let mut resp = OffsetFetchResponse::default().with_topics(topics);
    if v >= 2 {
        resp.error_code = error.code();
    }
    resp
}

pub(super) fn list_groups(req: ListGroupsRequest) -> Request {
    Request::ListGroups {
        states: req.states_filter.into_iter().map(string).collect(),
    }
}

pub(super) fn list_groups_response(error: ErrorCode, groups: Vec<api::ListedGroup>, v: i16) -> ListGroupsResponse {
    let groups = groups
        .into_iter()
        .map(|g| {
            let mut out = ListedGroup::default()
                .with_group_id(group_name(g.group_id))
                .with_protocol_type(text(g.protocol_type));
            if v >= 4 {
                out.group_state = text(g.state);
            }
            out
        })
        .collect();
    ListGroupsResponse::default()
        .with_error_code(error.code())
        .with_groups(groups)
}

pub(super) fn describe_groups(req: DescribeGroupsRequest) -> Request {
    Request::DescribeGroups {
        groups: req.groups.into_iter().map(|g| g.0.to_string()).collect(),
    }
}

pub(super) fn describe_groups_response(groups: Vec<api::DescribedGroup>, v: i16) -> DescribeGroupsResponse {
    let groups = groups
        .into_iter()
        .map(|g| {
            let members = g
                .members
                .into_iter()
                .map(|m| {
                    DescribedGroupMember::default()
                        .with_member_id(text(m.member_id))
                        .with_group_instance_id(if v >= 4 { m.group_instance_id.map(text) } else { None })
                        .with_client_id(text(m.client_id))
                        .with_client_host(text(m.client_host))
                        .with_member_metadata(m.metadata)
                        .with_member_assignment(m.assignment)
                })
                .collect();
            DescribedGroup::default()
                .with_error_code(g.error.code())
                .with_group_id(group_name(g.group_id))
                .with_group_state(text(g.state))
                .with_protocol_type(text(g.protocol_type))
                .with_protocol_data(text(g.protocol_name))
                .with_members(members)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub(super) fn delete_groups(req: DeleteGroupsRequest) -> Request {
    Request::DeleteGroups {
        groups: req.groups_names.into_iter().map(|g| g.0.to_string()).collect(),
    }
}

pub(super) fn delete_groups_response(groups: Vec<api::GroupResult>) -> DeleteGroupsResponse {
    let results = groups
        .into_iter()
        .map(|g| {
            DeletableGroupResult::default()
                .with_group_id(group_name(g.group_id))
                .with_error_code(g.error.code())
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
