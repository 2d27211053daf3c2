//! Cluster and topic-admin APIs an admin client needs beyond CreateTopics
//! and DeleteTopics: CreatePartitions, DescribeConfigs and DescribeCluster.
//!
//! CreatePartitions maps to the neutral request. DescribeConfigs is answered
//! from a Metadata request for its topic resources: the broker's TopicInfo
//! carries each topic's overrides, and [`Advertised::topic_defaults`] the
//! node's defaults, so the effective value and its source can both be
//! given. The resources asked for travel to the encoder in [`Echo`], so the
//! answer keeps their order, key filters and broker resources. DescribeCluster
//! needs nothing from the broker and is answered here.
//!
//! Config names are Kafka's where Kafka has one; sluice's flush policy is
//! also given whole as `sluice.flush` (`every-append`, `interval:MS`,
//! `bytes:N`), since flush-by-bytes has no Kafka name.

use bytes::Bytes;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::data::{text, topic_name};
use super::{frame, Advertised, Decoded, Echo, Header};
use crate::api::{self, ErrorCode, FlushConfig, Request, TopicConfig};

/// Kafka's ConfigResource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Kafka's ConfigSource values.
const SOURCE_TOPIC_OVERRIDE: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
/// Kafka's ConfigType values (DescribeConfigs v3+).
const TYPE_STRING: i8 = 2;
const TYPE_LONG: i8 = 5;
/// Kafka's "never" for flush.ms and flush.messages.
const NEVER: i64 = i64::MAX;
/// Resources in one DescribeConfigs request.
const RESOURCES_MAX: usize = 1_000;

/// One resource of a DescribeConfigs request, as the answer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigResource {
    pub resource_type: i8,
    pub name: String,
    /// `None`: every config; `Some`: only these names.
    pub keys: Option<Vec<String>>,
}

/// The neutral CreatePartitions. Manual assignments are ignored: this node
/// is the only replica of everything. A negative count grows nothing (the
/// broker answers InvalidPartitions).
pub(super) fn create_partitions(req: CreatePartitionsRequest) -> Request {
    let topics = req
        .topics
        .into_iter()
        .map(|t| api::NewPartitions {
            name: t.name.0.to_string(),
            count: u32::try_from(t.count).unwrap_or(0),
        })
        .collect();
    Request::CreatePartitions {
        topics,
        validate_only: req.validate_only,
    }
}

pub(super) fn create_partitions_response(topics: Vec<api::TopicResult>) -> CreatePartitionsResponse {
    let results = topics
        .into_iter()
        .map(|t| {
            CreatePartitionsTopicResult::default()
                .with_name(topic_name(t.name))
                .with_error_code(t.error.code())
                .with_error_message((!t.message.is_empty()).then(|| text(t.message)))
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}

/// Asks the broker for the metadata of the topic resources; the resources
/// themselves go to the encoder in the echo.
pub(super) fn describe_configs(req: DescribeConfigsRequest) -> Result<Decoded, String> {
    if req.resources.len() > RESOURCES_MAX {
        return Err(format!("more than {RESOURCES_MAX} resources"));
    }
    let resources: Vec<ConfigResource> = req
        .resources
        .into_iter()
        .map(|r| ConfigResource {
            resource_type: r.resource_type,
            name: r.resource_name.to_string(),
            keys: r
                .configuration_keys
                .map(|keys| keys.into_iter().map(|k| k.to_string()).collect()),
        })
        .collect();
    let topics = resources
        .iter()
        .filter(|r| r.resource_type == RESOURCE_TOPIC)
        .map(|r| r.name.clone())
        .collect();
    let echo = Echo::DescribeConfigs {
        resources,
        include_synonyms: req.include_synonyms,
    };
    Ok(Decoded::WithEcho(Request::Metadata { topics: Some(topics) }, echo))
}

/// Answers DescribeConfigs from the metadata of its topics, in the order
/// of the request's resources.
pub(super) fn describe_configs_response(
    echo: &Echo,
    node: &Advertised,
    topics: &[api::TopicInfo],
    v: i16,
) -> Result<DescribeConfigsResponse, String> {
    let Echo::DescribeConfigs {
        resources,
        include_synonyms,
    } = echo
    else {
        return Err("a DescribeConfigs answer without its request's resources".into());
    };
    let results = resources
        .iter()
        .map(|r| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(text(r.name.clone()));
            match r.resource_type {
                RESOURCE_BROKER => result,
                RESOURCE_TOPIC => match topics.iter().find(|t| t.name == r.name) {
                    Some(t) if t.error == ErrorCode::None => {
                        let entries = topic_entries(&t.config, &node.topic_defaults);
                        let configs = entries
                            .into_iter()
                            .filter(|e| r.keys.as_ref().is_none_or(|keys| keys.iter().any(|k| k == e.name)))
                            .map(|e| e.encode(*include_synonyms, v))
                            .collect();
                        result.with_configs(configs)
                    }
                    found => {
                        let error = found.map_or(ErrorCode::UnknownTopicOrPartition, |t| t.error);
                        result
                            .with_error_code(error.code())
                            .with_error_message(Some(text(format!("no topic {}", r.name))))
                    }
                },
                other => result
                    .with_error_code(ErrorCode::InvalidRequest.code())
                    .with_error_message(Some(text(format!("config resource type {other} is not supported")))),
            }
        })
        .collect();
    Ok(DescribeConfigsResponse::default().with_results(results))
}

/// One config of a topic: its effective value and where that comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ConfigEntry {
    name: &'static str,
    value: String,
    /// The broker default, when the topic overrides it.
    default: Option<String>,
    overridden: bool,
    long: bool,
}

