//! One client connection on either listener, from accept to close: hyper's serving (HTTP/1.1
//! or h2c; the admin listener HTTP/1.1 only), the connection's deadlines and the drain signal
//! that makes every connection finish its requests and close.
//!
//! An idle HTTP/1.1 connection holds no buffer: hyper's connection state (an 8 KiB read buffer
//! that grows to 16 KiB, an 8 KiB head write buffer, the request slot) lives only while the
//! connection is busy. When hyper, after an answer is written out, has waited [`RELEASE_AFTER`]
//! for the next request with nothing read, it is shut down and taken apart ([`http1::
//! Connection::into_parts`]: the socket, any bytes read ahead, the service); the connection
//! then waits for readability with only the socket, and a new hyper connection reads the next
//! request. A request with a body keeps its hyper connection to the end (hyper may still be
//! reading or discarding the body). h2c connections are served by one hyper connection
//! throughout. See docs/configuration.md (`max_connections`) for what an idle connection costs.
//!
//! The deadlines, enforced by one [`Watchdog`] timer per connection that sleeps until the
//! earliest of them (an idle connection costs no wake-up until then):
//! - the first request head (h2: preface and first HEADERS) is complete within
//!   `header_read_timeout` of accept, however slowly it trickles; later HTTP/1.1 heads within
//!   it of their first byte (hyper's own head timer is off: it starts when the previous answer
//!   is sent, so it closed idle keep-alive connections). Missed: the connection is dropped.
//! - `keep_alive_timeout` of time with no request in flight (HTTP/1.1: between requests; h2:
//!   no open stream). Only requests count: PING, SETTINGS or WINDOW_UPDATE frames do not keep
//!   a connection open. Reached: graceful close (HTTP/1.1: close; h2: GOAWAY), dropped if
//!   still open `close_grace` later.
//! - `max_connection_age`: HTTP/1.1 answers its next request with `Connection: close`; h2 gets
//!   GOAWAY.
//!
//! What the watchdog reads is kept by a [`Tracker`] that the counting service ([`Counted`])
//! and the socket wrapper ([`TrackedIo`], which notes the first byte of an HTTP/1.1 head)
//! update; the watchdog looks at it each time the connection's task runs, which is whenever
//! bytes move or a request starts or ends.

use crate::Body;
use crate::config::ServerSettings;
use crate::limits::MAX_HEAD_BYTES;
use bytes::{Buf, Bytes};
use http::header::CONNECTION;
use http::{HeaderValue, Request, Response, Version};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Sleep};

/// How long an idle HTTP/1.1 connection keeps its hyper connection (see the module
/// documentation). A client that keeps a connection busy sends its next request within a few
/// milliseconds (oha at `-c 64` and 12,000 pages/s: every 5 ms), and rebuilding hyper's
/// connection for each request cost ~8 allocations and ~4k instructions per page (`make
/// cost`: 47.5 → 39.8 allocations); a connection idle for 100 ms — 20 times that — is one a
/// browser or a load balancer keeps spare, and holds hyper's ~24 KiB no longer (all of it
/// kept made an idle connection cost 28 KiB).
pub const RELEASE_AFTER: Duration = Duration::from_millis(100);

/// Tells connections to drain and lets the server wait until they all have closed.
#[derive(Debug)]
pub struct Drain {
    signal: watch::Sender<bool>,
    alive: mpsc::Sender<()>,
    closed: mpsc::Receiver<()>,
}

/// A connection's handle on the [`Drain`]: it watches the signal and, by being dropped,
/// reports that the connection has closed.
#[derive(Debug, Clone)]
pub struct DrainWatch {
    signal: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
}

impl Drain {
    /// A drain with no connections yet.
    pub fn new() -> Self {
        let (signal, _) = watch::channel(false);
        let (alive, closed) = mpsc::channel(1);
        Self { signal, alive, closed }
    }

    /// A handle for one more connection.
    pub fn watch(&self) -> DrainWatch {
        DrainWatch { signal: self.signal.subscribe(), _alive: self.alive.clone() }
    }

