//! Property tests of the v2 RecordBatch codec (`sluice::record`):
//! build → validate → iterate round-trips for every codec, every single-byte
//! corruption under the CRC is caught, and no input makes the decoders
//! panic. Case counts keep the file well under 30 s in debug builds.
use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use sluice::record::{
    batch_size, records, stamp, validate, BatchBuilder, BatchHeader, Compression, Record, RecordHeader,
    BATCH_HEADER_BYTES,
};

const BATCH_BYTES_MAX: usize = 1 << 20;
const DECOMPRESSED_BYTES_MAX: usize = 1 << 20;

#[derive(Debug, Clone)]
struct Input {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn bytes_opt(max: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
    // Empty is common on purpose: it must stay distinct from None.
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Vec::new())),
        3 => vec(any::<u8>(), 0..max).prop_map(Some),
    ]
}

fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => 1_600_000_000_000i64..1_800_000_000_000,
        1 => any::<i64>(),
        1 => Just(-1i64),
    ]
}

fn input() -> impl Strategy<Value = Input> {
    let header = (".{0,8}", bytes_opt(16));
    (timestamp(), bytes_opt(32), bytes_opt(200), vec(header, 0..4)).prop_map(|(timestamp, key, value, headers)| Input {
        timestamp,
        key,
        value,
        headers,
    })
}

fn codec() -> impl Strategy<Value = Compression> {
    prop::sample::select(Compression::all().to_vec())
}

fn build(inputs: &[Input], compression: Compression, log_append_time: bool) -> Bytes {
    let mut b = BatchBuilder::new(compression).log_append_time(log_append_time);
    for r in inputs {
        let headers: Vec<(&str, Option<&[u8]>)> = r.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
        b.push(r.timestamp, r.key.as_deref(), r.value.as_deref(), &headers);
    }
    assert_eq!(b.len(), inputs.len());
    b.build().expect("build").freeze()
}

fn expected(inputs: &[Input], log_append_time: bool) -> Vec<Record> {
    let max_ts = inputs.iter().map(|r| r.timestamp).max().unwrap_or(-1);
    inputs
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            offset: i as i64,
            timestamp: if log_append_time { max_ts } else { r.timestamp },
            key: r.key.clone().map(Bytes::from),
            value: r.value.clone().map(Bytes::from),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| RecordHeader {
                    key: k.clone(),
                    value: v.clone().map(Bytes::from),
                })
                .collect(),
        })
        .collect()
}

/// Runs every decoder entry point on `buf`; only a panic can fail this.
fn exercise(buf: &[u8]) {
    let _ = batch_size(buf, BATCH_BYTES_MAX);
    let _ = BatchHeader::parse(buf);
    if let Ok(h) = validate(buf, BATCH_BYTES_MAX) {
        let _ = (h.total_bytes(), h.last_offset(), h.next_offset(), h.compression());
    }
    if let Ok(iter) = records(&Bytes::copy_from_slice(buf), DECOMPRESSED_BYTES_MAX) {
        // Bounded: the iterator must end (it yields at most count + 1 items).
        for item in iter.take(100_000) {
            let _ = item;
        }
    }
}

