//! OpenTelemetry wiring — the one module that changes when the OpenTelemetry crates do: the
//! OTLP/HTTP (protobuf) span exporter with its batch processor, sampler and resource, the
//! `tracing` layer that turns the `request` and `backend_call` spans into OpenTelemetry spans,
//! and W3C trace-context (`traceparent`/`tracestate`) extraction from inbound requests and
//! injection into backend requests. Nothing here runs unless `telemetry.otlp_endpoint` is set.

use crate::config::TelemetrySettings;
use http::HeaderMap;
use opentelemetry::KeyValue;
use opentelemetry::global;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;

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
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sampling_ratio))))
            .with_resource(resource)
            .build();
        global::set_text_map_propagator(TraceContextPropagator::new());
        Ok(Some(Self { provider }))
    }

    /// The `tracing` layer that exports spans through this provider.
    pub fn layer<S>(&self) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("fanout"))
    }

    /// Flushes pending spans and stops the exporter.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("fanout: flushing spans at shutdown failed: {error}");
        }
    }
}

/// Makes `span` a child of the caller's span when `headers` carry a `traceparent`.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    let parent = global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(headers)));
    // Fails only when the span is not recorded (e.g. disabled); nothing to join then.
    let _ = span.set_parent(parent);
}

/// Writes the current span's context into `headers` as `traceparent`/`tracestate`.
pub fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    let context = span.context();
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers))
    });
}