    /// Signals every connection to finish its requests and close, then waits until all did.
    pub async fn drain(self) {
        let Self { signal, alive, mut closed } = self;
        let _ = signal.send(true);
        drop(alive);
        // `recv` yields `None` once every connection's `DrainWatch` has been dropped.
        let _ = closed.recv().await;
    }
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

/// A connection's deadlines (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `server.header_read_timeout`.
    pub header_read: Duration,
    /// `server.keep_alive_timeout`.
    pub keep_alive: Duration,
    /// `server.max_connection_age`.
    pub max_age: Option<Duration>,
    /// How long a connection asked to close may stay open: `server.request_timeout`, the most
    /// a request that raced the close can still need.
    pub close_grace: Duration,
}

impl Limits {
    /// The limits `settings` configure.
    pub fn of(settings: &ServerSettings) -> Self {
        Self {
            header_read: settings.header_read_timeout,
            keep_alive: settings.keep_alive_timeout,
            max_age: settings.max_connection_age,
            close_grace: settings.request_timeout,
        }
    }
}

/// How a listener's connections are served: hyper's HTTP/1.1 connection (one per request
/// burst, see the module documentation) and, on a listener that speaks h2c, the auto-detecting
/// builder for connections that open with the h2 preface.
pub struct Http {
    /// HTTP/1.1.
    pub http1: http1::Builder,
    /// HTTP/1.1 and h2c, for connections that start with the h2 preface; `None`: HTTP/1.1 only.
    pub h2c: Option<auto::Builder<TokioExecutor>>,
}

/// What serves a connection's requests.
pub trait ConnService:
    hyper::service::Service<
        Request<hyper::body::Incoming>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Unpin
    + Send
    + 'static
{
}

impl<S> ConnService for S where
    S: hyper::service::Service<
            Request<hyper::body::Incoming>,
            Response = Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Unpin
        + Send
        + 'static
{
}

/// A request's peer address (its connection's), a request extension — set only while some
/// endpoint limits by `client_ip` (`Plan::needs_peer`): other requests skip its allocations.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::IpAddr);

/// The h2 connection preface, which an h2c connection opens with.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection's first bytes say it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    H2c,
}

/// The protocol the connection's first bytes announce, if they tell already.
fn sniff(first: &[u8]) -> Option<Protocol> {
    let common = first.iter().zip(H2_PREFACE).take_while(|(a, b)| a == b).count();
    if common < first.len() {
        Some(Protocol::Http1)
    } else if common == H2_PREFACE.len() {
        Some(Protocol::H2c)
    } else {
        None
    }
}

/// The hyper connection serving requests now (boxed: it exists only while serving, and the
/// connection's task stays small while idle).
enum Serving<'h, S: ConnService> {
    Http1 {
        connection: Pin<Box<http1::Connection<Socket, Counted<S>>>>,
        /// Shut down because it went idle (not asked to close, not closed by hyper).
        released: bool,
    },
    H2c(Pin<Box<auto::Connection<'h, Socket, Counted<S>, TokioExecutor>>>),
}

/// The socket as hyper reads and writes it.
type Socket = TokioIo<TrackedIo>;

/// Why a hyper connection failed.
type ServeError = Box<dyn std::error::Error + Send + Sync>;

/// How a hyper connection ended.
enum Served<S> {
    /// HTTP/1.1, idle with nothing read: the socket and service, to wait for the next request.
    Idle(TrackedIo, Counted<S>),
    /// Closed (by either side, on error, or asked to).
    Closed,
}

