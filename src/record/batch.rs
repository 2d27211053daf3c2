//! The v2 RecordBatch header: its 61-byte big-endian layout, the cheap size
//! probe used by the log scanner, the validator run on every produced batch
//! and the in-place stamp of offset and leader epoch.
//!
//! Layout (byte offsets): baseOffset i64 @0 | batchLength i32 @8 |
//! partitionLeaderEpoch i32 @12 | magic i8 @16 | crc u32 @17 |
//! attributes i16 @21 | lastOffsetDelta i32 @23 | baseTimestamp i64 @27 |
//! maxTimestamp i64 @35 | producerId i64 @43 | producerEpoch i16 @51 |
//! baseSequence i32 @53 | recordsCount i32 @57 | records @61.
//!
//! Invariants: the CRC-32C covers bytes `21..` (attributes to the end), so
//! base offset, batch length, leader epoch and magic can change without
//! recomputing it. `batchLength` counts the bytes after itself, so a batch
//! is `batchLength + 12` bytes and never fewer than 61. `validate` is one
//! CRC pass and allocates nothing.
use super::{Compression, RecordError};

/// Bytes of the v2 batch header, up to and including recordsCount.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before the length-counted part: baseOffset + batchLength.
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The only supported magic (format version).
pub const MAGIC_V2: i8 = 2;

const BASE_OFFSET_AT: usize = 0;
const BATCH_LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORDS_COUNT_AT: usize = 57;
/// The CRC covers everything from the attributes to the end of the batch.
pub(crate) const CRC_START: usize = ATTRIBUTES_AT;
/// Smallest legal batchLength: a header with no records.
const BATCH_LENGTH_MIN: i32 = (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;

const _: () = assert!(RECORDS_COUNT_AT + 4 == BATCH_HEADER_BYTES);
const _: () = assert!(BATCH_LENGTH_AT + 4 == LOG_OVERHEAD_BYTES);

/// Attribute bit 3: timestamps are the broker's log append time.
pub(crate) const ATTR_LOG_APPEND_TIME: i16 = 1 << 3;
/// Attribute bit 4: the batch belongs to a transaction.
pub(crate) const ATTR_TRANSACTIONAL: i16 = 1 << 4;
/// Attribute bit 5: the batch holds control records (commit/abort markers).
pub(crate) const ATTR_CONTROL: i16 = 1 << 5;

/// The decoded 61-byte header of a v2 RecordBatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record (assigned by the leader on append).
    pub base_offset: i64,
    /// Bytes after this field: total batch size - 12.
    pub batch_length: i32,
    /// Leader epoch at append (stamped by the leader).
    pub partition_leader_epoch: i32,
    /// Format version, always 2.
    pub magic: i8,
    /// CRC-32C (Castagnoli) of bytes 21.. of the batch.
    pub crc: u32,
    /// Compression (bits 0-2), timestamp type (3), transactional (4), control (5).
    pub attributes: i16,
    /// Offset of the last record minus base_offset.
    pub last_offset_delta: i32,
    /// Timestamp of the first record; record timestamps are deltas from it.
    pub base_timestamp: i64,
    /// Largest record timestamp (or the log append time).
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, -1 if none.
    pub producer_id: i64,
    /// Producer epoch, -1 if none.
    pub producer_epoch: i16,
    /// Sequence of the first record, -1 if none.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub records_count: i32,
}

#[inline]
fn field<const N: usize>(h: &[u8; BATCH_HEADER_BYTES], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&h[at..at + N]);
    out
}

#[inline]
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

