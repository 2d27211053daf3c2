//! Consumer groups on a shard: the IO side of the sans-IO
//! [`Coordinator`], and committed offsets kept in the internal offsets
//! topic.
//!
//! A group belongs to partition `partition_for(group, N)` of
//! `__consumer_offsets` (created on first use, N partitions). The shard that
//! owns that partition is the group's coordinator: it runs the group's
//! state machine and appends its commits to that partition. Requests for a
//! group that reach another shard are forwarded over the mesh, so a client
//! may talk to any shard; the native client goes straight to the right one.
//!
//! Committed offsets are replayed from the partition the first time a group
//! of it is touched after start, so they survive anything the log survives.
//! A commit is applied to the in-memory view and answered once its record
//! is durable (the offsets topic flushes every append), so OffsetFetch never
//! shows a commit a crash could take back. Offsets of a group without members expire
//! `offsets_retention_ms` after its newest commit (tombstones), and once the
//! partition holds a few segments of history its live offsets are rewritten
//! at the end and the older segments dropped: the topic does not grow
//! without bound.
//!
//! Ownership: [`Groups`] is a field of its [`Shard`]; its state is touched
//! only from that shard's executor, and no `RefCell` borrow is held across
//! an `.await`.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use glommio::sync::Semaphore;

use super::partition::error_code;
use super::shard::Shard;
use crate::api::*;
use crate::group::coordinator::{Action, ClientInfo, Coordinator, CoordinatorConfig, GroupState, Token};
use crate::group::offsets::{self, CommittedOffset, OffsetKey, OffsetStore, OFFSETS_TOPIC};
use crate::record::{self, BatchBuilder, Compression};
use crate::watermark::Watermark;

/// Rewrite the live offsets once a partition holds this many segments.
const SNAPSHOT_AT_SEGMENTS: usize = 3;
/// Records per batch when rewriting or tombstoning many offsets.
const RECORDS_PER_BATCH_MAX: usize = 1000;
/// Longest group id accepted.
const GROUP_ID_BYTES_MAX: usize = 1024;

/// One shard's group coordination state.
pub struct Groups {
    coordinator: RefCell<Coordinator>,
    offsets: RefCell<OffsetStore>,
    /// Offsets partitions whose records have been replayed into `offsets`.
    loaded: RefCell<HashSet<u32>>,
    /// Serialises loading, and appends to the offsets partitions with the
    /// store updates that follow them once durable, so the store applies
    /// records in log order and only durable ones.
    log_lock: Semaphore,
    pending: RefCell<HashMap<Token, oneshot::Sender<Response>>>,
    next_token: Cell<Token>,
    /// Bumped when the coordinator may have an earlier deadline.
    rearm: Watermark,
    timer_started: Cell<bool>,
    /// The coordinator's clock starts here.
    epoch: Instant,
    retention_ms: i64,
}

impl Groups {
    /// The offsets partition `p` changed role (cluster mode): its offsets
    /// are replayed again before this shard next coordinates from it.
    pub(super) fn forget_partition(&self, p: u32) {
        self.loaded.borrow_mut().remove(&p);
    }

    pub fn new(config: &crate::config::ServeConfig, seed: u64) -> Groups {
        let cfg = CoordinatorConfig {
            min_session_timeout_ms: config.group_min_session_timeout_ms,
            max_session_timeout_ms: config.group_max_session_timeout_ms,
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            ..CoordinatorConfig::default()
        };
        Groups {
            coordinator: RefCell::new(Coordinator::new(cfg, seed)),
            offsets: RefCell::new(OffsetStore::default()),
            loaded: RefCell::new(HashSet::new()),
            log_lock: Semaphore::new(1),
            pending: RefCell::new(HashMap::new()),
            next_token: Cell::new(1),
            rearm: Watermark::new(0),
            timer_started: Cell::new(false),
            epoch: Instant::now(),
            retention_ms: config.offsets_retention_ms,
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A token and the receiver its reply will arrive on.
    fn register(&self) -> (Token, oneshot::Receiver<Response>) {
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(token, tx);
        (token, rx)
    }

    fn run(&self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Reply { token, response } => {
                    if let Some(tx) = self.pending.borrow_mut().remove(&token) {
                        // The client may have gone; nothing to do then.
                        let _ = tx.send(response);
                    }
                }
                Action::Emptied { group_id } => {
                    tracing::debug!(group = %group_id, "group has no members");
                }
            }
        }
        self.rearm.set(self.rearm.get() + 1);
    }

