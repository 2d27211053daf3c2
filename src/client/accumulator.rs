//! The producer's record accumulator: per-partition queues of batches being
//! filled, and the decision which of them to send now. Sans-IO: time comes
//! in as an argument, nothing here sleeps or touches a socket.
//!
//! Invariants:
//! - Records of one partition leave in the order they were appended:
//!   batches form a FIFO queue and a partition has at most one drained
//!   (in-flight) group of batches at a time. It is "muted" until
//!   [`Accumulator::unmute`], which the producer calls once that group is
//!   acknowledged or has failed for good, so retries never reorder.
//! - A batch holds at most `batch_bytes` of (uncompressed) records, except
//!   a single record larger than that, which gets a batch of its own.
//! - The front batch of an unmuted partition is ready when it is full,
//!   when another batch queues behind it, when it is `linger` old, or when
//!   a flush is under way.
//! - One drain of a partition takes its ready batches back to back up to
//!   `request_bytes_max`, so a backlog catches up one request at a time.
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::record::{BatchBuilder, Compression, RecordError, RecordHeader};

/// Upper bound of one record's encoding beyond its key, value and header
/// bytes: length, attributes, timestamp and offset deltas, key and value
/// lengths, header count (varints at their widest).
const RECORD_OVERHEAD_BYTES_MAX: usize = 5 + 1 + 10 + 5 + 5 + 5 + 5;
/// Per header beyond its key and value: two length varints.
const HEADER_OVERHEAD_BYTES_MAX: usize = 10;
/// Batches of one partition sent in one request, at most.
const BATCHES_PER_DRAIN_MAX: usize = 16;

/// An upper bound of the bytes a record adds to a batch.
pub(crate) fn record_bytes_estimate(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[RecordHeader]) -> usize {
    let headers_bytes: usize = headers
        .iter()
        .map(|h| h.key.len() + h.value.as_ref().map_or(0, Bytes::len) + HEADER_OVERHEAD_BYTES_MAX)
        .sum();
    RECORD_OVERHEAD_BYTES_MAX + key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len) + headers_bytes
}

/// How the accumulator batches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchPolicy {
    pub linger: Duration,
    pub batch_bytes: usize,
    pub request_bytes_max: usize,
    pub compression: Compression,
}

/// One batch being filled, with what to tell each record's sender.
#[derive(Debug)]
struct OpenBatch<T> {
    builder: BatchBuilder,
    created: Instant,
    deliveries: Vec<T>,
    buffer_units: u64,
}

/// Batches of one partition taken for sending, back to back.
#[derive(Debug)]
pub(crate) struct Drained<T> {
    pub topic: Rc<str>,
    pub partition: u32,
    /// One or more whole batches, or why building them failed.
    pub records: Result<Bytes, RecordError>,
    /// One per record, in offset order.
    pub deliveries: Vec<T>,
    /// Buffer bytes to give back once the records are done with.
    pub buffer_units: u64,
    /// When the oldest record of the group was appended.
    pub created: Instant,
}

#[derive(Debug)]
struct PartitionQueue<T> {
    batches: VecDeque<OpenBatch<T>>,
    /// A drained group of this partition is in flight.
    muted: bool,
}

/// Per-partition batch queues.
#[derive(Debug)]
pub(crate) struct Accumulator<T> {
    policy: BatchPolicy,
    /// Topic, then partition (nested so a lookup by `&str` allocates nothing).
    queues: HashMap<Rc<str>, HashMap<u32, PartitionQueue<T>>>,
    /// Records appended and not yet drained.
    records_queued: usize,
    /// Partitions drained and not yet unmuted.
    in_flight: usize,
}

/// A record as the accumulator appends it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewRecord<'a> {
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [RecordHeader],
}

