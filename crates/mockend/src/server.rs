//! The mock HTTP server: binding, the accept loop, one task per connection
//! (HTTP/1.1 and h2c, or both over TLS) and the hyper handler that records and
//! answers.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use socket2::SockRef;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

use crate::error::MockError;
use crate::record::{Recorded, Recorder};
use crate::route::{Outcome, Routes};
use crate::spec::ServiceSpec;
use crate::tls::ServerIdentity;
use std::future::Future;
use tokio_rustls::TlsAcceptor;

/// Pause after a failed `accept` (e.g. no file descriptor left).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// A running simulated service. Dropping it stops the server and aborts its
/// connections.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    https: bool,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

/// State shared by the handle, the accept loop and every handler.
#[derive(Debug)]
struct Shared {
    routes: Routes,
    recorder: Recorder,
}

/// A second handle on a connection's socket, used to abort it with an RST.
#[derive(Debug)]
struct ResetHandle {
    socket: std::net::TcpStream,
    abort: Notify,
}

/// Returned to hyper by a handler whose route resets the connection.
#[derive(Debug, thiserror::Error)]
#[error("connection reset on purpose")]
struct Reset;

type Answer = Result<Response<Full<Bytes>>, Reset>;

impl MockServer {
    /// Validates `spec`, binds `spec.listen` (or `127.0.0.1:0`) and serves
    /// it on the current tokio runtime.
    pub async fn spawn(spec: ServiceSpec) -> Result<Self, MockError> {
        Self::start(spec, None).await
    }

    /// Like [`MockServer::spawn`], over TLS with `identity`'s certificate
    /// (HTTP/1.1 or h2 by ALPN); [`MockServer::url`] then starts with
    /// `https://localhost:`, the name to issue the certificate for.
    pub async fn spawn_tls(spec: ServiceSpec, identity: &ServerIdentity) -> Result<Self, MockError> {
        Self::start(spec, Some(TlsAcceptor::from(identity.server_config()?))).await
    }

    async fn start(spec: ServiceSpec, tls: Option<TlsAcceptor>) -> Result<Self, MockError> {
        let routes = Routes::compile(&spec.routes)?;
        let listen = spec.listen.as_deref().unwrap_or("127.0.0.1:0");
        let bind_error = |source| MockError::Bind { addr: listen.to_owned(), source };
        let listener = TcpListener::bind(listen).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let https = tls.is_some();
        let shared = Arc::new(Shared { routes, recorder: Recorder::default() });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared), tls));
        Ok(Self { addr, https, shared, accept })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL of the server, e.g. `http://127.0.0.1:7101` (over TLS:
    /// `https://localhost:7101`).
    pub fn url(&self) -> String {
        if self.https {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// The requests received so far, in arrival order (at most the last
    /// [`crate::RECORD_LIMIT`]).
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.recorder.requests()
    }

    /// How many handlers were dropped before completing, i.e. whose client
    /// went away first.
    pub fn cancelled(&self) -> usize {
        self.shared.recorder.cancelled()
    }

    /// The largest number of requests that were in flight at once.
    pub fn peak_in_flight(&self) -> usize {
        self.shared.recorder.peak_in_flight()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Accepts connections until aborted; aborting it drops the connection
/// tasks with it.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true);
    let builder = Arc::new(builder);
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        if stream.set_nodelay(true).is_err() {
            continue;
        }
        connections.spawn(serve(stream, Arc::clone(&builder), Arc::clone(&shared), tls.clone()));
    }
}

/// Serves one connection until it closes or a handler resets it; with `tls`,
/// after the handshake (a failed one closes the connection).
async fn serve(
    stream: TcpStream,
    builder: Arc<Builder<TokioExecutor>>,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
) {
    let (stream, reset) = if shared.routes.has_reset() {
        match ResetHandle::split(stream) {
            Ok((stream, reset)) => (stream, Some(Arc::new(reset))),
            Err(_) => return,
        }
    } else {
        (stream, None)
    };
    let service = {
        let reset = reset.clone();
        service_fn(move |request| handle(Arc::clone(&shared), reset.clone(), request))
    };
    match tls {
        None => drive(builder.serve_connection(TokioIo::new(stream), service), reset).await,
        Some(tls) => {
            if let Ok(stream) = tls.accept(stream).await {
                drive(builder.serve_connection(TokioIo::new(stream), service), reset).await;
            }
        }
    }
}

/// Runs a connection until it ends or its reset handle fires.
async fn drive<E>(connection: impl Future<Output = Result<(), E>>, reset: Option<Arc<ResetHandle>>) {
    // Connection errors (client gone, bad request) are of no interest here.
    match reset {
        Some(reset) => {
            tokio::select! {
                _ = connection => {}
                () = reset.abort.notified() => {}
            }
        }
        None => {
            let _ = connection.await;
        }
    }
}

/// The path that answers what the service received (and is not recorded).
const STATS_PATH: &str = "/_mockend/requests";

/// Records `request`, then answers it as its route says.
async fn handle(shared: Arc<Shared>, reset: Option<Arc<ResetHandle>>, request: Request<Incoming>) -> Answer {
    if request.uri().path() == STATS_PATH {
        let stats = serde_json::json!({
            "requests": shared.recorder.total(),
            "outage_requests": shared.routes.outage_requests(),
        });
        return Ok(json(StatusCode::OK, Bytes::from(stats.to_string())));
    }
    let in_flight = shared.recorder.begin(&request);
    let answer = match shared.routes.answer(request.uri().path()).await {
        Outcome::Respond(status, body, headers) => {
            let mut response = json(status, body);
            response.headers_mut().extend(headers.into_iter().flatten());
            Ok(response)
        }
        Outcome::Hang => std::future::pending::<Answer>().await,
        Outcome::Reset => {
            if let Some(reset) = reset {
                reset.trigger();
            }
            Err(Reset)
        }
    };
    in_flight.finish();
    answer
}

fn json(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

impl ResetHandle {
    /// Keeps a duplicate of `stream`'s socket next to the stream itself.
    fn split(stream: TcpStream) -> io::Result<(TcpStream, Self)> {
        let stream = stream.into_std()?;
        let socket = stream.try_clone()?;
        let reset = Self { socket, abort: Notify::new() };
        Ok((TcpStream::from_std(stream)?, reset))
    }

    /// Makes closing the socket send an RST, then has the connection task
    /// drop the connection (and so close it).
    fn trigger(&self) {
        // Without zero linger the close still ends the connection, with a FIN.
        let _ = SockRef::from(&self.socket).set_linger(Some(Duration::ZERO));
        self.abort.notify_one();
    }
}
