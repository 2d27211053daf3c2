//! One partition on its owner shard: the log, the high watermark, and the
//! produce / fetch / list-offsets operations on it.
//!
//! On a single node the high watermark is the durable offset when the
//! topic's flush policy is every-append (so a consumer never sees a record a
//! crash could take away), and the log end otherwise.
//!
//! Runs only on the shard that owns the partition (`!Send`).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::api::{
    Acks, ErrorCode, FetchPartitionResponse, FlushConfig, ListOffsetsPartitionResponse, OffsetSpec,
    ProducePartitionResponse, TopicConfig,
};
use crate::record::{self, RecordError};
use crate::storage::producers::SequenceError;
use crate::storage::{FlushPolicy, Log, LogConfig, StorageError};
use crate::watermark::Watermark;

mod replication;

pub use replication::{Replica, RoleChange, RoleUpdate};

use crate::cluster::replica::NodeId;

/// The log configuration for a topic with `config` over broker defaults.
pub fn log_config(config: &TopicConfig, defaults: &TopicConfig, cache_bytes_max: usize) -> LogConfig {
    let base = LogConfig::default();
    let pick = |a: Option<i64>, b: Option<i64>| a.or(b).filter(|v| *v >= 0).map(|v| v as u64);
    let flush = match config.flush.or(defaults.flush) {
        Some(FlushConfig::EveryAppend) | None => FlushPolicy::EveryAppend,
        Some(FlushConfig::IntervalMs(ms)) => FlushPolicy::Interval(Duration::from_millis(ms.max(1))),
        Some(FlushConfig::Bytes(n)) => FlushPolicy::Bytes(n.max(1)),
    };
    let max_message = config
        .max_message_bytes
        .or(defaults.max_message_bytes)
        .map_or(base.batch_bytes_max, |v| v as usize);
    let segment = config
        .segment_bytes
        .or(defaults.segment_bytes)
        .unwrap_or(base.segment_bytes_max);
    LogConfig {
        segment_bytes_max: segment.clamp(1 << 20, u64::from(u32::MAX)),
        retention_ms: pick(config.retention_ms, defaults.retention_ms),
        retention_bytes: pick(config.retention_bytes, defaults.retention_bytes),
        flush,
        batch_bytes_max: max_message.clamp(crate::record::BATCH_HEADER_BYTES, segment as usize),
        cache_bytes_max,
        ..base
    }
}

/// Maps a storage error to the code a client sees.
pub fn error_code(e: &StorageError) -> ErrorCode {
    match e {
        StorageError::InvalidBatch(RecordError::TooLarge { .. }) | StorageError::BatchTooLarge { .. } => {
            ErrorCode::MessageTooLarge
        }
        StorageError::InvalidBatch(_) => ErrorCode::CorruptMessage,
        StorageError::OffsetOutOfRange { .. } | StorageError::OffsetMismatch { .. } => ErrorCode::OffsetOutOfRange,
        StorageError::Config(_) => ErrorCode::InvalidConfig,
        StorageError::Io { .. } | StorageError::Failed { .. } => ErrorCode::StorageError,
        StorageError::Sequence(e) => match e {
            SequenceError::StaleEpoch { .. } => ErrorCode::InvalidProducerEpoch,
            SequenceError::OutOfOrder { .. } => ErrorCode::OutOfOrderSequenceNumber,
            SequenceError::UnknownProducer { .. } => ErrorCode::UnknownProducerId,
            SequenceError::Invalid { .. } => ErrorCode::InvalidRecord,
        },
    }
}

/// A partition owned by this shard.
pub struct Partition {
    pub topic: String,
    pub index: u32,
    log: Log,
    hw_is_durable: bool,
    /// Cluster mode: the partition's role in replication and the high
    /// watermark it computes.
    cluster: Option<Replica>,
}

