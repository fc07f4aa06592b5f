//! Assembly of the grouped response body, `{"user":{…},"orders":[…],"_errors":{…}}`. Call
//! bodies are checked once as they arrive ([`check_json`](crate::check_json): strict, one
//! pass, no tree) and spliced in as they are: no re-serialisation. Keys are JSON-escaped once,
//! at config load ([`json_key`]).

use serde::Serialize;

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
    /// Attempts made, for a call to a backend with retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

/// The `_stale` entry for a call answered with a stale stored answer:
/// `{"reason":"timeout","age_s":42}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleEntry<'a> {
    /// `revalidating` (within `stale-while-revalidate`), or the error kind of the failed call
    /// (within `stale-if-error`).
    pub reason: &'a str,
    /// How long ago the answer was stored, in whole seconds.
    pub age_s: u64,
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

/// [`json_key`] of [`crate::names::ERRORS_KEY`], written once (a test holds the two together).
const ERRORS_MEMBER: &[u8] = b"\"_errors\":";
/// [`json_key`] of [`crate::names::STALE_KEY`].
const STALE_MEMBER: &[u8] = b"\"_stale\":";

/// Builds the response object in call order; errors go to a trailing `_errors` object, stale
/// answers are listed in a trailing `_stale` object.
#[derive(Debug)]
pub struct BodyBuilder {
    body: Vec<u8>,
    errors: Vec<u8>,
    stale: Vec<u8>,
}

impl BodyBuilder {
    /// Starts an object, reserving `capacity` bytes (the sum of the call bodies is a good hint).
    /// When it is the answer's exact size, the finished `Vec` is full, and turning it into
    /// `Bytes` allocates nothing more.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut body = Vec::with_capacity(capacity.max(2));
        body.push(b'{');
        Self { body, errors: Vec::new(), stale: Vec::new() }
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
        push_member(&mut self.errors, key, entry);
    }

    /// Records a call answered stale under `_stale`.
    pub fn push_stale(&mut self, key: &[u8], entry: &StaleEntry<'_>) {
        push_member(&mut self.stale, key, entry);
    }

    /// True when at least one error was recorded.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Closes the object and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        for (member, entries) in [(ERRORS_MEMBER, &self.errors), (STALE_MEMBER, &self.stale)] {
            if !entries.is_empty() {
                if self.body.len() > 1 {
                    self.body.push(b',');
                }
                self.body.extend_from_slice(member);
                self.body.extend_from_slice(entries);
                self.body.push(b'}');
            }
        }
        self.body.push(b'}');
        self.body
    }
}

/// Appends `key` and `entry` to the members of an object being built in `object` (opened by
/// the first, closed by [`BodyBuilder::finish`]).
fn push_member(object: &mut Vec<u8>, key: &[u8], entry: &impl Serialize) {
    object.push(if object.is_empty() { b'{' } else { b',' });
    object.extend_from_slice(key);
    // Serialising plain strings and integers into a Vec cannot fail.
    let _ = serde_json::to_writer(object, entry);
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
        let timeout =
            ErrorEntry { error: "timeout", elapsed_ms: 300, status: None, detail: None, attempts: None };
        b.push_error(&json_key("orders"), &timeout);
        let status = ErrorEntry {
            error: "status",
            elapsed_ms: 4,
            status: Some(503),
            detail: Some("x\"y"),
            attempts: Some(3),
        };
        b.push_error(&json_key("reviews"), &status);
        assert!(b.has_errors());
        let value = parse(&b.finish());
        assert_eq!(
            value,
            json!({"user": {}, "_errors": {
                "orders": {"error": "timeout", "elapsed_ms": 300},
                "reviews": {"error": "status", "elapsed_ms": 4, "status": 503, "detail": "x\"y", "attempts": 3}
            }})
        );
    }

    #[test]
    fn the_errors_member_is_the_reserved_key() {
        assert_eq!(&*json_key(crate::names::ERRORS_KEY), ERRORS_MEMBER);
        assert_eq!(&*json_key(crate::names::STALE_KEY), STALE_MEMBER);
    }

    #[test]
    fn only_errors_or_nothing_is_still_valid_json() {
        let mut b = BodyBuilder::with_capacity(0);
        assert!(!b.has_errors());
        let entry =
            ErrorEntry { error: "connect", elapsed_ms: 1, status: None, detail: None, attempts: None };
        b.push_error(&json_key("a"), &entry);
        assert_eq!(parse(&b.finish()), json!({"_errors": {"a": {"error": "connect", "elapsed_ms": 1}}}));
        assert_eq!(parse(&BodyBuilder::with_capacity(0).finish()), json!({}));
    }

    #[test]
    fn stale_answers_are_listed_after_the_errors() {
        let mut b = BodyBuilder::with_capacity(0);
        b.push_raw(&json_key("price"), b"{\"p\":1}");
        b.push_stale(&json_key("price"), &StaleEntry { reason: "timeout", age_s: 42 });
        let entry =
            ErrorEntry { error: "connect", elapsed_ms: 1, status: None, detail: None, attempts: None };
        b.push_error(&json_key("stock"), &entry);
        let bytes = b.finish();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"price":{"p":1},"_errors":{"stock":{"error":"connect","elapsed_ms":1}},"_stale":{"price":{"reason":"timeout","age_s":42}}}"#
        );
    }

    #[test]
    fn lists_are_spliced_element_by_element() {
        let mut b = BodyBuilder::with_capacity(0);
        b.push_list(&json_key("items"), &[&b"{\"a\":1}"[..], b"null", b"2"]);
        b.push_list::<&[u8]>(&json_key("none"), &[]);
        assert_eq!(parse(&b.finish()), json!({"items": [{"a": 1}, null, 2], "none": []}));
    }

    #[test]
    fn keys_are_escaped() {
        assert_eq!(&*json_key("a\"b\\c\n"), br#""a\"b\\c\n":"#);
    }
}
