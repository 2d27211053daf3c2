//! Compression codecs of the v2 RecordBatch, in the framings Kafka clients
//! use so batches interoperate with the Java client and librdkafka:
//! gzip stream, snappy in xerial framing (raw snappy also accepted on
//! decode), LZ4 frame format, zstd frame.
//!
//! Invariants: `decompress` never returns, and never grows its output past,
//! more than `max_bytes` (+1 byte to detect the overflow, plus the growth
//! slack of one `Vec` doubling), so a zip bomb cannot allocate unbounded
//! memory. `compress` only appends to `out`; bytes already there are kept.
use std::cell::RefCell;
use std::fmt;
use std::io::{Read, Write};
use std::str::FromStr;

use super::RecordError;

/// Bits 0-2 of the batch attributes.
const COMPRESSION_MASK: i16 = 0x07;
/// xerial snappy-java stream header: magic, then version and compatible
/// version (both i32 BE, 1 and 1).
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_VERSION: i32 = 1;
const XERIAL_COMPATIBLE: i32 = 1;
const XERIAL_HEADER_BYTES: usize = 16;
/// snappy-java's default block size; the Java client writes blocks this big.
const SNAPPY_BLOCK_BYTES_MAX: usize = 32 * 1024;
/// Java's `Deflater.DEFAULT_COMPRESSION` level, which the Kafka client uses.
const GZIP_LEVEL: u32 = 6;
/// Kafka's default zstd level.
const ZSTD_LEVEL: i32 = 3;
/// Guess of the compression ratio used to size the first output allocation.
const DECOMPRESS_RATIO_GUESS: usize = 4;

thread_local! {
    // A zstd context costs ~1 MiB to set up; each shard thread keeps one.
    static ZSTD_COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { RefCell::new(None) };
}

/// The codec named by bits 0-2 of a batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Records stored as they are (id 0).
    #[default]
    None,
    /// gzip stream (id 1).
    Gzip,
    /// snappy, xerial framing (id 2).
    Snappy,
    /// LZ4 frame format (id 3).
    Lz4,
    /// zstd frame (id 4).
    Zstd,
}

impl Compression {
    /// The codec named by the compression bits of `attributes`.
    pub fn from_attributes(attributes: i16) -> Result<Compression, RecordError> {
        Self::from_id((attributes & COMPRESSION_MASK) as u8)
    }

    /// The codec with Kafka's numeric id (0 none .. 4 zstd).
    pub fn from_id(id: u8) -> Result<Compression, RecordError> {
        match id {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(RecordError::UnknownCompression(other)),
        }
    }

    /// Kafka's numeric id, the value of attribute bits 0-2.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// Every codec, in id order.
    pub fn all() -> [Compression; 5] {
        [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ]
    }

    /// The config name (`compression.type` value).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// Appends `raw` compressed with this codec to `out`.
    pub fn compress(self, raw: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
        let err = |e: &dyn fmt::Display| RecordError::Compress(format!("{self}: {e}"));
        match self {
            Compression::None => {
                out.extend_from_slice(raw);
                Ok(())
            }
            Compression::Gzip => {
                let level = flate2::Compression::new(GZIP_LEVEL);
                let mut encoder = flate2::write::GzEncoder::new(out, level);
                encoder.write_all(raw).map_err(|e| err(&e))?;
                encoder.finish().map_err(|e| err(&e))?;
                Ok(())
            }
            Compression::Snappy => snappy_compress_xerial(raw, out).map_err(|e| err(&e)),
            Compression::Lz4 => {
                // Independent 64 KiB blocks: what the Java client writes and
                // the only block mode its reader accepts.
                let info = lz4_flex::frame::FrameInfo::new()
                    .block_size(lz4_flex::frame::BlockSize::Max64KB)
                    .block_mode(lz4_flex::frame::BlockMode::Independent);
                let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
                encoder.write_all(raw).map_err(|e| err(&e))?;
                encoder.finish().map_err(|e| err(&e))?;
                Ok(())
            }
            Compression::Zstd => zstd_compress(raw, out).map_err(|e| err(&e)),
        }
    }

