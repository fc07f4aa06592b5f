//! The backend HTTP client, on hyper's connection API (reqwest cost ~40 % of the gateway's
//! user-space instructions: see the README's decisions).
//!
//! HTTP/1.1 connections have no task of their own: the call that uses a connection drives it
//! inside its own future ([`drive`]), so a call and its connection never cross threads or
//! channels. A connection goes back to the backend's pool only after a complete response; a
//! call that times out, is cancelled or stops reading drops its connection with it. The pool
//! is last-in-first-out (the warmest connection first), holds at most `max_idle_connections`,
//! and forgets connections idle for longer than [`IDLE_TIMEOUT`]. Idle connections are not
//! polled; one the backend closed meanwhile is seen (end of stream) when it is taken and is
//! skipped, and a request the connection refused before writing it is sent once more on a
//! fresh connection.
//!
//! [`Client::sweep`] (once a second, from the gateway) closes expired idle connections even
//! when no call comes, and *parks* those that stayed idle through a whole sweep period: hyper's
//! connection state and its buffers (~20 KiB) are dropped and only the socket is kept, so the
//! hundreds of connections a burst leaves in the pools cost little more than their sockets. A
//! parked connection gets hyper's state back (no I/O) when a call takes it.
//!
//! An h2 backend (`http2: true`: h2c, or ALPN `h2` over TLS) gets one multiplexed connection,
//! driven by its own task and shared by every call, and a new one once it closes.
//!
//! Connections are kept per worker ([`set_worker`]): with one single-threaded runtime per core,
//! a connection is registered with one runtime's reactor and must be used from that runtime
//! only; each worker then has its own idle connections (at most `max_idle_connections` each)
//! and its own h2 connection. Threads that never call [`set_worker`] share worker 0's.

use crate::error::CallError;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, Response, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower::ServiceExt;

/// How long an idle connection is kept: under nginx's default `keepalive_timeout` (75 s) and
/// the 60 s idle timeouts of common load balancers in front of backends, so the pool gives up
/// a connection before the other side usually does.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(55);

/// How often [`Client::sweep`] is meant to run, and how long a connection stays idle before a
/// sweep parks it: a second keeps the connections a steady load reuses (hundreds of times a
/// second under load) ready, and parks a burst's surplus soon after it.
pub const SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// Workers with connections of their own; a worker index beyond it shares
/// `index % MAX_WORKERS`'s (still correct, as connections then cross runtimes, but slower).
pub const MAX_WORKERS: usize = 64;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Makes the calling thread use worker `index`'s backend connections (call it once, first
/// thing, on each thread that runs its own runtime).
pub fn set_worker(index: usize) {
    WORKER.with(|worker| worker.set(index % MAX_WORKERS));
}

fn worker() -> usize {
    WORKER.with(Cell::get)
}

/// The largest response header map (in headers) a pooled connection keeps for its next request.
const MAX_KEPT_HEADERS: usize = 64;

/// What a connection to a backend runs over: TCP, or TLS over TCP.
type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;
/// Backend requests have no body (endpoints aggregate reads).
type NoBody = Empty<Bytes>;
/// Boxed: hyper's connection state is kilobytes, and futures holding it inline are copied on
/// every move (measured: ~12 KB copied per move, half the page's instructions).
type Driver = Pin<Box<http1::Connection<Stream, NoBody>>>;

/// Opens connections: plain TCP, or TLS for `https://` backends.
#[derive(Clone)]
enum Connector {
    Plain(HttpConnector),
    Tls(HttpsConnector<HttpConnector>),
}

/// How requests reach the backend.
enum Protocol {
    /// HTTP/1.1: one request at a time per connection, idle ones pooled.
    Http1 { idle: Box<[Mutex<VecDeque<Idle>>]>, max_idle: usize },
    /// h2: one shared connection per worker while it stays open.
    Http2 { shared: Box<[tokio::sync::Mutex<Option<http2::SendRequest<NoBody>>>]> },
}

/// An HTTP/1.1 connection: the handle requests are sent on, the connection itself, which is
/// polled only while a call uses it (`None` once it has ended), and the header map of its last
/// response, emptied, for its next request.
///
/// hyper parses a response's headers into the map its request was sent with, so handing each
/// request the previous response's map makes a call allocate no header map at all once the
/// connection has answered once (four allocations per call otherwise: the request's map and
/// the response's, each an index table and an entry vector).
struct Conn {
    sender: http1::SendRequest<NoBody>,
    driver: Option<Driver>,
    headers: HeaderMap,
}

