//! One run: create the topics, start the executors, wait until they are
//! ready (and every subscription's group has settled), walk the phases
//! (warm-up, measure, drain), sample once per second, and build the
//! [`Report`].
//!
//! Throughput counts only the measured window. Latency histograms take the
//! measured window and the drain (messages sent while measuring but
//! acknowledged or consumed after it), not the warm-up. Consumption counts
//! over all subscriptions: a complete run consumes `acknowledged x fanout`
//! messages ([`Workload::fanout`]).
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};
use sluice::api::TopicConfig;
use sluice::client::{Client, ClientConfig};

use crate::report::{distribution, Percentiles, Report, SeriesPoint, Throughput};
use crate::stats::{Clock, Interval, WorkerStats};
use crate::subscription::{self, Barrier};
use crate::worker::{self, Control, Plan};
use crate::workload::Workload;

/// How long executors may take to connect and position their consumers,
/// and the subscriptions' groups to settle.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long producers may take to get their last messages acknowledged,
/// and consumers to read everything acknowledged, after the measured window.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Intervals shorter than this at a phase boundary are not sampled apart.
const BOUNDARY_SLIVER_NS: u64 = 50_000_000;

pub struct Options<'a> {
    pub workload: Workload,
    pub bootstrap: String,
    pub broker_label: String,
    pub executors: usize,
    pub first_core: usize,
    pub progress: bool,
    pub broker_rss: &'a dyn Fn() -> Option<u64>,
}

pub fn run(opts: Options<'_>) -> Result<Report, String> {
    let w = opts.workload.clone();
    let run_id = run_id();
    let topics = create_topics(&opts.bootstrap, &w, &run_id)?;
    let payload = Bytes::from(w.payload()?);
    let clock = Clock::new();
    let plan = Arc::new(Plan {
        bootstrap: opts.bootstrap.clone(),
        workload: w.clone(),
        topics,
        partitions: w.partitions_per_topic,
        payload,
        clock,
        executors: opts.executors,
        first_core: opts.first_core,
        groups: (0..w.subscriptions)
            .map(|i| subscription::group_id(&run_id, i))
            .collect(),
    });
    let control = Arc::new(Control::new(&w));
    let stats: Vec<Arc<WorkerStats>> = (0..opts.executors).map(|_| Arc::new(WorkerStats::new())).collect();
    let mut handles = Vec::new();
    for (i, s) in stats.iter().enumerate() {
        match worker::spawn(i, plan.clone(), control.clone(), s.clone()) {
            Ok(h) => handles.push(h),
            Err(e) => {
                control.stop_consumers.store(true, Ordering::SeqCst);
                control.stop_producers.store(true, Ordering::SeqCst);
                control.failed.store(true, Ordering::SeqCst);
                join(handles);
                return Err(e);
            }
        }
    }
    let mut sampler = Sampler::new(&opts, &stats, clock);
    let result = phases(&opts, &plan, &control, &mut sampler);
    control.stop_producers.store(true, Ordering::SeqCst);
    control.stop_consumers.store(true, Ordering::SeqCst);
    join(handles);
    result?;
    sampler.sample("drain");
    let by_subscription = control
        .consumed_by_subscription
        .iter()
        .map(|c| c.load(Ordering::SeqCst))
        .collect();
    Ok(sampler.report(&opts, &w, by_subscription))
}

/// Names this run's topics and groups apart from earlier runs' on a reused
/// broker: the wall clock in ms, as 8 hex digits.
fn run_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    format!("{:08x}", ms % 0x1_0000_0000)
}

fn join(handles: Vec<glommio::ExecutorJoinHandle<()>>) {
    for h in handles {
        if let Err(e) = h.join() {
            eprintln!("sluice-loadgen: an executor thread failed: {e:?}");
        }
    }
}

fn failure(control: &Control) -> Option<String> {
    if !control.failed.load(Ordering::SeqCst) {
        return None;
    }
    let f = control.failure.lock().unwrap_or_else(|p| p.into_inner());
    Some(f.clone().unwrap_or_else(|| "an executor failed".into()))
}

