//! [`SpanFields`]: how JSON log lines keep each span's fields. The `fmt` layer stores them as
//! text when the span starts (every request's `request` span: method, `request_id`, trace id)
//! and reads that text back only when a line is written inside the span, as its `span` object.
//! tracing-subscriber's own `JsonFields` builds a `BTreeMap` of `serde_json::Value`s for every
//! span and serialises it: 6.4k instructions per request at `log_level: info`, a third of the
//! level's cost, for lines that are rarely written. This one writes the fields as JSON
//! ([`json_text`]) into a per-thread buffer ([`scratch`]) and stores the text with one
//! allocation (1.7k for the whole span). The object means the same, with the fields in the
//! order the span declares them rather than sorted. A field recorded later is appended, and
//! wins when the object is read back (as a recorded value replaces the one before); a field
//! recorded again and again grows the text each time, so spans record a field once (a
//! `backend_call` records its `time_left_ms` once per attempt).

use super::json_text;
use crate::scratch;
use std::cell::Cell;
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::{FormatFields, Writer};

/// The JSON log lines' span field formatter.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpanFields;

thread_local! {
    /// Where this thread writes span fields.
    static FIELDS_BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

impl<'writer> FormatFields<'writer> for SpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> fmt::Result {
        scratch::with(&FIELDS_BUFFER, |buffer| {
            buffer.push(b'{');
            fields.record(&mut Members(buffer));
            buffer.push(b'}');
            writer.write_str(text(buffer)?)
        })
    }

    /// Appends the recorded fields to the object [`format_fields`](Self::format_fields) stored.
    fn add_fields(&self, current: &'writer mut FormattedFields<Self>, fields: &Record<'_>) -> fmt::Result {
        scratch::with(&FIELDS_BUFFER, |buffer| {
            buffer.extend_from_slice(current.fields.as_bytes());
            buffer.pop(); // the closing brace
            fields.record(&mut Members(buffer));
            buffer.push(b'}');
            let joined = text(buffer)?;
            current.fields.clear();
            current.fields.push_str(joined);
            Ok(())
        })
    }
}

/// The buffer's text. Every byte in it came from a `&str` or from `serde_json`, so it is UTF-8;
/// checking (a pass over the few bytes of a span's fields) costs less than `unsafe` would
/// need to be argued.
fn text(buffer: &[u8]) -> Result<&str, fmt::Error> {
    std::str::from_utf8(buffer).map_err(|_| fmt::Error)
}

/// Appends each field it visits, as a member, to the JSON object open at the buffer's end.
struct Members<'a>(&'a mut Vec<u8>);

impl Members<'_> {
    /// Writes the separator and `"name":` of `field`'s member; the caller writes the value.
    fn start_member(&mut self, field: &Field) -> &mut Vec<u8> {
        if self.0.last() != Some(&b'{') {
            self.0.push(b',');
        }
        json_text::push_str(self.0, field.name());
        self.0.push(b':');
        self.0
    }
}

impl Visit for Members<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        json_text::push_str(self.start_member(field), value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        json_text::push_value(self.start_member(field), &value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        json_text::push_value(self.start_member(field), &value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        json_text::push_value(self.start_member(field), &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        json_text::push_value(self.start_member(field), &value);
    }

    /// An array of numbers, as `JsonFields` writes bytes.
    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        json_text::push_value(self.start_member(field), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        json_text::push_value(self.start_member(field), &format_args!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use crate::telemetry::captured;

    /// The `span` object of the one line `body` logs, as written (members in order).
    fn span_of_the_line(body: impl FnOnce()) -> String {
        let lines = captured::json_lines(body);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        line["span"].to_string()
    }

    #[test]
    fn a_line_inside_a_span_carries_its_fields_of_every_kind_in_order_escaped() {
        let span = span_of_the_line(|| {
            let span = tracing::info_span!(
                "request",
                request_id = "a \"quoted\"\n\u{e9}",
                status = 200u16,
                delta = -3i64,
                ratio = 0.5f64,
                cached = true,
                body = &b"ab"[..],
                route = ?["GET", "/page"],
                "odd\"name" = 1u64,
            );
            let _in = span.enter();
            tracing::warn!("stalled");
        });
        assert_eq!(
            span,
            r#"{"request_id":"a \"quoted\"\né","status":200,"delta":-3,"ratio":0.5,"cached":true,"body":[97,98],"route":"[\"GET\", \"/page\"]","odd\"name":1,"name":"request"}"#
        );
    }

    #[test]
    fn recorded_fields_join_the_span_and_a_recorded_value_replaces_the_first() {
        let span = span_of_the_line(|| {
            let span = tracing::info_span!(
                "call",
                backend = "price",
                status = tracing::field::Empty,
                attempt = 1u64,
            );
            span.record("status", 503u64);
            span.record("attempt", 2u64);
            let _in = span.enter();
            tracing::warn!("failed");
        });
        assert_eq!(span, r#"{"backend":"price","attempt":2,"status":503,"name":"call"}"#);
    }

    #[test]
    fn a_span_without_fields_or_with_only_recorded_ones_is_an_object() {
        let span = span_of_the_line(|| {
            let span = tracing::info_span!("late", status = tracing::field::Empty);
            span.record("status", 201u64);
            let _in = span.enter();
            tracing::warn!("inside");
        });
        assert_eq!(span, r#"{"status":201,"name":"late"}"#);
        let span = span_of_the_line(|| {
            let span = tracing::info_span!("bare");
            let _in = span.enter();
            tracing::warn!("inside");
        });
        assert_eq!(span, r#"{"name":"bare"}"#);
    }
}
