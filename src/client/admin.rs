//! Admin operations on a `Client`: create, delete, grow, list and describe
//! topics, look up offsets, get a producer id, and list, describe, reset
//! and delete consumer groups (the broker routes group requests to their
//! coordinator). Topic changes and producer ids go to any broker (the
//! broker forwards them to its controller); offset lookups go to each
//! partition's owner.
//!
//! Creating and deleting are not retried: a timed-out create may have
//! happened, and a retry would report "already exists".
use std::collections::BTreeMap;

use super::cluster::{unexpected, unknown_topic};
use super::{Client, ClientError};
use crate::api::{
    DescribedGroup, ErrorCode, ListOffsetsPartition, ListOffsetsTopic, ListedGroup, NewPartitions, NewTopic,
    OffsetCommitPartition, OffsetCommitRequest, OffsetCommitTopic, OffsetSpec, Request, Response, TopicConfig,
    TopicInfo, TopicResult,
};

impl Client {
    /// Creates one topic; `TopicAlreadyExists` and the like come back as
    /// `ClientError::Broker`.
    pub async fn create_topic(&self, name: &str, partitions: u32, config: TopicConfig) -> Result<(), ClientError> {
        let results = self
            .create_topics(vec![NewTopic {
                replication: Default::default(),
                name: name.to_string(),
                partitions,
                config,
            }])
            .await?;
        one_result(name, results)
    }

    /// Creates topics; one result per topic, errors included.
    pub async fn create_topics(&self, topics: Vec<NewTopic>) -> Result<Vec<TopicResult>, ClientError> {
        let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
        let results = match self.send_any(Request::CreateTopics { topics }).await? {
            Response::CreateTopics { topics } => topics,
            other => return Err(unexpected("CreateTopics", &other)),
        };
        // Learn the new topics now, so producers need no extra round trip.
        let created: Vec<String> = results
            .iter()
            .filter(|r| r.error == ErrorCode::None && names.contains(&r.name))
            .map(|r| r.name.clone())
            .collect();
        if !created.is_empty() {
            if let Err(e) = self.refresh_metadata(Some(created)).await {
                tracing::debug!(error = %e, "metadata refresh after create failed");
            }
        }
        Ok(results)
    }

