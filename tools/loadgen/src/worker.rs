//! The executors: one pinned glommio executor per core, each with its own
//! `Client`, running its share of the producers and consumers.
//!
//! Producer `p` runs on executor `p % executors`, consumer `c` on
//! `c % executors`; consumer `c` reads the (topic, partition) pairs whose
//! index is `c` modulo the consumer count, so every message is consumed
//! once. The main thread drives the phases through [`Control`]: executors
//! report ready (consumers positioned at the end of their partitions),
//! wait for `go_ns`, produce until `stop_producers`, and consume until
//! `stop_consumers`.
//!
//! Every value starts with its send time (the run's clock, ns, little
//! endian): the intended time at a fixed rate, the `send` call in
//! max-rate mode. Consumers subtract it from the time they got the record.
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use glommio::sync::Semaphore;
use glommio::{LocalExecutorBuilder, Placement};
use sluice::client::{Client, ClientConfig, Consumer, ConsumerConfig, Producer, ProducerConfig, SeekTo};

use crate::schedule::Schedule;
use crate::stats::{Clock, WorkerStats};
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
}

/// Phase signals between the main thread and the executors.
#[derive(Default)]
pub struct Control {
    pub ready: AtomicUsize,
    /// Set when an executor failed to start; the message is in `failure`.
    pub failed: AtomicBool,
    pub failure: Mutex<Option<String>>,
    /// When producers start (the run's clock); 0 until the main thread says go.
    pub go_ns: AtomicU64,
    pub stop_producers: AtomicBool,
    pub stop_consumers: AtomicBool,
    /// Producers that finished (every message acknowledged or failed).
    pub producers_done: AtomicUsize,
    /// Messages acknowledged and consumed over all executors: in max-rate
    /// mode producers pause while the difference (the consumers' backlog)
    /// is above the workload's bound, so the rate found is one consumers
    /// sustain too.
    pub acked: AtomicU64,
    pub consumed: AtomicU64,
}

impl Control {
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
    LocalExecutorBuilder::new(Placement::Fixed(index % cores))
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
    let mut consumers = Vec::new();
    for c in (0..w.consumers as usize).filter(|c| c % plan.executors == index) {
        consumers.push(positioned_consumer(&client, plan, c).await?);
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
    control.ready.fetch_add(1, Ordering::SeqCst);
    let go_ns = loop {
        if control.failed.load(Ordering::SeqCst) || control.stop_consumers.load(Ordering::SeqCst) {
            return Ok(());
        }
        match control.go_ns.load(Ordering::SeqCst) {
            0 => glommio::timer::sleep(Duration::from_millis(1)).await,
            ns => break ns,
        }
    };
    let mut tasks = Vec::new();
    for p in producers {
        let producer = Producer::new(client.clone(), producer_config.clone());
        let (plan, control, stats) = (plan.clone(), control.clone(), stats.clone());
        tasks.push(glommio::spawn_local(async move {
            produce(p, producer, &plan, &stats, &control, go_ns).await;
            control.producers_done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    for consumer in consumers {
        let (plan, control, stats) = (plan.clone(), control.clone(), stats.clone());
        tasks.push(glommio::spawn_local(async move {
            consume(consumer, &plan, &stats, &control).await;
        }));
    }
    for t in tasks {
        t.await;
    }
    Ok(())
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
    let window = Rc::new(Semaphore::new(u64::from(w.inflight_max)));
    let schedule = (!w.max_rate()).then(|| Schedule::for_producer(w.producer_rate, w.producers, p, go_ns));
    let stopped = || control.stop_producers.load(Ordering::Relaxed);
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
                let backlog = control
                    .acked
                    .load(Ordering::Relaxed)
                    .saturating_sub(control.consumed.load(Ordering::Relaxed));
                if backlog > backlog_max {
                    glommio::timer::sleep(BACKLOG_CHECK).await;
                    continue;
                }
                0
            }
        };
        if window.acquire(1).await.is_err() {
            break;
        }
        // Max-rate: the clock starts at the send call, after the window
        // let this message in.
        let send_ns = if schedule.is_some() {
            send_ns
        } else {
            plan.clock.now_ns()
        };
        send_one(&producer, plan, stats, control, &window, p, i, send_ns);
        i += 1;
        glommio::yield_if_needed().await;
    }
    // Every permit back = every message acknowledged or failed.
    let _ = window.acquire(u64::from(w.inflight_max)).await;
    producer.close().await;
}

#[allow(clippy::too_many_arguments)]
fn send_one(
    producer: &Producer,
    plan: &Plan,
    stats: &Arc<WorkerStats>,
    control: &Arc<Control>,
    window: &Rc<Semaphore>,
    p: u32,
    i: u64,
    send_ns: u64,
) {
    let w = &plan.workload;
    let mut value = BytesMut::from(&plan.payload[..]);
    value[..TIMESTAMP_BYTES].copy_from_slice(&send_ns.to_le_bytes());
    let key = w
        .keyed
        .then(|| Bytes::copy_from_slice(&((u64::from(p) << 40) ^ i).to_le_bytes()));
    let bytes = value.len() + key.as_ref().map_or(0, |k| k.len());
    let topic = &plan.topics[(i % plan.topics.len() as u64) as usize];
    let ack = producer.send(topic, key, Some(value.freeze()), Vec::new());
    stats.sent.fetch_add(1, Ordering::Relaxed);
    let (stats, control, window, clock) = (stats.clone(), control.clone(), window.clone(), plan.clock);
    glommio::spawn_local(async move {
        match ack.await {
            Ok(_) => {
                stats.record_ack(clock.now_ns().saturating_sub(send_ns) / 1000, bytes);
                control.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => stats.record_error(format!("produce: {e}")),
        }
        window.signal(1);
    })
    .detach();
}

/// Consumes until told to stop, recording end-to-end latency per message.
async fn consume(mut consumer: Consumer, plan: &Plan, stats: &WorkerStats, control: &Control) {
    let mut latencies = Vec::new();
    while !control.stop_consumers.load(Ordering::Relaxed) {
        match consumer.poll(POLL_WAIT).await {
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
                    stats.record_consumed(records.len() as u64, bytes, &latencies);
                    control.consumed.fetch_add(records.len() as u64, Ordering::Relaxed);
                }
            }
            Err(e) => {
                stats.record_error(format!("consume: {e}"));
                glommio::timer::sleep(STOP_CHECK).await;
            }
        }
    }
}
