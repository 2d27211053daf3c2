//! Records inside a v2 batch: the decoded `Record`, and `RecordIter`, which
//! walks the records of one batch (decompressing once if needed).
//!
//! Record layout: length varint | attributes i8 | timestampDelta varlong |
//! offsetDelta varint | keyLength varint (-1 = null) | key |
//! valueLength varint (-1 = null) | value | headersCount varint |
//! headers (keyLength varint, key utf8, valueLength varint (-1 = null), value).
//!
//! Invariants: every length is checked against the bytes that remain before
//! anything is sliced or allocated; the records count is bounded by the
//! bytes (a record is at least 7 bytes); a record's fields must fill its
//! length exactly; after the last record no bytes may remain. Keys and
//! values are zero-copy slices of the batch (or of the one decompressed
//! buffer). After the first error the iterator is fused.
use bytes::Bytes;

use super::batch::{BatchHeader, BATCH_HEADER_BYTES};
use super::varint::{read_varint, read_varlong};
use super::{Compression, RecordError};

/// Smallest encoded record: length, attributes, timestamp delta, offset
/// delta, key length, value length, header count at one byte each.
const RECORD_BYTES_MIN: usize = 7;
/// Smallest encoded header: key length and value length at one byte each.
const HEADER_BYTES_MIN: usize = 2;

/// One record header: a UTF-8 key and an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    /// Header name.
    pub key: String,
    /// Header value; `None` is distinct from empty.
    pub value: Option<Bytes>,
}

/// One decoded record with absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// base_offset + offset_delta.
    pub offset: i64,
    /// base_timestamp + timestamp_delta, or max_timestamp for log append time.
    pub timestamp: i64,
    /// Key; `None` is distinct from empty.
    pub key: Option<Bytes>,
    /// Value; `None` (a tombstone) is distinct from empty.
    pub value: Option<Bytes>,
    /// Headers in wire order.
    pub headers: Vec<RecordHeader>,
}

/// Iterates the records of one batch. Yields `Err` once on malformed input,
/// then ends.
#[derive(Debug)]
pub struct RecordIter {
    header: BatchHeader,
    /// The records section, decompressed if the batch was compressed.
    data: Bytes,
    pos: usize,
    remaining: usize,
    /// Some(max_timestamp) when every record's timestamp is the append time.
    log_append_time: Option<i64>,
    done: bool,
}

/// Iterates the records of `batch`, which must be exactly one batch (its
/// length field must match `batch.len()`). The CRC is not checked here:
/// callers validate first. A compressed batch is decompressed once, its
/// output bounded by `max_decompressed_bytes`.
pub fn records(batch: &Bytes, max_decompressed_bytes: usize) -> Result<RecordIter, RecordError> {
    let header = BatchHeader::parse(batch)?;
    let total = header.total_bytes();
    if total > batch.len() {
        return Err(RecordError::TooShort);
    }
    if total < batch.len() {
        return Err(RecordError::BadLength);
    }
    let body = batch.slice(BATCH_HEADER_BYTES..total);
    let data = match header.compression() {
        // Compaction can leave a compressed batch with no records and no
        // payload at all (Kafka keeps such headers for producer state).
        _ if body.is_empty() => body,
        Compression::None => body,
        codec => Bytes::from(codec.decompress(&body, max_decompressed_bytes)?),
    };
    let remaining = usize::try_from(header.records_count).unwrap_or(0);
    if remaining > data.len() / RECORD_BYTES_MIN {
        return Err(RecordError::Corrupt("records count exceeds the records bytes"));
    }
    let log_append_time = header.is_log_append_time().then_some(header.max_timestamp);
    Ok(RecordIter {
        header,
        data,
        pos: 0,
        remaining,
        log_append_time,
        done: false,
    })
}