    fn is_empty_group(&self, group: &str) -> bool {
        matches!(
            self.coordinator.borrow().state(group),
            None | Some(GroupState::Empty) | Some(GroupState::Dead)
        )
    }
}

/// The error answer for a group request that cannot be served.
fn group_error(req: &Request, error: ErrorCode) -> Response {
    match req {
        Request::JoinGroup(r) => Response::JoinGroup(JoinGroupResponse {
            error,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: r.member_id.clone(),
            members: Vec::new(),
        }),
        Request::SyncGroup(_) => Response::SyncGroup(SyncGroupResponse {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: bytes::Bytes::new(),
        }),
        Request::Heartbeat(_) => Response::Heartbeat { error },
        Request::LeaveGroup(r) => Response::LeaveGroup(LeaveGroupResponse {
            error,
            members: r
                .members
                .iter()
                .map(|m| LeftMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    error,
                })
                .collect(),
        }),
        Request::OffsetCommit(r) => Response::OffsetCommit {
            topics: r
                .topics
                .iter()
                .map(|t| OffsetCommitTopicResponse {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| PartitionError {
                            partition: p.partition,
                            error,
                        })
                        .collect(),
                })
                .collect(),
        },
        Request::OffsetFetch { .. } => Response::OffsetFetch {
            error,
            topics: Vec::new(),
        },
        Request::DescribeGroups { groups } => Response::DescribeGroups {
            groups: groups
                .iter()
                .map(|g| DescribedGroup {
                    group_id: g.clone(),
                    error,
                    state: String::new(),
                    protocol_type: String::new(),
                    protocol_name: String::new(),
                    members: Vec::new(),
                })
                .collect(),
        },
        Request::DeleteGroups { groups } => Response::DeleteGroups {
            groups: groups
                .iter()
                .map(|g| GroupResult {
                    group_id: g.clone(),
                    error,
                })
                .collect(),
        },
        _ => Response::Error {
            error,
            message: format!("{:?} is not a group request", req.api()),
        },
    }
}

/// The group a (single-group) request is about.
fn group_of(req: &Request) -> Option<&str> {
    match req {
        Request::JoinGroup(r) => Some(&r.group_id),
        Request::SyncGroup(r) => Some(&r.group_id),
        Request::Heartbeat(r) => Some(&r.group_id),
        Request::LeaveGroup(r) => Some(&r.group_id),
        Request::OffsetCommit(r) => Some(&r.group_id),
        Request::OffsetFetch { group_id, .. } => Some(group_id),
        Request::DescribeGroups { groups } | Request::DeleteGroups { groups } if groups.len() == 1 => Some(&groups[0]),
        _ => None,
    }
}

fn merge(into: &mut Response, part: Response) {
    match (into, part) {
        (Response::DescribeGroups { groups }, Response::DescribeGroups { groups: more }) => groups.extend(more),
        (Response::DeleteGroups { groups }, Response::DeleteGroups { groups: more }) => groups.extend(more),
        _ => {}
    }
}

impl Shard {
    /// The topic config of `__consumer_offsets`: every commit durable before
    /// it is answered, no time or size retention (the coordinator expires
    /// and compacts), small segments.
    fn offsets_topic(&self) -> NewTopic {
        NewTopic {
            replication: Default::default(),
            name: OFFSETS_TOPIC.to_string(),
            partitions: self.config.offsets_topic_partitions,
            config: TopicConfig {
                retention_ms: Some(-1),
                retention_bytes: Some(-1),
                // Small, so that history rolls into segments a rewrite of
                // the live offsets lets us drop.
                segment_bytes: Some(self.config.offsets_segment_bytes),
                max_message_bytes: None,
                flush: Some(FlushConfig::EveryAppend),
            },
        }
    }

