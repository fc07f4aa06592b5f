//! Telemetry: logging setup here — `tracing` events and spans written as JSON lines
//! (production) or pretty text (development), filtered by `RUST_LOG` when set, else by
//! `telemetry.log_level` — Prometheus metrics in [`metrics`] and the runtime stall detector in
//! [`stall`].

pub mod metrics;
pub mod stall;

use crate::config::{LogFormat, TelemetrySettings};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; later calls are ignored.
pub fn init(settings: &TelemetrySettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::builder().parse(&settings.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let _ = match settings.log_format {
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init()
        }
        LogFormat::Pretty => builder.try_init(),
    };
}
