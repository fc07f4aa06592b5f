//! The `templates` target: a URL template parsed against fixed names, then rendered with
//! arbitrary route values and an arbitrary backend response, per list element when it fans
//! out. Input: `template\nid value\nq value\nJSON response` (missing lines are empty; a JSON
//! that does not parse means "no response").
//!
//! Invariants (the URL-safety rules of the response contract): no panic; `check_params` and
//! `render` agree on which route value is refused; a rendered URL is the template's literal
//! text with each `{…}` replaced by one value made only of unreserved characters and `%XX`, so
//! no value adds a `/`, `?`, `&`, `#`, CR/LF or any other byte; a value in a path segment never
//! decodes to nothing, `.`, `..`, or text with `/`, `\` or a control character; a route value
//! arrives decoded exactly as the client encoded it; no path segment decodes to `.` or `..`.

use compose::{Inputs, Names, RenderError, Template};
use percent_encoding::percent_decode_str;
use serde_json::Value;

/// The names templates may use: two route parameters and two calls.
const NAMES: Names<'static> = Names { params: &["id", "q"], calls: &["orders", "user"] };

/// Most list elements rendered per input (a fan-out renders each one the same way).
const MAX_ELEMENTS: usize = 64;

/// Parses and renders the template in `data` and checks the invariants.
pub fn templates(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.splitn(4, '\n');
    let mut next = || lines.next().unwrap_or_default();
    let (source, id, q, response) = (next(), next(), next(), next());
    let Ok(template) = Template::parse(source, NAMES) else { return };
    let params = [id, q];
    let response: Option<Value> = serde_json::from_str(response).ok();
    let calls = [response.as_ref(), response.as_ref()];
    let inputs = Inputs { params: &params, calls: &calls, element: None };
    let Some((call, list)) = template.fan_out() else {
        render(&template, source, &inputs);
        return;
    };
    let items = calls.get(call).copied().flatten().and_then(|doc| list.lookup(doc).ok());
    if let Some(Value::Array(items)) = items {
        for item in items.iter().take(MAX_ELEMENTS) {
            render(&template, source, &Inputs { element: Some(item), ..inputs });
        }
    }
}

/// Renders once and checks the result against the template's source text.
fn render(template: &Template, source: &str, inputs: &Inputs<'_>) {
    let checked = template.check_params(inputs.params);
    let mut out = String::new();
    match template.render(inputs, &mut out) {
        Ok(()) => {
            assert_eq!(checked, Ok(()), "rendered {out:?} although check_params refused");
            check_url(source, &out, inputs.params);
        }
        Err(RenderError::Param(index, reason)) => {
            assert_eq!(checked, Err((index, reason)), "render and check_params disagree");
        }
        Err(RenderError::Reference(_)) => {}
    }
}

/// Checks a rendered URL: literal text where the template has it, one safe value per `{…}`.
fn check_url(source: &str, out: &str, params: &[&str]) {
    assert!(out.starts_with('/'), "{out:?} does not start with /");
    assert!(out.bytes().all(|b| b.is_ascii_graphic() && b != b'#'), "{out:?} has a byte a URL may not hold");
    let mut rest = out;
    let mut literal_start = 0;
    let mut in_query = false;
    while let Some(open) = source[literal_start..].find('{').map(|i| literal_start + i) {
        let close = source[open..].find('}').map_or(source.len(), |i| open + i);
        let literal = &source[literal_start..open];
        in_query |= literal.contains('?');
        rest = rest.strip_prefix(literal).unwrap_or_else(|| panic!("{out:?} lost the literal {literal:?}"));
        let end = rest.find(['/', '?', '&']).unwrap_or(rest.len());
        let (value, after) = rest.split_at(end);
        let name = &source[open + 1..close];
        check_value(value, name, in_query, params, out);
        rest = after;
        literal_start = close + 1;
    }
    assert_eq!(rest, &source[literal_start..], "{out:?} does not end with the template's text");
    let path = out.split('?').next().unwrap_or_default();
    for segment in path.split('/') {
        let decoded = percent_decode_str(segment).collect::<Vec<u8>>();
        assert!(decoded != b"." && decoded != b"..", "{out:?} has a dot segment");
    }
}

/// Checks one rendered value: encoded once, and safe for its position.
fn check_value(value: &str, name: &str, in_query: bool, params: &[&str], out: &str) {
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes[i] == b'%';
        let ok = if escape {
            bytes.get(i + 1..i + 3).is_some_and(|h| h.iter().all(|d| matches!(d, b'0'..=b'9' | b'A'..=b'F')))
        } else {
            bytes[i].is_ascii_alphanumeric() || b"-._~".contains(&bytes[i])
        };
        assert!(ok, "{{{name}}} rendered as {value:?} in {out:?}: not percent-encoded");
        i += if escape { 3 } else { 1 };
    }
    let decoded = percent_decode_str(value).collect::<Vec<u8>>();
    if let Some(index) = NAMES.params.iter().position(|p| *p == name) {
        let sent = percent_decode_str(params.get(index).copied().unwrap_or_default()).collect::<Vec<u8>>();
        assert_eq!(decoded, sent, "{{{name}}} does not carry the client's value once decoded");
    }
    if !in_query {
        let text = String::from_utf8_lossy(&decoded);
        let unsafe_segment = decoded.is_empty()
            || decoded == b"."
            || decoded == b".."
            || decoded.iter().any(|b| *b == b'/' || *b == b'\\' || b.is_ascii_control())
            || std::str::from_utf8(&decoded).is_ok() && text.chars().any(char::is_control);
        assert!(!unsafe_segment, "{{{name}}} placed {decoded:?} in a path segment of {out:?}");
    }
}