impl ConfigEntry {
    fn encode(self, include_synonyms: bool, v: i16) -> DescribeConfigsResourceResult {
        let source = if self.overridden {
            SOURCE_TOPIC_OVERRIDE
        } else {
            SOURCE_STATIC_BROKER
        };
        let name = StrBytes::from_static_str(self.name);
        let mut synonyms = Vec::new();
        if include_synonyms {
            synonyms.push(
                DescribeConfigsSynonym::default()
                    .with_name(name.clone())
                    .with_value(Some(text(self.value.clone())))
                    .with_source(source),
            );
            if let Some(default) = &self.default {
                synonyms.push(
                    DescribeConfigsSynonym::default()
                        .with_name(name.clone())
                        .with_value(Some(text(default.clone())))
                        .with_source(SOURCE_STATIC_BROKER),
                );
            }
        }
        let mut entry = DescribeConfigsResourceResult::default()
            .with_name(name)
            .with_value(Some(text(self.value)))
            // Topic configs cannot be altered here (no AlterConfigs yet).
            .with_read_only(true)
            .with_config_source(source)
            .with_is_sensitive(false)
            .with_synonyms(synonyms);
        if v >= 3 {
            entry.config_type = if self.long { TYPE_LONG } else { TYPE_STRING };
        }
        entry
    }
}

/// The effective configs of a topic with overrides `topic` on a node with
/// `defaults`. A limit that is unset everywhere is Kafka's -1 (none).
fn topic_entries(topic: &TopicConfig, defaults: &TopicConfig) -> Vec<ConfigEntry> {
    fn entry<T: ToString>(name: &'static str, own: Option<T>, default: Option<T>, unset: &str) -> ConfigEntry {
        let default = default.map_or_else(|| unset.to_string(), |d| d.to_string());
        match own {
            Some(v) => ConfigEntry {
                name,
                value: v.to_string(),
                default: Some(default),
                overridden: true,
                long: true,
            },
            None => ConfigEntry {
                name,
                value: default,
                default: None,
                overridden: false,
                long: true,
            },
        }
    }
    let mut entries = vec![
        entry("retention.ms", topic.retention_ms, defaults.retention_ms, "-1"),
        entry("retention.bytes", topic.retention_bytes, defaults.retention_bytes, "-1"),
        entry("segment.bytes", topic.segment_bytes, defaults.segment_bytes, "-1"),
        entry(
            "max.message.bytes",
            topic.max_message_bytes,
            defaults.max_message_bytes,
            "-1",
        ),
    ];
    let flush = topic.flush.or(defaults.flush).unwrap_or(FlushConfig::EveryAppend);
    let flush_default = topic.flush.and(defaults.flush.or(Some(FlushConfig::EveryAppend)));
    let (ms, messages) = match flush {
        FlushConfig::EveryAppend => (Some(NEVER), Some(1)),
        FlushConfig::IntervalMs(ms) => (i64::try_from(ms).ok(), Some(NEVER)),
        // Flushing by bytes has no Kafka name: only `sluice.flush` says it.
        FlushConfig::Bytes(_) => (None, None),
    };
    let overridden = topic.flush.is_some();
    for (name, value) in [("flush.ms", ms), ("flush.messages", messages)] {
        if let Some(value) = value {
            entries.push(ConfigEntry {
                name,
                value: value.to_string(),
                default: None,
                overridden,
                long: true,
            });
        }
    }
    entries.push(ConfigEntry {
        name: "sluice.flush",
        value: flush_name(flush),
        default: flush_default.map(flush_name),
        overridden,
        long: false,
    });
    entries
}

