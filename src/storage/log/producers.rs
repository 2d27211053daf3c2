//! The log's side of idempotent-producer state and of the leader-epoch
//! cache: snapshot files and the rebuild at open and after truncation.
//!
//! The epoch checkpoint `leader-epochs` (every epoch and where it starts)
//! is written with each producer snapshot, so it covers every epoch that
//! starts before the newest snapshot; epochs after it are found by the
//! same replay. A missing or damaged checkpoint means replaying the whole
//! log for epochs, never wrong epochs.
//!
//! A snapshot `<offset>.producers` holds the state after every batch below
//! `offset`. One is written when a segment rolls (at the new segment's
//! base) and at a clean close (at the log end), so an open after a clean
//! stop replays nothing and one after a crash replays at most the active
//! segment, as Kafka does. Snapshots are a cache of what the log says: a
//! missing or damaged one only means replaying from an older one or from
//! the log start, never wrong state.

use std::path::Path;

use super::{Log, Result, StorageError};
use crate::record::BatchHeader;
use crate::storage::epochs::EpochCache;
use crate::storage::producers::ProducerStates;
use crate::storage::segment;

const EXT: &str = "producers";
/// Snapshots kept: the newest, plus a few older ones so that a truncation
/// below the newest need not replay from the log start.
const SNAPSHOTS_KEPT: usize = 3;
/// Bytes read per step when replaying.
const REPLAY_READ_BYTES: usize = 1 << 20;
const EPOCHS_FILE: &str = "leader-epochs";

/// Offsets of the snapshot files in `dir`, ascending.
fn list(dir: &Path) -> Result<Vec<i64>> {
    let mut offsets = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io("listing", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("listing", dir, e))?;
        if let Some(offset) = entry
            .file_name()
            .to_str()
            .and_then(|n| segment::parse_base_offset(n, EXT))
        {
            offsets.push(offset);
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

async fn remove(dir: &Path, offset: i64) {
    let path = segment::file_path(dir, offset, EXT);
    if let Err(e) = glommio::io::remove(&path).await {
        let e = std::io::Error::from(e);
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(snapshot = %path.display(), error = %e, "removing a producer snapshot failed");
        }
    }
}

impl Log {
    /// Where each leader epoch starts in this log.
    pub fn epochs(&self) -> EpochCache {
        self.with_epochs(EpochCache::clone)
    }

    /// Runs `f` on the leader-epoch cache without copying it (replication
    /// asks on every fetch).
    pub fn with_epochs<R>(&self, f: impl FnOnce(&EpochCache) -> R) -> R {
        f(&self.inner.state.borrow().epochs)
    }

    /// Number of idempotent producers this partition remembers.
    pub fn producer_count(&self) -> usize {
        self.inner.state.borrow().producers.len()
    }

    /// Writes the producer state as of the log end; call with the append
    /// order held (a roll or a close), so no batch slips in between. Old
    /// snapshots beyond [`SNAPSHOTS_KEPT`] are removed. A failure is only
    /// logged: without this snapshot the next open replays more.
    pub(super) async fn write_producer_snapshot(&self) {
        let dir = &self.inner.dir;
        let (offset, encoded) = {
            let st = self.inner.state.borrow();
            let end = st.next_offset();
            (end, st.epochs.encode().and_then(|e| Ok((e, st.producers.encode(end)?))))
        };
        let (epochs, bytes) = match encoded {
            Ok(both) => both,
            Err(e) => {
                tracing::warn!(log = %dir.display(), error = %e, "encoding a producer snapshot failed");
                return;
            }
        };
        // The checkpoint first: a snapshot is only trusted to replay from
        // if the epochs that start before it are in the checkpoint.
        let epochs_path = dir.join(EPOCHS_FILE);
        if let Err(e) = segment::write_file_atomic(&epochs_path, &epochs).await {
            tracing::warn!(checkpoint = %epochs_path.display(), error = %e, "writing the epoch checkpoint failed");
            return;
        }
        let path = segment::file_path(dir, offset, EXT);
        if let Err(e) = segment::write_file_atomic(&path, &bytes).await {
            tracing::warn!(snapshot = %path.display(), error = %e, "writing a producer snapshot failed");
            return;
        }
        if let Ok(offsets) = list(dir) {
            let excess = offsets.len().saturating_sub(SNAPSHOTS_KEPT);
            for &old in &offsets[..excess] {
                remove(dir, old).await;
            }
        }
    }

    /// Rebuilds the producer state (and the leader epochs) from the newest usable snapshot at or
    /// below the log end plus the batches after it. Snapshots beyond the
    /// end (left by a truncation or a cut recovery) are removed first;
    /// damaged ones are removed and an older one tried. Call with nothing
    /// staged for writing and no append running.
    pub(super) async fn rebuild_from_log(&self) -> Result<()> {
        let dir = self.inner.dir.clone();
        let (log_start, log_end) = (self.log_start_offset(), self.next_offset());
        let offsets = list(&dir)?;
        for &stale in offsets.iter().filter(|&&o| o > log_end) {
            remove(&dir, stale).await;
        }
        let epochs_path = dir.join(EPOCHS_FILE);
        let loaded = match segment::read_small_file(&epochs_path).await {
            Some(bytes) => EpochCache::decode(&bytes).map_err(|e| {
                tracing::warn!(checkpoint = %epochs_path.display(), error = %e, "epoch checkpoint is damaged; replaying the log for epochs");
            }),
            None => Err(()),
        };
        let (mut epochs, epochs_from) = match loaded {
            Ok(c) => (c, None),
            Err(()) => (EpochCache::default(), Some(log_start)),
        };
        epochs.truncate_from_end(log_end);
        if log_start == log_end {
            // No batches, no epochs (a log emptied and started again).
            epochs = EpochCache::default();
        }
        let mut state = ProducerStates::default();
        let mut from = log_start;
        for &offset in offsets.iter().rev().filter(|&&o| o <= log_end) {
            let path = segment::file_path(&dir, offset, EXT);
            let decoded = match segment::read_small_file(&path).await {
                Some(bytes) => ProducerStates::decode(&bytes),
                None => Err("unreadable".into()),
            };
            match decoded {
                Ok((at, loaded)) if at == offset => {
                    state = loaded;
                    // Batches below the log start are gone; the snapshot
                    // still knows their producers.
                    from = offset.max(log_start);
                    break;
                }
                Ok((at, _)) => {
                    tracing::warn!(snapshot = %path.display(), at, "producer snapshot names another offset; ignoring it");
                }
                Err(e) => {
                    tracing::warn!(snapshot = %path.display(), error = %e, "producer snapshot is damaged; ignoring it");
                }
            }
            remove(&dir, offset).await;
        }
        let now = crate::record::now_ms();
        let mut at = epochs_from.map_or(from, |e| e.min(from));
        while at < log_end {
            let read = self.read(at, REPLAY_READ_BYTES, log_end).await?;
            if read.next_offset <= at {
                break;
            }
            for batch in &read.batches {
                let h = BatchHeader::parse(batch)?;
                epochs.assign(h.partition_leader_epoch, h.base_offset);
                if h.base_offset >= from {
                    state.record(&h, now);
                }
            }
            at = read.next_offset;
        }
        state.expire(now, self.inner.config.producer_id_expiration_ms);
        if from < log_end {
            tracing::debug!(log = %dir.display(), from, to = log_end, producers = state.len(), "replayed producer state");
        }
        let mut st = self.inner.state.borrow_mut();
        st.producers = state;
        st.epochs = epochs;
        Ok(())
    }
}
