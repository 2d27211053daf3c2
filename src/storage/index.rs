//! Sparse offset and time indexes of one segment, and their file format.
//!
//! Sans-IO: this file only builds, searches, encodes and decodes; the
//! segment does the reads and writes.
//!
//! Invariants (asserted on insert, checked again on decode):
//! - offset index entries have strictly increasing relative offsets and
//!   strictly increasing positions;
//! - time index entries have strictly increasing timestamps and
//!   non-decreasing relative offsets.
//!
//! File format (both indexes, big-endian), written whole and atomically
//! (temp file + rename), so a file is either a complete checkpoint or absent:
//!
//! ```text
//! magic u32 | version u16 | kind u16 | entries u32 | reserved u32 |
//! base_offset i64 | next_offset i64 | covered_bytes u64 |
//! first_timestamp i64 | max_timestamp i64 |
//! entry * entries  (offset: rel u32, pos u32; time: ts i64, rel u32) |
//! crc32c u32 over everything before it
//! ```
//! `covered_bytes` and `next_offset` say how much of the log file the
//! checkpoint vouches for; the log recovers by scanning from there.

const MAGIC: u32 = 0x534c_4958; // "SLIX"
const VERSION: u16 = 1;
const HEADER_BYTES: usize = 56;
const CRC_BYTES: usize = 4;

/// Which of the two indexes a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    Offset = 1,
    Time = 2,
}

impl IndexKind {
    fn entry_bytes(self) -> usize {
        match self {
            IndexKind::Offset => 8,
            IndexKind::Time => 12,
        }
    }
}

/// What a checkpoint says about its segment, beside the entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub base_offset: i64,
    /// Offset after the last batch in the covered bytes.
    pub next_offset: i64,
    /// Bytes of the log file that hold whole, verified batches.
    pub covered_bytes: u64,
    /// Max timestamp of the first batch (drives roll by age), -1 if empty.
    pub first_timestamp: i64,
    /// Largest timestamp in the covered bytes (drives time retention).
    pub max_timestamp: i64,
}

/// Why an index file was rejected. The caller rebuilds the index by scanning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexDecodeError {
    #[error("index file too short ({0} bytes)")]
    TooShort(usize),
    #[error("bad index magic or version")]
    BadMagic,
    #[error("index kind mismatch")]
    WrongKind,
    #[error("index length does not match its entry count")]
    BadLength,
    #[error("index CRC mismatch")]
    BadCrc,
    #[error("index entries out of order or out of range")]
    BadEntries,
}

/// Sparse map from relative offset to byte position in the segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    /// Adds an entry; it must lie after the last one.
    pub fn push(&mut self, relative_offset: u32, position: u32) {
        if let Some(&(last_rel, last_pos)) = self.entries.last() {
            assert!(
                relative_offset > last_rel && position > last_pos,
                "offset index out of order"
            );
        }
        self.entries.push((relative_offset, position));
    }

    /// Position of the last indexed batch starting at or before
    /// `relative_offset` (0 when none): where a scan for it should begin.
    pub fn lookup(&self, relative_offset: u32) -> u32 {
        let idx = self.entries.partition_point(|&(rel, _)| rel <= relative_offset);
        if idx == 0 {
            0
        } else {
            self.entries[idx - 1].1
        }
    }

    /// Drops every entry at or after `position` (used by truncation).
    pub fn truncate_at_position(&mut self, position: u32) {
        let keep = self.entries.partition_point(|&(_, pos)| pos < position);
        self.entries.truncate(keep);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[(u32, u32)] {
        &self.entries
    }
}

