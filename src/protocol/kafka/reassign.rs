//! AlterPartitionReassignments and ListPartitionReassignments: decoded to
//! the neutral [`api::ClusterAdmin`] and answered from
//! [`api::ClusterAdminAnswer`]. Cluster mode only; a single node refuses
//! them as a whole.

use bytes::Bytes;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;

use super::data::{text, topic_name};
use super::{frame, partition_in, partition_out, Header};
use crate::api::{ClusterAdmin, ClusterAdminAnswer};

/// The request in `body`, for a header of either API.
pub(super) fn decode(header: &Header, body: &mut Bytes) -> Result<ClusterAdmin, String> {
    let v = header.version;
    match header.api_key {
        ApiKey::AlterPartitionReassignments => {
            let req = AlterPartitionReassignmentsRequest::decode(body, v).map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for t in req.topics {
                for p in t.partitions {
                    let replicas = p
                        .replicas
                        .map(|r| r.iter().map(|b| u32::try_from(b.0).unwrap_or(u32::MAX)).collect());
                    out.push((t.name.0.to_string(), partition_in(p.partition_index), replicas));
                }
            }
            Ok(ClusterAdmin::Reassign(out))
        }
        ApiKey::ListPartitionReassignments => {
            let req = ListPartitionReassignmentsRequest::decode(body, v).map_err(|e| e.to_string())?;
            Ok(ClusterAdmin::ListReassignments(req.topics.map(|ts| {
                ts.into_iter()
                    .flat_map(|t| {
                        let name = t.name.0.to_string();
                        t.partition_indexes
                            .into_iter()
                            .map(move |p| (name.clone(), partition_in(p)))
                    })
                    .collect()
            })))
        }
        other => Err(format!("{other:?} is not a reassignment API")),
    }
}

fn ids(nodes: &[u32]) -> Vec<BrokerId> {
    nodes
        .iter()
        .map(|&n| BrokerId(i32::try_from(n).unwrap_or(-1)))
        .collect()
}

/// Groups per-partition entries by topic (first-seen order), each topic
/// made by `topic` from its name and its partitions made by `part`.
fn by_topic<T, P, Tp>(items: Vec<(String, T)>, part: impl Fn(T) -> P, topic: impl Fn(String, Vec<P>) -> Tp) -> Vec<Tp> {
    let mut grouped: Vec<(String, Vec<P>)> = Vec::new();
    for (name, item) in items {
        let p = part(item);
        match grouped.iter_mut().find(|(t, _)| *t == name) {
            Some((_, v)) => v.push(p),
            None => grouped.push((name, vec![p])),
        }
    }
    grouped.into_iter().map(|(name, parts)| topic(name, parts)).collect()
}

