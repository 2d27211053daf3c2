//! `Producer`: batches records per partition and sends them to each
//! partition's owner.
//!
//! `send` appends a record to its partition's open batch at once when the
//! producer has room and knows the topic, and returns a future of the
//! record's offset. A background sender task drains batches that are full,
//! have lingered `linger`, or are being flushed ([`super::accumulator`]),
//! groups them per endpoint into produce requests of at most
//! `request_bytes_max`, and spawns one task per request. Retriable failures
//! (transport errors, `ErrorCode::is_retriable`) are retried per batch with
//! exponential back-off, after a metadata refresh when the error says the
//! partition moved.
//!
//! Invariants:
//! - Bytes of records in batches, not yet acknowledged or failed, are
//!   bounded by `buffer_bytes_max`; sends beyond it wait for room (their
//!   records stay with their waiting tasks: await send futures, or
//!   `flush`, to bound how many pile up).
//! - Records are appended in the order `send` is called. A `send` that
//!   cannot append at once (no buffer room, topic not yet known) waits in a
//!   task of its own; while any send waits, every new one queues behind it
//!   (FIFO), so none overtakes another. A record is sent whether or not its
//!   future is polled; the future only reports the outcome.
//! - A partition has one request in flight at a time (the accumulator
//!   mutes it), so retries never reorder its records.
//! - Every record's future resolves: with its offset, with the error that
//!   ended its retries, or with `Closed` when the producer is dropped.
//!
//! Shard: runs on the executor that created it; `!Send`.
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;
use glommio::sync::Semaphore;
use glommio::task::JoinHandle;

use super::accumulator::{record_bytes_estimate, Accumulator, BatchPolicy, Drained, NewRecord};
use super::cluster::unexpected;
use super::metadata::Endpoint;
use super::notify::{timeout, Notify};
use super::partitioner::Partitioner;
use super::{Client, ClientError, ProducerConfig};
use crate::api::{Acks, ErrorCode, ProducePartition, ProduceTopic, Request, Response};
use crate::record::RecordHeader;

/// How much longer than the broker's produce timeout the client waits.
const PRODUCE_TIMEOUT_SLACK: Duration = Duration::from_secs(1);

/// Where a produced record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    pub partition: u32,
    /// The record's offset; -1 with acks 0 (the broker does not say).
    pub offset: i64,
}

/// What a produced record's outcome is reported to.
pub type DeliveryResult = Result<RecordMetadata, ClientError>;

/// Who hears a record's outcome: the future [`Producer::send`] returned,
/// or the callback given to [`Producer::send_with_callback`].
enum Delivery {
    Future(oneshot::Sender<DeliveryResult>),
    Callback(Box<dyn FnOnce(DeliveryResult)>),
}

impl Delivery {
    fn deliver(self, result: DeliveryResult) {
        match self {
            // The future may have been dropped; the record was sent anyway.
            Delivery::Future(tx) => {
                let _ = tx.send(result);
            }
            Delivery::Callback(f) => f(result),
        }
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Delivery::Future(_) => "Delivery::Future",
            Delivery::Callback(_) => "Delivery::Callback",
        })
    }
}

type Batch = Drained<Delivery>;

struct State {
    acc: Accumulator<Delivery>,
    partitioner: Partitioner,
}

struct Shared {
    client: Client,
    config: ProducerConfig,
    state: RefCell<State>,
    /// Bytes of records accepted and not yet acknowledged or failed.
    buffer: Rc<Semaphore>,
    /// Held by the one waiting `send` being admitted: FIFO among waiters.
    admission: Rc<Semaphore>,
    /// Wakes the sender task.
    wake: Notify,
    /// When the sender wakes by itself; `None` while it waits for `wake`.
    sender_deadline: Cell<Option<Instant>>,
    /// Signals that groups finished (flush waits on it).
    progress: Notify,
    flushing: Cell<usize>,
    closed: Cell<bool>,
    /// Sends that could not append at once and are not appended (or
    /// failed) yet. While any exists, new sends wait too: never overtake.
    waiting: Cell<usize>,
}

/// Counts one waiting send from its creation until it is appended, fails,
/// or its future is dropped.
struct WaitGuard(Rc<Shared>);

impl WaitGuard {
    fn new(shared: &Rc<Shared>) -> WaitGuard {
        shared.waiting.set(shared.waiting.get() + 1);
        WaitGuard(shared.clone())
    }
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.0.waiting.set(self.0.waiting.get() - 1);
        self.0.progress.notify_all();
    }
}

