//! Composing an endpoint's answer from its calls' outcomes: the problem for a failed required
//! call (502/504), or `200` with each call's result — spliced raw when it is not shaped,
//! shaped (`select`/`omit`/`rename`/`pick`) otherwise, grouped under its name or, with
//! `merge: flat`, merged into the root — plus `_errors`, `_stale` (calls answered from the cache
//! with a stale answer) and `X-Fanout-Complete`; and the `Server-Timing` value of every answer
//! ([`timing`]: each call, `desc="hit"` / `desc="stale"` when the cache answered it, `gateway` =
//! total minus the backend critical path, `total`), which the service sets once the request's total is known.
//! The call results in the answer never add up to more than the endpoint's
//! `max_response_body`: a call whose result would pass it fails with `too_large` (the
//! executor already holds the raw results to that budget; shaping and keys are counted here).

use crate::Body;
use crate::config::Merge;
use crate::plan::{CallPlan, EndpointPlan};
use crate::problem::Problem;
use crate::scratch;
use bytes::Bytes;
use compose::names::{ERRORS_KEY, GATEWAY_TIMING, STALE_KEY};
use compose::{BodyBuilder, ErrorEntry, StaleEntry, json_key, server_timing};
use downstream::{CacheUse, CallError, CallOutcome, Execution, Output};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, Response};
use http_body_util::Full;
use serde_json::{Map, Value};
use std::cell::Cell;
use std::time::Duration;

/// Header saying whether every call succeeded.
pub const X_FANOUT_COMPLETE: HeaderName = HeaderName::from_static("x-fanout-complete");

/// Header with each call's duration and the total, for DevTools.
pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// An endpoint's answer.
pub struct Answer {
    /// The `200` or the problem, without `Server-Timing` (see [`timing`]).
    pub response: Response<Body>,
    /// A `200` in which some calls failed (`X-Fanout-Complete: false`).
    pub partial: bool,
}

/// Builds the answer from `execution`; a successful one's headers go into `spare` (emptied
/// here), a map no longer needed.
pub fn compose(endpoint: &EndpointPlan, execution: &Execution, mut spare: HeaderMap) -> Answer {
    let finished =
        || endpoint.calls.iter().zip(&execution.outcomes).filter_map(|(c, o)| Some((c, o.as_ref()?)));
    if let Some(index) = execution.failed_required
        && let (Some(call), Some(Some(CallOutcome { result: Err(error), .. }))) =
            (endpoint.calls.get(index), execution.outcomes.get(index))
    {
        return required_failed(call, error);
    }
    let mut body = BodyBuilder::with_capacity(answer_size(endpoint, finished()));
    // What the call results may still add: `max_response_body` less the braces.
    let mut room = endpoint.max_response_body.saturating_sub(2);
    let mut flat = Map::new();
    for (call, outcome) in finished() {
        let mut element_errors = outcome.element_errors.clone();
        let result = outcome
            .result
            .as_ref()
            .map_err(CallError::clone)
            .and_then(|output| place(call, endpoint.merge, output, &mut element_errors))
            .and_then(|placed| {
                let size = placed.json_len() + call.key.len() + 1;
                room = room.checked_sub(size).ok_or(CallError::TooLarge(endpoint.max_response_body))?;
                Ok(placed)
            });
        for (index, error) in &element_errors {
            body.push_error(
                &json_key(&format!("{}[{index}]", call.name)),
                &error_entry(call, error, outcome),
            );
        }
        if let (Ok(_), Some(CacheUse::Stale { reason, age })) = (&result, outcome.cache) {
            body.push_stale(&call.key, &StaleEntry { reason: reason.as_str(), age_s: age.as_secs() });
        }
        match result {
            Ok(Placed::Raw(Output::Body(bytes))) => body.push_raw(&call.key, bytes),
            Ok(Placed::Raw(Output::List(elements))) => body.push_list(&call.key, elements),
            Ok(Placed::Text(text)) => body.push_raw(&call.key, &text),
            Ok(Placed::Fields(fields)) => flat.extend(fields),
            Err(error) if call.required => return required_failed(call, &error),
            Err(error) => body.push_error(&call.key, &error_entry(call, &error, outcome)),
        }
    }
    for (name, value) in &flat {
        body.push_value(&json_key(name), value);
    }
    let partial = body.has_errors();
    let mut response = Response::new(Full::new(Bytes::from(body.finish())));
    spare.clear();
    *response.headers_mut() = spare;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(X_FANOUT_COMPLETE, HeaderValue::from_static(if partial { "false" } else { "true" }));
    Answer { response, partial }
}

/// The answer's exact size when every finished call succeeded and is spliced raw (the usual
/// case: the body then becomes `Bytes` without a second allocation), else an estimate.
fn answer_size<'e>(
    endpoint: &EndpointPlan,
    finished: impl Iterator<Item = (&'e CallPlan, &'e CallOutcome)>,
) -> usize {
    let (mut size, mut raw) = (1, endpoint.merge == Merge::Group);
    for (call, outcome) in finished {
        raw &= call.shape.is_none() && outcome.element_errors.is_empty() && outcome.result.is_ok();
        // Its key, its JSON and the comma or closing brace after it.
        size += call.key.len() + outcome.result.as_ref().map_or(64, Output::json_len) + 1;
    }
    if raw { size.max(2) } else { size + 64 }
}

/// How a call's result goes into the answer.
enum Placed<'o> {
    /// Its JSON as received, under its name.
    Raw(&'o Output),
    /// A shaped value, serialised, under its name.
    Text(Vec<u8>),
    /// Fields to merge into the root (`merge: flat`).
    Fields(Map<String, Value>),
}

