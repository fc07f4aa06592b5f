//! URL templates such as `/users/{id}?expand={part}`: parsed once at config load, rendered per
//! request. A route parameter always fills exactly one path segment or one query value: its
//! percent-decoded value is checked (path position) and every byte outside RFC 3986's
//! unreserved set is percent-encoded, so no input can change which backend, path or query is
//! called (the CVE-2022-1561 class of bugs).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use std::borrow::Cow;
use std::fmt;

/// Every byte except RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`) is encoded.
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
    Param { index: usize, position: Position },
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
    /// A parameter that the route does not declare.
    #[error("unknown route parameter {{{name}}} (route parameters: {known})")]
    UnknownParam {
        /// The name used in the template.
        name: String,
        /// The route's parameters, comma separated.
        known: String,
    },
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
    /// Parses `source`, resolving `{name}` against the route's parameter names.
    pub fn parse(source: &str, route_params: &[&str]) -> Result<Self, TemplateError> {
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
            let index = resolve(name, route_params)?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal).into()));
            }
            parts.push(Part::Param { index, position });
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
                Part::Param { .. } => 0,
            })
            .sum();
        Ok(Self { parts, has_query, literal_len })
    }

    /// True when the template already carries a query string (so more parameters join with `&`).
    pub fn has_query(&self) -> bool {
        self.has_query
    }

    /// Renders the template with the route's raw (still percent-encoded, as received) parameter
    /// values, appending to `out`. On error returns the index of the offending parameter.
    pub fn render(&self, raw_values: &[&str], out: &mut String) -> Result<(), (usize, ParamError)> {
        out.reserve(self.literal_len + raw_values.iter().map(|v| v.len() * 3).sum::<usize>());
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Param { index, position } => {
                    let raw = raw_values.get(*index).copied().unwrap_or_default();
                    push_param(raw, *position, out).map_err(|e| (*index, e))?;
                }
            }
        }
        Ok(())
    }
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

fn resolve(name: &str, route_params: &[&str]) -> Result<usize, TemplateError> {
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(TemplateError::BadName(name.to_owned()));
    }
    route_params.iter().position(|p| *p == name).ok_or_else(|| TemplateError::UnknownParam {
        name: name.to_owned(),
        known: if route_params.is_empty() { "none".to_owned() } else { route_params.join(", ") },
    })
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

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Position::Path => "path",
            Position::Query => "query",
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn render(template: &str, value: &str) -> Result<String, ParamError> {
        let t = Template::parse(template, &["id"]).unwrap();
        let mut out = String::new();
        t.render(&[value], &mut out).map(|()| out).map_err(|(_, e)| e)
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
        let params = ["id"];
        let cases = [
            ("users/{id}", TemplateError::NoLeadingSlash),
            ("/users/{id", TemplateError::Unbalanced(7)),
            ("/users/id}", TemplateError::Unbalanced(9)),
            ("/users/{}", TemplateError::BadName(String::new())),
            ("/users/{a-b}", TemplateError::BadName("a-b".into())),
            ("/users/{user}", TemplateError::UnknownParam { name: "user".into(), known: "id".into() }),
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
            assert_eq!(Template::parse(source, &params), Err(expected), "template {source:?}");
        }
    }

    #[test]
    fn query_literal_dots_are_fine_and_has_query_is_tracked() {
        let t = Template::parse("/a?path=../x", &[]).unwrap();
        assert!(t.has_query());
        assert!(!Template::parse("/a/{id}", &["id"]).unwrap().has_query());
    }

    #[test]
    fn parameters_map_to_route_indexes() {
        let t = Template::parse("/u/{b}/x/{a}", &["a", "b"]).unwrap();
        let mut out = String::new();
        t.render(&["first", "second"], &mut out).unwrap();
        assert_eq!(out, "/u/second/x/first");
        let mut out = String::new();
        assert_eq!(t.render(&["..", "ok"], &mut out), Err((0, ParamError::DotSegment)));
    }
}
