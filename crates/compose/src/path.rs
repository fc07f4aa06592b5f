//! JSON paths such as `items[0].sku`, `meta.rating` or `[*].seller_id`: parsed once at config
//! load, used to read values out of call responses (templates) and to shape them (`select`,
//! `omit`, `pick`). `[*]` stands for every element of a list (fan-out).

use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An object field.
    Field(Box<str>),
    /// A list element.
    Index(usize),
    /// Every list element (`[*]`).
    Each,
}

/// A parsed path; the empty path is the value itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonPath {
    segments: Vec<Segment>,
}

/// Why a path is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path {path:?}: {reason}")]
pub struct PathError {
    path: String,
    reason: &'static str,
}

/// Why a path does not lead to a usable value in a document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// A field or index is absent.
    #[error("{0} is missing")]
    Missing(String),
    /// A step expected an object or a list and found something else.
    #[error("{0} is not {1}")]
    WrongType(String, &'static str),
}

impl JsonPath {
    /// Parses `a.b[0].c`, `[*].id`, `list[*]`; field names are any text without `.`, `[`, `]`.
    pub fn parse(text: &str) -> Result<Self, PathError> {
        let error = |reason| PathError { path: text.to_owned(), reason };
        let mut segments = Vec::new();
        let mut rest = text;
        let mut expect_field = !text.starts_with('[');
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('[') {
                let close = after.find(']').ok_or_else(|| error("unclosed ["))?;
                let inside = &after[..close];
                segments.push(match inside {
                    "*" => Segment::Each,
                    _ => Segment::Index(inside.parse().map_err(|_| error("index must be a number or *"))?),
                });
                rest = &after[close + 1..];
                expect_field = false;
                if let Some(after_dot) = rest.strip_prefix('.') {
                    rest = after_dot;
                    expect_field = true;
                } else if !rest.is_empty() && !rest.starts_with('[') {
                    return Err(error("expected . or [ after ]"));
                }
            } else {
                if !expect_field {
                    return Err(error("expected . before a field"));
                }
                let end = rest.find(['.', '[', ']']).unwrap_or(rest.len());
                if end == 0 {
                    return Err(error("empty field name"));
                }
                segments.push(Segment::Field(rest[..end].into()));
                rest = &rest[end..];
                expect_field = false;
                if let Some(after_dot) = rest.strip_prefix('.') {
                    rest = after_dot;
                    expect_field = true;
                    if rest.is_empty() {
                        return Err(error("ends with ."));
                    }
                } else if rest.starts_with(']') {
                    return Err(error("unmatched ]"));
                }
            }
        }
        Ok(Self { segments })
    }

    /// The steps of the path.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// True for the empty path.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// How many `[*]` the path holds.
    pub fn each_count(&self) -> usize {
        self.segments.iter().filter(|s| **s == Segment::Each).count()
    }

    /// Splits at the first `[*]`: the path to the list and the path inside each element.
    pub fn split_each(&self) -> Option<(JsonPath, JsonPath)> {
        let at = self.segments.iter().position(|s| *s == Segment::Each)?;
        Some((
            JsonPath { segments: self.segments[..at].to_vec() },
            JsonPath { segments: self.segments[at + 1..].to_vec() },
        ))
    }

    /// Follows the path in `value`. `[*]` is not allowed here (use [`JsonPath::split_each`]).
    pub fn lookup<'v>(&self, value: &'v Value) -> Result<&'v Value, LookupError> {
        let mut current = value;
        for (i, segment) in self.segments.iter().enumerate() {
            let here = || JsonPath { segments: self.segments[..=i].to_vec() }.to_string();
            current = match (segment, current) {
                (Segment::Field(name), Value::Object(map)) => {
                    map.get(&**name).ok_or_else(|| LookupError::Missing(here()))?
                }
                (Segment::Field(_), _) => return Err(LookupError::WrongType(parent(self, i), "an object")),
                (Segment::Index(index), Value::Array(items)) => {
                    items.get(*index).ok_or_else(|| LookupError::Missing(here()))?
                }
                (Segment::Index(_) | Segment::Each, _) => {
                    return Err(LookupError::WrongType(parent(self, i), "a list"));
                }
            };
        }
        Ok(current)
    }
}