/// A header with the given codec and count over arbitrary record bytes,
/// with a correct length and CRC, so it reaches the record decoder.
fn sealed(codec_id: u8, count: i32, body: &[u8]) -> Vec<u8> {
    let total = BATCH_HEADER_BYTES + body.len();
    let header = BatchHeader {
        base_offset: 0,
        batch_length: (total - 12) as i32,
        partition_leader_epoch: 0,
        magic: 2,
        crc: 0,
        attributes: i16::from(codec_id),
        last_offset_delta: (count - 1).max(0),
        base_timestamp: 0,
        max_timestamp: 0,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        records_count: count,
    };
    let mut buf = vec![0u8; BATCH_HEADER_BYTES];
    header.write_to(&mut buf);
    buf.extend_from_slice(body);
    let crc = crc32c::crc32c(&buf[21..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    buf
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trips_with_every_codec(
        inputs in vec(input(), 0..16),
        log_append_time in any::<bool>(),
        base_offset in 0i64..(1 << 40),
        epoch in any::<i32>(),
    ) {
        let want = expected(&inputs, log_append_time);
        for compression in Compression::all() {
            let built = build(&inputs, compression, log_append_time);
            let mut stamped = built.to_vec();
            stamp(&mut stamped, base_offset, epoch);
            let stamped = Bytes::from(stamped);
            let h = validate(&stamped, BATCH_BYTES_MAX).expect("validate");
            prop_assert_eq!(h.compression(), compression);
            prop_assert_eq!(h.records_count as usize, inputs.len());
            prop_assert_eq!(h.base_offset, base_offset);
            prop_assert_eq!(h.partition_leader_epoch, epoch);
            prop_assert_eq!(batch_size(&stamped, BATCH_BYTES_MAX), Ok(Some(stamped.len())));
            let got: Vec<Record> = records(&stamped, DECOMPRESSED_BYTES_MAX)
                .expect("records")
                .collect::<Result<_, _>>()
                .expect("decode");
            let shifted: Vec<Record> = want
                .iter()
                .cloned()
                .map(|mut r| { r.offset += base_offset; r })
                .collect();
            prop_assert_eq!(got, shifted, "codec {}", compression);
            if !inputs.is_empty() {
                prop_assert_eq!(h.next_offset(), base_offset + inputs.len() as i64);
            }
        }
    }

    #[test]
    fn any_single_byte_flip_under_the_crc_is_caught(
        inputs in vec(input(), 1..6),
        compression in codec(),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let built = build(&inputs, compression, false);
        prop_assert!(validate(&built, BATCH_BYTES_MAX).is_ok());
        let mut flipped = built.to_vec();
        let i = 21 + at.index(flipped.len() - 21);
        flipped[i] ^= xor;
        prop_assert!(validate(&flipped, BATCH_BYTES_MAX).is_err(), "flip at {} passed", i);
    }

    #[test]
    fn stamp_region_is_outside_the_crc(
        inputs in vec(input(), 1..4),
        offset_bytes in any::<[u8; 8]>(),
        epoch_bytes in any::<[u8; 4]>(),
    ) {
        let mut buf = build(&inputs, Compression::None, false).to_vec();
        buf[0..8].copy_from_slice(&offset_bytes);
        buf[12..16].copy_from_slice(&epoch_bytes);
        let h = validate(&buf, BATCH_BYTES_MAX).expect("still valid");
        prop_assert_eq!(h.base_offset, i64::from_be_bytes(offset_bytes));
        prop_assert_eq!(h.partition_leader_epoch, i32::from_be_bytes(epoch_bytes));
    }

    #[test]
    fn arbitrary_bytes_never_panic(buf in vec(any::<u8>(), 0..600)) {
        exercise(&buf);
    }

    #[test]
    fn arbitrary_records_under_a_valid_header_never_panic(
        codec_id in 0u8..8,
        count in prop_oneof![0i32..8, any::<i32>()],
        // Mostly small bytes, so lengths and counts often look plausible and
        // the decoder gets past the first field.
        body in prop_oneof![vec(0u8..24, 0..400), vec(any::<u8>(), 0..400)],
    ) {
        let buf = sealed(codec_id, count, &body);
        if codec_id < 5 && count >= 0 {
            prop_assert!(validate(&buf, BATCH_BYTES_MAX).is_ok());
        }
        exercise(&buf);
    }

    #[test]
    fn mutated_and_truncated_batches_never_panic(
        inputs in vec(input(), 0..8),
        compression in codec(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
        reseal in any::<bool>(),
    ) {
        let mut buf = build(&inputs, compression, false).to_vec();
        let len = buf.len();
        for (at, byte) in &edits {
            buf[at.index(len)] = *byte;
        }
        if reseal {
            let crc = crc32c::crc32c(&buf[21..]);
            buf[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        if truncate {
            buf.truncate(cut.index(len + 1));
        }
        exercise(&buf);
    }
}

#[test]
fn decompression_bomb_in_a_valid_batch_is_bounded() {
    // 8 MiB of zeros compresses to a few KiB; the limit must stop it.
    for compression in [
        Compression::Gzip,
        Compression::Lz4,
        Compression::Zstd,
        Compression::Snappy,
    ] {
        let mut b = BatchBuilder::new(compression);
        b.push(0, None, Some(&vec![0u8; 8 << 20]), &[]);
        let batch = b.build().unwrap().freeze();
        assert!(batch.len() < 1 << 20, "{compression}: {} bytes", batch.len());
        assert!(validate(&batch, 1 << 20).is_ok());
        let err = records(&batch, 1 << 20).err();
        assert!(
            matches!(err, Some(sluice::record::RecordError::TooLarge { .. })),
            "{compression}: {err:?}"
        );
    }
}
