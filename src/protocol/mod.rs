//! Wire protocols: thin adapters between bytes on a socket and the
//! protocol-neutral model in [`crate::api`]. A protocol module never touches
//! storage or partitions; it decodes, encodes and bounds what it reads.
pub mod kafka;
pub mod native;

use bytes::{Bytes, BytesMut};
use futures_lite::AsyncWriteExt;

/// Frame chunks smaller than this are gathered before a write.
pub const COALESCE_BYTES_MAX: usize = 16 << 10;

/// Writes a frame given as chunks, the same way for both protocols and
/// both ends: small chunks (headers, small answers) are appended to
/// `small`, which is written once it reaches [`COALESCE_BYTES_MAX`]; large
/// ones (record data) go to the socket as they are, after what `small`
/// holds. What is left in `small` is the caller's to write (now, or after
/// more frames that are ready).
pub async fn write_chunks<W: futures_lite::AsyncWrite + Unpin>(
    wr: &mut W,
    small: &mut BytesMut,
    chunks: Vec<Bytes>,
) -> std::io::Result<()> {
    for chunk in chunks {
        if chunk.len() < COALESCE_BYTES_MAX {
            small.extend_from_slice(&chunk);
            if small.len() >= COALESCE_BYTES_MAX {
                wr.write_all(&small.split()).await?;
            }
        } else {
            if !small.is_empty() {
                wr.write_all(&small.split()).await?;
            }
            wr.write_all(&chunk).await?;
        }
    }
    Ok(())
}
