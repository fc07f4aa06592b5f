//! Telemetry: logging setup here — `tracing` events and spans written as JSON lines
//! (production) or pretty text (development), filtered by `RUST_LOG` when set, else by
//! `telemetry.log_level` — OpenTelemetry traces in [`otel`], Prometheus metrics in [`metrics`]
//! and the runtime stall detector in [`stall`].

pub mod metrics;
pub mod otel;
pub mod stall;

use crate::config::{LogFormat, TelemetrySettings};
use otel::Tracing;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// Installs the global subscriber (later calls are ignored): log lines filtered by the log
/// level, and, with `tracing`, every `info` span exported whatever the log level.
pub fn init(settings: &TelemetrySettings, tracing: Option<&Tracing>) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::builder().parse(&settings.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = tracing_subscriber::fmt::layer().with_target(false);
    let lines: Box<dyn Layer<Registry> + Send + Sync> = match settings.log_format {
        LogFormat::Json => {
            Box::new(lines.json().flatten_event(true).with_current_span(true).with_span_list(false))
        }
        LogFormat::Pretty => Box::new(lines),
    };
    let spans = tracing.map(Tracing::layer);
    let _ = tracing_subscriber::registry().with(lines.with_filter(filter)).with(spans).try_init();
}
