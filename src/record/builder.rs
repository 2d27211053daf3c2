//! `BatchBuilder`: accumulates records into one v2 RecordBatch, the way a
//! producer does before a send (and the broker does for internal topics).
//!
//! Invariants: records are encoded straight into one buffer that already
//! holds room for the 61-byte header: no per-record allocation, varints
//! written without an intermediate Vec. Offset deltas are 0, 1, 2, ... in
//! push order; the base timestamp is the first record's and every other
//! timestamp is a (wrapping) delta from it, so any i64 round-trips.
//! `build` produces base offset 0, leader epoch -1 and a correct CRC; the
//! broker stamps the real offset and epoch later without touching the CRC.
use bytes::{Bytes, BytesMut};

use super::batch::{
    seal_crc, BatchHeader, ATTR_LOG_APPEND_TIME, ATTR_TRANSACTIONAL, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES, MAGIC_V2,
};
use super::varint::{put_varint, put_varlong, varint_len, varlong_len};
use super::{Compression, RecordError};

/// Kafka's "no timestamp", used for the timestamps of an empty batch.
const NO_TIMESTAMP: i64 = -1;
/// Producer id, epoch and sequence of a non-idempotent producer.
const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;
const NO_SEQUENCE: i32 = -1;
/// Largest batch whose length field fits an i32.
const BATCH_BYTES_MAX: usize = i32::MAX as usize + LOG_OVERHEAD_BYTES;

/// Builds one v2 RecordBatch from pushed records.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    compression: Compression,
    log_append_time: bool,
    transactional: bool,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    /// Header placeholder (61 bytes), then the uncompressed records.
    buf: Vec<u8>,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
}

/// Panics if a length does not fit the i32 of the wire format: no batch
/// can hold it, so a caller passing it has broken its own size limits.
fn len_i32(len: usize) -> i32 {
    assert!(
        len <= i32::MAX as usize,
        "field of {len} bytes cannot fit a record batch"
    );
    len as i32
}

fn nullable_len(bytes: Option<&[u8]>) -> usize {
    match bytes {
        None => varint_len(-1),
        Some(b) => varint_len(len_i32(b.len())) + b.len(),
    }
}

fn put_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, len_i32(b.len()));
            out.extend_from_slice(b);
        }
    }
}

impl BatchBuilder {
    /// An empty builder for records compressed with `compression`.
    pub fn new(compression: Compression) -> Self {
        Self::with_capacity(compression, 0)
    }

    /// Like `new`, with room for `records_bytes` of encoded records reserved.
    pub fn with_capacity(compression: Compression, records_bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(BATCH_HEADER_BYTES + records_bytes);
        buf.resize(BATCH_HEADER_BYTES, 0);
        BatchBuilder {
            compression,
            log_append_time: false,
            transactional: false,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            buf,
            count: 0,
            base_timestamp: NO_TIMESTAMP,
            max_timestamp: NO_TIMESTAMP,
        }
    }

    /// Sets the timestamp-type attribute to log append time.
    pub fn log_append_time(mut self, yes: bool) -> Self {
        self.log_append_time = yes;
        self
    }

    /// Sets the transactional attribute.
    pub fn transactional(mut self, yes: bool) -> Self {
        self.transactional = yes;
        self
    }

