//! Telemetry: logging setup here — `tracing` events and spans written as JSON lines
//! (production) or pretty text (development), filtered by `RUST_LOG` when set, else by
//! `telemetry.log_level`, the per-request line in [`access`], span fields kept as JSON by
//! `span_fields.rs` (values written by `json_text.rs`), every line written to stdout through the
//! non-blocking [`writer`] — OpenTelemetry traces in [`otel`], W3C trace context from clients
//! in [`trace_context`], Prometheus metrics in [`metrics`] and the runtime stall detector in
//! [`stall`]. The layer of the inbound stack that uses them for each request is
//! `service/request_telemetry.rs`.

pub mod access;
#[cfg(test)]
mod captured;
mod json_text;
pub mod metrics;
pub mod otel;
mod span_fields;
pub mod stall;
pub mod trace_context;
pub mod writer;

use crate::config::{LogFormat, TelemetrySettings};
use otel::Tracing;
use std::sync::OnceLock;
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The target of the one `request` log line per request (the service module's, as before it
/// was named), so filters such as `gateway::service=warn` keep working.
pub const REQUEST_LOG_TARGET: &str = "gateway::service";

/// The log writer every line goes through, and the line format.
struct Logs {
    writer: writer::LogWriter,
    format: LogFormat,
}

static LOGS: OnceLock<Logs> = OnceLock::new();

/// Starts the log writer and installs the global subscriber, which writes log lines filtered by
/// the log level; call once. With `tracing`, also installs the subscriber sampled requests run
/// under ([`otel::dispatch`]): the same log lines, and every `info` span exported whatever the
/// log level. Hold the returned guard until the last line is logged: dropping it writes the
/// lines still buffered.
pub fn init(settings: &TelemetrySettings, tracing: Option<&Tracing>) -> std::io::Result<writer::Flush> {
    let (writer, flush) = writer::spawn(std::io::stdout(), writer::BUFFER_BYTES)?;
    if let Some(tracing) = tracing {
        let lines = log_lines(settings.log_format, writer.clone()).with_filter(log_filter(settings));
        otel::set_dispatch(Dispatch::new(tracing_subscriber::registry().with(lines).with(tracing.layer())));
    }
    // A global filter (not a per-layer one): a disabled span is then never created at all.
    let _ = tracing_subscriber::registry()
        .with(log_filter(settings))
        .with(log_lines(settings.log_format, writer.clone()))
        .try_init();
    let _ = LOGS.set(Logs { writer, format: settings.log_format });
    Ok(flush)
}

/// Where [`access`] writes its JSON lines; `None` with `log_format: pretty` (or before [`init`]).
fn json_lines() -> Option<&'static writer::LogWriter> {
    LOGS.get().filter(|logs| logs.format == LogFormat::Json).map(|logs| &logs.writer)
}

/// Log lines dropped so far because the log writer's buffer was full.
pub fn dropped_log_lines() -> u64 {
    LOGS.get().map_or(0, |logs| logs.writer.dropped_lines())
}

/// `RUST_LOG` when set, else `telemetry.log_level`.
fn log_filter(settings: &TelemetrySettings) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::builder().parse(&settings.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The layer that writes log lines to `writer`, in `format`.
fn log_lines<S>(format: LogFormat, writer: writer::LogWriter) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let lines = tracing_subscriber::fmt::layer().with_target(false).with_writer(writer);
    match format {
        LogFormat::Json => {
            let lines = lines.json().flatten_event(true).with_current_span(true).with_span_list(false);
            Box::new(lines.fmt_fields(span_fields::SpanFields))
        }
        LogFormat::Pretty => Box::new(lines),
    }
}
