//! Turning the record bytes of one fetched partition into records, a few
//! at a time.
//!
//! A fetch answers with whole stored batches, so the first batch may start
//! before the offset asked for (those records are skipped), and the last
//! may be cut short by the size limit (it is left for the next fetch).
//! Every batch is checked (length, magic, CRC-32C when asked) before its
//! records are read; control batches (transaction markers) are skipped but
//! still move the position past them.
//!
//! A [`PartitionCursor`] holds the fetched bytes and decodes on demand, so
//! a consumer turns at most `max_poll_records` into `ConsumedRecord`s per
//! poll however many small records a fetch brought: decoded records cost
//! several times their wire size. Sans-IO.
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;

use super::ClientError;
use crate::record::{self, BatchHeader, RecordHeader, RecordIter};

/// A record read by a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub topic: Rc<str>,
    pub partition: u32,
    pub offset: i64,
    /// Milliseconds since the epoch: the producer's timestamp, or the
    /// broker's append time for topics that use it.
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
}

/// Limits and checks for decoding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecodeLimits {
    pub check_crcs: bool,
    pub decompressed_bytes_max: usize,
}

/// The undecoded rest of one partition's fetched bytes.
pub(crate) struct PartitionCursor {
    pub topic: Rc<str>,
    pub partition: u32,
    /// The next offset to return: records below it are skipped. Moves past
    /// each record returned and past each batch finished.
    pub position: i64,
    chunks: VecDeque<Bytes>,
    /// The batch being read.
    batch: Option<(BatchHeader, RecordIter)>,
    limits: DecodeLimits,
    /// The bytes ended inside a batch (the fetch size cut it).
    pub truncated: bool,
    /// At least one whole batch was found.
    pub whole_batch_seen: bool,
    /// Why reading stopped early; what was returned before it stands.
    pub error: Option<ClientError>,
}

impl std::fmt::Debug for PartitionCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionCursor")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("position", &self.position)
            .field("bytes_left", &self.chunks.iter().map(Bytes::len).sum::<usize>())
            .finish()
    }
}

impl PartitionCursor {
    /// A cursor over `chunks` (each one or more batches back to back) that
    /// returns records from offset `from` on.
    pub(crate) fn new(
        topic: Rc<str>,
        partition: u32,
        from: i64,
        chunks: Vec<Bytes>,
        limits: DecodeLimits,
    ) -> PartitionCursor {
        PartitionCursor {
            topic,
            partition,
            position: from,
            chunks: chunks.into_iter().filter(|c| !c.is_empty()).collect(),
            batch: None,
            limits,
            truncated: false,
            whole_batch_seen: false,
            error: None,
        }
    }

    /// Nothing more to read: the bytes are used up, or an error stopped it.
    pub(crate) fn is_done(&self) -> bool {
        self.error.is_some() || (self.batch.is_none() && self.chunks.is_empty())
    }

    /// Appends up to `max` records to `out`, in offset order.
    pub(crate) fn read(&mut self, max: usize, out: &mut Vec<ConsumedRecord>) {
        let mut taken = 0;
        while taken < max && self.error.is_none() {
            let Some((header, iter)) = &mut self.batch else {
                if let Err(e) = self.open_next_batch() {
                    self.error = Some(e);
                }
                if self.batch.is_none() {
                    return;
                }
                continue;
            };
            match iter.next() {
                Some(Ok(r)) if r.offset < self.position => {}
                Some(Ok(r)) => {
                    self.position = r.offset.saturating_add(1);
                    out.push(ConsumedRecord {
                        topic: self.topic.clone(),
                        partition: self.partition,
                        offset: r.offset,
                        timestamp: r.timestamp,
                        key: r.key,
                        value: r.value,
                        headers: r.headers,
                    });
                    taken += 1;
                }
                Some(Err(e)) => {
                    self.error = Some(e.into());
                    self.batch = None;
                }
                None => {
                    self.position = self.position.max(header.next_offset());
                    self.batch = None;
                }
            }
        }
    }

