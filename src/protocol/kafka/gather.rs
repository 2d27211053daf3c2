//! Zero-copy encoding of responses that carry record data (Fetch).
//!
//! The `kafka-protocol` crate encodes a message into one contiguous
//! buffer, which would copy every fetched batch once (twice for a
//! partition served from several stored chunks, which the crate wants
//! joined into one `Bytes`). Instead, each partition's `records` is set to
//! [`placeholder`] and the message is encoded into a [`GatherBuf`]: when
//! the encoder writes the placeholder, the buffer swaps in the real length
//! prefix and the partition's stored chunks as they are (reference-counted
//! `Bytes`, no copy), in the order the partitions are encoded. The frame
//! comes out as a list of chunks for the connection's vectored writer.
//!
//! Everything else is still the crate's encoder: only the bytes of the
//! records field differ, and the tests check the result byte for byte
//! against the crate's own encoding at every version.

use std::collections::VecDeque;
use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// The one byte whose address marks a records field to be swapped.
static MARK: [u8; 1] = [0];

/// Stand-in for a partition's records while encoding (see the module docs).
pub(super) fn placeholder() -> Bytes {
    Bytes::from_static(&MARK)
}

/// Starting capacity of each copied segment (headers between chunks).
const SEGMENT_BYTES: usize = 256;

/// A [`ByteBufMut`] that copies what the encoder writes, except records
/// fields written from [`placeholder`], which become the queued chunks.
pub(super) struct GatherBuf {
    chunks: Vec<Bytes>,
    current: BytesMut,
    /// Bytes in `chunks`.
    sealed_len: usize,
    /// The records of each placeholder, in encoding order.
    pending: VecDeque<Vec<Bytes>>,
    /// Compact (flexible-version) length prefixes.
    compact: bool,
    error: Option<String>,
}

impl GatherBuf {
    /// `records` are the chunks for each placeholder the message holds, in
    /// the order the encoder will meet them; `compact` says whether the
    /// encoded version uses compact (varint) byte lengths.
    pub(super) fn new(first: BytesMut, records: VecDeque<Vec<Bytes>>, compact: bool) -> GatherBuf {
        GatherBuf {
            chunks: Vec::new(),
            current: first,
            sealed_len: 0,
            pending: records,
            compact,
            error: None,
        }
    }

    /// Total bytes written so far.
    pub(super) fn len(&self) -> usize {
        self.sealed_len + self.current.len()
    }

    /// The encoded chunks; an error if a placeholder was not where it had to
    /// be or chunks were left over (a bug, reported rather than sent).
    pub(super) fn finish(mut self) -> Result<Vec<Bytes>, String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if !self.pending.is_empty() {
            return Err(format!("{} partitions' records were never encoded", self.pending.len()));
        }
        self.seal();
        Ok(self.chunks)
    }

    fn seal(&mut self) {
        if !self.current.is_empty() {
            let segment = self.current.split().freeze();
            self.sealed_len += segment.len();
            self.chunks.push(segment);
        }
    }

    /// Replaces the one-byte placeholder just announced by its length
    /// prefix with the real prefix and the queued chunks.
    fn splice(&mut self) {
        let Some(records) = self.pending.pop_front() else {
            self.error = Some("more placeholders than queued records".into());
            return;
        };
        // What the encoder wrote for a one-byte field: varint(1 + 1), or i32 1.
        let written: &[u8] = if self.compact { &[2] } else { &[0, 0, 0, 1] };
        if !self.current.ends_with(written) {
            self.error = Some("placeholder length prefix not where expected".into());
            return;
        }
        self.current.truncate(self.current.len() - written.len());
        let total: usize = records.iter().map(Bytes::len).sum();
        if self.compact {
            put_unsigned_varint(&mut self.current, total as u64 + 1);
        } else {
            match i32::try_from(total) {
                Ok(n) => self.current.put_i32(n),
                Err(_) => {
                    self.error = Some(format!("{total} bytes of records do not fit a frame"));
                    return;
                }
            }
        }
        self.seal();
        for chunk in records.into_iter().filter(|c| !c.is_empty()) {
            self.sealed_len += chunk.len();
            self.chunks.push(chunk);
        }
        self.current = BytesMut::with_capacity(SEGMENT_BYTES);
    }
}

fn put_unsigned_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

// SAFETY: every method delegates to the `BytesMut` being written, which
// upholds `BufMut`'s contract; `put_slice` only adds whole chunks after
// sealing it, never touching memory it handed out.
unsafe impl BufMut for GatherBuf {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut`, which
        // is `current`'s.
        unsafe { self.current.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if std::ptr::eq(src.as_ptr(), MARK.as_ptr()) && src.len() == MARK.len() {
            self.splice();
        } else {
            self.current.extend_from_slice(src);
        }
    }
}

/// The crate's message encoders never seek (no gaps); offsets count every
/// byte written, and only the unsealed segment can be revisited.
impl ByteBufMut for GatherBuf {
    fn offset(&self) -> usize {
        self.len()
    }

    fn seek(&mut self, offset: usize) {
        let local = offset.saturating_sub(self.sealed_len);
        self.current.resize(local, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let start = r.start.saturating_sub(self.sealed_len).min(self.current.len());
        let end = r.end.saturating_sub(self.sealed_len).clamp(start, self.current.len());
        &mut self.current[start..end]
    }
}
