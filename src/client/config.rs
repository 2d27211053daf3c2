//! Client, producer and consumer settings. Every queue, buffer and wait has
//! a named maximum with its unit in the name; the defaults run against a
//! local `sluice serve`.
use std::time::Duration;

use crate::api::Acks;
use crate::record::Compression;

/// Settings shared by everything that talks to the cluster.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Sent in every request header.
    pub client_id: String,
    /// How long one request waits for its answer (a fetch adds its max wait).
    pub request_timeout: Duration,
    /// How long opening a TCP connection may take.
    pub connect_timeout: Duration,
    /// Requests one connection may have awaiting answers; more wait their turn.
    pub inflight_requests_max_per_connection: usize,
    /// Largest response frame accepted; a longer one breaks the connection.
    pub frame_bytes_max: usize,
    /// Connect to the owning shard's own port (skipping the cross-core hop);
    /// `false` sends everything to the broker's shared port.
    pub shard_aware: bool,
    /// Retries of a retriable failure before giving up.
    pub retries_max: u32,
    /// First back-off before a retry; doubles per attempt up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    /// Longest back-off between retries.
    pub retry_backoff_max: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            client_id: "sluice-client".to_string(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            inflight_requests_max_per_connection: 64,
            frame_bytes_max: 64 << 20,
            shard_aware: true,
            retries_max: 10,
            retry_backoff: Duration::from_millis(50),
            retry_backoff_max: Duration::from_secs(1),
        }
    }
}

impl ClientConfig {
    /// The back-off before retry number `attempt` (1-based): exponential,
    /// capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.retry_backoff.saturating_mul(factor).min(self.retry_backoff_max)
    }
}

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// What the broker waits for before answering.
    pub acks: Acks,
    /// Codec for every batch.
    pub compression: Compression,
    /// How long a batch that is not full waits for more records.
    pub linger: Duration,
    /// A batch is sent once its uncompressed size reaches this.
    pub batch_bytes: usize,
    /// Bytes of records accepted but not yet acknowledged; `send` waits
    /// for room beyond this.
    pub buffer_bytes_max: usize,
    /// Largest produce request (and so largest record) sent.
    pub request_bytes_max: usize,
    /// How long a record may take from `send` to its acknowledgement,
    /// retries included.
    pub delivery_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            compression: Compression::None,
            linger: Duration::from_millis(5),
            batch_bytes: 64 << 10,
            buffer_bytes_max: 32 << 20,
            request_bytes_max: 1 << 20,
            delivery_timeout: Duration::from_secs(120),
        }
    }
}

/// Where a partition without a position starts, and where it restarts
/// after its position fell out of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// The log start offset.
    Earliest,
    /// The high watermark: only new records.
    Latest,
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Longest a fetch waits on the broker for `fetch_min_bytes`.
    pub fetch_max_wait: Duration,
    /// The broker answers a fetch once it has this many bytes.
    pub fetch_min_bytes: u32,
    /// Bytes of records one fetch request may return.
    pub fetch_max_bytes: u32,
    /// Bytes of records one partition may return per fetch (a larger
    /// batch is still returned whole by the broker).
    pub partition_fetch_bytes: u32,
    /// Largest decompressed batch accepted.
    pub decompressed_bytes_max: usize,
    /// Records one poll returns at most; the rest of a fetch stays
    /// undecoded for the next polls.
    pub max_poll_records: usize,
    /// Where partitions without a position start.
    pub reset: OffsetReset,
    /// Check every fetched batch's CRC-32C.
    pub check_crcs: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            fetch_max_wait: Duration::from_millis(500),
            fetch_min_bytes: 1,
            fetch_max_bytes: 16 << 20,
            partition_fetch_bytes: 1 << 20,
            decompressed_bytes_max: 64 << 20,
            max_poll_records: 4096,
            reset: OffsetReset::Earliest,
            check_crcs: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let c = ClientConfig {
            retry_backoff: Duration::from_millis(50),
            retry_backoff_max: Duration::from_millis(300),
            ..ClientConfig::default()
        };
        let got: Vec<u128> = (1..=6).map(|a| c.backoff(a).as_millis()).collect();
        assert_eq!(got, [50, 100, 200, 300, 300, 300]);
        assert_eq!(c.backoff(1000).as_millis(), 300);
    }
}
