//! Producer ids for idempotent producers (Kafka's InitProducerId): every id
//! is handed out once for the life of the data dir, across restarts and
//! crashes (kill -9) included. A reused id would let a new producer's
//! batches be taken for duplicates of an old one's.
//!
//! Ids are reserved in blocks of [`BLOCK_IDS`]. The end of the reserved
//! block (the first id not reserved) is made durable in
//! `<data>/meta/producer_ids` before any id of the block is handed out, so
//! after a restart allocation resumes at that bound and whatever a crash
//! left of the last block is skipped, never reused. That costs one
//! blocking write per block, not one per id.
//!
//! Invariants: `next <= limit`, and `limit` is the persisted bound (or the
//! one read at open); ids handed out are `>= 0` and strictly increasing;
//! the persisted bound only grows; a bound that would pass `i64::MAX` is
//! [`ProducerIdError::Exhausted`], never a wrap.
//!
//! File format: magic "SLPI" u32 | version u16 | reserved u16 | body_len
//! u32 | crc32c(body) u32 | body: the bound, i64; all big-endian. Written
//! as the topic metadata is (temp file, fsync, rename, directory fsync), so
//! a crash leaves the old or the new file whole. A file that fails its
//! checks stops the node with a clear message: starting over at 0 would
//! reuse ids.
//!
//! Ownership: the allocator lives on shard 0 (the node's controller) in
//! [`ProducerIds`]; other shards forward InitProducerId to it. Requests
//! with a transactional id are refused on the shard that received them.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::shard::{Shard, ShardMsg};
use crate::api::{ErrorCode, Response};
use crate::envelope::{self, Envelope};
use crate::group::coordinator::ClientInfo;

const ENVELOPE: Envelope = Envelope {
    magic: *b"SLPI",
    version: 1,
};
const FILE_NAME: &str = "producer_ids";
const TMP_NAME: &str = "producer_ids.tmp";
/// Ids reserved per durable write. A crash wastes at most this many.
pub const BLOCK_IDS: i64 = 1000;
/// At most one "transactions are not supported" warning per shard this
/// often; the refusals in between are counted in the next one.
const TXN_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Why no producer id could be handed out.
#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    #[error("producer ids are exhausted (the next block would pass i64::MAX after {next})")]
    Exhausted { next: i64 },
    #[error("reserving producer ids in {path}: {source}")]
    Persist { path: PathBuf, source: std::io::Error },
}

impl ProducerIdError {
    /// The code a client gets: a failed write may succeed on retry
    /// (retriable storage error); exhaustion never will.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProducerIdError::Exhausted { .. } => ErrorCode::Unknown,
            ProducerIdError::Persist { .. } => ErrorCode::StorageError,
        }
    }
}

/// Hands out unique producer ids; see the module header.
#[derive(Debug)]
pub struct ProducerIdAllocator {
    dir: PathBuf,
    /// The next id to hand out.
    next: i64,
    /// End (exclusive) of the reserved block; durable.
    limit: i64,
}

