//! The response side of one connection: the table of requests awaiting an
//! answer, and the read loop that frames responses off the socket and
//! hands each to its waiter by correlation id.
//!
//! Invariants:
//! - Responses may come in any order; each is matched by correlation id to
//!   exactly one waiter, which is removed when answered. An answer for an
//!   id nobody waits on (its request timed out) is dropped.
//! - Every frame length is bounded by `frame_bytes_max` before anything is
//!   allocated; a bad length or an unreadable frame ends the loop, and then
//!   every waiter gets the error (none waits forever).
//! - A frame that is well framed but fails to decode fails only its own
//!   request.
use std::cell::RefCell;
use std::collections::HashMap;

use bytes::Bytes;
use futures_channel::oneshot;
use futures_lite::{AsyncRead, AsyncReadExt};

use super::ClientError;
use crate::api::{ApiKey, Response};
use crate::protocol::native;

/// What a waiter receives.
pub(crate) type Answer = Result<Response, ClientError>;

/// Requests sent on one connection and not yet answered.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    waiters: HashMap<i32, (ApiKey, oneshot::Sender<Answer>)>,
}

impl InFlight {
    /// Registers a request; its answer arrives on the receiver. Panics if
    /// the id is already waiting (ids are unique per connection).
    pub(crate) fn register(&mut self, correlation_id: i32, api: ApiKey) -> oneshot::Receiver<Answer> {
        let (tx, rx) = oneshot::channel();
        let previous = self.waiters.insert(correlation_id, (api, tx));
        assert!(
            previous.is_none(),
            "correlation id {correlation_id} is already in flight"
        );
        rx
    }

    /// Stops waiting for `correlation_id` (it timed out or was cancelled).
    pub(crate) fn forget(&mut self, correlation_id: i32) {
        self.waiters.remove(&correlation_id);
    }

    /// Requests waiting for an answer.
    pub(crate) fn len(&self) -> usize {
        self.waiters.len()
    }

    /// Decodes one response frame (the bytes after the length prefix) and
    /// answers its waiter. `Err` only if the frame cannot be attributed to
    /// any request: the stream can no longer be trusted.
    pub(crate) fn complete(&mut self, frame: Bytes) -> Result<(), ClientError> {
        let Some(correlation_id) = native::peek_correlation_id(&frame) else {
            return Err(ClientError::Invalid(
                "response frame without a readable correlation id".into(),
            ));
        };
        let Some((api, tx)) = self.waiters.remove(&correlation_id) else {
            tracing::debug!(correlation_id, "dropping an answer nobody waits for (timed out?)");
            return Ok(());
        };
        let answer = match native::decode_response(frame, api) {
            Ok((header, _)) if header.correlation_id != correlation_id => {
                return Err(ClientError::Invalid(format!(
                    "response header says correlation id {}, frame says {correlation_id}",
                    header.correlation_id
                )));
            }
            Ok((_, Response::Error { error, message })) => Err(ClientError::broker(error, message)),
            Ok((_, response)) => Ok(response),
            Err(e) => Err(ClientError::from(e)),
        };
        // The waiter may have gone (its future dropped): nothing to do.
        let _ = tx.send(answer);
        Ok(())
    }

    /// Answers every waiter with `err` (the connection is gone).
    pub(crate) fn fail_all(&mut self, err: &ClientError) {
        for (_, (_, tx)) in self.waiters.drain() {
            let _ = tx.send(Err(err.clone()));
        }
    }
}