/// The answer frame (size prefix included).
pub(super) fn encode(header: &Header, answer: ClusterAdminAnswer) -> Result<Bytes, String> {
    let (cid, key, v) = (header.correlation_id, header.api_key, header.version);
    match (key, answer) {
        (ApiKey::AlterPartitionReassignments, ClusterAdminAnswer::Reassign(results)) => {
            let topics = by_topic(
                results.into_iter().map(|r| (r.topic.clone(), r)).collect(),
                |r| {
                    ReassignablePartitionResponse::default()
                        .with_partition_index(partition_out(r.partition))
                        .with_error_code(r.error.code())
                        .with_error_message((!r.message.is_empty()).then(|| text(r.message)))
                },
                |name, partitions| {
                    ReassignableTopicResponse::default()
                        .with_name(topic_name(name))
                        .with_partitions(partitions)
                },
            );
            let resp = AlterPartitionReassignmentsResponse::default().with_responses(topics);
            frame(cid, key, v, &resp)
        }
        (ApiKey::ListPartitionReassignments, ClusterAdminAnswer::Reassignments(ongoing)) => {
            let topics = by_topic(
                ongoing.into_iter().map(|o| (o.topic.clone(), o)).collect(),
                |o| {
                    OngoingPartitionReassignment::default()
                        .with_partition_index(partition_out(o.partition))
                        .with_replicas(ids(&o.replicas))
                        .with_adding_replicas(ids(&o.adding))
                        .with_removing_replicas(ids(&o.removing))
                },
                |name, partitions| {
                    OngoingTopicReassignment::default()
                        .with_name(topic_name(name))
                        .with_partitions(partitions)
                },
            );
            frame(
                cid,
                key,
                v,
                &ListPartitionReassignmentsResponse::default().with_topics(topics),
            )
        }
        (ApiKey::AlterPartitionReassignments, ClusterAdminAnswer::Refused(e, m)) => {
            let resp = AlterPartitionReassignmentsResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(text(m)));
            frame(cid, key, v, &resp)
        }
        (ApiKey::ListPartitionReassignments, ClusterAdminAnswer::Refused(e, m)) => {
            let resp = ListPartitionReassignmentsResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(text(m)));
            frame(cid, key, v, &resp)
        }
        (key, answer) => Err(format!("{key:?} cannot carry {answer:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api;
    use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn header(key: ApiKey) -> Header {
        Header {
            api_key: key,
            version: 0,
            correlation_id: 7,
            client_id: String::new(),
            echo: Default::default(),
        }
    }

    #[test]
    fn requests_decode_to_the_neutral_model() {
        let req = AlterPartitionReassignmentsRequest::default().with_topics(vec![ReassignableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![
                ReassignablePartition::default()
                    .with_partition_index(2)
                    .with_replicas(Some(vec![BrokerId(3), BrokerId(1)])),
                ReassignablePartition::default()
                    .with_partition_index(5)
                    .with_replicas(None),
            ])]);
        let mut body = bytes::BytesMut::new();
        req.encode(&mut body, 0).expect("encodes");
        let got = decode(&header(ApiKey::AlterPartitionReassignments), &mut body.freeze());
        assert_eq!(
            got,
            Ok(ClusterAdmin::Reassign(vec![
                ("t".into(), 2, Some(vec![3, 1])),
                ("t".into(), 5, None)
            ]))
        );
        let mut body = bytes::BytesMut::new();
        ListPartitionReassignmentsRequest::default()
            .with_topics(None)
            .encode(&mut body, 0)
            .expect("encodes");
        let got = decode(&header(ApiKey::ListPartitionReassignments), &mut body.freeze());
        assert_eq!(got, Ok(ClusterAdmin::ListReassignments(None)));
        assert!(decode(
            &header(ApiKey::ListPartitionReassignments),
            &mut Bytes::from_static(&[1])
        )
        .is_err());
    }

    #[test]
    fn answers_group_partitions_by_topic() {
        let ongoing = vec![
            api::OngoingReassignment {
                topic: "a".into(),
                partition: 0,
                replicas: vec![4, 2, 1],
                adding: vec![4],
                removing: vec![1],
            },
            api::OngoingReassignment {
                topic: "a".into(),
                partition: 3,
                replicas: vec![1, 2],
                adding: vec![],
                removing: vec![],
            },
        ];
        let h = header(ApiKey::ListPartitionReassignments);
        let mut f = encode(&h, ClusterAdminAnswer::Reassignments(ongoing)).expect("encodes");
        let _ = f.split_to(4 + 4 + 1); // size, correlation id, tagged fields
        let resp = ListPartitionReassignmentsResponse::decode(&mut f, 0).expect("decodes");
        assert_eq!(resp.topics.len(), 1);
        let p = &resp.topics[0].partitions[0];
        assert_eq!(
            (
                p.replicas.clone(),
                p.adding_replicas.clone(),
                p.removing_replicas.clone()
            ),
            (ids(&[4, 2, 1]), ids(&[4]), ids(&[1]))
        );
        // An answer that does not fit the request is an error, not a frame.
        let h = header(ApiKey::AlterPartitionReassignments);
        assert!(encode(&h, ClusterAdminAnswer::Reassignments(Vec::new())).is_err());
    }
}