    /// The offsets partition and coordinator shard of `group`, creating the
    /// offsets topic first if `create` and it does not exist yet.
    async fn coordinator_of(self: &Rc<Self>, group: &str, create: bool) -> Result<(u32, u32), ErrorCode> {
        if group.is_empty() || group.len() > GROUP_ID_BYTES_MAX {
            return Err(ErrorCode::InvalidGroupId);
        }
        if self.view.is_some() {
            let (p, leader) = self.offsets_leader(group, create).await?;
            if leader.map(|(id, _)| id) != self.view.as_ref().map(|v| v.me()) {
                return Err(ErrorCode::NotCoordinator);
            }
            let shard = self
                .meta
                .snapshot()
                .owner(OFFSETS_TOPIC, p)
                .ok_or(ErrorCode::CoordinatorLoadInProgress)?;
            return Ok((p, shard));
        }
        if self.meta.snapshot().topic(OFFSETS_TOPIC).is_none() {
            if !create {
                return Err(ErrorCode::GroupIdNotFound);
            }
            self.create_offsets_topic().await?;
        }
        let snap = self.meta.snapshot();
        let topic = snap.topic(OFFSETS_TOPIC).ok_or(ErrorCode::CoordinatorNotAvailable)?;
        let p = offsets::partition_for(group, topic.shards.len() as u32);
        let shard = *topic.shards.get(p as usize).ok_or(ErrorCode::CoordinatorNotAvailable)?;
        Ok((p, shard))
    }

