//! `Consumer`: reads assigned partitions from their owners.
//!
//! Each assigned partition has a position (the next offset to read). A
//! poll keeps at most one fetch in flight per endpoint (the owning shard's
//! port), asking for every assigned partition that endpoint owns; the
//! broker long-polls up to `fetch_max_wait` for `fetch_min_bytes`. A poll
//! returns as soon as a fetch brings records, or empty at its timeout.
//! Fetches outlive a poll that timed out: the next poll picks up their
//! answers.
//!
//! A fetch's bytes are kept undecoded ([`PartitionCursor`]) and a poll
//! decodes at most `max_poll_records` of them; a partition with bytes left
//! is not fetched again until they are read.
//!
//! Invariants:
//! - Records of a partition come out in offset order, each once per
//!   position: fetched data is used only while the partition's position
//!   still equals where that data continues (a seek in between discards it).
//! - A partition without a position gets one from ListOffsets per
//!   `ConsumerConfig::reset` before it is fetched; `OffsetOutOfRange`
//!   resets it the same way.
//! - Fetches in flight are bounded by `FETCHES_INFLIGHT_MAX`; a batch
//!   larger than the partition's fetch size doubles that size (up to
//!   `fetch_max_bytes`) instead of stalling.
//!
//! Shard: runs on the executor that created it; `!Send`.
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::cluster::unexpected;
use super::fetched::{ConsumedRecord, DecodeLimits, PartitionCursor};
use super::metadata::Endpoint;
use super::notify::{timeout, Notify};
use super::{Client, ClientError, ConsumerConfig, OffsetReset};
use crate::api::{ErrorCode, FetchPartition, FetchPartitionResponse, FetchTopic, OffsetSpec, Request, Response};

/// Fetch requests in flight at once, over all endpoints.
const FETCHES_INFLIGHT_MAX: usize = 64;

/// Where `seek` moves a partition's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// The log start offset.
    Earliest,
    /// The high watermark (only records produced from now on).
    Latest,
    /// This offset.
    Offset(i64),
    /// The first record with a timestamp at or after this (ms); the high
    /// watermark if there is none.
    Timestamp(i64),
}

#[derive(Debug, Clone)]
struct PartitionState {
    /// The next offset to read; `None` until reset.
    position: Option<i64>,
    high_watermark: Option<i64>,
    log_start_offset: Option<i64>,
    /// Bytes asked for this partition per fetch.
    fetch_bytes: u32,
}

/// One partition a fetch asked for, from which offset.
#[derive(Debug, Clone)]
struct Asked {
    topic: Rc<str>,
    partition: u32,
    offset: i64,
}

/// What a fetch asked for, and what came back.
struct FetchDone {
    endpoint: Endpoint,
    asked: Vec<Asked>,
    result: Result<Response, ClientError>,
}

/// Answers of finished fetches, bounded by the fetches in flight.
#[derive(Default)]
struct Inbox {
    done: RefCell<VecDeque<FetchDone>>,
    arrived: Notify,
}

/// Reads records from assigned partitions.
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    assigned: BTreeMap<(Rc<str>, u32), PartitionState>,
    inbox: Rc<Inbox>,
    fetching: HashSet<Endpoint>,
    /// Metadata looked stale (a partition moved, an endpoint failed).
    stale: bool,
    /// No new fetch to a failed endpoint before this.
    retry_at: HashMap<Endpoint, Instant>,
    failures: u32,
    /// A failure to report once the records read before it are returned.
    error: Option<ClientError>,
    /// Fetched bytes not yet turned into records, at most one per partition.
    buffered: VecDeque<PartitionCursor>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("assigned", &self.assigned.len())
            .finish()
    }
}