    /// Decompresses `compressed`; fails with `TooLarge` once the output
    /// would exceed `max_bytes`.
    pub fn decompress(self, compressed: &[u8], max_bytes: usize) -> Result<Vec<u8>, RecordError> {
        let hint = compressed.len().saturating_mul(DECOMPRESS_RATIO_GUESS);
        let err = |e: std::io::Error| RecordError::Decompress(format!("{self}: {e}"));
        match self {
            Compression::None => {
                if compressed.len() > max_bytes {
                    return Err(RecordError::TooLarge {
                        size: compressed.len(),
                        max: max_bytes,
                    });
                }
                Ok(compressed.to_vec())
            }
            Compression::Gzip => {
                let decoder = flate2::read::MultiGzDecoder::new(compressed);
                read_bounded(decoder, hint, max_bytes, err)
            }
            Compression::Snappy => snappy_decompress(compressed, max_bytes),
            Compression::Lz4 => {
                let decoder = lz4_flex::frame::FrameDecoder::new(compressed);
                read_bounded(decoder, hint, max_bytes, err)
            }
            Compression::Zstd => {
                let decoder = zstd::stream::read::Decoder::with_buffer(compressed).map_err(err)?;
                read_bounded(decoder, hint, max_bytes, err)
            }
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compression {
    type Err = RecordError;

    /// Parses `none|gzip|snappy|lz4|zstd` (ASCII case-insensitive).
    fn from_str(s: &str) -> Result<Compression, RecordError> {
        Compression::all()
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| RecordError::UnknownCompressionName(s.to_owned()))
    }
}

/// Reads `reader` to its end into a new Vec, failing once more than
/// `max_bytes` come out. Reads at most `max_bytes + 1` bytes.
fn read_bounded<R: Read>(
    reader: R,
    hint: usize,
    max_bytes: usize,
    err: impl Fn(std::io::Error) -> RecordError,
) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::with_capacity(hint.min(max_bytes));
    let limit = u64::try_from(max_bytes).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(limit).read_to_end(&mut out).map_err(err)?;
    if out.len() > max_bytes {
        return Err(RecordError::TooLarge {
            size: out.len(),
            max: max_bytes,
        });
    }
    Ok(out)
}

fn zstd_compress(raw: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    ZSTD_COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = match slot.as_mut() {
            Some(c) => c,
            None => slot.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
        };
        out.reserve(zstd::zstd_safe::compress_bound(raw.len()));
        // A cursor at the end makes zstd append instead of overwrite.
        let start = out.len() as u64;
        let mut cursor = std::io::Cursor::new(out);
        cursor.set_position(start);
        compressor.compress_to_buffer(raw, &mut cursor)?;
        Ok(())
    })
}

