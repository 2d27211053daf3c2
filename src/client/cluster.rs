//! `Client`: the handle to a cluster. It owns the metadata cache and one
//! `Connection` per endpoint (host, port), and routes each request to the
//! endpoint that owns its partition: with `shard_aware` (the default) that
//! is the owning shard's own port, so the broker never forwards across
//! cores.
//!
//! Invariants: at most one live connection per endpoint (concurrent
//! openers wait for the first); a closed connection is replaced on next
//! use. Metadata is refreshed on demand: when a topic is not cached, and
//! after errors that say the cache is stale. Cheap to clone; `!Send`, it
//! lives on the executor that created it.
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::Duration;

use glommio::sync::Semaphore;

use super::metadata::{Endpoint, MetadataCache};
use super::{ClientConfig, ClientError, Connection};
use crate::api::{ErrorCode, Request, Response, TopicInfo};

struct Inner {
    config: ClientConfig,
    bootstrap: Vec<Endpoint>,
    connections: RefCell<HashMap<Endpoint, Connection>>,
    /// One opener per endpoint at a time.
    opening: RefCell<HashMap<Endpoint, Rc<Semaphore>>>,
    metadata: RefCell<MetadataCache>,
}

/// A handle to a Sluice cluster.
#[derive(Clone)]
pub struct Client {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap", &self.inner.bootstrap)
            .field(
                "connections",
                &self.inner.connections.borrow().keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Client {
    /// Connects to one of the `bootstrap` endpoints (`HOST:PORT`, comma
    /// separated) and fetches the cluster's metadata.
    pub async fn connect(bootstrap: &str, config: ClientConfig) -> Result<Client, ClientError> {
        let bootstrap = Endpoint::parse_list(bootstrap)
            .ok_or_else(|| ClientError::Invalid(format!("bootstrap {bootstrap:?} is not HOST:PORT[,HOST:PORT...]")))?;
        let client = Client {
            inner: Rc::new(Inner {
                config,
                bootstrap,
                connections: RefCell::new(HashMap::new()),
                opening: RefCell::new(HashMap::new()),
                metadata: RefCell::new(MetadataCache::default()),
            }),
        };
        client.refresh_metadata(Some(Vec::new())).await?;
        Ok(client)
    }

    /// The configuration this client was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The first bootstrap host: where brokers advertising 0.0.0.0 live.
    fn bootstrap_host(&self) -> &str {
        self.inner.bootstrap.first().map_or("127.0.0.1", |e| e.host.as_str())
    }

    /// The connection to `endpoint`, opened if there is none (or it broke).
    pub async fn connection(&self, endpoint: &Endpoint) -> Result<Connection, ClientError> {
        if let Some(c) = self.live_connection(endpoint) {
            return Ok(c);
        }
        let lock = self
            .inner
            .opening
            .borrow_mut()
            .entry(endpoint.clone())
            .or_insert_with(|| Rc::new(Semaphore::new(1)))
            .clone();
        let _turn = lock.acquire_permit(1).await.map_err(|_| ClientError::Closed)?;
        if let Some(c) = self.live_connection(endpoint) {
            return Ok(c);
        }
        let addr = resolve(endpoint)?;
        let conn = Connection::open(addr, &self.inner.config).await?;
        tracing::debug!(%endpoint, %addr, "connected");
        self.inner
            .connections
            .borrow_mut()
            .insert(endpoint.clone(), conn.clone());
        Ok(conn)
    }

    fn live_connection(&self, endpoint: &Endpoint) -> Option<Connection> {
        let mut conns = self.inner.connections.borrow_mut();
        match conns.get(endpoint) {
            Some(c) if !c.is_closed() => Some(c.clone()),
            Some(_) => {
                conns.remove(endpoint);
                None
            }
            None => None,
        }
    }

    /// Sends `req` to `endpoint` and waits for the answer (`limit`: the
    /// timeout, default the request timeout).
    pub async fn send(
        &self,
        endpoint: &Endpoint,
        req: Request,
        limit: Option<Duration>,
    ) -> Result<Response, ClientError> {
        let conn = self.connection(endpoint).await?;
        conn.request_with_timeout(req, limit.unwrap_or(self.inner.config.request_timeout))
            .await
    }

    /// Sends `req` to any broker: the bootstrap endpoints first, then the
    /// brokers metadata named. For requests any broker can answer (metadata,
    /// admin).
    pub async fn send_any(&self, req: Request) -> Result<Response, ClientError> {
        let mut candidates = self.inner.bootstrap.clone();
        if let Some(b) = self.inner.metadata.borrow().any_broker(self.bootstrap_host()) {
            if !candidates.contains(&b) {
                candidates.push(b);
            }
        }
        let mut last = ClientError::Invalid("no bootstrap endpoint".into());
        for endpoint in &candidates {
            match self.send(endpoint, req.clone(), None).await {
                Err(e @ (ClientError::Io(_) | ClientError::ConnectionClosed { .. })) => {
                    tracing::debug!(%endpoint, error = %e, "trying the next broker");
                    last = e;
                }
                other => return other,
            }
        }
        Err(last)
    }

    /// Fetches metadata for `topics` (`None`: every topic) and caches it.
    /// Returns the topics as the broker described them.
    pub async fn refresh_metadata(&self, topics: Option<Vec<String>>) -> Result<Vec<TopicInfo>, ClientError> {
        let all = topics.is_none();
        match self.send_any(Request::Metadata { topics }).await? {
            Response::Metadata { brokers, topics } => {
                self.inner.metadata.borrow_mut().update(brokers, topics.clone(), all);
                Ok(topics)
            }
            other => Err(unexpected("Metadata", &other)),
        }
    }

    /// Partitions of `topic`, from the cache or else from the broker.
    /// `UnknownTopicOrPartition` if the topic does not exist.
    pub async fn partition_count(&self, topic: &str) -> Result<u32, ClientError> {
        if let Some(n) = self.cached_partition_count(topic) {
            return Ok(n);
        }
        self.refresh_metadata(Some(vec![topic.to_string()])).await?;
        self.cached_partition_count(topic).ok_or_else(|| unknown_topic(topic))
    }

    pub(crate) fn cached_partition_count(&self, topic: &str) -> Option<u32> {
        self.inner.metadata.borrow().partition_count(topic)
    }

    /// Where requests for a partition go, from the cache.
    pub(crate) fn cached_endpoint(&self, topic: &str, partition: u32) -> Option<Endpoint> {
        let shard_aware = self.inner.config.shard_aware;
        self.inner
            .metadata
            .borrow()
            .endpoint(topic, partition, shard_aware, self.bootstrap_host())
    }

    /// Where requests for a partition go, refreshing metadata if the cache
    /// does not know.
    pub async fn endpoint_for(&self, topic: &str, partition: u32) -> Result<Endpoint, ClientError> {
        if let Some(e) = self.cached_endpoint(topic, partition) {
            return Ok(e);
        }
        self.refresh_metadata(Some(vec![topic.to_string()])).await?;
        self.cached_endpoint(topic, partition).ok_or_else(|| {
            ClientError::broker(
                ErrorCode::UnknownTopicOrPartition,
                format!("no partition {topic}/{partition}"),
            )
        })
    }

    /// Forgets a topic's metadata so the next use fetches it again.
    pub(crate) fn forget_topic(&self, topic: &str) {
        self.inner.metadata.borrow_mut().forget(topic);
    }

    /// The cached description of a topic.
    pub fn cached_topic(&self, topic: &str) -> Option<TopicInfo> {
        self.inner.metadata.borrow().topic(topic).cloned()
    }
}

/// Resolves an endpoint to a socket address (IP literals need no lookup).
fn resolve(endpoint: &Endpoint) -> Result<SocketAddr, ClientError> {
    let mut addrs = (endpoint.host.as_str(), endpoint.port).to_socket_addrs()?;
    addrs
        .next()
        .ok_or_else(|| ClientError::Invalid(format!("{endpoint} resolves to no address")))
}

pub(crate) fn unknown_topic(topic: &str) -> ClientError {
    ClientError::broker(ErrorCode::UnknownTopicOrPartition, format!("no topic {topic}"))
}

/// A response of the wrong kind: the broker broke the protocol.
pub(crate) fn unexpected(wanted: &str, got: &Response) -> ClientError {
    let kind = match got {
        Response::ApiVersions { .. } => "ApiVersions",
        Response::Metadata { .. } => "Metadata",
        Response::CreateTopics { .. } => "CreateTopics",
        Response::DeleteTopics { .. } => "DeleteTopics",
        Response::Produce { .. } => "Produce",
        Response::Fetch { .. } => "Fetch",
        Response::ListOffsets { .. } => "ListOffsets",
        Response::FindCoordinator(_) => "FindCoordinator",
        Response::JoinGroup(_) => "JoinGroup",
        Response::SyncGroup(_) => "SyncGroup",
        Response::Heartbeat { .. } => "Heartbeat",
        Response::LeaveGroup(_) => "LeaveGroup",
        Response::OffsetCommit { .. } => "OffsetCommit",
        Response::OffsetFetch { .. } => "OffsetFetch",
        Response::ListGroups { .. } => "ListGroups",
        Response::DescribeGroups { .. } => "DescribeGroups",
        Response::DeleteGroups { .. } => "DeleteGroups",
        Response::CreatePartitions { .. } => "CreatePartitions",
        Response::InitProducerId { .. } => "InitProducerId",
        Response::Error { .. } => "Error",
    };
    ClientError::Invalid(format!("expected a {wanted} response, got {kind}"))
}
