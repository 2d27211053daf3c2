//! The partition log: an ordered set of segments, the active one written
//! through a [`SegmentWriter`], plus the batch cache, the flush policy with
//! group commit, retention, truncation and recovery.
//!
//! Invariants:
//! - segments are contiguous: each starts at the previous one's
//!   `next_offset`; only the last (active) one is appended to;
//! - `log_start_offset` is the first segment's base offset; `next_offset`
//!   (the log end) is the last segment's `next_offset` and equals `end`;
//! - `durable <= next_offset`: every offset below `durable` is fdatasynced;
//! - the active segment never has index files on disk while the log is
//!   open (they are written by a clean close or a roll), so a checkpoint on
//!   disk always describes exactly what its segment holds.
//!
//! Concurrency (one shard, many tasks): `append_lock` orders everything that
//! changes the segment structure or assigns offsets (append, roll, truncate,
//! retention, close); `io_lock` orders writes to the file: each write-behind
//! of a full chunk holds one of its `write_behind_chunks_max` units, so that
//! many full chunks are written at once (the queue depth of the write
//! path), and everything else that writes (a flush of the partial tail,
//! which the next write may cover again, the flush that starts a sync, a
//! roll, a truncation) holds all of them, so it runs alone, after every
//! write before it. A group-commit fdatasync runs without it, so appends and
//! write-behind continue during a long sync; the durable watermark only
//! claims what was written before the sync began, and nothing if a
//! truncation happened meanwhile. Lock order: append_lock, then io_lock.
//! No `RefCell` borrow is held across an `.await`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use glommio::io::{DmaFile, OpenOptions};
use glommio::sync::Semaphore;

use super::cache::BatchCache;
use super::epochs::EpochCache;
use super::error::{Result, StorageError};
use super::producers::{ProducerStates, Verdict};
use super::segment::{self, Segment, WalkEnd};
use super::writer::SegmentWriter;
use super::{FlushPolicy, LogConfig};
use crate::record::{self, BatchHeader};
use crate::watermark::Watermark;

mod producers;

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// -1 for a duplicate.
    pub max_timestamp: i64,
    /// The batch was a retry of one already in the log (same idempotent
    /// producer, epoch and sequences): nothing was appended, and the
    /// offsets are where the original is.
    pub duplicate: bool,
}

/// Whole batches returned by [`Log::read`].
#[derive(Debug, Default)]
pub struct LogRead {
    /// Each element is exactly one stored batch.
    pub batches: Vec<Bytes>,
    pub bytes: usize,
    /// Offset after the last returned batch (the next offset to ask for).
    pub next_offset: i64,
    /// True when the batches came from the batch cache (no disk read).
    pub from_cache: bool,
}

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    pub log_start_offset: i64,
}

/// Who decided a batch's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// This log leads: it assigns offsets and stamps the epoch.
    Leader { leader_epoch: i32 },
    /// A follower copying the leader's batch as it is.
    Replica,
}

/// A partition log. Cheap to clone (a handle); all clones are the same log.
#[derive(Clone)]
pub struct Log {
    inner: Rc<Inner>,
}

struct Inner {
    dir: PathBuf,
    config: LogConfig,
    state: RefCell<State>,
    append_lock: Semaphore,
    /// `write_behind_chunks_max` units: one per full-chunk write, all of
    /// them for any other write ([`Log::lock_io_alone`]).
    io_lock: Semaphore,
    /// The log end offset; long-poll readers wait on it.
    end: Watermark,
    /// Every offset below this is durable.
    durable: Watermark,
    /// Counts finished sync attempts, so waiters re-check after each.
    sync_rounds: Watermark,
    syncing: Cell<bool>,
    /// A [`Log::sync_in_background`] task is running.
    background_sync: Cell<bool>,
    syncs: Cell<u64>,
    /// Counts truncations, so a sync that ran across one claims nothing.
    truncations: Cell<u64>,
}

struct State {
    segments: BTreeMap<i64, Segment>,
    writer: SegmentWriter,
    cache: BatchCache,
    /// Idempotent producers' sequences, judged and updated under the
    /// append order together with offset assignment.
    producers: ProducerStates,
    /// Where each leader epoch starts in this log.
    epochs: EpochCache,
    unsynced_bytes: u64,
    last_sync: Instant,
    /// Why appends are refused: an I/O error, or the log was closed.
    halted: Option<Halt>,
}

/// Why a log refuses appends.
#[derive(Debug, Clone)]
enum Halt {
    /// An I/O error (a full disk, a device error); reopening recovers.
    Failed(String),
    Closed,
}

impl State {
    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn log_start(&self) -> i64 {
        self.segments.values().next().map_or(0, |s| s.base_offset)
    }

    fn next_offset(&self) -> i64 {
        self.active().next_offset
    }

    fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering it: sealed segments
    /// with a valid index checkpoint are trusted; the last segment is
    /// scanned from its checkpoint (or from the start), every batch's length,
    /// CRC and offset checked, and the log is cut at the first bad byte.
    pub async fn open(dir: impl Into<PathBuf>, config: LogConfig) -> Result<Log> {
        Self::open_with_cache_budget(dir, config, None).await
    }