/// A pooled connection and when it went idle.
struct Idle {
    conn: Pooled,
    since: Instant,
}

/// What the pool keeps of a connection.
enum Pooled {
    /// Ready for its next request.
    Ready(Conn),
    /// The socket alone, idle since before the last sweep (see the module documentation).
    Parked(ParkedSocket),
}

/// A parked connection's socket. A TLS stream is boxed: its session state is a kilobyte that
/// would otherwise make every pool entry that large.
enum ParkedSocket {
    Tcp(TokioIo<TcpStream>),
    Tls(Box<Stream>),
}

impl ParkedSocket {
    fn new(stream: Stream) -> Self {
        match stream {
            MaybeHttpsStream::Http(tcp) => Self::Tcp(tcp),
            tls => Self::Tls(Box::new(tls)),
        }
    }

    fn into_stream(self) -> Stream {
        match self {
            Self::Tcp(tcp) => MaybeHttpsStream::Http(tcp),
            Self::Tls(tls) => *tls,
        }
    }
}

/// One backend's client: how to connect, and its pool.
pub(crate) struct Client {
    connector: Connector,
    /// `scheme://authority`: where connections go.
    target: Uri,
    connect_timeout: Duration,
    protocol: Protocol,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("target", &self.target).finish_non_exhaustive()
    }
}

/// A response head, with the connection it came on still owed its body.
pub(crate) struct Answer<'a> {
    client: &'a Client,
    response: Response<Incoming>,
    /// The HTTP/1.1 connection (h2 streams need none).
    conn: Option<Conn>,
}

impl Client {
    /// A client for `target` (`scheme://authority`); https uses `tls`.
    pub(crate) fn new(
        target: Uri,
        tls: Option<rustls::ClientConfig>,
        http2: bool,
        connect_timeout: Duration,
        max_idle: usize,
    ) -> Self {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        let connector = match tls {
            None => Connector::Plain(tcp),
            Some(config) => {
                let builder = HttpsConnectorBuilder::new().with_tls_config(config).https_or_http();
                Connector::Tls(if http2 {
                    builder.enable_http2().wrap_connector(tcp)
                } else {
                    builder.enable_http1().wrap_connector(tcp)
                })
            }
        };
        let protocol = if http2 {
            Protocol::Http2 { shared: (0..MAX_WORKERS).map(|_| tokio::sync::Mutex::new(None)).collect() }
        } else {
            Protocol::Http1 { idle: (0..MAX_WORKERS).map(|_| Mutex::default()).collect(), max_idle }
        };
        Self { connector, target, connect_timeout, protocol }
    }

    /// Whether requests go over h2 (their URI is then absolute and `Host` is not sent).
    pub(crate) fn http2(&self) -> bool {
        matches!(self.protocol, Protocol::Http2 { .. })
    }