fn snappy_compress_xerial(raw: &[u8], out: &mut Vec<u8>) -> Result<(), snap::Error> {
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
    out.extend_from_slice(&XERIAL_COMPATIBLE.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    for block in raw.chunks(SNAPPY_BLOCK_BYTES_MAX) {
        let len_at = out.len();
        let body_at = len_at + 4;
        out.resize(body_at + snap::raw::max_compress_len(block.len()), 0);
        let written = encoder.compress(block, &mut out[body_at..])?;
        out.truncate(body_at + written);
        // A 32 KiB block compresses to well under i32::MAX bytes.
        let written_i32 = i32::try_from(written).unwrap_or(i32::MAX);
        out[len_at..body_at].copy_from_slice(&written_i32.to_be_bytes());
    }
    Ok(())
}

/// xerial framing if the magic is there, else one raw snappy block (what
/// librdkafka may write). An empty payload is an empty stream, as in
/// snappy-java.
fn snappy_decompress(compressed: &[u8], max_bytes: usize) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::new();
    if compressed.is_empty() {
        return Ok(out);
    }
    if !compressed.starts_with(&XERIAL_MAGIC) {
        snappy_block_into(compressed, &mut out, max_bytes)?;
        return Ok(out);
    }
    let mut rest = compressed
        .get(XERIAL_HEADER_BYTES..)
        .ok_or(RecordError::Corrupt("truncated xerial snappy header"))?;
    while !rest.is_empty() {
        let (len_bytes, tail) = rest
            .split_first_chunk::<4>()
            .ok_or(RecordError::Corrupt("truncated xerial snappy block length"))?;
        let len = usize::try_from(i32::from_be_bytes(*len_bytes))
            .map_err(|_| RecordError::Corrupt("negative xerial snappy block length"))?;
        if len > tail.len() {
            return Err(RecordError::Corrupt("xerial snappy block past the end"));
        }
        let (block, after) = tail.split_at(len);
        snappy_block_into(block, &mut out, max_bytes)?;
        rest = after;
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, checking its declared size
/// against `max_bytes` before allocating.
fn snappy_block_into(block: &[u8], out: &mut Vec<u8>, max_bytes: usize) -> Result<(), RecordError> {
    let err = |e: snap::Error| RecordError::Decompress(format!("snappy: {e}"));
    let len = snap::raw::decompress_len(block).map_err(err)?;
    let start = out.len();
    let end = start.saturating_add(len);
    if end > max_bytes {
        return Err(RecordError::TooLarge {
            size: end,
            max: max_bytes,
        });
    }
    out.resize(end, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(err)?;
    if written != len {
        return Err(RecordError::Corrupt("snappy block shorter than declared"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compressible but not trivial: repeating text with a counter.
    fn sample(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 32);
        let mut i = 0u64;
        while out.len() < len {
            out.extend_from_slice(format!("record-{i:08} value {} ", i * 7919 % 1000).as_bytes());
            i += 1;
        }
        out.truncate(len);
        out
    }

    fn compress(c: Compression, raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        c.compress(raw, &mut out).unwrap();
        out
    }

    #[test]
    fn every_codec_round_trips() {
        for c in Compression::all() {
            for len in [0, 1, 100, SNAPPY_BLOCK_BYTES_MAX, 200_000] {
                let raw = sample(len);
                let packed = compress(c, &raw);
                let back = c.decompress(&packed, raw.len()).unwrap();
                assert_eq!(back, raw, "{c} len {len}");
                if len == 200_000 && c != Compression::None {
                    assert!(packed.len() < raw.len() / 2, "{c} did not compress");
                }
            }
        }
    }

    #[test]
    fn compress_appends_after_existing_bytes() {
        let raw = sample(5000);
        for c in Compression::all() {
            let mut out = vec![0xab; 61];
            c.compress(&raw, &mut out).unwrap();
            assert!(out[..61].iter().all(|&b| b == 0xab), "{c} overwrote the prefix");
            assert_eq!(c.decompress(&out[61..], usize::MAX).unwrap(), raw, "{c}");
        }
    }

    #[test]
    fn decompress_respects_max_bytes() {
        let raw = vec![0u8; 100_000];
        for c in Compression::all() {
            let packed = compress(c, &raw);
            assert_eq!(c.decompress(&packed, 100_000).unwrap().len(), 100_000);
            match c.decompress(&packed, 99_999) {
                Err(RecordError::TooLarge { size, max }) => {
                    assert_eq!(max, 99_999, "{c}");
                    assert!(size > 99_999, "{c}");
                }
                other => panic!("{c}: expected TooLarge, got {other:?}"),
            }
            assert!(c.decompress(&packed, 0).is_err(), "{c}");
        }
    }

    #[test]
    fn snappy_bomb_is_rejected_before_allocating() {
        // A raw block that claims 2^32 - 1 bytes of output.
        let bomb = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(matches!(
            Compression::Snappy.decompress(&bomb, 1 << 20),
            Err(RecordError::TooLarge { .. }) | Err(RecordError::Decompress(_))
        ));
    }

    #[test]
    fn raw_snappy_decodes() {
        let raw = sample(70_000);
        let block = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
        assert_ne!(block[..8], XERIAL_MAGIC);
        assert_eq!(Compression::Snappy.decompress(&block, raw.len()).unwrap(), raw);
    }

    #[test]
    fn hand_built_xerial_snappy_decodes() {
        let (a, b) = (b"hello, ".as_slice(), b"xerial world".as_slice());
        let mut stream = XERIAL_MAGIC.to_vec();
        stream.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        for part in [a, b] {
            let block = snap::raw::Encoder::new().compress_vec(part).unwrap();
            stream.extend_from_slice(&(block.len() as i32).to_be_bytes());
            stream.extend_from_slice(&block);
        }
        let out = Compression::Snappy.decompress(&stream, 1024).unwrap();
        assert_eq!(out, b"hello, xerial world");
        // The header alone is an empty stream; a cut header or block is not.
        assert!(Compression::Snappy.decompress(&stream[..16], 1024).unwrap().is_empty());
        assert!(Compression::Snappy.decompress(&stream[..12], 1024).is_err());
        assert!(Compression::Snappy.decompress(&stream[..18], 1024).is_err());
        assert!(Compression::Snappy
            .decompress(&stream[..stream.len() - 1], 1024)
            .is_err());
    }

    #[test]
    fn snappy_encodes_xerial_with_32k_blocks() {
        let raw = sample(3 * SNAPPY_BLOCK_BYTES_MAX + 5);
        let packed = compress(Compression::Snappy, &raw);
        assert_eq!(packed[..8], XERIAL_MAGIC);
        assert_eq!(packed[8..16], [0, 0, 0, 1, 0, 0, 0, 1]);
        let mut rest = &packed[16..];
        let mut sizes = Vec::new();
        while !rest.is_empty() {
            let len = i32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            sizes.push(snap::raw::decompress_len(&rest[4..4 + len]).unwrap());
            rest = &rest[4 + len..];
        }
        let max = SNAPPY_BLOCK_BYTES_MAX;
        assert_eq!(sizes, [max, max, max, 5]);
    }

    #[test]
    fn lz4_writes_independent_64k_blocks() {
        let packed = compress(Compression::Lz4, &sample(1000));
        assert_eq!(packed[..4], [0x04, 0x22, 0x4d, 0x18], "LZ4 frame magic");
        let flg = packed[4];
        assert_eq!(flg >> 6, 0b01, "frame version 01");
        assert_ne!(flg & 0x20, 0, "block independence flag");
        assert_eq!(packed[5], 0x40, "BD: 64 KiB max block size");
    }

    #[test]
    fn gzip_accepts_concatenated_members() {
        let mut packed = compress(Compression::Gzip, b"first ");
        Compression::Gzip.compress(b"second", &mut packed).unwrap();
        let out = Compression::Gzip.decompress(&packed, 100).unwrap();
        assert_eq!(out, b"first second");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let garbage = [0x13u8, 0x37, 0xff, 0x00, 0x42, 0x99, 0x01, 0x02];
        for c in Compression::all() {
            if c != Compression::None {
                assert!(c.decompress(&garbage, 1 << 20).is_err(), "{c}");
            }
        }
    }

    #[test]
    fn ids_and_names() {
        for (i, c) in Compression::all().into_iter().enumerate() {
            assert_eq!(usize::from(c.id()), i);
            assert_eq!(Compression::from_id(c.id()).unwrap(), c);
            assert_eq!(c.to_string().parse::<Compression>().unwrap(), c);
            // Bits above 0-2 (timestamp type, transactional, control) are ignored.
            let attrs = i16::from(c.id()) | 0b11_1000;
            assert_eq!(Compression::from_attributes(attrs).unwrap(), c);
        }
        for id in 5..=7u8 {
            assert_eq!(Compression::from_id(id), Err(RecordError::UnknownCompression(id)));
            assert_eq!(
                Compression::from_attributes(i16::from(id)),
                Err(RecordError::UnknownCompression(id))
            );
        }
        assert_eq!("ZSTD".parse::<Compression>().unwrap(), Compression::Zstd);
        assert!("brotli".parse::<Compression>().is_err());
        assert_eq!(Compression::default(), Compression::None);
    }
}
