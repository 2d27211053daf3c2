//! The direct-I/O append writer of the active segment.
//!
//! Appends are copied into 4 KiB-aligned staging chunks (the one copy direct
//! I/O needs: network buffers are not aligned). A flush writes every staged
//! chunk with O_DIRECT at its aligned file position, all in flight at once;
//! a partially filled last chunk is written zero-padded to the next block and
//! its partial tail block is carried into a fresh chunk, so the next flush
//! rewrites that block with more data. Nothing is ever written past a block
//! that is not aligned, and nothing already durable is changed: the rewritten
//! tail block only gains bytes after the old ones.
//!
//! Invariants:
//! - `current_pos` is block aligned; `current_pos + current_len` is the
//!   logical end of the segment (`end()`);
//! - staged full chunks are contiguous and end at `current_pos`;
//! - `written <= end()`; bytes below `written` are on the file (not yet
//!   necessarily durable: that takes an fdatasync).
//!
//! Runs on the shard that owns the log. Full chunks may be written
//! concurrently ([`SegmentWriter::take_full_chunk`], in order, each at its
//! own range); a flush that writes the partial tail must not overlap any
//! other write (the log takes its io lock whole for it), because it and the
//! next write may cover the same tail block. `written` only advances over
//! a contiguous prefix of completed writes.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile};

use super::error::{Result, StorageError};

/// A partial chunk up to `chunk_bytes / SMALL_FLUSH_FRACTION` is flushed
/// through a right-sized copy instead of handing off the chunk.
const SMALL_FLUSH_FRACTION: usize = 4;

/// Block size of O_DIRECT I/O on the filesystems we support.
pub const BLOCK_BYTES: u64 = 4096;

pub fn align_down(v: u64) -> u64 {
    v & !(BLOCK_BYTES - 1)
}

pub fn align_up(v: u64) -> u64 {
    align_down(v + BLOCK_BYTES - 1)
}

/// Writes handed out by `take_flush`, to be awaited without holding a borrow.
pub struct PendingFlush {
    file: Rc<DmaFile>,
    path: PathBuf,
    writes: Vec<(u64, DmaBuffer)>,
    /// Logical end of the segment once these writes are done.
    pub end: u64,
}

impl PendingFlush {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Issues every write at once and waits for all of them.
    pub async fn run(self) -> Result<()> {
        let mut tasks = Vec::with_capacity(self.writes.len());
        for (pos, buf) in self.writes {
            let file = self.file.clone();
            tasks.push(glommio::spawn_local(async move { write_whole(&file, buf, pos).await }));
        }
        let mut first_err = None;
        for task in tasks {
            if let Err(e) = task.await {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(StorageError::io("writing segment", &self.path, e)),
            None => Ok(()),
        }
    }
}

/// Staging and direct writes for the active segment.
pub struct SegmentWriter {
    file: Rc<DmaFile>,
    path: PathBuf,
    chunk_bytes: usize,
    current: DmaBuffer,
    current_pos: u64,
    current_len: usize,
    full: VecDeque<(u64, DmaBuffer)>,
    written: u64,
    /// Ends of full chunks handed out and not yet known written, in file
    /// order, and those of them whose writes completed (out of order).
    chunks_in_flight: VecDeque<u64>,
    chunks_done: BTreeSet<u64>,
}

/// One full chunk's write, handed out by [`SegmentWriter::take_full_chunk`].
pub struct ChunkWrite {
    file: Rc<DmaFile>,
    path: PathBuf,
    pos: u64,
    buf: DmaBuffer,
    /// Logical end of the segment once this and every earlier write is done.
    pub end: u64,
}

impl ChunkWrite {
    pub async fn run(self) -> Result<()> {
        write_whole(&self.file, self.buf, self.pos)
            .await
            .map_err(|e| StorageError::io("writing segment", &self.path, e))
    }
}

/// One direct write of all of `buf` at `pos`; a short write is an error.
async fn write_whole(file: &DmaFile, buf: DmaBuffer, pos: u64) -> std::io::Result<()> {
    let len = buf.len();
    match file.write_at(buf, pos).await {
        Ok(n) if n == len => Ok(()),
        Ok(n) => Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("short direct write: {n} of {len} bytes"),
        )),
        Err(e) => Err(std::io::Error::from(e)),
    }
}

