//! One client connection on the Kafka protocol: read frames, decode, hand
//! requests to the shard, and write the answers in request order, as Kafka
//! requires.
//!
//! Requests are pipelined: each is handled by its own task as soon as it is
//! read, and the writer awaits their answers one by one in the order the
//! requests arrived (a queue of oneshot receivers). Limits: a frame larger
//! than `frame_bytes_max` (or with a negative size) closes the connection
//! after logging why; request bytes in flight are bounded per connection
//! (`inflight_bytes_max_per_connection`) and so is the number of requests
//! awaiting their turn to be answered (`REQUESTS_QUEUED_MAX`), so a client
//! that sends faster than we answer is slowed by TCP. A request whose
//! header cannot be parsed closes the connection; anything else gets an
//! answer (produce with acks=0 excepted, as in Kafka).

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures_channel::oneshot;
use futures_lite::AsyncWriteExt;
use glommio::channels::local_channel;
use glommio::net::TcpStream;

use super::frames::{write_answer, FrameReader, Handling};
use crate::api::{Acks, Request};
use crate::broker::Shard;
use crate::group::coordinator::ClientInfo;
use crate::protocol::kafka::{self, Action, Advertised};

/// Requests read but not yet answered on one connection.
const REQUESTS_QUEUED_MAX: usize = 256;

/// Serves `stream` until the peer closes it, breaks the protocol, or the
/// shard shuts down.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let (peer, client_host) = super::frames::peer_names(&stream);
    let _ = stream.set_nodelay(true);
    let (rd, wr) = futures_lite::io::split(stream);
    // Each element is the answer-to-be of one request, in request order;
    // `None` means the request gets no answer (acks=0).
    let (tx, rx) = local_channel::new_bounded::<oneshot::Receiver<Option<Vec<Bytes>>>>(REQUESTS_QUEUED_MAX);
    let writer = glommio::spawn_local(write_loop(wr, rx));
    let cfg = shard.config.clone();
    let node = Rc::new(Advertised {
        node_id: cfg.node_id,
        host: cfg.kafka_advertised.0.clone(),
        port: cfg.kafka_advertised.1,
        topic_defaults: cfg.topic_defaults.clone(),
        cluster: shard.cluster_view(),
    });
    let mut frames = FrameReader::new(rd, cfg.inflight_bytes_max_per_connection);
    let max = cfg.frame_bytes_max;
    while let Some((frame, permit)) = frames.next(&peer, |p| kafka::frame_len(p, max).map(Some)).await {
        let (header, action) = match kafka::decode_request(frame, &node) {
            Ok(decoded) => decoded,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing kafka connection: unreadable request header");
                break;
            }
        };
        let (answer_tx, answer_rx) = oneshot::channel();
        if tx.send(answer_rx).await.is_err() {
            break; // the writer stopped: the socket is broken
        }
        let req = match action {
            Action::Broker(req) => req,
            Action::Admin(op) => {
                let (shard, handling) = (shard.clone(), Handling::start(&shard));
                glommio::spawn_local(async move {
                    let answer = shard.cluster_admin(op).await;
                    let _ = answer_tx.send(Some(vec![kafka::encode_admin(&header, answer)]));
                    drop(permit);
                    drop(handling);
                })
                .detach();
                continue;
            }
            Action::Reply(frame) => {
                let _ = answer_tx.send(Some(vec![frame]));
                continue;
            }
            Action::Close(why) => {
                tracing::warn!(%peer, client_id = %header.client_id, "closing kafka connection: {why}");
                break;
            }
        };
        let silent = matches!(req, Request::Produce { acks: Acks::None, .. });
        let (shard, node, client_host) = (shard.clone(), node.clone(), client_host.clone());
        let handling = Handling::start(&shard);
        glommio::spawn_local(async move {
            let client = ClientInfo {
                client_id: header.client_id.clone(),
                client_host,
            };
            let resp = shard.handle(req, &client).await;
            let frame = (!silent).then(|| kafka::encode_response(&header, &node, resp));
            let _ = answer_tx.send(frame);
            drop(permit);
            drop(handling);
        })
        .detach();
    }
    drop(tx);
    let _ = writer.await;
}

/// Writes the answers in request order.
async fn write_loop<W: futures_lite::AsyncWrite + Unpin>(
    mut wr: W,
    rx: local_channel::LocalReceiver<oneshot::Receiver<Option<Vec<Bytes>>>>,
) {
    let mut small = BytesMut::new();
    while let Some(answer) = rx.recv().await {
        match answer.await {
            Ok(Some(chunks)) => {
                if write_answer(&mut wr, &mut small, chunks).await.is_err() {
                    return;
                }
            }
            Ok(None) => {}
            // The handler was dropped (shutdown): nothing more to answer in order.
            Err(_) => return,
        }
        if wr.flush().await.is_err() {
            return;
        }
    }
    let _ = wr.flush().await;
}
