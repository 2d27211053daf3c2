//! Pure helpers of a group member: the decisions, without I/O. What an
//! error code from the coordinator means for the member, the leader's
//! assignment plan (subscriptions in, encoded assignments out), and the
//! shaping of OffsetCommit and OffsetFetch requests and answers.
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::api::{
    CoordinatorInfo, ErrorCode, JoinGroupMember, JoinGroupProtocol, MemberAssignment, OffsetCommitPartition,
    OffsetCommitTopic, OffsetCommitTopicResponse, OffsetFetchTopicResponse, Response, TopicInfo,
};
use crate::client::metadata::Endpoint;
use crate::client::ClientError;
use crate::group::assignor::{self, AssignmentMap, MemberSubscription};
use crate::group::consumer_protocol::{Assignment, Subscription};

/// What a member does about an error code from its coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recovery {
    /// Rejoin with the same member id.
    Rejoin,
    /// Forget the member id, then rejoin as a new member.
    RejoinAsNew,
    /// Find the coordinator again, then retry.
    FindCoordinator,
    /// Nothing to do: report it.
    Fail,
}

pub(super) fn recovery(code: ErrorCode) -> Recovery {
    match code {
        ErrorCode::RebalanceInProgress | ErrorCode::IllegalGeneration => Recovery::Rejoin,
        ErrorCode::UnknownMemberId => Recovery::RejoinAsNew,
        ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable | ErrorCode::CoordinatorLoadInProgress => {
            Recovery::FindCoordinator
        }
        _ => Recovery::Fail,
    }
}

/// The error code a group response carries (`None` if it succeeded or is
/// not a group response); for OffsetCommit, the first partition's error.
pub(super) fn response_error(resp: &Response) -> Option<ErrorCode> {
    let code = match resp {
        Response::FindCoordinator(info) => info.error,
        Response::JoinGroup(r) => r.error,
        Response::SyncGroup(r) => r.error,
        Response::Heartbeat { error } => *error,
        Response::LeaveGroup(r) => r.error,
        Response::OffsetFetch { error, .. } => *error,
        Response::OffsetCommit { topics } => first_commit_error(topics).map_or(ErrorCode::None, |(_, _, e)| e),
        Response::Error { error, .. } => *error,
        _ => ErrorCode::None,
    };
    (code != ErrorCode::None).then_some(code)
}

/// The outcome says the coordinator moved, is loading, or is unreachable.
pub(super) fn lost_coordinator(result: &Result<Response, ClientError>) -> bool {
    match result {
        Ok(resp) => response_error(resp).is_some_and(|c| recovery(c) == Recovery::FindCoordinator),
        Err(ClientError::Broker { code, .. }) => recovery(*code) == Recovery::FindCoordinator,
        Err(e) => e.is_retriable(),
    }
}

/// Where the member talks to its coordinator: the coordinating shard's own
/// port when shard-aware, else the broker's shared port.
pub(super) fn coordinator_endpoint(info: &CoordinatorInfo, shard_aware: bool) -> Result<Endpoint, ClientError> {
    let port = if shard_aware { info.shard_port } else { info.port };
    if info.host.is_empty() || port == 0 {
        return Err(ClientError::broker(
            ErrorCode::CoordinatorNotAvailable,
            format!("FindCoordinator named no address ({}:{port})", info.host),
        ));
    }
    Ok(Endpoint {
        host: info.host.clone(),
        port,
    })
}

pub(super) fn millis_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// A partition whose committed offset could not be read, and why.
type OffsetFailure = (String, u32, ErrorCode);

/// Partitions grouped by topic, topics and partitions in order.
pub(super) fn by_topic(partitions: &[(String, u32)]) -> BTreeMap<&str, Vec<u32>> {
    let mut out: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (t, p) in partitions {
        out.entry(t.as_str()).or_default().push(*p);
    }
    for ps in out.values_mut() {
        ps.sort_unstable();
        ps.dedup();
    }
    out
}

/// What a member owns, in the subscription's terms.
pub(super) fn owned_partitions(owned: &[(String, u32)]) -> Vec<(String, Vec<i32>)> {
    by_topic(owned)
        .into_iter()
        .map(|(t, ps)| {
            (
                t.to_string(),
                ps.into_iter().filter_map(|p| i32::try_from(p).ok()).collect(),
            )
        })
        .collect()
}

/// One JoinGroup protocol per configured assignor, in preference order,
/// each with the same subscription.
pub(super) fn join_protocols(
    assignors: &[String],
    subscription: &Subscription,
) -> Result<Vec<JoinGroupProtocol>, ClientError> {
    let metadata = subscription
        .encode()
        .map_err(|e| ClientError::Invalid(format!("encoding the subscription: {e}")))?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for name in assignors {
        if assignor::by_name(name).is_none() {
            return Err(ClientError::Invalid(format!("unknown assignor {name:?}")));
        }
        if seen.insert(name.as_str()) {
            out.push(JoinGroupProtocol {
                name: name.clone(),
                metadata: metadata.clone(),
            });
        }
    }
    Ok(out)
}

