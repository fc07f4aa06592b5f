//! The admin server on `server.admin_listen`: `/healthz` (the process is alive), `/readyz`
//! (a plan is loaded and the gateway is not draining; 503 from the moment SIGTERM arrives; the
//! body names the config version serving and the last reload's result) and `/metrics`
//! (Prometheus text, unless `telemetry.metrics: false`), `/openapi.json` and `/openapi.yaml`.
//! Never on the public port, and never to be exposed outside the pod: the document lists the
//! backends and which calls are required. Connections are served like the public listener's
//! (same head limits and deadlines, see [`crate::connection`]), HTTP/1.1 only, at most
//! `server.admin_max_connections` at once.

use crate::Body;
use crate::openapi;
use crate::problem::Problem;
use crate::reload::Live;
use crate::telemetry::metrics::Exporter;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What the admin endpoints report on: whether the gateway is draining (`/readyz`), and the
/// live config (its version, its OpenAPI document).
#[derive(Debug)]
pub struct AdminState {
    draining: AtomicBool,
    live: Arc<Live>,
}

impl AdminState {
    /// Reports on the `live` config; not draining.
    pub fn new(live: Arc<Live>) -> Self {
        Self { draining: AtomicBool::new(false), live }
    }

    /// Marks the gateway as draining: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// The admin endpoints as a service (one clone per connection); `/metrics` when an `exporter`
/// is given.
#[derive(Debug, Clone)]
pub struct Admin {
    health: Arc<AdminState>,
    exporter: Option<Arc<Exporter>>,
}

impl Admin {
    /// Reports on `health`, and serves `exporter`'s metrics if any.
    pub fn new(health: Arc<AdminState>, exporter: Option<Arc<Exporter>>) -> Self {
        Self { health, exporter }
    }
}

impl<B> hyper::service::Service<Request<B>> for Admin {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn call(&self, request: Request<B>) -> Self::Future {
        std::future::ready(Ok(respond(&self.health, self.exporter.as_deref(), &request)))
    }
}

/// The admin paths; each answers GET and HEAD.
const PATHS: [&str; 5] = ["/healthz", "/readyz", "/metrics", "/openapi.json", "/openapi.yaml"];

fn respond<B>(health: &AdminState, exporter: Option<&Exporter>, request: &Request<B>) -> Response<Body> {
    let path = request.uri().path();
    if PATHS.contains(&path) && request.method() != Method::GET && request.method() != Method::HEAD {
        return Problem::MethodNotAllowed.response();
    }
    match path {
        "/metrics" if let Some(exporter) = exporter => {
            let mut response = Response::new(Full::new(Bytes::from(exporter.render())));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            response
        }
        "/healthz" => json(StatusCode::OK, r#"{"status":"ok"}"#.into()),
        "/openapi.json" => {
            json(StatusCode::OK, openapi::document(&health.live.current().plan).to_string().into())
        }
        "/openapi.yaml" => {
            let yaml = openapi::to_yaml(&openapi::document(&health.live.current().plan));
            let mut response = Response::new(Full::new(Bytes::from(yaml)));
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
            response
        }
        "/readyz" => {
            let (status, word) = match health.is_draining() {
                true => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
                false => (StatusCode::OK, "ready"),
            };
            let last = health.live.last_outcome().map_or("none", |outcome| outcome.as_str());
            let version = health.live.current().version;
            let body =
                format!(r#"{{"status":"{word}","config_version":"{version}","last_reload":"{last}"}}"#);
            json(status, body.into())
        }
        _ => Problem::NotFound.response(),
    }
}

fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