/// Serves one accepted connection until it closes, misses a deadline, or is drained.
pub async fn serve<S>(stream: TcpStream, http: Arc<Http>, service: S, limits: Limits, mut drain: DrainWatch)
where
    S: ConnService,
{
    let _ = stream.set_nodelay(true);
    let tracker = Arc::new(Tracker::new());
    let mut io = TrackedIo { stream, tracker: Arc::clone(&tracker), ahead: Bytes::new(), unflushed: false };
    let mut service = Counted { inner: service, tracker: Arc::clone(&tracker) };
    let mut watchdog = Watchdog::new(Arc::clone(&tracker), limits);
    let mut protocol = if http.h2c.is_some() { None } else { Some(Protocol::Http1) };
    loop {
        // Waiting for the (next) request with nothing allocated but the socket.
        tokio::select! {
            biased;
            ready = io.stream.readable() => if ready.is_err() {
                return;
            },
            _ = drain.signal.changed() => return,
            expiry = std::future::poll_fn(|cx| watchdog.poll_expired(cx)) => {
                let why = match expiry {
                    Expiry::Drop(why) | Expiry::Close(why) => why,
                    // Only while hyper serves (see `Watchdog::serving_http1`).
                    Expiry::Release => continue,
                };
                tracing::debug!(why, "closing idle connection");
                return;
            }
        }
        let protocol = match protocol {
            Some(known) => known,
            None => match io.sniff() {
                Ok(Some(found)) => *protocol.insert(found),
                Ok(None) => continue,
                Err(error) => {
                    tracing::debug!(%error, "connection ended before its first request");
                    return;
                }
            },
        };
        let serving = match (protocol, &http.h2c) {
            (Protocol::H2c, Some(auto)) => {
                Serving::H2c(Box::pin(auto.serve_connection(TokioIo::new(io), service)))
            }
            _ => {
                watchdog.serving_http1(tracker.requests.load(Ordering::Relaxed));
                Serving::Http1 {
                    connection: Box::pin(http.http1.serve_connection(TokioIo::new(io), service)),
                    released: false,
                }
            }
        };
        // Boxed, like the hyper connection: the task keeps only the waiting state while idle.
        let served = Box::pin(serve_requests(serving, &mut watchdog, limits, &mut drain)).await;
        watchdog.serving_http1_ended();
        match served {
            Served::Idle(idle_io, idle_service) => (io, service) = (idle_io, idle_service),
            Served::Closed => return,
        }
    }
}

/// Drives `serving` until it ends, its HTTP/1.1 connection has waited [`RELEASE_AFTER`] for a
/// next request that has not begun, a deadline is missed, or the drain signal comes.
async fn serve_requests<S>(
    mut serving: Serving<'_, S>,
    watchdog: &mut Watchdog,
    limits: Limits,
    drain: &mut DrainWatch,
) -> Served<S>
where
    S: ConnService,
{
    // Once asked to close, the connection ends instead of waiting for the next request.
    let mut closing = false;
    loop {
        tokio::select! {
            // The connection first: what it reads and answers is what the watchdog then sees.
            biased;
            ended = std::future::poll_fn(|cx| serving.poll_served(cx)) => {
                if let Err(error) = ended {
                    tracing::debug!(%error, "connection ended with an error");
                    return Served::Closed;
                }
                return match serving {
                    Serving::Http1 { connection, released: true } => {
                        let parts = Pin::into_inner(connection).into_parts();
                        let mut io = parts.io.into_inner();
                        io.ahead = Bytes::copy_from_slice(&parts.read_buf);
                        Served::Idle(io, parts.service)
                    }
                    _ => Served::Closed,
                };
            }
            _ = drain.signal.changed(), if !closing => {
                serving.graceful_shutdown();
                watchdog.closing(None);
                closing = true;
            }
            expiry = std::future::poll_fn(|cx| watchdog.poll_expired(cx)) => match expiry {
                Expiry::Release => serving.release(),
                Expiry::Drop(why) => {
                    tracing::debug!(why, "dropping connection");
                    return Served::Closed;
                }
                Expiry::Close(why) => {
                    tracing::debug!(why, "closing connection");
                    serving.graceful_shutdown();
                    watchdog.closing(Some(limits.close_grace));
                    closing = true;
                }
            },
        }
    }
}

