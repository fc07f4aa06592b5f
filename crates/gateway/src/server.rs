//! The servers: bind both listeners, accept connections on each under its connection cap
//! (public: `max_connections`, admin: `admin_max_connections`), hand each connection to
//! [`crate::connection`] (deadlines, bounded heads; public: HTTP/1.1 and h2c with the
//! [`crate::service::stack`], admin: HTTP/1.1 with [`crate::admin`]), and on shutdown drain:
//! `/readyz` turns 503, the public listener closes, in-flight requests get `shutdown_grace` to
//! finish.
//!
//! With `server.runtime: per_core`, the public port is served by one thread per core, each
//! with a single-threaded runtime, its own `SO_REUSEPORT` socket (the kernel spreads new
//! connections over them) and its own backend connections ([`downstream::set_worker`]); the
//! admin listener, signals, reloads and metrics stay on the main thread's runtime.

use crate::Body;
use crate::admin::{Admin, AdminState};
use crate::config::RuntimeMode;
use crate::connection::{self, Drain, Http, Limits, PeerAddr};
use crate::limits::{MAX_HEAD_BYTES, MAX_HEADERS};
use crate::plan::Plan;
use crate::reload::Live;
use crate::service;
use crate::telemetry::metrics::{self, Exporter, InFlight};
use ::metrics::Gauge;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Semaphore, oneshot, watch};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Both listeners, bound and ready: the public one once per worker with `per_core`.
#[derive(Debug)]
pub struct Listeners {
    public: Vec<TcpListener>,
    admin: TcpListener,
}

impl Listeners {
    /// Binds the public and admin addresses of `plan`.
    pub async fn bind(plan: &Plan) -> Result<Self, ServerError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })
        };
        let public = match plan.server.runtime {
            RuntimeMode::WorkStealing => vec![bind(plan.server.listen).await?],
            RuntimeMode::PerCore => bind_per_core(plan.server.listen, per_core_workers())?,
        };
        Ok(Self { public, admin: bind(plan.server.admin_listen).await? })
    }

    /// The bound (public, admin) addresses (ports resolved when configured as 0).
    pub fn addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        (self.public.first().and_then(|l| l.local_addr().ok()), self.admin.local_addr().ok())
    }
}

/// Worker threads with `per_core`: the cores this process may use (cgroup quota and CPU
/// affinity included), at most [`downstream::MAX_WORKERS`].
fn per_core_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from).min(downstream::MAX_WORKERS)
}

/// `workers` sockets listening on `addr` with `SO_REUSEPORT` (a port of 0 is resolved by the
/// first, the others take the same).
fn bind_per_core(addr: SocketAddr, workers: usize) -> Result<Vec<TcpListener>, ServerError> {
    let mut addr = addr;
    let mut sockets = Vec::with_capacity(workers);
    for _ in 0..workers {
        let failed = |source| ServerError::Bind { addr, source };
        let socket =
            if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(failed)?;
        socket.set_reuseaddr(true).map_err(failed)?;
        socket.set_reuseport(true).map_err(failed)?;
        socket.bind(addr).map_err(failed)?;
        let listener = socket.listen(LISTEN_BACKLOG).map_err(failed)?;
        addr = listener.local_addr().map_err(failed)?;
        sockets.push(listener);
    }
    Ok(sockets)
}

/// Pending connections the kernel queues per listening socket (tokio's default for `bind`).
const LISTEN_BACKLOG: u32 = 1024;

