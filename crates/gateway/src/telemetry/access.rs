//! The per-request `request` log line (the access log), built directly rather than by
//! tracing-subscriber's JSON formatter, which for every event parses the stored JSON text of its
//! span's fields back into a `serde_json::Value` before writing it out again: that was most of
//! what a line cost. Here the line is one `serde_json` serialisation of the values the request
//! already holds, into a reused per-thread buffer, handed to the non-blocking
//! [`writer`](super::writer). Same shape and field names as the formatter's lines:
//!
//! ```json
//! {"timestamp":"…Z","level":"INFO","message":"request","status":200,"duration_ms":1.9,
//!  "http.route":"GET /page/{id}","calls":"a:ok b:timeout",
//!  "span":{"http.request.method":"GET","request_id":"…","trace_id":"…","name":"request"}}
//! ```
//!
//! Whether a request gets a line is decided when it starts, by the log filter for the
//! `gateway::service` target at `info` ([`enabled`]): `telemetry.log_level: warn`, or
//! `RUST_LOG=info,gateway::service=warn`, turns it off. With `log_format: pretty` the line is
//! an ordinary `tracing` event, formatted (slowly, but this is for development) like the others.
//! A JSON line is no `tracing` event, so a sampled request's exported span does not carry it as
//! a span event: the span's own attributes say the same.

use super::REQUEST_LOG_TARGET;
use serde::Serialize;
use std::cell::Cell;
use std::fmt;
use std::time::Duration;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};

/// Span name of one inbound request.
pub const REQUEST_SPAN: &str = "request";

/// What one request's line says.
#[derive(Debug)]
pub struct RequestLine<'a> {
    /// The answer's status code.
    pub status: u16,
    /// From the request's arrival to its answer.
    pub duration: Duration,
    /// The matched route (`GET /page/{id}`), if any.
    pub route: Option<&'a str>,
    /// The calls' outcomes (`product:ok price:timeout …`), when an endpoint ran.
    pub calls: Option<&'a str>,
    /// The method as log lines name it (a standard method or `_OTHER`).
    pub method: &'static str,
    /// The request's `X-Request-Id`.
    pub request_id: &'a str,
    /// The trace id: the exported trace's, or the caller's from `traceparent`.
    pub trace_id: Option<&'a str>,
}

/// Whether requests are logged: call it where the request starts, under the global subscriber.
pub fn enabled() -> bool {
    tracing::enabled!(target: REQUEST_LOG_TARGET, tracing::Level::INFO)
}

impl RequestLine<'_> {
    /// Writes the line (JSON), or logs it as a `request` event in the request's span (pretty).
    pub fn log(&self) {
        let duration_ms = self.duration.as_secs_f64() * 1000.0;
        let Some(writer) = super::json_lines() else {
            tracing::info!(
                target: REQUEST_LOG_TARGET,
                status = self.status,
                duration_ms,
                http.route = self.route,
                calls = self.calls,
                "request"
            );
            return;
        };
        let line = Json {
            timestamp: Timestamp,
            level: "INFO",
            message: "request",
            status: self.status,
            duration_ms,
            route: self.route,
            calls: self.calls,
            span: Span {
                method: self.method,
                request_id: self.request_id,
                trace_id: self.trace_id,
                name: REQUEST_SPAN,
            },
        };
        let mut buffer = BUFFER.try_with(Cell::take).unwrap_or_default();
        buffer.clear();
        if serde_json::to_writer(&mut buffer, &line).is_ok() {
            buffer.push(b'\n');
            writer.write_line(&buffer);
        }
        let _ = BUFFER.try_with(|cell| cell.set(buffer));
    }
}

thread_local! {
    /// Each thread's line buffer, reused from line to line.
    static BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The line, field for field, as tracing-subscriber's JSON formatter lays it out.
#[derive(Serialize)]
struct Json<'a> {
    timestamp: Timestamp,
    level: &'static str,
    message: &'static str,
    status: u16,
    duration_ms: f64,
    #[serde(rename = "http.route", skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    calls: Option<&'a str>,
    span: Span<'a>,
}

/// The `span` object: the request span's fields and name.
#[derive(Serialize)]
struct Span<'a> {
    #[serde(rename = "http.request.method")]
    method: &'a str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    name: &'static str,
}

/// Now, as every other line's `timestamp` (tracing-subscriber's RFC 3339 UTC, microseconds).
struct Timestamp;

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        SystemTime.format_time(&mut Writer::new(f))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
