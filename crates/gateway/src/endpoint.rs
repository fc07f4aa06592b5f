//! One endpoint request: check the route parameters (or answer 400), then run the call graph —
//! each call's URL rendered from the route parameters and the responses it depends on, the
//! moment those are in — with the allowed headers and query parameters, under the endpoint
//! deadline; [`crate::respond`] composes the answer.

use crate::Body;
use crate::plan::{CallPlan, EndpointPlan};
use crate::problem::Problem;
use crate::respond;
use crate::scratch;
use crate::telemetry::metrics::PlanMetrics;
use crate::telemetry::{otel, trace_context};
use bytes::Bytes;
use compose::{Inputs, push_query_pair};
use downstream::{CallError, CallOutcome, CallRequest, Execution, FanOut, ForwardHeaders, Propagate, Step};
use http::header::{CONNECTION, COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue, Response, Uri};
use serde_json::Value;
use std::cell::Cell;
use std::time::Duration;
use tokio::time::Instant;

/// Route parameters kept on the stack (more go to the heap).
const STACK_PARAMS: usize = 8;

/// Header carrying the request id, taken from the client or generated.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What serving one endpoint request came to.
pub struct Served {
    /// The answer, without `Server-Timing` (the service sets it).
    pub response: Response<Body>,
    /// The calls as they ran (for `Server-Timing`), `None` when the request was refused first.
    pub execution: Option<Execution>,
    /// The calls' outcomes (`product:ok price:timeout …`), when the request line is logged.
    pub calls: Option<String>,
}

/// Serves `endpoint` for a request with these raw route `params`, `uri` and `headers` (whose
/// map, emptied, carries the answer's headers: hyper parses the connection's next request into
/// the map of its last response, so the maps go round without allocating), within the
/// client's `budget` when it gave one and it is shorter than the endpoint's timeout; `logged`
/// when the request's log line is written.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    endpoint: &EndpointPlan,
    budget: Option<Duration>,
    metrics: &PlanMetrics,
    propagate: bool,
    logged: bool,
    params: &matchit::Params<'_, '_>,
    uri: &Uri,
    headers: HeaderMap,
) -> Served {
    let deadline = Instant::now() + budget.map_or(endpoint.timeout, |budget| budget.min(endpoint.timeout));
    // matchit yields parameters in path order, the order templates index them by. Up to
    // STACK_PARAMS of them are kept on the stack.
    let (mut stack, heap): ([&str; STACK_PARAMS], Vec<&str>);
    let values: &[&str] = if params.len() <= STACK_PARAMS {
        stack = [""; STACK_PARAMS];
        for (slot, (_, value)) in stack.iter_mut().zip(params.iter()) {
            *slot = value;
        }
        &stack[..params.len()]
    } else {
        heap = params.iter().map(|(_, value)| value).collect();
        &heap
    };
    for call in &endpoint.calls {
        if let Err((index, reason)) = call.template.check_params(values) {
            let name = endpoint.params.get(index).map_or("", |n| &**n);
            let response = Problem::BadParameter { name, reason }.response();
            return Served { response, execution: None, calls: None };
        }
    }
    let mut forwarded = Forwarded { sets: &endpoint.header_sets, inbound: &headers, trace: HeaderMap::new() };
    if !propagate {
        // Not traced here: the client's own context goes on unchanged, so its trace is not cut.
        trace_context::pass_on(&headers, &mut forwarded.trace);
    }
    let query = forwarded_query(endpoint, uri);
    let mut outgoing = Outgoing {
        propagate: propagate.then_some(otel::inject as Propagate),
        endpoint,
        params: values,
        headers: &forwarded,
        query: &query,
        parsed: Vec::new(),
    };
    let execution = downstream::execute(
        &endpoint.graph,
        &endpoint.required,
        endpoint.share_identical,
        endpoint.max_response_body,
        deadline,
        |call, outcomes| outgoing.next(call, outcomes),
    )
    .await;
    drop(outgoing);
    drop(forwarded);
    let calls = record_calls(endpoint, metrics, &execution, logged);
    let answer = respond::compose(endpoint, &execution, headers);
    if answer.partial {
        metrics.partial(endpoint.index);
    }
    Served { response: answer.response, execution: Some(execution), calls }
}

