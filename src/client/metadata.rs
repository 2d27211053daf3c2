//! The client's metadata cache: brokers, topics, and where each partition
//! lives, so requests go straight to the owning shard's port.
//!
//! Invariants: a topic is cached only from a Metadata answer without a
//! topic error; its partitions are kept sorted by index. A broker that
//! advertises an unspecified host (0.0.0.0 or ::, a listener bound to every
//! interface) is reached at the host the client bootstrapped from. Sans-IO:
//! the `Client` fetches, this only remembers and answers.
use std::collections::HashMap;
use std::fmt;

use crate::api::{BrokerInfo, ErrorCode, PartitionInfo, TopicInfo};

/// A host and port the client connects to; one connection per endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses `HOST:PORT` (`[v6]:PORT` for IPv6 literals).
    pub fn parse(s: &str) -> Option<Endpoint> {
        let (host, port) = s.trim().rsplit_once(':')?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if host.is_empty() {
            return None;
        }
        Some(Endpoint {
            host: host.to_string(),
            port: port.parse().ok()?,
        })
    }

    /// Parses a comma-separated bootstrap list.
    pub fn parse_list(s: &str) -> Option<Vec<Endpoint>> {
        let list: Option<Vec<Endpoint>> = s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(Endpoint::parse)
            .collect();
        list.filter(|l| !l.is_empty())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What the client knows about the cluster.
#[derive(Debug, Default)]
pub(crate) struct MetadataCache {
    brokers: HashMap<i32, BrokerInfo>,
    topics: HashMap<String, TopicInfo>,
}

fn is_unspecified(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified())
}

impl MetadataCache {
    /// Takes in a Metadata answer. `all`: the answer lists every topic, so
    /// topics it does not mention are gone.
    pub(crate) fn update(&mut self, brokers: Vec<BrokerInfo>, topics: Vec<TopicInfo>, all: bool) {
        if !brokers.is_empty() {
            self.brokers = brokers.into_iter().map(|b| (b.node_id, b)).collect();
        }
        if all {
            self.topics.clear();
        }
        for mut t in topics {
            if t.error != ErrorCode::None {
                self.topics.remove(&t.name);
                continue;
            }
            t.partitions.sort_by_key(|p| p.partition);
            self.topics.insert(t.name.clone(), t);
        }
    }

    /// Forgets a topic (deleted, or to force a refresh).
    pub(crate) fn forget(&mut self, topic: &str) {
        self.topics.remove(topic);
    }