/// A batching, retrying producer. Dropping it fails records not yet
/// sent with `Closed`; call [`Producer::flush`] (or [`Producer::close`])
/// first.
pub struct Producer {
    shared: Rc<Shared>,
    sender: JoinHandle<()>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("records_queued", &self.shared.state.borrow().acc.records_queued())
            .finish()
    }
}

/// A `send` that could not append at once, holding its record.
struct Waiting {
    topic: String,
    /// When `send` was called: the record's timestamp.
    timestamp_ms: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<RecordHeader>,
}

impl Producer {
    /// A producer sending through `client`. Spawns its sender task on the
    /// current executor.
    pub fn new(client: Client, config: ProducerConfig) -> Producer {
        let policy = BatchPolicy {
            linger: config.linger,
            batch_bytes: config.batch_bytes.max(1),
            request_bytes_max: config.request_bytes_max.max(1),
            compression: config.compression,
        };
        let shared = Rc::new(Shared {
            client,
            buffer: Rc::new(Semaphore::new(config.buffer_bytes_max.max(1) as u64)),
            config,
            state: RefCell::new(State {
                acc: Accumulator::new(policy),
                partitioner: Partitioner::default(),
            }),
            admission: Rc::new(Semaphore::new(1)),
            wake: Notify::default(),
            sender_deadline: Cell::new(None),
            progress: Notify::default(),
            flushing: Cell::new(0),
            closed: Cell::new(false),
            waiting: Cell::new(0),
        });
        let sender = glommio::spawn_local(sender_loop(shared.clone())).detach();
        Producer { shared, sender }
    }

    /// Queues a record for `topic` and returns a future of where it landed.
    /// The partition: murmur2 of the key (as Kafka's Java client), or the
    /// sticky partition for records without a key. The record is appended
    /// now if the producer has room and knows the topic, otherwise by a
    /// task that waits its turn (see the module docs on ordering). The
    /// record is sent even if the future is dropped.
    pub fn send(
        &self,
        topic: &str,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: Vec<RecordHeader>,
    ) -> impl Future<Output = DeliveryResult> + 'static {
        let (tx, rx) = oneshot::channel();
        self.enqueue(topic, key.as_deref(), value.as_deref(), &headers, Delivery::Future(tx));
        async move { rx.await.unwrap_or(Err(ClientError::Closed)) }
    }

    /// As [`Producer::send`], with the outcome given to `callback` instead
    /// of a future, as Kafka's `send(record, callback)`: the callback runs
    /// once, on this executor, when the record is acknowledged or has
    /// failed for good (at once if it is refused here). Key and value are
    /// borrowed and copied into the batch, so a caller can reuse one
    /// buffer for every record; this is the cheapest way to produce.
    pub fn send_with_callback(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
        callback: impl FnOnce(DeliveryResult) + 'static,
    ) {
        self.enqueue(topic, key, value, headers, Delivery::Callback(Box::new(callback)));
    }

    /// Appends the record now if it can, or leaves it to a task that waits
    /// its turn (copying what it borrows), or tells `delivery` at once why
    /// it is refused.
    fn enqueue(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
        delivery: Delivery,
    ) {
        let shared = &self.shared;
        let size = record_bytes_estimate(key, value, headers);
        if size > shared.config.request_bytes_max {
            let max = shared.config.request_bytes_max;
            return delivery.deliver(Err(ClientError::RecordTooLarge { size, max }));
        }
        if shared.closed.get() {
            return delivery.deliver(Err(ClientError::Closed));
        }
        if let Err(delivery) = shared.try_append_now(topic, key, value, headers, size, delivery) {
            let waiting = Waiting {
                topic: topic.to_string(),
                timestamp_ms: crate::record::now_ms(),
                key: key.map(Bytes::copy_from_slice),
                value: value.map(Bytes::copy_from_slice),
                headers: headers.to_vec(),
            };
            glommio::spawn_local(wait_and_append(WaitGuard::new(shared), waiting, size, delivery)).detach();
        }
    }

    /// Sends every record queued so far (and every `send` still waiting
    /// for room), without waiting for linger, and waits until each is
    /// acknowledged or has failed (its future says which).
    pub async fn flush(&self) {
        struct Flushing<'a>(&'a Shared);
        impl Drop for Flushing<'_> {
            fn drop(&mut self) {
                self.0.flushing.set(self.0.flushing.get() - 1);
            }
        }
        let shared = &self.shared;
        shared.flushing.set(shared.flushing.get() + 1);
        // Ends the flush even if this future is dropped half way.
        let _flushing = Flushing(shared);
        shared.wake.notify_all();
        loop {
            let progressed = shared.progress.notified();
            if shared.waiting.get() == 0 && shared.state.borrow().acc.is_idle() {
                break;
            }
            progressed.await;
        }
    }

    /// Flushes, then stops the producer.
    pub async fn close(self) {
        self.flush().await;
    }

    /// Records appended and not yet sent.
    pub fn records_queued(&self) -> usize {
        self.shared.state.borrow().acc.records_queued()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.shared.closed.set(true);
        self.sender.cancel();
        // Sends waiting for their turn or for room fail with Closed.
        self.shared.admission.close();
        self.shared.buffer.close();
        // Unsent records fail with Closed: their senders drop here.
        let (abandoned, units) = self.shared.state.borrow_mut().acc.abandon();
        drop(abandoned);
        self.shared.buffer.signal(units);
        self.shared.progress.notify_all();
    }
}