impl SegmentWriter {
    /// A writer appending at logical position `end` of `file`. The partial
    /// block before `end`, if any, is read back so it can be rewritten.
    pub async fn open(file: Rc<DmaFile>, path: PathBuf, end: u64, chunk_bytes: usize) -> Result<Self> {
        assert!(chunk_bytes as u64 % BLOCK_BYTES == 0 && chunk_bytes > 0);
        let current_pos = align_down(end);
        let current_len = (end - current_pos) as usize;
        let mut current = file.alloc_dma_buffer(chunk_bytes);
        if current_len > 0 {
            let block = file
                .read_at_aligned(current_pos, BLOCK_BYTES as usize)
                .await
                .map_err(|e| StorageError::io("reading tail block of", &path, e))?;
            if block.len() < current_len {
                return Err(StorageError::io(
                    "reading tail block of",
                    &path,
                    std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "segment shorter than its recovered end",
                    ),
                ));
            }
            current.as_bytes_mut()[..current_len].copy_from_slice(&block[..current_len]);
        }
        Ok(SegmentWriter {
            file,
            path,
            chunk_bytes,
            current,
            current_pos,
            current_len,
            full: VecDeque::new(),
            written: end,
            chunks_in_flight: VecDeque::new(),
            chunks_done: BTreeSet::new(),
        })
    }

    /// Logical end: bytes appended so far, staged or written.
    pub fn end(&self) -> u64 {
        self.current_pos + self.current_len as u64
    }

    /// Bytes known to be written to the file.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Full chunks waiting for a flush.
    pub fn full_chunks(&self) -> usize {
        self.full.len()
    }

    /// Copies `data` into staging and returns how many chunks it filled
    /// (each now waits for a write). Never does I/O.
    pub fn append(&mut self, mut data: &[u8]) -> usize {
        let mut filled = 0;
        while !data.is_empty() {
            let room = self.chunk_bytes - self.current_len;
            let n = room.min(data.len());
            self.current.as_bytes_mut()[self.current_len..self.current_len + n].copy_from_slice(&data[..n]);
            self.current_len += n;
            data = &data[n..];
            if self.current_len == self.chunk_bytes {
                let next = self.file.alloc_dma_buffer(self.chunk_bytes);
                let full = std::mem::replace(&mut self.current, next);
                self.full.push_back((self.current_pos, full));
                self.current_pos += self.chunk_bytes as u64;
                self.current_len = 0;
                filled += 1;
            }
        }
        filled
    }

    /// Takes the oldest staged full chunk to write on its own, concurrently
    /// with other full chunks (never with a partial flush).
    pub fn take_full_chunk(&mut self) -> Option<ChunkWrite> {
        let (pos, buf) = self.full.pop_front()?;
        let end = pos + buf.len() as u64;
        self.chunks_in_flight.push_back(end);
        Some(ChunkWrite {
            file: self.file.clone(),
            path: self.path.clone(),
            pos,
            buf,
            end,
        })
    }

    /// Records that the chunk write ending at `end` completed; `written`
    /// moves over every chunk up to the first one still in flight.
    pub fn chunk_written(&mut self, end: u64) {
        debug_assert!(self.chunks_in_flight.contains(&end), "a chunk handed out");
        self.chunks_done.insert(end);
        while let Some(&front) = self.chunks_in_flight.front() {
            if !self.chunks_done.remove(&front) {
                break;
            }
            self.chunks_in_flight.pop_front();
            self.written = self.written.max(front);
        }
        debug_assert!(self.written <= self.end());
    }

    /// Takes the staged full chunks, and with `include_partial` the partly
    /// filled current one, as a set of writes, so appends can go on while
    /// they run. A small partial chunk (the common case when every append
    /// is synced) is copied into a right-sized buffer and its tail block
    /// moved to the front of the chunk in place; a large one is handed off
    /// whole and only its tail block is copied into a fresh chunk. Either
    /// way no write covers a block before the current tail block again, and
    /// no chunk-sized buffer is allocated (and page-faulted in) per sync.
    pub fn take_flush(&mut self, include_partial: bool) -> PendingFlush {
        let mut writes: Vec<(u64, DmaBuffer)> = self.full.drain(..).collect();
        let end = if include_partial { self.end() } else { self.current_pos };
        if include_partial && self.current_len > 0 && end > self.written {
            let padded = align_up(self.current_len as u64) as usize;
            let tail_start = align_down(self.current_len as u64) as usize;
            let tail_len = self.current_len - tail_start;
            if padded <= self.chunk_bytes / SMALL_FLUSH_FRACTION {
                let mut out = self.file.alloc_dma_buffer(padded);
                out.as_bytes_mut()[..self.current_len].copy_from_slice(&self.current.as_bytes()[..self.current_len]);
                out.as_bytes_mut()[self.current_len..].fill(0);
                self.current.as_bytes_mut().copy_within(tail_start..self.current_len, 0);
                writes.push((self.current_pos, out));
            } else {
                let mut next = self.file.alloc_dma_buffer(self.chunk_bytes);
                next.as_bytes_mut()[..tail_len].copy_from_slice(&self.current.as_bytes()[tail_start..self.current_len]);
                let mut out = std::mem::replace(&mut self.current, next);
                out.as_bytes_mut()[self.current_len..padded].fill(0);
                out.trim_to_size(padded);
                writes.push((self.current_pos, out));
            }
            self.current_pos += tail_start as u64;
            self.current_len = tail_len;
        }
        PendingFlush {
            file: self.file.clone(),
            path: self.path.clone(),
            writes,
            end,
        }
    }

    /// Records that a flush taken at logical end `end` completed.
    pub fn flushed(&mut self, end: u64) {
        self.written = self.written.max(end);
        debug_assert!(self.written <= self.end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_moves_only_over_a_contiguous_prefix_of_completed_chunks() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .spawn(|| async {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("w.log");
                let opened = glommio::io::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .dma_open(&path)
                    .await;
                let file = Rc::new(opened.unwrap());
                let chunk = BLOCK_BYTES as usize;
                let mut w = SegmentWriter::open(file.clone(), path, 0, chunk).await.unwrap();
                assert_eq!(w.append(&vec![7u8; 3 * chunk + 100]), 3, "three chunks filled");
                assert_eq!(w.full_chunks(), 3);
                let chunks: Vec<ChunkWrite> = (0..3).filter_map(|_| w.take_full_chunk()).collect();
                let ends: Vec<u64> = chunks.iter().map(|c| c.end).collect();
                assert_eq!(ends, [4096, 8192, 12288]);
                // Completions out of order: the third, then the first, then the second.
                w.chunk_written(ends[2]);
                assert_eq!(w.written(), 0, "an earlier chunk is still in flight");
                w.chunk_written(ends[0]);
                assert_eq!(w.written(), ends[0]);
                w.chunk_written(ends[1]);
                assert_eq!(w.written(), ends[2], "all three written: the prefix closes");
                for c in chunks {
                    c.run().await.unwrap();
                }
                // The partial tail still flushes after them.
                let pending = w.take_flush(true);
                let end = pending.end;
                pending.run().await.unwrap();
                w.flushed(end);
                assert_eq!(w.written(), 3 * chunk as u64 + 100);
                assert_eq!(
                    file.file_size().await.unwrap(),
                    4 * BLOCK_BYTES,
                    "the tail block, padded"
                );
                drop(w);
                Rc::try_unwrap(file).ok().unwrap().close().await.unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
