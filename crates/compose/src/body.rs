//! Assembly of the grouped response body, `{"user":{…},"orders":[…],"_errors":{…}}`. Call
//! bodies are checked once as they arrive ([`check_json`]: strict, but no tree) and spliced in
//! as they are: no re-serialisation. Keys are JSON-escaped once, at config load ([`json_key`]).

use serde::Serialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// The most containers a backend body may nest. `serde_json` reads at most 127; an answer wraps
/// a body in its own object and, for a call over a list, in a list too, so bodies stop two
/// levels short: every answer fanout composes still parses with a default `serde_json` (and
/// with the limits of most other parsers, e.g. 128 in several JavaScript and Go decoders).
pub const MAX_BODY_NESTING: usize = 125;

/// Checks that `bytes` is one JSON document that may be spliced raw: what `serde_json` parses
/// into a `Value` — valid UTF-8 (also in `\u` escapes: no lone surrogates), numbers in range —
/// nested at most [`MAX_BODY_NESTING`] containers deep. No tree is built: strings are borrowed,
/// and only an escaped one is copied (into a reused buffer).
pub fn check_json(bytes: &[u8]) -> Result<(), String> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    Level(MAX_BODY_NESTING).deserialize(&mut deserializer).map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())
}

/// A JSON value being read through and dropped, with how many more containers may open inside
/// it: every string visited as `str`, every number as a number.
#[derive(Clone, Copy)]
struct Level(usize);

