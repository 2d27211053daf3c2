//! The frame around every structure this module writes to disk or sends
//! to a peer: a magic naming what the payload is, a format version, the
//! payload's length and its CRC-32C.
//!
//! ```text
//! magic [4] | version u16 LE | flags u16 LE (0) | payload_len u32 LE | payload_crc32c u32 LE | payload
//! ```
//!
//! The payload is protobuf (raft-rs's own generated `eraftpb` codec).
//! Decoding checks, in order: that the 16-byte header is there, the magic,
//! the version (unknown versions are refused, never guessed at), the flags,
//! the length against the caller's maximum (before anything is allocated)
//! and against the bytes actually present, then the checksum.

/// Bytes in a frame header.
pub(crate) const FRAME_HEADER_BYTES: usize = 16;
/// The only frame version this code writes and reads.
pub(crate) const FRAME_VERSION: u16 = 1;

/// A peer's raft message.
pub(crate) const MAGIC_MESSAGE: [u8; 4] = *b"SLRM";
/// `<dir>/raft/hard_state`: term, vote, commit.
pub(crate) const MAGIC_HARD_STATE: [u8; 4] = *b"SLRH";
/// `<dir>/raft/snapshot`: the last state-machine snapshot and its metadata.
pub(crate) const MAGIC_SNAPSHOT: [u8; 4] = *b"SLRS";
/// The header of `<dir>/raft/log`: the index and term just below its first entry.
pub(crate) const MAGIC_LOG: [u8; 4] = *b"SLRL";

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("{got} bytes is shorter than a {FRAME_HEADER_BYTES}-byte frame header")]
    TooShort { got: usize },
    #[error("bad magic {got:02x?}, expected {expected:02x?}")]
    BadMagic { got: [u8; 4], expected: [u8; 4] },
    #[error("unsupported frame version {got} (this build reads version {FRAME_VERSION})")]
    UnsupportedVersion { got: u16 },
    #[error("unknown frame flags {got:#06x}")]
    UnknownFlags { got: u16 },
    #[error("payload of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("header says {declared} payload bytes but {present} are present")]
    LengthMismatch { declared: usize, present: usize },
    #[error("payload checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
}

/// Frames `payload` under `magic`; refuses a payload that the length field
/// cannot describe.
pub(crate) fn encode(magic: [u8; 4], payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let Ok(len) = u32::try_from(payload.len()) else {
        return Err(FrameError::TooLarge {
            len: payload.len(),
            max: u32::MAX as usize,
        });
    };
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    out.extend_from_slice(&magic);
    out.extend_from_slice(&FRAME_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Checks the frame in `bytes` (which must hold exactly one frame) and
/// returns its payload.
pub(crate) fn decode(magic: [u8; 4], bytes: &[u8], payload_bytes_max: usize) -> Result<&[u8], FrameError> {
    let Some((header, payload)) = bytes.split_first_chunk::<FRAME_HEADER_BYTES>() else {
        return Err(FrameError::TooShort { got: bytes.len() });
    };
    let field = |at: usize| [header[at], header[at + 1], header[at + 2], header[at + 3]];
    let got_magic = field(0);
    if got_magic != magic {
        return Err(FrameError::BadMagic {
            got: got_magic,
            expected: magic,
        });
    }
    let version = u16::from_le_bytes([header[4], header[5]]);
    if version != FRAME_VERSION {
        return Err(FrameError::UnsupportedVersion { got: version });
    }
    let flags = u16::from_le_bytes([header[6], header[7]]);
    if flags != 0 {
        return Err(FrameError::UnknownFlags { got: flags });
    }
    let declared = u32::from_le_bytes(field(8)) as usize;
    if declared > payload_bytes_max {
        return Err(FrameError::TooLarge {
            len: declared,
            max: payload_bytes_max,
        });
    }
    if declared != payload.len() {
        return Err(FrameError::LengthMismatch {
            declared,
            present: payload.len(),
        });
    }
    let stored = u32::from_le_bytes(field(12));
    let computed = crc32c::crc32c(payload);
    if stored != computed {
        return Err(FrameError::Checksum { stored, computed });
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(magic: [u8; 4], payload: &[u8]) -> Vec<u8> {
        super::encode(magic, payload).expect("small payload")
    }

    #[test]
    fn round_trip() {
        let framed = encode(MAGIC_MESSAGE, b"hello");
        assert_eq!(framed.len(), FRAME_HEADER_BYTES + 5);
        assert_eq!(decode(MAGIC_MESSAGE, &framed, 5), Ok(&b"hello"[..]));
        assert_eq!(decode(MAGIC_MESSAGE, &encode(MAGIC_MESSAGE, b""), 0), Ok(&b""[..]));
    }

    #[test]
    fn refuses_every_kind_of_damage() {
        let framed = encode(MAGIC_HARD_STATE, b"payload");
        assert!(matches!(
            decode(MAGIC_HARD_STATE, &framed[..10], 64),
            Err(FrameError::TooShort { got: 10 })
        ));
        assert!(matches!(
            decode(MAGIC_SNAPSHOT, &framed, 64),
            Err(FrameError::BadMagic { .. })
        ));
        assert!(matches!(
            decode(MAGIC_HARD_STATE, &framed, 3),
            Err(FrameError::TooLarge { len: 7, max: 3 })
        ));
        let mut v = framed.clone();
        v[4] = 9;
        assert!(matches!(
            decode(MAGIC_HARD_STATE, &v, 64),
            Err(FrameError::UnsupportedVersion { got: 9 })
        ));
        let mut v = framed.clone();
        v[6] = 1;
        assert!(matches!(
            decode(MAGIC_HARD_STATE, &v, 64),
            Err(FrameError::UnknownFlags { got: 1 })
        ));
        assert!(matches!(
            decode(MAGIC_HARD_STATE, &framed[..framed.len() - 1], 64),
            Err(FrameError::LengthMismatch {
                declared: 7,
                present: 6
            })
        ));
        let mut v = framed.clone();
        v[FRAME_HEADER_BYTES] ^= 0x40;
        assert!(matches!(
            decode(MAGIC_HARD_STATE, &v, 64),
            Err(FrameError::Checksum { .. })
        ));
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let framed = encode(MAGIC_LOG, b"0123456789abcdef");
        for bit in 0..framed.len() * 8 {
            let mut v = framed.clone();
            v[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode(MAGIC_LOG, &v, 1 << 20).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }
}