    /// Sends a GET to `uri` (origin form for HTTP/1.1, absolute for h2) with the headers
    /// `write_headers` puts into an empty map, and waits for the response head.
    pub(crate) async fn send(
        &self,
        uri: Uri,
        write_headers: impl FnOnce(&mut HeaderMap),
    ) -> Result<Answer<'_>, CallError> {
        let request = |mut headers: HeaderMap| {
            headers.clear();
            write_headers(&mut headers);
            let mut request = Request::new(NoBody::new());
            *request.uri_mut() = uri;
            *request.headers_mut() = headers;
            request
        };
        match &self.protocol {
            Protocol::Http1 { idle, .. } => {
                let taken = self.take_idle(&idle[worker()]).await;
                let reused = taken.is_some();
                let mut conn = match taken {
                    Some(conn) => conn,
                    None => self.open_http1().await?,
                };
                let request = request(std::mem::take(&mut conn.headers));
                let sent = drive(&mut conn.driver, conn.sender.try_send_request(request)).await;
                let response = match sent {
                    Ok(response) => response,
                    Err(mut refused) => match refused.take_message() {
                        // The pooled connection ended before the request was written: once
                        // more on a fresh one.
                        Some(request) if reused => {
                            conn = self.open_http1().await?;
                            drive(&mut conn.driver, conn.sender.send_request(request))
                                .await
                                .map_err(|e| transport_error("request failed", &e))?
                        }
                        _ => return Err(transport_error("request failed", refused.error())),
                    },
                };
                Ok(Answer { client: self, response, conn: Some(conn) })
            }
            Protocol::Http2 { shared } => {
                let mut sender = self.shared_http2(&shared[worker()]).await?;
                let request = request(HeaderMap::new());
                let response =
                    sender.send_request(request).await.map_err(|e| transport_error("request failed", &e))?;
                Ok(Answer { client: self, response, conn: None })
            }
        }
    }

    async fn connect(&self) -> Result<Stream, CallError> {
        let connecting = async {
            match self.connector.clone() {
                Connector::Plain(tcp) => {
                    tcp.oneshot(self.target.clone()).await.map(MaybeHttpsStream::Http).map_err(Into::into)
                }
                Connector::Tls(tls) => tls.oneshot(self.target.clone()).await,
            }
        };
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(error)) => Err(CallError::Connect(format!("connection failed: {}", innermost(&*error)))),
            Err(_) => Err(CallError::Connect(format!(
                "connection failed: not established within {}ms",
                self.connect_timeout.as_millis()
            ))),
        }
    }

    /// A new connection. Boxed: the connecting state (TLS included) is large, and a call's
    /// future would otherwise carry it, and copy it on every move, even when it takes a pooled
    /// connection.
    fn open_http1(&self) -> Pin<Box<dyn Future<Output = Result<Conn, CallError>> + Send + '_>> {
        Box::pin(async move { start_http1(self.connect().await?).await })
    }

    /// The most recently used idle connection that is still usable (a parked one is started
    /// again); older or dead ones are closed.
    async fn take_idle(&self, idle: &Mutex<VecDeque<Idle>>) -> Option<Conn> {
        loop {
            let entry = idle.lock().unwrap_or_else(PoisonError::into_inner).pop_back()?;
            if entry.expired(Instant::now()) {
                // Everything older is expired too.
                idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
                return None;
            }
            let mut conn = match entry.conn {
                Pooled::Ready(conn) => conn,
                Pooled::Parked(socket) => match Box::pin(start_http1(socket.into_stream())).await {
                    Ok(conn) => conn,
                    Err(_) => continue,
                },
            };
            if conn.usable() {
                return Some(conn);
            }
        }
    }

    /// The shared h2 connection, opened (again) when there is none or it has closed. Calls
    /// that find none wait for the one opening it, so a burst opens one connection.
    async fn shared_http2(
        &self,
        shared: &tokio::sync::Mutex<Option<http2::SendRequest<NoBody>>>,
    ) -> Result<http2::SendRequest<NoBody>, CallError> {
        let mut shared = shared.lock().await;
        if let Some(sender) = shared.as_ref().filter(|s| !s.is_closed()) {
            return Ok(sender.clone());
        }
        let sender = self.open_http2().await?;
        *shared = Some(sender.clone());
        Ok(sender)
    }

    /// A new h2 connection, its driver spawned. Boxed, like [`Client::open_http1`].
    fn open_http2(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<http2::SendRequest<NoBody>, CallError>> + Send + '_>> {
        Box::pin(async move {
            let stream = self.connect().await?;
            let (sender, connection) = http2::handshake(TokioExecutor::new(), stream)
                .await
                .map_err(|e| transport_error("connection failed", &e))?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "h2 backend connection ended");
                }
            });
            Ok(sender)
        })
    }

    /// Gives a connection whose response was read completely back to the pool.
    fn put_back(&self, mut conn: Conn) {
        let Protocol::Http1 { idle, max_idle } = &self.protocol else { return };
        if !conn.usable() {
            return;
        }
        let now = Instant::now();
        let mut idle = idle[worker()].lock().unwrap_or_else(PoisonError::into_inner);
        while idle.front().is_some_and(|oldest| oldest.expired(now)) {
            idle.pop_front();
        }
        if idle.len() < *max_idle {
            idle.push_back(Idle { conn: Pooled::Ready(conn), since: now });
        }
    }

    /// Pool upkeep, meant to run every [`SWEEP_PERIOD`]: closes idle connections older than
    /// [`IDLE_TIMEOUT`] and parks those idle for a whole period (see the module documentation).
    pub(crate) fn sweep(&self) {
        let Protocol::Http1 { idle, .. } = &self.protocol else { return };
        let now = Instant::now();
        for shard in idle {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            if !shard.is_empty() {
                let entries = std::mem::take(&mut *shard);
                *shard = entries.into_iter().filter_map(|entry| entry.swept(now)).collect();
            }
        }
    }
}

impl Idle {
    /// Idle for [`IDLE_TIMEOUT`] or longer at `now`: to be closed, not used.
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.since) >= IDLE_TIMEOUT
    }

    /// The entry after a sweep at `now`: gone if expired or unparkable, parked if idle for a
    /// whole sweep period.
    fn swept(self, now: Instant) -> Option<Idle> {
        if self.expired(now) {
            return None;
        }
        let conn = match self.conn {
            Pooled::Ready(conn) if now.duration_since(self.since) >= SWEEP_PERIOD => {
                Pooled::Parked(conn.park()?)
            }
            kept => kept,
        };
        Some(Idle { conn, since: self.since })
    }
}