impl RecordIter {
    /// The header of the batch being iterated.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    fn read_next(&self) -> Result<(Record, usize), RecordError> {
        let data = &self.data;
        let mut input = &data[self.pos..];
        let len = read_varint(&mut input)?;
        let len = usize::try_from(len).map_err(|_| RecordError::Corrupt("negative record length"))?;
        if len > input.len() {
            return Err(RecordError::Corrupt("record length past the end of the batch"));
        }
        let (mut body, rest) = input.split_at(len);
        let next_pos = data.len() - rest.len();
        let (_attributes, tail) = body
            .split_first()
            .ok_or(RecordError::Corrupt("record shorter than its fields"))?;
        body = tail;
        let timestamp_delta = read_varlong(&mut body)?;
        let offset_delta = read_varint(&mut body)?;
        let key = read_nullable(&mut body, data)?;
        let value = read_nullable(&mut body, data)?;
        let headers = read_headers(&mut body, data)?;
        if !body.is_empty() {
            return Err(RecordError::Corrupt("record length disagrees with its fields"));
        }
        let timestamp = self
            .log_append_time
            .unwrap_or(self.header.base_timestamp.wrapping_add(timestamp_delta));
        let record = Record {
            offset: self.header.base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp,
            key,
            value,
            headers,
        };
        Ok((record, next_pos))
    }
}

impl Iterator for RecordIter {
    type Item = Result<Record, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.remaining == 0 {
            self.done = true;
            if self.pos != self.data.len() {
                return Some(Err(RecordError::Corrupt("bytes left after the last record")));
            }
            return None;
        }
        match self.read_next() {
            Ok((record, next_pos)) => {
                debug_assert!(next_pos > self.pos && next_pos <= self.data.len());
                self.pos = next_pos;
                self.remaining -= 1;
                Some(Ok(record))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // A trailing-bytes error may follow the last record; an early error
        // may end it: so nothing is promised below.
        if self.done {
            (0, Some(0))
        } else {
            (0, Some(self.remaining + 1))
        }
    }
}

/// Reads a length-prefixed byte string whose length -1 means null; returns a
/// zero-copy slice of `data`, which `input` must point into.
fn read_nullable(input: &mut &[u8], data: &Bytes) -> Result<Option<Bytes>, RecordError> {
    let len = read_varint(input)?;
    if len == -1 {
        return Ok(None);
    }
    let bytes = take(input, len)?;
    Ok(Some(data.slice_ref(bytes)))
}

/// Takes `len` bytes off the front of `input`, rejecting negative lengths
/// and lengths past the end.
fn take<'a>(input: &mut &'a [u8], len: i32) -> Result<&'a [u8], RecordError> {
    let len = usize::try_from(len).map_err(|_| RecordError::Corrupt("negative field length"))?;
    if len > input.len() {
        return Err(RecordError::Corrupt("field length past the end of the record"));
    }
    let (head, tail) = input.split_at(len);
    *input = tail;
    Ok(head)
}

