//! One endpoint request: place the route parameters into every call's URL (or answer 400),
//! copy the allowed headers and query parameters, run all calls concurrently under the
//! endpoint deadline, and compose the answer — grouped raw bodies, `_errors`,
//! `X-Fanout-Complete`, `Server-Timing` — or a 502/504 problem when a required call failed.

use crate::plan::{CallPlan, EndpointPlan};
use crate::problem::{Body, Problem};
use bytes::Bytes;
use compose::{BodyBuilder, ErrorEntry, push_query_pair, server_timing};
use downstream::{CallError, CallOutcome, CallRequest};
use http::header::{CONNECTION, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Response, Uri};
use http_body_util::Full;
use tokio::time::Instant;

/// Header saying whether every call succeeded.
pub const X_FANOUT_COMPLETE: HeaderName = HeaderName::from_static("x-fanout-complete");
/// Header carrying the request id, taken from the client or generated.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// Serves `endpoint` for a request with these raw route `params`, `uri` and `headers`.
pub async fn serve(
    endpoint: &EndpointPlan,
    params: &matchit::Params<'_, '_>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response<Body> {
    let started = Instant::now();
    let deadline = started + endpoint.timeout;
    let values: Vec<&str> = endpoint.params.iter().map(|name| params.get(name).unwrap_or_default()).collect();
    let forwarded = forwarded_headers(endpoint, headers);
    let mut calls = Vec::with_capacity(endpoint.calls.len());
    for call in &endpoint.calls {
        let mut path_and_query = String::new();
        if let Err((index, reason)) = call.template.render(&values, &mut path_and_query) {
            let name = endpoint.params.get(index).map_or("", |n| &**n);
            return Problem::BadParameter { name, reason }.response();
        }
        append_forwarded_query(endpoint, call, uri, &mut path_and_query);
        calls.push(CallRequest {
            name: &call.name,
            backend: &call.backend,
            path_and_query,
            headers: forwarded.clone(),
            timeout: call.timeout,
        });
    }
    let outcomes = downstream::execute(calls, deadline).await;
    compose_response(endpoint, &outcomes, started)
}

/// Copies the endpoint's `forward_headers` (never one the client named in `Connection`, which
/// makes it hop-by-hop) plus `X-Request-Id`.
fn forwarded_headers(endpoint: &EndpointPlan, inbound: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(endpoint.forward_headers.len() + 1);
    for name in &endpoint.forward_headers {
        if named_in_connection(inbound, name) {
            continue;
        }
        for value in inbound.get_all(name) {
            out.append(name.clone(), value.clone());
        }
    }
    if let Some(id) = inbound.get(X_REQUEST_ID) {
        out.insert(X_REQUEST_ID, id.clone());
    }
    out
}

fn named_in_connection(inbound: &HeaderMap, name: &HeaderName) -> bool {
    inbound
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()))
}

/// Appends the endpoint's `forward_query` parameters found in the inbound query.
fn append_forwarded_query(endpoint: &EndpointPlan, call: &CallPlan, uri: &Uri, out: &mut String) {
    let Some(query) = uri.query() else { return };
    if endpoint.forward_query.is_empty() {
        return;
    }
    let mut first = !call.template.has_query();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if endpoint.forward_query.iter().any(|allowed| **allowed == *name) {
            push_query_pair(name, value, first, out);
            first = false;
        }
    }
}

/// Builds the 200 answer from the outcomes, or the problem for the first failed required call.
fn compose_response(endpoint: &EndpointPlan, outcomes: &[CallOutcome], started: Instant) -> Response<Body> {
    let timing = server_timing(
        endpoint.calls.iter().zip(outcomes).map(|(call, outcome)| (&*call.name, outcome.elapsed)),
        started.elapsed(),
    );
    let capacity = outcomes.iter().map(|o| o.result.as_ref().map_or(64, Bytes::len) + 24).sum();
    let mut body = BodyBuilder::with_capacity(capacity);
    for (call, outcome) in endpoint.calls.iter().zip(outcomes) {
        match &outcome.result {
            Ok(bytes) => body.push_raw(&call.key, bytes),
            Err(error) if call.required => {
                tracing::warn!(call = &*call.name, error.kind = error.kind(), %error, "required call failed");
                let mut response = Problem::RequiredCallFailed { call: &call.name, error }.response();
                insert_timing(&mut response, timing);
                return response;
            }
            Err(error) => body.push_error(&call.key, &error_entry(error, outcome)),
        }
    }
    let complete = !body.has_errors();
    let mut response = Response::new(Full::new(Bytes::from(body.finish())));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(X_FANOUT_COMPLETE, HeaderValue::from_static(if complete { "true" } else { "false" }));
    insert_timing(&mut response, timing);
    response
}

fn error_entry<'a>(error: &'a CallError, outcome: &CallOutcome) -> ErrorEntry<'a> {
    let (status, detail) = match error {
        CallError::Status(code) => (Some(*code), None),
        CallError::Connect(reason) | CallError::InvalidBody(reason) => (None, Some(reason.as_str())),
        CallError::Timeout(_) | CallError::Cancelled | CallError::TooLarge(_) => (None, None),
    };
    ErrorEntry {
        error: error.kind(),
        elapsed_ms: u64::try_from(outcome.elapsed.as_millis()).unwrap_or(u64::MAX),
        status,
        detail,
    }
}

fn insert_timing(response: &mut Response<Body>, timing: String) {
    if let Ok(value) = HeaderValue::try_from(timing) {
        response.headers_mut().insert(SERVER_TIMING, value);
    }
}
