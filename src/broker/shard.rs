//! A shard: one pinned executor's share of the broker. It owns its
//! partitions outright, answers requests that reach it on a connection, and
//! reaches partitions of other shards only by messages over the cross-shard
//! mesh. Shard 0 is also the node's controller: it alone changes topic
//! metadata and hands out producer ids.
//!
//! Invariants: a `Partition` is touched only by the shard whose id the
//! metadata names for it; state here is `!Send` and never borrowed across
//! an `.await`.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;
use glommio::channels::channel_mesh::Senders;

use super::groups::Groups;
use super::metadata::{self, MetadataStore, TopicMeta};
use super::partition::RoleUpdate;
use super::partition::{log_config, Partition};
use super::producer_ids::{ProducerIdAllocator, ProducerIds};
use super::replication::Fetcher;
use crate::api::*;
use crate::cluster::fetch::{FetchPartition, Fetched};
use crate::cluster::metadata::Command;
use crate::cluster::replica::NodeId;
use crate::cluster::runtime::{Answer, Cluster};
use crate::cluster::view::ClusterView;
use crate::config::ServeConfig;
use crate::group::coordinator::ClientInfo;
use crate::group::offsets::OFFSETS_TOPIC;
use crate::metrics::ShardMetrics;
use crate::storage::{CacheBudget, Log, LogConfig};
use crate::watermark::Watermark;

type Reply<T> = oneshot::Sender<T>;

/// A message from one shard to another. Everything in it is `Send`.
pub enum ShardMsg {
    Produce {
        topic: String,
        partition: u32,
        acks: Acks,
        /// acks=all in a cluster waits for the ISR until then.
        deadline: Instant,
        records: Bytes,
        reply: Reply<ProducePartitionResponse>,
    },
    Fetch {
        topic: String,
        partition: u32,
        offset: i64,
        max_bytes: usize,
        reply: Reply<FetchPartitionResponse>,
    },
    WaitForData {
        topic: String,
        partition: u32,
        offset: i64,
        deadline: Instant,
        reply: Reply<()>,
    },
    ListOffsets {
        topic: String,
        partition: u32,
        spec: OffsetSpec,
        reply: Reply<ListOffsetsPartitionResponse>,
    },
    State {
        topic: String,
        partition: u32,
        reply: Reply<Option<(i64, i64)>>,
    },
    Open {
        topic: Arc<TopicMeta>,
        reply: Reply<Result<(), String>>,
    },
    Remove {
        topic: String,
        reply: Reply<()>,
    },
    /// Cluster mode: one partition's replica moved off this node.
    RemovePartition {
        topic: String,
        partition: u32,
        reply: Reply<()>,
    },
    CreateTopics {
        topics: Vec<NewTopic>,
        reply: Reply<Vec<TopicResult>>,
    },
    DeleteTopics {
        names: Vec<String>,
        reply: Reply<Vec<TopicResult>>,
    },
    CreatePartitions {
        topics: Vec<NewPartitions>,
        validate_only: bool,
        reply: Reply<Vec<TopicResult>>,
    },
    /// A request for a group this shard coordinates.
    Group {
        req: Request,
        client: ClientInfo,
        reply: Reply<Response>,
    },
    ListGroups {
        states: Vec<String>,
        reply: Reply<Vec<ListedGroup>>,
    },
    /// To shard 0: a fresh producer id (an InitProducerId answer).
    InitProducerId {
        reply: Reply<Response>,
    },
    /// Cluster mode, from shard 0: the controller's word on partitions
    /// this shard owns.
    Roles {
        updates: Vec<RoleUpdate>,
        reply: Reply<()>,
    },
    /// Cluster mode, leader side: one read per partition of a follower's
    /// fetch.
    ReplicaFetch {
        replica: NodeId,
        items: Vec<FetchPartition>,
        reply: Reply<Vec<Fetched>>,
    },
    /// Cluster mode, leader side: wait until any of (topic, partition,
    /// fetch offset, follower's high watermark) has news, or `deadline`.
    ReplicaWait {
        items: Vec<(String, u32, i64, i64)>,
        deadline: Instant,
        reply: Reply<()>,
    },
    /// The replication lines of the partitions this shard leads.
    ReplicationReport {
        reply: Reply<Vec<String>>,
    },
    /// To shard 0: propose a metadata command through the quorum.
    Propose {
        cmd: Command,
        reply: Reply<Answer>,
    },
}