/// Records every finished call in the metrics; when the request is `logged`, returns their
/// outcomes for its line (`product:ok price:timeout …`).
fn record_calls(
    endpoint: &EndpointPlan,
    metrics: &PlanMetrics,
    execution: &Execution,
    logged: bool,
) -> Option<String> {
    // Sized once: the names, `:`, the outcome and a separator for each call.
    let mut summary = logged.then(|| {
        let kind = downstream::ERROR_KINDS.iter().map(|kind| kind.len()).max().unwrap_or_default();
        let size = endpoint.calls.iter().map(|call| call.name.len() + 2 + kind).sum();
        String::with_capacity(size)
    });
    for (call, outcome) in endpoint.calls.iter().zip(&execution.outcomes) {
        let Some(outcome) = outcome else { continue };
        let error = outcome.result.as_ref().err().map(CallError::kind);
        metrics.call(call.backend_index, error, outcome.elapsed);
        if let Some(summary) = &mut summary {
            if !summary.is_empty() {
                summary.push(' ');
            }
            summary.push_str(&call.name);
            summary.push(':');
            summary.push_str(error.unwrap_or("ok"));
        }
    }
    summary
}

thread_local! {
    /// Where this thread renders backend paths (see [`Outgoing::request`]).
    static PATH_BUFFER: Cell<String> = const { Cell::new(String::new()) };
}

/// Decides, per call, what to send once the calls it depends on are done.
struct Outgoing<'r> {
    propagate: Option<Propagate>,
    endpoint: &'r EndpointPlan,
    params: &'r [&'r str],
    /// Writes the forwarded headers of each of the endpoint's header sets.
    headers: &'r Forwarded<'r>,
    query: &'r [(&'r str, &'r str)],
    /// Responses that other calls read from, parsed once (empty until a call reads one).
    parsed: Vec<Option<Value>>,
}

impl<'r> Outgoing<'r> {
    fn next(&mut self, index: usize, outcomes: &[Option<CallOutcome>]) -> Step<CallRequest<'r>> {
        let endpoint = self.endpoint;
        let Some(call) = endpoint.calls.get(index) else {
            return Step::Fail(CallError::InvalidReference("no such call".to_owned()));
        };
        if self.parsed.is_empty() && !endpoint.graph.deps(index).is_empty() {
            self.parsed = vec![None; endpoint.calls.len()];
        }
        for &dep in endpoint.graph.deps(index) {
            match outcomes.get(dep).and_then(Option::as_ref).map(|o| &o.result) {
                Some(Ok(output)) if self.parsed[dep].is_none() => self.parsed[dep] = output.parse().ok(),
                Some(Ok(_)) => {}
                _ => return Step::Fail(CallError::DependencyFailed(endpoint.calls[dep].name.to_string())),
            }
        }
        // Calls without inputs (the common case) need no view of the parsed responses.
        let calls: Vec<Option<&Value>> = if endpoint.graph.deps(index).is_empty() {
            Vec::new()
        } else {
            self.parsed.iter().map(Option::as_ref).collect()
        };
        let inputs = Inputs { params: self.params, calls: &calls, element: None };
        let Some((list_call, list_path)) = call.template.fan_out() else {
            return match self.request(call, &inputs, None) {
                Ok(request) => Step::Call(request),
                Err(error) => Step::Fail(error),
            };
        };
        let list_name = || {
            format!(
                "{}{}{list_path}",
                endpoint.calls[list_call].name,
                if list_path.is_empty() { "" } else { "." }
            )
        };
        let items = match calls.get(list_call).copied().flatten().map(|v| list_path.lookup(v)) {
            Some(Ok(Value::Array(items))) => items,
            Some(Ok(_)) => {
                return Step::Fail(CallError::InvalidReference(format!("{} is not a list", list_name())));
            }
            Some(Err(error)) => {
                return Step::Fail(CallError::InvalidReference(format!("{}: {error}", list_name())));
            }
            None => {
                return Step::Fail(CallError::InvalidReference(format!("{} is not available", list_name())));
            }
        };
        if items.len() > endpoint.max_fanout {
            return Step::Fail(CallError::FanoutLimit { len: items.len(), max: endpoint.max_fanout });
        }
        let requests = items
            .iter()
            .enumerate()
            .map(|(index, item)| self.request(call, &Inputs { element: Some(item), ..inputs }, Some(index)))
            .collect();
        Step::FanOut(FanOut {
            requests,
            concurrency: call.concurrency,
            fail_on_element_error: call.fail_on_element_error,
        })
    }

    fn request(
        &self,
        call: &'r CallPlan,
        inputs: &Inputs<'_>,
        element: Option<usize>,
    ) -> Result<CallRequest<'r>, CallError> {
        let path_and_query = scratch::with(&PATH_BUFFER, |path| {
            call.template
                .render(inputs, path)
                .map_err(|error| CallError::InvalidReference(error.to_string()))?;
            for (i, (name, value)) in self.query.iter().enumerate() {
                push_query_pair(name, value, i == 0 && !call.template.has_query(), path);
            }
            Ok(Bytes::copy_from_slice(path.as_bytes()))
        })?;
        Ok(CallRequest {
            name: &call.name,
            backend: &call.backend,
            path_and_query,
            headers: self.headers,
            header_set: call.header_set,
            timeout: call.timeout,
            required: call.required,
            element,
            propagate: self.propagate,
        })
    }
}