    /// Deletes one topic.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        let results = self.delete_topics(vec![name.to_string()]).await?;
        one_result(name, results)
    }

    /// Deletes topics; one result per topic, errors included.
    pub async fn delete_topics(&self, names: Vec<String>) -> Result<Vec<TopicResult>, ClientError> {
        let results = match self.send_any(Request::DeleteTopics { names: names.clone() }).await? {
            Response::DeleteTopics { topics } => topics,
            other => return Err(unexpected("DeleteTopics", &other)),
        };
        for name in names {
            self.forget_topic(&name);
        }
        Ok(results)
    }

    /// Grows `name` to `total` partitions (the new total, not the number to
    /// add); existing partitions keep their data and placement.
    /// `InvalidPartitions` if `total` is not above the current count.
    pub async fn create_partitions(&self, name: &str, total: u32) -> Result<(), ClientError> {
        let req = Request::CreatePartitions {
            topics: vec![NewPartitions {
                name: name.to_string(),
                count: total,
            }],
            validate_only: false,
        };
        let results = match self.send_any(req).await? {
            Response::CreatePartitions { topics } => topics,
            other => return Err(unexpected("CreatePartitions", &other)),
        };
        one_result(name, results)?;
        // Learn the new partitions now, so producers can use them at once.
        if let Err(e) = self.refresh_metadata(Some(vec![name.to_string()])).await {
            tracing::debug!(error = %e, "metadata refresh after create_partitions failed");
        }
        Ok(())
    }

    /// A fresh producer id (epoch 0) for an idempotent producer: unique on
    /// this broker for the life of its data, restarts included. Not retried
    /// here: a retry is harmless but burns an id, so the caller decides.
    pub async fn init_producer_id(&self) -> Result<(i64, i16), ClientError> {
        let req = Request::InitProducerId {
            transactional_id: None,
            transaction_timeout_ms: 0,
            producer_id: -1,
            producer_epoch: -1,
        };
        match self.send_any(req).await? {
            Response::InitProducerId {
                error: ErrorCode::None,
                producer_id,
                producer_epoch,
            } => Ok((producer_id, producer_epoch)),
            Response::InitProducerId { error, .. } => Err(ClientError::broker(error, "InitProducerId")),
            other => Err(unexpected("InitProducerId", &other)),
        }
    }

    /// Every topic, sorted by name, with partitions and config.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, ClientError> {
        let mut topics = self.refresh_metadata(None).await?;
        topics.retain(|t| t.error == ErrorCode::None);
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// One topic: partitions (owner shard and port, log start, high
    /// watermark) and config. `UnknownTopicOrPartition` if there is none.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicInfo, ClientError> {
        let topics = self.refresh_metadata(Some(vec![name.to_string()])).await?;
        match topics.into_iter().find(|t| t.name == name) {
            Some(t) if t.error == ErrorCode::None => Ok(t),
            Some(t) if t.error != ErrorCode::UnknownTopicOrPartition => {
                Err(ClientError::broker(t.error, format!("describing {name}")))
            }
            _ => Err(unknown_topic(name)),
        }
    }

    /// Looks up offsets of `topic`'s partitions, asking each partition's
    /// owner. One answer per asked partition, in the order asked: the
    /// offset (-1 when no record matches a timestamp) or the error code.
    pub async fn list_offsets(
        &self,
        topic: &str,
        specs: &[(u32, OffsetSpec)],
    ) -> Result<Vec<(u32, Result<i64, ErrorCode>)>, ClientError> {
        let mut by_endpoint = BTreeMap::new();
        for &(partition, spec) in specs {
            let endpoint = self.endpoint_for(topic, partition).await?;
            by_endpoint
                .entry(endpoint)
                .or_insert_with(Vec::new)
                .push(ListOffsetsPartition { partition, spec });
        }
        let mut answers = BTreeMap::new();
        for (endpoint, partitions) in by_endpoint {
            let req = Request::ListOffsets {
                topics: vec![ListOffsetsTopic {
                    name: topic.to_string(),
                    partitions,
                }],
            };
            let topics = match self.send(&endpoint, req, None).await? {
                Response::ListOffsets { topics } => topics,
                other => return Err(unexpected("ListOffsets", &other)),
            };
            for p in topics
                .into_iter()
                .filter(|t| t.name == topic)
                .flat_map(|t| t.partitions)
            {
                let answer = if p.error == ErrorCode::None {
                    Ok(p.offset)
                } else {
                    Err(p.error)
                };
                answers.insert(p.partition, answer);
            }
        }
        Ok(specs
            .iter()
            .map(|&(p, _)| {
                (
                    p,
                    answers
                        .get(&p)
                        .copied()
                        .unwrap_or(Err(ErrorCode::UnknownTopicOrPartition)),
                )
            })
            .collect())
    }

    /// Sends a group request, retrying while its coordinator is loading or
    /// moving (retriable error codes), with the client's back-off.
    async fn group_call<T>(
        &self,
        req: Request,
        parse: impl Fn(Response) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send_any(req.clone()).await.and_then(&parse) {
                Err(e) if e.is_retriable() && attempt < self.config().retries_max => {
                    glommio::timer::sleep(self.config().backoff(attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// Every consumer group the cluster knows (with members or committed
    /// offsets), sorted by id.
    pub async fn list_groups(&self) -> Result<Vec<ListedGroup>, ClientError> {
        self.group_call(Request::ListGroups { states: Vec::new() }, |resp| match resp {
            Response::ListGroups {
                error: ErrorCode::None,
                groups,
            } => Ok(groups),
            Response::ListGroups { error, .. } => Err(ClientError::broker(error, "listing groups")),
            other => Err(unexpected("ListGroups", &other)),
        })
        .await
    }

    /// A group's state, protocol and members with their assignments. A
    /// group nobody ever used is in state "Dead".
    pub async fn describe_group(&self, group: &str) -> Result<DescribedGroup, ClientError> {
        let req = Request::DescribeGroups {
            groups: vec![group.to_string()],
        };
        self.group_call(req, |resp| match resp {
            Response::DescribeGroups { groups } => match groups.into_iter().find(|g| g.group_id == group) {
                Some(g) if g.error == ErrorCode::None => Ok(g),
                Some(g) => Err(ClientError::broker(g.error, format!("describing group {group}"))),
                None => Err(ClientError::Invalid(format!(
                    "the broker did not describe group {group}"
                ))),
            },
            other => Err(unexpected("DescribeGroups", &other)),
        })
        .await
    }

    /// Every offset `group` has committed: (topic, partition, offset,
    /// metadata), ordered by topic and partition.
    pub async fn group_offsets(&self, group: &str) -> Result<Vec<(String, u32, i64, Option<String>)>, ClientError> {
        let req = Request::OffsetFetch {
            group_id: group.to_string(),
            topics: None,
        };
        self.group_call(req, |resp| match resp {
            Response::OffsetFetch {
                error: ErrorCode::None,
                topics,
            } => Ok(topics
                .into_iter()
                .flat_map(|t| {
                    let name = t.name;
                    t.partitions
                        .into_iter()
                        .filter(|p| p.error == ErrorCode::None && p.offset >= 0)
                        .map(move |p| (name.clone(), p.partition, p.offset, p.metadata))
                })
                .collect()),
            Response::OffsetFetch { error, .. } => {
                Err(ClientError::broker(error, format!("fetching offsets of {group}")))
            }
            other => Err(unexpected("OffsetFetch", &other)),
        })
        .await
    }

    /// Sets `group`'s committed offsets from outside the group protocol
    /// (what `sluice group reset-offsets` does). The broker accepts this
    /// only while the group has no members.
    pub async fn set_group_offsets(&self, group: &str, offsets: &[(String, u32, i64)]) -> Result<(), ClientError> {
        let mut topics: Vec<OffsetCommitTopic> = Vec::new();
        for (topic, partition, offset) in offsets {
            let entry = OffsetCommitPartition {
                partition: *partition,
                offset: *offset,
                leader_epoch: -1,
                metadata: None,
            };
            match topics.iter_mut().find(|t| &t.name == topic) {
                Some(t) => t.partitions.push(entry),
                None => topics.push(OffsetCommitTopic {
                    name: topic.clone(),
                    partitions: vec![entry],
                }),
            }
        }
        let req = Request::OffsetCommit(OffsetCommitRequest {
            group_id: group.to_string(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
            topics,
        });
        self.group_call(req, |resp| match resp {
            Response::OffsetCommit { topics } => {
                match topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(move |p| (&t.name, p)))
                    .find(|(_, p)| p.error != ErrorCode::None)
                {
                    Some((topic, p)) => Err(ClientError::broker(
                        p.error,
                        format!("committing {topic}-{} for group {group}", p.partition),
                    )),
                    None => Ok(()),
                }
            }
            other => Err(unexpected("OffsetCommit", &other)),
        })
        .await
    }

    /// Deletes a group without members and its committed offsets.
    pub async fn delete_group(&self, group: &str) -> Result<(), ClientError> {
        let req = Request::DeleteGroups {
            groups: vec![group.to_string()],
        };
        self.group_call(req, |resp| match resp {
            Response::DeleteGroups { groups } => match groups.into_iter().find(|g| g.group_id == group) {
                Some(g) if g.error == ErrorCode::None => Ok(()),
                Some(g) => Err(ClientError::broker(g.error, format!("deleting group {group}"))),
                None => Err(ClientError::Invalid(format!(
                    "the broker did not answer for group {group}"
                ))),
            },
            other => Err(unexpected("DeleteGroups", &other)),
        })
        .await
    }
}

fn one_result(name: &str, results: Vec<TopicResult>) -> Result<(), ClientError> {
    match results.into_iter().find(|r| r.name == name) {
        Some(r) if r.error == ErrorCode::None => Ok(()),
        Some(r) => Err(ClientError::broker(r.error, r.message)),
        None => Err(ClientError::Invalid(format!(
            "the broker did not answer for topic {name}"
        ))),
    }
}