impl<T> Accumulator<T> {
    pub(crate) fn new(policy: BatchPolicy) -> Self {
        assert!(
            policy.batch_bytes > 0 && policy.request_bytes_max > 0,
            "batch limits must be positive"
        );
        Accumulator {
            policy,
            queues: HashMap::new(),
            records_queued: 0,
            in_flight: 0,
        }
    }

    /// Appends a record to the partition's last batch, or to a new batch
    /// if it would overflow `batch_bytes`. Returns true if a batch is now
    /// full (the sender should run without waiting for linger).
    pub(crate) fn append(
        &mut self,
        topic: &str,
        partition: u32,
        now: Instant,
        record: NewRecord<'_>,
        delivery: T,
        buffer_units: u64,
    ) -> bool {
        let estimate = record_bytes_estimate(record.key, record.value, record.headers);
        let policy = self.policy;
        if !self.queues.contains_key(topic) {
            self.queues.insert(Rc::from(topic), HashMap::new());
        }
        let Some(partitions) = self.queues.get_mut(topic) else {
            unreachable!("inserted above");
        };
        let queue = partitions.entry(partition).or_insert_with(|| PartitionQueue {
            batches: VecDeque::new(),
            muted: false,
        });
        let fits = queue
            .batches
            .back()
            .is_some_and(|b| b.builder.is_empty() || b.builder.estimated_bytes() + estimate <= policy.batch_bytes);
        if !fits {
            queue.batches.push_back(OpenBatch {
                // Room for a whole batch up front: growing by doubling
                // copies the records again and faults in fresh pages.
                builder: BatchBuilder::with_capacity(policy.compression, policy.batch_bytes.max(estimate)),
                created: now,
                deliveries: Vec::new(),
                buffer_units: 0,
            });
        }
        let Some(batch) = queue.batches.back_mut() else {
            unreachable!("a batch was pushed above");
        };
        let headers: Vec<(&str, Option<&[u8]>)> = record
            .headers
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_deref()))
            .collect();
        batch
            .builder
            .push(record.timestamp_ms, record.key, record.value, &headers);
        batch.deliveries.push(delivery);
        batch.buffer_units += buffer_units;
        debug_assert_eq!(batch.deliveries.len(), batch.builder.len(), "one delivery per record");
        self.records_queued += 1;
        batch.builder.estimated_bytes() >= policy.batch_bytes || queue.batches.len() > 1
    }

    fn is_ready(&self, q: &PartitionQueue<T>, now: Instant, flushing: bool) -> bool {
        let Some(front) = q.batches.front() else {
            return false;
        };
        !q.muted
            && (flushing
                || q.batches.len() > 1
                || front.builder.estimated_bytes() >= self.policy.batch_bytes
                || now.saturating_duration_since(front.created) >= self.policy.linger)
    }

    /// Whether any partition can be drained now, and if not, when the
    /// first one will be (its linger expires). `None`: nothing to wait for.
    pub(crate) fn next_ready(&self, now: Instant, flushing: bool) -> (bool, Option<Instant>) {
        let mut deadline: Option<Instant> = None;
        for q in self.queues.values().flat_map(HashMap::values) {
            if self.is_ready(q, now, flushing) {
                return (true, None);
            }
            if let (false, Some(front)) = (q.muted, q.batches.front()) {
                let at = front.created + self.policy.linger;
                deadline = Some(deadline.map_or(at, |d| d.min(at)));
            }
        }
        (false, deadline)
    }

    /// Takes the ready batches of every ready partition and mutes those
    /// partitions until `unmute`.
    pub(crate) fn drain(&mut self, now: Instant, flushing: bool) -> Vec<Drained<T>> {
        let ready: Vec<(Rc<str>, u32)> = self
            .queues
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |(p, q)| (t, *p, q)))
            .filter(|(_, _, q)| self.is_ready(q, now, flushing))
            .map(|(t, p, _)| (t.clone(), p))
            .collect();
        let mut out = Vec::with_capacity(ready.len());
        for tp in ready {
            let Some(q) = self.queues.get_mut(&tp.0).and_then(|ps| ps.get_mut(&tp.1)) else {
                continue;
            };
            let mut group: Vec<OpenBatch<T>> = Vec::new();
            let mut bytes = 0usize;
            while let Some(front) = q.batches.front() {
                let size = front.builder.estimated_bytes();
                let is_last_open = q.batches.len() == 1;
                // The last batch may still be filling; take it only when it
                // is ready by itself (full, lingered, flushing).
                let last_ready = flushing
                    || size >= self.policy.batch_bytes
                    || now.saturating_duration_since(front.created) >= self.policy.linger;
                let fits = group.is_empty() || bytes + size <= self.policy.request_bytes_max;
                if !fits || group.len() >= BATCHES_PER_DRAIN_MAX || (is_last_open && !group.is_empty() && !last_ready) {
                    break;
                }
                bytes += size;
                if let Some(b) = q.batches.pop_front() {
                    group.push(b);
                }
            }
            debug_assert!(!group.is_empty(), "a ready partition yields a batch");
            q.muted = true;
            self.in_flight += 1;
            out.push(Self::seal(tp, group));
        }
        for d in &out {
            self.records_queued -= d.deliveries.len();
        }
        out
    }

    fn seal(tp: (Rc<str>, u32), group: Vec<OpenBatch<T>>) -> Drained<T> {
        let created = group.iter().map(|b| b.created).min().unwrap_or_else(Instant::now);
        let mut deliveries = Vec::new();
        let mut buffer_units = 0;
        let mut built: Vec<Result<BytesMut, RecordError>> = Vec::with_capacity(group.len());
        let mut bytes_total = 0;
        for b in group {
            let batch = b.builder.finish();
            bytes_total += batch.as_ref().map_or(0, BytesMut::len);
            built.push(batch);
            deliveries.extend(b.deliveries);
            buffer_units += b.buffer_units;
        }
        let records = match built.len() {
            1 => built.pop().unwrap_or(Err(RecordError::TooShort)).map(BytesMut::freeze),
            _ => built
                .into_iter()
                .try_fold(BytesMut::with_capacity(bytes_total), |mut all, b| {
                    all.extend_from_slice(&b?);
                    Ok(all)
                })
                .map(BytesMut::freeze),
        };
        Drained {
            topic: tp.0,
            partition: tp.1,
            records,
            deliveries,
            buffer_units,
            created,
        }
    }

    /// The partition's in-flight group is done: its next batch may go.
    pub(crate) fn unmute(&mut self, topic: &str, partition: u32) {
        let Some(partitions) = self.queues.get_mut(topic) else {
            return;
        };
        if let Some(q) = partitions.get_mut(&partition) {
            if q.muted {
                q.muted = false;
                self.in_flight -= 1;
            }
            if q.batches.is_empty() {
                partitions.remove(&partition);
            }
        }
        if partitions.is_empty() {
            self.queues.remove(topic);
        }
    }

    /// Records appended and not yet drained.
    pub(crate) fn records_queued(&self) -> usize {
        self.records_queued
    }

    /// Nothing queued and nothing in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.records_queued == 0 && self.in_flight == 0
    }

    /// Takes every queued record's delivery and the buffer units they hold
    /// (on close without flush).
    pub(crate) fn abandon(&mut self) -> (Vec<T>, u64) {
        let mut out = Vec::new();
        let mut units = 0;
        for q in self.queues.values_mut().flat_map(HashMap::values_mut) {
            for b in q.batches.drain(..) {
                units += b.buffer_units;
                out.extend(b.deliveries);
            }
        }
        self.records_queued = 0;
        (out, units)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{records, validate};

    const LINGER: Duration = Duration::from_millis(10);

    fn acc(batch_bytes: usize) -> Accumulator<u32> {
        Accumulator::new(BatchPolicy {
            linger: LINGER,
            batch_bytes,
            request_bytes_max: 1 << 20,
            compression: Compression::None,
        })
    }

    fn rec(value: &[u8]) -> NewRecord<'_> {
        NewRecord {
            timestamp_ms: 1_000,
            key: None,
            value: Some(value),
            headers: &[],
        }
    }

    /// Splits back-to-back batches and returns every record's value.
    fn values(records_bytes: &Bytes) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut rest = records_bytes.clone();
        while !rest.is_empty() {
            let size = crate::record::batch_size(&rest, usize::MAX).unwrap().unwrap();
            let batch = rest.split_to(size);
            validate(&batch, usize::MAX).unwrap();
            out.extend(records(&batch, 1 << 20).unwrap().map(|r| r.unwrap().value.unwrap()));
        }
        out
    }

    #[test]
    fn a_batch_waits_for_linger() {
        let mut a = acc(1 << 20);
        let t0 = Instant::now();
        assert!(!a.append("t", 0, t0, rec(b"v"), 1, 10));
        assert_eq!(a.next_ready(t0, false), (false, Some(t0 + LINGER)));
        assert!(a.drain(t0 + LINGER / 2, false).is_empty());
        let later = t0 + LINGER;
        assert!(a.next_ready(later, false).0);
        let d = a.drain(later, false);
        assert_eq!(d.len(), 1);
        assert_eq!((&*d[0].topic, d[0].partition, d[0].buffer_units), ("t", 0, 10));
        assert_eq!(values(d[0].records.as_ref().unwrap()), [Bytes::from_static(b"v")]);
        assert!(!a.is_idle(), "in flight until unmuted");
        a.unmute("t", 0);
        assert!(a.is_idle());
    }

    #[test]
    fn a_full_batch_is_ready_at_once() {
        let mut a = acc(200);
        let t0 = Instant::now();
        let mut n = 0;
        while !a.append("t", 0, t0, rec(&[7; 30]), n, 0) {
            n += 1;
        }
        assert!(a.next_ready(t0, false).0, "ready before linger");
        let d = a.drain(t0, false);
        let sent = d[0].deliveries.len();
        assert!(sent >= 2, "the full batch leaves");
        assert!(d[0].records.as_ref().unwrap().len() <= 200);
        // The record that overflowed opened a new batch, which lingers.
        assert_eq!(a.records_queued() + sent, n as usize + 1);
        assert_eq!(a.records_queued(), 1);
    }

    #[test]
    fn batches_split_at_batch_bytes_and_keep_order() {
        let mut a = acc(300);
        let t0 = Instant::now();
        for i in 0..20u32 {
            a.append(
                "t",
                3,
                t0,
                rec(format!("value-{i:03}-{}", "x".repeat(40)).as_bytes()),
                i,
                1,
            );
        }
        // Several batches queued: the front ones are ready without linger.
        let d = a.drain(t0, false);
        assert_eq!(d.len(), 1, "one group per partition");
        let got = values(d[0].records.as_ref().unwrap());
        assert!(got.len() < 20, "the last, still open batch stays");
        assert_eq!(d[0].deliveries, (0..got.len() as u32).collect::<Vec<_>>());
        for (i, v) in got.iter().enumerate() {
            assert!(v.starts_with(format!("value-{i:03}").as_bytes()));
        }
        // Muted: nothing more until the group is acknowledged.
        assert!(a.drain(t0 + LINGER * 10, true).is_empty());
        a.unmute("t", 3);
        let rest = a.drain(t0 + LINGER, false);
        assert_eq!(rest[0].deliveries[0], got.len() as u32);
        assert_eq!(values(rest[0].records.as_ref().unwrap()).len() + got.len(), 20);
    }

    #[test]
    fn an_oversized_record_gets_its_own_batch() {
        let mut a = acc(100);
        let t0 = Instant::now();
        a.append("t", 0, t0, rec(b"small"), 0, 0);
        assert!(a.append("t", 0, t0, rec(&[1; 500]), 1, 0));
        a.append("t", 0, t0, rec(b"after"), 2, 0);
        let d = a.drain(t0, false);
        // Two batches back to back; the third, still open, lingers.
        assert_eq!(d[0].deliveries, [0, 1]);
        let got = values(d[0].records.as_ref().unwrap());
        assert_eq!((&got[0][..], got[1].len()), (&b"small"[..], 500));
        let first = crate::record::batch_size(d[0].records.as_ref().unwrap(), usize::MAX)
            .unwrap()
            .unwrap();
        assert!(first < 100, "the small record's batch did not take the big one");
        a.unmute("t", 0);
        assert_eq!(a.drain(t0 + LINGER, false)[0].deliveries, [2]);
    }

    #[test]
    fn flush_makes_everything_ready() {
        let mut a = acc(1 << 20);
        let t0 = Instant::now();
        a.append("t", 0, t0, rec(b"a"), 0, 0);
        a.append("t", 1, t0, rec(b"b"), 1, 0);
        a.append("u", 0, t0, rec(b"c"), 2, 0);
        assert!(!a.next_ready(t0, false).0);
        assert!(a.next_ready(t0, true).0);
        let d = a.drain(t0, true);
        assert_eq!(d.len(), 3);
        assert_eq!(a.records_queued(), 0);
    }

    #[test]
    fn the_earliest_linger_deadline_wins_and_muted_partitions_do_not_count() {
        let mut a = acc(1 << 20);
        let t0 = Instant::now();
        a.append("t", 0, t0, rec(b"a"), 0, 0);
        let t1 = t0 + Duration::from_millis(3);
        a.append("t", 1, t1, rec(b"b"), 1, 0);
        assert_eq!(a.next_ready(t1, false), (false, Some(t0 + LINGER)));
        let d = a.drain(t0 + LINGER, false);
        assert_eq!(d.len(), 1);
        a.append("t", 0, t0 + LINGER, rec(b"c"), 2, 0);
        assert_eq!(a.next_ready(t0 + LINGER, false), (false, Some(t1 + LINGER)));
    }

    #[test]
    fn drain_is_bounded_by_request_bytes() {
        let mut a = Accumulator::new(BatchPolicy {
            linger: LINGER,
            batch_bytes: 1000,
            request_bytes_max: 2500,
            compression: Compression::Lz4,
        });
        let t0 = Instant::now();
        for i in 0..50u32 {
            a.append("t", 0, t0, rec(&[i as u8; 200]), i, 0);
        }
        let d = a.drain(t0, false);
        let n = d[0].deliveries.len();
        assert!((4..=12).contains(&n), "two or so batches of ~4 records, got {n}");
        assert_eq!(values(d[0].records.as_ref().unwrap()).len(), n);
    }

    #[test]
    fn abandon_returns_every_queued_delivery() {
        let mut a = acc(100);
        let t0 = Instant::now();
        for i in 0..10u32 {
            a.append("t", i % 3, t0, rec(&[0; 40]), i, 5);
        }
        let (mut got, units) = a.abandon();
        got.sort_unstable();
        assert_eq!(units, 50);
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(a.records_queued(), 0);
    }

    #[test]
    fn estimate_bounds_the_real_encoding() {
        let headers = [RecordHeader {
            key: "h".into(),
            value: Some(Bytes::from_static(b"vv")),
        }];
        for len in [0usize, 1, 100, 70_000] {
            let value = vec![1u8; len];
            let mut b = BatchBuilder::new(Compression::None);
            let before = b.estimated_bytes();
            b.push(i64::MAX, Some(b"k"), Some(&value), &[("h", Some(b"vv"))]);
            assert!(b.estimated_bytes() - before <= record_bytes_estimate(Some(b"k"), Some(&value), &headers));
        }
    }
}
