//! [`SpanFields`]: how JSON log lines keep each span's fields. The `fmt` layer stores them as
//! text when the span starts (every request's `request` span: method, `request_id`, trace id)
//! and reads that text back only when a line is written inside the span, as its `span` object.
//! tracing-subscriber's own `JsonFields` builds a `BTreeMap` of `serde_json::Value`s for every
//! span and serialises it: ~5,000 instructions per request at `log_level: info`, a third of the
//! level's cost, for lines that are rarely written. This one writes the fields as JSON
//! ([`json_text`]) into a per-thread buffer ([`scratch`]) and stores the text with one
//! allocation. The text is the same JSON object, with the fields in the order the span declares
//! them rather than sorted; a field recorded later is appended, and wins when the object is
//! read back (as a recorded value replaces the one before).

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
        scratch::with(&FIELDS_BUFFER, |buffer| writer.write_str(json_object(buffer, fields)?))
    }

    fn add_fields(&self, current: &'writer mut FormattedFields<Self>, fields: &Record<'_>) -> fmt::Result {
        scratch::with(&FIELDS_BUFFER, |buffer| {
            append_members(&mut current.fields, json_object(buffer, fields)?);
            Ok(())
        })
    }
}

/// Writes `fields` into `buffer` as one JSON object, and returns its text.
fn json_object<R: RecordFields>(buffer: &mut Vec<u8>, fields: R) -> Result<&str, fmt::Error> {
    buffer.push(b'{');
    fields.record(&mut Members(buffer));
    buffer.push(b'}');
    std::str::from_utf8(buffer).map_err(|_| fmt::Error)
}

/// Appends each field it visits to an open JSON object as a member.
struct Members<'a>(&'a mut Vec<u8>);

impl Members<'_> {
    /// Starts the member named for `field`.
    fn name(&mut self, field: &Field) -> &mut Vec<u8> {
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
        json_text::push_str(self.name(field), value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        json_text::push_value(self.name(field), &value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        json_text::push_value(self.name(field), &value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        json_text::push_value(self.name(field), &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        json_text::push_value(self.name(field), &value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        json_text::push_value(self.name(field), &format_args!("{value:?}"));
    }
}

/// Adds the members of the JSON object `more` to the JSON object `current` (which is empty or
/// a JSON object this formatter wrote).
fn append_members(current: &mut String, more: &str) {
    let members = more.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')).unwrap_or_default();
    if members.is_empty() {
        if current.is_empty() {
            current.push_str("{}");
        }
        return;
    }
    match current.strip_suffix('}') {
        Some(before) => {
            let joined = if before == "{" { "" } else { "," };
            current.truncate(before.len());
            current.push_str(joined);
            current.push_str(members);
            current.push('}');
        }
        None => *current = more.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    /// Lines written by the layer under test, shared with the test.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        fn parsed(&self) -> Vec<serde_json::Value> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
        }
    }

    /// Runs `body` under a JSON log layer that keeps span fields with [`SpanFields`], as the
    /// gateway's does, and returns the lines it wrote.
    fn logged(body: impl FnOnce()) -> Vec<serde_json::Value> {
        let lines = Lines::default();
        let sink = lines.clone();
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .fmt_fields(SpanFields)
            .with_writer(move || sink.clone());
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), body);
        lines.parsed()
    }

    #[test]
    fn a_line_inside_a_span_carries_its_fields_of_every_kind_escaped() {
        let lines = logged(|| {
            let span = tracing::info_span!(
                "request",
                request_id = "a \"quoted\"\n\u{e9}",
                status = 200u16,
                delta = -3i64,
                ratio = 0.5f64,
                cached = true,
                route = ?["GET", "/page"],
            );
            let _in = span.enter();
            tracing::warn!("stalled");
        });
        assert_eq!(lines.len(), 1);
        assert_eq!(
            lines[0]["span"],
            serde_json::json!({
                "request_id": "a \"quoted\"\n\u{e9}",
                "status": 200,
                "delta": -3,
                "ratio": 0.5,
                "cached": true,
                "route": "[\"GET\", \"/page\"]",
                "name": "request",
            })
        );
    }

    #[test]
    fn recorded_fields_join_the_span_and_a_recorded_value_replaces_the_first() {
        let lines = logged(|| {
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
        assert_eq!(
            lines[0]["span"],
            serde_json::json!({ "backend": "price", "attempt": 2, "status": 503, "name": "call" })
        );
    }

    #[test]
    fn fields_recorded_on_a_span_that_started_with_none_make_an_object() {
        let lines = logged(|| {
            let span = tracing::info_span!("late", status = tracing::field::Empty);
            span.record("status", 201u64);
            let _in = span.enter();
            tracing::warn!("inside");
        });
        assert_eq!(lines[0]["span"], serde_json::json!({ "status": 201, "name": "late" }));
        let lines = logged(|| {
            let span = tracing::info_span!("bare");
            let _in = span.enter();
            tracing::warn!("inside");
        });
        assert_eq!(lines[0]["span"], serde_json::json!({ "name": "bare" }));
    }

    #[test]
    fn appending_members_keeps_one_object() {
        let cases = [
            ("", "{}", "{}"),
            ("", "{\"a\":1}", "{\"a\":1}"),
            ("{}", "{\"a\":1}", "{\"a\":1}"),
            ("{\"a\":1}", "{}", "{\"a\":1}"),
            ("{\"a\":1}", "{\"b\":2,\"a\":3}", "{\"a\":1,\"b\":2,\"a\":3}"),
        ];
        for (current, more, joined) in cases {
            let mut text = current.to_owned();
            append_members(&mut text, more);
            assert_eq!(text, joined, "{current} + {more}");
        }
    }
}
