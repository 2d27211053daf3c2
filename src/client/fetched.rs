//! Turning the record bytes of one fetched partition into records.
//!
//! A fetch answers with whole stored batches, so the first batch may start
//! before the offset asked for (those records are skipped), and the last
//! may be cut short by the size limit (it is left for the next fetch).
//! Every batch is checked (length, magic, CRC-32C when asked) before its
//! records are read; control batches (transaction markers) are skipped
//! but still move the position past them. Sans-IO.
use std::rc::Rc;

use bytes::Bytes;

use super::ClientError;
use crate::record::{self, RecordHeader};

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

/// What one partition's fetched bytes held.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub records: Vec<ConsumedRecord>,
    /// The offset after the last whole batch read; `None` if none was.
    pub next_offset: Option<i64>,
    /// Bytes were left that do not make a whole batch.
    pub truncated: bool,
    /// Why decoding stopped early: a batch failed its checks. The records
    /// and position before it stand.
    pub error: Option<ClientError>,
}

/// Limits and checks for decoding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecodeLimits {
    pub check_crcs: bool,
    pub decompressed_bytes_max: usize,
}

/// Decodes the records at or after `from` in `chunks` (each one or more
/// batches back to back), in offset order, stopping at the first batch
/// that fails its checks.
pub(crate) fn decode_partition(
    topic: &Rc<str>,
    partition: u32,
    from: i64,
    chunks: &[Bytes],
    limits: DecodeLimits,
) -> Decoded {
    let mut out = Decoded::default();
    for chunk in chunks {
        let mut rest = chunk.clone();
        while !rest.is_empty() {
            let size = match record::batch_size(&rest, usize::MAX) {
                Ok(Some(size)) if size <= rest.len() => size,
                // A batch cut short by the fetch size: the next fetch gets it whole.
                Ok(_) => {
                    out.truncated = true;
                    return out;
                }
                Err(e) => {
                    out.error = Some(e.into());
                    return out;
                }
            };
            let batch = rest.split_to(size);
            if let Err(e) = decode_batch(topic, partition, from, &batch, limits, &mut out) {
                out.error = Some(e);
                return out;
            }
        }
    }
    debug_assert!(
        out.records.windows(2).all(|w| w[0].offset < w[1].offset),
        "records in offset order"
    );
    out
}

/// Checks one whole batch and appends its records at or after `from`; on
/// error nothing of the batch is kept.
fn decode_batch(
    topic: &Rc<str>,
    partition: u32,
    from: i64,
    batch: &Bytes,
    limits: DecodeLimits,
    out: &mut Decoded,
) -> Result<(), ClientError> {
    let header = if limits.check_crcs {
        record::validate(batch, usize::MAX)?
    } else {
        record::BatchHeader::parse(batch)?
    };
    if header.next_offset() <= from {
        return Ok(());
    }
    if !header.is_control() {
        let mut records = Vec::with_capacity(usize::try_from(header.records_count).unwrap_or(0));
        for r in record::records(batch, limits.decompressed_bytes_max)? {
            let r = r?;
            if r.offset < from {
                continue;
            }
            records.push(ConsumedRecord {
                topic: topic.clone(),
                partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r.headers,
            });
        }
        out.records.append(&mut records);
    }
    let next = header.next_offset();
    out.next_offset = Some(out.next_offset.map_or(next, |n| n.max(next)));
    Ok(())
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

    fn offsets(d: &Decoded) -> Vec<i64> {
        d.records.iter().map(|r| r.offset).collect()
    }

    #[test]
    fn skips_records_before_the_asked_offset() {
        let topic: Rc<str> = Rc::from("t");
        let mut two = BytesMut::from(&batch(0, 5, Compression::None)[..]);
        two.extend_from_slice(&batch(5, 5, Compression::Zstd));
        let d = decode_partition(&topic, 2, 3, &[two.freeze(), batch(10, 2, Compression::Lz4)], LIMITS);
        assert!(d.error.is_none());
        assert_eq!(offsets(&d), [3, 4, 5, 6, 7, 8, 9, 10, 11]);
        assert_eq!(d.next_offset, Some(12));
        assert!(!d.truncated);
        assert_eq!(d.records[0].value.as_deref(), Some(&b"v3"[..]));
        assert_eq!((d.records[0].partition, &*d.records[0].topic), (2, "t"));
    }

    #[test]
    fn a_batch_wholly_before_the_offset_is_skipped() {
        let topic: Rc<str> = Rc::from("t");
        let d = decode_partition(&topic, 0, 5, &[batch(0, 5, Compression::None)], LIMITS);
        assert!(d.records.is_empty());
        assert_eq!(d.next_offset, None, "position stays");
    }

    #[test]
    fn a_truncated_last_batch_is_left_for_the_next_fetch() {
        let topic: Rc<str> = Rc::from("t");
        let mut bytes = BytesMut::from(&batch(0, 3, Compression::None)[..]);
        let second = batch(3, 3, Compression::None);
        bytes.extend_from_slice(&second[..second.len() - 5]);
        let d = decode_partition(&topic, 0, 0, &[bytes.freeze()], LIMITS);
        assert_eq!(offsets(&d), [0, 1, 2]);
        assert_eq!(d.next_offset, Some(3));
        assert!(d.truncated);
        // Fewer than 12 bytes: no length to read yet.
        let d = decode_partition(&topic, 0, 0, &[Bytes::from_static(&[0; 7])], LIMITS);
        assert!(d.truncated && d.records.is_empty());
    }

    #[test]
    fn a_corrupt_batch_stops_decoding_after_the_good_ones() {
        let topic: Rc<str> = Rc::from("t");
        let mut bad = BytesMut::from(&batch(3, 3, Compression::None)[..]);
        // The last byte of the last value ("v5"), before the header count.
        let at = bad.len() - 2;
        bad[at] ^= 0x01;
        let chunks = [
            batch(0, 3, Compression::None),
            bad.clone().freeze(),
            batch(6, 1, Compression::None),
        ];
        let d = decode_partition(&topic, 0, 0, &chunks, LIMITS);
        assert!(
            matches!(d.error, Some(ClientError::Record(RecordError::CrcMismatch { .. }))),
            "{:?}",
            d.error
        );
        assert_eq!(
            (offsets(&d), d.next_offset),
            (vec![0, 1, 2], Some(3)),
            "the good batch stands"
        );
        let lax = DecodeLimits {
            check_crcs: false,
            ..LIMITS
        };
        // Without the CRC check the flipped value byte reads as data.
        let d = decode_partition(&topic, 0, 0, &[bad.freeze()], lax);
        assert_eq!(d.records[2].value.as_deref(), Some(&b"v4"[..]));
    }
}