    /// Creates the offsets topic (first use of groups on this node or
    /// cluster).
    async fn create_offsets_topic(self: &Rc<Self>) -> Result<(), ErrorCode> {
        let results = self.create_topics_via_controller(vec![self.offsets_topic()]).await;
        if let Some(r) = results
            .iter()
            .find(|r| !matches!(r.error, ErrorCode::None | ErrorCode::TopicAlreadyExists))
        {
            tracing::warn!(error = %r.error, message = %r.message, "creating the offsets topic failed");
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        Ok(())
    }

    /// Cluster mode: the group's offsets partition and its leader (id and
    /// endpoints), creating the offsets topic through the controller if
    /// `create` and it does not exist.
    async fn offsets_leader(
        self: &Rc<Self>,
        group: &str,
        create: bool,
    ) -> Result<(u32, Option<(u32, crate::cluster::metadata::BrokerEndpoints)>), ErrorCode> {
        let Some(view) = self.view.clone() else {
            return Err(ErrorCode::CoordinatorNotAvailable);
        };
        if !view.snapshot().topics.contains_key(OFFSETS_TOPIC) {
            if !create {
                return Err(ErrorCode::GroupIdNotFound);
            }
            self.create_offsets_topic().await?;
        }
        let state = view.snapshot();
        let topic = state
            .topics
            .get(OFFSETS_TOPIC)
            .ok_or(ErrorCode::CoordinatorNotAvailable)?;
        let p = offsets::partition_for(group, topic.partitions.len() as u32);
        let leader = topic
            .partitions
            .get(p as usize)
            .and_then(|s| s.leader)
            .and_then(|l| state.brokers.get(&l).map(|b| (l, b.endpoints.clone())));
        Ok((p, leader))
    }

    pub(super) async fn find_coordinator(self: &Rc<Self>, group_id: String) -> Response {
        if self.view.is_some() {
            let none = |error| CoordinatorInfo {
                error,
                node_id: -1,
                host: String::new(),
                port: 0,
                shard: 0,
                shard_port: 0,
                kafka: String::new(),
            };
            return Response::FindCoordinator(match self.offsets_leader(&group_id, true).await {
                Ok((_, Some((id, endpoints)))) => match crate::config::parse_host_port(&endpoints.native) {
                    Ok((host, port)) => CoordinatorInfo {
                        error: ErrorCode::None,
                        node_id: id as i32,
                        host,
                        port,
                        shard: 0,
                        shard_port: 0,
                        kafka: endpoints.kafka,
                    },
                    Err(_) => none(ErrorCode::CoordinatorNotAvailable),
                },
                Ok((_, None)) => none(ErrorCode::CoordinatorNotAvailable),
                Err(e) => none(e),
            });
        }
        let info = |error, shard: u32| CoordinatorInfo {
            kafka: String::new(),
            error,
            node_id: self.config.node_id,
            host: self.config.native_addr.ip().to_string(),
            port: self.config.native_addr.port(),
            shard,
            shard_port: self.config.shard_port(shard as usize),
        };
        Response::FindCoordinator(match self.coordinator_of(&group_id, true).await {
            Ok((_, shard)) => info(ErrorCode::None, shard),
            Err(e) => CoordinatorInfo {
                node_id: -1,
                host: String::new(),
                port: 0,
                shard_port: 0,
                ..info(e, 0)
            },
        })
    }

    /// Any group request but FindCoordinator and ListGroups: split per
    /// group, each part answered by its coordinator shard.
    pub(super) async fn group_request(self: &Rc<Self>, req: Request, client: ClientInfo) -> Response {
        match req {
            Request::DescribeGroups { groups } if groups.len() != 1 => {
                let one = |g| Request::DescribeGroups { groups: vec![g] };
                self.per_group(groups, client, one, Response::DescribeGroups { groups: Vec::new() })
                    .await
            }
            Request::DeleteGroups { groups } if groups.len() != 1 => {
                let one = |g| Request::DeleteGroups { groups: vec![g] };
                self.per_group(groups, client, one, Response::DeleteGroups { groups: Vec::new() })
                    .await
            }
            req => {
                let Some(group) = group_of(&req) else {
                    return group_error(&req, ErrorCode::InvalidRequest);
                };
                // Only joining (and committing, which a manual-assignment
                // consumer may do first) creates the offsets topic.
                let create = matches!(req, Request::JoinGroup(_) | Request::OffsetCommit(_));
                match self.coordinator_of(group, create).await {
                    Ok((p, shard)) if shard as usize == self.id => self.group_local(p, req, client).await,
                    Ok((_, shard)) => {
                        let fallback = group_error(&req, ErrorCode::CoordinatorNotAvailable);
                        self.call(shard, |reply| super::ShardMsg::Group { req, client, reply })
                            .await
                            .unwrap_or(fallback)
                    }
                    Err(ErrorCode::GroupIdNotFound) => self.group_without_offsets_topic(req),
                    Err(e) => group_error(&req, e),
                }
            }
        }
    }

    /// A request about several groups, which may have different
    /// coordinators: one request per group, the answers merged into `out`.
    async fn per_group(
        self: &Rc<Self>,
        ids: Vec<String>,
        client: ClientInfo,
        one: fn(String) -> Request,
        mut out: Response,
    ) -> Response {
        for g in ids {
            let part = Box::pin(self.group_request(one(g), client.clone())).await;
            merge(&mut out, part);
        }
        out
    }

    /// Answers for a group when no group has ever been used on this node.
    fn group_without_offsets_topic(&self, req: Request) -> Response {
        match req {
            Request::OffsetFetch { topics, .. } => Response::OffsetFetch {
                error: ErrorCode::None,
                topics: topics
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| OffsetFetchTopicResponse {
                        partitions: t.partitions.iter().map(|&p| no_offset(p)).collect(),
                        name: t.name,
                    })
                    .collect(),
            },
            Request::DescribeGroups { groups } => Response::DescribeGroups {
                groups: groups.into_iter().map(dead_group).collect(),
            },
            req => group_error(&req, ErrorCode::GroupIdNotFound),
        }
    }

