//! Framing of native messages on a byte stream, and the bounds every
//! incoming FlatBuffer is verified against.
//!
//! A frame is `u32 BE frame_len | u32 BE fb_len | FlatBuffer | payload`.
//! Invariants: `frame_len` is checked against the caller's maximum before
//! anything is allocated for it; `fb_len` is checked against the bytes that
//! actually arrived; the verifier walks at most a bounded multiple of the
//! FlatBuffer's own size, so no frame can make the decoder allocate more
//! than a constant factor of what was received. Runs on whichever shard
//! owns the connection; holds no state.
use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, VerifierOptions};

use super::generated::sluice::native as fb;
use super::NativeError;

/// Bytes of the length prefix that precedes every frame.
pub const FRAME_PREFIX_BYTES: usize = 4;
/// Bytes of the FlatBuffer length that opens every frame body.
pub(crate) const FB_LEN_BYTES: usize = 4;
/// Deepest nesting of tables the schema produces is 5 (frame, body, topic,
/// config, flush policy); anything much deeper is hostile.
const VERIFY_DEPTH_MAX: usize = 16;
/// Every table occupies at least 4 bytes (its vtable offset), and a vector
/// element referring to it 4 more, so a real buffer of n bytes holds fewer
/// than n / 4 tables. The constant allows tiny buffers.
const VERIFY_TABLE_BYTES_MIN: usize = 4;
const VERIFY_TABLES_SLACK: usize = 16;
/// Shared vtables are counted once per table that uses them, so a real
/// buffer's apparent size exceeds its size by a small factor (below 3 for
/// the worst legitimate shapes: thousands of all-default tables); aliasing
/// (many offsets to one large vector) is what this bound stops.
const VERIFY_APPARENT_SIZE_FACTOR: usize = 8;
const VERIFY_APPARENT_SIZE_SLACK: usize = 1024;

/// Parses the 4-byte length prefix of a frame: `Ok(None)` until 4 bytes are
/// there, `Err(FrameTooLarge)` if the frame announced exceeds `max_frame_bytes`.
pub fn frame_len(prefix: &[u8], max_frame_bytes: usize) -> Result<Option<usize>, NativeError> {
    let Some(bytes) = prefix.first_chunk::<FRAME_PREFIX_BYTES>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*bytes) as usize;
    if len > max_frame_bytes {
        return Err(NativeError::FrameTooLarge {
            len,
            max: max_frame_bytes,
        });
    }
    Ok(Some(len))
}

/// Splits a frame body (the bytes after the length prefix) into its
/// FlatBuffer and the offset at which the payload starts.
pub(crate) fn split(frame: &[u8]) -> Result<(&[u8], usize), NativeError> {
    let Some(fb_len) = frame.first_chunk::<FB_LEN_BYTES>() else {
        return Err(NativeError::Truncated);
    };
    let fb_len = u32::from_be_bytes(*fb_len) as usize;
    let rest = &frame[FB_LEN_BYTES..];
    if fb_len > rest.len() {
        return Err(NativeError::Truncated);
    }
    Ok((&rest[..fb_len], FB_LEN_BYTES + fb_len))
}

/// Verifier bounds for a FlatBuffer of `fb_len` bytes.
pub(crate) fn verifier_options(fb_len: usize) -> VerifierOptions {
    VerifierOptions {
        max_depth: VERIFY_DEPTH_MAX,
        max_tables: fb_len / VERIFY_TABLE_BYTES_MIN + VERIFY_TABLES_SLACK,
        max_apparent_size: fb_len
            .saturating_mul(VERIFY_APPARENT_SIZE_FACTOR)
            .saturating_add(VERIFY_APPARENT_SIZE_SLACK),
        ignore_missing_null_terminator: false,
    }
}

/// The correlation id of a request or response frame body (the bytes after
/// the length prefix), if its header can be read at all. Only the header's
/// first field is verified, so this works on frames whose body is broken.
pub fn peek_correlation_id(frame: &[u8]) -> Option<i32> {
    let (fb_bytes, _) = split(frame).ok()?;
    let opts = verifier_options(fb_bytes.len());
    let peek = flatbuffers::root_with_opts::<fb::FramePeek>(&opts, fb_bytes).ok()?;
    Some(peek.header()?.correlation_id())
}

