//! [`RequestTelemetry`]: everything the gateway observes of a request, in one layer outside
//! every layer that can refuse one (so refusals are observed too): the sampling decision (a
//! sampled request's future runs under the exporting subscriber, [`otel`]), the `request`
//! span, the stall watch ([`stall`]), `Server-Timing` on every answer (an endpoint's calls,
//! `gateway` and `total`; `total` alone on the others), the request metrics and the one
//! `request` log line ([`access`]). It takes the config serving now for the request's whole
//! life, and hands the request to the inner layers ([`crate::handle`]) in that scope.

use crate::Body;
use crate::endpoint::X_REQUEST_ID;
use crate::handle::{Handle, Handled, Scope};
use crate::reload::Live;
use crate::respond::{self, SERVER_TIMING};
use crate::telemetry::access::{self, REQUEST_SPAN, RequestLine};
use crate::telemetry::{otel, stall, trace_context};
use http::{Method, Request, Response};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::Service;
use tracing::{Instrument, field};

/// The exported name of a request span that matched no route: one fixed name, so clients
/// cannot invent span names (OpenTelemetry semantic conventions' fallback).
pub const UNMATCHED_SPAN_NAME: &str = "HTTP";
/// The methods spans, attributes and log lines name as they are (OpenTelemetry semantic
/// conventions); any other is [`OTHER_METHOD`].
const KNOWN_METHODS: [&str; 9] =
    ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"];
/// How a method outside [`KNOWN_METHODS`] is named.
pub const OTHER_METHOD: &str = "_OTHER";

/// Observes each request, served by `inner` under the config serving when it arrived.
#[derive(Clone)]
pub struct RequestTelemetry<H> {
    live: Arc<Live>,
    inner: H,
}

impl<H> RequestTelemetry<H> {
    /// Requests served by `inner` under the `live` config.
    pub fn new(live: Arc<Live>, inner: H) -> Self {
        Self { live, inner }
    }
}

impl<B: Send + 'static, H: Handle> Service<Request<B>> for RequestTelemetry<H> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The request keeps this config to the end, even if a reload swaps in another.
        let serving = self.live.current();
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
                // declared for later. A backend call records its status on the current span,
                // which is this one when the call's own span is off (`debug`, untraced): with
                // no such field declared, that record costs nothing (else each would append to
                // the span's stored fields, see `telemetry::span_fields`).
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
        let inner = self.inner.clone();
        let future = async move {
            let started = tokio::time::Instant::now();
            let (plan, metrics) = (&serving.plan, &serving.metrics);
            let _active = metrics.request_started();
            let scope = Scope { plan, metrics, traced: sampled, logged };
            let Handled { mut response, endpoint, execution, calls } = inner.handle(request, &scope).await;
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