/// Serves the `live` config until `shutdown` resolves, then drains and returns. With an
/// `exporter`, metrics are served on the admin port. The `server` settings are the ones the
/// process started with (a reload does not change them).
pub async fn run(
    live: Arc<Live>,
    listeners: Listeners,
    exporter: Option<Exporter>,
    shutdown: impl Future<Output = ()>,
) {
    let settings = live.current().plan.server.clone();
    let health = Arc::new(AdminState::new(Arc::clone(&live)));
    let admin_listener = Listener {
        socket: listeners.admin,
        http: Arc::new(http(Protocols::Http1)),
        limits: Limits { max_age: None, ..Limits::of(&settings) },
        max_connections: settings.admin_max_connections,
        connections: Arc::new(Semaphore::new(settings.admin_max_connections)),
        open_connections: None,
    };
    let admin_service = Admin::new(Arc::clone(&health), exporter.map(Arc::new));
    // Admin connections are never drained: the task is dropped at exit, closing them.
    let admin = tokio::spawn(async move {
        admin_listener.accept(&Drain::new(), |_| admin_service.clone(), std::future::pending()).await;
    });
    let service = service::stack(Arc::clone(&live), &settings);
    let public = Public {
        live,
        http: Arc::new(http(Protocols::Http1AndH2c)),
        limits: Limits::of(&settings),
        max_connections: settings.max_connections,
        connections: Arc::new(Semaphore::new(settings.max_connections)),
        open_connections: Some(metrics::open_connections()),
        grace: settings.shutdown_grace,
    };
    let mut sockets = listeners.public;
    if settings.runtime == RuntimeMode::PerCore && sockets.len() > 1 {
        let (stop, stopped) = watch::channel(false);
        let workers: Vec<_> = sockets
            .into_iter()
            .enumerate()
            .map(|(index, socket)| public.spawn_worker(index, socket, service.clone(), stopped.clone()))
            .collect();
        shutdown.await;
        health.start_draining();
        tracing::info!(grace = ?settings.shutdown_grace, "draining: no new connections, finishing requests in flight");
        let _ = stop.send(true);
        for worker in workers {
            match worker {
                Ok(done) => {
                    let _ = done.await;
                }
                Err(error) => tracing::error!(%error, "a worker thread could not start"),
            }
        }
    } else if let Some(socket) = sockets.pop() {
        let drain = public.accept(socket, &service, shutdown).await;
        health.start_draining();
        tracing::info!(grace = ?settings.shutdown_grace, "draining: no new connections, finishing requests in flight");
        public.finish(drain).await;
    }
    admin.abort();
    tracing::info!("stopped");
}

/// The public service stack, as each worker needs it: shared by its connections ([`Shared`]).
trait PublicService:
    tower::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future: Send>
    + Clone
    + Unpin
    + Send
    + Sync
    + 'static
{
}

impl<S> PublicService for S where
    S: tower::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future: Send>
        + Clone
        + Unpin
        + Send
        + Sync
        + 'static
{
}

/// The public service stack as hyper calls it: shared by the connections, cloned per request
/// (tower services take `&mut self`; the stack's clone is a few reference counts). Shared, not
/// held by each connection: the stack is ~300 bytes that every connection's task, idle or not,
/// would otherwise carry (twice, as the argument and the local).
struct Shared<S> {
    stack: Arc<S>,
    /// The connection's peer, given to requests when the config serving needs it.
    peer: IpAddr,
    live: Arc<Live>,
}

impl<S: PublicService> hyper::service::Service<Request<Incoming>> for Shared<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = tower::util::Oneshot<S, Request<Incoming>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        if self.live.needs_peer() {
            request.extensions_mut().insert(PeerAddr(self.peer));
        }
        tower::ServiceExt::oneshot(S::clone(&self.stack), request)
    }
}

/// How the public port's connections are served, on one runtime or on each worker's.
struct Public {
    live: Arc<Live>,
    http: Arc<Http>,
    limits: Limits,
    max_connections: usize,
    /// Shared by every worker: `max_connections` holds for the process.
    connections: Arc<Semaphore>,
    open_connections: Option<Gauge>,
    grace: Duration,
}

impl Public {
    /// Accepts on `socket` until `shutdown`, on the current runtime; gives back the drain of
    /// the connections it accepted.
    async fn accept<S: PublicService>(
        &self,
        socket: TcpListener,
        service: &S,
        shutdown: impl Future<Output = ()>,
    ) -> Drain {
        let drain = Drain::new();
        let listener = Listener {
            socket,
            http: Arc::clone(&self.http),
            limits: self.limits,
            max_connections: self.max_connections,
            connections: Arc::clone(&self.connections),
            open_connections: self.open_connections.clone(),
        };
        let stack = Arc::new(service.clone());
        let live = &self.live;
        let shared =
            |peer: SocketAddr| Shared { stack: Arc::clone(&stack), peer: peer.ip(), live: Arc::clone(live) };
        listener.accept(&drain, shared, shutdown).await;
        drain
    }

    /// Lets the accepted connections finish their requests, for at most `shutdown_grace`.
    async fn finish(&self, drain: Drain) {
        if tokio::time::timeout(self.grace, drain.drain()).await.is_err() {
            tracing::warn!("shutdown_grace elapsed with requests still in flight; closing them");
        }
    }

