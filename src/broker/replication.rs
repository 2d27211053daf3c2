//! Replicated partitions on a node (cluster mode): bringing the local
//! topics and each partition's role in line with the applied cluster
//! metadata, the followers' fetchers, the leader's side of a replica fetch
//! and the leader's timed duties.
//!
//! Ownership: shard 0 alone reconciles (it owns the local topic metadata
//! and the last role it told each partition's owner); a partition's role
//! and replication state live on its owner shard, which also runs the
//! fetchers for the partitions it follows: one fetcher per leader node per
//! shard, carrying all those partitions in each request. The leader side
//! of a fetch arrives on shard 0's inter-broker listener and is answered
//! by the owner shards over the mesh.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::AsyncWriteExt;

use super::metadata::TopicMeta;
use super::partition::{Partition, RoleChange, RoleUpdate};
use super::shard::{first_of, ByteBudget, Shard, ShardMsg};
use crate::api::ErrorCode;
use crate::cluster::fetch::{self, FetchPartition, FetchRequest, Fetched, FetchedPartition};
use crate::cluster::handshake::{self, Backoff, Greeting};
use crate::cluster::metadata::{ClusterState, Command};
use crate::cluster::placement;
use crate::cluster::replica::{AlterIsr, Epoch, NodeId};
use crate::cluster::runtime::{read_frame, Answer, ProposeError};
use crate::watermark::Watermark;

/// How long a follower's fetch may wait at the leader for news.
const FETCH_MAX_WAIT_MS: u32 = 500;
/// Bytes one partition contributes to a fetch answer (Kafka's
/// replica.fetch.max.bytes), and the answer's total.
const FETCH_PARTITION_BYTES_MAX: usize = 1 << 20;
const FETCH_BYTES_MAX: u32 = 16 << 20;
/// Largest fetch answer a follower reads.
const ANSWER_BYTES_MAX: usize = (FETCH_BYTES_MAX as usize) + (8 << 20);
/// A fetch answer later than this (past the leader's wait) breaks the
/// connection.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a leader checks its followers' lag.
const LEADER_TICK: Duration = Duration::from_millis(250);
/// A leader whose log failed asks to hand over again after this.
const RESIGN_AGAIN_AFTER: Duration = Duration::from_secs(2);
/// How long a proposal may wait for the controller.
const PROPOSE_WAIT: Duration = Duration::from_secs(10);
/// The pause before a proposal lost to a change of controller is sent again.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// A follower's fetcher from one leader node, on one shard.
#[derive(Debug, Default)]
pub struct Fetcher {
    addr: RefCell<String>,
    partitions: RefCell<BTreeSet<(String, u32)>>,
    /// Woken when a partition joins, so an idle fetcher starts at once.
    joined: Watermark,
}

impl Shard {
    fn me(&self) -> Option<NodeId> {
        self.view.as_ref().map(|v| v.me())
    }

    /// What the error is for a partition this shard does not hold: in a
    /// cluster, a partition of a known topic lives on other brokers.
    pub(super) fn absent(&self, topic: &str, partition: u32) -> ErrorCode {
        match &self.view {
            Some(v) if v.snapshot().partition(topic, partition).is_some() => ErrorCode::NotLeaderOrFollower,
            _ => ErrorCode::UnknownTopicOrPartition,
        }
    }

    /// Whether this node holds a replica of the partition (always, on a
    /// single node).
    pub(super) fn hosts(&self, topic: &str, partition: u32) -> bool {
        match &self.view {
            None => true,
            Some(v) => v.snapshot().hosts(topic, partition, v.me()),
        }
    }

