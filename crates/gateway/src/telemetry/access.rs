//! The per-request `request` log line (the access log), built directly rather than by
//! tracing-subscriber's JSON formatter, which for every event parses the stored JSON text of its
//! span's fields back into a `serde_json::Value` before writing it out again: that was most of
//! what a line cost. Here the line is laid out member by member from the values the request
//! already holds (names as literals, values written by `json_text.rs`, the timestamp by
//! humantime) into a per-thread buffer ([`scratch`]), handed to the non-blocking
//! [`writer`](super::writer). Byte for byte what the formatter writes for the same event (a
//! test compares them), timestamp aside:
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

use super::{REQUEST_LOG_TARGET, json_text};
use crate::scratch;
use std::cell::Cell;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
        let Some(writer) = super::json_lines() else {
            self.log_event();
            return;
        };
        scratch::with(&LINE_BUFFER, |line| {
            self.write_json(SystemTime::now(), line);
            writer.write_line(line);
        });
    }

    /// Logs the line as a `tracing` event, for the formatter to write.
    fn log_event(&self) {
        tracing::info!(
            target: REQUEST_LOG_TARGET,
            status = self.status,
            duration_ms = self.duration_ms(),
            http.route = self.route,
            calls = self.calls,
            "request"
        );
    }

    /// Appends the JSON line, stamped `now`, to `line`. The members are laid out here, names as
    /// literals, so only the values are written (`json_text.rs`): a derived `Serialize` escaped
    /// every member name of every line again.
    fn write_json(&self, now: SystemTime, line: &mut Vec<u8>) {
        // Writing into a `Vec` cannot fail, nor can humantime between its bounds.
        let now = now.clamp(UNIX_EPOCH, UNIX_EPOCH + LAST_TIMESTAMP);
        let _ = write!(line, "{{\"timestamp\":\"{}\"", humantime::format_rfc3339_micros(now));
        line.extend_from_slice(b",\"level\":\"INFO\",\"message\":\"request\",\"status\":");
        json_text::push_value(line, &self.status);
        line.extend_from_slice(b",\"duration_ms\":");
        json_text::push_value(line, &self.duration_ms());
        if let Some(route) = self.route {
            member(line, b",\"http.route\":", route);
        }
        if let Some(calls) = self.calls {
            member(line, b",\"calls\":", calls);
        }
        member(line, b",\"span\":{\"http.request.method\":", self.method);
        member(line, b",\"request_id\":", self.request_id);
        if let Some(trace_id) = self.trace_id {
            member(line, b",\"trace_id\":", trace_id);
        }
        member(line, b",\"name\":", REQUEST_SPAN);
        line.extend_from_slice(b"}}\n");
    }

    /// From the request's arrival to its answer, in milliseconds.
    fn duration_ms(&self) -> f64 {
        downstream::millis(self.duration)
    }
}

/// The last instant a four-digit year can write (9999-12-31T23:59:59.999999Z), where humantime
/// fails; a clock set outside 1970..=9999 is stamped at the nearer end (humantime panics
/// before 1970) rather than breaking the line.
const LAST_TIMESTAMP: Duration = Duration::from_micros(253_402_300_799_999_999);

/// Appends `name` (`,"name":`, as a literal) and the string `value`.
fn member(line: &mut Vec<u8>, name: &[u8], value: &str) {
    line.extend_from_slice(name);
    json_text::push_str(line, value);
}

thread_local! {
    /// Where this thread builds its lines.
    static LINE_BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::captured;

    fn line() -> RequestLine<'static> {
        RequestLine {
            status: 504,
            duration: Duration::from_micros(1_875),
            route: Some("GET /page/{id}"),
            calls: Some("a:ok b:timeout"),
            method: "GET",
            request_id: "r-1",
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        }
    }

    fn written(line: &RequestLine<'_>, now: SystemTime) -> String {
        let mut bytes = Vec::new();
        line.write_json(now, &mut bytes);
        String::from_utf8(bytes).unwrap()
    }

    /// The line tracing-subscriber's JSON formatter writes for `line` logged as an event in the
    /// request's span (as with `log_format: pretty`, but formatted by the JSON layer).
    fn formatted(line: &RequestLine<'_>) -> String {
        let lines = captured::json_lines(|| {
            let span = match line.trace_id {
                Some(trace_id) => tracing::info_span!(
                    REQUEST_SPAN,
                    http.request.method = line.method,
                    request_id = line.request_id,
                    trace_id
                ),
                None => {
                    tracing::info_span!(
                        REQUEST_SPAN,
                        http.request.method = line.method,
                        request_id = line.request_id
                    )
                }
            };
            span.in_scope(|| line.log_event());
        });
        assert_eq!(lines.len(), 1);
        format!("{}\n", lines[0])
    }

    /// `text` from its first member after the timestamp.
    fn after_the_timestamp(text: &str) -> &str {
        &text[text.find(",\"level\"").unwrap()..]
    }

    #[test]
    fn a_line_is_what_the_json_formatter_writes_for_the_same_event() {
        let absent = RequestLine { route: None, calls: None, trace_id: None, ..line() };
        let escaped = RequestLine { calls: Some("a\"b:ok \\ \u{1} é"), ..line() };
        for line in [line(), absent, escaped] {
            let ours = written(&line, SystemTime::now());
            let theirs = formatted(&line);
            assert_eq!(after_the_timestamp(&ours), after_the_timestamp(&theirs));
            assert_eq!(ours.matches('\n').count(), 1);
        }
    }

    #[test]
    fn a_line_reads_in_full() {
        let now = UNIX_EPOCH + Duration::from_micros(1_796_080_769_123_456);
        assert_eq!(
            written(&line(), now),
            concat!(
                r#"{"timestamp":"2026-11-30T23:19:29.123456Z","level":"INFO","message":"request","#,
                r#""status":504,"duration_ms":1.875,"http.route":"GET /page/{id}","calls":"a:ok b:timeout","#,
                r#""span":{"http.request.method":"GET","request_id":"r-1","#,
                r#""trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","name":"request"}}"#,
                "\n"
            )
        );
    }

    #[test]
    fn the_timestamp_reads_as_every_other_lines() {
        let ours = written(&line(), SystemTime::now());
        let theirs = formatted(&line());
        // The same layout, digit for digit where the two clocks can differ.
        let layout = |text: &str| {
            let stamp = &text[..text.find(",\"level\"").unwrap()];
            stamp.chars().map(|c| if c.is_ascii_digit() { '0' } else { c }).collect::<String>()
        };
        assert_eq!(layout(&ours), layout(&theirs));
    }

    #[test]
    fn a_clock_outside_the_four_digit_years_stamps_the_nearer_end() {
        for (now, stamp) in [
            (UNIX_EPOCH - Duration::from_secs(1), "1970-01-01T00:00:00.000000Z"),
            (UNIX_EPOCH + Duration::from_secs(300_000_000_000), "9999-12-31T23:59:59.999999Z"),
        ] {
            let text = written(&line(), now);
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(value["timestamp"], stamp);
        }
    }
}
