//! One client connection, from its first byte to its close: the first-byte deadline, hyper's
//! HTTP/1.1-or-h2c serving, an idle watchdog that closes a connection which neither reads nor
//! writes for the idle limit (hyper enforces this for HTTP/1.1 heads, but an h2c connection
//! that sends its preface and then nothing would stay open forever), and the drain signal
//! that makes every connection finish its requests and close.

use crate::problem::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

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

/// How long a connection may wait before its first byte, and stay without any traffic.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The first byte must arrive within this (`server.header_read_timeout`).
    pub first_byte: Duration,
    /// No bytes either way for this long closes the connection. At least
    /// `server.request_timeout`, so a request waiting on its backends is never idle.
    pub idle: Duration,
}

/// Serves one accepted connection until it closes, is idle past `limits.idle`, or is drained.
pub async fn serve<S>(
    stream: TcpStream,
    builder: Arc<auto::Builder<TokioExecutor>>,
    service: S,
    limits: Limits,
    mut drain: DrainWatch,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    if !sends_something(&stream, limits.first_byte).await {
        return;
    }
    let idle = limits.idle;
    let io = TrackedIo::new(stream);
    let activity = Arc::clone(&io.activity);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut check = tokio::time::interval(idle / 2);
    let mut closing = false;
    // An idle connection is asked to close (HTTP/1.1: at once; h2: GOAWAY, which waits for the
    // client's acknowledgement); one still open `idle` later is dropped.
    let mut force_close_at: Option<Instant> = None;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            _ = drain.signal.changed(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = check.tick(), if !closing => {
                if activity.idle_for() >= idle {
                    tracing::debug!("closing idle connection");
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                    force_close_at = Some(Instant::now() + idle);
                }
            }
            () = tokio::time::sleep_until(force_close_at.unwrap_or_else(Instant::now)), if force_close_at.is_some() => {
                tracing::debug!("dropping idle connection that did not close");
                return;
            }
        }
    }
}

/// Waits for the connection's first byte: hyper's head timer only starts once bytes arrive,
/// so a connection that sends nothing would otherwise hold its slot forever.
async fn sends_something(stream: &TcpStream, deadline: Duration) -> bool {
    let _ = stream.set_nodelay(true);
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(deadline, stream.peek(&mut byte)).await, Ok(Ok(n)) if n > 0)
}

/// When a connection last moved bytes either way.
#[derive(Debug)]
struct Activity {
    start: Instant,
    last_millis: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let millis = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_millis.store(millis, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_millis.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// A `TcpStream` that records activity on every successful read or write.
struct TrackedIo {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl TrackedIo {
    fn new(stream: TcpStream) -> Self {
        let activity = Arc::new(Activity { start: Instant::now(), last_millis: AtomicU64::new(0) });
        Self { stream, activity }
    }
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
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