/// A started HTTP/1.1 connection on `stream` (hyper's handshake does no I/O for HTTP/1.1).
async fn start_http1(stream: Stream) -> Result<Conn, CallError> {
    let (sender, driver) =
        http1::handshake(stream).await.map_err(|e| transport_error("connection failed", &e))?;
    Ok(Conn { sender, driver: Some(Box::pin(driver)), headers: HeaderMap::new() })
}

impl Conn {
    /// The socket alone, hyper's state and buffers dropped; `None` if the connection has ended
    /// or holds unread bytes (a backend must not answer what was not asked).
    fn park(self) -> Option<ParkedSocket> {
        let parts = Pin::into_inner(self.driver?).into_parts();
        parts.read_buf.is_empty().then(|| ParkedSocket::new(parts.io))
    }

    /// Polls the connection once without waiting: it moves to idle after a complete response,
    /// or ends if the backend has closed it. True when it can take a request now.
    fn usable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        if let Some(driver) = &mut self.driver
            && driver.as_mut().poll(&mut cx).is_ready()
        {
            self.driver = None;
        }
        self.driver.is_some() && self.sender.is_ready()
    }
}

impl Answer<'_> {
    /// The response status.
    pub(crate) fn status(&self) -> http::StatusCode {
        self.response.status()
    }

    /// The response headers.
    pub(crate) fn headers(&self) -> &http::HeaderMap {
        self.response.headers()
    }

    /// Reads the body chunk by chunk and stops as soon as it would exceed `limit`; the
    /// connection goes back to the pool once the body is complete. A body that arrives in one
    /// chunk is kept as it is; later chunks are joined into one buffer.
    pub(crate) async fn body(self, limit: usize) -> Result<Bytes, CallError> {
        let Answer { client, response, mut conn } = self;
        let declared = hyper::body::Body::size_hint(response.body()).exact().unwrap_or(0);
        if declared > limit as u64 {
            return Err(CallError::TooLarge(limit));
        }
        let (head, mut body) = response.into_parts();
        let mut first: Option<Bytes> = None;
        let mut joined = BytesMut::new();
        let mut received = 0usize;
        loop {
            let frame = match conn.as_mut() {
                Some(conn) => drive(&mut conn.driver, body.frame()).await,
                None => body.frame().await,
            };
            let Some(frame) = frame else { break };
            let Ok(chunk) = frame.map_err(|e| transport_error("body read failed", &e))?.into_data() else {
                continue;
            };
            received += chunk.len();
            if received > limit {
                return Err(CallError::TooLarge(limit));
            }
            match &first {
                None => first = Some(chunk),
                Some(head) => {
                    if joined.is_empty() {
                        joined.reserve(declared.max(received as u64) as usize);
                        joined.extend_from_slice(head);
                    }
                    joined.extend_from_slice(&chunk);
                }
            }
        }
        if let Some(mut conn) = conn {
            // A map grown by a backend's unusually many headers is not kept for the pool's time.
            if head.headers.capacity() <= MAX_KEPT_HEADERS {
                conn.headers = head.headers;
            }
            client.put_back(conn);
        }
        Ok(if joined.is_empty() { first.unwrap_or_default() } else { joined.freeze() })
    }
}

pin_project_lite::pin_project! {
    /// Awaits `future` while driving the connection it needs; the connection is set to `None`
    /// if it ends meanwhile (the future then fails with hyper's reason). A plain future rather
    /// than an `async fn`, which would hold `future` twice.
    struct Drive<'c, F> {
        driver: &'c mut Option<Driver>,
        #[pin]
        future: F,
    }
}

fn drive<F: Future>(driver: &mut Option<Driver>, future: F) -> Drive<'_, F> {
    Drive { driver, future }
}

impl<F: Future> Future for Drive<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if let Some(connection) = this.driver
            && connection.as_mut().poll(cx).is_ready()
        {
            **this.driver = None;
        }
        this.future.poll(cx)
    }
}

/// A transport failure, described by its innermost cause (e.g. "connection refused").
fn transport_error(what: &str, error: &hyper::Error) -> CallError {
    CallError::Connect(format!("{what}: {}", innermost(error)))
}

fn innermost<'e>(error: &'e (dyn std::error::Error + 'static)) -> &'e (dyn std::error::Error + 'static) {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause
}
