//! One endpoint request: place the route parameters into every call's URL (or answer 400),
//! copy the allowed headers and query parameters, run all calls concurrently under the
//! endpoint deadline, and compose the answer — grouped raw bodies, `_errors`,
//! `X-Fanout-Complete`, `Server-Timing` — or a 502/504 problem when a required call failed.

use crate::plan::EndpointPlan;
use crate::problem::{Body, Problem};
use bytes::Bytes;
use compose::{BodyBuilder, ErrorEntry, push_query_pair, server_timing};
use downstream::{CallError, CallOutcome, CallRequest, Execution};
use http::header::{CONNECTION, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Response, Uri};
use http_body_util::Full;
use tokio::time::Instant;

/// Header saying whether every call succeeded.
pub const X_FANOUT_COMPLETE: HeaderName = HeaderName::from_static("x-fanout-complete");
/// Header carrying the request id, taken from the client or generated.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Header with each call's duration and the total, for DevTools.
pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// Serves `endpoint` for a request with these raw route `params`, `uri` and `headers`.
pub async fn serve(
    endpoint: &EndpointPlan,
    params: &matchit::Params<'_, '_>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response<Body> {
    let started = Instant::now();
    let deadline = started + endpoint.timeout;
    // matchit yields parameters in path order, the order templates index them by.
    let values: Vec<&str> = params.iter().map(|(_, value)| value).collect();
    let forwarded = forwarded_headers(endpoint, headers);
    let query = forwarded_query(endpoint, uri);
    let mut calls = Vec::with_capacity(endpoint.calls.len());
    for call in &endpoint.calls {
        let mut path_and_query = String::new();
        if let Err((index, reason)) = call.template.render(&values, &mut path_and_query) {
            let name = endpoint.params.get(index).map_or("", |n| &**n);
            return Problem::BadParameter { name, reason }.response();
        }
        for (i, (name, value)) in query.iter().enumerate() {
            push_query_pair(name, value, i == 0 && !call.template.has_query(), &mut path_and_query);
        }
        calls.push(CallRequest {
            name: &call.name,
            backend: &call.backend,
            path_and_query,
            headers: forwarded.clone(),
            timeout: call.timeout,
            required: call.required,
        });
    }
    let execution = downstream::execute(calls, deadline).await;
    compose_response(endpoint, &execution, started)
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

/// The inbound query parameters named in the endpoint's `forward_query`, raw, in order.
fn forwarded_query<'u>(endpoint: &EndpointPlan, uri: &'u Uri) -> Vec<(&'u str, &'u str)> {
    let Some(query) = uri.query().filter(|_| !endpoint.forward_query.is_empty()) else {
        return Vec::new();
    };
    query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .filter(|(name, _)| endpoint.forward_query.iter().any(|allowed| **allowed == **name))
        .collect()
}

/// Builds the 200 answer from the outcomes, or the problem for the failed required call.
fn compose_response(endpoint: &EndpointPlan, execution: &Execution, started: Instant) -> Response<Body> {
    let finished = endpoint.calls.iter().zip(&execution.outcomes).filter_map(|(c, o)| Some((c, o.as_ref()?)));
    let timing = server_timing(finished.clone().map(|(call, o)| (&*call.name, o.elapsed)), started.elapsed());
    if let Some((call, Err(error))) = execution
        .failed_required
        .and_then(|i| Some((endpoint.calls.get(i)?, &execution.outcomes.get(i)?.as_ref()?.result)))
    {
        tracing::warn!(call = &*call.name, error.kind = error.kind(), %error, "required call failed");
        let mut response = Problem::RequiredCallFailed { call: &call.name, error }.response();
        insert_timing(&mut response, timing);
        return response;
    }
    let capacity = finished.clone().map(|(_, o)| o.result.as_ref().map_or(64, Bytes::len) + 24).sum();
    let mut body = BodyBuilder::with_capacity(capacity);
    for (call, outcome) in finished {
        match &outcome.result {
            Ok(bytes) => body.push_raw(&call.key, bytes),
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

/// Sets `Server-Timing` on `response`.
pub fn insert_timing(response: &mut Response<Body>, timing: String) {
    if let Ok(value) = HeaderValue::try_from(timing) {
        response.headers_mut().insert(SERVER_TIMING, value);
    }
}
