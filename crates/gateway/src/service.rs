//! The per-request service and its middleware, stacked in one place ([`stack`]), outermost
//! first:
//! 1. [`SetRequestId`]: keep the client's `X-Request-Id` when it is usable (at most 128
//!    characters of `[A-Za-z0-9._:-]`), else generate one, and echo it on every response
//!    (one allocation per request: tower-http's `SetRequestId` and `PropagateRequestId` made
//!    eight, mostly request and response extensions nothing here reads);
//! 2. with `server.cors`: `Timing-Allow-Origin` for a shared answer, then tower-http's CORS
//!    layer (preflights answered here, before routing) — see [`crate::cors`];
//! 3. [`Gateway`]: the `request` span, one `request` log line ([`access`]) and the request
//!    metrics per answer, `Server-Timing` on every answer (an endpoint's calls, `gateway` and
//!    `total`; `total` alone on the others), load shedding at `max_in_flight` (503 + `Retry-After`),
//!    request-target and body limits (414, 413), any `Transfer-Encoding` body (400, connection
//!    closed: this covers `Content-Length` + `Transfer-Encoding`), routing (404, 405), the endpoint.

use crate::Body;
use crate::config::ServerSettings;
use crate::cors;
use crate::endpoint::{self, Served, X_REQUEST_ID};
use crate::limits::MAX_URI_LEN;
use crate::plan::Plan;
use crate::problem::Problem;
use crate::reload::Live;
use crate::respond::{self, SERVER_TIMING};
use crate::telemetry::access::{self, RequestLine};
use crate::telemetry::metrics::PlanMetrics;
use crate::telemetry::{otel, stall, trace_context};
use bytes::Bytes;
use downstream::Execution;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderValue, Method, Request, Response};
use std::convert::Infallible;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Semaphore;
use tower::{Service, ServiceBuilder};
use tracing::{Instrument, field};

/// Longest inbound `X-Request-Id` kept (longer ones are replaced).
const MAX_REQUEST_ID_LEN: usize = 128;
/// Span name of one inbound request.
pub const REQUEST_SPAN: &str = "request";
/// The exported name of a request span that matched no route: one fixed name, so clients
/// cannot invent span names (OpenTelemetry semantic conventions' fallback).
pub const UNMATCHED_SPAN_NAME: &str = "HTTP";
/// The methods spans, attributes and log lines name as they are (OpenTelemetry semantic
/// conventions); any other is [`OTHER_METHOD`].
const KNOWN_METHODS: [&str; 9] =
    ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"];
/// How a method outside [`KNOWN_METHODS`] is named.
pub const OTHER_METHOD: &str = "_OTHER";

/// Builds the full service stack over the `live` config, with the `server` settings the process
/// started with (`max_in_flight`, `cors`).
pub fn stack<B: Send + 'static>(
    live: Arc<Live>,
    server: &ServerSettings,
) -> impl Service<Request<B>, Response = Response<Body>, Error = Infallible, Future: Send> + Clone + Send + 'static
{
    let in_flight = Arc::new(Semaphore::new(server.max_in_flight));
    let ids = RequestIds::new();
    ServiceBuilder::new()
        .layer_fn(move |inner| SetRequestId { inner, ids: ids.clone() })
        .map_response(cors::timing_allow_origin::<Body>)
        .option_layer(server.cors.as_ref().map(cors::layer))
        .service(Gateway { live, in_flight })
}

/// The innermost service: limits, routing and the endpoint.
#[derive(Clone)]
pub struct Gateway {
    live: Arc<Live>,
    in_flight: Arc<Semaphore>,
}