impl<S> Serving<'_, S>
where
    S: ConnService,
{
    /// Polls the connection. Closing or not, an HTTP/1.1 connection leaves the socket open:
    /// [`serve`] closes it by dropping it.
    fn poll_served(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServeError>> {
        match self {
            Serving::Http1 { connection, .. } => connection.poll_without_shutdown(cx).map_err(Into::into),
            Serving::H2c(connection) => connection.as_mut().poll(cx),
        }
    }

    /// Shuts an idle HTTP/1.1 connection down, to be taken apart (it ends at once: hyper is
    /// waiting for a request not yet begun).
    fn release(&mut self) {
        if let Serving::Http1 { connection, released } = self {
            connection.as_mut().graceful_shutdown();
            *released = true;
        }
    }

    fn graceful_shutdown(&mut self) {
        match self {
            Serving::Http1 { connection, .. } => connection.as_mut().graceful_shutdown(),
            Serving::H2c(connection) => connection.as_mut().graceful_shutdown(),
        }
    }
}

/// What one connection is doing, as the watchdog needs to know it. Times are milliseconds
/// after accept; writers bump `changes` after each update.
#[derive(Debug)]
struct Tracker {
    accepted: Instant,
    changes: AtomicU32,
    in_flight: AtomicU32,
    requested: AtomicBool,
    h2: AtomicBool,
    /// Past `max_connection_age`: HTTP/1.1 answers get `Connection: close`.
    retired: AtomicBool,
    /// When the last request ended (accept, before the first).
    idle_since: AtomicU64,
    /// One more than when the first byte of the pending HTTP/1.1 head was read; 0: none.
    head_started: AtomicU64,
    /// Bytes read since the last request started, while none is in flight (a head, before h2
    /// is known).
    head_bytes: AtomicUsize,
    /// Requests started.
    requests: AtomicU32,
    /// A request had a body: its hyper connection serves to the end (see the module doc).
    bodied: AtomicBool,
    /// HTTP/1.1: the last read found nothing while no request was in flight, its answer was
    /// written out and no byte of a next head was read: hyper is idle, waiting for a request.
    idle_read: AtomicBool,
}

impl Tracker {
    fn new() -> Self {
        Self {
            accepted: Instant::now(),
            changes: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            requested: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            head_bytes: AtomicUsize::new(0),
            requests: AtomicU32::new(0),
            bodied: AtomicBool::new(false),
            idle_read: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, millis: u64) -> Instant {
        self.accepted + Duration::from_millis(millis)
    }

    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::Release);
    }

    /// How many more bytes the pending head may have; `None`: no head is being read (a
    /// request is in flight, or the connection speaks h2).
    fn head_room(&self) -> Option<usize> {
        let reading_head = self.in_flight.load(Ordering::Relaxed) == 0 && !self.h2.load(Ordering::Relaxed);
        reading_head.then(|| MAX_HEAD_BYTES.saturating_sub(self.head_bytes.load(Ordering::Relaxed)))
    }

    /// `n` bytes were read: the first ones while no request is in flight start a head.
    fn read(&self, n: usize) {
        self.idle_read.store(false, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return;
        }
        self.head_bytes.fetch_add(n, Ordering::Relaxed);
        if self.head_started.load(Ordering::Relaxed) == 0 {
            self.head_started.store(self.now().saturating_add(1), Ordering::Relaxed);
            self.changed();
        }
    }

    /// A read found nothing; `unflushed`: bytes written since the last flush. hyper becoming
    /// idle is a change (the watchdog's release deadline starts).
    fn read_pending(&self, unflushed: bool) {
        let idle = !unflushed
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_bytes.load(Ordering::Relaxed) == 0
            && !self.bodied.load(Ordering::Relaxed);
        if self.idle_read.swap(idle, Ordering::Relaxed) != idle && idle {
            self.changed();
        }
    }

    fn request_started(&self, version: Version, bodied: bool) {
        self.idle_read.store(false, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        if bodied {
            self.bodied.store(true, Ordering::Relaxed);
        }
        self.requested.store(true, Ordering::Relaxed);
        self.h2.store(version == Version::HTTP_2, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
        self.head_bytes.store(0, Ordering::Relaxed);
        self.changed();
    }

    fn request_ended(&self) {
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.idle_since.store(self.now(), Ordering::Relaxed);
        }
        self.changed();
    }

    /// Known to speak HTTP/1.1 (a request was seen, and it was not h2).
    fn is_h1(&self) -> bool {
        self.requested.load(Ordering::Relaxed) && !self.h2.load(Ordering::Relaxed)
    }
}

/// Why the watchdog woke the connection.
#[derive(Debug, Clone, Copy)]
enum Expiry {
    /// Drop the connection now.
    Drop(&'static str),
    /// Ask the connection to close (HTTP/1.1: close when idle; h2: GOAWAY).
    Close(&'static str),
    /// Take the idle HTTP/1.1 connection's hyper connection apart.
    Release,
}

/// One deadline of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    Head,
    Idle,
    Age,
    Closed,
    Release,
}

/// Sleeps until the connection's earliest deadline. A change that brings a deadline closer
/// re-arms the timer at once; one that pushes it later is noticed when the timer fires.
struct Watchdog {
    tracker: Arc<Tracker>,
    limits: Limits,
    sleep: Pin<Box<Sleep>>,
    armed: Instant,
    seen: u32,
    closing: bool,
    close_by: Option<Instant>,
    /// While a hyper HTTP/1.1 connection serves: the requests started before it.
    serving_http1: Option<u32>,
}

/// Far enough to mean "no deadline", within what tokio's timer accepts.
const NEVER: Duration = Duration::from_secs(365 * 24 * 60 * 60);

impl Watchdog {
    fn new(tracker: Arc<Tracker>, limits: Limits) -> Self {
        let armed = tracker.accepted + limits.header_read;
        Self {
            tracker,
            limits,
            sleep: Box::pin(tokio::time::sleep_until(armed)),
            armed,
            seen: 0,
            closing: false,
            close_by: None,
            serving_http1: None,
        }
    }

    /// A hyper HTTP/1.1 connection serves from now, after `requests` requests: once it has
    /// answered one and waited [`RELEASE_AFTER`] idle, it is released.
    fn serving_http1(&mut self, requests: u32) {
        self.serving_http1 = Some(requests);
    }

    /// The hyper connection is gone.
    fn serving_http1_ended(&mut self) {
        self.serving_http1 = None;
    }

    /// The connection was asked to close; with a `grace`, it is dropped if still open then.
    fn closing(&mut self, grace: Option<Duration>) {
        self.closing = true;
        self.close_by = grace.map(|grace| Instant::now() + grace);
        self.arm_earliest();
    }

    fn earliest(&self) -> Option<(Instant, Deadline)> {
        let t = &self.tracker;
        let busy = t.in_flight.load(Ordering::Relaxed) > 0;
        let head_started = t.head_started.load(Ordering::Relaxed);
        let head = match t.requested.load(Ordering::Relaxed) {
            false => Some(t.accepted),
            true if t.is_h1() && !busy && head_started > 0 => Some(t.at(head_started - 1)),
            true => None,
        };
        let idle = (!self.closing && !busy).then(|| t.at(t.idle_since.load(Ordering::Relaxed)));
        let age = self.limits.max_age.filter(|_| !self.closing && !t.retired.load(Ordering::Relaxed));
        let release = self.serving_http1.filter(|before| {
            !self.closing
                && !busy
                && t.idle_read.load(Ordering::Relaxed)
                && t.requests.load(Ordering::Relaxed) != *before
        });
        [
            head.map(|start| (start + self.limits.header_read, Deadline::Head)),
            release.map(|_| (t.at(t.idle_since.load(Ordering::Relaxed)) + RELEASE_AFTER, Deadline::Release)),
            idle.map(|since| (since + self.limits.keep_alive, Deadline::Idle)),
            age.map(|age| (t.accepted + age, Deadline::Age)),
            self.close_by.map(|at| (at, Deadline::Closed)),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(at, _)| *at)
    }

    fn arm_earliest(&mut self) {
        let at = self.earliest().map_or_else(|| Instant::now() + NEVER, |(at, _)| at);
        self.arm(at);
    }

    fn arm(&mut self, at: Instant) {
        self.armed = at;
        self.sleep.as_mut().reset(at);
    }

    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<Expiry> {
        let changes = self.tracker.changes.load(Ordering::Acquire);
        if changes != self.seen {
            self.seen = changes;
            if let Some((at, _)) = self.earliest().filter(|(at, _)| *at < self.armed) {
                self.arm(at);
            }
        }
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            let due = self.earliest().filter(|(at, _)| *at <= Instant::now()).map(|(_, deadline)| deadline);
            let expiry = match due {
                None => None,
                Some(Deadline::Head) => {
                    Some(Expiry::Drop("request head not complete within header_read_timeout"))
                }
                Some(Deadline::Closed) => Some(Expiry::Drop("connection asked to close did not")),
                Some(Deadline::Idle) => Some(Expiry::Close("no request within keep_alive_timeout")),
                Some(Deadline::Release) => Some(Expiry::Release),
                Some(Deadline::Age) => {
                    self.tracker.retired.store(true, Ordering::Relaxed);
                    // HTTP/1.1: the next answer carries `Connection: close` (see `CountedFuture`).
                    (!self.tracker.is_h1()).then_some(Expiry::Close("max_connection_age reached"))
                }
            };
            match expiry {
                Some(expiry) => return Poll::Ready(expiry),
                None => self.arm_earliest(),
            }
        }
    }
}

/// The connection's service, counting requests in flight on the [`Tracker`].
struct Counted<S> {
    inner: S,
    tracker: Arc<Tracker>,
}

impl<S, B> hyper::service::Service<Request<B>> for Counted<S>
where
    S: hyper::service::Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    B: hyper::body::Body,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = CountedFuture<S::Future>;

    fn call(&self, request: Request<B>) -> Self::Future {
        self.tracker.request_started(request.version(), !request.body().is_end_stream());
        let inner = Box::pin(self.inner.call(request));
        CountedFuture { inner, busy: Some(Busy(Arc::clone(&self.tracker))) }
    }
}