impl Shared {
    /// Appends at once if nobody waits ahead, the topic is known and the
    /// buffer has room; otherwise hands `delivery` back (the caller waits
    /// its turn).
    fn try_append_now(
        self: &Rc<Self>,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
        size: usize,
        delivery: Delivery,
    ) -> Result<(), Delivery> {
        // Some send waits (or holds the turn): do not overtake it.
        if self.waiting.get() > 0 || !self.admission.try_acquire(1).unwrap_or(false) {
            return Err(delivery);
        }
        let units = self.units(size);
        let result = match self.client.cached_partition_count(topic) {
            Some(partitions) if self.buffer.try_acquire(units).unwrap_or(false) => {
                let record = NewRecord {
                    timestamp_ms: crate::record::now_ms(),
                    key,
                    value,
                    headers,
                };
                self.append(topic, partitions, record, units, delivery);
                Ok(())
            }
            _ => Err(delivery),
        };
        self.admission.signal(1);
        result
    }

    fn units(&self, size: usize) -> u64 {
        size.min(self.config.buffer_bytes_max.max(1)) as u64
    }

    /// Waits its turn (FIFO), the topic's metadata and buffer room; then
    /// the caller appends. Returns the partition count and the buffer units
    /// taken.
    async fn admit(&self, w: &Waiting, size: usize) -> Result<(u32, u64), ClientError> {
        let deadline = Instant::now() + self.config.delivery_timeout;
        let _turn = self
            .admission
            .acquire_permit(1)
            .await
            .map_err(|_| ClientError::Closed)?;
        let partitions = self.partitions_until(&w.topic, deadline).await?;
        let units = self.units(size);
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, self.buffer.acquire(units)).await {
            Some(Ok(())) => {}
            Some(Err(_)) => return Err(ClientError::Closed),
            None => return Err(ClientError::Timeout(self.config.delivery_timeout)),
        }
        if self.closed.get() {
            self.buffer.signal(units);
            return Err(ClientError::Closed);
        }
        Ok((partitions, units))
    }

    /// The topic's partition count, retrying retriable failures (a topic
    /// just created may not be known everywhere yet) until `deadline`.
    async fn partitions_until(&self, topic: &str, deadline: Instant) -> Result<u32, ClientError> {
        let mut attempt = 0;
        loop {
            match self.client.partition_count(topic).await {
                Ok(n) => return Ok(n),
                Err(e) if e.is_retriable() && attempt < self.client.config().retries_max => {
                    attempt += 1;
                    let pause = self.client.config().backoff(attempt);
                    if Instant::now() + pause >= deadline {
                        return Err(e);
                    }
                    glommio::timer::sleep(pause).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Appends `record` to its partition (chosen now) and wakes the sender
    /// if it should look at once.
    fn append(&self, topic: &str, partitions: u32, record: NewRecord<'_>, units: u64, delivery: Delivery) {
        let now = Instant::now();
        let mut state = self.state.borrow_mut();
        let partition = state.partitioner.partition(topic, record.key, partitions);
        let full = state.acc.append(topic, partition, now, record, delivery, units);
        drop(state);
        // The sender sleeps until its deadline, which is never later than
        // this batch's; wake it only if it has none or the batch is full.
        if full || self.sender_deadline.get().is_none() {
            self.wake.notify_all();
        }
    }

    /// The group is done: tell every record, give back its buffer bytes,
    /// and let its partition send again.
    fn complete(&self, batch: Batch, result: Result<i64, ClientError>) {
        let partition = batch.partition;
        for (i, delivery) in batch.deliveries.into_iter().enumerate() {
            let answer = match &result {
                Ok(base) if *base < 0 => Ok(RecordMetadata { partition, offset: -1 }),
                Ok(base) => Ok(RecordMetadata {
                    partition,
                    offset: base + i as i64,
                }),
                Err(e) => Err(e.clone()),
            };
            delivery.deliver(answer);
        }
        if let Err(e) = &result {
            tracing::debug!(topic = %batch.topic, partition, error = %e, "produce failed");
        }
        self.buffer.signal(batch.buffer_units);
        self.state.borrow_mut().acc.unmute(&batch.topic, partition);
        self.wake.notify_all();
        self.progress.notify_all();
    }

    /// One produce request for `batches` (all for `endpoint`): per batch,
    /// its base offset or its error; `Err` if the request as a whole failed.
    async fn produce_once(
        &self,
        endpoint: &Endpoint,
        batches: &[&Batch],
    ) -> Result<HashMap<(Rc<str>, u32), Result<i64, ClientError>>, ClientError> {
        let mut topics: Vec<ProduceTopic> = Vec::new();
        for b in batches {
            let Ok(records) = &b.records else { continue };
            let partition = ProducePartition {
                partition: b.partition,
                records: records.clone(),
            };
            match topics.iter_mut().find(|t| *t.name == *b.topic) {
                Some(t) => t.partitions.push(partition),
                None => topics.push(ProduceTopic {
                    name: b.topic.to_string(),
                    partitions: vec![partition],
                }),
            }
        }
        let timeout_ms = u32::try_from(self.client.config().request_timeout.as_millis()).unwrap_or(u32::MAX);
        let req = Request::Produce {
            acks: self.config.acks,
            timeout_ms,
            topics,
        };
        if self.config.acks == Acks::None {
            self.client.connection(endpoint).await?.send_only(req).await?;
            return Ok(batches
                .iter()
                .map(|b| ((b.topic.clone(), b.partition), Ok(-1)))
                .collect());
        }
        let limit = self.client.config().request_timeout + PRODUCE_TIMEOUT_SLACK;
        let topics = match self.client.send(endpoint, req, Some(limit)).await? {
            Response::Produce { topics } => topics,
            other => return Err(unexpected("Produce", &other)),
        };
        let mut out = HashMap::new();
        for t in topics {
            let name: Rc<str> = Rc::from(t.name.as_str());
            for p in t.partitions {
                let result = match p.error {
                    ErrorCode::None => Ok(p.base_offset),
                    code => Err(ClientError::broker(
                        code,
                        format!("producing to {}/{}", t.name, p.partition),
                    )),
                };
                out.insert((name.clone(), p.partition), result);
            }
        }
        Ok(out)
    }
}

/// A `send` that could not append at once: waits its turn, then appends,
/// or fails the record. Runs as its own task so waiting sends proceed in
/// the order they were made whether or not anyone polls their futures.
async fn wait_and_append(guard: WaitGuard, w: Waiting, size: usize, delivery: Delivery) {
    let shared = guard.0.clone();
    match shared.admit(&w, size).await {
        Ok((partitions, units)) => {
            let record = NewRecord {
                timestamp_ms: w.timestamp_ms,
                key: w.key.as_deref(),
                value: w.value.as_deref(),
                headers: &w.headers,
            };
            shared.append(&w.topic, partitions, record, units, delivery);
        }
        Err(e) => delivery.deliver(Err(e)),
    }
    drop(guard);
}

/// Drains ready batches and sends them, then sleeps until the next linger
/// deadline or a wake-up.
async fn sender_loop(shared: Rc<Shared>) {
    loop {
        let woken = shared.wake.notified();
        let now = Instant::now();
        let flushing = shared.flushing.get() > 0;
        let drained = {
            let mut state = shared.state.borrow_mut();
            let drained = state.acc.drain(now, flushing);
            for d in &drained {
                state.partitioner.batch_sent(&d.topic, d.partition);
            }
            drained
        };
        if !drained.is_empty() {
            dispatch(&shared, drained);
        }
        let (ready, deadline) = shared.state.borrow().acc.next_ready(Instant::now(), flushing);
        if ready {
            futures_lite::future::yield_now().await;
            continue;
        }
        shared.sender_deadline.set(deadline);
        match deadline {
            Some(at) => {
                let nap = glommio::timer::sleep(at.saturating_duration_since(Instant::now()));
                futures_lite::future::or(woken, nap).await;
            }
            None => woken.await,
        }
        shared.sender_deadline.set(None);
    }
}

/// Groups drained batches per endpoint into requests of at most
/// `request_bytes_max` and spawns a task for each.
fn dispatch(shared: &Rc<Shared>, drained: Vec<Batch>) {
    let mut groups: HashMap<Endpoint, Vec<Vec<Batch>>> = HashMap::new();
    for batch in drained {
        let size = match &batch.records {
            Ok(r) => r.len(),
            Err(e) => {
                let e = ClientError::Record(e.clone());
                shared.complete(batch, Err(e));
                continue;
            }
        };
        let Some(endpoint) = shared.client.cached_endpoint(&batch.topic, batch.partition) else {
            // Metadata lost the partition: the retry path refreshes it.
            let stale = ClientError::broker(ErrorCode::UnknownTopicOrPartition, "partition not in metadata");
            glommio::spawn_local(deliver(shared.clone(), batch, stale, 0)).detach();
            continue;
        };
        let requests = groups.entry(endpoint).or_default();
        let room = requests.last().is_some_and(|r| {
            let bytes: usize = r.iter().map(|b| b.records.as_ref().map_or(0, Bytes::len)).sum();
            bytes + size <= shared.config.request_bytes_max
        });
        match (room, requests.last_mut()) {
            (true, Some(r)) => r.push(batch),
            _ => requests.push(vec![batch]),
        }
    }
    for (endpoint, requests) in groups {
        for group in requests {
            glommio::spawn_local(produce_group(shared.clone(), endpoint.clone(), group)).detach();
        }
    }
}

/// First attempt of a group of batches in one request; batches that fail
/// retriably continue alone in [`deliver`].
async fn produce_group(shared: Rc<Shared>, endpoint: Endpoint, group: Vec<Batch>) {
    let refs: Vec<&Batch> = group.iter().collect();
    let outcome = shared.produce_once(&endpoint, &refs).await;
    drop(refs);
    for batch in group {
        let result = match &outcome {
            Err(e) => Err(e.clone()),
            Ok(answers) => answers
                .get(&(batch.topic.clone(), batch.partition))
                .cloned()
                .unwrap_or_else(|| Err(ClientError::Invalid("the broker did not answer for a partition".into()))),
        };
        match result {
            Err(e) if e.is_retriable() => {
                glommio::spawn_local(deliver(shared.clone(), batch, e, 1)).detach();
            }
            result => shared.complete(batch, result),
        }
    }
}

/// Sends one batch until it succeeds, fails for good, runs out of
/// retries, or exceeds the delivery timeout. `attempt` 0 sends at once;
/// later attempts back off first.
async fn deliver(shared: Rc<Shared>, batch: Batch, mut last: ClientError, mut attempt: u32) {
    let client = shared.client.clone();
    loop {
        let late = batch.created.elapsed() >= shared.config.delivery_timeout;
        if attempt > client.config().retries_max || late {
            shared.complete(batch, Err(last));
            return;
        }
        if attempt > 0 {
            glommio::timer::sleep(client.config().backoff(attempt)).await;
        }
        attempt += 1;
        if last.wants_metadata_refresh() {
            if let Err(e) = client.refresh_metadata(Some(vec![batch.topic.to_string()])).await {
                last = e;
                continue;
            }
        }
        let endpoint = match client.cached_endpoint(&batch.topic, batch.partition) {
            Some(e) => e,
            None => {
                last = ClientError::broker(ErrorCode::UnknownTopicOrPartition, "partition not in metadata");
                continue;
            }
        };
        let result = match shared.produce_once(&endpoint, &[&batch]).await {
            Err(e) => Err(e),
            Ok(mut answers) => answers
                .remove(&(batch.topic.clone(), batch.partition))
                .unwrap_or_else(|| Err(ClientError::Invalid("the broker did not answer for a partition".into()))),
        };
        match result {
            Err(e) if e.is_retriable() => {
                tracing::debug!(topic = %batch.topic, partition = batch.partition, attempt, error = %e, "retrying");
                last = e;
            }
            result => {
                shared.complete(batch, result);
                return;
            }
        }
    }
}
