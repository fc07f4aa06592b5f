//! OpenTelemetry wiring — the one module that changes when the OpenTelemetry crates do: the
//! OTLP/HTTP (protobuf) span exporter with its batch processor and resource, the `tracing` layer
//! that turns the `request` and `backend_call` spans into OpenTelemetry spans, the sampling
//! decision, and W3C trace context (`traceparent`/`tracestate`) taken from inbound requests and
//! written into backend requests. Nothing here runs unless `telemetry.otlp_endpoint` is set.
//!
//! Sampling is decided here, once per request, before its spans exist, by
//! `telemetry.sampling_ratio`; a caller's sampled flag (in a valid `traceparent`) decides instead
//! only with `telemetry.trust_client_sampling` (else any client could have its requests
//! exported, with trace ids it chose). The caller's trace id is continued either way. There are two subscribers: the
//! global one only writes log lines, and a second one ([`dispatch`]) writes the same log lines
//! and also exports spans. A sampled request runs entirely under the second (its span is created
//! there and its future is polled there); an unsampled one never touches the OpenTelemetry
//! layer, so it costs exactly what it costs with tracing off. The SDK sampler then keeps every
//! span it sees.

use super::trace_context::{MAX_TRACESTATE, TRACEPARENT, TRACESTATE, traceparent};
use crate::config::TelemetrySettings;
use http::{HeaderMap, HeaderValue};
use opentelemetry::KeyValue;
use opentelemetry::global;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::HeaderExtractor;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use tracing::Dispatch;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;

/// Why trace export could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the OTLP exporter: {0}")]
pub struct OtelError(#[from] opentelemetry_otlp::ExporterBuildError);

/// The running tracer provider; [`Tracing::shutdown`] flushes the last spans.
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Starts the exporter when `telemetry.otlp_endpoint` is set. Call outside the async
    /// runtime: the exporter's blocking HTTP client runs on the batch processor's own thread.
    /// `OTEL_*` variables the SDK knows (resource attributes, batch settings, headers) apply.
    pub fn start(settings: &TelemetrySettings) -> Result<Option<Self>, OtelError> {
        let Some(endpoint) = &settings.otlp_endpoint else { return Ok(None) };
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .build()?;
        let resource = Resource::builder()
            .with_service_name("fanout")
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::AlwaysOn)
            .with_resource(resource)
            .build();
        global::set_text_map_propagator(TraceContextPropagator::new());
        Ok(Some(Self { provider }))
    }

    /// The `tracing` layer that exports `info` spans (it goes into the [`dispatch`] subscriber
    /// only, so it sees sampled requests only).
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        // Only the attributes fanout sets: no source location, thread, target or busy/idle time
        // (each costs per span, in the layer and again in the exporter's encoding).
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("fanout"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            .with_filter(LevelFilter::INFO)
    }

    /// Flushes pending spans and stops the exporter.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("fanout: flushing spans at shutdown failed: {error}");
        }
    }
}

/// The subscriber sampled requests run under.
static TRACED: OnceLock<Dispatch> = OnceLock::new();

/// Installs the subscriber sampled requests run under (the first call wins).
pub fn set_dispatch(dispatch: Dispatch) {
    let _ = TRACED.set(dispatch);
}

/// The subscriber sampled requests run under; `None` when tracing is off.
pub fn dispatch() -> Option<&'static Dispatch> {
    TRACED.get()
}

/// A future polled *and dropped* with `dispatch` as the default subscriber. Dropping matters:
/// when a span closes, the registry closes its parent through the *default* subscriber, so a
/// sampled request's spans must never be dropped under the global one (tracing's
/// `WithDispatch` only covers polls).
pub struct Exporting<F> {
    inner: Option<F>,
    dispatch: &'static Dispatch,
}

/// Runs `future` under `dispatch`, the exporting subscriber (see [`Exporting`]).
pub fn exporting<F: Future + Unpin>(dispatch: &'static Dispatch, future: F) -> Exporting<F> {
    Exporting { inner: Some(future), dispatch }
}

impl<F: Future + Unpin> Future for Exporting<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _default = tracing::dispatcher::set_default(self.dispatch);
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll(cx),
            None => Poll::Pending,
        }
    }
}

impl<F> Drop for Exporting<F> {
    fn drop(&mut self) {
        let _default = tracing::dispatcher::set_default(self.dispatch);
        drop(self.inner.take());
    }
}

/// Whether a request is sampled (traced and exported): with `trust_client`, the caller's sampled flag when it
/// sent a valid `traceparent`; otherwise a draw against `ratio`.
pub fn sampled(headers: &HeaderMap, ratio: f64, trust_client: bool) -> bool {
    match traceparent(headers) {
        Some(parent) if trust_client => parent.sampled,
        _ => downstream::random_unit() < ratio,
    }
}

/// The trace id of a traced request's exported span.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let id = context.span().span_context().trace_id();
    (id != opentelemetry::trace::TraceId::INVALID).then(|| id.to_string())
}

/// Makes `span` a child of the caller's span when `headers` carry a valid `traceparent`.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    if traceparent(headers).is_none() {
        return;
    }
    let parent = global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(headers)));
    // Fails only when the span is not recorded (e.g. disabled); nothing to join then.
    let _ = span.set_parent(parent);
}

/// Writes `span`'s context into `headers` as `traceparent` (and `tracestate` when the trace
/// has one of at most 512 bytes; the SDK has already checked its form). Formatted by hand: the
/// SDK propagator costs ~7k instructions per header.
pub fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    let context = span.context();
    let span_ref = context.span();
    let span_context = span_ref.span_context();
    if !span_context.is_valid() {
        return;
    }
    let mut value = String::with_capacity(55);
    value.push_str("00-");
    push_hex(&mut value, &span_context.trace_id().to_bytes());
    value.push('-');
    push_hex(&mut value, &span_context.span_id().to_bytes());
    value.push('-');
    push_hex(&mut value, &[span_context.trace_flags().to_u8()]);
    if let Ok(header) = HeaderValue::try_from(value) {
        headers.insert(TRACEPARENT, header);
    }
    let state = span_context.trace_state().header();
    if !state.is_empty()
        && state.len() <= MAX_TRACESTATE
        && let Ok(header) = HeaderValue::try_from(state)
    {
        headers.insert(TRACESTATE, header);
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_traceparent(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn a_trusted_callers_flag_decides_and_malformed_headers_fall_back_to_the_ratio() {
        let flagged = with_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        let unflagged = with_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00");
        assert!(sampled(&flagged, 0.0, true));
        assert!(!sampled(&unflagged, 1.0, true));
        assert!(sampled(&with_traceparent("garbage"), 1.0, true));
        assert!(!sampled(&with_traceparent("garbage"), 0.0, true));
    }

    #[test]
    fn an_untrusted_callers_flag_is_ignored() {
        let flagged = with_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        let unflagged = with_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00");
        assert!(!sampled(&flagged, 0.0, false));
        assert!(sampled(&unflagged, 1.0, false));
    }

    #[test]
    fn the_ratio_is_honoured() {
        let headers = HeaderMap::new();
        let kept = (0..20_000).filter(|_| sampled(&headers, 0.1, false)).count();
        assert!((1_600..2_400).contains(&kept), "{kept} of 20000 sampled at 0.1");
    }
}