/// One shard's state.
pub struct Shard {
    pub id: usize,
    pub config: Arc<ServeConfig>,
    pub meta: Arc<MetadataStore>,
    /// topic -> partition index -> partition; looked up by `&str`, so the
    /// per-request lookup allocates nothing.
    partitions: RefCell<HashMap<String, HashMap<u32, Rc<Partition>>>>,
    mesh: Senders<ShardMsg>,
    /// `peer_of_shard[s]` is shard s's id in the mesh.
    peer_of_shard: Vec<usize>,
    /// Requests being handled, so shutdown can let them finish.
    pub inflight: Cell<usize>,
    pub drained: Watermark,
    pub metrics: Arc<ShardMetrics>,
    /// Shared by the batch caches of this shard's partitions.
    cache_budget: Rc<CacheBudget>,
    /// The consumer groups this shard coordinates.
    pub(super) groups: Groups,
    /// The producer id allocator (shard 0 only).
    pub(super) producer_ids: ProducerIds,
    /// Cluster mode: the applied cluster metadata.
    pub(super) view: Option<Arc<ClusterView>>,
    /// Cluster mode, shard 0: the controller quorum.
    pub(super) cluster: RefCell<Option<Rc<RefCell<Cluster>>>>,
    /// Cluster mode: this shard's fetchers, by leader node.
    pub(super) fetchers: RefCell<HashMap<NodeId, Rc<Fetcher>>>,
    /// Cluster mode, shard 0: the role last sent for each hosted
    /// partition, and the topics whose partitions are open.
    pub(super) pushed: RefCell<HashMap<(String, u32), RoleUpdate>>,
    pub(super) opened: RefCell<HashSet<(String, u32)>>,
}

/// Runs `waits` together on this executor until the first of them ends,
/// or `deadline`; the others are dropped.
pub(super) async fn first_of<F: std::future::Future<Output = ()> + 'static>(waits: Vec<F>, deadline: Instant) {
    let woken = Rc::new(Watermark::new(0));
    let tasks: Vec<_> = waits
        .into_iter()
        .map(|w| {
            let woken = woken.clone();
            glommio::spawn_local(async move {
                w.await;
                woken.set(woken.get() + 1);
            })
        })
        .collect();
    let left = deadline.saturating_duration_since(Instant::now());
    let _ = glommio::timer::timeout(left, async {
        woken.wait_for(1).await;
        Ok(())
    })
    .await;
    drop(tasks);
}

/// Bounds the bytes of an answer made of whole batches: batches are kept
/// in order while they fit, and the first one always (so a reader larger
/// than the bound still makes progress).
pub(super) struct ByteBudget {
    left: usize,
    first: bool,
}

impl ByteBudget {
    pub(super) fn new(max_bytes: usize) -> ByteBudget {
        ByteBudget {
            left: max_bytes,
            first: true,
        }
    }

    /// Drops the batches of `batches` past the budget.
    pub(super) fn keep(&mut self, batches: &mut Vec<Bytes>) {
        let mut kept = Vec::with_capacity(batches.len());
        for batch in batches.drain(..) {
            if self.first || batch.len() <= self.left {
                self.left = self.left.saturating_sub(batch.len());
                kept.push(batch);
                self.first = false;
            } else {
                self.left = 0;
            }
        }
        *batches = kept;
    }
}

fn produce_error(partition: u32, error: ErrorCode) -> ProducePartitionResponse {
    ProducePartitionResponse {
        partition,
        error,
        base_offset: -1,
        log_start_offset: -1,
    }
}

fn fetch_error(partition: u32, error: ErrorCode) -> FetchPartitionResponse {
    FetchPartitionResponse {
        partition,
        error,
        high_watermark: -1,
        log_start_offset: -1,
        records: Vec::new(),
    }
}

fn list_offsets_error(partition: u32, error: ErrorCode) -> ListOffsetsPartitionResponse {
    ListOffsetsPartitionResponse {
        partition,
        error,
        offset: -1,
    }
}

