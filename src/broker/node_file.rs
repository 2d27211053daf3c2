//! Small durable files of the node's own state (the topic metadata, the
//! producer-id bound): one checked envelope and one atomic replace.
//!
//! Envelope: magic u32 | version u16 | reserved u16 | body_len u32 |
//! crc32c(body) u32 | body, big-endian. Replace: temp file, fsync, rename
//! over the old one, directory fsync, so a crash leaves the old or the new
//! file whole, never half of one.

use std::io::Write;
use std::path::Path;

const HEADER_BYTES: usize = 16;

/// The envelope of one kind of file.
#[derive(Debug, Clone, Copy)]
pub struct Envelope {
    pub magic: u32,
    pub version: u16,
    /// Largest body accepted when reading.
    pub body_bytes_max: usize,
}

impl Envelope {
    /// `body` in its envelope.
    pub fn seal(&self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
        out.extend_from_slice(&self.magic.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// The body of a sealed file, or why the file cannot be trusted.
    pub fn open<'a>(&self, bytes: &'a [u8]) -> Result<&'a [u8], String> {
        let Some((header, body)) = bytes.split_first_chunk::<HEADER_BYTES>() else {
            return Err("file too short".into());
        };
        let u32_at = |at: usize| u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
        if u32_at(0) != self.magic {
            return Err("bad magic".into());
        }
        let version = u16::from_be_bytes([header[4], header[5]]);
        if version != self.version {
            return Err(format!("unknown version {version}"));
        }
        let len = u32_at(8) as usize;
        if len > self.body_bytes_max || body.len() != len {
            return Err("length mismatch".into());
        }
        if crc32c::crc32c(body) != u32_at(12) {
            return Err("CRC mismatch".into());
        }
        Ok(body)
    }
}

/// Replaces `dir/name` with `bytes` durably (see the module docs), through
/// `dir/name.tmp`. Blocking I/O.
pub fn replace(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
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

    #[test]
    fn sealed_bodies_open_and_any_damage_is_refused() {
        let env = Envelope {
            magic: 0x5445_5354,
            version: 3,
            body_bytes_max: 64,
        };
        let sealed = env.seal(b"some body");
        assert_eq!(env.open(&sealed), Ok(&b"some body"[..]));
        for at in 0..sealed.len() {
            if (6..8).contains(&at) {
                continue; // reserved
            }
            let mut bad = sealed.clone();
            bad[at] ^= 0x10;
            assert!(env.open(&bad).is_err(), "flip at {at}");
        }
        for len in 0..sealed.len() {
            assert!(env.open(&sealed[..len]).is_err(), "cut at {len}");
        }
        let big = env.seal(&[0u8; 65]);
        assert!(env.open(&big).is_err(), "over the body limit");
    }
}
