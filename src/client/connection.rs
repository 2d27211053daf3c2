//! `Connection`: one TCP connection to a broker (or one of its shards) with
//! many requests in flight.
//!
//! A writer task sends request frames in the order they were queued; a
//! reader task ([`super::demux`]) hands each response to its waiter by
//! correlation id, whatever the order they come back in. Requests awaiting
//! an answer are bounded by `inflight_requests_max_per_connection`; more
//! wait for a slot. Every request has a timeout. On connect the client asks
//! for ApiVersions and refuses a broker that does not speak the versions it
//! sends.
//!
//! Invariants: once either task ends (I/O error, bad frame, peer closed)
//! the connection is closed for good: every waiter and every later request
//! gets `ConnectionClosed`, and the pool opens a new one. Dropping the last
//! handle cancels both tasks and closes the socket. Runs on the executor
//! that opened it (`!Send`).
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::AsyncWriteExt;
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use glommio::task::JoinHandle;

use super::demux::{read_responses, InFlight};
use super::notify::timeout;
use super::{ClientConfig, ClientError};
use crate::api::{ApiKey, ApiVersionRange, Request, RequestHeader, Response};
use crate::protocol::native;
use crate::protocol::{write_chunks, COALESCE_BYTES_MAX};

/// The version of every API this client sends.
pub const REQUEST_VERSION: u16 = 0;
/// Request frames queued for the writer task before senders wait.
const OUTBOX_DEPTH: usize = 256;

/// Removes a request's waiter when the request ends, however it ends.
struct Forget<'a> {
    shared: &'a Shared,
    correlation_id: i32,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.shared.inflight.borrow_mut().forget(self.correlation_id);
    }
}

/// State shared by the handle and the two socket tasks.
#[derive(Debug)]
struct Shared {
    addr: SocketAddr,
    inflight: RefCell<InFlight>,
    /// Why the connection closed; `Some` forever after.
    closed: RefCell<Option<String>>,
}

impl Shared {
    fn close(&self, why: &ClientError) {
        let mut closed = self.closed.borrow_mut();
        if closed.is_none() {
            tracing::debug!(addr = %self.addr, error = %why, "connection closed");
            *closed = Some(why.to_string());
        }
        let err = self.closed_error(closed.as_deref().unwrap_or("closed"));
        drop(closed);
        self.inflight.borrow_mut().fail_all(&err);
    }

    fn closed_error(&self, reason: &str) -> ClientError {
        ClientError::ConnectionClosed {
            addr: self.addr.to_string(),
            reason: reason.to_string(),
        }
    }

    fn check_open(&self) -> Result<(), ClientError> {
        match &*self.closed.borrow() {
            Some(reason) => Err(self.closed_error(reason)),
            None => Ok(()),
        }
    }
}

struct Inner {
    shared: Rc<Shared>,
    client_id: String,
    request_timeout: Duration,
    outbox: LocalSender<Vec<Bytes>>,
    slots: Rc<Semaphore>,
    next_correlation_id: Cell<i32>,
    /// What the broker said it supports, from ApiVersions.
    versions: RefCell<Vec<ApiVersionRange>>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader.cancel();
        self.writer.cancel();
    }
}

/// One connection to a broker; cheap to clone (a shared handle).
#[derive(Clone)]
pub struct Connection {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.inner.shared.addr)
            .field("closed", &*self.inner.shared.closed.borrow())
            .finish()
    }
}

impl Connection {
    /// Connects to `addr` and checks with ApiVersions that the broker
    /// speaks this client's protocol version.
    pub async fn open(addr: SocketAddr, config: &ClientConfig) -> Result<Connection, ClientError> {
        let io_err = |e: glommio::GlommioError<()>| {
            let e = std::io::Error::from(e);
            ClientError::from(std::io::Error::new(e.kind(), format!("{addr}: {e}")))
        };
        let stream = TcpStream::connect_timeout(addr, config.connect_timeout)
            .await
            .map_err(io_err)?;
        stream.set_nodelay(true).map_err(io_err)?;
        let (rd, wr) = futures_lite::io::split(stream);
        let shared = Rc::new(Shared {
            addr,
            inflight: RefCell::new(InFlight::default()),
            closed: RefCell::new(None),
        });
        let (outbox, rx) = local_channel::new_bounded::<Vec<Bytes>>(OUTBOX_DEPTH);
        let reader = {
            let shared = shared.clone();
            let frame_bytes_max = config.frame_bytes_max;
            glommio::spawn_local(async move {
                let why = read_responses(rd, &shared.inflight, frame_bytes_max).await;
                shared.close(&why);
            })
            .detach()
        };
        let writer = {
            let shared = shared.clone();
            glommio::spawn_local(async move {
                if let Err(why) = write_frames(wr, rx).await {
                    shared.close(&why);
                }
            })
            .detach()
        };
        let conn = Connection {
            inner: Rc::new(Inner {
                shared,
                client_id: config.client_id.clone(),
                request_timeout: config.request_timeout,
                outbox,
                slots: Rc::new(Semaphore::new(config.inflight_requests_max_per_connection.max(1) as u64)),
                next_correlation_id: Cell::new(1),
                versions: RefCell::new(Vec::new()),
                reader,
                writer,
            }),
        };
        conn.check_versions().await?;
        Ok(conn)
    }