/// What one request forwards to its backends, written into each backend request's map.
struct Forwarded<'r> {
    /// The endpoint's lists of forwarded headers.
    sets: &'r [Vec<HeaderName>],
    /// The client's headers.
    inbound: &'r HeaderMap,
    /// The client's trace context, passed on when the request is not traced here (else empty).
    trace: HeaderMap,
}

impl ForwardHeaders for Forwarded<'_> {
    fn write(&self, header_set: usize, headers: &mut HeaderMap) {
        if let Some(names) = self.sets.get(header_set) {
            forwarded_headers(names, self.inbound, headers);
        }
        for (name, value) in &self.trace {
            headers.insert(name, value.clone());
        }
    }
}

/// Copies the headers in `names` (never one the client named in `Connection`, which makes it
/// hop-by-hop) plus `X-Request-Id` into `out`. Several `Cookie` fields (as h2 clients send them)
/// become one, joined with `"; "` (RFC 9113 §8.2.3), since HTTP/1.1 backends expect a single
/// field.
fn forwarded_headers(names: &[HeaderName], inbound: &HeaderMap, out: &mut HeaderMap) {
    for name in names {
        if named_in_connection(inbound, name) {
            continue;
        }
        if *name == COOKIE {
            if let Some(joined) = joined_cookies(inbound) {
                out.insert(COOKIE, joined);
            }
            continue;
        }
        for value in inbound.get_all(name) {
            out.append(name.clone(), value.clone());
        }
    }
    if let Some(id) = inbound.get(X_REQUEST_ID) {
        out.insert(X_REQUEST_ID, id.clone());
    }
}

/// The client's `Cookie` fields as one value, or none when it sent none.
fn joined_cookies(inbound: &HeaderMap) -> Option<HeaderValue> {
    let mut fields = inbound.get_all(COOKIE).iter();
    let first = fields.next()?;
    let Some(second) = fields.next() else { return Some(first.clone()) };
    let mut joined = first.as_bytes().to_vec();
    for field in std::iter::once(second).chain(fields) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(field.as_bytes());
    }
    // Joining valid header values with "; " gives a valid header value.
    HeaderValue::from_bytes(&joined).ok()
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