impl Placed<'_> {
    /// How many bytes it adds to the answer (for `Fields`, at most this many: a later call may
    /// replace a field).
    fn json_len(&self) -> usize {
        match self {
            Placed::Raw(output) => output.json_len(),
            Placed::Text(text) => text.len(),
            Placed::Fields(fields) => {
                let mut counter = ByteCounter(0);
                // Writing into a counter cannot fail.
                let _ = serde_json::to_writer(&mut counter, fields);
                counter.0
            }
        }
    }
}

/// An `io::Write` that only counts the bytes written to it.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Shapes a call's result if it has to be; unshaped, grouped results are never parsed. A call
/// over a list is shaped element by element: an element that cannot be shaped becomes `null`
/// and is added to `element_errors`, or fails the call with `on_element_error: fail`.
fn place<'o>(
    call: &CallPlan,
    merge: Merge,
    output: &'o Output,
    element_errors: &mut Vec<(usize, CallError)>,
) -> Result<Placed<'o>, CallError> {
    if call.shape.is_none() && merge == Merge::Group {
        return Ok(Placed::Raw(output));
    }
    let value = output.parse().map_err(|e| CallError::InvalidBody(e.to_string()))?;
    let value = match (&call.shape, value) {
        (None, value) => value,
        (Some(shape), Value::Array(items)) if matches!(output, Output::List(_)) => {
            let mut shaped = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                shaped.push(match item {
                    Value::Null => Value::Null,
                    item => match shape.apply(item) {
                        Ok(value) => value,
                        Err(reason) if call.fail_on_element_error => {
                            return Err(CallError::InvalidBody(reason));
                        }
                        Err(reason) => {
                            element_errors.push((index, CallError::InvalidBody(reason)));
                            Value::Null
                        }
                    },
                });
            }
            Value::Array(shaped)
        }
        (Some(shape), value) => shape.apply(value).map_err(CallError::InvalidBody)?,
    };
    match (merge, value) {
        // Serialising a `Value` into a Vec cannot fail.
        (Merge::Group, value) => Ok(Placed::Text(serde_json::to_vec(&value).unwrap_or_default())),
        (Merge::Flat, Value::Object(fields)) => {
            match [ERRORS_KEY, STALE_KEY].into_iter().find(|key| fields.contains_key(*key)) {
                Some(reserved) => Err(CallError::InvalidBody(format!(
                    "has a top-level `{reserved}` field, which merge: flat reserves for the gateway"
                ))),
                None => Ok(Placed::Fields(fields)),
            }
        }
        (Merge::Flat, other) => Err(CallError::InvalidBody(format!(
            "merge: flat needs an object, got {}",
            match other {
                Value::Array(_) => "a list",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            }
        ))),
    }
}

fn required_failed(call: &CallPlan, error: &CallError) -> Answer {
    tracing::warn!(call = &*call.name, error.kind = error.kind(), %error, "required call failed");
    Answer { response: Problem::RequiredCallFailed { call: &call.name, error }.response(), partial: false }
}

fn error_entry<'a>(call: &CallPlan, error: &'a CallError, outcome: &CallOutcome) -> ErrorEntry<'a> {
    let (status, detail) = match error {
        CallError::Status(code) => (Some(*code), None),
        CallError::Connect(reason) | CallError::InvalidBody(reason) | CallError::InvalidReference(reason) => {
            (None, Some(reason.as_str()))
        }
        CallError::DependencyFailed(call) => (None, Some(call.as_str())),
        CallError::Timeout(_)
        | CallError::Cancelled
        | CallError::TooLarge(_)
        | CallError::FanoutLimit { .. }
        | CallError::Overloaded(_)
        | CallError::CircuitOpen(_) => (None, None),
    };
    ErrorEntry {
        error: error.kind(),
        elapsed_ms: u64::try_from(outcome.elapsed.as_millis()).unwrap_or(u64::MAX),
        status,
        detail,
        attempts: (call.backend.retry().is_some() && outcome.attempts > 0).then_some(outcome.attempts),
    }
}

thread_local! {
    /// Where this thread formats `Server-Timing` values (see [`timing`]).
    static TIMING_BUFFER: Cell<String> = const { Cell::new(String::new()) };
}

/// The `Server-Timing` value of an answer that took `total`: when an endpoint `ran` its calls,
/// each finished call and `gateway` (the total minus the critical path of backend time), then
/// `total`.
pub fn timing(ran: Option<(&EndpointPlan, &Execution)>, total: Duration) -> Option<HeaderValue> {
    let Some((endpoint, execution)) = ran else { return timing_value([], total) };
    let elapsed = |call: usize| {
        execution.outcomes.get(call).and_then(Option::as_ref).map_or(Duration::ZERO, |o| o.elapsed)
    };
    let critical = endpoint.graph.critical_path(elapsed);
    let calls = endpoint.calls.iter().zip(&execution.outcomes);
    let entries = calls.filter_map(|(call, outcome)| {
        let outcome = outcome.as_ref()?;
        let desc = outcome.cache.map(CacheUse::as_str);
        Some((&*call.name, outcome.elapsed, desc))
    });
    timing_value(entries.chain([(GATEWAY_TIMING, total.saturating_sub(critical), None)]), total)
}

/// The `Server-Timing` value for these entries and `total` (formatted in this thread's buffer,
/// see [`scratch`]).
fn timing_value<'a>(
    entries: impl IntoIterator<Item = (&'a str, Duration, Option<&'a str>)>,
    total: Duration,
) -> Option<HeaderValue> {
    scratch::with(&TIMING_BUFFER, |buffer| {
        server_timing(entries, total, buffer);
        HeaderValue::from_str(buffer).ok()
    })
}