    /// Shard 0: brings the local topics and every hosted partition's role
    /// in line with the applied cluster state. Runs after each change.
    pub async fn reconcile(self: &Rc<Self>) {
        let (Some(view), Some(me)) = (self.view.clone(), self.me()) else {
            return;
        };
        let state: Arc<ClusterState> = view.snapshot();
        if !view.current(&state) {
            // Until this run is registered (and unfenced) the state may be
            // stale: the partitions wait, closed or idle.
            return;
        }
        for (name, t) in &state.topics {
            if !t.partitions.iter().any(|p| p.replicas.contains(&me)) {
                continue;
            }
            let snap = self.meta.snapshot();
            let known = snap.topic(name).map(|tm| tm.shards.len());
            if known != Some(t.partitions.len()) {
                let config = match t.config.to_config() {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(topic = %name, error = %e, "a topic config this node cannot read");
                        continue;
                    }
                };
                let mut shards = snap.topic(name).map(|tm| tm.shards.clone()).unwrap_or_default();
                let added = t.partitions.len().saturating_sub(shards.len()) as u32;
                shards.extend(snap.place(added, self.config.shards));
                let topic = TopicMeta {
                    name: name.clone(),
                    shards,
                    config,
                };
                let mut next = (*snap).clone();
                next.topics.insert(name.clone(), topic);
                if let Err(e) = self.meta.update(next) {
                    tracing::error!(topic = %name, error = %e, "recording a topic failed");
                    continue;
                }
            }
            let hosted: Vec<(String, u32)> = t
                .partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.replicas.contains(&me))
                .map(|(i, _)| (name.clone(), i as u32))
                .collect();
            if hosted.iter().any(|k| !self.opened.borrow().contains(k)) {
                let Some(topic) = self.meta.snapshot().topic(name).cloned() else {
                    continue;
                };
                match self.open_everywhere(Arc::new(topic)).await {
                    Ok(()) => self.opened.borrow_mut().extend(hosted),
                    Err(e) => tracing::error!(topic = %name, error = %e, "opening a topic's partitions failed"),
                }
            }
        }
        // Replicas moved off this node (a reassignment completed): closed
        // and removed.
        let moved: Vec<(String, u32)> = self
            .opened
            .borrow()
            .iter()
            .filter(|(t, p)| state.topics.contains_key(t) && !state.hosts(t, *p, me))
            .cloned()
            .collect();
        for (topic, partition) in moved {
            self.opened.borrow_mut().remove(&(topic.clone(), partition));
            self.pushed.borrow_mut().remove(&(topic.clone(), partition));
            let Some(owner) = self.meta.snapshot().owner(&topic, partition) else {
                continue;
            };
            if owner as usize == self.id {
                self.remove_partition(&topic, partition).await;
            } else {
                let t = topic.clone();
                let _ = self
                    .call(owner, |reply| ShardMsg::RemovePartition {
                        topic: t,
                        partition,
                        reply,
                    })
                    .await;
            }
            tracing::info!(topic = %topic, partition, "replica moved away: removed");
        }
        // Topics deleted from the cluster: forgotten here, their files
        // removed on every shard.
        let gone: Vec<String> = self
            .meta
            .snapshot()
            .topics
            .keys()
            .filter(|name| !state.topics.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            let mut next = (*self.meta.snapshot()).clone();
            next.topics.remove(&name);
            if let Err(e) = self.meta.update(next) {
                tracing::error!(topic = %name, error = %e, "forgetting a deleted topic failed");
                continue;
            }
            self.opened.borrow_mut().retain(|(t, _)| t != &name);
            self.pushed.borrow_mut().retain(|(t, _), _| t != &name);
            self.remove_everywhere(&name).await;
            tracing::info!(topic = %name, "deleted topic removed");
        }
        // The roles, each sent to its owner shard when it changed.
        let snap = self.meta.snapshot();
        let mut per_shard: HashMap<u32, Vec<RoleUpdate>> = HashMap::new();
        for (name, t) in &state.topics {
            for (i, p) in t.partitions.iter().enumerate() {
                if !p.replicas.contains(&me) || !self.opened.borrow().contains(&(name.clone(), i as u32)) {
                    continue;
                }
                let Some(owner) = snap.owner(name, i as u32) else {
                    continue;
                };
                let leader_addr = p
                    .leader
                    .filter(|&l| l != me)
                    .and_then(|l| state.brokers.get(&l))
                    .map(|b| b.endpoints.cluster.clone());
                let update = RoleUpdate {
                    topic: name.clone(),
                    partition: i as u32,
                    state: p.clone(),
                    min_insync: t.min_insync_replicas,
                    leader_addr,
                };
                let key = (name.clone(), i as u32);
                if self.pushed.borrow().get(&key) == Some(&update) {
                    continue;
                }
                self.pushed.borrow_mut().insert(key, update.clone());
                per_shard.entry(owner).or_default().push(update);
            }
        }
        for (shard, updates) in per_shard {
            if shard as usize == self.id {
                self.apply_roles(updates);
            } else if self
                .call(shard, |reply| ShardMsg::Roles { updates, reply })
                .await
                .is_none()
            {
                tracing::error!(shard, "a shard did not take its partitions' roles");
            }
        }
    }

    /// On the owner shard: takes the controller's word on partitions and
    /// starts what their new roles need (leader duties, fetchers).
    pub(super) fn apply_roles(self: &Rc<Self>, updates: Vec<RoleUpdate>) {
        for u in updates {
            let Some(part) = self.partition(&u.topic, u.partition) else {
                continue;
            };
            let change = part.apply_role(&u);
            if u.topic == crate::group::offsets::OFFSETS_TOPIC && change != RoleChange::Kept {
                self.groups.forget_partition(u.partition);
            }
            match change {
                RoleChange::Kept | RoleChange::Idle => {}
                RoleChange::Leading { generation } => {
                    glommio::spawn_local(self.clone().leader_duties(part.clone(), generation)).detach();
                }
                RoleChange::Following { leader, addr } => self.follow(&u.topic, u.partition, leader, addr),
            }
        }
    }

    /// A leader's timed duties while its leadership lasts.
    async fn leader_duties(self: Rc<Self>, part: Rc<Partition>, generation: u64) {
        let lag_max_ms = self.config.replica_lag_time_max_ms as i64;
        let mut resigned_at: Option<Instant> = None;
        loop {
            glommio::timer::sleep(LEADER_TICK).await;
            match part.leader_tick(generation, lag_max_ms) {
                None => return,
                Some(None) => {}
                Some(Some(alter)) => self.send_alter(&part.topic, part.index, alter),
            }
            // A leader whose log failed cannot take writes: it hands over
            // to another in-sync replica (asked again until the role ends).
            if let Some((epoch, why)) = part.failed_leadership(generation) {
                if resigned_at.is_none_or(|t| t.elapsed() >= RESIGN_AGAIN_AFTER) {
                    resigned_at = Some(Instant::now());
                    self.resign(&part.topic, part.index, epoch, &why);
                }
            }
        }
    }

    /// Proposes that another in-sync replica lead the partition instead of
    /// this node, whose log for it failed.
    fn resign(self: &Rc<Self>, topic: &str, partition: u32, leader_epoch: Epoch, why: &str) {
        let Some(me) = self.me() else {
            return;
        };
        tracing::warn!(
            topic,
            partition,
            reason = why,
            "the log failed; handing the leadership over"
        );
        let cmd = Command::ResignLeader {
            topic: topic.to_string(),
            partition,
            leader: me,
            leader_epoch,
        };
        let shard = self.clone();
        glommio::spawn_local(async move {
            if let Err(e) = shard.propose(cmd).await {
                tracing::warn!(error = %e, "the leadership was not handed over");
            }
        })
        .detach();
    }

    /// Sends an ISR change to the controller; the answer comes back as a
    /// role update once applied (or the change is sent again).
    pub(super) fn send_alter(self: &Rc<Self>, topic: &str, partition: u32, alter: AlterIsr) {
        tracing::info!(topic, partition, isr = ?alter.isr, "proposing an ISR change");
        let cmd = Command::AlterPartition {
            topic: topic.to_string(),
            partition,
            leader: alter.leader,
            leader_epoch: alter.leader_epoch,
            partition_epoch: alter.partition_epoch,
            isr: alter.isr,
        };
        let shard = self.clone();
        glommio::spawn_local(async move {
            if let Err(e) = shard.propose(cmd).await {
                tracing::info!(error = %e, "an ISR change was not made");
            }
        })
        .detach();
    }

    /// Proposes a metadata command through the controller quorum and waits
    /// for its outcome (bounded).
    pub async fn propose(self: &Rc<Self>, cmd: Command) -> Answer {
        if self.id != 0 {
            return self
                .call(0, |reply| ShardMsg::Propose { cmd, reply })
                .await
                .unwrap_or_else(|| Err(ProposeError::Failed("shard 0 did not answer".into())));
        }
        let Some(cluster) = self.cluster.borrow().clone() else {
            return Err(ProposeError::Failed("not in cluster mode".into()));
        };
        // Lost to a change of controller (or none elected yet): propose
        // again until the deadline. A command applied whose answer was
        // lost is then applied as a no-op or refused as a duplicate.
        let deadline = Instant::now() + PROPOSE_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match crate::cluster::runtime::propose_and_wait(&cluster, &cmd, left).await {
                Err(ProposeError::Retry(m)) if Instant::now() + RETRY_PAUSE < deadline => {
                    tracing::debug!(error = %m, "proposing again");
                    glommio::timer::sleep(RETRY_PAUSE).await;
                }
                answer => return answer,
            }
        }
    }

    /// The replication lines of the partitions this shard leads.
    pub(super) fn replication_report_local(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .partitions()
            .iter()
            .filter_map(|p| p.replication_report())
            .collect();
        lines.sort();
        lines
    }

    /// The replication lines of every partition this node leads (all
    /// shards), for `GET /cluster`.
    pub async fn replication_report(self: &Rc<Self>) -> Vec<String> {
        let mut lines = self.replication_report_local();
        for shard in 0..self.config.shards as u32 {
            if shard as usize != self.id {
                let more = self.call(shard, |reply| ShardMsg::ReplicationReport { reply }).await;
                lines.extend(more.unwrap_or_default());
            }
        }
        lines.sort();
        lines
    }

    /// Adds a followed partition to this shard's fetcher from `leader`,
    /// starting the fetcher if there is none. A fetcher runs exactly while
    /// it is in `fetchers`: its loop removes it when it stops.
    fn follow(self: &Rc<Self>, topic: &str, partition: u32, leader: NodeId, addr: String) {
        let existing = self.fetchers.borrow().get(&leader).cloned();
        let (fetcher, new) = match existing {
            Some(f) => (f, false),
            None => (Rc::new(Fetcher::default()), true),
        };
        if !addr.is_empty() {
            *fetcher.addr.borrow_mut() = addr;
        }
        fetcher.partitions.borrow_mut().insert((topic.to_string(), partition));
        fetcher.joined.set(fetcher.joined.get() + 1);
        if new {
            // Only now: the task may run at once, and a fetcher that finds
            // no partition stops.
            self.fetchers.borrow_mut().insert(leader, fetcher.clone());
            glommio::spawn_local(self.clone().fetcher_loop(leader, fetcher)).detach();
        }
    }

    /// The next request of a fetcher, dropping the partitions that no
    /// longer follow `leader`; `None` (and the fetcher is forgotten) once
    /// none does.
    fn next_fetch(&self, leader: NodeId, fetcher: &Rc<Fetcher>) -> Option<(FetchRequest, Vec<Rc<Partition>>)> {
        let me = self.me()?;
        let mut parts = Vec::new();
        let mut items = Vec::new();
        fetcher.partitions.borrow_mut().retain(|(topic, p)| {
            let Some(part) = self.partition(topic, *p) else {
                return false;
            };
            match part.follower_fetch(leader) {
                Some(item) => {
                    items.push(item);
                    parts.push(part);
                    true
                }
                None => false,
            }
        });
        if items.is_empty() {
            let mut fetchers = self.fetchers.borrow_mut();
            if fetchers.get(&leader).is_some_and(|f| Rc::ptr_eq(f, fetcher)) {
                fetchers.remove(&leader);
            }
            return None;
        }
        Some((
            FetchRequest {
                replica: me,
                max_wait_ms: FETCH_MAX_WAIT_MS,
                max_bytes: FETCH_BYTES_MAX,
                partitions: items,
            },
            parts,
        ))
    }

    /// One fetcher: keeps a connection to the leader and fetches for all
    /// its partitions, until none follows that leader any more.
    async fn fetcher_loop(self: Rc<Self>, leader: NodeId, fetcher: Rc<Fetcher>) {
        let Some(view) = self.view.clone() else {
            return;
        };
        let mut backoff = Backoff::new();
        loop {
            if self.next_fetch(leader, &fetcher).is_none() {
                return;
            }
            let addr = fetcher.addr.borrow().clone();
            let mut stream = match handshake::dial(&addr, &view.hello(fetch::KIND_HELLO_FETCH)).await {
                Ok((stream, Greeting::Welcome { .. })) => stream,
                Ok((_, Greeting::Refused { reason, .. })) => {
                    tracing::warn!(leader, %addr, %reason, "the leader refused this fetcher");
                    backoff.wait(Duration::from_secs(1), Duration::from_secs(5)).await;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(leader, %addr, error = %e, "could not reach the leader");
                    backoff.wait(Duration::ZERO, Duration::from_secs(1)).await;
                    continue;
                }
            };
            tracing::debug!(leader, %addr, "fetcher connected");
            backoff.reset();
            loop {
                let Some((req, parts)) = self.next_fetch(leader, &fetcher) else {
                    return;
                };
                if stream.write_all(&req.encode()).await.is_err() {
                    break;
                }
                let answer = glommio::timer::timeout(ANSWER_TIMEOUT, async {
                    Ok(read_frame(&mut stream, ANSWER_BYTES_MAX).await)
                })
                .await;
                let parsed = match answer {
                    Ok(Ok((fetch::KIND_FETCHED, b))) => fetch::decode_answer(b),
                    Ok(Ok((kind, _))) => Err(format!("unexpected frame kind {kind}")),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err("no answer in time".into()),
                };
                let answers = match parsed {
                    Ok(a) if a.len() == parts.len() => a,
                    Ok(_) => {
                        tracing::warn!(leader, "a fetch answer for other partitions; reconnecting");
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(leader, error = %e, "fetch failed; reconnecting");
                        break;
                    }
                };
                let mut errors = 0;
                for ((part, a), asked) in parts.iter().zip(answers).zip(&req.partitions) {
                    if a.topic != part.topic || a.partition != part.index {
                        errors += 1;
                        continue;
                    }
                    if let Err(e) = part.apply_fetched(leader, asked.leader_epoch, a.fetched).await {
                        tracing::debug!(topic = %part.topic, partition = part.index, error = %e, "replica fetch");
                        errors += 1;
                    }
                }
                if errors == parts.len() {
                    // Nothing moved (e.g. the leader does not know its new
                    // role yet): wait for a role update or a moment.
                    let joined = fetcher.joined.get();
                    let _ = glommio::timer::timeout(Duration::from_millis(100), async {
                        fetcher.joined.wait_for(joined + 1).await;
                        Ok(())
                    })
                    .await;
                }
            }
            backoff.wait(Duration::ZERO, Duration::from_secs(1)).await;
        }
    }

    /// Shard 0, leader side: answers a follower's fetch, asking each
    /// partition's owner shard, and waits (up to the request's max wait)
    /// while nothing is new for the follower.
    pub async fn serve_replica_fetch(self: &Rc<Self>, req: FetchRequest) -> Vec<FetchedPartition> {
        let deadline = Instant::now() + Duration::from_millis(u64::from(req.max_wait_ms.min(5_000)));
        let snap = self.meta.snapshot();
        let mut by_shard: HashMap<u32, Vec<usize>> = HashMap::new();
        let mut out: Vec<Option<Fetched>> = vec![None; req.partitions.len()];
        for (i, p) in req.partitions.iter().enumerate() {
            match snap.owner(&p.topic, p.partition) {
                Some(s) => by_shard.entry(s).or_default().push(i),
                None => out[i] = Some(Fetched::Error(self.absent(&p.topic, p.partition))),
            }
        }
        let req = Rc::new(req);
        loop {
            let mut tasks = Vec::new();
            for (&shard, idx) in &by_shard {
                let items: Vec<FetchPartition> = idx.iter().map(|&i| req.partitions[i].clone()).collect();
                let (me, replica) = (self.clone(), req.replica);
                tasks.push((
                    idx.clone(),
                    glommio::spawn_local(async move {
                        if shard as usize == me.id {
                            me.replica_fetch_local(replica, items).await
                        } else {
                            let n = items.len();
                            me.call(shard, |reply| ShardMsg::ReplicaFetch { replica, items, reply })
                                .await
                                .unwrap_or_else(|| vec![Fetched::Error(ErrorCode::Unknown); n])
                        }
                    }),
                ));
            }
            for (idx, task) in tasks {
                for (i, f) in idx.into_iter().zip(task.await) {
                    out[i] = Some(f);
                }
            }
            let news = out
                .iter()
                .zip(&req.partitions)
                .any(|(f, p)| f.as_ref().is_none_or(|f| f.is_news(p.high_watermark)));
            if news || Instant::now() >= deadline {
                break;
            }
            // Nothing new anywhere: wait for the first partition that has.
            let mut waits = Vec::new();
            for (&shard, idx) in &by_shard {
                let items: Vec<(String, u32, i64, i64)> = idx
                    .iter()
                    .map(|&i| {
                        let p = &req.partitions[i];
                        (p.topic.clone(), p.partition, p.fetch_offset, p.high_watermark)
                    })
                    .collect();
                let me = self.clone();
                waits.push(async move {
                    if shard as usize == me.id {
                        me.wait_replica_news(items, deadline).await;
                    } else {
                        let _ = me
                            .call(shard, |reply| ShardMsg::ReplicaWait { items, deadline, reply })
                            .await;
                    }
                });
            }
            first_of(waits, deadline).await;
        }
        // Bound the answer: whole batches, the first always.
        let mut budget = ByteBudget::new(req.max_bytes as usize);
        let mut answer = Vec::with_capacity(out.len());
        for (f, p) in out.into_iter().zip(req.partitions.iter()) {
            let mut f = f.unwrap_or(Fetched::Error(ErrorCode::Unknown));
            if let Fetched::Records { batches, .. } = &mut f {
                budget.keep(batches);
            }
            answer.push(FetchedPartition {
                topic: p.topic.clone(),
                partition: p.partition,
                fetched: f,
            });
        }
        answer
    }

    /// On the owner shard: one read for each of a follower's partitions.
    pub(super) async fn replica_fetch_local(
        self: &Rc<Self>,
        replica: NodeId,
        items: Vec<FetchPartition>,
    ) -> Vec<Fetched> {
        let mut out = Vec::with_capacity(items.len());
        for f in &items {
            let Some(part) = self.partition(&f.topic, f.partition) else {
                out.push(Fetched::Error(self.absent(&f.topic, f.partition)));
                continue;
            };
            let (fetched, alter) = part.serve_replica(replica, f, FETCH_PARTITION_BYTES_MAX).await;
            if let Some(alter) = alter {
                self.send_alter(&f.topic, f.partition, alter);
            }
            out.push(fetched);
        }
        out
    }

    /// On the owner shard: waits until any of the partitions has news for
    /// its follower, or `deadline`.
    pub(super) async fn wait_replica_news(self: &Rc<Self>, items: Vec<(String, u32, i64, i64)>, deadline: Instant) {
        let mut waits = Vec::new();
        for (topic, p, offset, hw) in items {
            let Some(part) = self.partition(&topic, p) else {
                return;
            };
            waits.push(async move { part.wait_for_replica_news(offset, hw, deadline).await });
        }
        first_of(waits, deadline).await;
    }

    /// Cluster mode: deletes topics through the controller quorum; every
    /// node removes its replicas once it applies the deletion.
    pub(super) async fn delete_topics_in_cluster(self: &Rc<Self>, names: Vec<String>) -> Vec<crate::api::TopicResult> {
        use crate::api::TopicResult;
        let mut results = Vec::with_capacity(names.len());
        for name in names {
            let result = |error, message: String| TopicResult {
                name: name.clone(),
                error,
                message,
            };
            if let Err((error, m)) = super::metadata::check_deletable(&name) {
                results.push(result(error, m));
                continue;
            }
            let known = self
                .view
                .as_ref()
                .is_some_and(|v| v.snapshot().topics.contains_key(&name));
            if !known {
                results.push(result(ErrorCode::UnknownTopicOrPartition, format!("no topic {name}")));
                continue;
            }
            let cmd = Command::DeleteTopic { name: name.clone() };
            results.push(match self.propose(cmd).await {
                Ok(_) => result(ErrorCode::None, String::new()),
                Err(e) => result(e.code(), e.to_string()),
            });
        }
        results
    }

    /// Cluster mode: creates topics through the controller quorum, their
    /// replicas placed as Kafka places them over the live brokers.
    pub(super) async fn create_topics_in_cluster(
        self: &Rc<Self>,
        topics: Vec<crate::api::NewTopic>,
    ) -> Vec<crate::api::TopicResult> {
        use crate::api::TopicResult;
        let mut results = Vec::with_capacity(topics.len());
        for nt in topics {
            let result = |error, message: String| TopicResult {
                name: nt.name.clone(),
                error,
                message,
            };
            if let Err((error, m)) = super::metadata::check_new_topic(&nt) {
                results.push(result(error, m));
                continue;
            }
            let state = match &self.view {
                Some(v) => v.snapshot(),
                None => return results,
            };
            if state.topics.contains_key(&nt.name) {
                results.push(result(
                    ErrorCode::TopicAlreadyExists,
                    format!("topic {} already exists", nt.name),
                ));
                continue;
            }
            let live = state.live();
            let rf = match nt.replication.factor {
                Some(rf) => usize::from(rf),
                None => self.config.default_replication_factor.min(live.len().max(1)),
            };
            if rf == 0 || rf > live.len() {
                results.push(result(
                    ErrorCode::InvalidReplicationFactor,
                    format!(
                        "replication factor {rf} needs as many live brokers; {} are live",
                        live.len()
                    ),
                ));
                continue;
            }
            let min_insync = nt
                .replication
                .min_insync
                .unwrap_or(self.config.default_min_insync_replicas);
            if min_insync == 0 || usize::from(min_insync) > rf {
                results.push(result(
                    ErrorCode::InvalidConfig,
                    format!("min.insync.replicas must be 1..={rf}, not {min_insync}"),
                ));
                continue;
            }
            let assignment = match placement::assign(&live, 0, nt.partitions, rf, placement::start_offset(&nt.name)) {
                Ok(a) => a,
                Err(e) => {
                    results.push(result(ErrorCode::InvalidReplicationFactor, e.to_string()));
                    continue;
                }
            };
            let cmd = Command::CreateTopic {
                name: nt.name.clone(),
                min_insync_replicas: min_insync,
                assignment,
                config: (&nt.config).into(),
            };
            results.push(match self.propose(cmd).await {
                Ok(_) => result(ErrorCode::None, String::new()),
                Err(e) => result(e.code(), e.to_string()),
            });
        }
        results
    }

    /// Cluster mode: adds partitions through the controller quorum (Kafka's
    /// CreatePartitions): placed like a new topic's, continuing its
    /// pattern, with the replication factor of its first partition.
    pub(super) async fn create_partitions_in_cluster(
        self: &Rc<Self>,
        topics: Vec<crate::api::NewPartitions>,
        validate_only: bool,
    ) -> Vec<crate::api::TopicResult> {
        use crate::api::TopicResult;
        let Some(view) = self.view.clone() else {
            return Vec::new();
        };
        let mut results = Vec::with_capacity(topics.len());
        for np in topics {
            let result = |error, message: String| TopicResult {
                name: np.name.clone(),
                error,
                message,
            };
            if np.name == crate::group::offsets::OFFSETS_TOPIC {
                let m = format!("{} is internal: its partition count is fixed", np.name);
                results.push(result(ErrorCode::InvalidTopic, m));
                continue;
            }
            let state = view.snapshot();
            let Some(t) = state.topics.get(&np.name) else {
                results.push(result(
                    ErrorCode::UnknownTopicOrPartition,
                    format!("no topic {}", np.name),
                ));
                continue;
            };
            let has = t.partitions.len() as u32;
            if np.count <= has || np.count > super::metadata::PARTITIONS_MAX {
                results.push(result(
                    ErrorCode::InvalidPartitions,
                    format!(
                        "topic {} has {has} partitions; the new count {} must be larger, and at most {}",
                        np.name,
                        np.count,
                        super::metadata::PARTITIONS_MAX
                    ),
                ));
                continue;
            }
            let rf = t
                .partitions
                .first()
                .map_or(1, |p| p.target.as_ref().map_or(p.replicas.len(), Vec::len));
            let live = state.live();
            let assignment = match placement::assign(&live, has, np.count - has, rf, placement::start_offset(&np.name))
            {
                Ok(a) => a,
                Err(e) => {
                    results.push(result(
                        ErrorCode::InvalidReplicationFactor,
                        format!("{e} ({} live brokers)", live.len()),
                    ));
                    continue;
                }
            };
            if validate_only {
                results.push(result(ErrorCode::None, String::new()));
                continue;
            }
            let cmd = Command::AddPartitions {
                topic: np.name.clone(),
                from: has,
                assignment,
            };
            let outcome = self.propose(cmd).await;
            // A proposal retried after a change of controller may find its
            // first attempt applied.
            let grown = view
                .snapshot()
                .topics
                .get(&np.name)
                .is_some_and(|t| t.partitions.len() as u32 == np.count);
            results.push(match outcome {
                Ok(_) => result(ErrorCode::None, String::new()),
                Err(_) if grown => result(ErrorCode::None, String::new()),
                Err(e) => result(e.code(), e.to_string()),
            });
        }
        results
    }
}

