//! One segment of a partition log: the `<base offset>.log` file of whole
//! record batches, its sparse offset and time indexes, and the walk that
//! reads batches back from it.
//!
//! Invariants:
//! - the file holds whole batches back to back from position 0 to `size`,
//!   with consecutive offsets from `base_offset` to `next_offset`;
//! - relative offsets and positions fit in u32 (the log rolls before not);
//! - index entries point at batch starts inside `[0, size)`.
//!
//! Owned by the log, so by the shard that owns the partition.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use glommio::io::DmaFile;

use super::error::{Result, StorageError};
use super::index::{self, Checkpoint, OffsetIndex, TimeIndex};
use crate::record::{self, BatchHeader, RecordError, LOG_OVERHEAD_BYTES};

/// Bytes read from disk at a time when walking batches.
const WINDOW_BYTES: u64 = 1 << 20;

/// `<dir>/<20-digit base offset>.<ext>`
pub fn file_path(dir: &Path, base_offset: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}"))
}

/// The base offset named by a segment file name such as `00000000000000000042.log`.
pub fn parse_base_offset(name: &str, ext: &str) -> Option<i64> {
    let stem = name.strip_suffix(ext)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Why a walk over batches stopped.
#[derive(Debug)]
pub enum WalkEnd {
    /// Reached the limit exactly at a batch boundary.
    Limit,
    /// The visitor asked to stop before the batch at this position.
    Stopped,
    /// The bytes at the stop position are not a whole batch (torn tail,
    /// garbage, or a batch running past the limit).
    Invalid(RecordError),
}

/// What a visitor wants after seeing a batch.
pub enum Step {
    Continue,
    Stop,
}

/// Reads the batches in `[start, limit)` of `file` in large windows and
/// hands each whole batch to `visit` with its position. Returns where and
/// why it stopped.
pub async fn walk<F>(
    file: &DmaFile,
    path: &Path,
    start: u64,
    limit: u64,
    max_batch_bytes: usize,
    mut visit: F,
) -> Result<(u64, WalkEnd)>
where
    F: FnMut(u64, &[u8]) -> Result<Step>,
{
    let mut pos = start;
    if pos >= limit {
        return Ok((pos, WalkEnd::Limit));
    }
    let mut window_pos = start;
    let mut want = WINDOW_BYTES.min(limit - start);
    let mut window = read_span(file, path, start, want).await?;
    loop {
        if pos >= limit {
            return Ok((pos, WalkEnd::Limit));
        }
        let in_window = (pos - window_pos) as usize;
        let avail = &window[in_window.min(window.len())..];
        let size = match record::batch_size(avail, max_batch_bytes) {
            Err(e) => return Ok((pos, WalkEnd::Invalid(e))),
            Ok(Some(size)) => size,
            Ok(None) => {
                let window_short = (window.len() as u64) < want;
                if window_short || window_pos + (window.len() as u64) >= limit || avail.len() >= LOG_OVERHEAD_BYTES {
                    return Ok((pos, WalkEnd::Invalid(RecordError::TooShort)));
                }
                // Header straddles the window end: read on from here.
                window_pos = pos;
                want = WINDOW_BYTES.min(limit - pos);
                window = read_span(file, path, pos, want).await?;
                continue;
            }
        };
        if pos + size as u64 > limit {
            return Ok((pos, WalkEnd::Invalid(RecordError::TooShort)));
        }
        if avail.len() < size {
            window_pos = pos;
            want = (size as u64).max(WINDOW_BYTES).min(limit - pos);
            window = read_span(file, path, pos, want).await?;
            if window.len() < size {
                return Ok((pos, WalkEnd::Invalid(RecordError::TooShort)));
            }
            continue;
        }
        match visit(pos, &avail[..size])? {
            Step::Continue => pos += size as u64,
            Step::Stop => return Ok((pos, WalkEnd::Stopped)),
        }
    }
}

async fn read_span(file: &DmaFile, path: &Path, pos: u64, len: u64) -> Result<glommio::io::ReadResult> {
    file.read_at(pos, len as usize)
        .await
        .map_err(|e| StorageError::io("reading segment", path, e))
}

/// Batches read from a segment: one contiguous copy, sliced per batch.
#[derive(Debug, Default)]
pub struct SegmentRead {
    pub batches: Vec<Bytes>,
    pub bytes: usize,
    pub next_offset: i64,
}

/// One segment and its indexes.
pub struct Segment {
    pub base_offset: i64,
    pub file: Rc<DmaFile>,
    pub path: Rc<Path>,
    /// Logical size: bytes of whole batches.
    pub size: u64,
    pub next_offset: i64,
    /// Max timestamp of the first batch, -1 while empty (roll by age).
    pub first_timestamp: i64,
    /// Wall-clock ms when this process created the segment; `None` for a
    /// segment found on disk at open (then its first batch's timestamp is
    /// the best we know).
    pub created_ms: Option<i64>,
    /// Largest timestamp in the segment, -1 while empty (time retention).
    pub max_timestamp: i64,
    pub offset_index: OffsetIndex,
    pub time_index: TimeIndex,
    /// Bytes of the file reserved with fallocate (appends stay below).
    pub preallocated: u64,
    bytes_since_index: u64,
    index_interval_bytes: u64,
}

impl Segment {
    pub fn new(base_offset: i64, file: Rc<DmaFile>, path: Rc<Path>, index_interval_bytes: u64) -> Self {
        Segment {
            base_offset,
            file,
            path,
            size: 0,
            next_offset: base_offset,
            first_timestamp: -1,
            created_ms: None,
            max_timestamp: -1,
            offset_index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            preallocated: 0,
            bytes_since_index: 0,
            index_interval_bytes,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.next_offset == self.base_offset
    }

    fn relative(&self, offset: i64) -> u32 {
        u32::try_from((offset - self.base_offset).max(0)).unwrap_or(u32::MAX)
    }

    /// Accounts for a batch placed at `position` (appended or recovered).
    pub fn record_batch(&mut self, header: &BatchHeader, position: u64) {
        assert_eq!(
            header.base_offset, self.next_offset,
            "batch offsets must be consecutive"
        );
        assert_eq!(position, self.size, "batches must be back to back");
        let size = header.total_bytes() as u64;
        if position > 0 && self.bytes_since_index >= self.index_interval_bytes {
            self.offset_index
                .push(self.relative(header.base_offset), position as u32);
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += size;
        if self.first_timestamp < 0 {
            self.first_timestamp = header.max_timestamp;
        }
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.time_index
                .push(header.max_timestamp, self.relative(header.base_offset));
        }
        self.size = position + size;
        self.next_offset = header.next_offset();
    }

    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            base_offset: self.base_offset,
            next_offset: self.next_offset,
            covered_bytes: self.size,
            first_timestamp: self.first_timestamp,
            max_timestamp: self.max_timestamp,
        }
    }

    /// Adopts a checkpoint read from the index files.
    pub fn restore(&mut self, offsets: OffsetIndex, times: TimeIndex, cp: &Checkpoint) {
        self.offset_index = offsets;
        self.time_index = times;
        self.size = cp.covered_bytes;
        self.next_offset = cp.next_offset;
        self.first_timestamp = cp.first_timestamp;
        self.max_timestamp = cp.max_timestamp;
        // Conservative: index the next batch scanned after the checkpoint.
        self.bytes_since_index = self.index_interval_bytes;
    }

    /// Validates and indexes the batches from `self.size` on, up to
    /// `file_len`, stopping at the first torn, corrupt or out-of-sequence
    /// batch. Returns why it stopped; `self.size` is then the good end.
    pub async fn recover(&mut self, file_len: u64, max_batch_bytes: usize) -> Result<WalkEnd> {
        let file = self.file.clone();
        let path = self.path.clone();
        let start = self.size;
        let (_, end) = walk(&file, &path, start, file_len, max_batch_bytes, |pos, bytes| {
            let header = match record::validate(bytes, max_batch_bytes) {
                Ok(h) => h,
                Err(_) => return Ok(Step::Stop),
            };
            if header.base_offset != self.next_offset || header.last_offset_delta < 0 {
                return Ok(Step::Stop);
            }
            if header.next_offset() - self.base_offset > i64::from(u32::MAX) {
                return Ok(Step::Stop);
            }
            self.record_batch(&header, pos);
            Ok(Step::Continue)
        })
        .await?;
        Ok(end)
    }

    /// Where a scan for `offset` starts (from the offset index) and the
    /// file it reads, detached from the segment so that it can be awaited
    /// without holding a borrow of the log's state.
    pub fn span_for_offset(&self, offset: i64, readable: u64) -> Span {
        Span {
            file: self.file.clone(),
            path: self.path.clone(),
            start: u64::from(self.offset_index.lookup(self.relative(offset))),
            limit: self.size.min(readable),
        }
    }

    /// The span to scan for the first record at or after `timestamp`, or
    /// `None` if no record in this segment is that late.
    pub fn span_for_timestamp(&self, timestamp: i64, readable: u64) -> Option<Span> {
        if self.max_timestamp < timestamp {
            return None;
        }
        let rel = self.time_index.lookup(timestamp);
        Some(Span {
            file: self.file.clone(),
            path: self.path.clone(),
            start: u64::from(self.offset_index.lookup(rel)),
            limit: self.size.min(readable),
        })
    }

    /// Drops the in-memory view of everything from `position` (a batch
    /// start whose base offset is `offset`) on.
    pub fn cut_at(&mut self, position: u64, offset: i64) {
        assert!(position <= self.size && offset >= self.base_offset);
        self.offset_index.truncate_at_position(position as u32);
        self.time_index.truncate_at_offset(self.relative(offset));
        self.size = position;
        self.next_offset = offset;
        self.max_timestamp = self.time_index.entries().last().map_or(-1, |&(ts, _)| ts);
        if self.is_empty() {
            self.first_timestamp = -1;
        }
        self.bytes_since_index = self.index_interval_bytes;
    }

    /// Encodes both index files as a checkpoint of the current state.
    pub fn encode_index(&self) -> IndexFiles {
        let cp = self.checkpoint();
        IndexFiles {
            base_offset: self.base_offset,
            offsets: index::encode_offset_index(&self.offset_index, &cp),
            times: index::encode_time_index(&self.time_index, &cp),
        }
    }

    /// Writes both index files as a checkpoint of the current state.
    pub async fn write_index(&self, dir: &Path) -> Result<()> {
        self.encode_index().write(dir).await
    }

    /// Reads both index files; `None` if either is missing, damaged, or
    /// disagrees with the other or with the log file's length.
    pub async fn load_index(
        dir: &Path,
        base_offset: i64,
        file_len: u64,
    ) -> Option<(OffsetIndex, TimeIndex, Checkpoint)> {
        let offsets = read_small_file(&file_path(dir, base_offset, "index")).await?;
        let times = read_small_file(&file_path(dir, base_offset, "timeindex")).await?;
        let (oi, cp) = index::decode_offset_index(&offsets).ok()?;
        let (ti, cp2) = index::decode_time_index(&times).ok()?;
        if cp != cp2 || cp.base_offset != base_offset || cp.covered_bytes > file_len {
            return None;
        }
        Some((oi, ti, cp))
    }

    /// Removes the index files (the segment's data is about to change).
    pub async fn remove_index(dir: &Path, base_offset: i64) -> Result<()> {
        for ext in ["index", "timeindex"] {
            let path = file_path(dir, base_offset, ext);
            match glommio::io::remove(&path).await {
                Ok(()) => {}
                Err(e) => {
                    let e = std::io::Error::from(e);
                    if e.kind() != std::io::ErrorKind::NotFound {
                        return Err(StorageError::io("removing index", path, e));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Encoded index files of one segment, ready to be written.
pub struct IndexFiles {
    base_offset: i64,
    offsets: Vec<u8>,
    times: Vec<u8>,
}

impl IndexFiles {
    /// Writes each file to a temp file, fdatasyncs it and renames it over
    /// the old one, so a crash leaves either checkpoint whole.
    pub async fn write(&self, dir: &Path) -> Result<()> {
        write_file_atomic(&file_path(dir, self.base_offset, "index"), &self.offsets).await?;
        write_file_atomic(&file_path(dir, self.base_offset, "timeindex"), &self.times).await
    }
}

/// A byte range of a segment file to scan, with the file kept open.
pub struct Span {
    pub file: Rc<DmaFile>,
    pub path: Rc<Path>,
    pub start: u64,
    pub limit: u64,
}

impl Span {
    /// Reads whole batches holding `offset` and after: at most `max_bytes`
    /// (but at least one batch), none starting at or after `max_offset`.
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        max_batch_bytes: usize,
    ) -> Result<SegmentRead> {
        let mut out = BytesMut::new();
        let mut bounds: Vec<(usize, usize)> = Vec::new();
        let mut next_offset = offset;
        walk(
            &self.file,
            &self.path,
            self.start,
            self.limit,
            max_batch_bytes,
            |_, bytes| {
                let header = BatchHeader::parse(bytes)?;
                if header.next_offset() <= offset {
                    return Ok(Step::Continue);
                }
                if header.base_offset >= max_offset || (!bounds.is_empty() && out.len() + bytes.len() > max_bytes) {
                    return Ok(Step::Stop);
                }
                if out.is_empty() {
                    out.reserve(bytes.len().max(max_bytes.min(WINDOW_BYTES as usize)));
                }
                bounds.push((out.len(), out.len() + bytes.len()));
                out.extend_from_slice(bytes);
                next_offset = header.next_offset();
                Ok(Step::Continue)
            },
        )
        .await?;
        let all = out.freeze();
        let batches = bounds.iter().map(|&(a, b)| all.slice(a..b)).collect();
        Ok(SegmentRead {
            batches,
            bytes: all.len(),
            next_offset,
        })
    }

    /// Position and base offset of the first batch that ends after
    /// `offset`: where a truncation to `offset` cuts. `None` if none does.
    pub async fn find_cut(&self, offset: i64, max_batch_bytes: usize) -> Result<Option<(u64, i64)>> {
        let mut found = None;
        walk(
            &self.file,
            &self.path,
            self.start,
            self.limit,
            max_batch_bytes,
            |pos, bytes| {
                let header = BatchHeader::parse(bytes)?;
                if header.next_offset() > offset {
                    found = Some((pos, header.base_offset));
                    return Ok(Step::Stop);
                }
                Ok(Step::Continue)
            },
        )
        .await?;
        Ok(found)
    }

    /// The offset of the first record with a timestamp at or after
    /// `timestamp`, if any record in the span has one.
    pub async fn offset_for_timestamp(&self, timestamp: i64, max_batch_bytes: usize) -> Result<Option<i64>> {
        let mut found = None;
        walk(
            &self.file,
            &self.path,
            self.start,
            self.limit,
            max_batch_bytes,
            |_, bytes| {
                let header = BatchHeader::parse(bytes)?;
                if header.max_timestamp < timestamp {
                    return Ok(Step::Continue);
                }
                let batch = Bytes::copy_from_slice(bytes);
                for rec in record::records(&batch, max_batch_bytes.saturating_mul(64))? {
                    let rec = rec?;
                    if rec.timestamp >= timestamp {
                        found = Some(rec.offset);
                        return Ok(Step::Stop);
                    }
                }
                // Only the batch's max timestamp reached it (log append time).
                found = Some(header.base_offset);
                Ok(Step::Stop)
            },
        )
        .await?;
        Ok(found)
    }
}

/// Reads a whole (small) file with direct I/O; `None` if it cannot.
pub(super) async fn read_small_file(path: &Path) -> Option<Vec<u8>> {
    let file = DmaFile::open(path).await.ok()?;
    let len = file.file_size().await.ok()?;
    if len > 256 << 20 {
        return None;
    }
    let data = file.read_at(0, len as usize).await.ok()?;
    let out = data.to_vec();
    let _ = file.close().await;
    Some(out)
}

/// Writes `data` to `path` atomically: temp file, fdatasync, rename.
pub async fn write_file_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let io = |op| move |e| StorageError::io(op, path, e);
    let file = glommio::io::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&tmp)
        .await
        .map_err(io("creating"))?;
    let padded = super::writer::align_up(data.len() as u64) as usize;
    let mut buf = file.alloc_dma_buffer(padded.max(super::writer::BLOCK_BYTES as usize));
    buf.as_bytes_mut().fill(0);
    buf.as_bytes_mut()[..data.len()].copy_from_slice(data);
    file.write_at(buf, 0).await.map_err(io("writing"))?;
    file.truncate(data.len() as u64).await.map_err(io("truncating"))?;
    file.fdatasync().await.map_err(io("syncing"))?;
    file.close().await.map_err(io("closing"))?;
    glommio::io::rename(&tmp, path).await.map_err(io("renaming"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let p = file_path(Path::new("/d"), 42, "log");
        assert_eq!(p, Path::new("/d/00000000000000000042.log"));
        assert_eq!(parse_base_offset("00000000000000000042.log", "log"), Some(42));
        assert_eq!(parse_base_offset("00000000000000000042.index", "log"), None);
        assert_eq!(parse_base_offset("42.log", "log"), None);
        assert_eq!(parse_base_offset("0000000000000000004x.log", "log"), None);
    }
}
