//! The executors: one pinned glommio executor per core, each with its own
//! `Client`, running its share of the producers and consumers.
//!
//! Producer `p` runs on executor `p % executors`, consumer instance `k` on
//! `k % executors`. Without subscriptions, consumer `k` reads the (topic,
//! partition) pairs whose index is `k` modulo the consumer count, so every
//! message is consumed once. With subscriptions, instance `k` is member
//! `k % consumers` of subscription `k / consumers`'s consumer group
//! ([`subscription`](crate::subscription)), so every message is consumed
//! once per subscription.
//!
//! The main thread drives the phases through [`Control`]: executors start
//! their consumers and report ready (static consumers positioned at the end
//! of their partitions; group members joining, their views published in
//! `Control::members` for the main thread's barrier), wait for `go_ns`,
//! produce until `stop_producers`, and consume until `stop_consumers`;
//! group members then leave their groups.
//!
//! Every value starts with its send time (the run's clock, ns, little
//! endian): the intended time at a fixed rate, the `send` call in
//! max-rate mode. Consumers subtract it from the time they got the record.
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use glommio::sync::Semaphore;
use glommio::{LocalExecutorBuilder, Placement};
use sluice::client::{
    Client, ClientConfig, ClientError, ConsumedRecord, Consumer, ConsumerConfig, Producer, ProducerConfig, SeekTo,
};

use crate::schedule::Schedule;
use crate::stats::{Clock, WorkerStats};
use crate::subscription::{Member, MemberView};
use crate::workload::{Workload, TIMESTAMP_BYTES};

/// glommio registered io memory per load generator executor.
const IO_MEMORY_BYTES: usize = 1 << 20;
/// Longest a sleeping producer or polling consumer takes to notice a stop.
const STOP_CHECK: Duration = Duration::from_millis(50);
/// How long one consumer poll waits for records.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// How long a max-rate producer waits for consumers to catch up.
const BACKLOG_CHECK: Duration = Duration::from_millis(1);

/// What every executor is given.
pub struct Plan {
    pub bootstrap: String,
    pub workload: Workload,
    pub topics: Vec<String>,
    /// Partitions per topic.
    pub partitions: u32,
    pub payload: Bytes,
    pub clock: Clock,
    pub executors: usize,
    /// The core executor 0 is pinned to.
    pub first_core: usize,
    /// The consumer group of each subscription; empty without.
    pub groups: Vec<String>,
}

/// Phase signals between the main thread and the executors.
pub struct Control {
    /// Executors that started their consumers and are waiting for `go_ns`.
    pub ready: AtomicUsize,
    /// Every group member's latest view, `consumers` per subscription in
    /// subscription order; empty without subscriptions. The main thread's
    /// ready barrier reads them.
    pub members: Mutex<Vec<MemberView>>,
    /// Set when an executor failed to start; the message is in `failure`.
    pub failed: AtomicBool,
    pub failure: Mutex<Option<String>>,
    /// When producers start (the run's clock); 0 until the main thread says go.
    pub go_ns: AtomicU64,
    pub stop_producers: AtomicBool,
    pub stop_consumers: AtomicBool,
    /// Producers that finished (every message acknowledged or failed).
    pub producers_done: AtomicUsize,
    /// Messages acknowledged and consumed over all executors (consumed
    /// over all subscriptions): in max-rate mode producers pause while the
    /// backlog (`acked x fanout - consumed`) is above the workload's bound,
    /// so the rate found is one consumers sustain too.
    pub acked: AtomicU64,
    pub consumed: AtomicU64,
    /// Messages consumed per subscription; empty without subscriptions.
    pub consumed_by_subscription: Vec<AtomicU64>,
}