impl BatchHeader {
    /// Parses the 61-byte header at `buf[0..]`; checks magic == 2,
    /// batch_length >= 49, records_count >= 0, last_offset_delta >= 0 and a
    /// known compression. Does NOT check the CRC nor that `buf` holds the
    /// whole batch.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, RecordError> {
        // Magic first: a v0/v1 message may be shorter than a v2 header and
        // deserves the more precise error.
        if let Some(&magic) = buf.get(MAGIC_AT) {
            if magic as i8 != MAGIC_V2 {
                return Err(RecordError::BadMagic(magic as i8));
            }
        }
        let h = buf.first_chunk::<BATCH_HEADER_BYTES>().ok_or(RecordError::TooShort)?;
        let header = BatchHeader {
            base_offset: i64::from_be_bytes(field(h, BASE_OFFSET_AT)),
            batch_length: i32::from_be_bytes(field(h, BATCH_LENGTH_AT)),
            partition_leader_epoch: i32::from_be_bytes(field(h, LEADER_EPOCH_AT)),
            magic: h[MAGIC_AT] as i8,
            crc: u32::from_be_bytes(field(h, CRC_AT)),
            attributes: i16::from_be_bytes(field(h, ATTRIBUTES_AT)),
            last_offset_delta: i32::from_be_bytes(field(h, LAST_OFFSET_DELTA_AT)),
            base_timestamp: i64::from_be_bytes(field(h, BASE_TIMESTAMP_AT)),
            max_timestamp: i64::from_be_bytes(field(h, MAX_TIMESTAMP_AT)),
            producer_id: i64::from_be_bytes(field(h, PRODUCER_ID_AT)),
            producer_epoch: i16::from_be_bytes(field(h, PRODUCER_EPOCH_AT)),
            base_sequence: i32::from_be_bytes(field(h, BASE_SEQUENCE_AT)),
            records_count: i32::from_be_bytes(field(h, RECORDS_COUNT_AT)),
        };
        if header.batch_length < BATCH_LENGTH_MIN {
            return Err(RecordError::BadLength);
        }
        if header.records_count < 0 {
            return Err(RecordError::Corrupt("negative records count"));
        }
        if header.last_offset_delta < 0 {
            return Err(RecordError::Corrupt("negative last offset delta"));
        }
        Compression::from_attributes(header.attributes)?;
        Ok(header)
    }

    /// Writes all 61 header bytes, `crc` field included as it is, to
    /// `buf[0..61]`. Panics if `buf` is shorter (a programmer error).
    pub fn write_to(&self, buf: &mut [u8]) {
        assert!(buf.len() >= BATCH_HEADER_BYTES, "buffer too short for a batch header");
        put(buf, BASE_OFFSET_AT, &self.base_offset.to_be_bytes());
        put(buf, BATCH_LENGTH_AT, &self.batch_length.to_be_bytes());
        put(buf, LEADER_EPOCH_AT, &self.partition_leader_epoch.to_be_bytes());
        put(buf, MAGIC_AT, &self.magic.to_be_bytes());
        put(buf, CRC_AT, &self.crc.to_be_bytes());
        put(buf, ATTRIBUTES_AT, &self.attributes.to_be_bytes());
        put(buf, LAST_OFFSET_DELTA_AT, &self.last_offset_delta.to_be_bytes());
        put(buf, BASE_TIMESTAMP_AT, &self.base_timestamp.to_be_bytes());
        put(buf, MAX_TIMESTAMP_AT, &self.max_timestamp.to_be_bytes());
        put(buf, PRODUCER_ID_AT, &self.producer_id.to_be_bytes());
        put(buf, PRODUCER_EPOCH_AT, &self.producer_epoch.to_be_bytes());
        put(buf, BASE_SEQUENCE_AT, &self.base_sequence.to_be_bytes());
        put(buf, RECORDS_COUNT_AT, &self.records_count.to_be_bytes());
    }

    /// Whole batch size in bytes: batch_length + 12.
    pub fn total_bytes(&self) -> usize {
        usize::try_from(self.batch_length).unwrap_or(0) + LOG_OVERHEAD_BYTES
    }

    /// Offset of the last record (saturating; only a corrupt header overflows).
    pub fn last_offset(&self) -> i64 {
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }

    /// The offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// The codec named by the attributes (`parse` already rejected unknown
    /// ids; a hand-built header with one reads as `None`).
    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.attributes).unwrap_or_default()
    }

    /// Timestamps are the broker's append time (max_timestamp), not the producer's.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }

    /// The batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// The batch holds control records (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
}