/// One request in flight; ends when dropped (answered, or cancelled by a reset stream).
struct Busy(Arc<Tracker>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// A request's answer being computed; the request stops counting when it is ready. The
/// answer's future is boxed (this one is `Unpin`, as taking an HTTP/1.1 connection apart
/// requires; hyper boxes it again, small).
struct CountedFuture<F> {
    inner: Pin<Box<F>>,
    busy: Option<Busy>,
}

impl<F> Future for CountedFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Ok(mut response) = ready!(this.inner.as_mut().poll(cx));
        if let Some(Busy(tracker)) = this.busy.as_ref()
            && tracker.retired.load(Ordering::Relaxed)
            && tracker.is_h1()
        {
            response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        }
        this.busy.take();
        Poll::Ready(Ok(response))
    }
}

/// A `TcpStream` that tells the [`Tracker`] what it reads, and never reads a request head
/// past [`MAX_HEAD_BYTES`]: hyper checks its limit only after a read leaves the head
/// incomplete, so one large read could otherwise carry a larger head in whole. Bytes read
/// before hyper took the socket (the first bytes, looked at to tell h2c; what the previous
/// hyper connection had read ahead) are read again first.
struct TrackedIo {
    stream: TcpStream,
    tracker: Arc<Tracker>,
    ahead: Bytes,
    /// Bytes were written since the last completed flush.
    unflushed: bool,
}

