//! Admin operations on a `Client`: create, delete, list and describe
//! topics, and look up offsets. Topic changes go to any broker (the broker
//! forwards them to its controller); offset lookups go to each partition's
//! owner.
//!
//! Creating and deleting are not retried: a timed-out create may have
//! happened, and a retry would report "already exists".
use std::collections::BTreeMap;

use super::cluster::{unexpected, unknown_topic};
use super::{Client, ClientError};
use crate::api::{
    ErrorCode, ListOffsetsPartition, ListOffsetsTopic, NewTopic, OffsetSpec, Request, Response, TopicConfig, TopicInfo,
    TopicResult,
};

impl Client {
    /// Creates one topic; `TopicAlreadyExists` and the like come back as
    /// `ClientError::Broker`.
    pub async fn create_topic(&self, name: &str, partitions: u32, config: TopicConfig) -> Result<(), ClientError> {
        let results = self
            .create_topics(vec![NewTopic {
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