/// Total size of the batch starting at `buf[0]`, read from its first 12
/// bytes: `Ok(None)` if `buf` has fewer than 12 bytes; `Err` if batch_length
/// < 49 or the total exceeds `max_batch_bytes`.
pub fn batch_size(buf: &[u8], max_batch_bytes: usize) -> Result<Option<usize>, RecordError> {
    let Some(prefix) = buf.first_chunk::<LOG_OVERHEAD_BYTES>() else {
        return Ok(None);
    };
    let mut len_bytes = [0u8; 4];
    len_bytes.copy_from_slice(&prefix[BATCH_LENGTH_AT..]);
    let batch_length = i32::from_be_bytes(len_bytes);
    if batch_length < BATCH_LENGTH_MIN {
        return Err(RecordError::BadLength);
    }
    let total = usize::try_from(batch_length).map_err(|_| RecordError::BadLength)? + LOG_OVERHEAD_BYTES;
    if total > max_batch_bytes {
        return Err(RecordError::TooLarge {
            size: total,
            max: max_batch_bytes,
        });
    }
    Ok(Some(total))
}

/// Validates that `buf` is exactly ONE whole batch: length field ==
/// `buf.len() - 12`, size <= `max_batch_bytes`, header parses, CRC-32C over
/// `buf[21..]` equals the crc field. Never decompresses, never allocates.
pub fn validate(buf: &[u8], max_batch_bytes: usize) -> Result<BatchHeader, RecordError> {
    let total = batch_size(buf, max_batch_bytes)?.ok_or(RecordError::TooShort)?;
    if total > buf.len() {
        return Err(RecordError::TooShort);
    }
    if total < buf.len() {
        return Err(RecordError::BadLength);
    }
    let header = BatchHeader::parse(buf)?;
    let actual = crc32c::crc32c(&buf[CRC_START..]);
    if actual != header.crc {
        return Err(RecordError::CrcMismatch {
            expected: header.crc,
            actual,
        });
    }
    Ok(header)
}

/// Writes base_offset and partition_leader_epoch in place (bytes 0..8 and
/// 12..16). They are outside the CRC, so the CRC stays valid and is not
/// recomputed. Panics only if `buf.len() < 61` (the caller validated).
pub fn stamp(buf: &mut [u8], base_offset: i64, partition_leader_epoch: i32) {
    assert!(
        buf.len() >= BATCH_HEADER_BYTES,
        "stamp on a buffer shorter than a batch header"
    );
    put(buf, BASE_OFFSET_AT, &base_offset.to_be_bytes());
    put(buf, LEADER_EPOCH_AT, &partition_leader_epoch.to_be_bytes());
}

/// Marks a batch as log-append-time with `append_time_ms` as its max
/// timestamp (what a topic with `message.timestamp.type=LogAppendTime`
/// does). Both fields are under the CRC, so this recomputes it: one CRC
/// pass. `buf` must be exactly one validated batch; panics if shorter than
/// a header.
pub fn stamp_log_append_time(buf: &mut [u8], append_time_ms: i64) {
    assert!(
        buf.len() >= BATCH_HEADER_BYTES,
        "stamp on a buffer shorter than a batch header"
    );
    let mut attr_bytes = [0u8; 2];
    attr_bytes.copy_from_slice(&buf[ATTRIBUTES_AT..ATTRIBUTES_AT + 2]);
    let attributes = i16::from_be_bytes(attr_bytes) | ATTR_LOG_APPEND_TIME;
    put(buf, ATTRIBUTES_AT, &attributes.to_be_bytes());
    put(buf, MAX_TIMESTAMP_AT, &append_time_ms.to_be_bytes());
    seal_crc(buf);
}

