//! The `body` target: a backend response body through the strict JSON check, the raw splice
//! and shaping. Input: one line of shaping options (space-separated `select:a.b`, `omit:x`,
//! `pick:data[0]`, `rename:a=b`; may be empty), a newline, then the body bytes.
//!
//! Invariants: no panic; `compose::check_json` accepts exactly what `serde_json` parses into a
//! `Value` and nests at most `MAX_BODY_NESTING` containers deep (differential); a checked body
//! spliced raw into an answer, even as a list element, reads back as the same value (keys in
//! the same order; numbers to the last bit or so, see [`same`]); shaping either fails with a
//! reason or gives a value that splices the same way.

use compose::{BodyBuilder, ErrorEntry, MAX_BODY_NESTING, Shape, check_json, json_key};
use serde_json::Value;

/// Checks, splices and shapes the body in `data`.
pub fn body(data: &[u8]) {
    let (options, bytes) = match data.iter().position(|b| *b == b'\n') {
        Some(newline) => (&data[..newline], &data[newline + 1..]),
        None => (&b""[..], data),
    };
    let checked = check_json(bytes);
    let parsed = serde_json::from_slice::<Value>(bytes).ok().filter(|v| nesting(v) <= MAX_BODY_NESTING);
    let value = match (checked, parsed) {
        (Ok(()), Some(value)) => value,
        (Err(_), None) => return,
        (checked, parsed) => {
            panic!("check_json says {checked:?} but serde_json (within the nesting limit) says {parsed:?}")
        }
    };
    let mut answer = BodyBuilder::with_capacity(bytes.len());
    answer.push_raw(&json_key("raw"), bytes);
    splices_as(answer, &value);
    let mut listed = BodyBuilder::with_capacity(bytes.len());
    listed.push_list(&json_key("raw"), &[bytes]);
    splices_as(listed, &Value::Array(vec![value.clone()]));
    let Some(shape) = shape(&String::from_utf8_lossy(options)) else { return };
    match shape.apply(value) {
        Ok(shaped) => {
            let mut answer = BodyBuilder::with_capacity(0);
            answer.push_value(&json_key("raw"), &shaped);
            splices_as(answer, &shaped);
        }
        Err(reason) => assert!(!reason.is_empty()),
    }
}

/// Finishes `answer` (with an `_errors` entry) and checks that it reads back with `value`
/// under `raw`.
fn splices_as(mut answer: BodyBuilder, value: &Value) {
    let entry = ErrorEntry {
        error: "timeout",
        elapsed_ms: 1,
        status: None,
        detail: Some("x\"\n"),
        attempts: Some(2),
    };
    answer.push_error(&json_key("late"), &entry);
    let document = answer.finish();
    match serde_json::from_slice::<Value>(&document) {
        Ok(read) => {
            assert!(same(&read["raw"], value), "the spliced value changed: {} ≠ {value}", read["raw"])
        }
        Err(error) => panic!("a checked body spliced into an answer that does not parse: {error}"),
    }
}

/// Equal values, where numbers may differ in the last bit: without its `float_roundtrip`
/// feature, `serde_json` may read the same long number one unit in the last place apart
/// depending on what surrounds it.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= x.abs().max(y.abs()) * 4.0 * f64::EPSILON,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((kx, x), (ky, y))| kx == ky && same(x, y))
        }
        _ => a == b,
    }
}

/// How many containers deep `value` nests (0 for a scalar).
fn nesting(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// The shape the options line describes, when it is a valid one.
fn shape(options: &str) -> Option<Shape> {
    let (mut select, mut omit, mut rename, mut pick) = (Vec::new(), Vec::new(), Vec::new(), None);
    for option in options.split(' ').filter(|o| !o.is_empty()) {
        match option.split_once(':') {
            Some(("select", path)) => select.push(path.to_owned()),
            Some(("omit", path)) => omit.push(path.to_owned()),
            Some(("pick", path)) => pick = Some(path),
            Some(("rename", pair)) => {
                let (from, to) = pair.split_once('=').unwrap_or((pair, ""));
                rename.push((from.to_owned(), to.to_owned()));
            }
            _ => {}
        }
    }
    Shape::new(&select, &omit, &rename, pick).ok()
}