    /// As [`Log::open`], with the batch cache also counting against a
    /// budget shared by the logs of a shard.
    pub async fn open_with_cache_budget(
        dir: impl Into<PathBuf>,
        config: LogConfig,
        cache_budget: Option<Rc<super::CacheBudget>>,
    ) -> Result<Log> {
        config.validate()?;
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::io("creating log directory", &dir, e))?;
        // Absolute, because glommio's directory handles reject relative paths.
        let dir = std::fs::canonicalize(&dir).map_err(|e| StorageError::io("resolving log directory", &dir, e))?;
        super::probe::ensure_probed(&dir).await?;
        let bases = list_segments(&dir)?;
        let mut segments: BTreeMap<i64, Segment> = BTreeMap::new();
        let mut changed_dir = false;
        for (i, &base) in bases.iter().enumerate() {
            let is_last = i + 1 == bases.len();
            let contiguous = segments
                .values()
                .next_back()
                .is_none_or(|prev| prev.next_offset == base);
            if !contiguous {
                // A hole or overlap: everything from here on is untrustworthy.
                for &later in &bases[i..] {
                    remove_segment_files(&dir, later).await?;
                }
                changed_dir = true;
                break;
            }
            let (seg, clean) = recover_segment(&dir, base, is_last, &config).await?;
            segments.insert(base, seg);
            if !clean {
                for &later in &bases[i + 1..] {
                    remove_segment_files(&dir, later).await?;
                }
                changed_dir |= i + 1 < bases.len();
                break;
            }
        }
        if segments.is_empty() {
            let seg = create_segment(&dir, 0, &config).await?;
            segments.insert(0, seg);
            changed_dir = true;
        }
        let active = segments.values().next_back().expect("just ensured");
        // The active segment must not keep a checkpoint that its next
        // appends would make stale; and its file is cut to its good end so
        // that no stale bytes beyond it can ever be mistaken for batches.
        Segment::remove_index(&dir, active.base_offset).await?;
        let file_len = active
            .file
            .file_size()
            .await
            .map_err(|e| StorageError::io("stat", &*active.path, e))?;
        if file_len != active.size {
            active
                .file
                .truncate(active.size)
                .await
                .map_err(|e| StorageError::io("truncating", &*active.path, e))?;
            active
                .file
                .fdatasync()
                .await
                .map_err(|e| StorageError::io("syncing", &*active.path, e))?;
        }
        let reserved = if config.preallocate {
            let want = reservation(active.size, active.size, &config);
            preallocate(&active.file, &active.path, want).await?;
            want
        } else {
            0
        };
        if changed_dir {
            sync_dir(&dir).await?;
        }
        let writer = SegmentWriter::open(
            active.file.clone(),
            active.path.to_path_buf(),
            active.size,
            config.write_chunk_bytes,
        )
        .await?;
        let next_offset = active.next_offset;
        if let Some(seg) = segments.values_mut().next_back() {
            seg.preallocated = reserved;
        }
        let inner = Rc::new(Inner {
            state: RefCell::new(State {
                segments,
                writer,
                cache: BatchCache::with_shared(config.cache_bytes_max, cache_budget),
                producers: ProducerStates::default(),
                epochs: EpochCache::default(),
                unsynced_bytes: 0,
                last_sync: Instant::now(),
                halted: None,
            }),
            dir,
            append_lock: Semaphore::new(1),
            io_lock: Semaphore::new(config.write_behind_chunks_max as u64),
            end: Watermark::new(next_offset),
            durable: Watermark::new(next_offset),
            sync_rounds: Watermark::new(0),
            syncing: Cell::new(false),
            background_sync: Cell::new(false),
            syncs: Cell::new(0),
            truncations: Cell::new(0),
            config,
        });
        if let FlushPolicy::Interval(every) = inner.config.flush {
            glommio::spawn_local(interval_syncer(Rc::downgrade(&inner), every)).detach();
        }
        let log = Log { inner };
        log.rebuild_from_log().await?;
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.inner.config
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.inner.state.borrow().log_start()
    }

    /// The log end offset: the offset the next appended record gets.
    pub fn next_offset(&self) -> i64 {
        self.inner.end.get()
    }

    /// Every offset below this is durable (fdatasynced).
    pub fn durable_offset(&self) -> i64 {
        self.inner.durable.get()
    }

    /// Every offset below this watermark is durable.
    pub fn durable_watermark(&self) -> &Watermark {
        &self.inner.durable
    }

    /// fdatasyncs issued by this log's group commit since it was opened.
    pub fn sync_count(&self) -> u64 {
        self.inner.syncs.get()
    }

    /// The log end as a watermark, for long-poll readers.
    pub fn end_watermark(&self) -> &Watermark {
        &self.inner.end
    }

    pub fn size_bytes(&self) -> u64 {
        self.inner.state.borrow().size_bytes()
    }

    pub fn segment_count(&self) -> usize {
        self.inner.state.borrow().segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_bases(&self) -> Vec<i64> {
        self.inner.state.borrow().segments.keys().copied().collect()
    }

    /// (hits, misses) of the batch cache.
    pub fn cache_hit_counts(&self) -> (u64, u64) {
        self.inner.state.borrow().cache.hit_counts()
    }

    /// Why the log refuses appends, if an I/O error failed it (a full
    /// disk, a device error); `None` while it is healthy. Closing it on
    /// purpose is not a failure.
    pub fn failure(&self) -> Option<String> {
        match &self.inner.state.borrow().halted {
            Some(Halt::Failed(reason)) => Some(reason.clone()),
            _ => None,
        }
    }

    fn check_failed(&self) -> Result<()> {
        let reason = match &self.inner.state.borrow().halted {
            None => return Ok(()),
            Some(Halt::Failed(reason)) => reason.clone(),
            Some(Halt::Closed) => "closed".to_string(),
        };
        Err(StorageError::Failed {
            path: self.inner.dir.clone(),
            reason,
        })
    }

    fn fail(&self, err: &StorageError) {
        let mut st = self.inner.state.borrow_mut();
        if st.halted.is_none() {
            tracing::error!(log = %self.inner.dir.display(), error = %err, "log write failed; refusing appends until reopened");
            st.halted = Some(Halt::Failed(err.to_string()));
        }
    }

    /// Validates `batch` (length, magic, CRC), stamps its base offset and
    /// leader epoch in place, and appends it. Returns once it is in the log
    /// (readable, in the batch cache, staged for writing) and, under
    /// [`FlushPolicy::EveryAppend`], durable. A batch that fails validation
    /// is rejected with nothing written. A batch of an idempotent producer
    /// must continue its sequence ([`StorageError::Sequence`] otherwise);
    /// a retry of one already here is answered with the original's offsets
    /// and not appended again ([`AppendInfo::duplicate`]).
    pub async fn append(&self, batch: BytesMut, leader_epoch: i32) -> Result<AppendInfo> {
        self.append_inner(batch, Origin::Leader { leader_epoch }, true).await
    }

    /// A follower's append of a batch exactly as the leader stored it: its
    /// base offset must be this log's end ([`StorageError::OffsetMismatch`]
    /// otherwise) and nothing in it is changed (same offsets, epoch, CRC).
    /// The producers' sequences and the epochs are taken from it as they
    /// are (the leader judged them). Returns once it is in the log, as
    /// [`Log::append_buffered`].
    pub async fn append_replica(&self, batch: BytesMut) -> Result<AppendInfo> {
        self.append_inner(batch, Origin::Replica, false).await
    }

    /// [`Log::append`] without waiting for durability: returns once the
    /// batch is in the log. Under [`FlushPolicy::EveryAppend`] a group-commit
    /// sync is started in the background (one per log at a time), so the
    /// durable watermark still follows the log end; wait for it with
    /// [`Log::wait_durable`]. This is what acks=1 waits for: the leader's
    /// write, as Kafka's page-cache write.
    pub async fn append_buffered(&self, batch: BytesMut, leader_epoch: i32) -> Result<AppendInfo> {
        self.append_inner(batch, Origin::Leader { leader_epoch }, false).await
    }

    async fn append_inner(&self, mut batch: BytesMut, origin: Origin, wait: bool) -> Result<AppendInfo> {
        let cfg = &self.inner.config;
        if batch.len() > cfg.batch_bytes_max {
            return Err(StorageError::BatchTooLarge {
                size: batch.len(),
                max: cfg.batch_bytes_max,
            });
        }
        let header = record::validate(&batch, cfg.batch_bytes_max)?;
        let _order = self
            .inner
            .append_lock
            .acquire_permit(1)
            .await
            .map_err(|e| StorageError::io("locking", &self.inner.dir, e))?;
        self.check_failed()?;
        if origin == Origin::Replica {
            let expected = self.inner.state.borrow().next_offset();
            if header.base_offset != expected {
                return Err(StorageError::OffsetMismatch {
                    expected,
                    got: header.base_offset,
                });
            }
        }
        let verdict = match origin {
            Origin::Leader { .. } => self.inner.state.borrow().producers.check(&header)?,
            Origin::Replica => Verdict::Append,
        };
        if let Verdict::Duplicate {
            base_offset,
            last_offset,
        } = verdict
        {
            drop(_order);
            if wait && cfg.flush == FlushPolicy::EveryAppend {
                self.wait_durable(last_offset + 1).await?;
            }
            return Ok(AppendInfo {
                base_offset,
                last_offset,
                max_timestamp: -1,
                duplicate: true,
            });
        }
        if self.needs_roll(&header) {
            self.roll().await?;
        }
        self.reserve_for(header.total_bytes() as u64).await?;
        while self.inner.state.borrow().writer.full_chunks() >= cfg.write_behind_chunks_max {
            self.write_full_chunk().await?;
        }
        let (info, filled) = {
            let mut st = self.inner.state.borrow_mut();
            let base = st.next_offset();
            let stamped = match origin {
                Origin::Leader { leader_epoch } => {
                    record::stamp(&mut batch, base, leader_epoch);
                    BatchHeader {
                        base_offset: base,
                        partition_leader_epoch: leader_epoch,
                        ..header
                    }
                }
                Origin::Replica => header,
            };
            st.epochs.assign(stamped.partition_leader_epoch, base);
            let bytes = batch.freeze();
            let position = st.writer.end();
            let filled = st.writer.append(&bytes);
            st.active_mut().record_batch(&stamped, position);
            st.cache.insert(base, stamped.next_offset(), bytes);
            st.producers.record(&stamped, record::now_ms());
            st.unsynced_bytes += stamped.total_bytes() as u64;
            let info = AppendInfo {
                base_offset: base,
                last_offset: stamped.last_offset(),
                max_timestamp: stamped.max_timestamp,
                duplicate: false,
            };
            (info, filled)
        };
        self.inner.end.set(info.last_offset + 1);
        drop(_order);
        self.after_append(info, filled, wait).await?;
        Ok(info)
    }

    /// Makes sure the active segment has blocks reserved for `bytes` more,
    /// so a full disk refuses this append before any of it is accepted.
    async fn reserve_for(&self, bytes: u64) -> Result<()> {
        let cfg = &self.inner.config;
        if !cfg.preallocate {
            return Ok(());
        }
        let (file, path, size, needed, reserved) = {
            let st = self.inner.state.borrow();
            let seg = st.active();
            // Staged bytes count from the aligned block they will be written at.
            let needed = super::writer::align_up(st.writer.end() + bytes);
            (seg.file.clone(), seg.path.clone(), seg.size, needed, seg.preallocated)
        };
        if needed <= reserved {
            return Ok(());
        }
        let want = reservation(size, needed, cfg);
        preallocate(&file, &path, want).await?;
        self.inner.state.borrow_mut().active_mut().preallocated = want;
        Ok(())
    }

    fn needs_roll(&self, header: &BatchHeader) -> bool {
        let st = self.inner.state.borrow();
        let seg = st.active();
        if seg.is_empty() {
            return false;
        }
        let cfg = &self.inner.config;
        let too_big = seg.size + header.total_bytes() as u64 > cfg.segment_bytes_max;
        // Age counts from when we created the segment, not from client
        // timestamps alone: a producer stamping old times would otherwise
        // roll a new segment for every batch.
        let born = seg.created_ms.unwrap_or(seg.first_timestamp);
        let too_old = crate::record::now_ms().saturating_sub(born) > cfg.segment_age_ms_max as i64;
        let offsets_full =
            seg.next_offset + i64::from(header.last_offset_delta) + 1 - seg.base_offset > i64::from(u32::MAX);
        too_big || too_old || offsets_full
    }

    /// `filled`: chunks the append filled, each to be written behind.
    async fn after_append(&self, info: AppendInfo, filled: usize, wait: bool) -> Result<()> {
        let unsynced = self.inner.state.borrow().unsynced_bytes;
        // Under every-append a sync is always running or starting, and it
        // writes every staged chunk itself: no write-behind then.
        match self.inner.config.flush {
            FlushPolicy::EveryAppend if wait => return self.wait_durable(info.last_offset + 1).await,
            FlushPolicy::EveryAppend => {
                self.sync_in_background();
                return Ok(());
            }
            FlushPolicy::Bytes(limit) if unsynced >= limit && !self.inner.syncing.get() => {
                let log = self.clone();
                let target = info.last_offset + 1;
                glommio::spawn_local(async move {
                    let _ = log.wait_durable(target).await;
                })
                .detach();
            }
            _ => {}
        }
        // One write-behind task per filled chunk; each writes the oldest one
        // left once it has its unit of the io lock (none, if a flush or a
        // waiting append took it first).
        for _ in 0..filled {
            let log = self.clone();
            glommio::spawn_local(async move {
                let _ = log.write_full_chunk().await;
            })
            .detach();
        }
        Ok(())
    }

    /// All of the io lock: every write before this has completed, and no
    /// other starts until the permit is dropped.
    async fn lock_io_alone(&self) -> Result<glommio::sync::Permit<'_>> {
        let units = self.inner.config.write_behind_chunks_max as u64;
        self.inner
            .io_lock
            .acquire_permit(units)
            .await
            .map_err(|e| StorageError::io("locking", &self.inner.dir, e))
    }

    /// Writes the oldest staged full chunk, if any, beside other full
    /// chunks being written (one unit of the io lock).
    async fn write_full_chunk(&self) -> Result<()> {
        let _io = self
            .inner
            .io_lock
            .acquire_permit(1)
            .await
            .map_err(|e| StorageError::io("locking", &self.inner.dir, e))?;
        let Some(chunk) = self.inner.state.borrow_mut().writer.take_full_chunk() else {
            return Ok(());
        };
        let end = chunk.end;
        let written = chunk.run().await;
        self.after_write(written, |w| w.chunk_written(end))
    }

    /// Records a finished write with `mark`, or fails the log.
    fn after_write(&self, written: Result<()>, mark: impl FnOnce(&mut SegmentWriter)) -> Result<()> {
        match written {
            Ok(()) => {
                mark(&mut self.inner.state.borrow_mut().writer);
                Ok(())
            }
            Err(e) => {
                self.fail(&e);
                Err(e)
            }
        }
    }

    /// Keeps one task syncing until the durable watermark reaches the log
    /// end; later appends ride on its rounds (group commit). The task holds
    /// the log only while a sync runs, so a closed or deleted log ends it.
    fn sync_in_background(&self) {
        if self.inner.background_sync.replace(true) {
            return;
        }
        let weak = Rc::downgrade(&self.inner);
        glommio::spawn_local(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let log = Log { inner };
                let target = log.inner.end.get();
                let closed = log.inner.state.borrow().halted.is_some();
                if closed || log.inner.durable.get() >= target {
                    log.inner.background_sync.set(false);
                    return;
                }
                if let Err(e) = log.wait_durable(target).await {
                    tracing::warn!(log = %log.inner.dir.display(), error = %e, "background sync failed");
                    log.inner.background_sync.set(false);
                    return;
                }
            }
        })
        .detach();
    }

    /// Writes staged data to the file (full chunks only unless `all`).
    async fn flush_staged(&self, all: bool) -> Result<()> {
        let _io = self.lock_io_alone().await?;
        self.flush_locked(all).await
    }

    async fn flush_locked(&self, all: bool) -> Result<()> {
        let pending = self.inner.state.borrow_mut().writer.take_flush(all);
        if pending.is_empty() {
            return Ok(());
        }
        let end = pending.end;
        let written = pending.run().await;
        self.after_write(written, |w| w.flushed(end))
    }

    /// Writes everything appended so far to the file (not yet durable).
    pub async fn flush(&self) -> Result<()> {
        self.flush_staged(true).await
    }

    /// Makes everything appended so far durable.
    pub async fn sync(&self) -> Result<()> {
        self.wait_durable(self.next_offset()).await
    }

    /// Waits until every offset below `offset` is durable, starting an
    /// fdatasync if none is running. Group commit: every waiter that arrives
    /// while a sync runs is covered by the next one, so N concurrent
    /// producers cost about two fdatasyncs, not N.
    pub async fn wait_durable(&self, offset: i64) -> Result<()> {
        loop {
            if self.inner.durable.get() >= offset {
                return Ok(());
            }
            self.check_failed()?;
            if self.inner.syncing.get() {
                let round = self.inner.sync_rounds.get();
                self.inner.sync_rounds.wait_for(round + 1).await;
                continue;
            }
            self.inner.syncing.set(true);
            let target = self.inner.end.get();
            let truncations = self.inner.truncations.get();
            let result = self.sync_once().await;
            self.inner.syncing.set(false);
            // A truncation while the fdatasync ran (it no longer holds the
            // io lock) may have cut below `target`: claim nothing then; the
            // next round syncs what is there.
            if result.is_ok() && self.inner.truncations.get() == truncations {
                self.inner.durable.advance(target.min(self.inner.end.get()));
            }
            self.inner.sync_rounds.set(self.inner.sync_rounds.get() + 1);
            result?;
        }
    }

    async fn sync_once(&self) -> Result<()> {
        let _io = self.lock_io_alone().await?;
        self.flush_locked(true).await?;
        let (file, path) = {
            let mut st = self.inner.state.borrow_mut();
            st.unsynced_bytes = 0;
            st.last_sync = Instant::now();
            let seg = st.active();
            (seg.file.clone(), seg.path.clone())
        };
        // Everything up to the caller's target is written. The fdatasync
        // does not need the lock: writes that start meanwhile (write-behind
        // flushes, which may rewrite the tail block with more bytes after
        // the same ones) are not claimed by this round, and appends no
        // longer stall behind a long sync.
        drop(_io);
        self.inner.syncs.set(self.inner.syncs.get() + 1);
        let started = Instant::now();
        let synced = file.fdatasync().await;
        crate::metrics::with(|m| m.fsync_latency.observe(started.elapsed()));
        if let Err(e) = synced {
            let err = StorageError::io("syncing", &*path, e);
            self.fail(&err);
            return Err(err);
        }
        Ok(())
    }

    /// Seals the active segment (synced, index checkpointed) and starts a
    /// new one at the log end. The new file is created and preallocated
    /// first, so a full disk fails the roll with nothing changed.
    async fn roll(&self) -> Result<()> {
        let cfg = &self.inner.config;
        let dir = &self.inner.dir;
        let next = self.inner.state.borrow().next_offset();
        let new_seg = create_segment(dir, next, cfg).await?;
        let _io = self.lock_io_alone().await?;
        let sealed = async {
            self.flush_locked(true).await?;
            let (file, path) = {
                let st = self.inner.state.borrow();
                (st.active().file.clone(), st.active().path.clone())
            };
            file.fdatasync()
                .await
                .map_err(|e| StorageError::io("syncing", &*path, e))?;
            // Trim the preallocated tail so sealed files are exactly their size.
            let size = self.inner.state.borrow().active().size;
            file.truncate(size)
                .await
                .map_err(|e| StorageError::io("truncating", &*path, e))?;
            Ok::<(), StorageError>(())
        }
        .await;
        if let Err(e) = sealed {
            let _ = remove_segment_files(dir, next).await;
            self.fail(&e);
            return Err(e);
        }
        self.inner.durable.advance(next);
        self.write_active_index().await?;
        let writer = SegmentWriter::open(
            new_seg.file.clone(),
            new_seg.path.to_path_buf(),
            0,
            cfg.write_chunk_bytes,
        )
        .await?;
        {
            let mut st = self.inner.state.borrow_mut();
            st.segments.insert(next, new_seg);
            st.writer = writer;
        }
        sync_dir(dir).await?;
        self.write_producer_snapshot().await;
        Ok(())
    }

    async fn write_active_index(&self) -> Result<()> {
        let files = self.inner.state.borrow().active().encode_index();
        files.write(&self.inner.dir).await
    }

    /// Reads whole batches starting with the one that holds `offset`: at
    /// most `max_bytes` but always at least one batch if any is available,
    /// and no batch that starts at or after `max_offset` (the high
    /// watermark). Recent batches come from the cache as the appended
    /// `Bytes`; older ones with one read and one copy from the segment.
    pub async fn read(&self, offset: i64, max_bytes: usize, max_offset: i64) -> Result<LogRead> {
        let (log_start, log_end) = {
            let st = self.inner.state.borrow();
            (st.log_start(), st.next_offset())
        };
        if offset < log_start || offset > log_end {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start,
                log_end,
            });
        }
        let max_offset = max_offset.min(log_end);
        if offset >= max_offset {
            return Ok(LogRead {
                next_offset: offset,
                ..LogRead::default()
            });
        }
        if let Some((batches, bytes, next_offset)) =
            self.inner.state.borrow_mut().cache.read(offset, max_bytes, max_offset)
        {
            crate::metrics::with(|m| m.cache_hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            return Ok(LogRead {
                batches,
                bytes,
                next_offset,
                from_cache: true,
            });
        }
        crate::metrics::with(|m| m.cache_misses.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        // At most two rounds: if the batch holding `offset` is still staged,
        // one flush writes it (it was appended before the flush began).
        for _ in 0..2 {
            let (span, seg_next, staged) = {
                let st = self.inner.state.borrow();
                let Some((_, seg)) = st.segments.range(..=offset).next_back() else {
                    return Err(StorageError::OffsetOutOfRange {
                        offset,
                        log_start: st.log_start(),
                        log_end: st.next_offset(),
                    });
                };
                let is_active = seg.base_offset == st.active().base_offset;
                let readable = if is_active { st.writer.written() } else { seg.size };
                (
                    seg.span_for_offset(offset, readable),
                    seg.next_offset,
                    readable < seg.size,
                )
            };
            if offset >= seg_next {
                // The segment ends before `offset` (it is empty): nothing yet.
                break;
            }
            let got = span
                .read(offset, max_bytes, max_offset, self.scan_batch_limit())
                .await?;
            if got.batches.is_empty() && staged {
                self.flush().await?;
                continue;
            }
            return Ok(LogRead {
                batches: got.batches,
                bytes: got.bytes,
                next_offset: got.next_offset,
                from_cache: false,
            });
        }
        Ok(LogRead {
            next_offset: offset,
            ..LogRead::default()
        })
    }

    /// Batches on disk were accepted under some `batch_bytes_max`, perhaps
    /// a larger one than today's; scans allow a generous bound.
    fn scan_batch_limit(&self) -> usize {
        self.inner.config.batch_bytes_max.max(64 << 20)
    }

    /// The offset of the first record whose timestamp is at or after
    /// `timestamp`, or `None` if every record is older.
    pub async fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<i64>> {
        self.flush().await?;
        let spans: Vec<_> = {
            let st = self.inner.state.borrow();
            let written = st.writer.written();
            let active = st.active().base_offset;
            st.segments
                .values()
                .filter_map(|s| s.span_for_timestamp(timestamp, if s.base_offset == active { written } else { s.size }))
                .collect()
        };
        for span in spans {
            if let Some(offset) = span.offset_for_timestamp(timestamp, self.scan_batch_limit()).await? {
                return Ok(Some(offset));
            }
        }
        Ok(None)
    }

    /// Removes every batch that ends after `offset`, so the log ends at the
    /// start of the batch holding `offset` (at `offset` when it is a batch
    /// boundary). Returns the new log end. Used by replication to drop a
    /// divergent tail.
    pub async fn truncate_to(&self, offset: i64) -> Result<i64> {
        self.cut(offset, false).await
    }

    /// Empties the log and starts it again at `offset`: a follower whose
    /// log ends below its leader's log start (retention removed what it
    /// lacks) continues from there. Returns the new log end (`offset`).
    pub async fn restart_at(&self, offset: i64) -> Result<i64> {
        self.cut(offset, true).await
    }

    /// [`Log::truncate_to`], or with `restart` every segment goes and the
    /// log starts at `offset`.
    async fn cut(&self, offset: i64, restart: bool) -> Result<i64> {
        let dir = self.inner.dir.clone();
        let cfg = self.inner.config.clone();
        let _order = self
            .inner
            .append_lock
            .acquire_permit(1)
            .await
            .map_err(|e| StorageError::io("locking", &dir, e))?;
        self.check_failed()?;
        let _io = self.lock_io_alone().await?;
        self.flush_locked(true).await?;
        if !restart && offset >= self.inner.state.borrow().next_offset() {
            return Ok(self.next_offset());
        }
        self.inner.truncations.set(self.inner.truncations.get() + 1);
        let log_start = self.inner.state.borrow().log_start();
        // Whole segments starting at or after the cut go. A cut at or below
        // the log start empties the log, which then starts at `offset`.
        let doomed: Vec<i64> = {
            let st = self.inner.state.borrow();
            st.segments
                .keys()
                .copied()
                .filter(|&b| restart || b >= offset || offset <= log_start)
                .collect()
        };
        for base in &doomed {
            let seg = self.inner.state.borrow_mut().segments.remove(base);
            remove_segment_files(&dir, *base).await?;
            if let Some(seg) = seg {
                close_file(seg.file).await;
            }
        }
        if self.inner.state.borrow().segments.is_empty() {
            let start = offset.max(0);
            let seg = create_segment(&dir, start, &cfg).await?;
            self.inner.state.borrow_mut().segments.insert(start, seg);
        } else {
            let base = self.inner.state.borrow().active().base_offset;
            Segment::remove_index(&dir, base).await?;
            let span = self.inner.state.borrow().active().span_for_offset(offset, u64::MAX);
            if let Some((pos, cut_base)) = span.find_cut(offset, self.scan_batch_limit()).await? {
                let (file, path) = {
                    let mut st = self.inner.state.borrow_mut();
                    let seg = st.active_mut();
                    seg.cut_at(pos, cut_base);
                    (seg.file.clone(), seg.path.clone())
                };
                file.truncate(pos)
                    .await
                    .map_err(|e| StorageError::io("truncating", &*path, e))?;
                file.fdatasync()
                    .await
                    .map_err(|e| StorageError::io("syncing", &*path, e))?;
            }
        }
        let (file, path, size) = {
            let st = self.inner.state.borrow();
            (st.active().file.clone(), st.active().path.clone(), st.active().size)
        };
        let reserved = if cfg.preallocate {
            let want = reservation(size, size, &cfg);
            preallocate(&file, &path, want).await?;
            want
        } else {
            0
        };
        let writer = SegmentWriter::open(file, path.to_path_buf(), size, cfg.write_chunk_bytes).await?;
        let new_end = {
            let mut st = self.inner.state.borrow_mut();
            st.writer = writer;
            st.active_mut().preallocated = reserved;
            let end = st.next_offset();
            st.cache.truncate_to(end);
            end
        };
        self.inner.end.set(new_end);
        if self.inner.durable.get() > new_end {
            self.inner.durable.set(new_end);
        }
        sync_dir(&dir).await?;
        // The producers' sequences must match the log again; nothing is
        // staged now, and appends still wait on the order lock.
        drop(_io);
        self.rebuild_from_log().await?;
        Ok(new_end)
    }

    /// Deletes whole sealed segments, oldest first, while they are older
    /// than `retention_ms` (by their newest timestamp, against `now_ms`) or
    /// the log is larger than `retention_bytes`. The active segment is never
    /// deleted. Moves the log start offset.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<RetentionOutcome> {
        let cfg = &self.inner.config;
        let expired = self
            .inner
            .state
            .borrow_mut()
            .producers
            .expire(now_ms, cfg.producer_id_expiration_ms);
        if expired > 0 {
            tracing::debug!(log = %self.inner.dir.display(), expired, "forgot idle producers");
        }
        self.remove_oldest_while(|st, oldest| {
            let expired = cfg
                .retention_ms
                .is_some_and(|ms| oldest.max_timestamp < now_ms.saturating_sub(ms as i64));
            let oversize = cfg
                .retention_bytes
                .is_some_and(|max| st.size_bytes() - oldest.size >= max);
            expired || oversize
        })
        .await
    }

    /// Deletes the oldest segments that lie wholly below `offset` (never the
    /// active one): how a log whose live content was rewritten further on
    /// (the offsets topic's snapshot) drops its history.
    pub async fn delete_segments_below(&self, offset: i64) -> Result<RetentionOutcome> {
        self.remove_oldest_while(|_, oldest| oldest.next_offset <= offset).await
    }

    /// Removes the oldest segment while there are two or more and `doomed`
    /// says so.
    async fn remove_oldest_while(&self, doomed: impl Fn(&State, &Segment) -> bool) -> Result<RetentionOutcome> {
        let dir = self.inner.dir.clone();
        let _order = self
            .inner
            .append_lock
            .acquire_permit(1)
            .await
            .map_err(|e| StorageError::io("locking", &dir, e))?;
        let mut outcome = RetentionOutcome::default();
        loop {
            let victim = {
                let st = self.inner.state.borrow();
                let mut segments = st.segments.iter();
                match (segments.next(), segments.next()) {
                    (Some((&base, oldest)), Some(_)) if doomed(&st, oldest) => Some((base, oldest.size)),
                    _ => None,
                }
            };
            let Some((base, size)) = victim else { break };
            let seg = self.inner.state.borrow_mut().segments.remove(&base);
            remove_segment_files(&dir, base).await?;
            if let Some(seg) = seg {
                close_file(seg.file).await;
            }
            outcome.segments_deleted += 1;
            outcome.bytes_deleted += size;
        }
        if outcome.segments_deleted > 0 {
            sync_dir(&dir).await?;
        }
        outcome.log_start_offset = self.log_start_offset();
        Ok(outcome)
    }

    /// Flushes, syncs and checkpoints the active segment's index, so the
    /// next open need not scan it. Appends after this fail.
    pub async fn close(self) -> Result<()> {
        let dir = self.inner.dir.clone();
        let _order = self
            .inner
            .append_lock
            .acquire_permit(1)
            .await
            .map_err(|e| StorageError::io("locking", &dir, e))?;
        self.check_failed()?;
        self.sync().await?;
        self.write_active_index().await?;
        self.write_producer_snapshot().await;
        self.inner.state.borrow_mut().halted = Some(Halt::Closed);
        drop(_order);
        // Close the files now if this is the last handle: a dropped glommio
        // file is closed only on a later reactor cycle, which never comes if
        // the executor is about to end, and a deleted segment's space is
        // only freed once its file is closed.
        if let Ok(inner) = Rc::try_unwrap(self.inner) {
            let State { segments, writer, .. } = inner.state.into_inner();
            drop(writer);
            for seg in segments.into_values() {
                close_file(seg.file).await;
            }
        }
        Ok(())
    }
}