impl Control {
    /// Signals for a run of `w`: nothing ready, no member joined.
    pub fn new(w: &Workload) -> Control {
        let members = if w.subscriptions > 0 {
            w.consumer_instances() as usize
        } else {
            0
        };
        Control {
            ready: AtomicUsize::new(0),
            members: Mutex::new(vec![MemberView::unjoined(); members]),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            go_ns: AtomicU64::new(0),
            stop_producers: AtomicBool::new(false),
            stop_consumers: AtomicBool::new(false),
            producers_done: AtomicUsize::new(0),
            acked: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            consumed_by_subscription: (0..w.subscriptions).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Acknowledged messages not yet consumed as often as they will be.
    fn backlog(&self, fanout: u64) -> u64 {
        let acked = self.acked.load(Ordering::Relaxed);
        acked
            .saturating_mul(fanout)
            .saturating_sub(self.consumed.load(Ordering::Relaxed))
    }

    /// Publishes group member `slot`'s view for the ready barrier.
    fn publish(&self, slot: usize, view: MemberView) {
        let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        match members.get_mut(slot) {
            Some(m) => *m = view,
            None => panic!("member slot {slot} beyond the {} of the run", members.len()),
        }
    }

    fn fail(&self, why: String) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        f.get_or_insert(why);
        self.failed.store(true, Ordering::SeqCst);
    }
}

/// Starts executor `index`, pinned to a core. The thread ends when its
/// producers and consumers have stopped.
pub fn spawn(
    index: usize,
    plan: Arc<Plan>,
    control: Arc<Control>,
    stats: Arc<WorkerStats>,
) -> Result<glommio::ExecutorJoinHandle<()>, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    LocalExecutorBuilder::new(Placement::Fixed((plan.first_core + index) % cores))
        .name(&format!("loadgen-{index}"))
        .io_memory(IO_MEMORY_BYTES)
        .spawn(move || async move {
            if let Err(e) = run(index, &plan, &control, &stats).await {
                control.fail(format!("executor {index}: {e}"));
            }
        })
        .map_err(|e| format!("starting executor {index}: {e}"))
}