/// The path up to (not including) step `i`, for messages; `the value` for the root.
fn parent(path: &JsonPath, i: usize) -> String {
    if i == 0 {
        "the value".to_owned()
    } else {
        JsonPath { segments: path.segments[..i].to_vec() }.to_string()
    }
}

/// The text of a scalar for a URL: strings as they are, numbers and booleans as written.
/// `null`, objects and lists have no text and give the reason.
pub fn scalar_text(value: &Value) -> Result<Cow<'_, str>, &'static str> {
    match value {
        Value::String(text) => Ok(Cow::Borrowed(text)),
        Value::Number(number) => Ok(Cow::Owned(number.to_string())),
        Value::Bool(flag) => Ok(Cow::Borrowed(if *flag { "true" } else { "false" })),
        Value::Null => Err("is null"),
        Value::Object(_) => Err("is an object"),
        Value::Array(_) => Err("is a list"),
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Field(name) if i == 0 => f.write_str(name)?,
                Segment::Field(name) => write!(f, ".{name}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Each => f.write_str("[*]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_prints_paths() {
        for text in ["a", "a.b", "items[0].sku", "[*].seller_id", "list[*]", "a[1][2].b", ""] {
            assert_eq!(JsonPath::parse(text).unwrap().to_string(), text);
        }
        let path = JsonPath::parse("items[*].sku").unwrap();
        assert_eq!(
            path.segments(),
            [Segment::Field("items".into()), Segment::Each, Segment::Field("sku".into())]
        );
        assert_eq!(path.each_count(), 1);
    }

    #[test]
    fn rejects_malformed_paths() {
        for (text, reason) in [
            ("a..b", "empty field name"),
            ("a.", "ends with ."),
            ("a[", "unclosed ["),
            ("a[x]", "index must be a number or *"),
            ("a[0]b", "expected . or [ after ]"),
            ("a]", "unmatched ]"),
            (".a", "empty field name"),
        ] {
            assert_eq!(JsonPath::parse(text).unwrap_err().reason, reason, "{text}");
        }
    }

    #[test]
    fn looks_up_values_with_precise_errors() {
        let doc = json!({"items": [{"sku": "A1", "qty": 2}], "meta": {"open": true}, "n": null});
        let get = |p: &str| JsonPath::parse(p).unwrap().lookup(&doc).cloned();
        assert_eq!(get("items[0].sku"), Ok(json!("A1")));
        assert_eq!(get("meta.open"), Ok(json!(true)));
        assert_eq!(get(""), Ok(doc.clone()));
        assert_eq!(get("items[3].sku"), Err(LookupError::Missing("items[3]".into())));
        assert_eq!(get("meta.closed"), Err(LookupError::Missing("meta.closed".into())));
        assert_eq!(get("items.sku"), Err(LookupError::WrongType("items".into(), "an object")));
        assert_eq!(get("meta[0]"), Err(LookupError::WrongType("meta".into(), "a list")));
        assert_eq!(get("n.x"), Err(LookupError::WrongType("n".into(), "an object")));
    }

    #[test]
    fn splits_at_the_first_each() {
        let (list, inner) = JsonPath::parse("orders.items[*].sku").unwrap().split_each().unwrap();
        assert_eq!((list.to_string(), inner.to_string()), ("orders.items".into(), "sku".into()));
        let (list, inner) = JsonPath::parse("[*]").unwrap().split_each().unwrap();
        assert!(list.is_empty() && inner.is_empty());
        assert!(JsonPath::parse("a.b").unwrap().split_each().is_none());
    }

    #[test]
    fn scalars_have_text_and_others_say_why_not() {
        assert_eq!(scalar_text(&json!("x y")).unwrap(), "x y");
        assert_eq!(scalar_text(&json!(42)).unwrap(), "42");
        assert_eq!(scalar_text(&json!(1.5)).unwrap(), "1.5");
        assert_eq!(scalar_text(&json!(false)).unwrap(), "false");
        assert_eq!(scalar_text(&json!(null)), Err("is null"));
        assert_eq!(scalar_text(&json!({})), Err("is an object"));
        assert_eq!(scalar_text(&json!([1])), Err("is a list"));
    }
}