/// Sparse map from timestamp to the relative offset of the batch whose max
/// timestamp first reached it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Adds an entry if `timestamp` is larger than every earlier one.
    pub fn push(&mut self, timestamp: i64, relative_offset: u32) {
        if let Some(&(last_ts, last_rel)) = self.entries.last() {
            if timestamp <= last_ts {
                return;
            }
            assert!(relative_offset >= last_rel, "time index offsets go backwards");
        }
        self.entries.push((timestamp, relative_offset));
    }

    /// Relative offset from which a scan for the first record with a
    /// timestamp at or after `timestamp` can start: the batch of the last
    /// entry whose timestamp is below it (every batch before that entry's has
    /// only smaller timestamps), or 0.
    pub fn lookup(&self, timestamp: i64) -> u32 {
        let idx = self.entries.partition_point(|&(ts, _)| ts < timestamp);
        if idx == 0 {
            0
        } else {
            self.entries[idx - 1].1
        }
    }

    /// Drops every entry at or after `relative_offset`.
    pub fn truncate_at_offset(&mut self, relative_offset: u32) {
        let keep = self.entries.partition_point(|&(_, rel)| rel < relative_offset);
        self.entries.truncate(keep);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[(i64, u32)] {
        &self.entries
    }
}

fn encode_header(out: &mut Vec<u8>, kind: IndexKind, entries: usize, cp: &Checkpoint) {
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&(kind as u16).to_be_bytes());
    let count = u32::try_from(entries).unwrap_or(u32::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&cp.base_offset.to_be_bytes());
    out.extend_from_slice(&cp.next_offset.to_be_bytes());
    out.extend_from_slice(&cp.covered_bytes.to_be_bytes());
    out.extend_from_slice(&cp.first_timestamp.to_be_bytes());
    out.extend_from_slice(&cp.max_timestamp.to_be_bytes());
    debug_assert_eq!(out.len(), HEADER_BYTES);
}

fn finish(mut out: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Encodes an offset index checkpoint.
pub fn encode_offset_index(index: &OffsetIndex, cp: &Checkpoint) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + index.len() * 8 + CRC_BYTES);
    encode_header(&mut out, IndexKind::Offset, index.len(), cp);
    for &(rel, pos) in index.entries() {
        out.extend_from_slice(&rel.to_be_bytes());
        out.extend_from_slice(&pos.to_be_bytes());
    }
    finish(out)
}

/// Encodes a time index checkpoint.
pub fn encode_time_index(index: &TimeIndex, cp: &Checkpoint) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + index.len() * 12 + CRC_BYTES);
    encode_header(&mut out, IndexKind::Time, index.len(), cp);
    for &(ts, rel) in index.entries() {
        out.extend_from_slice(&ts.to_be_bytes());
        out.extend_from_slice(&rel.to_be_bytes());
    }
    finish(out)
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Checks framing and CRC; returns the checkpoint and the entry bytes.
/// `buf` may carry trailing padding (files are written in 4 KiB blocks).
fn decode_frame(buf: &[u8], kind: IndexKind) -> Result<(Checkpoint, &[u8]), IndexDecodeError> {
    if buf.len() < HEADER_BYTES + CRC_BYTES {
        return Err(IndexDecodeError::TooShort(buf.len()));
    }
    if be_u32(buf, 0) != MAGIC || be_u16(buf, 4) != VERSION {
        return Err(IndexDecodeError::BadMagic);
    }
    if be_u16(buf, 6) != kind as u16 {
        return Err(IndexDecodeError::WrongKind);
    }
    let entries = be_u32(buf, 8) as usize;
    let body = entries
        .checked_mul(kind.entry_bytes())
        .ok_or(IndexDecodeError::BadLength)?;
    let total = HEADER_BYTES + body + CRC_BYTES;
    if buf.len() < total {
        return Err(IndexDecodeError::BadLength);
    }
    let crc_at = HEADER_BYTES + body;
    if crc32c::crc32c(&buf[..crc_at]) != be_u32(buf, crc_at) {
        return Err(IndexDecodeError::BadCrc);
    }
    let cp = Checkpoint {
        base_offset: be_i64(buf, 16),
        next_offset: be_i64(buf, 24),
        covered_bytes: be_i64(buf, 32) as u64,
        first_timestamp: be_i64(buf, 40),
        max_timestamp: be_i64(buf, 48),
    };
    if cp.next_offset < cp.base_offset || cp.covered_bytes > u64::from(u32::MAX) {
        return Err(IndexDecodeError::BadEntries);
    }
    Ok((cp, &buf[HEADER_BYTES..crc_at]))
}