/// Reads response frames from `rd` and completes waiters in `inflight`
/// until the stream ends or breaks; returns why it stopped. Frames longer
/// than `frame_bytes_max` stop it before any allocation.
pub(crate) async fn read_responses<R: AsyncRead + Unpin>(
    mut rd: R,
    inflight: &RefCell<InFlight>,
    frame_bytes_max: usize,
) -> ClientError {
    loop {
        let mut prefix = [0u8; native::FRAME_PREFIX_BYTES];
        if let Err(e) = rd.read_exact(&mut prefix).await {
            return match e.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    ClientError::from(std::io::Error::new(e.kind(), "the broker closed the connection"))
                }
                _ => ClientError::from(e),
            };
        }
        let len = match native::frame_len(&prefix, frame_bytes_max) {
            Ok(Some(len)) => len,
            Ok(None) => return ClientError::Invalid("incomplete frame length prefix".into()),
            Err(e) => return ClientError::from(e),
        };
        debug_assert!(len <= frame_bytes_max, "frame_len bounds the length");
        let frame = match crate::recv_buf::read_exact(&mut rd, len).await {
            Ok(frame) => frame,
            Err(e) => return ClientError::from(e),
        };
        if let Err(e) = inflight.borrow_mut().complete(frame) {
            return e;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ErrorCode, ResponseHeader};

    fn frame(correlation_id: i32, api: ApiKey, resp: &Response) -> Vec<u8> {
        native::encode_response(&ResponseHeader { correlation_id }, api, resp)
            .iter()
            .flat_map(|c| c.iter().copied())
            .collect()
    }

    fn metadata(n: usize) -> Response {
        Response::Metadata {
            brokers: Vec::new(),
            topics: (0..n)
                .map(|i| crate::api::TopicInfo {
                    name: format!("t{i}"),
                    error: ErrorCode::None,
                    partitions: Vec::new(),
                    config: Default::default(),
                })
                .collect(),
        }
    }

    #[test]
    fn answers_arrive_out_of_order_and_reach_their_waiters() {
        let inflight = RefCell::new(InFlight::default());
        let rx1 = inflight.borrow_mut().register(1, ApiKey::Metadata);
        let rx2 = inflight.borrow_mut().register(2, ApiKey::Metadata);
        let rx3 = inflight.borrow_mut().register(3, ApiKey::ApiVersions);
        let mut wire = frame(3, ApiKey::ApiVersions, &Response::ApiVersions { apis: Vec::new() });
        wire.extend(frame(2, ApiKey::Metadata, &metadata(2)));
        wire.extend(frame(99, ApiKey::Metadata, &metadata(5))); // timed out: dropped
        wire.extend(frame(1, ApiKey::Metadata, &metadata(1)));
        let why = futures_lite::future::block_on(read_responses(&wire[..], &inflight, 1 << 20));
        assert!(matches!(why, ClientError::Io(_)), "ends at EOF: {why:?}");
        let got = |rx: oneshot::Receiver<Answer>| futures_lite::future::block_on(rx).unwrap().unwrap();
        assert_eq!(got(rx1), metadata(1));
        assert_eq!(got(rx2), metadata(2));
        assert_eq!(got(rx3), Response::ApiVersions { apis: Vec::new() });
        assert_eq!(inflight.borrow().len(), 0);
    }

    #[test]
    fn an_error_response_answers_any_request() {
        let mut inflight = InFlight::default();
        let rx = inflight.register(7, ApiKey::Fetch);
        let resp = Response::Error {
            error: ErrorCode::InvalidRequest,
            message: "no".into(),
        };
        let wire = frame(7, ApiKey::ApiVersions, &resp);
        inflight.complete(Bytes::from(wire[4..].to_vec())).unwrap();
        match futures_lite::future::block_on(rx).unwrap() {
            Err(ClientError::Broker {
                code: ErrorCode::InvalidRequest,
                message,
            }) => assert_eq!(message, "no"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_oversized_frame_stops_the_reader_and_fails_nobody_silently() {
        let inflight = RefCell::new(InFlight::default());
        let rx = inflight.borrow_mut().register(1, ApiKey::Metadata);
        let wire = frame(1, ApiKey::Metadata, &metadata(50));
        let why = futures_lite::future::block_on(read_responses(&wire[..], &inflight, 64));
        assert!(matches!(why, ClientError::Protocol(_)), "{why:?}");
        inflight.borrow_mut().fail_all(&why);
        assert!(futures_lite::future::block_on(rx).unwrap().is_err());
    }

    #[test]
    fn a_truncated_frame_is_an_io_error() {
        let inflight = RefCell::new(InFlight::default());
        let _rx = inflight.borrow_mut().register(1, ApiKey::Metadata);
        let wire = frame(1, ApiKey::Metadata, &metadata(3));
        let why = futures_lite::future::block_on(read_responses(&wire[..wire.len() - 2], &inflight, 1 << 20));
        assert!(matches!(why, ClientError::Io(_)), "{why:?}");
    }

    #[test]
    fn a_waiter_that_went_away_does_not_break_the_stream() {
        let inflight = RefCell::new(InFlight::default());
        drop(inflight.borrow_mut().register(1, ApiKey::Metadata));
        let rx2 = inflight.borrow_mut().register(2, ApiKey::Metadata);
        let mut wire = frame(1, ApiKey::Metadata, &metadata(1));
        wire.extend(frame(2, ApiKey::Metadata, &metadata(2)));
        futures_lite::future::block_on(read_responses(&wire[..], &inflight, 1 << 20));
        assert_eq!(futures_lite::future::block_on(rx2).unwrap().unwrap(), metadata(2));
    }
}
