//! One client connection on the native protocol: read frames, decode,
//! hand requests to the shard (many in flight at once), write responses in
//! whatever order they finish, each tagged with its correlation id.
//!
//! Limits: a frame longer than `frame_bytes_max` closes the connection
//! (after logging why); request bytes in flight are bounded per connection,
//! so a client that sends faster than we answer is slowed by TCP, not
//! buffered without bound. A frame that fails decoding gets an `Error`
//! response when its correlation id can be read, otherwise the connection
//! is closed. Nothing a client sends can touch stored data except a valid
//! produce.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures_lite::AsyncWriteExt;
use glommio::channels::local_channel;
use glommio::net::TcpStream;

use super::frames::{write_answer, FrameReader, Handling};
use crate::api::{Acks, ApiKey, Request, Response, ResponseHeader};
use crate::broker::Shard;
use crate::group::coordinator::ClientInfo;
use crate::protocol::native;

/// Responses queued for the writer before handlers wait.
const RESPONSES_QUEUED_MAX: usize = 256;

/// Serves `stream` until the peer closes it, breaks the protocol, or the
/// shard shuts down.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let (peer, client_host) = super::frames::peer_names(&stream);
    let _ = stream.set_nodelay(true);
    let (rd, wr) = futures_lite::io::split(stream);
    let (tx, rx) = local_channel::new_bounded::<Vec<Bytes>>(RESPONSES_QUEUED_MAX);
    let writer = glommio::spawn_local(write_loop(wr, rx));
    let cfg = shard.config.clone();
    let tx = Rc::new(tx);
    let mut frames = FrameReader::new(rd, cfg.inflight_bytes_max_per_connection);
    let max = cfg.frame_bytes_max;
    while let Some((frame, permit)) = frames.next(&peer, |p| native::frame_len(&p, max)).await {
        let (header, req) = match native::decode_request(frame.clone()) {
            Ok(decoded) => decoded,
            Err(e) => match native::peek_correlation_id(&frame) {
                Some(correlation_id) => {
                    tracing::debug!(%peer, error = %e, "answering an undecodable request with an error");
                    let resp = Response::Error {
                        error: e.code(),
                        message: e.to_string(),
                    };
                    let chunks =
                        native::encode_response(&ResponseHeader { correlation_id }, ApiKey::ApiVersions, &resp);
                    if tx.send(chunks).await.is_err() {
                        break;
                    }
                    continue;
                }
                None => {
                    tracing::warn!(%peer, error = %e, "closing connection: unreadable frame");
                    break;
                }
            },
        };
        let silent = matches!(req, Request::Produce { acks: Acks::None, .. });
        let (shard, tx, client_host) = (shard.clone(), tx.clone(), client_host.clone());
        let handling = Handling::start(&shard);
        glommio::spawn_local(async move {
            let api = req.api();
            let client = ClientInfo {
                client_id: header.client_id,
                client_host,
            };
            let resp = shard.handle(req, &client).await;
            if !silent {
                let chunks = native::encode_response(
                    &ResponseHeader {
                        correlation_id: header.correlation_id,
                    },
                    api,
                    &resp,
                );
                let _ = tx.send(chunks).await;
            }
            drop(permit);
            drop(handling);
        })
        .detach();
    }
    drop(tx);
    let _ = writer.await;
}

async fn write_loop<W: futures_lite::AsyncWrite + Unpin>(mut wr: W, rx: local_channel::LocalReceiver<Vec<Bytes>>) {
    let mut small = BytesMut::new();
    while let Some(chunks) = rx.recv().await {
        if write_answer(&mut wr, &mut small, chunks).await.is_err() || wr.flush().await.is_err() {
            return;
        }
    }
}