impl Partition {
    /// `me` is this node's id in cluster mode (`None` on a single node).
    pub fn new(topic: String, index: u32, log: Log, me: Option<NodeId>) -> Partition {
        let hw_is_durable = log.config().flush == FlushPolicy::EveryAppend;
        let cluster = me.map(|me| Replica::new(me, log.log_start_offset()));
        Partition {
            topic,
            index,
            log,
            hw_is_durable,
            cluster,
        }
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Offsets below this are visible to consumers.
    pub fn high_watermark(&self) -> i64 {
        self.hw_mark().get()
    }

    fn hw_mark(&self) -> &Watermark {
        if let Some(r) = &self.cluster {
            return r.high_watermark();
        }
        if self.hw_is_durable {
            self.log.durable_watermark()
        } else {
            self.log.end_watermark()
        }
    }

    /// Validates every batch in `records` first (nothing is appended if any
    /// is bad), then appends them in order. What the answer waits for
    /// follows Kafka: acks=0 and acks=1 return once the batches are in the
    /// log (readable, staged for the disk, as Kafka's page-cache write);
    /// acks=all also waits until they are durable per the topic's flush
    /// policy (under every-append: fdatasynced, group-committed with every
    /// other producer). On a single node the leader is the whole ISR; in
    /// a cluster acks=all also waits until every ISR member has the
    /// batches, and is refused before anything is appended when the ISR is
    /// smaller than min.insync.replicas. That wait ends at `deadline` (the
    /// request's timeout) with REQUEST_TIMED_OUT.
    pub async fn produce(&self, records: &Bytes, acks: Acks, deadline: Instant) -> ProducePartitionResponse {
        let fail = |error| ProducePartitionResponse {
            partition: self.index,
            error,
            base_offset: -1,
            log_start_offset: self.log.log_start_offset(),
        };
        let max = self.log.config().batch_bytes_max;
        let mut spans = Vec::new();
        let mut at = 0usize;
        while at < records.len() {
            let size = match record::batch_size(&records[at..], max) {
                Ok(Some(size)) if at + size <= records.len() => size,
                Ok(_) => return fail(ErrorCode::CorruptMessage),
                // Too large only if it is really all there; a length that
                // runs past the request is corruption.
                Err(RecordError::TooLarge { size, .. }) if at + size <= records.len() => {
                    return fail(ErrorCode::MessageTooLarge)
                }
                Err(_) => return fail(ErrorCode::CorruptMessage),
            };
            let count = match record::validate(&records[at..at + size], max) {
                // Transactions are not supported (InitProducerId refuses
                // transactional ids), and control batches are the broker's.
                Ok(h) if h.is_transactional() || h.is_control() => return fail(ErrorCode::InvalidRecord),
                Ok(h) => h.records_count.max(0) as u64,
                Err(e) => return fail(error_code(&StorageError::InvalidBatch(e))),
            };
            spans.push((at..at + size, count));
            at += size;
        }
        if spans.is_empty() {
            return fail(ErrorCode::CorruptMessage);
        }
        let epoch = match &self.cluster {
            None => 0,
            Some(r) => match r.leader_epoch() {
                Some(epoch) => epoch,
                None => return fail(ErrorCode::NotLeaderOrFollower),
            },
        };
        if acks == Acks::All && !self.acks_all_allowed() {
            return fail(ErrorCode::NotEnoughReplicas);
        }
        let mut base_offset = -1;
        let mut end = -1;
        let mut records_count = 0u64;
        for (span, count) in spans {
            // One copy: the stored batch is stamped in place, and the
            // receive buffer is shared with the other partitions' data.
            match self.log.append_buffered(BytesMut::from(&records[span]), epoch).await {
                Ok(info) => {
                    if base_offset < 0 {
                        base_offset = info.base_offset;
                    }
                    // A duplicate is answered as the original was; it still
                    // waits for the original to be durable under acks=all.
                    end = end.max(info.last_offset + 1);
                    if !info.duplicate {
                        records_count += count;
                    }
                }
                Err(e) => {
                    tracing::debug!(topic = %self.topic, partition = self.index, error = %e, "append refused");
                    return fail(error_code(&e));
                }
            }
        }
        self.on_leader_append();
        if acks == Acks::All {
            if let Err(code) = self.wait_replicated(end, epoch, deadline).await {
                return fail(code);
            }
            if self.hw_is_durable {
                if let Err(e) = self.log.wait_durable(end).await {
                    return fail(error_code(&e));
                }
            }
        }
        crate::metrics::with(|m| {
            m.produce_records
                .fetch_add(records_count, std::sync::atomic::Ordering::Relaxed)
        });
        ProducePartitionResponse {
            partition: self.index,
            error: ErrorCode::None,
            base_offset,
            log_start_offset: self.log.log_start_offset(),
        }
    }

    /// Waits until there is data at or after `offset` below the high
    /// watermark, or until `deadline`.
    pub async fn wait_for_data(&self, offset: i64, deadline: Instant) {
        let now = Instant::now();
        if deadline <= now || self.high_watermark() > offset {
            return;
        }
        let _ = glommio::timer::timeout(deadline - now, async {
            self.hw_mark().wait_for(offset + 1).await;
            Ok(())
        })
        .await;
    }

    /// Clients are served by the leader alone (cluster mode).
    fn not_leader(&self) -> bool {
        self.cluster.as_ref().is_some_and(|r| r.leader_epoch().is_none())
    }

    /// Whole batches from `offset`, below the high watermark.
    pub async fn fetch(&self, offset: i64, max_bytes: usize) -> FetchPartitionResponse {
        let hw = self.high_watermark();
        let mut resp = FetchPartitionResponse {
            partition: self.index,
            error: ErrorCode::None,
            high_watermark: hw,
            log_start_offset: self.log.log_start_offset(),
            records: Vec::new(),
        };
        if self.not_leader() {
            resp.error = ErrorCode::NotLeaderOrFollower;
            return resp;
        }
        if offset > hw && offset <= self.log.next_offset() {
            // Beyond what is visible but not beyond the log: nothing yet.
            return resp;
        }
        match self.log.read(offset, max_bytes.max(1), hw).await {
            Ok(read) => resp.records = read.batches,
            Err(e) => resp.error = error_code(&e),
        }
        resp
    }

    pub async fn list_offsets(&self, spec: OffsetSpec) -> ListOffsetsPartitionResponse {
        let ok = |offset| ListOffsetsPartitionResponse {
            partition: self.index,
            error: ErrorCode::None,
            offset,
        };
        if self.not_leader() {
            return ListOffsetsPartitionResponse {
                partition: self.index,
                error: ErrorCode::NotLeaderOrFollower,
                offset: -1,
            };
        }
        match spec {
            OffsetSpec::Earliest => ok(self.log.log_start_offset()),
            OffsetSpec::Latest => ok(self.high_watermark()),
            OffsetSpec::Timestamp(ts) => match self.log.offset_for_timestamp(ts).await {
                Ok(Some(offset)) if offset < self.high_watermark() => ok(offset),
                Ok(_) => ok(-1),
                Err(e) => ListOffsetsPartitionResponse {
                    partition: self.index,
                    error: error_code(&e),
                    offset: -1,
                },
            },
        }
    }
}