impl Level {
    /// The level inside a container that opens here, or an error when none may.
    fn inner<E: serde::de::Error>(self) -> Result<Level, E> {
        match self.0.checked_sub(1) {
            Some(left) => Ok(Level(left)),
            None => Err(E::custom(format!("nested deeper than {MAX_BODY_NESTING} levels"))),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Level {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.inner()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.inner()?;
        while map.next_key_seed(inner)?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// The `_errors` entry for a call that failed: `{"error":"timeout","elapsed_ms":300}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorEntry<'a> {
    /// The error kind (`timeout`, `connect`, `status`, `invalid_body`, `too_large`, …).
    pub error: &'a str,
    /// How long the call ran before it failed, in whole milliseconds.
    pub elapsed_ms: u64,
    /// The backend's status code, for `status` errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// A human-readable reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
}

/// Writes the JSON list `[a,b,c]` of already-validated JSON elements.
pub fn write_list<E: AsRef<[u8]>>(elements: &[E], out: &mut Vec<u8>) {
    out.push(b'[');
    for (index, element) in elements.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(element.as_ref());
    }
    out.push(b']');
}

/// Returns `"name":` with `name` JSON-escaped, ready to be copied in front of a value.
pub fn json_key(name: &str) -> Box<[u8]> {
    let mut key = serde_json::to_vec(name).unwrap_or_default();
    key.push(b':');
    key.into_boxed_slice()
}

/// Builds the response object in call order; errors go to a trailing `_errors` object.
#[derive(Debug)]
pub struct BodyBuilder {
    body: Vec<u8>,
    errors: Vec<u8>,
}

impl BodyBuilder {
    /// Starts an object, reserving `capacity` bytes (the sum of the call bodies is a good hint).
    pub fn with_capacity(capacity: usize) -> Self {
        let mut body = Vec::with_capacity(capacity + 64);
        body.push(b'{');
        Self { body, errors: Vec::new() }
    }

    /// Appends `key` (from [`json_key`]) and a raw JSON value that the caller validated.
    pub fn push_raw(&mut self, key: &[u8], raw_json: &[u8]) {
        if self.body.len() > 1 {
            self.body.push(b',');
        }
        self.body.extend_from_slice(key);
        self.body.extend_from_slice(raw_json);
    }

    /// Appends `key` (from [`json_key`]) and a list of raw JSON elements that the caller
    /// validated, as `[a,b,c]`.
    pub fn push_list<E: AsRef<[u8]>>(&mut self, key: &[u8], elements: &[E]) {
        if self.body.len() > 1 {
            self.body.push(b',');
        }
        self.body.extend_from_slice(key);
        write_list(elements, &mut self.body);
    }

    /// Appends `key` (from [`json_key`]) and `value`, serialised.
    pub fn push_value(&mut self, key: &[u8], value: &serde_json::Value) {
        if self.body.len() > 1 {
            self.body.push(b',');
        }
        self.body.extend_from_slice(key);
        // Serialising a `Value` into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.body, value);
    }

    /// Records a failed call under `_errors`.
    pub fn push_error(&mut self, key: &[u8], entry: &ErrorEntry<'_>) {
        self.errors.push(if self.errors.is_empty() { b'{' } else { b',' });
        self.errors.extend_from_slice(key);
        // Serialising plain strings and integers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.errors, entry);
    }

    /// True when at least one error was recorded.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Closes the object and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        if !self.errors.is_empty() {
            if self.body.len() > 1 {
                self.body.push(b',');
            }
            self.body.extend_from_slice(b"\"_errors\":");
            self.body.extend_from_slice(&self.errors);
            self.body.push(b'}');
        }
        self.body.push(b'}');
        self.body
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn raw_bodies_are_grouped_in_call_order() {
        let mut b = BodyBuilder::with_capacity(0);
        b.push_raw(&json_key("user"), br#"{"id": 1}"#);
        b.push_raw(&json_key("orders"), b" [1,2] ");
        b.push_raw(&json_key("n"), b"null");
        let bytes = b.finish();
        assert_eq!(bytes, br#"{"user":{"id": 1},"orders": [1,2] ,"n":null}"#);
        assert_eq!(parse(&bytes), json!({"user": {"id": 1}, "orders": [1, 2], "n": null}));
    }

    #[test]
    fn errors_follow_the_bodies() {
        let mut b = BodyBuilder::with_capacity(16);
        b.push_raw(&json_key("user"), b"{}");
        let timeout = ErrorEntry { error: "timeout", elapsed_ms: 300, status: None, detail: None };
        b.push_error(&json_key("orders"), &timeout);
        let status = ErrorEntry { error: "status", elapsed_ms: 4, status: Some(503), detail: Some("x\"y") };
        b.push_error(&json_key("reviews"), &status);
        assert!(b.has_errors());
        let value = parse(&b.finish());
        assert_eq!(
            value,
            json!({"user": {}, "_errors": {
                "orders": {"error": "timeout", "elapsed_ms": 300},
                "reviews": {"error": "status", "elapsed_ms": 4, "status": 503, "detail": "x\"y"}
            }})
        );
    }

    #[test]
    fn only_errors_or_nothing_is_still_valid_json() {
        let mut b = BodyBuilder::with_capacity(0);
        assert!(!b.has_errors());
        let entry = ErrorEntry { error: "connect", elapsed_ms: 1, status: None, detail: None };
        b.push_error(&json_key("a"), &entry);
        assert_eq!(parse(&b.finish()), json!({"_errors": {"a": {"error": "connect", "elapsed_ms": 1}}}));
        assert_eq!(parse(&BodyBuilder::with_capacity(0).finish()), json!({}));
    }

    #[test]
    fn lists_are_spliced_element_by_element() {
        let mut b = BodyBuilder::with_capacity(0);
        b.push_list(&json_key("items"), &[&b"{\"a\":1}"[..], b"null", b"2"]);
        b.push_list::<&[u8]>(&json_key("none"), &[]);
        assert_eq!(parse(&b.finish()), json!({"items": [{"a": 1}, null, 2], "none": []}));
    }

    #[test]
    fn check_json_accepts_what_serde_json_parses_within_the_nesting_limit() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes();
        let cases: [&[u8]; 12] = [
            br#" {"a": [1, -2.5e3, "x\n\u00e9", true, null], "b": {}} "#,
            b"\"\xff\"",
            b"{\"\xc3\":1}",
            br#""\ud800""#,
            br#""\ud83d\ude00""#,
            b"1e400",
            b"-0",
            b"[1,]",
            b"{} {}",
            b"",
            &nested(MAX_BODY_NESTING),
            &nested(MAX_BODY_NESTING + 1),
        ];
        for bytes in cases {
            let strict = serde_json::from_slice::<Value>(bytes).is_ok();
            let shallow = bytes.iter().filter(|b| **b == b'[').count() <= MAX_BODY_NESTING;
            assert_eq!(check_json(bytes).is_ok(), strict && shallow, "{:?}", String::from_utf8_lossy(bytes));
        }
        assert!(check_json(&nested(MAX_BODY_NESTING)).is_ok());
        let error = check_json(&nested(MAX_BODY_NESTING + 1)).unwrap_err();
        assert!(error.contains("nested deeper than 125 levels"), "{error}");
        let deep_object = format!("{}1{}", "{\"a\":".repeat(126), "}".repeat(126));
        assert!(check_json(deep_object.as_bytes()).is_err(), "objects count too");
        // The deepest body, in a list call's answer ({"items":[body]}), still parses.
        let mut answer = BodyBuilder::with_capacity(0);
        answer.push_list(&json_key("items"), &[nested(MAX_BODY_NESTING)]);
        assert!(serde_json::from_slice::<Value>(&answer.finish()).is_ok());
        assert!(check_json(b"\"\xff\"").is_err(), "invalid UTF-8 in a string");
        assert!(check_json(br#""\ud800""#).is_err(), "a lone surrogate");
    }

    #[test]
    fn keys_are_escaped() {
        assert_eq!(&*json_key("a\"b\\c\n"), br#""a\"b\\c\n":"#);
    }
}