/// Turns a finished builder and the payload chunks that follow it into the
/// chunks of one frame: prefix, FlatBuffer length and FlatBuffer in the
/// first chunk (written in place in front of the builder's data when there
/// is room, as there almost always is), then the payload as given.
///
/// Panics if the frame exceeds `u32::MAX` bytes: callers bound requests and
/// responses far below that, so reaching it is a bug.
pub(crate) fn assemble(fbb: FlatBufferBuilder<'_>, payload: Vec<Bytes>, payload_len: usize) -> Vec<Bytes> {
    const HEAD_BYTES: usize = FRAME_PREFIX_BYTES + FB_LEN_BYTES;
    let (mut buf, start) = fbb.collapse();
    let fb_len = buf.len() - start;
    let frame_len = FB_LEN_BYTES + fb_len + payload_len;
    let frame_len = u32::try_from(frame_len).expect("a native frame is smaller than 4 GiB");
    let fb_len_u32 = u32::try_from(fb_len).expect("a FlatBuffer is smaller than 2 GiB");
    debug_assert_eq!(payload.iter().map(Bytes::len).sum::<usize>(), payload_len);

    let mut head = [0u8; HEAD_BYTES];
    head[..FRAME_PREFIX_BYTES].copy_from_slice(&frame_len.to_be_bytes());
    head[FRAME_PREFIX_BYTES..].copy_from_slice(&fb_len_u32.to_be_bytes());
    let first = if start >= HEAD_BYTES {
        buf[start - HEAD_BYTES..start].copy_from_slice(&head);
        Bytes::from(buf).slice(start - HEAD_BYTES..)
    } else {
        let mut v = Vec::with_capacity(HEAD_BYTES + fb_len);
        v.extend_from_slice(&head);
        v.extend_from_slice(&buf[start..]);
        Bytes::from(v)
    };

    let mut chunks = Vec::with_capacity(1 + payload.len());
    chunks.push(first);
    chunks.extend(payload.into_iter().filter(|b| !b.is_empty()));
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_len_needs_four_bytes() {
        assert_eq!(frame_len(&[], 100), Ok(None));
        assert_eq!(frame_len(&[0, 0, 0], 100), Ok(None));
        assert_eq!(frame_len(&[0, 0, 0, 100], 100), Ok(Some(100)));
        assert_eq!(frame_len(&[0, 0, 1, 0, 9, 9], 1000), Ok(Some(256)));
    }

    #[test]
    fn frame_len_bounds_before_allocation() {
        assert_eq!(
            frame_len(&[0, 0, 0, 101], 100),
            Err(NativeError::FrameTooLarge { len: 101, max: 100 })
        );
        let max = u32::MAX as usize;
        assert_eq!(frame_len(&[0xff; 4], max), Ok(Some(max)));
        assert!(frame_len(&[0xff; 4], 1 << 20).is_err());
    }

    #[test]
    fn split_checks_the_flatbuffer_length() {
        assert_eq!(split(&[0, 0, 0]), Err(NativeError::Truncated));
        assert_eq!(split(&[0, 0, 0, 2, 7]), Err(NativeError::Truncated));
        assert_eq!(split(&[0, 0, 0, 1, 7, 8]), Ok((&[7u8][..], 5)));
        assert_eq!(split(&[0xff, 0xff, 0xff, 0xff, 7]), Err(NativeError::Truncated));
    }

    #[test]
    fn assemble_writes_the_head_in_place() {
        let mut fbb = FlatBufferBuilder::with_capacity(64);
        let h = fb::HeaderPeek::create(&mut fbb, &fb::HeaderPeekArgs { correlation_id: 7 });
        let root = fb::FramePeek::create(&mut fbb, &fb::FramePeekArgs { header: Some(h) });
        fbb.finish(root, None);
        let fb_bytes = fbb.finished_data().to_vec();
        let payload = vec![Bytes::from_static(b"abc"), Bytes::new(), Bytes::from_static(b"de")];
        let chunks = assemble(fbb, payload, 5);
        assert_eq!(chunks.len(), 3, "empty payload chunks are dropped");
        let first = &chunks[0];
        assert_eq!(&first[8..], &fb_bytes[..]);
        let len = frame_len(first, usize::MAX).unwrap().unwrap();
        assert_eq!(len, 4 + fb_bytes.len() + 5);
        assert_eq!(peek_correlation_id(&first[4..]), Some(7));
    }

    #[test]
    fn verifier_bounds_grow_with_the_buffer() {
        let small = verifier_options(0);
        assert!(small.max_tables >= VERIFY_TABLES_SLACK);
        let big = verifier_options(1 << 20);
        assert_eq!(big.max_tables, (1 << 18) + VERIFY_TABLES_SLACK);
        assert_eq!(verifier_options(usize::MAX).max_apparent_size, usize::MAX);
    }
}