    /// Finds the next batch holding records at or after the position and
    /// starts reading it; leaves `batch` empty when the bytes are used up.
    fn open_next_batch(&mut self) -> Result<(), ClientError> {
        while let Some(chunk) = self.chunks.front_mut() {
            let size = match record::batch_size(chunk, usize::MAX)? {
                Some(size) if size <= chunk.len() => size,
                _ => {
                    // A batch cut short by the fetch size: the next fetch gets it whole.
                    self.truncated = true;
                    self.chunks.clear();
                    return Ok(());
                }
            };
            let batch = chunk.split_to(size);
            if chunk.is_empty() {
                self.chunks.pop_front();
            }
            let header = match self.limits.check_crcs {
                true => record::validate(&batch, usize::MAX)?,
                false => BatchHeader::parse(&batch)?,
            };
            self.whole_batch_seen = true;
            if header.next_offset() <= self.position {
                continue;
            }
            if header.is_control() {
                self.position = header.next_offset();
                continue;
            }
            let iter = record::records(&batch, self.limits.decompressed_bytes_max)?;
            self.batch = Some((header, iter));
            return Ok(());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{BatchBuilder, Compression, RecordError};
    use bytes::BytesMut;

    const LIMITS: DecodeLimits = DecodeLimits {
        check_crcs: true,
        decompressed_bytes_max: 1 << 20,
    };

    /// A stored batch: `n` records from `base`, values "v<offset>".
    fn batch(base: i64, n: i64, compression: Compression) -> Bytes {
        let mut b = BatchBuilder::new(compression);
        for i in 0..n {
            b.push(1000 + i, Some(b"k"), Some(format!("v{}", base + i).as_bytes()), &[]);
        }
        let mut buf = BytesMut::from(&b.build().unwrap()[..]);
        record::stamp(&mut buf, base, 0);
        buf.freeze()
    }

    fn cursor(from: i64, chunks: Vec<Bytes>) -> PartitionCursor {
        PartitionCursor::new(Rc::from("t"), 2, from, chunks, LIMITS)
    }

    fn read_all(c: &mut PartitionCursor) -> Vec<i64> {
        let mut out = Vec::new();
        c.read(usize::MAX, &mut out);
        out.iter().map(|r| r.offset).collect()
    }

    #[test]
    fn skips_records_before_the_asked_offset() {
        let mut two = BytesMut::from(&batch(0, 5, Compression::None)[..]);
        two.extend_from_slice(&batch(5, 5, Compression::Zstd));
        let mut c = cursor(3, vec![two.freeze(), batch(10, 2, Compression::Lz4)]);
        let mut out = Vec::new();
        c.read(usize::MAX, &mut out);
        assert_eq!(
            out.iter().map(|r| r.offset).collect::<Vec<_>>(),
            [3, 4, 5, 6, 7, 8, 9, 10, 11]
        );
        assert_eq!(c.position, 12);
        assert!(c.is_done() && !c.truncated && c.error.is_none());
        assert_eq!(out[0].value.as_deref(), Some(&b"v3"[..]));
        assert_eq!((out[0].partition, &*out[0].topic), (2, "t"));
    }

    #[test]
    fn reads_at_most_max_records_at_a_time() {
        let mut c = cursor(
            0,
            vec![batch(0, 5, Compression::Snappy), batch(5, 5, Compression::None)],
        );
        let mut out = Vec::new();
        let mut rounds = 0;
        while !c.is_done() {
            let before = out.len();
            c.read(3, &mut out);
            assert!(out.len() - before <= 3);
            rounds += 1;
        }
        assert_eq!(
            out.iter().map(|r| r.offset).collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
        assert_eq!((rounds, c.position), (4, 10));
    }

    #[test]
    fn a_batch_wholly_before_the_offset_is_skipped() {
        let mut c = cursor(5, vec![batch(0, 5, Compression::None)]);
        assert!(read_all(&mut c).is_empty());
        assert_eq!(c.position, 5, "position stays");
        assert!(c.whole_batch_seen);
    }

    #[test]
    fn a_truncated_last_batch_is_left_for_the_next_fetch() {
        let mut bytes = BytesMut::from(&batch(0, 3, Compression::None)[..]);
        let second = batch(3, 3, Compression::None);
        bytes.extend_from_slice(&second[..second.len() - 5]);
        let mut c = cursor(0, vec![bytes.freeze()]);
        assert_eq!(read_all(&mut c), [0, 1, 2]);
        assert_eq!(c.position, 3);
        assert!(c.truncated && c.is_done());
        // Fewer than 12 bytes: no length to read yet.
        let mut c = cursor(0, vec![Bytes::from_static(&[0; 7])]);
        assert!(read_all(&mut c).is_empty());
        assert!(c.truncated && !c.whole_batch_seen);
    }

    #[test]
    fn a_corrupt_batch_stops_reading_after_the_good_ones() {
        let mut bad = BytesMut::from(&batch(3, 3, Compression::None)[..]);
        // The last byte of the last value ("v5"), before the header count.
        let at = bad.len() - 2;
        bad[at] ^= 0x01;
        let mut c = cursor(
            0,
            vec![
                batch(0, 3, Compression::None),
                bad.clone().freeze(),
                batch(6, 1, Compression::None),
            ],
        );
        assert_eq!(read_all(&mut c), [0, 1, 2]);
        assert!(
            matches!(c.error, Some(ClientError::Record(RecordError::CrcMismatch { .. }))),
            "{:?}",
            c.error
        );
        assert_eq!(c.position, 3, "the good batch stands");
        assert!(c.is_done());
        // Without the CRC check the flipped value byte reads as data.
        let lax = DecodeLimits {
            check_crcs: false,
            ..LIMITS
        };
        let mut c = PartitionCursor::new(Rc::from("t"), 0, 0, vec![bad.freeze()], lax);
        let mut out = Vec::new();
        c.read(usize::MAX, &mut out);
        assert_eq!(out[2].value.as_deref(), Some(&b"v4"[..]));
    }
}