    async fn check_versions(&self) -> Result<(), ClientError> {
        let apis = match self.request(Request::ApiVersions).await? {
            Response::ApiVersions { apis } => apis,
            other => return Err(ClientError::Invalid(format!("ApiVersions answered with {other:?}"))),
        };
        let speaks = |api: ApiKey| {
            apis.iter()
                .any(|r| r.api == api && (r.min_version..=r.max_version).contains(&REQUEST_VERSION))
        };
        if !speaks(ApiKey::Metadata) {
            return Err(ClientError::Unsupported {
                api: ApiKey::Metadata,
                version: REQUEST_VERSION,
            });
        }
        *self.inner.versions.borrow_mut() = apis;
        Ok(())
    }

    /// The peer's address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.shared.addr
    }

    /// The connection broke or was closed; requests on it fail at once.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.closed.borrow().is_some()
    }

    /// Requests sent and not yet answered.
    pub fn inflight(&self) -> usize {
        self.inner.shared.inflight.borrow().len()
    }

    /// Whether the broker said it supports `api` at this client's version
    /// (ApiVersions itself is always allowed).
    pub fn supports(&self, api: ApiKey) -> bool {
        let versions = self.inner.versions.borrow();
        api == ApiKey::ApiVersions
            || versions
                .iter()
                .any(|r| r.api == api && (r.min_version..=r.max_version).contains(&REQUEST_VERSION))
    }

    fn header(&self, api: ApiKey) -> RequestHeader {
        let id = self.inner.next_correlation_id.get();
        // Ids stay positive and wrap long after any old one was answered.
        self.inner
            .next_correlation_id
            .set(if id == i32::MAX { 1 } else { id + 1 });
        RequestHeader {
            correlation_id: id,
            api,
            version: REQUEST_VERSION,
            client_id: self.inner.client_id.clone(),
        }
    }

    /// Sends `req` and waits for its answer within the request timeout.
    /// `Response::Error` comes back as `ClientError::Broker`.
    pub async fn request(&self, req: Request) -> Result<Response, ClientError> {
        self.request_with_timeout(req, self.inner.request_timeout).await
    }

    /// Like `request` with an explicit timeout (a long-polling fetch waits
    /// its max wait on top of the usual timeout).
    pub async fn request_with_timeout(&self, req: Request, limit: Duration) -> Result<Response, ClientError> {
        let api = self.ready_for(&req)?;
        let header = self.header(api);
        let correlation_id = header.correlation_id;
        // However this ends (answer, timeout, caller gone), the waiter goes.
        let _forget = Forget {
            shared: &self.inner.shared,
            correlation_id,
        };
        let exchange = async {
            let _slot = self
                .inner
                .slots
                .acquire_permit(1)
                .await
                .map_err(|_| ClientError::Closed)?;
            self.inner.shared.check_open()?;
            let rx = self.inner.shared.inflight.borrow_mut().register(correlation_id, api);
            let chunks = native::encode_request(&header, &req);
            if self.inner.outbox.send(chunks).await.is_err() {
                return Err(self.closed_error());
            }
            match rx.await {
                Ok(answer) => answer,
                Err(_) => Err(self.closed_error()),
            }
        };
        timeout(limit, exchange)
            .await
            .unwrap_or(Err(ClientError::Timeout(limit)))
    }

    /// Sends `req` without waiting for an answer (a produce with acks 0,
    /// which the broker never answers). Done once the frame is queued.
    pub async fn send_only(&self, req: Request) -> Result<(), ClientError> {
        let api = self.ready_for(&req)?;
        let chunks = native::encode_request(&self.header(api), &req);
        match timeout(self.inner.request_timeout, self.inner.outbox.send(chunks)).await {
            Some(Ok(())) => Ok(()),
            Some(Err(_)) => Err(self.closed_error()),
            None => Err(ClientError::Timeout(self.inner.request_timeout)),
        }
    }

    /// The request's api, once the connection is open and the broker
    /// speaks that api at our version.
    fn ready_for(&self, req: &Request) -> Result<ApiKey, ClientError> {
        self.inner.shared.check_open()?;
        let api = req.api();
        if !self.supports(api) {
            return Err(ClientError::Unsupported {
                api,
                version: REQUEST_VERSION,
            });
        }
        Ok(api)
    }

    fn closed_error(&self) -> ClientError {
        let reason = self.inner.shared.closed.borrow().clone();
        self.inner.shared.closed_error(reason.as_deref().unwrap_or("closed"))
    }
}

/// Writes queued frames in order, coalescing small chunks (and frames that
/// are already queued) into one write, until the queue closes (every
/// handle dropped) or a write fails.
async fn write_frames<W: futures_lite::AsyncWrite + Unpin>(
    mut wr: W,
    rx: local_channel::LocalReceiver<Vec<Bytes>>,
) -> Result<(), ClientError> {
    let mut small = BytesMut::new();
    while let Some(chunks) = rx.recv().await {
        write_chunks(&mut wr, &mut small, chunks).await?;
        // Frames queued meanwhile join this write instead of a syscall each.
        while small.len() < COALESCE_BYTES_MAX {
            match futures_lite::future::poll_once(rx.recv()).await {
                Some(Some(chunks)) => write_chunks(&mut wr, &mut small, chunks).await?,
                Some(None) | None => break,
            }
        }
        if !small.is_empty() {
            wr.write_all(&small.split()).await?;
        }
        wr.flush().await?;
    }
    Ok(())
}
