//! Response bodies prepared at startup: fixed bytes shared by every response,
//! or a JSON template whose string values receive route parameters.

use bytes::Bytes;
use percent_encoding::percent_decode_str;
use serde_json::Value;

/// The body of a normal answer, ready to be sent.
#[derive(Debug)]
pub(crate) enum Body {
    /// The same bytes for every request.
    Fixed(Bytes),
    /// Bytes that depend on the route parameters.
    Template(Template),
}

/// Serialized JSON split around route parameter placeholders.
#[derive(Debug)]
pub(crate) struct Template {
    parts: Vec<Part>,
    literal_len: usize,
}

#[derive(Debug)]
enum Part {
    /// Serialized JSON copied verbatim.
    Literal(Box<[u8]>),
    /// A route parameter, percent-decoded and escaped as JSON string content.
    Param(Box<str>),
}

/// Body of 404 answers.
pub(crate) fn not_found() -> Bytes {
    Bytes::from_static(br#"{"error":"not found"}"#)
}

/// Body of simulated errors.
pub(crate) fn simulated_error() -> Bytes {
    Bytes::from_static(br#"{"error":"simulated"}"#)
}

/// Body of the `garbage` behavior.
pub(crate) fn garbage() -> Bytes {
    Bytes::from_static(b"this is not json {{{")
}

impl Body {
    /// Prepares the body of the route `path`: a generated document of
    /// `size` bytes when set, otherwise `json` with placeholders resolved
    /// against the parameters declared in `path`.
    pub(crate) fn compile(path: &str, json: &Value, size: Option<usize>) -> Self {
        if let Some(size) = size {
            return Self::Fixed(sized(size));
        }
        let mut compiler = Compiler { names: param_names(path), parts: Vec::new(), pending: Vec::new() };
        compiler.value(json);
        compiler.flush();
        match compiler.parts.as_mut_slice() {
            [] => Self::Fixed(Bytes::new()),
            [Part::Literal(bytes)] => Self::Fixed(Bytes::from(std::mem::take(bytes))),
            _ => {
                let literal_len = compiler
                    .parts
                    .iter()
                    .map(|part| match part {
                        Part::Literal(bytes) => bytes.len(),
                        Part::Param(_) => 0,
                    })
                    .sum();
                Self::Template(Template { parts: compiler.parts, literal_len })
            }
        }
    }

    /// The bytes to answer for a request that matched with `params`.
    pub(crate) fn render(&self, params: &matchit::Params<'_, '_>) -> Bytes {
        match self {
            Self::Fixed(bytes) => bytes.clone(),
            Self::Template(template) => template.render(params),
        }
    }
}

impl Template {
    fn render(&self, params: &matchit::Params<'_, '_>) -> Bytes {
        let mut out = Vec::with_capacity(self.literal_len + 32);
        for part in &self.parts {
            match part {
                Part::Literal(bytes) => out.extend_from_slice(bytes),
                Part::Param(name) => {
                    let raw = params.get(name).unwrap_or_default();
                    escape_into(&mut out, &percent_decode_str(raw).decode_utf8_lossy());
                }
            }
        }
        Bytes::from(out)
    }
}

/// Serializes a JSON value into template parts.
struct Compiler<'p> {
    names: Vec<&'p str>,
    parts: Vec<Part>,
    pending: Vec<u8>,
}

impl Compiler<'_> {
    fn value(&mut self, value: &Value) {
        match value {
            Value::String(text) => self.string(text),
            Value::Array(items) => {
                self.pending.push(b'[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        self.pending.push(b',');
                    }
                    self.value(item);
                }
                self.pending.push(b']');
            }
            Value::Object(members) => {
                self.pending.push(b'{');
                for (index, (key, item)) in members.iter().enumerate() {
                    if index > 0 {
                        self.pending.push(b',');
                    }
                    self.pending.push(b'"');
                    escape_into(&mut self.pending, key);
                    self.pending.extend_from_slice(b"\":");
                    self.value(item);
                }
                self.pending.push(b'}');
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {
                self.pending.extend_from_slice(value.to_string().as_bytes());
            }
        }
    }

    fn string(&mut self, text: &str) {
        self.pending.push(b'"');
        let mut rest = text;
        while let Some((before, name, after)) = next_placeholder(rest, &self.names) {
            escape_into(&mut self.pending, before);
            self.flush();
            self.parts.push(Part::Param(name.into()));
            rest = after;
        }
        escape_into(&mut self.pending, rest);
        self.pending.push(b'"');
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            let bytes = std::mem::take(&mut self.pending);
            self.parts.push(Part::Literal(bytes.into_boxed_slice()));
        }
    }
}