impl Shard {
    /// Cluster administration from the Kafka wire: reassignments.
    pub async fn cluster_admin(self: &Rc<Self>, op: crate::api::ClusterAdmin) -> crate::api::ClusterAdminAnswer {
        use crate::api::{ClusterAdmin, ClusterAdminAnswer, OngoingReassignment, PartitionResult};
        let Some(view) = self.view.clone() else {
            return ClusterAdminAnswer::Refused(
                ErrorCode::InvalidRequest,
                "partition reassignment needs cluster mode".into(),
            );
        };
        match op {
            ClusterAdmin::Reassign(moves) => {
                let mut results = Vec::with_capacity(moves.len());
                for (topic, partition, replicas) in moves {
                    let cmd = match replicas {
                        None => Command::CancelReassignment {
                            topic: topic.clone(),
                            partition,
                        },
                        Some(replicas) => Command::ReassignPartition {
                            topic: topic.clone(),
                            partition,
                            replicas,
                        },
                    };
                    let (error, message) = match self.propose(cmd).await {
                        Ok(_) => (ErrorCode::None, String::new()),
                        Err(e) => (e.code(), e.to_string()),
                    };
                    results.push(PartitionResult {
                        topic,
                        partition,
                        error,
                        message,
                    });
                }
                ClusterAdminAnswer::Reassign(results)
            }
            ClusterAdmin::ListReassignments(wanted) => {
                let state = view.snapshot();
                let mut out = Vec::new();
                for (name, t) in &state.topics {
                    for (i, p) in t.partitions.iter().enumerate() {
                        let asked = wanted
                            .as_ref()
                            .is_none_or(|w| w.iter().any(|(wt, wp)| wt == name && *wp == i as u32));
                        let Some(target) = p.target.as_ref().filter(|_| asked) else {
                            continue;
                        };
                        out.push(OngoingReassignment {
                            topic: name.clone(),
                            partition: i as u32,
                            replicas: p.replicas.clone(),
                            adding: p.adding.clone(),
                            removing: p.replicas.iter().copied().filter(|r| !target.contains(r)).collect(),
                        });
                    }
                }
                ClusterAdminAnswer::Reassignments(out)
            }
        }
    }

