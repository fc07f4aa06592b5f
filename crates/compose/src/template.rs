//! URL templates such as `/users/{id}?expand={part}` or `/items/{orders.items[*].sku}`: parsed
//! once at config load, rendered per request (or per list element). `{name}` is a route
//! parameter; `{call.path}` is a value from another call's JSON response, which makes this call
//! depend on that one; `[*]` in such a path fans the call out over a list. Every value fills
//! exactly one path segment or one query value: it is checked (path position) and every byte
//! outside RFC 3986's unreserved set is percent-encoded, so no input — from the client or from
//! a backend — can change which backend, path or query is called (the CVE-2022-1561 class).

use crate::path::{JsonPath, scalar_text};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::Value;
use std::borrow::Cow;

/// Every byte except RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`) is encoded.
/// The longest backend path-and-query a value read from a response may produce: backends
/// commonly refuse longer request lines (nginx's default `large_client_header_buffers` is
/// 8 KiB), and past 64 KiB no URL can even be built, which used to surface as `connect`.
pub const MAX_RENDERED_URL: usize = 8 * 1024;

const ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Where a parameter sits in the URL; it decides which values are acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Inside a path segment: the decoded value must be a proper, non-traversing segment.
    Path,
    /// Inside a query value: any text is allowed (it is encoded).
    Query,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Box<str>),
    Value { source: Source, position: Position },
}

/// Where a template value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// A route parameter, by index.
    Route(usize),
    /// A value in another call's response: `path` from the response root, or, with `list`,
    /// from each element of the list at `list` (fan-out).
    Call { call: usize, list: Option<JsonPath>, path: JsonPath, text: Box<str> },
}

/// The names a template may refer to: the route's parameters and the endpoint's calls.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    /// Route parameter names, in path order.
    pub params: &'a [&'a str],
    /// Call names, in declared order.
    pub calls: &'a [&'a str],
}

/// What a template is rendered from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Raw (still percent-encoded, as received) route parameter values, in path order.
    pub params: &'a [&'a str],
    /// Parsed responses of the calls this template depends on, by call index.
    pub calls: &'a [Option<&'a Value>],
    /// The list element being rendered, for a fan-out template.
    pub element: Option<&'a Value>,
}

/// Why a template could not be rendered for a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A route parameter cannot be placed into the URL (the client gets 400).
    #[error("route parameter #{0} {1}")]
    Param(usize, ParamError),
    /// A value from another call's response is missing, not a scalar, or unsafe for its place.
    #[error("{0}")]
    Reference(String),
}

/// A parsed path-and-query template; parameters refer to the route's parameters by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    has_query: bool,
    literal_len: usize,
}

/// Why a template was rejected at config load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template does not start with `/`.
    #[error("must start with \"/\"")]
    NoLeadingSlash,
    /// A `{` without its `}`, or a stray `}`.
    #[error("unbalanced braces at byte {0}")]
    Unbalanced(usize),
    /// `{}` with no name, or a name with characters other than letters, digits and `_`.
    #[error("invalid parameter name {0:?} (use letters, digits and _)")]
    BadName(String),
    /// A name that is neither a route parameter nor a call.
    #[error("unknown route parameter or call {{{name}}} (route parameters: {params}; calls: {calls})")]
    UnknownParam {
        /// The name used in the template.
        name: String,
        /// The route's parameters, comma separated.
        params: String,
        /// The endpoint's calls, comma separated.
        calls: String,
    },
    /// A malformed path after a call name.
    #[error("{0}")]
    Path(#[from] crate::path::PathError),
    /// More than one `[*]` in a value, or values that fan out over different lists.
    #[error("a call can fan out over one list only (one [*], one list per template)")]
    SeveralLists,
    /// A character that may not appear literally in a URL (space, `#`, non-ASCII, …).
    #[error("character {0:?} is not allowed in a URL template; percent-encode it")]
    BadChar(char),
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding at byte {0}")]
    BadPercent(usize),
    /// A literal `.` or `..` path segment (backends would normalise it away).
    #[error("path segment {0:?} is not allowed")]
    DotSegment(String),
    /// A parameter shares a path segment or query value with other text, e.g. `/a{id}`.
    #[error("parameter {{{0}}} must fill a whole path segment or query value")]
    NotWhole(String),
}

