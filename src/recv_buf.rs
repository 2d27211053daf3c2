//! Receive buffers for whole frames, reused instead of zero-filled.
//!
//! Every frame read from a socket needs an initialised buffer to read
//! into. A fresh `BytesMut::zeroed` per frame zero-fills it (and page-faults
//! in fresh memory for large ones) only for the read to overwrite every
//! byte: at max rate that memset was 5 % of the load generator's CPU and 2 %
//! of the broker's. Here a frame is read into a slab from a per-thread pool
//! of size classes (powers of two from 4 KiB); the slab is handed out as the
//! owner of the frame's `Bytes` and goes back to the pool of whichever
//! thread drops the last reference, already initialised.
//!
//! Limits: at most `POOL_BYTES_MAX` idle bytes per thread (a slab beyond it
//! is freed), and frames above `SLAB_BYTES_MAX` get a buffer of their own.
//! Only initialised memory is ever handed to a reader; no `unsafe`.

use std::cell::RefCell;

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncReadExt};

/// The smallest slab: smaller frames are rounded up to it.
const SLAB_CLASS_MIN: u32 = 12;
/// The largest pooled slab (32 MiB); larger frames are not pooled.
const SLAB_CLASS_MAX: u32 = 25;
const SLAB_BYTES_MAX: usize = 1 << SLAB_CLASS_MAX;
/// Idle slab bytes one thread keeps for reuse, at most.
const POOL_BYTES_MAX: usize = 64 << 20;

struct Pool {
    /// Idle slabs per class (index 0 is `SLAB_CLASS_MIN`).
    classes: Vec<Vec<Vec<u8>>>,
    idle_bytes: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool {
        classes: (SLAB_CLASS_MIN..=SLAB_CLASS_MAX).map(|_| Vec::new()).collect(),
        idle_bytes: 0,
    });
}

/// The size class index of a frame of `len` bytes, if it is pooled.
fn class_of(len: usize) -> Option<usize> {
    if len > SLAB_BYTES_MAX {
        return None;
    }
    let bits = len.max(1 << SLAB_CLASS_MIN).next_power_of_two().trailing_zeros();
    Some((bits - SLAB_CLASS_MIN) as usize)
}

/// A buffer holding one frame in `buf[..len]`; with a class, it goes back
/// to the pool when dropped.
struct Slab {
    buf: Vec<u8>,
    len: usize,
    class: Option<usize>,
}

impl Slab {
    /// An initialised slab with room for `len` bytes: an idle one of its
    /// class if this thread has one, else a zeroed new one.
    fn take(len: usize) -> Slab {
        let Some(class) = class_of(len) else {
            return Slab {
                buf: vec![0; len],
                len,
                class: None,
            };
        };
        let reused = POOL
            .try_with(|p| {
                let mut p = p.borrow_mut();
                let slab = p.classes[class].pop();
                if let Some(s) = &slab {
                    p.idle_bytes -= s.len();
                }
                slab
            })
            .ok()
            .flatten();
        let buf = reused.unwrap_or_else(|| vec![0; 1 << (class as u32 + SLAB_CLASS_MIN)]);
        debug_assert!(buf.len() >= len, "a slab holds its class's size");
        Slab {
            buf,
            len,
            class: Some(class),
        }
    }
}

impl AsRef<[u8]> for Slab {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        let Some(class) = self.class else { return };
        let buf = std::mem::take(&mut self.buf);
        // A thread being torn down frees it instead.
        let _ = POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.idle_bytes + buf.len() <= POOL_BYTES_MAX {
                p.idle_bytes += buf.len();
                p.classes[class].push(buf);
            }
        });
    }
}

/// Reads exactly `len` bytes from `rd` into a reused buffer.
pub async fn read_exact<R: AsyncRead + Unpin>(rd: &mut R, len: usize) -> std::io::Result<Bytes> {
    let mut slab = Slab::take(len);
    rd.read_exact(&mut slab.buf[..len]).await?;
    Ok(Bytes::from_owner(slab))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle_bytes() -> usize {
        POOL.with(|p| p.borrow().idle_bytes)
    }

    #[test]
    fn classes_round_up_to_powers_of_two() {
        assert_eq!(class_of(0), Some(0));
        assert_eq!(class_of(4096), Some(0));
        assert_eq!(class_of(4097), Some(1));
        assert_eq!(class_of(1 << 20), Some(8));
        assert_eq!(
            class_of(SLAB_BYTES_MAX),
            Some((SLAB_CLASS_MAX - SLAB_CLASS_MIN) as usize)
        );
        assert_eq!(class_of(SLAB_BYTES_MAX + 1), None);
    }

    #[test]
    fn a_frame_reads_exactly_and_its_slab_is_reused_after_the_last_clone() {
        futures_lite::future::block_on(async {
            let before = idle_bytes();
            let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
            let mut rd = &data[..];
            let frame = read_exact(&mut rd, 6000).await.unwrap_or_default();
            assert_eq!(&frame[..], &data[..6000]);
            let part = frame.slice(10..20);
            drop(frame);
            assert_eq!(idle_bytes(), before, "a slice still holds the slab");
            drop(part);
            assert_eq!(idle_bytes(), before + 8192, "the last reference returned an 8 KiB slab");
            // The next frame of that class gets it back, with its own bytes.
            let mut rd = &data[6000..];
            let next = read_exact(&mut rd, 4000).await.unwrap_or_default();
            assert_eq!(idle_bytes(), before + 8192, "a 4 KiB frame takes the 4 KiB class");
            assert_eq!(&next[..], &data[6000..]);
            let mut rd = &data[..];
            let again = read_exact(&mut rd, 5000).await.unwrap_or_default();
            assert_eq!(idle_bytes(), before, "the 8 KiB slab was taken again");
            assert_eq!(&again[..], &data[..5000]);
        });
    }

    #[test]
    fn a_short_stream_is_an_error() {
        futures_lite::future::block_on(async {
            let data = [1u8; 100];
            let mut rd = &data[..];
            let err = read_exact(&mut rd, 200).await.err().map(|e| e.kind());
            assert_eq!(err, Some(std::io::ErrorKind::UnexpectedEof));
        });
    }

    #[test]
    fn oversized_frames_are_not_pooled() {
        let before = idle_bytes();
        drop(Slab::take(SLAB_BYTES_MAX + 1));
        assert_eq!(idle_bytes(), before);
    }
}