    /// Cluster mode: Metadata from the applied cluster state: every live
    /// broker, and each partition's leader, replicas and ISR. Offsets are
    /// filled in for the partitions this node leads.
    pub(super) async fn cluster_metadata(self: &Rc<Self>, wanted: Option<Vec<String>>) -> crate::api::Response {
        use crate::api::{BrokerInfo, PartitionInfo, TopicInfo};
        let Some(view) = &self.view else {
            return crate::api::Response::Metadata {
                brokers: Vec::new(),
                topics: Vec::new(),
            };
        };
        let state = view.snapshot();
        let brokers = state
            .brokers
            .iter()
            .filter(|(_, b)| !b.fenced)
            .filter_map(|(&id, b)| {
                let (host, port) = crate::config::parse_host_port(&b.endpoints.native).ok()?;
                Some(BrokerInfo {
                    node_id: id as i32,
                    host,
                    port,
                    kafka: b.endpoints.kafka.clone(),
                })
            })
            .collect();
        let names: Vec<String> = wanted.unwrap_or_else(|| state.topics.keys().cloned().collect());
        let snap = self.meta.snapshot();
        let mut topics = Vec::with_capacity(names.len());
        for name in names {
            let Some(t) = state.topics.get(&name) else {
                topics.push(TopicInfo::unknown(name));
                continue;
            };
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for (i, p) in t.partitions.iter().enumerate() {
                let i = i as u32;
                let local = match (p.leader, snap.owner(&name, i)) {
                    (Some(l), Some(owner)) if l == view.me() => self.state_of(&name, i, owner).await,
                    _ => None,
                };
                let (log_start_offset, high_watermark) = local.unwrap_or((-1, -1));
                partitions.push(PartitionInfo {
                    partition: i,
                    error: if p.leader.is_some() {
                        ErrorCode::None
                    } else {
                        ErrorCode::LeaderNotAvailable
                    },
                    leader: p.leader.map_or(-1, |l| l as i32),
                    // The leader's shards are its own business: clients use
                    // its shared port.
                    shard: 0,
                    shard_port: 0,
                    log_start_offset,
                    high_watermark,
                    replicas: p.replicas.iter().map(|&r| r as i32).collect(),
                    isr: p.isr.iter().map(|&r| r as i32).collect(),
                });
            }
            topics.push(TopicInfo {
                name,
                error: ErrorCode::None,
                partitions,
                config: t.config.to_config().unwrap_or_default(),
            });
        }
        crate::api::Response::Metadata { brokers, topics }
    }
}