impl Consumer {
    /// A consumer reading through `client`, with nothing assigned.
    pub fn new(client: Client, config: ConsumerConfig) -> Consumer {
        Consumer {
            client,
            config,
            assigned: BTreeMap::new(),
            inbox: Rc::new(Inbox::default()),
            fetching: HashSet::new(),
            stale: false,
            retry_at: HashMap::new(),
            failures: 0,
            error: None,
            buffered: VecDeque::new(),
        }
    }

    /// Adds `topic`'s `partitions` to the assignment (already assigned ones
    /// keep their position). New ones start per `ConsumerConfig::reset`
    /// unless sought.
    pub fn assign(&mut self, topic: &str, partitions: &[u32]) {
        let topic: Rc<str> = self
            .assigned
            .keys()
            .find(|(t, _)| &**t == topic)
            .map_or_else(|| Rc::from(topic), |(t, _)| t.clone());
        for &p in partitions {
            self.assigned.entry((topic.clone(), p)).or_insert(PartitionState {
                position: None,
                high_watermark: None,
                log_start_offset: None,
                fetch_bytes: self.config.partition_fetch_bytes.max(1),
            });
        }
    }

    /// Assigns every partition of `topic` (from metadata).
    pub async fn assign_all(&mut self, topic: &str) -> Result<u32, ClientError> {
        let n = self.client.partition_count(topic).await?;
        self.assign(topic, &(0..n).collect::<Vec<_>>());
        Ok(n)
    }

    /// Removes partitions from the assignment.
    pub fn unassign(&mut self, topic: &str, partitions: &[u32]) {
        self.assigned
            .retain(|(t, p), _| !(&**t == topic && partitions.contains(p)));
    }

