//! The public server: bind both listeners, accept connections under `max_connections`, hand
//! each to [`crate::connection`] (first-byte deadline, idle watchdog, HTTP/1.1 and h2c with the
//! [`crate::service::stack`]), and on shutdown drain: `/readyz` turns 503, the listener
//! closes, in-flight requests get `shutdown_grace` to finish.

use crate::admin::{self, Health};
use crate::connection::{self, Drain, Limits};
use crate::plan::Plan;
use crate::reload::Live;
use crate::service;
use crate::telemetry::metrics::{self, Exporter, InFlight};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Most headers accepted in one request head (more: 431).
const MAX_HEADERS: usize = 100;
/// Largest request head accepted (larger: 431).
const MAX_HEAD_BYTES: usize = 32 * 1024;

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
    let admin = tokio::spawn(admin::serve(
        listeners.admin,
        Arc::clone(&health),
        exporter.map(Arc::new),
        settings.header_read_timeout,
    ));
    let open_connections = metrics::open_connections();
    let drain = Drain::new();
    let builder = Arc::new(http_builder(settings.header_read_timeout));
    let connections = Arc::new(Semaphore::new(settings.max_connections));
    let service = service::stack(live, &settings);
    let limits = Limits {
        first_byte: settings.header_read_timeout,
        idle: settings.header_read_timeout.max(settings.request_timeout),
    };
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listeners.public.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            tracing::debug!("max_connections reached; closing new connection");
            continue;
        };
        let service = TowerToHyperService::new(service.clone());
        let served = connection::serve(stream, Arc::clone(&builder), service, limits, drain.watch());
        let open = InFlight::new(open_connections.clone());
        tokio::spawn(async move {
            let _counted = (permit, open);
            served.await;
        });
    }
    health.start_draining();
    drop(listeners.public);
    tracing::info!(grace = ?settings.shutdown_grace, "draining: no new connections, finishing requests in flight");
    if tokio::time::timeout(settings.shutdown_grace, drain.drain()).await.is_err() {
        tracing::warn!("shutdown_grace elapsed with requests still in flight; closing them");
    }
    admin.abort();
    tracing::info!("stopped");
}

/// HTTP/1.1 and h2c with bounded heads and timers installed (without a timer hyper silently
/// disables `header_read_timeout`). Public for the request-head fuzz target, which serves it
/// over in-memory connections.
pub fn http_builder(header_read_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .max_concurrent_streams(256);
    builder
}