    pub(crate) fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(name)
    }

    /// Partitions of `topic`, if known.
    pub(crate) fn partition_count(&self, topic: &str) -> Option<u32> {
        self.topic(topic).map(|t| t.partitions.len() as u32).filter(|&n| n > 0)
    }

    pub(crate) fn partition(&self, topic: &str, partition: u32) -> Option<&PartitionInfo> {
        let t = self.topic(topic)?;
        let i = t.partitions.binary_search_by_key(&partition, |p| p.partition).ok()?;
        t.partitions.get(i)
    }

    /// Where requests for the partition go: the leader's host at the owning
    /// shard's own port (`shard_aware`) or at the broker's shared port.
    /// `None` if the partition or its leader is unknown.
    pub(crate) fn endpoint(
        &self,
        topic: &str,
        partition: u32,
        shard_aware: bool,
        bootstrap_host: &str,
    ) -> Option<Endpoint> {
        let p = self.partition(topic, partition)?;
        if p.error != ErrorCode::None && p.error != ErrorCode::UnknownTopicOrPartition {
            return None;
        }
        let broker = self.brokers.get(&p.leader)?;
        let host = if is_unspecified(&broker.host) || broker.host.is_empty() {
            bootstrap_host.to_string()
        } else {
            broker.host.clone()
        };
        let port = if shard_aware && p.shard_port != 0 {
            p.shard_port
        } else {
            broker.port
        };
        Some(Endpoint { host, port })
    }

    /// A broker's shared endpoint (for requests any broker can answer).
    pub(crate) fn any_broker(&self, bootstrap_host: &str) -> Option<Endpoint> {
        let b = self.brokers.values().min_by_key(|b| b.node_id)?;
        let host = if is_unspecified(&b.host) || b.host.is_empty() {
            bootstrap_host.to_string()
        } else {
            b.host.clone()
        };
        Some(Endpoint { host, port: b.port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TopicConfig;

    fn part(partition: u32, shard: u32) -> PartitionInfo {
        PartitionInfo {
            isr: Vec::new(),
            replicas: Vec::new(),
            partition,
            error: ErrorCode::None,
            leader: 1,
            shard,
            shard_port: 9193 + shard as u16,
            log_start_offset: 0,
            high_watermark: 0,
        }
    }

    fn topic(name: &str, parts: Vec<PartitionInfo>) -> TopicInfo {
        TopicInfo {
            name: name.into(),
            error: ErrorCode::None,
            partitions: parts,
            config: TopicConfig::default(),
        }
    }

    fn broker(host: &str) -> BrokerInfo {
        BrokerInfo {
            kafka: String::new(),
            node_id: 1,
            host: host.into(),
            port: 9192,
        }
    }

    #[test]
    fn routes_to_the_owning_shards_port() {
        let mut m = MetadataCache::default();
        m.update(
            vec![broker("10.0.0.5")],
            vec![topic("t", vec![part(1, 1), part(0, 0)])],
            false,
        );
        assert_eq!(m.partition_count("t"), Some(2));
        let ep = |p, aware| m.endpoint("t", p, aware, "boot");
        assert_eq!(
            ep(0, true),
            Some(Endpoint {
                host: "10.0.0.5".into(),
                port: 9193
            })
        );
        assert_eq!(
            ep(1, true),
            Some(Endpoint {
                host: "10.0.0.5".into(),
                port: 9194
            })
        );
        assert_eq!(
            ep(1, false),
            Some(Endpoint {
                host: "10.0.0.5".into(),
                port: 9192
            })
        );
        assert_eq!(ep(2, true), None);
        assert_eq!(m.endpoint("u", 0, true, "boot"), None);
    }

    #[test]
    fn an_unspecified_broker_host_means_the_bootstrap_host() {
        let mut m = MetadataCache::default();
        m.update(vec![broker("0.0.0.0")], vec![topic("t", vec![part(0, 3)])], false);
        assert_eq!(
            m.endpoint("t", 0, true, "example.org"),
            Some(Endpoint {
                host: "example.org".into(),
                port: 9196
            })
        );
        assert_eq!(
            m.any_broker("example.org"),
            Some(Endpoint {
                host: "example.org".into(),
                port: 9192
            })
        );
    }

    #[test]
    fn errors_and_full_listings_drop_topics() {
        let mut m = MetadataCache::default();
        m.update(
            vec![broker("h")],
            vec![topic("a", vec![part(0, 0)]), topic("b", vec![part(0, 0)])],
            true,
        );
        let mut gone = topic("a", Vec::new());
        gone.error = ErrorCode::UnknownTopicOrPartition;
        m.update(Vec::new(), vec![gone], false);
        assert!(m.topic("a").is_none());
        assert!(m.topic("b").is_some(), "brokers and other topics stay");
        assert!(m.endpoint("b", 0, true, "x").is_some());
        m.update(vec![broker("h")], vec![topic("c", vec![part(0, 0)])], true);
        assert!(m.topic("b").is_none());
    }

    #[test]
    fn endpoints_parse_and_print() {
        assert_eq!(
            Endpoint::parse("127.0.0.1:9192"),
            Some(Endpoint {
                host: "127.0.0.1".into(),
                port: 9192
            })
        );
        assert_eq!(
            Endpoint::parse("[::1]:80").map(|e| e.to_string()),
            Some("[::1]:80".into())
        );
        assert_eq!(Endpoint::parse("nohost"), None);
        assert_eq!(Endpoint::parse(":80"), None);
        assert_eq!(Endpoint::parse("h:99999"), None);
        assert_eq!(Endpoint::parse_list("a:1, b:2").map(|l| l.len()), Some(2));
        assert_eq!(Endpoint::parse_list(""), None);
    }
}