impl<B: Send + 'static> Service<Request<B>> for Gateway {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The request keeps this config to the end, even if a reload swaps in another.
        let serving = self.live.current();
        let permit = Arc::clone(&self.in_flight).try_acquire_owned();
        let telemetry = &serving.plan.telemetry;
        // A sampled request runs under the subscriber that exports spans; the others never
        // reach it.
        let traced = otel::dispatch().filter(|_| {
            otel::sampled(request.headers(), telemetry.sampling_ratio, telemetry.trust_client_sampling)
        });
        let sampled = traced.is_some();
        // Decided here, under the global subscriber: a sampled request's subscriber would take
        // any `info` event (its OpenTelemetry layer wants them all).
        let logged = access::enabled();
        let method = method_label(request.method());
        let request_id = request.headers().get(X_REQUEST_ID);
        let id = request_id.and_then(|v| v.to_str().ok()).unwrap_or_default();
        let (span, trace_id) = match traced {
            Some(dispatch) => {
                // An exported span is named at creation (`GET /api/page/{id}`): it cannot be
                // renamed once started, so the route is looked up here as well. Its trace id and,
                // at the end, its status are recorded as span attributes.
                let route = serving.plan.route(request.uri().path()).map(|(e, _)| &*e.route);
                let span = tracing::dispatcher::with_default(dispatch, || {
                    tracing::info_span!(
                        REQUEST_SPAN,
                        otel.name = route.unwrap_or(UNMATCHED_SPAN_NAME),
                        otel.kind = "server",
                        http.request.method = method,
                        http.route = route,
                        http.response.status_code = field::Empty,
                        request_id = id,
                        trace_id = field::Empty,
                    )
                });
                otel::continue_trace(&span, request.headers());
                let trace_id = otel::trace_id(&span);
                if let Some(trace_id) = &trace_id {
                    span.record("trace_id", trace_id.as_str());
                }
                (span, trace_id)
            }
            None => {
                // A log-only span: just what its lines show, every field given here and none
                // declared for later. Recording a field makes the JSON log formatter parse and
                // rewrite them all, and a backend call records its status on the current span,
                // which is this one when the call's own span is off (`debug`, untraced).
                let caller_trace = telemetry
                    .otlp_endpoint
                    .is_some()
                    .then(|| trace_context::traceparent(request.headers()).map(|parent| parent.trace_id))
                    .flatten();
                let span = tracing::info_span!(
                    REQUEST_SPAN,
                    http.request.method = method,
                    request_id = id,
                    trace_id = caller_trace,
                );
                (span, caller_trace.filter(|_| logged).map(str::to_owned))
            }
        };
        let request_id = request_id.filter(|_| logged).cloned();
        let watched = span.clone();
        let future = async move {
            let started = tokio::time::Instant::now();
            let (plan, metrics) = (&serving.plan, &serving.metrics);
            let _active = metrics.request_started();
            let Handled { mut response, endpoint, execution, calls } = match permit {
                Ok(_permit) => handle(plan, metrics, sampled, logged, request).await,
                Err(_) => Handled::unrouted(Problem::Overloaded.response()),
            };
            let elapsed = started.elapsed();
            // Every answer's `Server-Timing`, here only: an endpoint's calls with `total`.
            let ran = endpoint.and_then(|index| plan.endpoints.get(index)).zip(execution.as_ref());
            if let Some(timing) = respond::timing(ran, elapsed) {
                response.headers_mut().insert(SERVER_TIMING, timing);
            }
            drop(execution);
            let status = response.status().as_u16();
            metrics.request(endpoint, status, elapsed);
            if sampled {
                tracing::Span::current().record("http.response.status_code", i64::from(status));
            }
            if logged {
                RequestLine {
                    status,
                    duration: elapsed,
                    route: endpoint.and_then(|index| plan.endpoints.get(index)).map(|e| &*e.route),
                    calls: calls.as_deref(),
                    method,
                    request_id: request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or_default(),
                    trace_id: trace_id.as_deref(),
                }
                .log();
            }
            Ok(response)
        };
        let watched = stall::watch(future.instrument(span), watched, sampled);
        match traced {
            Some(dispatch) => Box::pin(otel::exporting(dispatch, Box::pin(watched))),
            None => Box::pin(watched),
        }
    }
}

/// The method as spans and log lines name it: a standard method, or `_OTHER` (a client could
/// otherwise put any text, 20 KB of it, into every log line and span).
fn method_label(method: &Method) -> &'static str {
    KNOWN_METHODS.iter().find(|known| **known == method.as_str()).copied().unwrap_or(OTHER_METHOD)
}

/// What came of one request, for its `Server-Timing`, its metrics and its log line.
struct Handled {
    response: Response<Body>,
    /// The index of the endpoint it matched, if any.
    endpoint: Option<usize>,
    /// That endpoint's calls as they ran, if they did.
    execution: Option<Execution>,
    /// Its calls' outcomes (`product:ok price:timeout …`), when the request line is logged.
    calls: Option<String>,
}

impl Handled {
    /// An answer given before any endpoint was matched.
    fn unrouted(response: Response<Body>) -> Self {
        Self { response, endpoint: None, execution: None, calls: None }
    }
}