    /// The assigned partitions, by topic.
    pub fn assignment(&self) -> Vec<(String, u32)> {
        self.assigned.keys().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    fn state_mut(&mut self, topic: &str, partition: u32) -> Result<&mut PartitionState, ClientError> {
        self.assigned
            .iter_mut()
            .find(|((t, p), _)| &**t == topic && *p == partition)
            .map(|(_, s)| s)
            .ok_or_else(|| ClientError::Invalid(format!("{topic}/{partition} is not assigned")))
    }

    fn state(&self, topic: &str, partition: u32) -> Option<&PartitionState> {
        self.assigned
            .iter()
            .find(|((t, p), _)| &**t == topic && *p == partition)
            .map(|(_, s)| s)
    }

    /// Moves an assigned partition's position. Earliest, Latest and
    /// Timestamp ask the partition's owner (ListOffsets).
    pub async fn seek(&mut self, topic: &str, partition: u32, to: SeekTo) -> Result<(), ClientError> {
        self.state_mut(topic, partition)?;
        let offset = match to {
            SeekTo::Offset(o) if o >= 0 => o,
            SeekTo::Offset(o) => return Err(ClientError::Invalid(format!("offset {o} is negative"))),
            SeekTo::Earliest => self.offset_of(topic, partition, OffsetSpec::Earliest).await?,
            SeekTo::Latest => self.offset_of(topic, partition, OffsetSpec::Latest).await?,
            SeekTo::Timestamp(ts) => match self.offset_of(topic, partition, OffsetSpec::Timestamp(ts)).await? {
                -1 => self.offset_of(topic, partition, OffsetSpec::Latest).await?,
                o => o,
            },
        };
        self.state_mut(topic, partition)?.position = Some(offset);
        Ok(())
    }

    /// The next offset `poll` reads from the partition (`None`: not yet
    /// known, or not assigned).
    pub fn position(&self, topic: &str, partition: u32) -> Option<i64> {
        self.state(topic, partition)?.position
    }

    /// The partition's high watermark as the last fetch reported it.
    pub fn high_watermark(&self, topic: &str, partition: u32) -> Option<i64> {
        self.state(topic, partition)?.high_watermark
    }

    /// The partition's log start offset as the last fetch reported it.
    pub fn log_start_offset(&self, topic: &str, partition: u32) -> Option<i64> {
        self.state(topic, partition)?.log_start_offset
    }

    /// The current high watermarks (end offsets) of `partitions`, asked
    /// from their owners now.
    pub async fn end_offsets(&self, topic: &str, partitions: &[u32]) -> Result<Vec<(u32, i64)>, ClientError> {
        let specs: Vec<(u32, OffsetSpec)> = partitions.iter().map(|&p| (p, OffsetSpec::Latest)).collect();
        let answers = self.client.list_offsets(topic, &specs).await?;
        answers
            .into_iter()
            .map(|(p, r)| {
                r.map(|o| (p, o))
                    .map_err(|code| ClientError::broker(code, format!("end offset of {topic}/{p}")))
            })
            .collect()
    }

    async fn offset_of(&self, topic: &str, partition: u32, spec: OffsetSpec) -> Result<i64, ClientError> {
        let mut attempt = 0;
        loop {
            let answer = self
                .client
                .list_offsets(topic, &[(partition, spec)])
                .await
                .and_then(|a| match a.first() {
                    Some((_, Ok(o))) => Ok(*o),
                    Some((_, Err(code))) => Err(ClientError::broker(*code, format!("offsets of {topic}/{partition}"))),
                    None => Err(ClientError::Invalid("ListOffsets answered nothing".into())),
                });
            match answer {
                Err(e) if e.is_retriable() && attempt < self.client.config().retries_max => {
                    attempt += 1;
                    if e.wants_metadata_refresh() {
                        self.client.forget_topic(topic);
                    }
                    glommio::timer::sleep(self.client.config().backoff(attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// Records from the assigned partitions: returns as soon as a fetch
    /// brings some, or empty after `limit`. Fails on errors that retrying
    /// cannot fix (a corrupt batch, a protocol error, a deleted topic).
    pub async fn poll(&mut self, limit: Duration) -> Result<Vec<ConsumedRecord>, ClientError> {
        let deadline = Instant::now() + limit;
        if self.assigned.is_empty() {
            glommio::timer::sleep(limit).await;
            return Ok(Vec::new());
        }
        loop {
            if self.stale {
                self.stale = false;
                let topics: Vec<String> = self.topics();
                if let Err(e) = self.client.refresh_metadata(Some(topics)).await {
                    tracing::debug!(error = %e, "metadata refresh failed");
                }
            }
            self.reset_positions().await?;
            let inbox = self.inbox.clone();
            let arrived = inbox.arrived.notified();
            while let Some(done) = self.take_done() {
                self.handle(done);
            }
            let records = self.drain_buffered();
            self.start_fetches();
            if !records.is_empty() {
                return Ok(records);
            }
            if let Some(e) = self.error.take() {
                return Err(e);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(records);
            }
            // Wake for an answer, or within a back-off to retry failed endpoints.
            let unpositioned = self.assigned.values().any(|s| s.position.is_none());
            let nap = if self.retry_at.is_empty() && !self.stale && !unpositioned {
                left
            } else {
                left.min(self.client.config().retry_backoff)
            };
            let _ = timeout(nap, arrived).await;
        }
    }

    fn take_done(&self) -> Option<FetchDone> {
        self.inbox.done.borrow_mut().pop_front()
    }

    fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.assigned.keys().map(|(t, _)| t.to_string()).collect();
        topics.dedup();
        topics
    }

    /// Gives every partition without a position one, per `reset`.
    async fn reset_positions(&mut self) -> Result<(), ClientError> {
        let spec = match self.config.reset {
            OffsetReset::Earliest => OffsetSpec::Earliest,
            OffsetReset::Latest => OffsetSpec::Latest,
        };
        let mut missing: BTreeMap<Rc<str>, Vec<(u32, OffsetSpec)>> = BTreeMap::new();
        for ((t, p), s) in &self.assigned {
            if s.position.is_none() {
                missing.entry(t.clone()).or_default().push((*p, spec));
            }
        }
        for (topic, specs) in missing {
            let answers = match self.client.list_offsets(&topic, &specs).await {
                Ok(a) => a,
                Err(e) if e.is_retriable() => {
                    self.stale |= e.wants_metadata_refresh();
                    continue;
                }
                Err(e) => return Err(e),
            };
            for (p, answer) in answers {
                match answer {
                    Ok(offset) => {
                        if let Some(s) = self.assigned.get_mut(&(topic.clone(), p)) {
                            s.position = Some(offset);
                        }
                    }
                    Err(code) if code.is_retriable() => self.stale = true,
                    Err(code) => return Err(ClientError::broker(code, format!("resetting {topic}/{p}"))),
                }
            }
        }
        Ok(())
    }

    /// Starts a fetch on every endpoint that owns a positioned partition
    /// and has none in flight.
    fn start_fetches(&mut self) {
        let now = Instant::now();
        self.retry_at.retain(|_, at| *at > now);
        let mut by_endpoint: BTreeMap<Endpoint, Vec<FetchPartition>> = BTreeMap::new();
        let mut asked_of: BTreeMap<Endpoint, Vec<Asked>> = BTreeMap::new();
        for ((t, p), s) in &self.assigned {
            let Some(position) = s.position else { continue };
            if self.buffered.iter().any(|c| c.partition == *p && c.topic == *t) {
                continue; // read what is here first
            }
            match self.client.cached_endpoint(t, *p) {
                Some(e) if !self.fetching.contains(&e) && !self.retry_at.contains_key(&e) => {
                    let fp = FetchPartition {
                        partition: *p,
                        offset: position,
                        max_bytes: s.fetch_bytes,
                    };
                    by_endpoint.entry(e.clone()).or_default().push(fp);
                    asked_of.entry(e).or_default().push(Asked {
                        topic: t.clone(),
                        partition: *p,
                        offset: position,
                    });
                }
                Some(_) => {}
                None => self.stale = true,
            }
        }
        for (endpoint, parts) in by_endpoint {
            if self.fetching.len() >= FETCHES_INFLIGHT_MAX {
                break;
            }
            self.fetching.insert(endpoint.clone());
            let asked = asked_of.remove(&endpoint).unwrap_or_default();
            debug_assert_eq!(asked.len(), parts.len(), "one asked entry per fetched partition");
            let mut topics: Vec<FetchTopic> = Vec::new();
            for (a, fp) in asked.iter().zip(parts) {
                match topics.iter_mut().find(|ft| *ft.name == *a.topic) {
                    Some(ft) => ft.partitions.push(fp),
                    None => topics.push(FetchTopic {
                        name: a.topic.to_string(),
                        partitions: vec![fp],
                    }),
                }
            }
            let max_wait_ms = u32::try_from(self.config.fetch_max_wait.as_millis()).unwrap_or(u32::MAX);
            let req = Request::Fetch {
                max_wait_ms,
                min_bytes: self.config.fetch_min_bytes,
                max_bytes: self.config.fetch_max_bytes,
                topics,
            };
            let limit = self.client.config().request_timeout + self.config.fetch_max_wait;
            let (client, inbox) = (self.client.clone(), self.inbox.clone());
            glommio::spawn_local(async move {
                let result = client.send(&endpoint, req, Some(limit)).await;
                inbox.done.borrow_mut().push_back(FetchDone {
                    endpoint,
                    asked,
                    result,
                });
                inbox.arrived.notify_all();
            })
            .detach();
        }
    }

    /// Applies one fetch answer: buffers each partition's bytes, updates
    /// watermarks, resets and metadata staleness. An error that retrying
    /// cannot fix is kept for `poll` to report after the records read
    /// before it.
    fn handle(&mut self, done: FetchDone) {
        self.fetching.remove(&done.endpoint);
        let topics = match done.result {
            Ok(Response::Fetch { topics }) => topics,
            Ok(other) => {
                self.error.get_or_insert(unexpected("Fetch", &other));
                return;
            }
            Err(e) if e.is_retriable() => {
                self.failures = self.failures.saturating_add(1);
                tracing::debug!(endpoint = %done.endpoint, error = %e, "fetch failed; will retry");
                let pause = self.client.config().backoff(self.failures);
                self.retry_at.insert(done.endpoint, Instant::now() + pause);
                self.stale |= e.wants_metadata_refresh();
                return;
            }
            Err(e) => {
                self.error.get_or_insert(e);
                return;
            }
        };
        self.failures = 0;
        for ft in topics {
            for fp in ft.partitions {
                let asked = done
                    .asked
                    .iter()
                    .find(|a| *a.topic == *ft.name && a.partition == fp.partition);
                let Some(asked) = asked.cloned() else { continue };
                if let Err(e) = self.apply(asked, fp) {
                    self.error.get_or_insert(e);
                }
            }
        }
    }

    /// Takes in one partition's part of a fetch answer.
    fn apply(&mut self, asked: Asked, fp: FetchPartitionResponse) -> Result<(), ClientError> {
        let Some(state) = self.assigned.get_mut(&(asked.topic.clone(), asked.partition)) else {
            return Ok(()); // unassigned meanwhile
        };
        if state.position != Some(asked.offset) {
            return Ok(()); // sought elsewhere meanwhile
        }
        let (topic, partition) = (&asked.topic, asked.partition);
        match fp.error {
            ErrorCode::None => {}
            ErrorCode::OffsetOutOfRange => {
                tracing::info!(%topic, partition, offset = asked.offset, log_start = fp.log_start_offset,
                    high_watermark = fp.high_watermark, "offset out of range; resetting");
                state.position = None;
                return Ok(());
            }
            code if code.is_retriable() => {
                self.stale = true;
                return Ok(());
            }
            code => return Err(ClientError::broker(code, format!("fetching {topic}/{partition}"))),
        }
        state.high_watermark = Some(fp.high_watermark);
        state.log_start_offset = Some(fp.log_start_offset);
        if fp.records_bytes() > 0 {
            let limits = DecodeLimits {
                check_crcs: self.config.check_crcs,
                decompressed_bytes_max: self.config.decompressed_bytes_max,
            };
            let cursor = PartitionCursor::new(asked.topic, partition, asked.offset, fp.records, limits);
            self.buffered.push_back(cursor);
        }
        Ok(())
    }

    /// Decodes up to `max_poll_records` from the buffered fetches, moving
    /// positions along.
    fn drain_buffered(&mut self) -> Vec<ConsumedRecord> {
        let max = self.config.max_poll_records.max(1);
        let mut out = Vec::new();
        while out.len() < max {
            let Some(cursor) = self.buffered.front_mut() else { break };
            let key = (cursor.topic.clone(), cursor.partition);
            let Some(state) = self
                .assigned
                .get_mut(&key)
                .filter(|s| s.position == Some(cursor.position))
            else {
                self.buffered.pop_front(); // unassigned or sought elsewhere
                continue;
            };
            cursor.read(max - out.len(), &mut out);
            state.position = Some(cursor.position);
            if !cursor.is_done() {
                break; // `max` reached
            }
            let Some(cursor) = self.buffered.pop_front() else { break };
            if let Some(e) = cursor.error {
                self.error.get_or_insert(e);
            } else if cursor.truncated && !cursor.whole_batch_seen {
                // One batch is larger than this partition's fetch size.
                let fetch_bytes_max = self.config.fetch_max_bytes;
                if state.fetch_bytes >= fetch_bytes_max {
                    let size = state.fetch_bytes as usize;
                    self.error.get_or_insert(ClientError::RecordTooLarge {
                        size,
                        max: fetch_bytes_max as usize,
                    });
                } else {
                    state.fetch_bytes = state.fetch_bytes.saturating_mul(2).min(fetch_bytes_max);
                }
            }
        }
        out
    }
}