/// Decodes and checks an offset index checkpoint.
pub fn decode_offset_index(buf: &[u8]) -> Result<(OffsetIndex, Checkpoint), IndexDecodeError> {
    let (cp, body) = decode_frame(buf, IndexKind::Offset)?;
    let mut index = OffsetIndex::default();
    let max_rel = cp.next_offset - cp.base_offset;
    for chunk in body.chunks_exact(8) {
        let (rel, pos) = (be_u32(chunk, 0), be_u32(chunk, 4));
        let ordered = index.entries.last().is_none_or(|&(r, p)| rel > r && pos > p);
        if !ordered || i64::from(rel) >= max_rel || u64::from(pos) >= cp.covered_bytes {
            return Err(IndexDecodeError::BadEntries);
        }
        index.entries.push((rel, pos));
    }
    Ok((index, cp))
}

/// Decodes and checks a time index checkpoint.
pub fn decode_time_index(buf: &[u8]) -> Result<(TimeIndex, Checkpoint), IndexDecodeError> {
    let (cp, body) = decode_frame(buf, IndexKind::Time)?;
    let mut index = TimeIndex::default();
    let max_rel = cp.next_offset - cp.base_offset;
    for chunk in body.chunks_exact(12) {
        let (ts, rel) = (be_i64(chunk, 0), be_u32(chunk, 8));
        let ordered = index.entries.last().is_none_or(|&(t, r)| ts > t && rel >= r);
        if !ordered || i64::from(rel) >= max_rel {
            return Err(IndexDecodeError::BadEntries);
        }
        index.entries.push((ts, rel));
    }
    Ok((index, cp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp() -> Checkpoint {
        Checkpoint {
            base_offset: 100,
            next_offset: 200,
            covered_bytes: 50_000,
            first_timestamp: 7,
            max_timestamp: 99,
        }
    }

    #[test]
    fn offset_lookup_finds_floor_entry() {
        let mut idx = OffsetIndex::default();
        idx.push(0, 0);
        idx.push(10, 4100);
        idx.push(25, 9000);
        assert_eq!(idx.lookup(0), 0);
        assert_eq!(idx.lookup(9), 0);
        assert_eq!(idx.lookup(10), 4100);
        assert_eq!(idx.lookup(24), 4100);
        assert_eq!(idx.lookup(1000), 9000);
        idx.truncate_at_position(4100);
        assert_eq!(idx.entries(), &[(0, 0)]);
    }

    #[test]
    fn time_lookup_starts_before_first_reaching_entry() {
        let mut idx = TimeIndex::default();
        idx.push(10, 0);
        idx.push(10, 3); // not larger: ignored
        idx.push(20, 5);
        idx.push(30, 9);
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.lookup(5), 0);
        assert_eq!(idx.lookup(20), 0);
        assert_eq!(idx.lookup(21), 5);
        assert_eq!(idx.lookup(31), 9);
        idx.truncate_at_offset(5);
        assert_eq!(idx.entries(), &[(10, 0)]);
    }

    #[test]
    #[should_panic(expected = "out of order")]
    fn offset_index_rejects_disorder() {
        let mut idx = OffsetIndex::default();
        idx.push(5, 100);
        idx.push(5, 200);
    }

    #[test]
    fn round_trip_and_every_corruption_detected() {
        let mut off = OffsetIndex::default();
        let mut time = TimeIndex::default();
        for i in 0..20u32 {
            off.push(i * 5, i * 2000);
            time.push(i64::from(i) * 3, i * 5);
        }
        let bytes = encode_offset_index(&off, &cp());
        let mut padded = bytes.clone();
        padded.resize(4096, 0);
        assert_eq!(decode_offset_index(&padded), Ok((off.clone(), cp())));
        let tbytes = encode_time_index(&time, &cp());
        assert_eq!(decode_time_index(&tbytes), Ok((time, cp())));
        assert_eq!(decode_time_index(&bytes), Err(IndexDecodeError::WrongKind));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode_offset_index(&bad).is_err(), "flip at {i} not detected");
        }
        for cut in 0..bytes.len() {
            assert!(decode_offset_index(&bytes[..cut]).is_err());
        }
    }
}