    /// Starts worker `index`'s thread: its own runtime serving `socket` until `stopped` turns
    /// true, then draining. The receiver resolves when the thread is done.
    fn spawn_worker<S: PublicService>(
        &self,
        index: usize,
        socket: TcpListener,
        service: S,
        mut stopped: watch::Receiver<bool>,
    ) -> std::io::Result<oneshot::Receiver<()>> {
        let socket = socket.into_std()?;
        let public = Public {
            live: Arc::clone(&self.live),
            http: Arc::clone(&self.http),
            connections: Arc::clone(&self.connections),
            open_connections: self.open_connections.clone(),
            ..*self
        };
        let (done, finished) = oneshot::channel();
        std::thread::Builder::new().name(format!("fanout-worker-{index}")).spawn(move || {
            downstream::set_worker(index + 1);
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(error) => return tracing::error!(%error, index, "worker runtime failed to start"),
            };
            runtime.block_on(async move {
                let socket = match TcpListener::from_std(socket) {
                    Ok(socket) => socket,
                    Err(error) => return tracing::error!(%error, index, "worker listener failed"),
                };
                let stop = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                let drain = public.accept(socket, &service, stop).await;
                public.finish(drain).await;
            });
            let _ = done.send(());
        })?;
        Ok(finished)
    }
}

/// A bound listener and how its connections are served.
pub struct Listener {
    socket: TcpListener,
    http: Arc<Http>,
    limits: Limits,
    max_connections: usize,
    /// Permits for open connections (`max_connections` of them), possibly shared by listeners.
    connections: Arc<Semaphore>,
    /// The gauge of open connections, if this listener's are counted.
    open_connections: Option<Gauge>,
}

impl Listener {
    /// Accepts connections until `shutdown` resolves (then closes the socket), at most
    /// `max_connections` open at once (more are closed at accept), each served by
    /// [`connection::serve`] with a service from `service` and a watch on `drain`.
    pub async fn accept<S>(
        self,
        drain: &Drain,
        service: impl Fn(SocketAddr) -> S,
        shutdown: impl Future<Output = ()>,
    ) where
        S: connection::ConnService,
    {
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.socket.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
                () = &mut shutdown => return,
            };
            let Ok(permit) = Arc::clone(&self.connections).try_acquire_owned() else {
                tracing::debug!(
                    max = self.max_connections,
                    "connection limit reached; closing new connection"
                );
                continue;
            };
            let served =
                connection::serve(stream, Arc::clone(&self.http), service(peer), self.limits, drain.watch());
            let open = self.open_connections.clone().map(InFlight::new);
            tokio::spawn(async move {
                let _counted = (permit, open);
                served.await;
            });
        }
    }
}

/// The protocols a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    /// HTTP/1.1 only (the admin listener).
    Http1,
    /// HTTP/1.1 and h2 with prior knowledge (the public listener).
    Http1AndH2c,
}

/// The HTTP/1.1 settings, applied to hyper's builder and to hyper_util's (same methods):
/// bounded heads (more than [`MAX_HEADERS`] headers or [`MAX_HEAD_BYTES`]: 431; hyper checks
/// the size only while a head is incomplete, so [`connection`] also never lets a head's reads
/// go past it). hyper's own head timer is off: [`connection`] enforces `header_read_timeout`
/// (hyper's starts when the previous answer is sent, so it closes idle keep-alive
/// connections); the timer stays installed (without one hyper silently disables its timeouts).
macro_rules! http1_settings {
    ($builder:expr) => {
        $builder
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_headers(MAX_HEADERS)
            .max_buf_size(MAX_HEAD_BYTES)
            .keep_alive(true)
    };
}

/// How a listener speaking `protocols` serves its connections: HTTP/1.1 with hyper's
/// connection (taken apart between requests, see [`connection`]), h2c with [`http_builder`].
pub fn http(protocols: Protocols) -> Http {
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1_settings!(http1);
    Http { http1, h2c: (protocols == Protocols::Http1AndH2c).then(|| http_builder(protocols)) }
}

/// hyper_util's auto-detecting builder: the HTTP/1.1 settings of [`http1_settings`], h2 with
/// a keep-alive PING every 20 s and at most 256 concurrent streams. Serves the public
/// listener's h2c connections; public for the request-head fuzz target, which serves it over
/// in-memory connections.
pub fn http_builder(protocols: Protocols) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    http1_settings!(builder.http1());
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .max_concurrent_streams(256);
    match protocols {
        Protocols::Http1 => builder.http1_only(),
        Protocols::Http1AndH2c => builder,
    }
}