/// Why a request's parameter value cannot be placed into a backend URL (the client gets 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// The decoded value is empty.
    #[error("is empty")]
    Empty,
    /// The decoded value is `.` or `..`.
    #[error("is a dot segment")]
    DotSegment,
    /// The decoded value contains `/` or `\`.
    #[error("contains a path separator")]
    Separator,
    /// The decoded value contains a control character (CR, LF, NUL, …).
    #[error("contains a control character")]
    Control,
}

impl Template {
    /// Parses `source`, resolving `{name}` against the route's parameters and the calls.
    pub fn parse(source: &str, names: Names<'_>) -> Result<Self, TemplateError> {
        if !source.starts_with('/') {
            return Err(TemplateError::NoLeadingSlash);
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut has_query = false;
        let mut rest = source;
        let mut offset = 0;
        while let Some(pos) = rest.find(['{', '}']) {
            if rest.as_bytes()[pos] == b'}' {
                return Err(TemplateError::Unbalanced(offset + pos));
            }
            let close = rest[pos..].find('}').ok_or(TemplateError::Unbalanced(offset + pos))?;
            let name = &rest[pos + 1..pos + close];
            check_literal(&rest[..pos], offset, has_query)?;
            literal.push_str(&rest[..pos]);
            has_query |= rest[..pos].contains('?');
            let position = if has_query { Position::Query } else { Position::Path };
            let after = rest[pos + close + 1..].chars().next();
            if !fills_whole(&literal, after, position) {
                return Err(TemplateError::NotWhole(name.to_owned()));
            }
            let source = resolve(name, names)?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal).into()));
            }
            parts.push(Part::Value { source, position });
            offset += pos + close + 1;
            rest = &rest[pos + close + 1..];
        }
        check_literal(rest, offset, has_query)?;
        has_query |= rest.contains('?');
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal.into()));
        }
        let literal_len = parts
            .iter()
            .map(|p| match p {
                Part::Literal(s) => s.len(),
                Part::Value { .. } => 0,
            })
            .sum();
        let template = Self { parts, has_query, literal_len };
        let lists: Vec<_> = template
            .sources()
            .filter_map(|s| match s {
                Source::Call { call, list: Some(list), .. } => Some((*call, list)),
                _ => None,
            })
            .collect();
        if lists.windows(2).any(|pair| pair[0] != pair[1]) {
            return Err(TemplateError::SeveralLists);
        }
        Ok(template)
    }

    fn sources(&self) -> impl Iterator<Item = &Source> {
        self.parts.iter().filter_map(|p| match p {
            Part::Value { source, .. } => Some(source),
            Part::Literal(_) => None,
        })
    }

    /// The route parameters (by index) placed in a path segment, where the `400` rule for
    /// separators, dot segments and control characters applies.
    pub fn route_params_in_path(&self) -> impl Iterator<Item = usize> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Value { source: Source::Route(index), position: Position::Path } => Some(*index),
            _ => None,
        })
    }

    /// The calls this template reads from, each once, in order of first use.
    pub fn dependencies(&self) -> Vec<usize> {
        let mut calls = Vec::new();
        for source in self.sources() {
            if let Source::Call { call, .. } = source
                && !calls.contains(call)
            {
                calls.push(*call);
            }
        }
        calls
    }

    /// The list this template fans out over: the call and the path to the list in its response.
    pub fn fan_out(&self) -> Option<(usize, &JsonPath)> {
        self.sources().find_map(|s| match s {
            Source::Call { call, list: Some(list), .. } => Some((*call, list)),
            _ => None,
        })
    }

    /// Checks the route parameters this template places, before any call is made.
    pub fn check_params(&self, params: &[&str]) -> Result<(), (usize, ParamError)> {
        for part in &self.parts {
            if let Part::Value { source: Source::Route(index), position: Position::Path } = part {
                let decoded: Cow<'_, [u8]> =
                    percent_decode_str(params.get(*index).copied().unwrap_or_default()).into();
                check_segment(&decoded).map_err(|e| (*index, e))?;
            }
        }
        Ok(())
    }

    /// True when the template already carries a query string (so more parameters join with `&`).
    pub fn has_query(&self) -> bool {
        self.has_query
    }

    /// Renders the template, appending to `out`.
    pub fn render(&self, inputs: &Inputs<'_>, out: &mut String) -> Result<(), RenderError> {
        out.reserve(self.literal_len + inputs.params.iter().map(|v| v.len() * 3).sum::<usize>());
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Value { source: Source::Route(index), position } => {
                    let raw = inputs.params.get(*index).copied().unwrap_or_default();
                    push_param(raw, *position, out).map_err(|e| RenderError::Param(*index, e))?;
                }
                Part::Value { source: Source::Call { call, list, path, text }, position } => {
                    let value = reference(inputs, *call, list.is_some(), path)
                        .map_err(|why| RenderError::Reference(format!("{{{text}}}: {why}")))?;
                    let scalar = scalar_text(value)
                        .map_err(|why| RenderError::Reference(format!("{{{text}}} {why}")))?;
                    if *position == Position::Path {
                        check_segment(scalar.as_bytes())
                            .map_err(|e| RenderError::Reference(format!("{{{text}}} {e}")))?;
                    }
                    push_encoded(scalar.as_bytes(), out);
                    if out.len() > MAX_RENDERED_URL {
                        return Err(RenderError::Reference(format!(
                            "{{{text}}} makes the backend URL {} bytes long, over the {MAX_RENDERED_URL}-byte limit",
                            out.len()
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The value a call reference points at: in the current list element, or in the response.
fn reference<'v>(inputs: &Inputs<'v>, call: usize, each: bool, path: &JsonPath) -> Result<&'v Value, String> {
    let root = if each {
        inputs.element.ok_or("no list element to render")?
    } else {
        inputs.calls.get(call).copied().flatten().ok_or("the referenced response is not available")?
    };
    path.lookup(root).map_err(|e| e.to_string())
}

/// Appends one forwarded `name=value` query pair, joined by `?` (when `first`) or `&`. The
/// inbound value is passed on as the client encoded it (so `+` and `%2B` keep their meaning);
/// only bytes that may not stand in a query value are percent-encoded.
pub fn push_query_pair(name: &str, raw_value: &str, first: bool, out: &mut String) {
    out.push(if first { '?' } else { '&' });
    out.extend(utf8_percent_encode(name, ENCODE));
    out.push('=');
    let bytes = raw_value.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let escape =
            b == b'%' && bytes.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
        if escape || b.is_ascii_alphanumeric() || b"-._~!$'()*+,;:@/?".contains(&b) {
            out.push(char::from(b));
        } else {
            out.extend(percent_encoding::percent_encode(&[b], ENCODE));
        }
    }
}

/// Decodes `raw` once, checks it for `position`, and appends it percent-encoded.
fn push_param(raw: &str, position: Position, out: &mut String) -> Result<(), ParamError> {
    let decoded: Cow<'_, [u8]> = percent_decode_str(raw).into();
    if position == Position::Path {
        check_segment(&decoded)?;
    }
    push_encoded(&decoded, out);
    Ok(())
}

fn push_encoded(decoded: &[u8], out: &mut String) {
    out.extend(percent_encoding::percent_encode(decoded, ENCODE));
}

/// The path-position rule: no empty, `.`, `..`, separators or control characters.
fn check_segment(decoded: &[u8]) -> Result<(), ParamError> {
    match decoded {
        [] => Err(ParamError::Empty),
        b"." | b".." => Err(ParamError::DotSegment),
        _ if decoded.iter().any(|b| *b == b'/' || *b == b'\\') => Err(ParamError::Separator),
        _ if decoded.iter().any(u8::is_ascii_control) => Err(ParamError::Control),
        // C1 controls (U+0080..U+009F, e.g. NEL) when the value is UTF-8 text.
        _ if std::str::from_utf8(decoded).is_ok_and(|t| t.chars().any(char::is_control)) => {
            Err(ParamError::Control)
        }
        _ => Ok(()),
    }
}

fn resolve(text: &str, names: Names<'_>) -> Result<Source, TemplateError> {
    let split = text.find(['.', '[']).unwrap_or(text.len());
    let (name, rest) = text.split_at(split);
    if !crate::names::is_reference_name(name) {
        return Err(TemplateError::BadName(text.to_owned()));
    }
    if rest.is_empty()
        && let Some(index) = names.params.iter().position(|p| *p == name)
    {
        return Ok(Source::Route(index));
    }
    let Some(call) = names.calls.iter().position(|c| *c == name) else {
        let list = |items: &[&str]| if items.is_empty() { "none".to_owned() } else { items.join(", ") };
        return Err(TemplateError::UnknownParam {
            name: name.to_owned(),
            params: list(names.params),
            calls: list(names.calls),
        });
    };
    let path = JsonPath::parse(rest.strip_prefix('.').unwrap_or(rest))?;
    let text = text.into();
    match path.each_count() {
        0 => Ok(Source::Call { call, list: None, path, text }),
        1 => {
            let (list, inner) = path.split_each().ok_or(TemplateError::SeveralLists)?;
            Ok(Source::Call { call, list: Some(list), path: inner, text })
        }
        _ => Err(TemplateError::SeveralLists),
    }
}

/// A parameter must be preceded by `/`, `?`, `&` or `=` and followed by `/`, `?`, `&` or the end.
fn fills_whole(before: &str, after: Option<char>, position: Position) -> bool {
    let starts = match position {
        Position::Path => before.ends_with('/'),
        Position::Query => {
            let pair = before.rsplit(['?', '&']).next().unwrap_or_default();
            pair.ends_with('=') && pair.matches('=').count() == 1
        }
    };
    let ends = matches!(
        (after, position),
        (None, _) | (Some('/' | '?'), Position::Path) | (Some('&'), Position::Query)
    );
    starts && ends
}

/// Checks literal template text: URL-safe characters, well-formed `%XX`, no dot segments.
fn check_literal(text: &str, offset: usize, in_query: bool) -> Result<(), TemplateError> {
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        let allowed = c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/?%".contains(c);
        if !allowed {
            return Err(TemplateError::BadChar(c));
        }
        if c == '%' {
            let hex = bytes.get(i + 1..i + 3).unwrap_or_default();
            if hex.len() != 2 || !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(TemplateError::BadPercent(offset + i));
            }
        }
    }
    let path = if in_query { "" } else { text.split('?').next().unwrap_or_default() };
    let is_dot = |segment: &&str| matches!(&*percent_decode_str(segment).decode_utf8_lossy(), "." | "..");
    match path.split('/').find(is_dot) {
        Some(dot) => Err(TemplateError::DotSegment(dot.to_owned())),
        None => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: Names<'static> = Names { params: &["id"], calls: &[] };

    fn render(template: &str, value: &str) -> Result<String, ParamError> {
        let t = Template::parse(template, ID).unwrap();
        let mut out = String::new();
        let inputs = Inputs { params: &[value], calls: &[], element: None };
        match t.render(&inputs, &mut out) {
            Ok(()) => Ok(out),
            Err(RenderError::Param(_, e)) => Err(e),
            Err(other) => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn plain_values_render_in_place() {
        assert_eq!(render("/users/{id}", "42").unwrap(), "/users/42");
        assert_eq!(render("/orders?user={id}&x=1", "42").unwrap(), "/orders?user=42&x=1");
        assert_eq!(render("/a/{id}/b?q={id}", "7").unwrap(), "/a/7/b?q=7");
    }

    #[test]
    fn hostile_path_values_are_rejected() {
        let cases = [
            ("..%2F..%2Fadmin", ParamError::Separator),
            ("%2e%2e", ParamError::DotSegment),
            ("..", ParamError::DotSegment),
            (".", ParamError::DotSegment),
            ("%2E", ParamError::DotSegment),
            ("", ParamError::Empty),
            ("a%5Cb", ParamError::Separator),
            ("a%0D%0AHost:%20evil", ParamError::Control),
            ("a%00", ParamError::Control),
            ("%7F", ParamError::Control),
            ("a%C2%85b", ParamError::Control),
            ("a%2fb", ParamError::Separator),
        ];
        for (value, expected) in cases {
            assert_eq!(render("/users/{id}", value), Err(expected), "value {value:?}");
        }
    }

    #[test]
    fn hostile_values_stay_inside_one_segment() {
        assert_eq!(render("/users/{id}", "a%3Fx%3D1").unwrap(), "/users/a%3Fx%3D1");
        assert_eq!(render("/users/{id}", "a%23frag").unwrap(), "/users/a%23frag");
        assert_eq!(render("/users/{id}", "a?x=1").unwrap(), "/users/a%3Fx%3D1");
        assert_eq!(render("/users/{id}", "caf%C3%A9").unwrap(), "/users/caf%C3%A9");
        assert_eq!(render("/users/{id}", "café").unwrap(), "/users/caf%C3%A9");
        assert_eq!(render("/users/{id}", "...").unwrap(), "/users/...");
        assert_eq!(render("/users/{id}", "%25").unwrap(), "/users/%25");
        assert_eq!(render("/users/{id}", "%zz").unwrap(), "/users/%25zz");
    }

    #[test]
    fn query_values_accept_any_text_encoded() {
        assert_eq!(render("/s?q={id}", "a%26b%3Dc").unwrap(), "/s?q=a%26b%3Dc");
        assert_eq!(render("/s?q={id}", "..%2F").unwrap(), "/s?q=..%2F");
        assert_eq!(render("/s?q={id}", "%0D%0A").unwrap(), "/s?q=%0D%0A");
        assert_eq!(render("/s?q={id}", "").unwrap(), "/s?q=");
        assert_eq!(render("/s?q={id}", "a%23b").unwrap(), "/s?q=a%23b");
    }

    #[test]
    fn query_pairs_are_encoded() {
        let mut out = "/x".to_owned();
        push_query_pair("locale", "en%20US", true, &mut out);
        push_query_pair("b", "a+b%2B#x=&%zz\r\n", false, &mut out);
        assert_eq!(out, "/x?locale=en%20US&b=a+b%2B%23x%3D%26%25zz%0D%0A");
    }

    #[test]
    fn bad_templates_are_rejected() {
        let cases = [
            ("users/{id}", TemplateError::NoLeadingSlash),
            ("/users/{id", TemplateError::Unbalanced(7)),
            ("/users/id}", TemplateError::Unbalanced(9)),
            ("/users/{}", TemplateError::BadName(String::new())),
            ("/users/{a b}", TemplateError::BadName("a b".into())),
            (
                "/users/{user}",
                TemplateError::UnknownParam {
                    name: "user".into(),
                    params: "id".into(),
                    calls: "none".into(),
                },
            ),
            ("/users /{id}", TemplateError::BadChar(' ')),
            ("/users#x", TemplateError::BadChar('#')),
            ("/a%zz", TemplateError::BadPercent(2)),
            ("/a/../{id}", TemplateError::DotSegment("..".into())),
            ("/a/./b", TemplateError::DotSegment(".".into())),
            ("/u{id}", TemplateError::NotWhole("id".into())),
            ("/u/{id}x", TemplateError::NotWhole("id".into())),
            ("/u?q=a{id}", TemplateError::NotWhole("id".into())),
            ("/s?a=b={id}", TemplateError::NotWhole("id".into())),
            ("/a/%2e%2E/b", TemplateError::DotSegment("%2e%2E".into())),
        ];
        for (source, expected) in cases {
            assert_eq!(Template::parse(source, ID), Err(expected), "template {source:?}");
        }
    }

    #[test]
    fn query_literal_dots_are_fine_and_has_query_is_tracked() {
        let t = Template::parse("/a?path=../x", ID).unwrap();
        assert!(t.has_query());
        assert!(!Template::parse("/a/{id}", ID).unwrap().has_query());
    }

    #[test]
    fn parameters_map_to_route_indexes() {
        let t = Template::parse("/u/{b}/x/{a}", Names { params: &["a", "b"], calls: &[] }).unwrap();
        let mut out = String::new();
        t.render(&Inputs { params: &["first", "second"], calls: &[], element: None }, &mut out).unwrap();
        assert_eq!(out, "/u/second/x/first");
        let mut out = String::new();
        let bad = Inputs { params: &["..", "ok"], calls: &[], element: None };
        assert_eq!(t.render(&bad, &mut out), Err(RenderError::Param(0, ParamError::DotSegment)));
        assert_eq!(t.check_params(&["..", "ok"]), Err((0, ParamError::DotSegment)));
        assert_eq!(t.check_params(&["a", "b"]), Ok(()));
    }

    const CALLS: Names<'static> = Names { params: &["id"], calls: &["orders", "user"] };

    #[test]
    fn call_references_read_values_and_record_dependencies() {
        let t = Template::parse("/items/{orders.items[0].sku}?u={user.name}&id={id}", CALLS).unwrap();
        assert_eq!(t.dependencies(), [0, 1]);
        assert!(t.fan_out().is_none());
        let orders = json!({"items": [{"sku": "A/1"}]});
        let user = json!({"name": "Zoë & co", "age": 3});
        let mut out = String::new();
        let inputs = Inputs { params: &["7"], calls: &[Some(&orders), Some(&user)], element: None };
        let error = t.render(&inputs, &mut out).unwrap_err();
        assert_eq!(error, RenderError::Reference("{orders.items[0].sku} contains a path separator".into()));
        let orders = json!({"items": [{"sku": 42}]});
        let mut out = String::new();
        let inputs = Inputs { params: &["7"], calls: &[Some(&orders), Some(&user)], element: None };
        t.render(&inputs, &mut out).unwrap();
        assert_eq!(out, "/items/42?u=Zo%C3%AB%20%26%20co&id=7");
    }

    #[test]
    fn unusable_references_fail_with_a_reason() {
        let t = Template::parse("/u/{user.id}", CALLS).unwrap();
        for (doc, reason) in [
            (json!({}), "{user.id}: id is missing"),
            (json!({"id": null}), "{user.id} is null"),
            (json!({"id": {"a": 1}}), "{user.id} is an object"),
            (json!({"id": [1]}), "{user.id} is a list"),
            (json!({"id": ".."}), "{user.id} is a dot segment"),
            (json!([1]), "{user.id}: the value is not an object"),
            (
                json!({"id": "x".repeat(70_000)}),
                "{user.id} makes the backend URL 70003 bytes long, over the 8192-byte limit",
            ),
        ] {
            let mut out = String::new();
            let inputs = Inputs { params: &["7"], calls: &[None, Some(&doc)], element: None };
            assert_eq!(t.render(&inputs, &mut out), Err(RenderError::Reference(reason.into())), "{doc}");
        }
    }

    #[test]
    fn fan_out_templates_render_per_element() {
        let t =
            Template::parse("/items/{orders.items[*].sku}?seller={orders.items[*].seller}", CALLS).unwrap();
        let (call, list) = t.fan_out().unwrap();
        assert_eq!((call, list.to_string()), (0, "items".to_owned()));
        let element = json!({"sku": "B 2", "seller": 9});
        let mut out = String::new();
        t.render(&Inputs { params: &[], calls: &[], element: Some(&element) }, &mut out).unwrap();
        assert_eq!(out, "/items/B%202?seller=9");
        let whole = Template::parse("/sellers/{user[*]}", CALLS).unwrap();
        assert_eq!(whole.fan_out().map(|(c, l)| (c, l.is_empty())), Some((1, true)));
    }

    #[test]
    fn reference_mistakes_are_config_errors() {
        assert_eq!(
            Template::parse("/x/{orders.a[*].b}/{user.c[*]}", CALLS),
            Err(TemplateError::SeveralLists)
        );
        assert_eq!(Template::parse("/x/{orders.a[*].b[*]}", CALLS), Err(TemplateError::SeveralLists));
        assert!(matches!(Template::parse("/x/{orders..a}", CALLS), Err(TemplateError::Path(_))));
        assert_eq!(
            Template::parse("/x/{nope.a}", CALLS),
            Err(TemplateError::UnknownParam {
                name: "nope".into(),
                params: "id".into(),
                calls: "orders, user".into()
            })
        );
        let same_list = Template::parse("/x/{orders.a[*].b}/{orders.a[*].c}", CALLS).unwrap();
        assert_eq!(same_list.dependencies(), [0]);
    }
}
