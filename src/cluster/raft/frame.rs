//! The frames of this module's messages and files: the crate's
//! [`Envelope`](crate::envelope::Envelope) (magic, version, length,
//! CRC-32C) around raft-rs's own generated protobuf, one magic per kind.

pub use crate::envelope::FrameError;
use crate::envelope::{Envelope, HEADER_BYTES};

/// Bytes in a frame header.
pub(crate) const FRAME_HEADER_BYTES: usize = HEADER_BYTES;
/// The only frame version this code writes and reads.
const FRAME_VERSION: u16 = 1;

/// A peer's raft message.
pub(crate) const MAGIC_MESSAGE: [u8; 4] = *b"SLRM";
/// `<dir>/raft/hard_state`: term, vote, commit.
pub(crate) const MAGIC_HARD_STATE: [u8; 4] = *b"SLRH";
/// `<dir>/raft/snapshot`: the last state-machine snapshot and its metadata.
pub(crate) const MAGIC_SNAPSHOT: [u8; 4] = *b"SLRS";
/// The header of `<dir>/raft/log`: the index and term just below its first entry.
pub(crate) const MAGIC_LOG: [u8; 4] = *b"SLRL";

/// Frames `payload` under `magic`.
pub(crate) fn encode(magic: [u8; 4], payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    Envelope {
        magic,
        version: FRAME_VERSION,
    }
    .seal(payload)
}

/// Checks the frame in `bytes` (exactly one frame) and returns its payload.
pub(crate) fn decode(magic: [u8; 4], bytes: &[u8], payload_bytes_max: usize) -> Result<&[u8], FrameError> {
    Envelope {
        magic,
        version: FRAME_VERSION,
    }
    .open(bytes, payload_bytes_max)
}