/// The members the leader assigns to, with their subscriptions. A member
/// whose subscription does not decode subscribes to nothing (and is
/// assigned nothing) rather than stalling the whole group.
pub(super) fn decode_members(members: &[JoinGroupMember]) -> Vec<MemberSubscription> {
    members
        .iter()
        .map(|m| MemberSubscription {
            member_id: m.member_id.clone(),
            group_instance_id: m.group_instance_id.clone(),
            subscription: Subscription::decode(&m.metadata).unwrap_or_else(|e| {
                tracing::warn!(member = %m.member_id, error = %e, "undecodable subscription; assigning it nothing");
                Subscription::default()
            }),
        })
        .collect()
}

/// Every topic some member subscribes to, sorted.
pub(super) fn subscribed_topics(members: &[MemberSubscription]) -> Vec<String> {
    let set: BTreeSet<&String> = members.iter().flat_map(|m| &m.subscription.topics).collect();
    set.into_iter().cloned().collect()
}

/// Partition counts of the topics metadata describes without error.
pub(super) fn partition_counts(topics: &[TopicInfo]) -> BTreeMap<String, u32> {
    topics
        .iter()
        .filter(|t| t.error == ErrorCode::None)
        .map(|t| (t.name.clone(), u32::try_from(t.partitions.len()).unwrap_or(u32::MAX)))
        .collect()
}

/// Each member's encoded assignment from the assignor's plan (an empty one
/// for a member the plan leaves out). Panics if the plan gives a partition
/// to two members: an assignor bug.
pub(super) fn encode_assignments(
    members: &[MemberSubscription],
    plan: &AssignmentMap,
) -> Result<Vec<MemberAssignment>, ClientError> {
    let mut given = BTreeSet::new();
    let mut out = Vec::with_capacity(members.len());
    let mut seen = BTreeSet::new();
    for m in members.iter().filter(|m| seen.insert(m.member_id.as_str())) {
        let topics = plan.get(&m.member_id).cloned().unwrap_or_default();
        for (t, ps) in &topics {
            for p in ps {
                assert!(given.insert((t.clone(), *p)), "assignor gave {t}/{p} to two members");
            }
        }
        let assignment = Assignment {
            partitions: topics.into_iter().collect(),
            user_data: None,
        };
        let bytes = assignment
            .encode()
            .map_err(|e| ClientError::Invalid(format!("encoding the assignment of {}: {e}", m.member_id)))?;
        out.push(MemberAssignment {
            member_id: m.member_id.clone(),
            assignment: bytes,
        });
    }
    Ok(out)
}

/// The partitions an assignment gives, sorted, without repeats; negative
/// partition numbers (never valid) are dropped.
pub(super) fn assigned_partitions(a: &Assignment) -> Vec<(String, u32)> {
    let set: BTreeSet<(String, u32)> = a
        .partitions
        .iter()
        .flat_map(|(t, ps)| ps.iter().filter_map(|p| Some((t.clone(), u32::try_from(*p).ok()?))))
        .collect();
    set.into_iter().collect()
}

/// OffsetCommit topics for `(topic, partition, offset)`s, topics in order.
pub(super) fn commit_topics(offsets: &[(&str, u32, i64)]) -> Vec<OffsetCommitTopic> {
    let mut topics: BTreeMap<&str, Vec<OffsetCommitPartition>> = BTreeMap::new();
    for (t, p, o) in offsets {
        topics.entry(t).or_default().push(OffsetCommitPartition {
            partition: *p,
            offset: *o,
            leader_epoch: -1,
            metadata: None,
        });
    }
    topics
        .into_iter()
        .map(|(name, partitions)| OffsetCommitTopic {
            name: name.to_string(),
            partitions,
        })
        .collect()
}

/// The first partition of a commit answer that failed.
pub(super) fn first_commit_error(topics: &[OffsetCommitTopicResponse]) -> Option<(String, u32, ErrorCode)> {
    topics.iter().find_map(|t| {
        let p = t.partitions.iter().find(|p| p.error != ErrorCode::None)?;
        Some((t.name.clone(), p.partition, p.error))
    })
}

pub(super) fn answered(topics: &[OffsetCommitTopicResponse], topic: &str, partition: u32) -> bool {
    topics
        .iter()
        .any(|t| t.name == topic && t.partitions.iter().any(|p| p.partition == partition))
}

/// The committed offsets of `wanted` in an OffsetFetch answer. No commit
/// (offset -1, or an unknown partition) is no entry; another error fails
/// with its partition.
pub(super) fn committed_offsets(
    topics: &[OffsetFetchTopicResponse],
    wanted: &[(String, u32)],
) -> Result<BTreeMap<(String, u32), i64>, OffsetFailure> {
    let mut out = BTreeMap::new();
    for t in topics {
        for p in &t.partitions {
            if !wanted.iter().any(|(wt, wp)| *wt == t.name && *wp == p.partition) {
                continue;
            }
            match p.error {
                ErrorCode::None if p.offset >= 0 => {
                    out.insert((t.name.clone(), p.partition), p.offset);
                }
                ErrorCode::None | ErrorCode::UnknownTopicOrPartition => {}
                code => return Err((t.name.clone(), p.partition, code)),
            }
        }
    }
    Ok(out)
}