/// Computes the CRC over `buf[21..]` and stores it in the crc field.
pub(crate) fn seal_crc(buf: &mut [u8]) -> u32 {
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    put(buf, CRC_AT, &crc.to_be_bytes());
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::BatchBuilder;

    /// Bit-at-a-time CRC-32C (reflected polynomial 0x82F63B78): an
    /// independent reference for the hardware-accelerated crate.
    fn crc32c_reference(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82f6_3b78
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// A header-only batch with a distinct value in every field, laid out
    /// by hand from the format description.
    fn hand_batch() -> Vec<u8> {
        let mut b: Vec<u8> = vec![
            0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // baseOffset @0
            0x00, 0x00, 0x00, 0x31, // batchLength = 49 @8
            0x0a, 0x0b, 0x0c, 0x0d, // partitionLeaderEpoch @12
            0x02, // magic @16
            0x00, 0x00, 0x00, 0x00, // crc @17, filled below
            0x00, 0x1b, // attributes: lz4 | log append time | transactional @21
            0x11, 0x12, 0x13, 0x14, // lastOffsetDelta @23
            0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, // baseTimestamp @27
            0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, // maxTimestamp @35
            0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, // producerId @43
            0x51, 0x52, // producerEpoch @51
            0x61, 0x62, 0x63, 0x64, // baseSequence @53
            0x00, 0x00, 0x00, 0x00, // recordsCount @57
        ];
        assert_eq!(b.len(), BATCH_HEADER_BYTES);
        let crc = crc32c_reference(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn reference_crc_matches_the_standard_check_value() {
        assert_eq!(crc32c_reference(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn header_layout_matches_hand_built_bytes() {
        let buf = hand_batch();
        let h = validate(&buf, 1 << 20).unwrap();
        assert_eq!(h.base_offset, 0x0102_0304_0506_0708);
        assert_eq!(h.batch_length, 49);
        assert_eq!(h.partition_leader_epoch, 0x0a0b_0c0d);
        assert_eq!(h.magic, MAGIC_V2);
        assert_eq!(h.crc, crc32c_reference(&buf[21..]));
        assert_eq!(h.attributes, 0x1b);
        assert_eq!(h.last_offset_delta, 0x1112_1314);
        assert_eq!(h.base_timestamp, 0x2122_2324_2526_2728);
        assert_eq!(h.max_timestamp, 0x3132_3334_3536_3738);
        assert_eq!(h.producer_id, 0x4142_4344_4546_4748);
        assert_eq!(h.producer_epoch, 0x5152);
        assert_eq!(h.base_sequence, 0x6162_6364);
        assert_eq!(h.records_count, 0);
        assert_eq!(h.total_bytes(), 61);
        assert_eq!(h.last_offset(), 0x0102_0304_0506_0708 + 0x1112_1314);
        assert_eq!(h.next_offset(), h.last_offset() + 1);
        assert_eq!(h.compression(), Compression::Lz4);
        assert!(h.is_log_append_time() && h.is_transactional() && !h.is_control());
        // And back: writing the parsed header reproduces every byte.
        let mut again = vec![0u8; BATCH_HEADER_BYTES];
        h.write_to(&mut again);
        assert_eq!(again, buf);
    }

    /// Sarama's (Go client) encoding of a one-record batch: the CRC comes
    /// from an independent implementation.
    const SARAMA_UNCOMPRESSED: [u8; 82] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 70, 0, 0, 0, 0, 2, 84, 121, 97, 253, 0, 0, 0, 0, 0, 0, 0, 0, 1, 88, 141, 205,
        89, 56, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 40, 0, 10, 0, 8, 1, 2, 3,
        4, 6, 5, 6, 7, 2, 6, 8, 9, 10, 4, 11, 12,
    ];

    #[test]
    fn validates_a_batch_written_by_another_client() {
        let h = validate(&SARAMA_UNCOMPRESSED, 1 << 20).unwrap();
        assert_eq!(h.crc, u32::from_be_bytes([84, 121, 97, 253]));
        assert_eq!(h.base_timestamp, 1_479_847_795_000);
        assert_eq!(h.records_count, 1);
        assert_eq!(h.total_bytes(), SARAMA_UNCOMPRESSED.len());
        // Sarama's empty control batch, attributes 0x0020.
        let mut control = [0u8; 61];
        control[11] = 49;
        control[16] = 2;
        control[17..21].copy_from_slice(&[81, 46, 67, 217]);
        control[22] = 32;
        let h = validate(&control, 1 << 20).unwrap();
        assert!(h.is_control() && !h.is_transactional() && !h.is_log_append_time());
    }

    #[test]
    fn stamp_leaves_the_crc_valid() {
        let mut b = BatchBuilder::new(Compression::None);
        b.push(1000, Some(b"k"), Some(b"v"), &[]);
        b.push(1001, None, Some(b"w"), &[("h", None)]);
        let mut buf = b.build().unwrap();
        let covered = buf[CRC_START..].to_vec();
        stamp(&mut buf, 0x7fff_0000_0000_0001, 42);
        let h = validate(&buf, 1 << 20).unwrap();
        assert_eq!(h.base_offset, 0x7fff_0000_0000_0001);
        assert_eq!(h.partition_leader_epoch, 42);
        assert_eq!(h.last_offset(), 0x7fff_0000_0000_0002);
        assert_eq!(buf[CRC_START..], covered[..]);
    }

    #[test]
    fn stamp_log_append_time_reseals() {
        let mut b = BatchBuilder::new(Compression::Gzip);
        b.push(1000, Some(b"k"), Some(b"v"), &[]);
        let mut buf = b.build().unwrap();
        stamp_log_append_time(&mut buf, 5_000);
        let h = validate(&buf, 1 << 20).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 5_000);
        assert_eq!(h.base_timestamp, 1000);
        assert_eq!(h.compression(), Compression::Gzip);
    }

    #[test]
    fn batch_size_reads_the_prefix_only() {
        let buf = hand_batch();
        for short in 0..LOG_OVERHEAD_BYTES {
            assert_eq!(batch_size(&buf[..short], 1 << 20), Ok(None));
        }
        assert_eq!(batch_size(&buf[..12], 1 << 20), Ok(Some(61)));
        assert_eq!(batch_size(&buf, 61), Ok(Some(61)));
        assert_eq!(batch_size(&buf, 60), Err(RecordError::TooLarge { size: 61, max: 60 }));
        let mut small = buf.clone();
        small[8..12].copy_from_slice(&48i32.to_be_bytes());
        assert_eq!(batch_size(&small, 1 << 20), Err(RecordError::BadLength));
        small[8..12].copy_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(batch_size(&small, 1 << 20), Err(RecordError::BadLength));
        small[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        let huge = i32::MAX as usize + 12;
        assert_eq!(batch_size(&small, usize::MAX), Ok(Some(huge)));
    }

    /// Applies `edit` to a valid batch and re-seals the CRC.
    fn resealed(edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
        let mut buf = hand_batch();
        edit(&mut buf);
        seal_crc(&mut buf);
        buf
    }

    #[test]
    fn validate_rejects_each_broken_rule() {
        let buf = hand_batch();
        assert_eq!(validate(&buf[..60], 1 << 20), Err(RecordError::TooShort));
        assert_eq!(validate(&buf[..11], 1 << 20), Err(RecordError::TooShort));
        let mut long = buf.clone();
        long.push(0);
        assert_eq!(validate(&long, 1 << 20), Err(RecordError::BadLength));
        assert_eq!(validate(&buf, 60), Err(RecordError::TooLarge { size: 61, max: 60 }));
        let v1 = resealed(|b| b[16] = 1);
        assert_eq!(validate(&v1, 1 << 20), Err(RecordError::BadMagic(1)));
        let codec5 = resealed(|b| b[22] = 5);
        assert_eq!(validate(&codec5, 1 << 20), Err(RecordError::UnknownCompression(5)));
        let negative_count = resealed(|b| b[57] = 0x80);
        assert!(matches!(
            validate(&negative_count, 1 << 20),
            Err(RecordError::Corrupt(_))
        ));
        let negative_delta = resealed(|b| b[23] = 0xff);
        assert!(matches!(
            validate(&negative_delta, 1 << 20),
            Err(RecordError::Corrupt(_))
        ));
        let mut flipped = buf.clone();
        flipped[40] ^= 1;
        let expected = u32::from_be_bytes([buf[17], buf[18], buf[19], buf[20]]);
        assert_eq!(
            validate(&flipped, 1 << 20),
            Err(RecordError::CrcMismatch {
                expected,
                actual: crc32c_reference(&flipped[21..]),
            })
        );
    }

    #[test]
    fn parse_checks_magic_before_length() {
        let v0 = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 26, 0, 0, 0, 0, 0];
        assert_eq!(BatchHeader::parse(&v0), Err(RecordError::BadMagic(0)));
        assert_eq!(BatchHeader::parse(&v0[..16]), Err(RecordError::TooShort));
    }
}