/// Answers one request; `logged` when its log line is written.
async fn handle<B>(
    plan: &Plan,
    metrics: &PlanMetrics,
    traced: bool,
    logged: bool,
    request: Request<B>,
) -> Handled {
    let (parts, _body) = request.into_parts();
    if parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len()) > MAX_URI_LEN {
        return Handled::unrouted(Problem::UriTooLong(MAX_URI_LEN).response());
    }
    if parts.headers.contains_key(TRANSFER_ENCODING) {
        return Handled::unrouted(Problem::ChunkedBody.response());
    }
    let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > plan.server.max_request_body as u64) {
        return Handled::unrouted(Problem::BodyTooLarge(plan.server.max_request_body).response());
    }
    if plan.telemetry.debug_endpoints
        && let Some(ms) = parts.uri.path().strip_prefix(DEBUG_BLOCK).and_then(|ms| ms.parse::<u64>().ok())
    {
        return Handled::unrouted(block_worker(Duration::from_millis(ms.min(10_000))));
    }
    let Some((endpoint, params)) = plan.route(parts.uri.path()) else {
        return Handled::unrouted(Problem::NotFound.response());
    };
    let matched = Some(endpoint.index);
    if parts.method != Method::GET && parts.method != Method::HEAD {
        let response = Problem::MethodNotAllowed.response();
        return Handled { response, endpoint: matched, execution: None, calls: None };
    }
    let Served { response, execution, calls } =
        endpoint::serve(endpoint, metrics, traced, logged, &params, &parts.uri, parts.headers).await;
    Handled { response, endpoint: matched, execution, calls }
}

/// The test-only route that blocks a worker (`telemetry.debug_endpoints`).
const DEBUG_BLOCK: &str = "/_fanout/debug/block/";

/// Blocks this runtime worker on purpose, as a buggy handler would: what the stall detector
/// exists to catch. Only reachable with `telemetry.debug_endpoints: true`.
fn block_worker(duration: Duration) -> Response<Body> {
    std::thread::sleep(duration);
    let mut response =
        Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"{\"blocked\":true}")));
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The outermost layer: makes sure the request carries a usable `X-Request-Id` (the client's,
/// or a generated one: an unusable one would forward junk to every backend) and puts the same
/// id on the response, unless the response already has one.
#[derive(Clone)]
pub struct SetRequestId<S> {
    inner: S,
    ids: RequestIds,
}

impl<S, B, R> Service<Request<B>> for SetRequestId<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = WithRequestId<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let id = match request.headers().get(X_REQUEST_ID).filter(|id| usable_request_id(id)) {
            Some(id) => id.clone(),
            None => {
                let id = self.ids.next();
                request.headers_mut().insert(X_REQUEST_ID, id.clone());
                id
            }
        };
        WithRequestId { inner: self.inner.call(request), id: Some(id) }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`SetRequestId`].
    pub struct WithRequestId<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F, R, E> Future for WithRequestId<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take()
            && !response.headers().contains_key(X_REQUEST_ID)
        {
            response.headers_mut().insert(X_REQUEST_ID, id);
        }
        Poll::Ready(Ok(response))
    }
}

/// True for an `X-Request-Id` worth keeping: not empty, at most 128 characters of
/// `[A-Za-z0-9._:-]`.
fn usable_request_id(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b))
}

/// Generates request ids: a random 64-bit process prefix and a counter, as 32 hex digits.
#[derive(Clone)]
struct RequestIds {
    prefix: u64,
    counter: Arc<AtomicU64>,
}

impl RequestIds {
    fn new() -> Self {
        Self { prefix: RandomState::new().hash_one(std::process::id()), counter: Arc::new(AtomicU64::new(0)) }
    }

    /// The next id. Its bytes are one shared allocation, so the copies in the forwarded
    /// headers, the response and the log line cost none.
    fn next(&self) -> HeaderValue {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut id = [0u8; 32];
        for (i, digit) in id.iter_mut().enumerate() {
            let word = if i < 16 { self.prefix } else { n };
            let nibble = (word >> (4 * (15 - i % 16))) & 0xf;
            *digit = b"0123456789abcdef"[nibble as usize];
        }
        // Hex digits are a valid header value.
        HeaderValue::from_maybe_shared(Bytes::from_owner(id))
            .unwrap_or_else(|_| HeaderValue::from_static("0"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