/// Splits `text` around its first `{name}` where `name` is one of `names`.
fn next_placeholder<'t>(text: &'t str, names: &[&str]) -> Option<(&'t str, &'t str, &'t str)> {
    let mut from = 0;
    while let Some(open) = text[from..].find('{').map(|at| from + at) {
        let inner = &text[open + 1..];
        let close = inner.find('}')?;
        let name = &inner[..close];
        if names.contains(&name) {
            return Some((&text[..open], name, &inner[close + 1..]));
        }
        from = open + 1;
    }
    None
}

/// Names of the parameters declared by a matchit pattern.
fn param_names(path: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let inner = &rest[open + 1..];
        if let Some(escaped) = inner.strip_prefix('{') {
            rest = escaped;
            continue;
        }
        let Some(close) = inner.find('}') else {
            break;
        };
        names.push(inner[..close].trim_start_matches('*'));
        rest = &inner[close + 1..];
    }
    names
}

/// Appends `text` escaped as the content of a JSON string.
fn escape_into(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &byte in text.as_bytes() {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]),
            _ => out.push(byte),
        }
    }
}

/// A JSON document of exactly `size` bytes (or `{}` below 2 bytes).
fn sized(size: usize) -> Bytes {
    const HEAD: &[u8] = br#"{"data":""#;
    const TAIL: &[u8] = br#""}"#;
    let mut out = Vec::with_capacity(size.max(2));
    if size < HEAD.len() + TAIL.len() {
        out.extend_from_slice(b"{}");
        out.resize(size.max(2), b' ');
    } else {
        out.extend_from_slice(HEAD);
        out.resize(size - TAIL.len(), b'x');
        out.extend_from_slice(TAIL);
    }
    Bytes::from(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{Body, param_names, sized};
    use serde_json::{Value, json};

    fn render(pattern: &str, body: &Value, path: &str) -> Value {
        let compiled = Body::compile(pattern, body, None);
        let mut router = matchit::Router::new();
        router.insert(pattern, ()).unwrap();
        let matched = router.at(path).unwrap();
        serde_json::from_slice(&compiled.render(&matched.params)).unwrap()
    }

    #[test]
    fn fixed_body_is_compact_json() {
        let body = json!({"a": [1, true, null, "x\"y"], "b": {"c": 1.5}});
        let Body::Fixed(bytes) = Body::compile("/x", &body, None) else {
            panic!("expected a fixed body");
        };
        assert_eq!(&bytes[..], serde_json::to_string(&body).unwrap().as_bytes());
    }

    #[test]
    fn placeholders_receive_decoded_escaped_params() {
        let body = json!({
            "id": "{id}",
            "label": "item {id} of {shop}",
            "unknown": "{other}",
            "nested": [{"ref": "{shop}/{id}"}],
            "{id}": 3,
        });
        let got = render("/shops/{shop}/items/{id}", &body, "/shops/s%201/items/a%22b%5C");
        assert_eq!(
            got,
            json!({
                "id": "a\"b\\",
                "label": "item a\"b\\ of s 1",
                "unknown": "{other}",
                "nested": [{"ref": "s 1/a\"b\\"}],
                "{id}": 3,
            })
        );
    }

    #[test]
    fn catch_all_params_are_substituted() {
        let got = render("/files/{*rest}", &json!({"path": "{rest}"}), "/files/a/b");
        assert_eq!(got, json!({"path": "a/b"}));
    }

    #[test]
    fn param_names_skip_escaped_braces() {
        assert_eq!(param_names("/{{lit}}/{a}/x{b}/{*c}"), ["a", "b", "c"]);
    }

    #[test]
    fn sized_bodies_are_json_of_the_exact_size() {
        for size in [0, 1, 2, 10, 11, 12, 1000, 1 << 20] {
            let bytes = sized(size);
            assert_eq!(bytes.len(), size.max(2));
            serde_json::from_slice::<Value>(&bytes).unwrap();
        }
    }
}