async fn run(index: usize, plan: &Arc<Plan>, control: &Arc<Control>, stats: &Arc<WorkerStats>) -> Result<(), String> {
    let w = &plan.workload;
    let client_config = ClientConfig {
        client_id: format!("sluice-loadgen-{index}"),
        ..ClientConfig::default()
    };
    let client = Client::connect(&plan.bootstrap, client_config)
        .await
        .map_err(|e| format!("connecting to {}: {e}", plan.bootstrap))?;
    let mut readers = Vec::new();
    for k in (0..w.consumer_instances() as usize).filter(|k| k % plan.executors == index) {
        readers.push(reader(&client, plan, k).await?);
    }
    let producer_config = ProducerConfig {
        acks: w.acks()?,
        compression: w.compression()?,
        linger: Duration::from_millis(w.linger_ms),
        batch_bytes: w.batch_bytes,
        request_bytes_max: (w.batch_bytes + (64 << 10)).max(1 << 20),
        buffer_bytes_max: (w.inflight_max as usize * (w.message_size + 64)).max(32 << 20),
        ..ProducerConfig::default()
    };
    let producers: Vec<u32> = (0..w.producers)
        .filter(|p| *p as usize % plan.executors == index)
        .collect();
    // Consumers poll from now on: group members must join before the main
    // thread lets producers go (no records exist before then).
    let mut tasks = Vec::new();
    for reader in readers {
        let (plan, control, stats) = (plan.clone(), control.clone(), stats.clone());
        tasks.push(glommio::spawn_local(async move {
            consume(reader, &plan, &stats, &control).await;
        }));
    }
    control.ready.fetch_add(1, Ordering::SeqCst);
    let go_ns = loop {
        if control.failed.load(Ordering::SeqCst) || control.stop_consumers.load(Ordering::SeqCst) {
            break None;
        }
        match control.go_ns.load(Ordering::SeqCst) {
            0 => glommio::timer::sleep(Duration::from_millis(1)).await,
            ns => break Some(ns),
        }
    };
    let Some(go_ns) = go_ns else {
        // The run is over before it began; consumers end on `stop_consumers`.
        for t in tasks {
            t.await;
        }
        return Ok(());
    };
    for p in producers {
        let producer = Producer::new(client.clone(), producer_config.clone());
        let (plan, control, stats) = (plan.clone(), control.clone(), stats.clone());
        tasks.push(glommio::spawn_local(async move {
            produce(p, producer, &plan, &stats, &control, go_ns).await;
            control.producers_done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    for t in tasks {
        t.await;
    }
    Ok(())
}

/// Where one consumer task reads from (boxed: a few hundred bytes each,
/// of different sizes).
enum Reader {
    /// A static share of the partitions.
    Static(Box<Consumer>),
    /// A member of a subscription's group.
    Group(Box<Member>),
}

impl Reader {
    async fn poll(&mut self, limit: Duration) -> Result<Vec<ConsumedRecord>, ClientError> {
        match self {
            Reader::Static(c) => c.poll(limit).await,
            Reader::Group(m) => m.poll(limit).await,
        }
    }
}

/// Consumer instance `k`: with subscriptions a member of subscription
/// `k / consumers`'s group (it joins on its first poll), else a static
/// consumer with its share of the partitions.
async fn reader(client: &Client, plan: &Plan, k: usize) -> Result<Reader, String> {
    if plan.groups.is_empty() {
        return Ok(Reader::Static(Box::new(positioned_consumer(client, plan, k).await?)));
    }
    let subscription = k / plan.workload.consumers as usize;
    let group = &plan.groups[subscription];
    Ok(Reader::Group(Box::new(Member::new(
        client,
        group,
        &plan.topics,
        subscription,
        k,
    ))))
}

/// Consumer `c` with its share of the partitions, each positioned at its
/// current end (only this run's messages are read).
async fn positioned_consumer(client: &Client, plan: &Plan, c: usize) -> Result<Consumer, String> {
    let consumers = plan.workload.consumers as usize;
    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default());
    let pairs = plan
        .topics
        .iter()
        .flat_map(|t| (0..plan.partitions).map(move |p| (t, p)))
        .enumerate()
        .filter(|(i, _)| i % consumers == c);
    for (_, (topic, partition)) in pairs {
        consumer.assign(topic, &[partition]);
        consumer
            .seek(topic, partition, SeekTo::Latest)
            .await
            .map_err(|e| format!("positioning consumer {c} on {topic}/{partition}: {e}"))?;
    }
    Ok(consumer)
}

/// Acknowledgements one producer counts before adding them to the shared
/// `Control::acked` (a cache line both cores write).
const ACKED_REPORT_EVERY: u64 = 64;

/// What every acknowledgement of one producer updates: shared by its
/// records' callbacks (an `Rc`, so a record costs no atomic count).
struct AckSink {
    stats: Arc<WorkerStats>,
    control: Arc<Control>,
    window: Semaphore,
    clock: Clock,
    /// Acknowledged and not yet added to `control.acked`.
    unreported: std::cell::Cell<u64>,
}

impl AckSink {
    fn acked(&self, send_ns: u64, bytes: usize, result: Result<sluice::client::RecordMetadata, ClientError>) {
        match result {
            Ok(_) => {
                self.stats
                    .record_ack(self.clock.now_ns().saturating_sub(send_ns) / 1000, bytes);
                let n = self.unreported.get() + 1;
                if n >= ACKED_REPORT_EVERY {
                    self.report();
                } else {
                    self.unreported.set(n);
                }
            }
            Err(e) => self.stats.record_error(format!("produce: {e}")),
        }
        self.window.signal(1);
    }

    fn report(&self) {
        let n = self.unreported.replace(0);
        if n > 0 {
            self.control.acked.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Producer `p`: at a fixed rate per the schedule, or (rate 0) as fast as
/// `inflight_max` unacknowledged messages allow. Returns once every
/// message sent is acknowledged or failed.
async fn produce(
    p: u32,
    producer: Producer,
    plan: &Plan,
    stats: &Arc<WorkerStats>,
    control: &Arc<Control>,
    go_ns: u64,
) {
    let w = &plan.workload;
    let backlog_max = w.backlog_max();
    let fanout = w.fanout();
    let sink = Rc::new(AckSink {
        stats: stats.clone(),
        control: control.clone(),
        window: Semaphore::new(u64::from(w.inflight_max)),
        clock: plan.clock,
        unreported: std::cell::Cell::new(0),
    });
    let schedule = (!w.max_rate()).then(|| Schedule::for_producer(w.producer_rate, w.producers, p, go_ns));
    let stopped = || control.stop_producers.load(Ordering::Relaxed);
    // One value buffer for every message: the producer copies it into its
    // batch, so only the send time at its front changes between messages.
    let mut value = plan.payload.to_vec();
    let mut i: u64 = 0;
    while !stopped() {
        let send_ns = match &schedule {
            Some(s) => {
                let now = plan.clock.now_ns();
                if i >= s.due_by(now) {
                    let wait = Duration::from_nanos(s.intended_ns(i).saturating_sub(now)).min(STOP_CHECK);
                    glommio::timer::sleep(wait).await;
                    continue;
                }
                s.intended_ns(i)
            }
            None => {
                if control.backlog(fanout) > backlog_max {
                    glommio::timer::sleep(BACKLOG_CHECK).await;
                    continue;
                }
                0
            }
        };
        if sink.window.acquire(1).await.is_err() {
            break;
        }
        // Max-rate: the clock starts at the send call, after the window
        // let this message in.
        let send_ns = if schedule.is_some() {
            send_ns
        } else {
            plan.clock.now_ns()
        };
        send_one(&producer, plan, &sink, &mut value, p, i, send_ns);
        i += 1;
        glommio::yield_if_needed().await;
    }
    // Every permit back = every message acknowledged or failed.
    let _ = sink.window.acquire(u64::from(w.inflight_max)).await;
    sink.report();
    producer.close().await;
}

fn send_one(producer: &Producer, plan: &Plan, sink: &Rc<AckSink>, value: &mut [u8], p: u32, i: u64, send_ns: u64) {
    let w = &plan.workload;
    value[..TIMESTAMP_BYTES].copy_from_slice(&send_ns.to_le_bytes());
    let key = ((u64::from(p) << 40) ^ i).to_le_bytes();
    let key = w.keyed.then_some(&key[..]);
    let bytes = value.len() + key.map_or(0, <[u8]>::len);
    let topic = &plan.topics[(i % plan.topics.len() as u64) as usize];
    sink.stats.sent.fetch_add(1, Ordering::Relaxed);
    let sink = sink.clone();
    producer.send_with_callback(topic, key, Some(value), &[], move |result| {
        sink.acked(send_ns, bytes, result)
    });
}

/// Consumes until told to stop, recording end-to-end latency per message;
/// a group member then leaves its group.
async fn consume(mut reader: Reader, plan: &Plan, stats: &WorkerStats, control: &Control) {
    let mut latencies = Vec::new();
    while !control.stop_consumers.load(Ordering::Relaxed) {
        let polled = reader.poll(POLL_WAIT).await;
        let subscription = match &mut reader {
            Reader::Static(_) => None,
            Reader::Group(m) => {
                if let Some(view) = m.view_if_changed() {
                    control.publish(m.slot, view);
                }
                Some(m.subscription)
            }
        };
        match polled {
            Ok(records) => {
                let now = plan.clock.now_ns();
                latencies.clear();
                let mut bytes = 0u64;
                for r in &records {
                    let value = r.value.as_deref().unwrap_or_default();
                    bytes += (value.len() + r.key.as_ref().map_or(0, |k| k.len())) as u64;
                    match value.get(..TIMESTAMP_BYTES).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                        Some(ts) => latencies.push(now.saturating_sub(u64::from_le_bytes(ts)) / 1000),
                        None => stats.record_error(format!(
                            "consumed {}/{}@{}: value shorter than its timestamp",
                            r.topic, r.partition, r.offset
                        )),
                    }
                }
                if !records.is_empty() {
                    let n = records.len() as u64;
                    stats.record_consumed(n, bytes, &latencies);
                    control.consumed.fetch_add(n, Ordering::Relaxed);
                    if let Some(s) = subscription {
                        control.consumed_by_subscription[s].fetch_add(n, Ordering::Relaxed);
                    }
                }
            }
            Err(e) => {
                stats.record_error(format!("consume: {e}"));
                glommio::timer::sleep(STOP_CHECK).await;
            }
        }
    }
    if let Reader::Group(m) = reader {
        let group = &plan.groups[m.subscription];
        if let Err(e) = m.close().await {
            stats.record_error(format!("leaving group {group}: {e}"));
        }
    }
}