/// Waits until every executor is ready and every subscription's group has
/// settled (all partitions assigned, start offsets resolved), at most
/// `READY_TIMEOUT`.
fn wait_ready(opts: &Options<'_>, plan: &Plan, control: &Control, clock: Clock) -> Result<(), String> {
    let w = &opts.workload;
    let waited = clock.now_ns();
    loop {
        if let Some(e) = failure(control) {
            return Err(e);
        }
        let ready = control.ready.load(Ordering::SeqCst);
        let waiting = if ready < opts.executors {
            Some(format!("{ready} of {} executors ready", opts.executors))
        } else if w.subscriptions == 0 {
            None
        } else {
            let members = control.members.lock().unwrap_or_else(|p| p.into_inner());
            match subscription::barrier(&members, w.consumers as usize, &plan.topics, plan.partitions)? {
                Barrier::Settled => None,
                Barrier::Waiting(why) => Some(format!("consumer groups not settled ({why})")),
            }
        };
        let Some(why) = waiting else {
            if opts.progress && w.subscriptions > 0 {
                let s = (clock.now_ns() - waited) as f64 / 1e9;
                eprintln!("{} consumer group(s) settled in {s:.1}s", w.subscriptions);
            }
            return Ok(());
        };
        if clock.now_ns() - waited > READY_TIMEOUT.as_nanos() as u64 {
            return Err(format!("not ready within {READY_TIMEOUT:?}: {why}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Ready → go → warm-up → measure → stop producers → drain.
fn phases(opts: &Options<'_>, plan: &Plan, control: &Control, sampler: &mut Sampler) -> Result<(), String> {
    let w = &opts.workload;
    let clock = sampler.clock;
    wait_ready(opts, plan, control, clock)?;
    let go_ns = clock.now_ns().max(1);
    sampler.start(go_ns);
    control.go_ns.store(go_ns, Ordering::SeqCst);
    let warm_end = go_ns + w.warmup().as_nanos() as u64;
    let end = warm_end + w.duration().as_nanos() as u64;
    sampler.sample_until(warm_end, "warmup", || failure(control))?;
    sampler.sample_until(end, "measure", || failure(control))?;
    sampler.rss = (opts.broker_rss)();
    control.stop_producers.store(true, Ordering::SeqCst);
    // Drain: producers get their last acks, consumers (every
    // subscription) catch up.
    let drain_end = clock.now_ns() + DRAIN_TIMEOUT.as_nanos() as u64;
    let drained = |sampler: &Sampler| {
        let producers_done = control.producers_done.load(Ordering::SeqCst) >= w.producers as usize;
        producers_done && sampler.backlog() == 0
    };
    while !drained(sampler) && clock.now_ns() < drain_end {
        if let Some(e) = failure(control) {
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(10));
        if clock.now_ns() >= sampler.next_ns {
            sampler.sample("drain");
        }
    }
    Ok(())
}

/// Collects each second's intervals from every executor.
struct Sampler<'a> {
    stats: &'a [Arc<WorkerStats>],
    clock: Clock,
    progress: bool,
    /// Consumptions per acknowledged message in a complete run.
    fanout: u64,
    go_ns: u64,
    last_ns: u64,
    next_ns: u64,
    measured_ns: u64,
    measured: Interval,
    latency: Interval,
    series: Vec<SeriesPoint>,
    rss: Option<u64>,
}

impl<'a> Sampler<'a> {
    fn new(opts: &Options<'_>, stats: &'a [Arc<WorkerStats>], clock: Clock) -> Sampler<'a> {
        Sampler {
            stats,
            clock,
            progress: opts.progress,
            fanout: opts.workload.fanout(),
            go_ns: 0,
            last_ns: 0,
            next_ns: 0,
            measured_ns: 0,
            measured: Interval::new(),
            latency: Interval::new(),
            series: Vec::new(),
            rss: None,
        }
    }

    fn start(&mut self, go_ns: u64) {
        self.go_ns = go_ns;
        self.last_ns = go_ns;
        self.next_ns = go_ns + SAMPLE_EVERY.as_nanos() as u64;
    }

    /// Acknowledged and consumed (over all subscriptions) messages so far.
    fn totals(&self) -> (u64, u64) {
        self.stats.iter().fold((0, 0), |(p, c), s| {
            (
                p + s.produced.load(Ordering::Relaxed),
                c + s.consumed.load(Ordering::Relaxed),
            )
        })
    }

    /// Consumptions still due: acknowledged x fanout - consumed.
    fn backlog(&self) -> u64 {
        let (produced, consumed) = self.totals();
        produced.saturating_mul(self.fanout).saturating_sub(consumed)
    }

    /// Samples every second (and at `until`) until `until`.
    fn sample_until(
        &mut self,
        until: u64,
        phase: &'static str,
        failed: impl Fn() -> Option<String>,
    ) -> Result<(), String> {
        loop {
            let now = self.clock.now_ns();
            if now >= until {
                // Skip a sliver left over at the boundary; the next phase's
                // first interval takes it.
                if now - self.last_ns >= BOUNDARY_SLIVER_NS {
                    self.sample(phase);
                }
                return Ok(());
            }
            if now >= self.next_ns {
                self.sample(phase);
                continue;
            }
            let wake = self.next_ns.min(until);
            std::thread::sleep(Duration::from_nanos(wake - now).min(Duration::from_millis(100)));
            if let Some(e) = failed() {
                return Err(e);
            }
        }
    }

    fn sample(&mut self, phase: &'static str) {
        let now = self.clock.now_ns();
        let mut i = Interval::new();
        for s in self.stats {
            i.add(&s.take());
        }
        let seconds = (now - self.last_ns) as f64 / 1e9;
        let backlog = self.backlog();
        let point = SeriesPoint::of((now - self.go_ns) as f64 / 1e9, seconds, phase, &i, backlog);
        if self.progress {
            eprintln!(
                "[{:>6.1}s {phase:<7}] produce {:>9.0} msg/s {:>8.2} MB/s | consume {:>9.0} msg/s {:>8.2} MB/s | \
                 backlog {:>8} | p99 publish {:>8} µs e2e {:>8} µs | errors {}",
                point.t_s,
                point.produce_msgs_per_s,
                point.produce_mb_per_s,
                point.consume_msgs_per_s,
                point.consume_mb_per_s,
                backlog,
                point.publish_p99_us,
                point.e2e_p99_us,
                i.errors
            );
        }
        match phase {
            "measure" => {
                self.measured_ns += now - self.last_ns;
                self.measured.add(&i);
                self.latency.add(&i);
            }
            "drain" => self.latency.add(&i),
            _ => {}
        }
        self.series.push(point);
        self.last_ns = now;
        while self.next_ns <= now {
            self.next_ns += SAMPLE_EVERY.as_nanos() as u64;
        }
    }

    /// The report; `by_subscription`: messages each subscription consumed.
    fn report(&self, opts: &Options<'_>, w: &Workload, by_subscription: Vec<u64>) -> Report {
        let secs = self.measured_ns as f64 / 1e9;
        let m = &self.measured;
        let sum = |f: fn(&WorkerStats) -> u64| self.stats.iter().map(|s| f(s)).sum::<u64>();
        let errors = sum(|s| s.errors.load(Ordering::Relaxed));
        let error_messages = self.stats.iter().flat_map(|s| s.first_errors()).take(8).collect();
        Report {
            workload: w.clone(),
            mode: if w.max_rate() { "max-rate" } else { "fixed-rate" },
            broker: opts.broker_label.clone(),
            executors: opts.executors,
            measured_s: (secs * 1000.0).round() / 1000.0,
            produce: Throughput::of(m.produced, m.produced_bytes, secs),
            consume: Throughput::of(m.consumed, m.consumed_bytes, secs),
            publish_latency_us: Percentiles::of(&self.latency.publish_us),
            end_to_end_latency_us: Percentiles::of(&self.latency.e2e_us),
            messages_sent: sum(|s| s.sent.load(Ordering::Relaxed)),
            messages_produced: sum(|s| s.produced.load(Ordering::Relaxed)),
            messages_consumed: sum(|s| s.consumed.load(Ordering::Relaxed)),
            messages_consumed_by_subscription: by_subscription,
            errors,
            error_messages,
            broker_rss_bytes: self.rss,
            series: self.series.clone(),
            distribution: distribution(&self.latency.publish_us, &self.latency.e2e_us),
        }
    }
}

/// Creates the workload's topics (unique names per run, so a reused broker
/// never mixes runs) on a short-lived executor; returns their names.
fn create_topics(bootstrap: &str, w: &Workload, run_id: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = (0..w.topics).map(|t| format!("loadgen-{run_id}-{t}")).collect();
    let flush = w.flush.as_deref().map(sluice::config::parse_flush).transpose()?;
    let (bootstrap, partitions, to_create) = (bootstrap.to_string(), w.partitions_per_topic, names.clone());
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name("loadgen-setup")
        .io_memory(1 << 20)
        .spawn(move || async move {
            let client = Client::connect(&bootstrap, ClientConfig::default())
                .await
                .map_err(|e| format!("connecting to {bootstrap}: {e}"))?;
            let config = TopicConfig {
                flush,
                ..TopicConfig::default()
            };
            for name in &to_create {
                client
                    .create_topic(name, partitions, config.clone())
                    .await
                    .map_err(|e| format!("creating topic {name}: {e}"))?;
            }
            Ok::<(), String>(())
        })
        .map_err(|e| format!("starting the setup executor: {e}"))?;
    handle.join().map_err(|e| format!("setup executor: {e:?}"))??;
    Ok(names)
}