fn read_headers(input: &mut &[u8], data: &Bytes) -> Result<Vec<RecordHeader>, RecordError> {
    let count = read_varint(input)?;
    let count = usize::try_from(count).map_err(|_| RecordError::Corrupt("negative header count"))?;
    if count > input.len() / HEADER_BYTES_MIN {
        return Err(RecordError::Corrupt("header count exceeds the record bytes"));
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let key_len = read_varint(input)?;
        let key =
            std::str::from_utf8(take(input, key_len)?).map_err(|_| RecordError::Corrupt("header key is not UTF-8"))?;
        let value = read_nullable(input, data)?;
        headers.push(RecordHeader {
            key: key.to_owned(),
            value,
        });
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::batch::seal_crc;
    use crate::record::{validate, BatchBuilder};

    /// Assembles one of sarama's (Go client) test batches: a one-record
    /// batch whose header differs only in length, CRC and codec.
    fn sarama(batch_length: u8, crc: [u8; 4], codec: u8, body: &[u8]) -> Bytes {
        let mut b = vec![0u8; BATCH_HEADER_BYTES];
        b[11] = batch_length;
        b[16] = 2;
        b[17..21].copy_from_slice(&crc);
        b[22] = codec;
        b[27..35].copy_from_slice(&1_479_847_795_000i64.to_be_bytes());
        b[60] = 1;
        b.extend_from_slice(body);
        Bytes::from(b)
    }

    fn sarama_batches() -> Vec<Bytes> {
        vec![
            sarama(
                70,
                [84, 121, 97, 253],
                0,
                &[40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6, 7, 2, 6, 8, 9, 10, 4, 11, 12],
            ),
            sarama(
                95,
                [231, 74, 206, 165],
                1,
                &[
                    31, 139, 8, 0, 0, 9, 110, 136, 0, 255, 0, 21, 0, 234, 255, 40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6, 7,
                    2, 6, 8, 9, 10, 4, 11, 12, 3, 0, 173, 201, 88, 103, 21, 0, 0, 0,
                ],
            ),
            // Raw snappy, no xerial framing (as librdkafka may write).
            sarama(
                72,
                [21, 0, 159, 97],
                2,
                &[
                    21, 80, 40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6, 7, 2, 6, 8, 9, 10, 4, 11, 12,
                ],
            ),
            // LZ4 frame with a content checksum and 4 MiB block size.
            sarama(
                89,
                [169, 74, 119, 197],
                3,
                &[
                    4, 34, 77, 24, 100, 112, 185, 21, 0, 0, 128, 40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6, 7, 2, 6, 8, 9,
                    10, 4, 11, 12, 0, 0, 0, 0, 12, 59, 239, 146,
                ],
            ),
        ]
    }

    #[test]
    fn decodes_batches_written_by_another_client() {
        let expected = Record {
            offset: 0,
            timestamp: 1_479_847_795_005,
            key: Some(Bytes::from_static(&[1, 2, 3, 4])),
            value: Some(Bytes::from_static(&[5, 6, 7])),
            headers: vec![RecordHeader {
                key: "\x08\x09\x0a".to_owned(),
                value: Some(Bytes::from_static(&[11, 12])),
            }],
        };
        for (codec, batch) in sarama_batches().into_iter().enumerate() {
            let h = validate(&batch, 1 << 20).unwrap();
            assert_eq!(usize::from(h.compression().id()), codec);
            let got: Vec<Record> = records(&batch, 1 << 20).unwrap().collect::<Result<_, _>>().unwrap();
            assert_eq!(got, std::slice::from_ref(&expected), "codec {codec}");
        }
    }

    #[test]
    fn offsets_and_log_append_time() {
        let mut b = BatchBuilder::new(Compression::None).log_append_time(true);
        b.push(10, Some(b"a"), Some(b""), &[]);
        b.push(20, Some(b""), None, &[("x", Some(b"")), ("y", None)]);
        let mut buf = BytesMut::from(&b.build().unwrap()[..]);
        crate::record::stamp(&mut buf, 1000, 7);
        let buf = buf.freeze();
        let iter = records(&buf, 1 << 20).unwrap();
        assert_eq!(iter.header().base_offset, 1000);
        let got: Vec<Record> = iter.map(Result::unwrap).collect();
        assert_eq!(got[0].offset, 1000);
        assert_eq!(got[1].offset, 1001);
        // Log append time: every record takes the batch's max timestamp.
        assert_eq!((got[0].timestamp, got[1].timestamp), (20, 20));
        assert_eq!(got[0].value.as_deref(), Some(&b""[..]));
        assert_eq!(got[1].key.as_deref(), Some(&b""[..]));
        assert_eq!(got[1].value, None);
        assert_eq!(got[1].headers[0].value.as_deref(), Some(&b""[..]));
        assert_eq!(got[1].headers[1].value, None);
    }

    use bytes::BytesMut;

    /// An uncompressed batch with a hand-written records section and a
    /// correct CRC, so only the record decoder can object.
    fn raw_batch(count: i32, body: &[u8]) -> Bytes {
        let mut b = vec![0u8; BATCH_HEADER_BYTES];
        let header = BatchHeader {
            base_offset: 0,
            batch_length: (BATCH_HEADER_BYTES + body.len() - 12) as i32,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: (count - 1).max(0),
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records_count: count,
        };
        header.write_to(&mut b);
        b.extend_from_slice(body);
        seal_crc(&mut b);
        validate(&b, 1 << 20).unwrap();
        Bytes::from(b)
    }

    fn first_error(batch: &Bytes) -> RecordError {
        match records(batch, 1 << 20) {
            Err(e) => e,
            Ok(iter) => iter
                .filter_map(Result::err)
                .next()
                .expect("malformed batch decoded without error"),
        }
    }

    /// A well-formed record: no key, value "v", no headers.
    const GOOD: [u8; 8] = [14, 0, 0, 0, 1, 2, b'v', 0];

    #[test]
    fn good_record_helper_decodes() {
        let got: Vec<_> = records(&raw_batch(1, &GOOD), 1 << 20).unwrap().collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap().value.as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn rejects_malformed_records() {
        let cases: &[(&str, i32, &[u8])] = &[
            ("count beyond the bytes", 3, &GOOD),
            (
                "fewer records than counted",
                2,
                &[14, 0, 0, 0, 1, 2, b'v', 0, 0, 0, 0, 0, 0, 0, 0],
            ),
            (
                "bytes after the last record",
                1,
                &[14, 0, 0, 0, 1, 2, b'v', 0, 0, 0, 0, 0, 0, 0],
            ),
            ("negative record length", 1, &[1, 0, 0, 0, 1, 2, b'v', 0]),
            ("record length past the end", 1, &[16, 0, 0, 0, 1, 2, b'v', 0]),
            ("key length -2", 1, &[14, 0, 0, 0, 3, 2, b'v', 0]),
            ("key past the record", 1, &[14, 0, 0, 0, 20, 2, b'v', 0]),
            ("negative header count", 1, &[14, 0, 0, 0, 1, 2, b'v', 1]),
            ("header count past the bytes", 1, &[14, 0, 0, 0, 1, 2, b'v', 2]),
            ("record longer than its fields", 1, &[16, 0, 0, 0, 1, 2, b'v', 0, 0]),
            ("truncated varint", 1, &[14, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff]),
            ("header key not UTF-8", 1, &[20, 0, 0, 0, 1, 2, b'v', 2, 2, 0xff, 1]),
        ];
        for (what, count, body) in cases {
            let err = first_error(&raw_batch(*count, body));
            assert!(matches!(err, RecordError::Corrupt(_)), "{what}: {err:?}");
        }
    }

    #[test]
    fn empty_compressed_batch_has_no_records() {
        for codec in Compression::all() {
            let mut batch = raw_batch(0, &[]).to_vec();
            batch[22] = codec.id();
            seal_crc(&mut batch);
            let batch = Bytes::from(batch);
            assert_eq!(validate(&batch, 1 << 20).unwrap().compression(), codec);
            assert_eq!(records(&batch, 1 << 20).unwrap().count(), 0, "{codec}");
        }
    }

    #[test]
    fn iterator_is_fused_after_an_error() {
        let batch = raw_batch(2, &[14, 0, 0, 0, 1, 2, b'v', 0, 1, 0, 0, 0, 0, 0, 0]);
        let mut iter = records(&batch, 1 << 20).unwrap();
        assert!(iter.next().unwrap().is_ok());
        assert!(iter.next().unwrap().is_err());
        assert!(iter.next().is_none());
        assert_eq!(iter.size_hint(), (0, Some(0)));
    }

    #[test]
    fn rejects_wrong_buffer_extent() {
        let batch = raw_batch(1, &GOOD);
        assert_eq!(
            records(&batch.slice(..batch.len() - 1), 1 << 20).err(),
            Some(RecordError::TooShort)
        );
        let mut long = batch.to_vec();
        long.push(0);
        assert_eq!(records(&Bytes::from(long), 1 << 20).err(), Some(RecordError::BadLength));
    }

    #[test]
    fn decompression_is_bounded() {
        let mut b = BatchBuilder::new(Compression::Zstd);
        b.push(0, None, Some(&[0u8; 100_000]), &[]);
        let batch = b.build().unwrap().freeze();
        assert!(batch.len() < 1000);
        assert!(matches!(
            records(&batch, 50_000).err(),
            Some(RecordError::TooLarge { max: 50_000, .. })
        ));
        assert_eq!(records(&batch, 200_000).unwrap().count(), 1);
    }
}