impl TrackedIo {
    /// Reads what has arrived of the first bytes (up to the h2 preface's length, kept to be
    /// read again) and tells the protocol once they do; `None`: not yet. End of stream is an
    /// error.
    fn sniff(&mut self) -> io::Result<Option<Protocol>> {
        let mut first = [0u8; H2_PREFACE.len()];
        let had = self.ahead.len();
        first[..had].copy_from_slice(&self.ahead);
        match self.stream.try_read(&mut first[had..]) {
            Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                self.ahead = Bytes::copy_from_slice(&first[..had + n]);
                Ok(sniff(&self.ahead))
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Bytes are being written: hyper is not idle.
    fn wrote(&mut self) {
        self.unflushed = true;
        self.tracker.idle_read.store(false, Ordering::Relaxed);
    }

    /// Reads into `buf` (the bytes read ahead first, then the socket), at most `limit` bytes.
    fn poll_read_socket(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        limit: usize,
    ) -> Poll<io::Result<usize>> {
        if !self.ahead.is_empty() {
            let n = self.ahead.len().min(limit).min(buf.remaining());
            buf.put_slice(&self.ahead[..n]);
            self.ahead.advance(n);
            return Poll::Ready(Ok(n));
        }
        if limit < buf.remaining() {
            let mut limited = ReadBuf::new(buf.initialize_unfilled_to(limit));
            ready!(Pin::new(&mut self.stream).poll_read(cx, &mut limited))?;
            let n = limited.filled().len();
            buf.advance(n);
            Poll::Ready(Ok(n))
        } else {
            let before = buf.filled().len();
            ready!(Pin::new(&mut self.stream).poll_read(cx, buf))?;
            Poll::Ready(Ok(buf.filled().len() - before))
        }
    }
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let limit = match self.tracker.head_room() {
            Some(0) => return Poll::Ready(Err(io::Error::other("request head too large"))),
            Some(room) => room,
            None => usize::MAX,
        };
        let n = match self.poll_read_socket(cx, buf, limit) {
            Poll::Pending => {
                self.tracker.read_pending(self.unflushed);
                return Poll::Pending;
            }
            Poll::Ready(read) => read?,
        };
        if n > 0 {
            self.tracker.read(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.wrote();
        Pin::new(&mut self.stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.wrote();
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.stream).poll_flush(cx))?;
        self.unflushed = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watchdog() -> Watchdog {
        let limits = Limits {
            header_read: Duration::from_secs(10),
            keep_alive: Duration::from_secs(75),
            max_age: None,
            close_grace: Duration::from_secs(5),
        };
        Watchdog::new(Arc::new(Tracker::new()), limits)
    }

    /// The tracker of a hyper HTTP/1.1 connection that has answered one request and then
    /// found nothing to read.
    fn answered_then_idle(watchdog: &mut Watchdog) {
        watchdog.serving_http1(0);
        let tracker = &watchdog.tracker;
        tracker.request_started(Version::HTTP_11, false);
        tracker.request_ended();
        tracker.read_pending(false);
    }

    fn release_due(watchdog: &Watchdog) -> Option<Instant> {
        watchdog.earliest().filter(|(_, deadline)| *deadline == Deadline::Release).map(|(at, _)| at)
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_http1_connection_is_released_after_release_after() {
        let mut watchdog = watchdog();
        answered_then_idle(&mut watchdog);
        let ended = watchdog.tracker.at(watchdog.tracker.idle_since.load(Ordering::Relaxed));
        assert_eq!(release_due(&watchdog), Some(ended + RELEASE_AFTER));
        let expiry = std::future::poll_fn(|cx| watchdog.poll_expired(cx)).await;
        assert!(matches!(expiry, Expiry::Release), "{expiry:?}");
        assert!(Instant::now() >= ended + RELEASE_AFTER);
    }

    #[tokio::test(start_paused = true)]
    async fn no_release_while_a_head_arrives_a_request_runs_or_nothing_was_answered() {
        let mut watchdog = watchdog();
        answered_then_idle(&mut watchdog);
        watchdog.tracker.read(3);
        assert_eq!(release_due(&watchdog), None, "a head has begun");

        let mut watchdog = self::watchdog();
        answered_then_idle(&mut watchdog);
        watchdog.tracker.request_started(Version::HTTP_11, false);
        assert_eq!(release_due(&watchdog), None, "a request is in flight");

        let mut watchdog = self::watchdog();
        watchdog.serving_http1(0);
        watchdog.tracker.read_pending(false);
        assert_eq!(release_due(&watchdog), None, "this hyper connection has answered nothing");

        let mut watchdog = self::watchdog();
        answered_then_idle(&mut watchdog);
        watchdog.serving_http1_ended();
        assert_eq!(release_due(&watchdog), None, "hyper no longer serves");
    }
}