    /// Serves a request for a group this shard coordinates (offsets
    /// partition `p`).
    pub(super) async fn group_local(self: &Rc<Self>, p: u32, req: Request, client: ClientInfo) -> Response {
        if let Err(e) = self.load_offsets(p).await {
            return group_error(&req, e);
        }
        self.start_group_timer();
        let groups = &self.groups;
        let now = groups.now();
        match req {
            Request::JoinGroup(r) => {
                let (token, rx) = groups.register();
                let actions = groups.coordinator.borrow_mut().join(now, token, client, r.clone());
                groups.run(actions);
                rx.await
                    .unwrap_or_else(|_| group_error(&Request::JoinGroup(r), ErrorCode::CoordinatorNotAvailable))
            }
            Request::SyncGroup(r) => {
                let (token, rx) = groups.register();
                let actions = groups.coordinator.borrow_mut().sync(now, token, r);
                groups.run(actions);
                rx.await.unwrap_or(Response::SyncGroup(SyncGroupResponse {
                    error: ErrorCode::CoordinatorNotAvailable,
                    protocol_type: None,
                    protocol_name: None,
                    assignment: bytes::Bytes::new(),
                }))
            }
            Request::Heartbeat(r) => {
                let (token, rx) = groups.register();
                let actions = groups.coordinator.borrow_mut().heartbeat(now, token, r);
                groups.run(actions);
                rx.await.unwrap_or(Response::Heartbeat {
                    error: ErrorCode::CoordinatorNotAvailable,
                })
            }
            Request::LeaveGroup(r) => {
                let fallback = group_error(&Request::LeaveGroup(r.clone()), ErrorCode::CoordinatorNotAvailable);
                let (token, rx) = groups.register();
                let actions = groups.coordinator.borrow_mut().leave(now, token, r);
                groups.run(actions);
                rx.await.unwrap_or(fallback)
            }
            Request::OffsetCommit(r) => self.commit_offsets(p, r).await,
            Request::OffsetFetch { group_id, topics } => self.fetch_offsets(&group_id, topics),
            Request::DescribeGroups { groups: ids } => Response::DescribeGroups {
                groups: ids.into_iter().map(|g| self.describe_group(g)).collect(),
            },
            Request::DeleteGroups { groups: ids } => {
                let mut results = Vec::new();
                for g in ids {
                    let error = self.delete_group(p, &g).await;
                    results.push(GroupResult { group_id: g, error });
                }
                Response::DeleteGroups { groups: results }
            }
            req => group_error(&req, ErrorCode::InvalidRequest),
        }
    }

    fn describe_group(&self, group_id: String) -> DescribedGroup {
        let mut d = self.groups.coordinator.borrow().describe(&group_id);
        // A group the coordinator has no members for but with committed
        // offsets is Empty, as Kafka shows it.
        if d.state == GroupState::Dead.as_str() && self.groups.offsets.borrow().has_group(&group_id) {
            d.state = GroupState::Empty.as_str().to_string();
            if d.protocol_type.is_empty() {
                d.protocol_type = crate::group::consumer_protocol::PROTOCOL_TYPE.to_string();
            }
        }
        d
    }

