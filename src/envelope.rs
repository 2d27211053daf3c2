//! The one frame around every small structure Sluice writes to a file of
//! its own or sends to a peer outside the data path: topic metadata, the
//! producer-id bound, a node's identity, producer-state snapshots, the
//! leader-epoch checkpoint, and the controller quorum's messages, hard
//! state, snapshot and log header.
//!
//! ```text
//! magic [4] | version u16 | flags u16 (0) | body_len u32 | crc32c(body) u32 | body
//! ```
//!
//! Big-endian. Opening checks, in order: that the 16-byte header is there,
//! the magic, the version (an unknown one is refused, never guessed at),
//! the flags, the length against the caller's maximum (before anything is
//! allocated) and against the bytes present, then the checksum. A file
//! that fails is reported with what failed; what to do then (refuse to
//! start, fall back to a replay) is the caller's.

use std::io::Write;
use std::path::Path;

/// Bytes before the body.
pub const HEADER_BYTES: usize = 16;

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("{got} bytes is shorter than a {HEADER_BYTES}-byte frame header")]
    TooShort { got: usize },
    #[error("bad magic {got:02x?}, expected {expected:02x?}")]
    BadMagic { got: [u8; 4], expected: [u8; 4] },
    #[error("unsupported version {got} (this build reads version {expected})")]
    UnsupportedVersion { got: u16, expected: u16 },
    #[error("unknown frame flags {got:#06x}")]
    UnknownFlags { got: u16 },
    #[error("body of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("header says {declared} body bytes but {present} are present")]
    LengthMismatch { declared: usize, present: usize },
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
}

/// The frame of one kind of structure: its magic and format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope {
    pub magic: [u8; 4],
    pub version: u16,
}

impl Envelope {
    /// `body` in its frame; refuses a body the length field cannot describe.
    pub fn seal(&self, body: &[u8]) -> Result<Vec<u8>, FrameError> {
        let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge {
            len: body.len(),
            max: u32::MAX as usize,
        })?;
        let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
        out.extend_from_slice(&self.magic);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
        out.extend_from_slice(body);
        Ok(out)
    }

    /// The body of the frame that is exactly `bytes`.
    pub fn open<'a>(&self, bytes: &'a [u8], body_bytes_max: usize) -> Result<&'a [u8], FrameError> {
        let Some((header, body)) = bytes.split_first_chunk::<HEADER_BYTES>() else {
            return Err(FrameError::TooShort { got: bytes.len() });
        };
        let field = |at: usize| [header[at], header[at + 1], header[at + 2], header[at + 3]];
        let magic = field(0);
        if magic != self.magic {
            return Err(FrameError::BadMagic {
                got: magic,
                expected: self.magic,
            });
        }
        let version = u16::from_be_bytes([header[4], header[5]]);
        if version != self.version {
            return Err(FrameError::UnsupportedVersion {
                got: version,
                expected: self.version,
            });
        }
        let flags = u16::from_be_bytes([header[6], header[7]]);
        if flags != 0 {
            return Err(FrameError::UnknownFlags { got: flags });
        }
        let declared = u32::from_be_bytes(field(8)) as usize;
        if declared > body_bytes_max {
            return Err(FrameError::TooLarge {
                len: declared,
                max: body_bytes_max,
            });
        }
        if declared != body.len() {
            return Err(FrameError::LengthMismatch {
                declared,
                present: body.len(),
            });
        }
        let stored = u32::from_be_bytes(field(12));
        let computed = crc32c::crc32c(body);
        if stored != computed {
            return Err(FrameError::Checksum { stored, computed });
        }
        Ok(body)
    }
}

/// Replaces `dir/name` with `bytes` so that a crash leaves the old or the
/// new file whole: temp file `name.tmp`, fsync, rename, directory fsync.
/// Blocking I/O, for small files written rarely.
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: Envelope = Envelope {
        magic: *b"TEST",
        version: 3,
    };

    fn seal(body: &[u8]) -> Vec<u8> {
        E.seal(body).expect("small body")
    }

    #[test]
    fn round_trip() {
        let framed = seal(b"hello");
        assert_eq!(framed.len(), HEADER_BYTES + 5);
        assert_eq!(E.open(&framed, 5), Ok(&b"hello"[..]));
        assert_eq!(E.open(&seal(b""), 0), Ok(&b""[..]));
    }

    #[test]
    fn refuses_every_kind_of_damage() {
        let framed = seal(b"payload");
        assert!(matches!(
            E.open(&framed[..10], 64),
            Err(FrameError::TooShort { got: 10 })
        ));
        let other = Envelope { magic: *b"ELSE", ..E };
        assert!(matches!(other.open(&framed, 64), Err(FrameError::BadMagic { .. })));
        let newer = Envelope { version: 4, ..E };
        assert!(matches!(
            newer.open(&framed, 64),
            Err(FrameError::UnsupportedVersion { got: 3, expected: 4 })
        ));
        assert!(matches!(
            E.open(&framed, 3),
            Err(FrameError::TooLarge { len: 7, max: 3 })
        ));
        let mut v = framed.clone();
        v[7] = 1;
        assert!(matches!(E.open(&v, 64), Err(FrameError::UnknownFlags { got: 1 })));
        assert!(matches!(
            E.open(&framed[..framed.len() - 1], 64),
            Err(FrameError::LengthMismatch {
                declared: 7,
                present: 6
            })
        ));
        let mut v = framed.clone();
        v[HEADER_BYTES] ^= 0x40;
        assert!(matches!(E.open(&v, 64), Err(FrameError::Checksum { .. })));
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let framed = seal(b"0123456789abcdef");
        for bit in 0..framed.len() * 8 {
            let mut v = framed.clone();
            v[bit / 8] ^= 1 << (bit % 8);
            assert!(E.open(&v, 1 << 20).is_err(), "flip of bit {bit} went unnoticed");
        }
    }

    #[test]
    fn the_layout_is_big_endian_and_fixed() {
        // Files written by earlier releases (topic metadata) have exactly
        // this layout: it must never change for a version.
        let framed = seal(b"ab");
        assert_eq!(&framed[..4], b"TEST");
        assert_eq!(&framed[4..8], &[0, 3, 0, 0]);
        assert_eq!(&framed[8..12], &[0, 0, 0, 2]);
        assert_eq!(&framed[12..16], &crc32c::crc32c(b"ab").to_be_bytes());
    }

    #[test]
    fn replace_file_leaves_the_new_content_and_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        replace_file(dir.path(), "f", b"one").expect("write");
        replace_file(dir.path(), "f", b"two").expect("rewrite");
        assert_eq!(std::fs::read(dir.path().join("f")).expect("read"), b"two");
        assert!(!dir.path().join("f.tmp").exists());
    }
}