impl Shard {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: usize,
        config: Arc<ServeConfig>,
        meta: Arc<MetadataStore>,
        mesh: Senders<ShardMsg>,
        peer_of_shard: Vec<usize>,
        metrics: Arc<ShardMetrics>,
        producer_ids: Option<ProducerIdAllocator>,
        view: Option<Arc<ClusterView>>,
    ) -> Rc<Shard> {
        assert!(
            producer_ids.is_none() || id == 0,
            "the allocator lives on shard 0 alone"
        );
        let cache_budget = CacheBudget::new(config.cache_bytes_max_per_shard);
        let config_for_groups = config.clone();
        Rc::new(Shard {
            cache_budget,
            id,
            config,
            meta,
            partitions: RefCell::new(HashMap::new()),
            mesh,
            peer_of_shard,
            inflight: Cell::new(0),
            drained: Watermark::new(0),
            metrics,
            groups: Groups::new(&config_for_groups, id as u64),
            producer_ids: ProducerIds::new(producer_ids),
            view,
            cluster: RefCell::new(None),
            fetchers: RefCell::new(HashMap::new()),
            pushed: RefCell::new(HashMap::new()),
            opened: RefCell::new(HashSet::new()),
        })
    }

    pub(super) fn partition(&self, topic: &str, partition: u32) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(topic)?.get(&partition).cloned()
    }

    pub fn partition_count(&self) -> usize {
        self.partitions.borrow().values().map(HashMap::len).sum()
    }

    /// Every partition this shard owns.
    pub fn partitions(&self) -> Vec<Rc<Partition>> {
        self.partitions
            .borrow()
            .values()
            .flat_map(|t| t.values().cloned())
            .collect()
    }

    /// Sends `msg` to shard `to` and waits for the reply it carries.
    pub(super) async fn call<T>(&self, to: u32, make: impl FnOnce(Reply<T>) -> ShardMsg) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        let peer = *self.peer_of_shard.get(to as usize)?;
        if self.mesh.send_to(peer, make(tx)).await.is_err() {
            return None;
        }
        rx.await.ok()
    }

    /// Opens the logs of this shard's partitions of `topic`.
    pub async fn open_topic(&self, topic: &TopicMeta) -> Result<(), String> {
        for (p, &owner) in topic.shards.iter().enumerate() {
            if owner as usize != self.id
                || self.partition(&topic.name, p as u32).is_some()
                || !self.hosts(&topic.name, p as u32)
            {
                continue;
            }
            let dir = self.config.data_dir.join(format!("{}-{p}", topic.name));
            let cfg = LogConfig {
                producer_id_expiration_ms: self.config.producer_id_expiration_ms,
                ..log_config(
                    &topic.config,
                    &self.config.topic_defaults,
                    self.config.cache_bytes_max_per_partition,
                )
            };
            let log = Log::open_with_cache_budget(&dir, cfg, Some(self.cache_budget.clone()))
                .await
                .map_err(|e| format!("opening {}-{p}: {e}", topic.name))?;
            let me = self.view.as_ref().map(|v| v.me());
            let part = Rc::new(Partition::new(topic.name.clone(), p as u32, log, me));
            self.partitions
                .borrow_mut()
                .entry(topic.name.clone())
                .or_default()
                .insert(p as u32, part);
            self.metrics.partitions.fetch_add(1, Relaxed);
        }
        Ok(())
    }

    /// Has every shard close and delete its partitions of `topic`.
    pub(super) async fn remove_everywhere(&self, topic: &str) {
        for shard in 0..self.config.shards as u32 {
            if shard as usize == self.id {
                self.remove_topic(topic).await;
            } else {
                let topic = topic.to_string();
                let _ = self.call(shard, |reply| ShardMsg::Remove { topic, reply }).await;
            }
        }
    }

    /// Closes and deletes this shard's partitions of `topic`.
    async fn remove_topic(&self, topic: &str) {
        let doomed: Vec<Rc<Partition>> = self
            .partitions
            .borrow_mut()
            .remove(topic)
            .map(|t| t.into_values().collect())
            .unwrap_or_default();
        for part in doomed {
            self.discard(part);
        }
    }

    /// Closes and deletes one partition of this shard (its replica moved
    /// to other nodes).
    pub(super) async fn remove_partition(&self, topic: &str, partition: u32) {
        let part = self
            .partitions
            .borrow_mut()
            .get_mut(topic)
            .and_then(|t| t.remove(&partition));
        if let Some(part) = part {
            self.discard(part);
        }
    }

    /// Ends a removed partition's role and deletes its files.
    fn discard(&self, part: Rc<Partition>) {
        part.retire();
        self.metrics.partitions.fetch_sub(1, Relaxed);
        let dir = part.log().dir().to_path_buf();
        drop(part);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "removing a partition's files failed");
        }
    }

    /// Flushes and closes every log (clean shutdown).
    pub async fn close_all(&self) {
        let parts: Vec<Rc<Partition>> = self
            .partitions
            .borrow_mut()
            .drain()
            .flat_map(|(_, t)| t.into_values())
            .collect();
        for part in parts {
            let log = part.log().clone();
            drop(part);
            if let Err(e) = log.close().await {
                tracing::warn!(error = %e, "closing a partition log failed");
            }
        }
    }

    /// Handles a message from another shard.
    pub async fn handle_msg(self: Rc<Self>, msg: ShardMsg) {
        match msg {
            ShardMsg::Produce {
                topic,
                partition,
                acks,
                deadline,
                records,
                reply,
            } => {
                let _ = reply.send(self.produce_local(&topic, partition, acks, deadline, &records).await);
            }
            ShardMsg::Fetch {
                topic,
                partition,
                offset,
                max_bytes,
                reply,
            } => {
                let _ = reply.send(self.fetch_local(&topic, partition, offset, max_bytes).await);
            }
            ShardMsg::WaitForData {
                topic,
                partition,
                offset,
                deadline,
                reply,
            } => {
                if let Some(p) = self.partition(&topic, partition) {
                    p.wait_for_data(offset, deadline).await;
                }
                let _ = reply.send(());
            }
            ShardMsg::ListOffsets {
                topic,
                partition,
                spec,
                reply,
            } => {
                let _ = reply.send(self.list_offsets_local(&topic, partition, spec).await);
            }
            ShardMsg::State {
                topic,
                partition,
                reply,
            } => {
                let state = self
                    .partition(&topic, partition)
                    .map(|p| (p.log().log_start_offset(), p.high_watermark()));
                let _ = reply.send(state);
            }
            ShardMsg::Open { topic, reply } => {
                let _ = reply.send(self.open_topic(&topic).await);
            }
            ShardMsg::Remove { topic, reply } => {
                self.remove_topic(&topic).await;
                let _ = reply.send(());
            }
            ShardMsg::RemovePartition {
                topic,
                partition,
                reply,
            } => {
                self.remove_partition(&topic, partition).await;
                let _ = reply.send(());
            }
            ShardMsg::CreateTopics { topics, reply } => {
                let _ = reply.send(self.create_topics(topics).await);
            }
            ShardMsg::DeleteTopics { names, reply } => {
                let _ = reply.send(self.delete_topics(names).await);
            }
            ShardMsg::CreatePartitions {
                topics,
                validate_only,
                reply,
            } => {
                let _ = reply.send(self.create_partitions(topics, validate_only).await);
            }
            ShardMsg::Group { req, client, reply } => {
                let _ = reply.send(self.group_request(req, client).await);
            }
            ShardMsg::ListGroups { states, reply } => {
                let _ = reply.send(self.list_groups_local(&states).await);
            }
            ShardMsg::InitProducerId { reply } => {
                let _ = reply.send(self.allocate_producer_id().await);
            }
            ShardMsg::Roles { updates, reply } => {
                self.apply_roles(updates);
                let _ = reply.send(());
            }
            ShardMsg::ReplicaFetch { replica, items, reply } => {
                let _ = reply.send(self.replica_fetch_local(replica, items).await);
            }
            ShardMsg::ReplicaWait { items, deadline, reply } => {
                self.wait_replica_news(items, deadline).await;
                let _ = reply.send(());
            }
            ShardMsg::ReplicationReport { reply } => {
                let _ = reply.send(self.replication_report_local());
            }
            ShardMsg::Propose { cmd, reply } => {
                let _ = reply.send(self.propose(cmd).await);
            }
        }
    }

    /// Cluster mode: the applied cluster metadata.
    pub fn cluster_view(&self) -> Option<Arc<ClusterView>> {
        self.view.clone()
    }

    /// Answers one client request.
    pub async fn handle(self: &Rc<Self>, req: Request, client: &ClientInfo) -> Response {
        if !matches!(req, Request::Produce { .. } | Request::Fetch { .. }) {
            self.metrics.other_requests.fetch_add(1, Relaxed);
        }
        match req {
            Request::ApiVersions => Response::ApiVersions {
                apis: crate::protocol::native::SUPPORTED.to_vec(),
            },
            Request::Metadata { topics } => self.metadata(topics).await,
            Request::CreateTopics { topics } => Response::CreateTopics {
                topics: self.create_topics_via_controller(topics).await,
            },
            Request::DeleteTopics { names } if self.view.is_some() => Response::DeleteTopics {
                topics: self.delete_topics_in_cluster(names).await,
            },
            Request::CreatePartitions { topics, validate_only } if self.view.is_some() => Response::CreatePartitions {
                topics: self.create_partitions_in_cluster(topics, validate_only).await,
            },
            Request::DeleteTopics { names } => {
                let topics = if self.id == 0 {
                    self.delete_topics(names).await
                } else {
                    self.call(0, |reply| ShardMsg::DeleteTopics { names, reply })
                        .await
                        .unwrap_or_default()
                };
                Response::DeleteTopics { topics }
            }
            Request::CreatePartitions { topics, validate_only } => {
                let topics = if self.id == 0 {
                    self.create_partitions(topics, validate_only).await
                } else {
                    self.call(0, |reply| ShardMsg::CreatePartitions {
                        topics,
                        validate_only,
                        reply,
                    })
                    .await
                    .unwrap_or_default()
                };
                Response::CreatePartitions { topics }
            }
            Request::Produce {
                acks,
                timeout_ms,
                topics,
            } => {
                let deadline = Instant::now() + Duration::from_millis(u64::from(timeout_ms));
                self.produce(acks, deadline, topics).await
            }
            Request::Fetch {
                max_wait_ms,
                min_bytes,
                max_bytes,
                topics,
            } => {
                let started = Instant::now();
                let wait = Duration::from_millis(u64::from(max_wait_ms));
                // A response never exceeds what a frame may carry, however
                // much the client asks for (reads are buffered in memory).
                let max_bytes = (max_bytes as usize).min(self.config.frame_bytes_max);
                let resp = self.fetch(topics, wait, min_bytes as usize, max_bytes).await;
                self.metrics.fetch_latency.observe(started.elapsed());
                resp
            }
            Request::ListOffsets { topics } => self.list_offsets(topics).await,
            Request::FindCoordinator { group_id } => self.find_coordinator(group_id).await,
            Request::ListGroups { states } => self.list_groups(states).await,
            Request::InitProducerId { transactional_id, .. } => self.init_producer_id(transactional_id, client).await,
            req @ (Request::JoinGroup(_)
            | Request::SyncGroup(_)
            | Request::Heartbeat(_)
            | Request::LeaveGroup(_)
            | Request::OffsetCommit(_)
            | Request::OffsetFetch { .. }
            | Request::DescribeGroups { .. }
            | Request::DeleteGroups { .. }) => self.group_request(req, client.clone()).await,
        }
    }

    async fn produce_local(
        &self,
        topic: &str,
        partition: u32,
        acks: Acks,
        deadline: Instant,
        records: &Bytes,
    ) -> ProducePartitionResponse {
        let started = Instant::now();
        let resp = match self.partition(topic, partition) {
            Some(p) => p.produce(records, acks, deadline).await,
            None => produce_error(partition, self.absent(topic, partition)),
        };
        let m = &self.metrics;
        m.produce_requests.fetch_add(1, Relaxed);
        if resp.error == ErrorCode::None {
            m.produce_bytes.fetch_add(records.len() as u64, Relaxed);
        } else {
            m.request_errors.fetch_add(1, Relaxed);
        }
        m.produce_latency.observe(started.elapsed());
        resp
    }

    async fn fetch_local(&self, topic: &str, partition: u32, offset: i64, max_bytes: usize) -> FetchPartitionResponse {
        let resp = match self.partition(topic, partition) {
            Some(p) => p.fetch(offset, max_bytes).await,
            None => fetch_error(partition, self.absent(topic, partition)),
        };
        let m = &self.metrics;
        m.fetch_requests.fetch_add(1, Relaxed);
        m.fetch_bytes.fetch_add(resp.records_bytes() as u64, Relaxed);
        if resp.error != ErrorCode::None {
            m.request_errors.fetch_add(1, Relaxed);
        }
        resp
    }

    async fn list_offsets_local(&self, topic: &str, partition: u32, spec: OffsetSpec) -> ListOffsetsPartitionResponse {
        match self.partition(topic, partition) {
            Some(p) => p.list_offsets(spec).await,
            None => list_offsets_error(partition, self.absent(topic, partition)),
        }
    }

    fn owner(&self, topic: &str, partition: u32) -> Option<u32> {
        self.meta.snapshot().owner(topic, partition)
    }

    async fn produce_one(
        self: Rc<Self>,
        topic: String,
        partition: u32,
        acks: Acks,
        deadline: Instant,
        records: Bytes,
    ) -> ProducePartitionResponse {
        if topic == OFFSETS_TOPIC {
            // Written only by the group coordinators.
            return produce_error(partition, ErrorCode::InvalidTopic);
        }
        match self.owner(&topic, partition) {
            None => produce_error(partition, self.absent(&topic, partition)),
            Some(s) if s as usize == self.id => self.produce_local(&topic, partition, acks, deadline, &records).await,
            Some(s) => self
                .call(s, |reply| ShardMsg::Produce {
                    topic,
                    partition,
                    acks,
                    deadline,
                    records,
                    reply,
                })
                .await
                .unwrap_or_else(|| produce_error(partition, ErrorCode::UnknownTopicOrPartition)),
        }
    }

    async fn produce(self: &Rc<Self>, acks: Acks, deadline: Instant, topics: Vec<ProduceTopic>) -> Response {
        let mut tasks = Vec::new();
        for t in topics {
            let parts = t
                .partitions
                .into_iter()
                .map(|p| {
                    glommio::spawn_local(self.clone().produce_one(
                        t.name.clone(),
                        p.partition,
                        acks,
                        deadline,
                        p.records,
                    ))
                })
                .collect::<Vec<_>>();
            tasks.push((t.name, parts));
        }
        let mut out = Vec::with_capacity(tasks.len());
        for (name, parts) in tasks {
            let mut partitions = Vec::with_capacity(parts.len());
            for task in parts {
                partitions.push(task.await);
            }
            out.push(ProduceTopicResponse { name, partitions });
        }
        Response::Produce { topics: out }
    }

    async fn fetch_one(
        self: Rc<Self>,
        topic: String,
        partition: u32,
        offset: i64,
        max_bytes: usize,
    ) -> FetchPartitionResponse {
        match self.owner(&topic, partition) {
            None => fetch_error(partition, self.absent(&topic, partition)),
            Some(s) if s as usize == self.id => self.fetch_local(&topic, partition, offset, max_bytes).await,
            Some(s) => self
                .call(s, |reply| ShardMsg::Fetch {
                    topic,
                    partition,
                    offset,
                    max_bytes,
                    reply,
                })
                .await
                .unwrap_or_else(|| fetch_error(partition, ErrorCode::UnknownTopicOrPartition)),
        }
    }

    async fn wait_one(self: Rc<Self>, topic: String, partition: u32, offset: i64, deadline: Instant) {
        match self.owner(&topic, partition) {
            Some(s) if s as usize == self.id => {
                if let Some(p) = self.partition(&topic, partition) {
                    p.wait_for_data(offset, deadline).await;
                }
            }
            Some(s) => {
                let _ = self
                    .call(s, |reply| ShardMsg::WaitForData {
                        topic,
                        partition,
                        offset,
                        deadline,
                        reply,
                    })
                    .await;
            }
            None => {}
        }
    }

    /// One read of every asked partition, each bounded by its own
    /// `max_bytes` and by `max_bytes_total`.
    async fn fetch_round(self: &Rc<Self>, topics: &[FetchTopic], max_bytes_total: usize) -> Vec<FetchTopicResponse> {
        let mut tasks = Vec::new();
        for t in topics {
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let fut = self.clone().fetch_one(
                        t.name.clone(),
                        p.partition,
                        p.offset,
                        (p.max_bytes as usize).min(max_bytes_total),
                    );
                    glommio::spawn_local(fut)
                })
                .collect::<Vec<_>>();
            tasks.push((t.name.clone(), parts));
        }
        let mut out = Vec::with_capacity(tasks.len());
        for (name, parts) in tasks {
            let mut partitions = Vec::with_capacity(parts.len());
            for task in parts {
                partitions.push(task.await);
            }
            out.push(FetchTopicResponse { name, partitions });
        }
        out
    }

    /// Fetch with long poll: answer at once if `min_bytes` are there (or an
    /// error is), else wait until any partition gets new data or `max_wait`
    /// passes, then read again. The total is bounded by `max_bytes` (but
    /// the first batch always goes, so a consumer can make progress).
    async fn fetch(
        self: &Rc<Self>,
        topics: Vec<FetchTopic>,
        max_wait: Duration,
        min_bytes: usize,
        max_bytes: usize,
    ) -> Response {
        let deadline = Instant::now() + max_wait;
        let mut result = self.fetch_round(&topics, max_bytes).await;
        let total: usize = result
            .iter()
            .flat_map(|t| &t.partitions)
            .map(FetchPartitionResponse::records_bytes)
            .sum();
        let any_error = result
            .iter()
            .flat_map(|t| &t.partitions)
            .any(|p| p.error != ErrorCode::None);
        if total < min_bytes.max(1) && !any_error && !max_wait.is_zero() {
            let mut waits = Vec::new();
            for t in &topics {
                for p in &t.partitions {
                    let shard = self.clone();
                    let (topic, partition, offset) = (t.name.clone(), p.partition, p.offset);
                    waits.push(async move { shard.wait_one(topic, partition, offset, deadline).await });
                }
            }
            first_of(waits, deadline).await;
            result = self.fetch_round(&topics, max_bytes).await;
        }
        let mut budget = ByteBudget::new(max_bytes);
        for p in result.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
            budget.keep(&mut p.records);
        }
        Response::Fetch { topics: result }
    }

    async fn list_offsets(self: &Rc<Self>, topics: Vec<ListOffsetsTopic>) -> Response {
        let mut out = Vec::new();
        for t in topics {
            let mut partitions = Vec::new();
            for p in t.partitions {
                let (topic, partition, spec) = (t.name.clone(), p.partition, p.spec);
                let resp = match self.owner(&topic, partition) {
                    Some(s) if s as usize == self.id => self.list_offsets_local(&topic, partition, spec).await,
                    Some(s) => self
                        .call(s, |reply| ShardMsg::ListOffsets {
                            topic,
                            partition,
                            spec,
                            reply,
                        })
                        .await
                        .unwrap_or_else(|| list_offsets_error(partition, ErrorCode::Unknown)),
                    None => list_offsets_error(partition, self.absent(&topic, partition)),
                };
                partitions.push(resp);
            }
            out.push(ListOffsetsTopicResponse {
                name: t.name,
                partitions,
            });
        }
        Response::ListOffsets { topics: out }
    }

    pub(super) async fn state_of(self: &Rc<Self>, topic: &str, partition: u32, owner: u32) -> Option<(i64, i64)> {
        if owner as usize == self.id {
            return self
                .partition(topic, partition)
                .map(|p| (p.log().log_start_offset(), p.high_watermark()));
        }
        let topic = topic.to_string();
        self.call(owner, |reply| ShardMsg::State {
            topic,
            partition,
            reply,
        })
        .await
        .flatten()
    }

    async fn metadata(self: &Rc<Self>, wanted: Option<Vec<String>>) -> Response {
        if self.view.is_some() {
            return self.cluster_metadata(wanted).await;
        }
        let snap = self.meta.snapshot();
        let host = self.config.native_addr.ip().to_string();
        let (kafka_host, kafka_port) = &self.config.kafka_advertised;
        let brokers = vec![BrokerInfo {
            kafka: format!("{kafka_host}:{kafka_port}"),
            node_id: self.config.node_id,
            host,
            port: self.config.native_addr.port(),
        }];
        let names: Vec<String> = wanted.unwrap_or_else(|| snap.topics.keys().cloned().collect());
        let mut topics = Vec::new();
        for name in names {
            let Some(t) = snap.topic(&name) else {
                topics.push(TopicInfo::unknown(name));
                continue;
            };
            let mut partitions = Vec::with_capacity(t.shards.len());
            for (p, &shard) in t.shards.iter().enumerate() {
                let state = self.state_of(&t.name, p as u32, shard).await;
                let (log_start_offset, high_watermark) = state.unwrap_or((-1, -1));
                // The only replica, and so the whole ISR.
                partitions.push(PartitionInfo {
                    isr: vec![self.config.node_id],
                    replicas: vec![self.config.node_id],
                    partition: p as u32,
                    error: if state.is_some() {
                        ErrorCode::None
                    } else {
                        ErrorCode::UnknownTopicOrPartition
                    },
                    leader: self.config.node_id,
                    shard,
                    shard_port: self.config.shard_port(shard as usize),
                    log_start_offset,
                    high_watermark,
                });
            }
            topics.push(TopicInfo {
                name: t.name.clone(),
                error: ErrorCode::None,
                partitions,
                config: t.config.clone(),
            });
        }
        Response::Metadata { brokers, topics }
    }

    /// Creates topics through the controller (shard 0).
    pub(super) async fn create_topics_via_controller(self: &Rc<Self>, topics: Vec<NewTopic>) -> Vec<TopicResult> {
        if self.view.is_some() {
            return self.create_topics_in_cluster(topics).await;
        }
        if self.id == 0 {
            self.create_topics(topics).await
        } else {
            self.call(0, |reply| ShardMsg::CreateTopics { topics, reply })
                .await
                .unwrap_or_default()
        }
    }

    /// Controller (shard 0): validates, places, persists, then has every
    /// shard open its new partitions.
    async fn create_topics(self: &Rc<Self>, topics: Vec<NewTopic>) -> Vec<TopicResult> {
        debug_assert_eq!(self.id, 0, "only the controller changes metadata");
        let mut results = Vec::new();
        for nt in topics {
            let fail = |error, message: String| TopicResult {
                name: nt.name.clone(),
                error,
                message,
            };
            if let Err((error, m)) = metadata::check_new_topic(&nt) {
                results.push(fail(error, m));
                continue;
            }
            let snap = self.meta.snapshot();
            if snap.topic(&nt.name).is_some() {
                results.push(fail(
                    ErrorCode::TopicAlreadyExists,
                    format!("topic {} already exists", nt.name),
                ));
                continue;
            }
            let shards = snap.place(nt.partitions, self.config.shards);
            let topic = TopicMeta {
                name: nt.name.clone(),
                shards,
                config: nt.config.clone(),
            };
            let mut next = (*snap).clone();
            next.topics.insert(nt.name.clone(), topic.clone());
            if let Err(m) = self.meta.update(next) {
                results.push(fail(ErrorCode::StorageError, m));
                continue;
            }
            results.push(match self.open_everywhere(Arc::new(topic)).await {
                Ok(()) => TopicResult {
                    name: nt.name.clone(),
                    error: ErrorCode::None,
                    message: String::new(),
                },
                Err(m) => fail(ErrorCode::StorageError, m),
            });
        }
        results
    }

    /// Has every shard open its partitions of `topic` that it has not
    /// opened yet; the last error, if any shard failed.
    pub(super) async fn open_everywhere(&self, topic: Arc<TopicMeta>) -> Result<(), String> {
        let mut error = None;
        for shard in 0..self.config.shards as u32 {
            let opened = if shard as usize == self.id {
                self.open_topic(&topic).await
            } else {
                let t = topic.clone();
                self.call(shard, |reply| ShardMsg::Open { topic: t, reply })
                    .await
                    .unwrap_or(Err(format!("shard {shard} did not answer")))
            };
            if let Err(m) = opened {
                error = Some(m);
            }
        }
        error.map_or(Ok(()), Err)
    }

    /// Controller (shard 0): grows topics. Validates, places only the new
    /// partitions, persists, then has every shard open its new partitions.
    /// `__consumer_offsets` is refused: group placement hashes over its
    /// partition count.
    async fn create_partitions(self: &Rc<Self>, topics: Vec<NewPartitions>, validate_only: bool) -> Vec<TopicResult> {
        debug_assert_eq!(self.id, 0, "only the controller changes metadata");
        let mut results = Vec::with_capacity(topics.len());
        for np in topics {
            let result = |error, message| TopicResult {
                name: np.name.clone(),
                error,
                message,
            };
            if np.name == OFFSETS_TOPIC {
                let m = format!("{OFFSETS_TOPIC} is internal: its partition count is fixed");
                results.push(result(ErrorCode::InvalidTopic, m));
                continue;
            }
            let snap = self.meta.snapshot();
            let grown = match snap.grow(&np.name, np.count, self.config.shards) {
                Ok(grown) => grown,
                Err((error, m)) => {
                    results.push(result(error, m));
                    continue;
                }
            };
            if validate_only {
                results.push(result(ErrorCode::None, String::new()));
                continue;
            }
            let mut next = (*snap).clone();
            next.topics.insert(np.name.clone(), grown.clone());
            if let Err(m) = self.meta.update(next) {
                results.push(result(ErrorCode::StorageError, m));
                continue;
            }
            results.push(match self.open_everywhere(Arc::new(grown)).await {
                Ok(()) => result(ErrorCode::None, String::new()),
                Err(m) => result(ErrorCode::StorageError, m),
            });
        }
        results
    }

    /// Controller (shard 0): forgets the topics, then has every shard
    /// delete its partitions of them.
    async fn delete_topics(self: &Rc<Self>, names: Vec<String>) -> Vec<TopicResult> {
        let mut results = Vec::new();
        for name in names {
            if let Err((error, message)) = metadata::check_deletable(&name) {
                results.push(TopicResult { name, error, message });
                continue;
            }
            let snap = self.meta.snapshot();
            if snap.topic(&name).is_none() {
                results.push(TopicResult {
                    message: format!("no topic {name}"),
                    name,
                    error: ErrorCode::UnknownTopicOrPartition,
                });
                continue;
            }
            let mut next = (*snap).clone();
            next.topics.remove(&name);
            if let Err(m) = self.meta.update(next) {
                results.push(TopicResult {
                    name,
                    error: ErrorCode::StorageError,
                    message: m,
                });
                continue;
            }
            self.remove_everywhere(&name).await;
            results.push(TopicResult {
                name,
                error: ErrorCode::None,
                message: String::new(),
            });
        }
        results
    }
}
