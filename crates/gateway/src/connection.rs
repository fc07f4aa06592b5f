//! One client connection on either listener, from accept to close: hyper's serving (HTTP/1.1
//! or h2c; the admin listener HTTP/1.1 only), the connection's deadlines and the drain signal
//! that makes every connection finish its requests and close.
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

use crate::config::ServerSettings;
use crate::problem::Body;
use http::header::CONNECTION;
use http::{HeaderValue, Request, Response, Version};
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

/// Largest request head accepted (larger: 431).
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

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

/// Serves one accepted connection until it closes, misses a deadline, or is drained.
pub async fn serve<S>(
    stream: TcpStream,
    builder: Arc<auto::Builder<TokioExecutor>>,
    service: S,
    limits: Limits,
    mut drain: DrainWatch,
) where
    S: hyper::service::Service<Request<hyper::body::Incoming>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let tracker = Arc::new(Tracker::new());
    let io = TrackedIo { stream, tracker: Arc::clone(&tracker) };
    let service = Counted { inner: service, tracker: Arc::clone(&tracker) };
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut watchdog = Watchdog::new(tracker, limits);
    let mut draining = false;
    loop {
        tokio::select! {
            // The connection first: what it reads and answers is what the watchdog then sees.
            biased;
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            _ = drain.signal.changed(), if !draining => {
                connection.as_mut().graceful_shutdown();
                watchdog.closing(None);
                draining = true;
            }
            expiry = std::future::poll_fn(|cx| watchdog.poll_expired(cx)) => match expiry {
                Expiry::Drop(why) => {
                    tracing::debug!(why, "dropping connection");
                    return;
                }
                Expiry::Close(why) => {
                    tracing::debug!(why, "closing connection");
                    connection.as_mut().graceful_shutdown();
                    watchdog.closing(Some(limits.close_grace));
                }
            },
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
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return;
        }
        self.head_bytes.fetch_add(n, Ordering::Relaxed);
        if self.head_started.load(Ordering::Relaxed) == 0 {
            self.head_started.store(self.now().saturating_add(1), Ordering::Relaxed);
            self.changed();
        }
    }

    fn request_started(&self, version: Version) {
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
}

/// One deadline of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    Head,
    Idle,
    Age,
    Closed,
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
        }
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
        [
            head.map(|start| (start + self.limits.header_read, Deadline::Head)),
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
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = CountedFuture<S::Future>;

    fn call(&self, request: Request<B>) -> Self::Future {
        self.tracker.request_started(request.version());
        CountedFuture { inner: self.inner.call(request), busy: Some(Busy(Arc::clone(&self.tracker))) }
    }
}

/// One request in flight; ends when dropped (answered, or cancelled by a reset stream).
struct Busy(Arc<Tracker>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

pin_project_lite::pin_project! {
    /// A request's answer being computed; the request stops counting when it is ready.
    struct CountedFuture<F> {
        #[pin]
        inner: F,
        busy: Option<Busy>,
    }
}

impl<F> Future for CountedFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut response) = ready!(this.inner.poll(cx));
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
/// incomplete, so one large read could otherwise carry a larger head in whole.
struct TrackedIo {
    stream: TcpStream,
    tracker: Arc<Tracker>,
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = match self.tracker.head_room() {
            Some(0) => return Poll::Ready(Err(io::Error::other("request head too large"))),
            Some(room) if room < buf.remaining() => {
                let mut limited = ReadBuf::new(buf.initialize_unfilled_to(room));
                ready!(Pin::new(&mut self.stream).poll_read(cx, &mut limited))?;
                let n = limited.filled().len();
                buf.advance(n);
                n
            }
            _ => {
                let before = buf.filled().len();
                ready!(Pin::new(&mut self.stream).poll_read(cx, buf))?;
                buf.filled().len() - before
            }
        };
        if n > 0 {
            self.tracker.read(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