impl ProducerIdAllocator {
    /// Reads `<data_dir>/meta/producer_ids` (none: start at 0) and removes
    /// a temp file a crash left behind. No block is reserved yet: the first
    /// allocation does that, so a restart without producers costs nothing.
    pub fn open(data_dir: &Path) -> Result<ProducerIdAllocator, String> {
        let dir = data_dir.join("meta");
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        let bound = match std::fs::read(&path) {
            Ok(bytes) => decode(&bytes).map_err(|e| {
                format!(
                    "producer id file {} is damaged ({e}); refusing to start rather than hand out \
                     producer ids twice. Restore it from a backup, or replace it with a bound above \
                     every id ever handed out.",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        let _ = std::fs::remove_file(dir.join(TMP_NAME));
        assert!(bound >= 0, "decode refuses negative bounds");
        Ok(ProducerIdAllocator {
            dir,
            next: bound,
            limit: bound,
        })
    }

    /// The next unique id. When the reserved block is used up, first makes
    /// the next block durable (a blocking write); if that fails nothing is
    /// handed out and the next call tries again.
    pub fn allocate(&mut self) -> Result<i64, ProducerIdError> {
        assert!(0 <= self.next && self.next <= self.limit, "{self:?}");
        if self.next == self.limit {
            let bound = self
                .limit
                .checked_add(BLOCK_IDS)
                .ok_or(ProducerIdError::Exhausted { next: self.next })?;
            self.persist(bound)?;
            tracing::debug!(from = self.next, to = bound, "reserved a block of producer ids");
            self.limit = bound;
        }
        let id = self.next;
        self.next += 1;
        debug_assert!(self.next <= self.limit);
        Ok(id)
    }

    /// Writes `bound` durably: after this returns Ok, a restart resumes at
    /// `bound` or above.
    fn persist(&self, bound: i64) -> Result<(), ProducerIdError> {
        assert!(bound > self.limit, "the persisted bound only grows");
        encode(bound)
            .and_then(|bytes| envelope::replace_file(&self.dir, FILE_NAME, &bytes))
            .map_err(|source| ProducerIdError::Persist {
                path: self.dir.join(FILE_NAME),
                source,
            })
    }
}

fn encode(bound: i64) -> std::io::Result<Vec<u8>> {
    ENVELOPE.seal(&bound.to_be_bytes()).map_err(std::io::Error::other)
}

fn decode(bytes: &[u8]) -> Result<i64, String> {
    let body = ENVELOPE.open(bytes, 8).map_err(|e| e.to_string())?;
    let raw = <[u8; 8]>::try_from(body).map_err(|_| format!("a body of {} bytes, not 8", body.len()))?;
    let bound = i64::from_be_bytes(raw);
    if bound < 0 {
        return Err(format!("negative bound {bound}"));
    }
    Ok(bound)
}

/// A shard's part in InitProducerId: the allocator (shard 0 only), and the
/// rate limit of the warning about refused transactional producers.
#[derive(Debug, Default)]
pub struct ProducerIds {
    source: RefCell<IdSource>,
    txn_warned_at: Cell<Option<Instant>>,
    txn_refused_unwarned: Cell<u64>,
}

/// Where shard 0 gets producer ids from.
#[derive(Debug, Default)]
enum IdSource {
    /// Not shard 0 (or, in cluster mode, before the quorum is running).
    #[default]
    None,
    /// A single node: its own durable allocator.
    Local(ProducerIdAllocator),
    /// Cluster mode: blocks handed out by the controller quorum, so ids
    /// are unique across the cluster. `next..end` is the current block.
    Quorum { next: i64, end: i64 },
}

impl ProducerIds {
    /// `allocator` is `Some` on shard 0 of a single node only.
    pub fn new(allocator: Option<ProducerIdAllocator>) -> ProducerIds {
        ProducerIds {
            source: RefCell::new(allocator.map_or(IdSource::None, IdSource::Local)),
            ..ProducerIds::default()
        }
    }

    /// Warns that transactions are not supported, at most once per
    /// [`TXN_WARNING_INTERVAL`]: a transactional producer retries
    /// InitProducerId in a loop, and one line per retry would drown the log.
    fn warn_transactional(&self, transactional_id: &str, client: &ClientInfo) {
        let Some(refused) = self.count_refusal(Instant::now()) else {
            return;
        };
        tracing::warn!(
            client_id = %client.client_id,
            client_host = %client.client_host,
            transactional_id,
            refused_since_last_warning = refused,
            "transactions are not supported: InitProducerId with a transactional id is answered \
             UNSUPPORTED_VERSION; unset transactional.id (idempotence alone works)"
        );
    }

    /// Counts one refusal at `now`; when a warning is due, the refusals it
    /// reports (this one included), and the count starts over.
    fn count_refusal(&self, now: Instant) -> Option<u64> {
        let refused = self.txn_refused_unwarned.get() + 1;
        let due = self
            .txn_warned_at
            .get()
            .is_none_or(|at| now.saturating_duration_since(at) >= TXN_WARNING_INTERVAL);
        if !due {
            self.txn_refused_unwarned.set(refused);
            return None;
        }
        self.txn_warned_at.set(Some(now));
        self.txn_refused_unwarned.set(0);
        Some(refused)
    }
}

fn init_producer_id_error(error: ErrorCode) -> Response {
    Response::InitProducerId {
        error,
        producer_id: -1,
        producer_epoch: -1,
    }
}

impl Shard {
    /// InitProducerId, on any shard: transactional requests are refused
    /// here; the rest get a fresh id with epoch 0 from shard 0, whatever id
    /// and epoch they carry (Kafka's rule for non-transactional producers).
    pub(super) async fn init_producer_id(
        self: &Rc<Self>,
        transactional_id: Option<String>,
        client: &ClientInfo,
    ) -> Response {
        match transactional_id.as_deref() {
            None => {}
            // As Kafka: "" is not a transactional id, nor the absence of one.
            Some("") => return init_producer_id_error(ErrorCode::InvalidRequest),
            Some(id) => {
                self.producer_ids.warn_transactional(id, client);
                return init_producer_id_error(ErrorCode::UnsupportedVersion);
            }
        }
        if self.id == 0 {
            return self.allocate_producer_id().await;
        }
        self.call(0, |reply| ShardMsg::InitProducerId { reply })
            .await
            .unwrap_or_else(|| init_producer_id_error(ErrorCode::CoordinatorNotAvailable))
    }

    /// Cluster mode: shard 0 takes its producer-id blocks from the
    /// controller quorum.
    pub fn use_cluster(&self, cluster: Rc<RefCell<crate::cluster::runtime::Cluster>>) {
        *self.cluster.borrow_mut() = Some(cluster.clone());
        *self.producer_ids.source.borrow_mut() = IdSource::Quorum { next: 0, end: 0 };
    }

    /// Shard 0: the next id, epoch 0.
    pub(super) async fn allocate_producer_id(self: &Rc<Self>) -> Response {
        let granted = |producer_id| Response::InitProducerId {
            error: ErrorCode::None,
            producer_id,
            producer_epoch: 0,
        };
        // No `.await` while borrowed: the local allocator's write is
        // synchronous, and the quorum is asked below, after the borrow.
        match &mut *self.producer_ids.source.borrow_mut() {
            IdSource::Local(allocator) => {
                return match allocator.allocate() {
                    Ok(id) => granted(id),
                    Err(e) => {
                        tracing::error!(error = %e, "no producer id for InitProducerId");
                        init_producer_id_error(e.code())
                    }
                }
            }
            IdSource::Quorum { next, end } if *next < *end => {
                *next += 1;
                return granted(*next - 1);
            }
            IdSource::Quorum { .. } => {}
            IdSource::None => return init_producer_id_error(ErrorCode::CoordinatorNotAvailable),
        }
        use crate::cluster::metadata::{Applied, Command};
        let cmd = Command::AllocateProducerIds {
            broker: self.config.cluster.as_ref().map_or(0, |c| c.node_id),
            count: BLOCK_IDS as u32,
        };
        match self.propose(cmd).await {
            Ok(Applied::ProducerIds(first)) => {
                if let IdSource::Quorum { next, end } = &mut *self.producer_ids.source.borrow_mut() {
                    // Requests that waited together each got a block; the
                    // newest one serves the next requests, the rest of
                    // the others is never used (ids are never reused).
                    (*next, *end) = (first + 1, first + BLOCK_IDS);
                }
                granted(first)
            }
            Ok(other) => {
                tracing::error!(?other, "the quorum answered a producer id block with something else");
                init_producer_id_error(ErrorCode::Unknown)
            }
            Err(e) => {
                tracing::warn!(error = %e, "no producer id block from the controller quorum");
                init_producer_id_error(ErrorCode::CoordinatorNotAvailable)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path) -> PathBuf {
        dir.join("meta").join(FILE_NAME)
    }

    fn persisted(dir: &Path) -> i64 {
        decode(&std::fs::read(file(dir)).expect("read")).expect("valid")
    }

    #[test]
    fn ids_are_unique_and_increasing_across_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut seen = Vec::new();
        for run in 0..4 {
            let mut a = ProducerIdAllocator::open(dir.path()).expect("open");
            // Run 2 crosses a block boundary.
            let n = if run == 2 { BLOCK_IDS + 5 } else { 3 };
            for _ in 0..n {
                seen.push(a.allocate().expect("allocate"));
            }
        }
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
        assert_eq!(seen[0], 0);
        // Each run starts at the bound the previous one persisted.
        assert_eq!(seen[3], BLOCK_IDS);
        assert_eq!(seen[6], 2 * BLOCK_IDS);
        assert_eq!(seen[6 + BLOCK_IDS as usize + 5], 4 * BLOCK_IDS);
    }

    #[test]
    fn a_block_is_durable_before_any_of_its_ids_is_handed_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut a = ProducerIdAllocator::open(dir.path()).expect("open");
        assert!(!file(dir.path()).exists(), "opening reserves nothing");
        for n in 0..2 * BLOCK_IDS + 1 {
            let id = a.allocate().expect("allocate");
            assert_eq!(id, n);
            assert!(persisted(dir.path()) > id, "id {id} is above the durable bound");
        }
    }

    #[test]
    fn a_crash_after_any_number_of_allocations_repeats_none() {
        for n in [1, 2, BLOCK_IDS - 1, BLOCK_IDS, BLOCK_IDS + 1, 3 * BLOCK_IDS] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut a = ProducerIdAllocator::open(dir.path()).expect("open");
            let last = (0..n).map(|_| a.allocate().expect("allocate")).last();
            // Dropped without any clean close: what kill -9 leaves.
            drop(a);
            let mut after_crash = ProducerIdAllocator::open(dir.path()).expect("reopen");
            let first = after_crash.allocate().expect("allocate");
            assert!(Some(first) > last, "after {n}: {first} repeats an id up to {last:?}");
        }
    }

    #[test]
    fn a_failed_reservation_hands_out_nothing_and_is_retried() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut a = ProducerIdAllocator::open(dir.path()).expect("open");
        // A directory where the temp file goes makes the write fail.
        let tmp = dir.path().join("meta").join(TMP_NAME);
        std::fs::create_dir(&tmp).expect("block the temp file");
        let err = a.allocate().expect_err("cannot persist");
        assert_eq!(err.code(), ErrorCode::StorageError);
        assert!(!file(dir.path()).exists());
        std::fs::remove_dir(&tmp).expect("unblock");
        assert_eq!(a.allocate().expect("retried"), 0);
        assert_eq!(persisted(dir.path()), BLOCK_IDS);
    }

    #[test]
    fn a_damaged_file_refuses_to_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        ProducerIdAllocator::open(dir.path())
            .expect("open")
            .allocate()
            .expect("allocate");
        let good = std::fs::read(file(dir.path())).expect("read");
        let mut damaged: Vec<Vec<u8>> = [0, 5, 9, 13, good.len() - 1]
            .into_iter()
            .map(|at| {
                let mut bad = good.clone();
                bad[at] ^= 0x10;
                bad
            })
            .collect();
        damaged.push(good[..good.len() - 1].to_vec());
        damaged.push(Vec::new());
        damaged.push(encode(-5).expect("encodes"));
        for bad in damaged {
            std::fs::write(file(dir.path()), &bad).expect("write");
            let err = ProducerIdAllocator::open(dir.path()).expect_err("damage detected");
            assert!(err.contains("refusing to start"), "{err}");
        }
        // A leftover temp file from a crash mid-write is removed and ignored.
        std::fs::write(file(dir.path()), &good).expect("restore");
        let tmp = dir.path().join("meta").join(TMP_NAME);
        std::fs::write(&tmp, b"half").expect("tmp");
        let mut a = ProducerIdAllocator::open(dir.path()).expect("open");
        assert!(!tmp.exists());
        assert_eq!(a.allocate().expect("allocate"), BLOCK_IDS);
    }

    #[test]
    fn the_transactions_warning_is_rate_limited() {
        let ids = ProducerIds::new(None);
        let start = Instant::now();
        assert_eq!(ids.count_refusal(start), Some(1), "the first refusal warns");
        let soon = start + TXN_WARNING_INTERVAL / 2;
        assert_eq!(
            (0..5).map(|_| ids.count_refusal(soon)).collect::<Vec<_>>(),
            vec![None; 5]
        );
        assert_eq!(
            ids.count_refusal(start + TXN_WARNING_INTERVAL),
            Some(6),
            "counts the quiet ones"
        );
        assert_eq!(ids.count_refusal(start + TXN_WARNING_INTERVAL), None);
    }

    #[test]
    fn exhaustion_is_an_error_not_a_wrap() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("meta")).expect("meta");
        std::fs::write(file(dir.path()), encode(i64::MAX - BLOCK_IDS).expect("encodes")).expect("write");
        let mut a = ProducerIdAllocator::open(dir.path()).expect("open");
        let last_block: Vec<i64> = (0..BLOCK_IDS).map(|_| a.allocate().expect("allocate")).collect();
        assert_eq!(last_block.last(), Some(&(i64::MAX - 1)));
        let err = a.allocate().expect_err("exhausted");
        assert!(matches!(err, ProducerIdError::Exhausted { .. }), "{err}");
        assert_eq!(err.code(), ErrorCode::Unknown);
        assert!(a.allocate().is_err(), "stays exhausted");
        assert_eq!(persisted(dir.path()), i64::MAX);
    }
}