/// The flush policy as the config file and CLI spell it.
fn flush_name(f: FlushConfig) -> String {
    match f {
        FlushConfig::EveryAppend => "every-append".to_string(),
        FlushConfig::IntervalMs(ms) => format!("interval:{ms}"),
        FlushConfig::Bytes(n) => format!("bytes:{n}"),
    }
}

/// The cluster id of this single node: stable for a node id.
pub(super) fn cluster_id(node: &Advertised) -> String {
    match node.cluster.as_ref().and_then(|v| v.cluster_id()) {
        Some(id) => id.to_string(),
        None => format!("sluice-{}", node.node_id),
    }
}

/// Answers DescribeCluster: a single node is the cluster, its only broker
/// and its controller; in cluster mode, every live broker. Any node takes
/// admin requests (it forwards them to the controller quorum), so each
/// names itself as the controller, as KRaft brokers do.
pub(super) fn describe_cluster(header: &Header, node: &Advertised, body: &mut Bytes) -> Result<Bytes, String> {
    let v = header.version;
    DescribeClusterRequest::decode(body, v).map_err(|e| e.to_string())?;
    let me = BrokerId(node.node_id);
    let broker = |id: i32, host: String, port: u16| {
        DescribeClusterBroker::default()
            .with_broker_id(BrokerId(id))
            .with_host(text(host))
            .with_port(i32::from(port))
    };
    let brokers = match &node.cluster {
        Some(view) => view
            .snapshot()
            .brokers
            .iter()
            .filter(|(_, b)| !b.fenced)
            .filter_map(|(&id, b)| {
                let (host, port) = crate::config::parse_host_port(&b.endpoints.kafka).ok()?;
                Some(broker(id as i32, host, port))
            })
            .collect(),
        None => vec![broker(node.node_id, node.host.clone(), node.port)],
    };
    let resp = DescribeClusterResponse::default()
        .with_cluster_id(text(cluster_id(node)))
        .with_controller_id(me)
        .with_brokers(brokers)
        // Kafka's "not asked for": authorized operations are not computed.
        .with_cluster_authorized_operations(i32::MIN);
    frame(header.correlation_id, header.api_key, v, &resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_give_overrides_and_defaults_their_sources() {
        let defaults = TopicConfig {
            retention_ms: Some(1_000),
            retention_bytes: None,
            segment_bytes: Some(4_096),
            max_message_bytes: Some(512),
            flush: Some(FlushConfig::EveryAppend),
        };
        let topic = TopicConfig {
            retention_ms: Some(5),
            flush: Some(FlushConfig::IntervalMs(50)),
            ..TopicConfig::default()
        };
        let entries = topic_entries(&topic, &defaults);
        let get = |n: &str| entries.iter().find(|e| e.name == n).cloned();
        let retention = get("retention.ms").expect("retention.ms");
        assert_eq!((retention.value.as_str(), retention.overridden), ("5", true));
        assert_eq!(retention.default.as_deref(), Some("1000"));
        assert_eq!(get("retention.bytes").map(|e| e.value), Some("-1".into()));
        let segment = get("segment.bytes").expect("segment.bytes");
        assert_eq!((segment.value.as_str(), segment.overridden), ("4096", false));
        assert_eq!(get("flush.ms").map(|e| e.value), Some("50".into()));
        assert_eq!(get("flush.messages").map(|e| e.value), Some(NEVER.to_string()));
        let flush = get("sluice.flush").expect("sluice.flush");
        assert_eq!(flush.value, "interval:50");
        assert_eq!(flush.default.as_deref(), Some("every-append"));

        let by_bytes = TopicConfig {
            flush: Some(FlushConfig::Bytes(10)),
            ..TopicConfig::default()
        };
        let entries = topic_entries(&by_bytes, &defaults);
        assert!(entries
            .iter()
            .all(|e| e.name != "flush.ms" && e.name != "flush.messages"));
    }
}