    /// ListGroups on this shard: its coordinator's groups plus groups known
    /// only by their committed offsets (Empty), which are loaded first.
    pub(super) async fn list_groups_local(&self, states: &[String]) -> Vec<ListedGroup> {
        let owned: Vec<u32> = match self.meta.snapshot().topic(OFFSETS_TOPIC) {
            Some(t) => (0..t.shards.len() as u32)
                .filter(|&p| t.shards[p as usize] as usize == self.id)
                .collect(),
            None => Vec::new(),
        };
        for p in owned {
            if let Err(e) = self.load_offsets(p).await {
                tracing::warn!(partition = p, error = %e, "loading committed offsets failed");
            }
        }
        let mut listed = self.groups.coordinator.borrow().list(states);
        let known: HashSet<String> = listed.iter().map(|g| g.group_id.clone()).collect();
        let empty = GroupState::Empty.as_str();
        if states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(empty)) {
            for g in self.groups.offsets.borrow().group_ids() {
                if !known.contains(g) {
                    listed.push(ListedGroup {
                        group_id: g.to_string(),
                        protocol_type: crate::group::consumer_protocol::PROTOCOL_TYPE.to_string(),
                        state: empty.to_string(),
                    });
                }
            }
        }
        listed
    }

    pub(super) async fn list_groups(self: &Rc<Self>, states: Vec<String>) -> Response {
        let mut groups = self.list_groups_local(&states).await;
        for shard in 0..self.config.shards as u32 {
            if shard as usize == self.id {
                continue;
            }
            let states = states.clone();
            if let Some(more) = self
                .call(shard, |reply| super::ShardMsg::ListGroups { states, reply })
                .await
            {
                groups.extend(more);
            }
        }
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Response::ListGroups {
            error: ErrorCode::None,
            groups,
        }
    }

    /// Replays offsets partition `p` into the store, once.
    async fn load_offsets(&self, p: u32) -> Result<(), ErrorCode> {
        if self.groups.loaded.borrow().contains(&p) {
            return Ok(());
        }
        let _lock = self
            .groups
            .log_lock
            .acquire_permit(1)
            .await
            .map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
        if self.groups.loaded.borrow().contains(&p) {
            return Ok(());
        }
        let part = self
            .partition(OFFSETS_TOPIC, p)
            .ok_or(ErrorCode::CoordinatorLoadInProgress)?;
        let log = part.log().clone();
        let end = log.next_offset();
        let mut at = log.log_start_offset();
        let (mut records, mut bad) = (0u64, 0u64);
        while at < end {
            let read = log.read(at, 1 << 20, end).await.map_err(|e| error_code(&e))?;
            if read.batches.is_empty() {
                break;
            }
            for batch in &read.batches {
                let iter = match record::records(batch, log.config().batch_bytes_max.max(1 << 20)) {
                    Ok(iter) => iter,
                    Err(e) => {
                        tracing::warn!(partition = p, error = %e, "skipping an unreadable offsets batch");
                        bad += 1;
                        continue;
                    }
                };
                for rec in iter {
                    let decoded = rec.map_err(|e| e.to_string()).and_then(|r| match r.key {
                        Some(key) => offsets::decode(&key, r.value.as_deref()).map_err(|e| e.to_string()),
                        None => Err("record without a key".to_string()),
                    });
                    match decoded {
                        Ok((key, value)) => {
                            self.groups.offsets.borrow_mut().apply(key, value);
                            records += 1;
                        }
                        Err(e) => {
                            tracing::warn!(partition = p, error = %e, "skipping an unreadable offsets record");
                            bad += 1;
                        }
                    }
                }
            }
            at = read.next_offset;
        }
        tracing::info!(partition = p, records, bad, "loaded committed offsets");
        self.groups.loaded.borrow_mut().insert(p);
        Ok(())
    }

    /// Appends offset records (`None`: tombstone) to offsets partition `p`,
    /// waits until they are durable, then applies them to the store; so
    /// OffsetFetch never shows a commit a crash could still take back.
    async fn append_offsets(
        &self,
        p: u32,
        entries: Vec<(OffsetKey, Option<CommittedOffset>)>,
    ) -> Result<(), ErrorCode> {
        self.append_offsets_with(p, |_| entries).await
    }

    /// [`Shard::append_offsets`] with the records chosen from the store
    /// under the lock, so nothing committed meanwhile is overwritten. The
    /// lock is held until the records are durable and applied: appends to
    /// the offsets partitions of a shard go one sync at a time, and the
    /// store always equals the durable log (commits are rare next to data:
    /// a consumer commits every few seconds).
    async fn append_offsets_with(
        &self,
        p: u32,
        entries: impl FnOnce(&OffsetStore) -> Vec<(OffsetKey, Option<CommittedOffset>)>,
    ) -> Result<(), ErrorCode> {
        let part = self
            .partition(OFFSETS_TOPIC, p)
            .ok_or(ErrorCode::CoordinatorNotAvailable)?;
        // In a cluster only the partition's leader writes, at its epoch.
        let epoch = match part.replica() {
            None => 0,
            Some(r) => r.leader_epoch().ok_or(ErrorCode::NotCoordinator)?,
        };
        let log = part.log().clone();
        let now = crate::record::now_ms();
        let _lock = self
            .groups
            .log_lock
            .acquire_permit(1)
            .await
            .map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
        let entries = entries(&self.groups.offsets.borrow());
        let mut end = None;
        for chunk in entries.chunks(RECORDS_PER_BATCH_MAX) {
            let mut b = BatchBuilder::new(Compression::None);
            for (key, value) in chunk {
                let k = offsets::encode_key(key);
                let v = value.as_ref().map(offsets::encode_value);
                b.push(now, Some(&k), v.as_deref(), &[]);
            }
            let batch = b.finish().map_err(|_| ErrorCode::CorruptMessage)?;
            let info = log.append_buffered(batch, epoch).await.map_err(|e| error_code(&e))?;
            end = Some(info.last_offset + 1);
        }
        let Some(end) = end else {
            return Ok(());
        };
        part.on_leader_append();
        part.wait_replicated(end, epoch, Instant::now() + Duration::from_secs(30))
            .await
            .map_err(|e| match e {
                ErrorCode::NotLeaderOrFollower => ErrorCode::NotCoordinator,
                e => e,
            })?;
        log.wait_durable(end).await.map_err(|e| error_code(&e))?;
        let mut store = self.groups.offsets.borrow_mut();
        for (key, value) in entries {
            store.apply(key, value);
        }
        Ok(())
    }

    async fn commit_offsets(&self, p: u32, r: OffsetCommitRequest) -> Response {
        let now = self.groups.now();
        let validated = self.groups.coordinator.borrow_mut().validate_commit(
            now,
            &r.group_id,
            r.generation_id,
            &r.member_id,
            r.group_instance_id.as_deref(),
        );
        if let Err(e) = validated {
            return group_error(&Request::OffsetCommit(r), e);
        }
        let snap = self.meta.snapshot();
        let commit_ms = crate::record::now_ms();
        let mut entries = Vec::new();
        let mut topics = Vec::new();
        for t in &r.topics {
            let known = snap.topic(&t.name).map(|m| m.shards.len() as u32);
            let mut partitions = Vec::new();
            for p in &t.partitions {
                let error = if known.is_none_or(|n| p.partition >= n) {
                    ErrorCode::UnknownTopicOrPartition
                } else if p
                    .metadata
                    .as_ref()
                    .is_some_and(|m| m.len() > offsets::METADATA_MAX_BYTES)
                {
                    ErrorCode::OffsetMetadataTooLarge
                } else {
                    entries.push((
                        OffsetKey {
                            group: r.group_id.clone(),
                            topic: t.name.clone(),
                            partition: p.partition,
                        },
                        Some(CommittedOffset {
                            offset: p.offset,
                            leader_epoch: p.leader_epoch,
                            metadata: p.metadata.clone(),
                            commit_ms,
                        }),
                    ));
                    ErrorCode::None
                };
                partitions.push(PartitionError {
                    partition: p.partition,
                    error,
                });
            }
            topics.push(OffsetCommitTopicResponse {
                name: t.name.clone(),
                partitions,
            });
        }
        if let Err(e) = self.append_offsets(p, entries).await {
            for part in topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                if part.error == ErrorCode::None {
                    part.error = e;
                }
            }
        }
        Response::OffsetCommit { topics }
    }

    fn fetch_offsets(&self, group: &str, topics: Option<Vec<OffsetFetchTopic>>) -> Response {
        let store = self.groups.offsets.borrow();
        let answer = |partition, o: Option<&CommittedOffset>| match o {
            Some(o) => OffsetFetchPartitionResponse {
                partition,
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata: o.metadata.clone(),
                error: ErrorCode::None,
            },
            None => no_offset(partition),
        };
        let topics = match topics {
            Some(topics) => topics
                .into_iter()
                .map(|t| OffsetFetchTopicResponse {
                    partitions: t
                        .partitions
                        .iter()
                        .map(|&p| answer(p, store.get(group, &t.name, p)))
                        .collect(),
                    name: t.name,
                })
                .collect(),
            None => {
                let mut out: Vec<OffsetFetchTopicResponse> = Vec::new();
                for (topic, partition, o) in store.group(group) {
                    if out.last().is_none_or(|t| t.name != topic) {
                        out.push(OffsetFetchTopicResponse {
                            name: topic.to_string(),
                            partitions: Vec::new(),
                        });
                    }
                    if let Some(t) = out.last_mut() {
                        t.partitions.push(answer(partition, Some(o)));
                    }
                }
                out
            }
        };
        Response::OffsetFetch {
            error: ErrorCode::None,
            topics,
        }
    }

    async fn delete_group(&self, p: u32, group: &str) -> ErrorCode {
        let known_offsets = self.groups.offsets.borrow().has_group(group);
        match self.groups.coordinator.borrow_mut().delete(group) {
            Ok(()) => {}
            Err(ErrorCode::GroupIdNotFound) if known_offsets => {}
            Err(e) => return e,
        }
        let tombstones: Vec<_> = self
            .groups
            .offsets
            .borrow()
            .keys_of(group)
            .into_iter()
            .map(|k| (k, None))
            .collect();
        match self.append_offsets(p, tombstones).await {
            Ok(()) => ErrorCode::None,
            Err(e) => e,
        }
    }

    /// Starts the task that ticks the coordinator at its deadlines.
    fn start_group_timer(self: &Rc<Self>) {
        if self.groups.timer_started.replace(true) {
            return;
        }
        let shard = Rc::downgrade(self);
        glommio::spawn_local(async move {
            loop {
                let Some(shard) = shard.upgrade() else { return };
                let groups = &shard.groups;
                let seen = groups.rearm.get();
                let now = groups.now();
                let wait = groups
                    .coordinator
                    .borrow()
                    .next_deadline()
                    .map_or(Duration::from_secs(1), |d| Duration::from_millis(d.saturating_sub(now)));
                if !wait.is_zero() {
                    let _ = glommio::timer::timeout(wait, async {
                        groups.rearm.wait_for(seen + 1).await;
                        Ok(())
                    })
                    .await;
                }
                let now = groups.now();
                let actions = groups.coordinator.borrow_mut().tick(now);
                if !actions.is_empty() {
                    groups.run(actions);
                }
            }
        })
        .detach();
    }

    /// Periodic upkeep of the offsets partitions this shard owns: expires
    /// the offsets of long-empty groups, and rewrites the live offsets of a
    /// partition with a long history so its old segments can go.
    pub async fn maintain_groups(self: &Rc<Self>) {
        let loaded: Vec<u32> = self.groups.loaded.borrow().iter().copied().collect();
        let n = match self.meta.snapshot().topic(OFFSETS_TOPIC) {
            Some(t) => t.shards.len() as u32,
            None => return,
        };
        let now = crate::record::now_ms();
        for p in loaded {
            let expired: Vec<String> = self
                .groups
                .offsets
                .borrow()
                .expired_groups(now, self.groups.retention_ms, |g| self.groups.is_empty_group(g))
                .into_iter()
                .filter(|g| offsets::partition_for(g, n) == p)
                .collect();
            for g in expired {
                let error = self.delete_group(p, &g).await;
                tracing::info!(group = %g, %error, "expired the offsets of an empty group");
            }
            let Some(part) = self.partition(OFFSETS_TOPIC, p) else {
                continue;
            };
            if part.log().segment_count() < SNAPSHOT_AT_SEGMENTS {
                continue;
            }
            let base = part.log().next_offset();
            let count = Cell::new(0);
            let live = |store: &OffsetStore| {
                let live: Vec<_> = store
                    .all()
                    .filter(|(k, _)| offsets::partition_for(&k.group, n) == p)
                    .map(|(k, o)| (k, Some(o.clone())))
                    .collect();
                count.set(live.len());
                live
            };
            if let Err(e) = self.append_offsets_with(p, live).await {
                tracing::warn!(partition = p, error = %e, "rewriting live offsets failed");
                continue;
            }
            match part.log().delete_segments_below(base).await {
                Ok(out) => tracing::info!(
                    partition = p,
                    live = count.get(),
                    segments_deleted = out.segments_deleted,
                    "compacted the offsets partition"
                ),
                Err(e) => tracing::warn!(partition = p, error = %e, "dropping old offsets segments failed"),
            }
        }
    }
}

fn no_offset(partition: u32) -> OffsetFetchPartitionResponse {
    OffsetFetchPartitionResponse {
        partition,
        offset: -1,
        leader_epoch: -1,
        metadata: None,
        error: ErrorCode::None,
    }
}

fn dead_group(group_id: String) -> DescribedGroup {
    DescribedGroup {
        group_id,
        error: ErrorCode::None,
        state: GroupState::Dead.as_str().to_string(),
        protocol_type: String::new(),
        protocol_name: String::new(),
        members: Vec::new(),
    }
}
