//! What both protocols' connections share: who the peer is, reading
//! size-prefixed request frames under the connection's in-flight byte
//! budget, and writing answers given as chunks.

use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::sync::{Semaphore, StaticPermit};

/// Both protocols prefix a frame with its size in 4 bytes.
pub(super) const PREFIX_BYTES: usize = 4;

/// Writes one answer given as chunks (see [`crate::protocol::write_chunks`])
/// and what is left of `small` after it.
pub(super) async fn write_answer<W: futures_lite::AsyncWrite + Unpin>(
    wr: &mut W,
    small: &mut BytesMut,
    chunks: Vec<Bytes>,
) -> std::io::Result<()> {
    crate::protocol::write_chunks(wr, small, chunks).await?;
    if !small.is_empty() {
        wr.write_all(&small.split()).await?;
    }
    Ok(())
}

/// A request being handled: counted in the shard's `inflight` (shutdown
/// lets those finish) from its start until this is dropped, however the
/// handling ends, and then in `drained`.
pub(super) struct Handling(Rc<crate::broker::Shard>);

impl Handling {
    pub(super) fn start(shard: &Rc<crate::broker::Shard>) -> Handling {
        shard.inflight.set(shard.inflight.get() + 1);
        Handling(shard.clone())
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.inflight.set(self.0.inflight.get() - 1);
        self.0.drained.set(self.0.drained.get() + 1);
    }
}

/// The peer's address for logs, and its host as Kafka's group APIs report
/// clients ("/1.2.3.4").
pub(super) fn peer_names(stream: &TcpStream) -> (String, Arc<str>) {
    let addr = stream.peer_addr().ok();
    let peer = addr.map_or_else(|| "?".to_string(), |a| a.to_string());
    let host = addr.map_or_else(|| "?".into(), |a| format!("/{}", a.ip()).into());
    (peer, host)
}

/// Reads request frames. Each frame holds its size (at least 1) of the
/// connection's in-flight budget until its permit is dropped (when its
/// answer is handed to the writer), so a client that sends faster than
/// it is answered is slowed by TCP, not buffered without bound.
pub(super) struct FrameReader<R> {
    rd: R,
    inflight: Rc<Semaphore>,
    budget: u64,
}

impl<R: futures_lite::AsyncRead + Unpin> FrameReader<R> {
    pub(super) fn new(rd: R, budget: usize) -> FrameReader<R> {
        FrameReader {
            rd,
            inflight: Rc::new(Semaphore::new(budget as u64)),
            budget: budget as u64,
        }
    }

    /// The next frame (its bytes after the prefix), or `None` when the
    /// connection is done: closed between frames, a size `size_of`
    /// refuses (logged), or a client gone mid-frame. `size_of` turns the
    /// prefix into a length, `Ok(None)` for a clean end.
    pub(super) async fn next<E: std::fmt::Display>(
        &mut self,
        peer: &str,
        size_of: impl FnOnce([u8; PREFIX_BYTES]) -> Result<Option<usize>, E>,
    ) -> Option<(Bytes, StaticPermit)> {
        let mut prefix = [0u8; PREFIX_BYTES];
        // An error here is the normal end: closed (or reset) between frames.
        self.rd.read_exact(&mut prefix).await.ok()?;
        let len = match size_of(prefix) {
            Ok(len) => len?,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection: bad frame size");
                return None;
            }
        };
        let units = (len as u64).clamp(1, self.budget);
        let permit = self.inflight.clone().acquire_static_permit(units).await.ok()?;
        match crate::recv_buf::read_exact(&mut self.rd, len).await {
            Ok(frame) => Some((frame, permit)),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "client went away mid-frame");
                None
            }
        }
    }
}
