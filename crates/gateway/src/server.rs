//! The servers: bind both listeners, accept connections on each under its connection cap
//! (public: `max_connections`, admin: `admin_max_connections`), hand each connection to
//! [`crate::connection`] (deadlines, bounded heads; public: HTTP/1.1 and h2c with the
//! [`crate::service::stack`], admin: HTTP/1.1 with [`crate::admin`]), and on shutdown drain:
//! `/readyz` turns 503, the public listener closes, in-flight requests get `shutdown_grace` to
//! finish.

use crate::admin::{Admin, Health};
use crate::connection::{self, Drain, Http, Limits, MAX_HEAD_BYTES};
use crate::plan::Plan;
use crate::problem::Body;
use crate::reload::Live;
use crate::service;
use crate::telemetry::metrics::{self, Exporter, InFlight};
use ::metrics::Gauge;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Most headers accepted in one request head (more: 431).
const MAX_HEADERS: usize = 100;

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

/// Both listeners, bound and ready.
#[derive(Debug)]
pub struct Listeners {
    public: TcpListener,
    admin: TcpListener,
}

impl Listeners {
    /// Binds the public and admin addresses of `plan`.
    pub async fn bind(plan: &Plan) -> Result<Self, ServerError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })
        };
        Ok(Self { public: bind(plan.server.listen).await?, admin: bind(plan.server.admin_listen).await? })
    }

    /// The bound (public, admin) addresses (ports resolved when configured as 0).
    pub fn addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        (self.public.local_addr().ok(), self.admin.local_addr().ok())
    }
}

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
    let health = Arc::new(Health::new(Arc::clone(&live)));
    let admin_listener = Listener {
        socket: listeners.admin,
        http: Arc::new(http(Protocols::Http1)),
        limits: Limits { max_age: None, ..Limits::of(&settings) },
        max_connections: settings.admin_max_connections,
        open_connections: None,
    };
    let admin_service = Admin::new(Arc::clone(&health), exporter.map(Arc::new));
    // Admin connections are never drained: the task is dropped at exit, closing them.
    let admin = tokio::spawn(async move {
        admin_listener.accept(&Drain::new(), || admin_service.clone(), std::future::pending()).await;
    });
    let drain = Drain::new();
    let service = service::stack(live, &settings);
    let public = Listener {
        socket: listeners.public,
        http: Arc::new(http(Protocols::Http1AndH2c)),
        limits: Limits::of(&settings),
        max_connections: settings.max_connections,
        open_connections: Some(metrics::open_connections()),
    };
    public.accept(&drain, || TowerToHyperService::new(service.clone()), shutdown).await;
    health.start_draining();
    tracing::info!(grace = ?settings.shutdown_grace, "draining: no new connections, finishing requests in flight");
    if tokio::time::timeout(settings.shutdown_grace, drain.drain()).await.is_err() {
        tracing::warn!("shutdown_grace elapsed with requests still in flight; closing them");
    }
    admin.abort();
    tracing::info!("stopped");
}

/// A bound listener and how its connections are served.
pub struct Listener {
    socket: TcpListener,
    http: Arc<Http>,
    limits: Limits,
    max_connections: usize,
    /// The gauge of open connections, if this listener's are counted.
    open_connections: Option<Gauge>,
}

impl Listener {
    /// Accepts connections until `shutdown` resolves (then closes the socket), at most
    /// `max_connections` open at once (more are closed at accept), each served by
    /// [`connection::serve`] with a service from `service` and a watch on `drain`.
    pub async fn accept<S>(self, drain: &Drain, service: impl Fn() -> S, shutdown: impl Future<Output = ()>)
    where
        S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
            + Unpin
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let connections = Arc::new(Semaphore::new(self.max_connections));
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                accepted = self.socket.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
                () = &mut shutdown => return,
            };
            let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                tracing::debug!(
                    max = self.max_connections,
                    "connection limit reached; closing new connection"
                );
                continue;
            };
            let served =
                connection::serve(stream, Arc::clone(&self.http), service(), self.limits, drain.watch());
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