/// Closes a segment file now if nobody else (a reader) still holds it;
/// otherwise the last holder's drop closes it.
async fn close_file(file: Rc<DmaFile>) {
    if let Ok(file) = Rc::try_unwrap(file) {
        if let Err(e) = file.close().await {
            tracing::warn!(error = %e, "closing segment file failed");
        }
    }
}

/// Periodic sync for [`FlushPolicy::Interval`]; ends when the log is dropped.
async fn interval_syncer(log: Weak<Inner>, every: std::time::Duration) {
    loop {
        glommio::timer::sleep(every).await;
        let Some(inner) = log.upgrade() else { return };
        let log = Log { inner };
        let due = {
            let st = log.inner.state.borrow();
            st.halted.is_none() && st.unsynced_bytes > 0 && st.last_sync.elapsed() >= every
        };
        if due {
            if let Err(e) = log.sync().await {
                tracing::warn!(log = %log.inner.dir.display(), error = %e, "interval sync failed");
            }
        }
    }
}

/// Base offsets of the `.log` files in `dir`, ascending. Leftover temp files
/// from an interrupted checkpoint are removed.
fn list_segments(dir: &Path) -> Result<Vec<i64>> {
    let mut bases = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io("listing", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("listing", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = segment::parse_base_offset(name, "log") {
            bases.push(base);
        } else if name.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Opens and recovers one segment. Returns it and whether it ended cleanly
/// (false: it was cut short, so later segments must go).
async fn recover_segment(dir: &Path, base: i64, is_last: bool, cfg: &LogConfig) -> Result<(Segment, bool)> {
    let path: Rc<Path> = Rc::from(segment::file_path(dir, base, "log"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .dma_open(&*path)
        .await
        .map_err(|e| StorageError::io("opening segment", &*path, e))?;
    let file_len = file
        .file_size()
        .await
        .map_err(|e| StorageError::io("stat", &*path, e))?;
    let mut seg = Segment::new(base, Rc::new(file), path.clone(), cfg.index_interval_bytes);
    if let Some((offsets, times, cp)) = Segment::load_index(dir, base, file_len).await {
        seg.restore(offsets, times, &cp);
        if !is_last && cp.covered_bytes == file_len {
            return Ok((seg, true));
        }
    }
    let end = seg.recover(file_len, cfg.batch_bytes_max.max(64 << 20)).await?;
    let clean = matches!(end, WalkEnd::Limit) || is_last;
    if !matches!(end, WalkEnd::Limit) {
        // Less than a block past the end is the zero padding of the last
        // direct write: what any stop without a clean close leaves.
        if file_len - seg.size < super::writer::BLOCK_BYTES {
            tracing::info!(segment = %path.display(), next_offset = seg.next_offset, "recovered after an unclean stop");
        } else {
            tracing::warn!(segment = %path.display(), good_bytes = seg.size, file_bytes = file_len,
                next_offset = seg.next_offset, "recovery cut the log at the first invalid batch");
        }
    }
    if !clean || !is_last {
        // A sealed segment whose index was missing or stale, or one cut short
        // in the middle of the log: rewrite its file length and checkpoint.
        if seg.size != file_len {
            seg.file
                .truncate(seg.size)
                .await
                .map_err(|e| StorageError::io("truncating", &*path, e))?;
            seg.file
                .fdatasync()
                .await
                .map_err(|e| StorageError::io("syncing", &*path, e))?;
        }
        if clean {
            seg.write_index(dir).await?;
        }
    }
    Ok((seg, clean))
}

async fn create_segment(dir: &Path, base: i64, cfg: &LogConfig) -> Result<Segment> {
    let path: Rc<Path> = Rc::from(segment::file_path(dir, base, "log"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&*path)
        .await
        .map_err(|e| StorageError::io("creating segment", &*path, e))?;
    let mut reserved = 0;
    if cfg.preallocate {
        reserved = reservation(0, 0, cfg);
        if let Err(e) = preallocate(&file, &path, reserved).await {
            let _ = glommio::io::remove(&*path).await;
            return Err(e);
        }
    }
    let mut seg = Segment::new(base, Rc::new(file), path, cfg.index_interval_bytes);
    seg.created_ms = Some(crate::record::now_ms());
    seg.preallocated = reserved;
    Ok(seg)
}

/// How many bytes of a segment to have reserved when it must hold `needed`
/// and holds `size`: a step ahead of the larger, block aligned, never past
/// the segment size limit (unless `needed` itself is).
fn reservation(size: u64, needed: u64, cfg: &LogConfig) -> u64 {
    let want = super::writer::align_up(needed.max(size) + cfg.preallocate_step_bytes);
    want.min(cfg.segment_bytes_max.max(super::writer::align_up(needed)))
}

async fn preallocate(file: &DmaFile, path: &Path, bytes: u64) -> Result<()> {
    file.pre_allocate(bytes, true)
        .await
        .map_err(|e| StorageError::io("preallocating", path, e))
}

async fn remove_segment_files(dir: &Path, base: i64) -> Result<()> {
    Segment::remove_index(dir, base).await?;
    let path = segment::file_path(dir, base, "log");
    match glommio::io::remove(&path).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let e = std::io::Error::from(e);
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(StorageError::io("removing segment", path, e))
            }
        }
    }
}

async fn sync_dir(dir: &Path) -> Result<()> {
    let d = glommio::io::Directory::open(dir)
        .await
        .map_err(|e| StorageError::io("opening directory", dir, e))?;
    d.sync()
        .await
        .map_err(|e| StorageError::io("syncing directory", dir, e))?;
    d.close()
        .await
        .map_err(|e| StorageError::io("closing directory", dir, e))
}