    /// Idempotent-producer fields; the default is -1, -1, -1 (none).
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// The codec `build` compresses with.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Appends one record. `None` key/value/header value encode as null
    /// (length -1), distinct from empty. Panics only past i32::MAX records or
    /// on a field longer than i32::MAX bytes (no batch could hold either).
    pub fn push(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) {
        assert!(self.count < i32::MAX, "record batch is full (i32::MAX records)");
        if self.count == 0 {
            self.base_timestamp = timestamp_ms;
            self.max_timestamp = timestamp_ms;
        } else {
            self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        }
        let timestamp_delta = timestamp_ms.wrapping_sub(self.base_timestamp);
        let offset_delta = self.count;
        let headers_len: usize = headers
            .iter()
            .map(|(k, v)| varint_len(len_i32(k.len())) + k.len() + nullable_len(*v))
            .sum();
        let body_len = 1 // attributes
            + varlong_len(timestamp_delta)
            + varint_len(offset_delta)
            + nullable_len(key)
            + nullable_len(value)
            + varint_len(len_i32(headers.len()))
            + headers_len;
        let body_len_i32 = len_i32(body_len);
        let start = self.buf.len();
        self.buf.reserve(varint_len(body_len_i32) + body_len);

        let out = &mut self.buf;
        put_varint(out, body_len_i32);
        let body_start = out.len();
        out.push(0); // record attributes: unused in v2
        put_varlong(out, timestamp_delta);
        put_varint(out, offset_delta);
        put_nullable(out, key);
        put_nullable(out, value);
        put_varint(out, len_i32(headers.len()));
        for (k, v) in headers {
            put_nullable(out, Some(k.as_bytes()));
            put_nullable(out, *v);
        }
        // Paired check: the length written up front matches what followed.
        assert_eq!(
            out.len() - body_start,
            body_len,
            "record length prefix disagrees with body"
        );
        debug_assert!(out.len() > start);
        self.count += 1;
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// No record pushed yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Uncompressed batch size so far, header included: what linger and
    /// batch.size decisions compare against.
    pub fn estimated_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Drops every record and keeps the buffer (and the settings) for reuse.
    pub fn clear(&mut self) {
        self.buf.truncate(BATCH_HEADER_BYTES);
        self.count = 0;
        self.base_timestamp = NO_TIMESTAMP;
        self.max_timestamp = NO_TIMESTAMP;
    }

    fn attributes(&self) -> i16 {
        let mut attributes = i16::from(self.compression.id());
        if self.log_append_time {
            attributes |= ATTR_LOG_APPEND_TIME;
        }
        if self.transactional {
            attributes |= ATTR_TRANSACTIONAL;
        }
        attributes
    }

    /// Builds the batch with base offset 0, partition leader epoch -1 and a
    /// correct CRC. An empty builder yields a valid batch of 0 records
    /// (last offset delta 0, timestamps -1). Errors only if compression
    /// fails or the result exceeds the i32 batch length.
    pub fn build(&self) -> Result<BytesMut, RecordError> {
        let raw = &self.buf[BATCH_HEADER_BYTES..];
        let mut out = match self.compression {
            Compression::None => Vec::with_capacity(self.buf.len()),
            _ => Vec::with_capacity(BATCH_HEADER_BYTES + raw.len() / 2),
        };
        out.resize(BATCH_HEADER_BYTES, 0);
        self.compression.compress(raw, &mut out)?;
        self.seal(out)
    }

    /// Like `build`, consuming the builder: an uncompressed batch is sealed
    /// in the builder's own buffer, without copying the records.
    pub fn finish(mut self) -> Result<BytesMut, RecordError> {
        if self.compression != Compression::None {
            return self.build();
        }
        let out = std::mem::take(&mut self.buf);
        self.seal(out)
    }

    /// Writes the header into `out[..61]` (records already follow it) and
    /// the CRC over the whole batch.
    fn seal(&self, mut out: Vec<u8>) -> Result<BytesMut, RecordError> {
        if out.len() > BATCH_BYTES_MAX {
            return Err(RecordError::TooLarge {
                size: out.len(),
                max: BATCH_BYTES_MAX,
            });
        }
        let header = BatchHeader {
            base_offset: 0,
            batch_length: len_i32(out.len() - LOG_OVERHEAD_BYTES),
            partition_leader_epoch: -1,
            magic: MAGIC_V2,
            crc: 0,
            attributes: self.attributes(),
            last_offset_delta: (self.count - 1).max(0),
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            records_count: self.count,
        };
        header.write_to(&mut out);
        let crc = seal_crc(&mut out);
        debug_assert_eq!(
            BatchHeader::parse(&out),
            Ok(BatchHeader { crc, ..header }),
            "built header does not read back"
        );
        Ok(BytesMut::from(Bytes::from(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{records, validate};

    const TS: i64 = 1_479_847_795_005;

    #[test]
    fn one_record_batch_matches_hand_built_bytes() {
        let mut b = BatchBuilder::new(Compression::None);
        b.push(
            TS,
            Some(&[1, 2, 3, 4]),
            Some(&[5, 6, 7]),
            &[("\x08\x09\x0a", Some(&[11, 12]))],
        );
        let built = b.build().unwrap();
        let ts = TS.to_be_bytes();
        let mut expected: Vec<u8> = vec![0, 0, 0, 0, 0, 0, 0, 0]; // baseOffset 0
        expected.extend_from_slice(&[0, 0, 0, 70]); // batchLength = 82 - 12
        expected.extend_from_slice(&[0xff; 4]); // leader epoch -1
        expected.push(2); // magic
        expected.extend_from_slice(&[0; 4]); // crc, below
        expected.extend_from_slice(&[0, 0]); // attributes
        expected.extend_from_slice(&[0, 0, 0, 0]); // lastOffsetDelta
        expected.extend_from_slice(&ts); // baseTimestamp
        expected.extend_from_slice(&ts); // maxTimestamp
        expected.extend_from_slice(&[0xff; 8]); // producerId -1
        expected.extend_from_slice(&[0xff; 2]); // producerEpoch -1
        expected.extend_from_slice(&[0xff; 4]); // baseSequence -1
        expected.extend_from_slice(&[0, 0, 0, 1]); // recordsCount
        expected.extend_from_slice(&[
            40, // record length 20, zigzag
            0,  // attributes
            0,  // timestamp delta
            0,  // offset delta
            8, 1, 2, 3, 4, // key length 4, key
            6, 5, 6, 7, // value length 3, value
            2, // one header
            6, 8, 9, 10, // header key length 3, key
            4, 11, 12, // header value length 2, value
        ]);
        let crc = crc32c::crc32c(&expected[21..]);
        expected[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(&built[..], &expected[..]);
        assert_eq!(b.estimated_bytes(), expected.len());
    }

    #[test]
    fn finish_equals_build() {
        for compression in Compression::all() {
            let mut b = BatchBuilder::new(compression).producer(1, 2, 3);
            b.push(TS, Some(b"key"), Some(&[9; 3000]), &[("h", Some(b"v"))]);
            b.push(TS + 1, None, None, &[]);
            let built = b.build().unwrap();
            assert_eq!(b.finish().unwrap(), built, "{compression}");
        }
    }

    #[test]
    fn empty_builder_builds_a_valid_empty_batch() {
        let b = BatchBuilder::new(Compression::Zstd);
        assert!(b.is_empty());
        let buf = b.build().unwrap().freeze();
        let h = validate(&buf, 1 << 20).unwrap();
        assert_eq!((h.records_count, h.last_offset_delta), (0, 0));
        assert_eq!((h.base_timestamp, h.max_timestamp), (NO_TIMESTAMP, NO_TIMESTAMP));
        assert_eq!(records(&buf, 1 << 20).unwrap().count(), 0);
    }

    #[test]
    fn settings_reach_the_header() {
        let mut b = BatchBuilder::new(Compression::Snappy)
            .log_append_time(true)
            .transactional(true)
            .producer(77, 3, 1000);
        b.push(500, None, None, &[]);
        b.push(100, None, None, &[]);
        b.push(900, None, None, &[]);
        let h = validate(&b.build().unwrap(), 1 << 20).unwrap();
        assert_eq!(h.compression(), Compression::Snappy);
        assert!(h.is_log_append_time() && h.is_transactional() && !h.is_control());
        assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (77, 3, 1000));
        assert_eq!((h.base_timestamp, h.max_timestamp), (500, 900));
        assert_eq!((h.records_count, h.last_offset_delta), (3, 2));
        assert_eq!((h.base_offset, h.partition_leader_epoch), (0, -1));
    }

    #[test]
    fn out_of_order_and_extreme_timestamps_round_trip() {
        let stamps = [0, i64::MAX, i64::MIN, -1, 1_700_000_000_000, 5];
        let mut b = BatchBuilder::new(Compression::None);
        for ts in stamps {
            b.push(ts, Some(b"k"), None, &[]);
        }
        let buf = b.build().unwrap().freeze();
        let got: Vec<i64> = records(&buf, 1 << 20).unwrap().map(|r| r.unwrap().timestamp).collect();
        assert_eq!(got, stamps);
        assert_eq!(validate(&buf, 1 << 20).unwrap().max_timestamp, i64::MAX);
    }

    #[test]
    fn estimated_bytes_tracks_the_uncompressed_size() {
        let mut b = BatchBuilder::with_capacity(Compression::Lz4, 4096);
        assert_eq!(b.estimated_bytes(), BATCH_HEADER_BYTES);
        b.push(1, Some(&[0; 100]), Some(&[0; 1000]), &[]);
        let one = b.estimated_bytes();
        assert!((BATCH_HEADER_BYTES + 1100..BATCH_HEADER_BYTES + 1120).contains(&one));
        b.push(2, Some(&[0; 100]), Some(&[0; 1000]), &[]);
        assert_eq!(b.len(), 2);
        assert!(
            b.build().unwrap().len() < b.estimated_bytes(),
            "lz4 should shrink zeros"
        );
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.estimated_bytes(), BATCH_HEADER_BYTES);
        assert_eq!(b.compression(), Compression::Lz4);
    }
}
