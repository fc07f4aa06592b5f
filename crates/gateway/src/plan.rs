//! The plan: validated settings compiled into what the hot path reads — the route table, per
//! endpoint the parsed templates, pre-escaped JSON keys, header names, and one shared
//! [`downstream::Backend`] (with its own connection pool) per backend. Built once at load and
//! held in an `Arc` (swapped whole by a reload, [`crate::reload`]); nothing known at load is
//! computed per request.

use crate::config::shown_url;
use crate::config::{
    CallConfig, ConfigErrors, EndpointConfig, Merge, ServerSettings, Settings, StateSettings,
    TelemetrySettings,
};
use crate::rate_limit::RateLimiter;
use compose::{Graph, Shape, Template, json_key};
use downstream::Backend;
use http::HeaderName;
use state::Redis;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

/// The compiled configuration.
#[derive(Debug)]
pub struct Plan {
    /// Server settings.
    pub server: ServerSettings,
    /// Telemetry settings.
    pub telemetry: TelemetrySettings,
    /// Where state shared by replicas lives.
    pub state: StateSettings,
    /// Endpoints, indexed by the router's values.
    pub endpoints: Vec<EndpointPlan>,
    /// Backends, in config order (calls refer to them by `backend_index`).
    pub backends: Vec<Arc<Backend>>,
    /// Whether a request needs its peer address: some endpoint limits by `client_ip`.
    pub needs_peer: bool,
    router: matchit::Router<usize>,
}

/// One endpoint, ready to serve.
#[derive(Debug)]
pub struct EndpointPlan {
    /// Position in [`Plan::endpoints`].
    pub index: usize,
    /// The route as configured (`GET /api/page/{id}`): the span's `http.route`.
    pub route: Box<str>,
    /// Route parameter names in path order; templates refer to them by index.
    pub params: Vec<Box<str>>,
    /// Deadline for the whole endpoint.
    pub timeout: Duration,
    /// The lists of inbound headers copied to calls: the endpoint's `forward_headers` first,
    /// then each distinct per-call list; each call names its list by `header_set`.
    pub header_sets: Vec<Vec<HeaderName>>,
    /// Inbound query parameters copied to every call.
    pub forward_query: Vec<Box<str>>,
    /// The calls in declared order.
    pub calls: Vec<CallPlan>,
    /// Which call reads which.
    pub graph: Graph,
    /// `required` of each call, by index (what the executor needs to stop early).
    pub required: Vec<bool>,
    /// How results are placed in the answer.
    pub merge: Merge,
    /// The longest list a call may fan out over.
    pub max_fanout: usize,
    /// The most bytes the call results in one answer may add up to.
    pub max_response_body: usize,
    /// Whether two requests of one inbound request could be identical (two calls to one
    /// backend, or a call over a list); if not, the executor skips sharing them.
    pub share_identical: bool,
    /// Its rate limiter, if it has a limit.
    pub rate_limit: Option<RateLimiter>,
}

/// One call, ready to render and send.
#[derive(Debug)]
pub struct CallPlan {
    /// The call's name.
    pub name: Box<str>,
    /// `"name":`, JSON-escaped once.
    pub key: Box<[u8]>,
    /// The backend (shared pool).
    pub backend: Arc<Backend>,
    /// Position of the backend in [`Plan::backends`].
    pub backend_index: usize,
    /// The parsed path template.
    pub template: Template,
    /// The template as written, for `fanout check`.
    pub path: Box<str>,
    /// The call's timeout.
    pub timeout: Duration,
    /// Whether the call's failure fails the endpoint.
    pub required: bool,
    /// The shaping to apply, if any (calls without one are spliced raw).
    pub shape: Option<Shape>,
    /// For a call over a list: requests in flight at once.
    pub concurrency: usize,
    /// For a call over a list: whether a failed element fails the call.
    pub fail_on_element_error: bool,
    /// The declared JSON Schema of the call's value (used by the OpenAPI document only).
    pub schema: Option<serde_json::Value>,
    /// Which of the endpoint's `header_sets` this call forwards.
    pub header_set: usize,
}

/// Takes the endpoint's `forward_headers` and the calls' own lists out of `endpoint`: the
/// distinct lists (the endpoint's first) and, per call, the position of its list.
fn header_sets(endpoint: &mut EndpointConfig) -> (Vec<Vec<HeaderName>>, Vec<usize>) {
    let mut sets = vec![std::mem::take(&mut endpoint.forward_headers)];
    let per_call = endpoint
        .calls
        .iter_mut()
        .map(|call| match call.forward_headers.take() {
            None => 0,
            Some(set) => sets.iter().position(|s| *s == set).unwrap_or_else(|| {
                sets.push(set);
                sets.len() - 1
            }),
        })
        .collect();
    (sets, per_call)
}

/// True when two requests of one endpoint could be identical.
fn may_repeat(calls: &[CallConfig]) -> bool {
    calls.iter().any(|c| c.template.fan_out().is_some())
        || calls.iter().enumerate().any(|(i, c)| calls[..i].iter().any(|d| d.backend == c.backend))
}

impl EndpointPlan {
    /// The longest call `index` can take: its timeout (with retries: every attempt's, plus the
    /// longest backoffs), times the number of waves a list of `max_fanout` elements needs at
    /// its `concurrency` when it fans out.
    pub fn worst_case(&self, index: usize) -> Duration {
        let Some(call) = self.calls.get(index) else { return Duration::ZERO };
        let one = match call.backend.retry() {
            None => call.timeout,
            Some(retry) => {
                call.timeout.saturating_mul(retry.attempts)
                    + retry.max_backoff.saturating_mul(retry.attempts.saturating_sub(1))
            }
        };
        let waves = match call.template.fan_out() {
            Some(_) => self.max_fanout.div_ceil(call.concurrency.max(1)),
            None => 1,
        };
        one.saturating_mul(u32::try_from(waves).unwrap_or(u32::MAX))
    }

    /// For a call over a list whose longest possible result (`max_fanout` bodies of the
    /// backend's `max_response_body`) is over the endpoint's `max_response_body`: that size.
    pub fn list_exceeding_cap(&self, index: usize) -> Option<usize> {
        let call = self.calls.get(index).filter(|c| c.template.fan_out().is_some())?;
        let most = self.max_fanout.saturating_mul(call.backend.max_response_body());
        (most > self.max_response_body).then_some(most)
    }
}

impl Plan {
    /// Builds backend clients and assembles the plan.
    pub fn build(settings: Settings) -> Result<Plan, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut backends = Vec::with_capacity(settings.backends.len());
        for backend in settings.backends {
            let name = backend.settings.name.clone();
            match Backend::new(backend.settings) {
                Ok(built) => backends.push(Arc::new(built)),
                Err(e) => errors.push(format!("backends.{name}.{}", e.key()), e.to_string()),
            }
        }
        errors.into_result(())?;
        let endpoints = settings
            .endpoints
            .into_iter()
            .enumerate()
            .map(|(index, mut endpoint)| (index, header_sets(&mut endpoint), endpoint))
            .map(|(index, (header_sets, call_sets), endpoint)| EndpointPlan {
                index,
                share_identical: may_repeat(&endpoint.calls),
                rate_limit: endpoint
                    .rate_limit
                    .as_ref()
                    .map(|limit| RateLimiter::new(limit, &endpoint.route)),
                required: endpoint.calls.iter().map(|c| c.required).collect(),
                graph: endpoint.graph,
                merge: endpoint.merge,
                max_fanout: endpoint.max_fanout,
                max_response_body: endpoint.max_response_body,
                route: endpoint.route.into(),
                params: endpoint.params.into_iter().map(Into::into).collect(),
                timeout: endpoint.timeout,
                header_sets,
                forward_query: endpoint.forward_query.into_iter().map(Into::into).collect(),
                calls: endpoint
                    .calls
                    .into_iter()
                    .zip(call_sets)
                    .map(|(call, header_set)| CallPlan {
                        key: json_key(&call.name),
                        name: call.name.into(),
                        backend: Arc::clone(&backends[call.backend]),
                        backend_index: call.backend,
                        template: call.template,
                        path: call.path.into(),
                        timeout: call.timeout,
                        required: call.required,
                        shape: (!call.shape.is_identity()).then_some(call.shape),
                        concurrency: call.concurrency,
                        fail_on_element_error: call.fail_on_element_error,
                        schema: call.schema,
                        header_set,
                    })
                    .collect(),
            })
            .collect::<Vec<EndpointPlan>>();
        Ok(Plan {
            needs_peer: endpoints.iter().flat_map(|e| &e.rate_limit).any(RateLimiter::keys_by_client_ip),
            server: settings.server,
            telemetry: settings.telemetry,
            state: settings.state,
            endpoints,
            backends,
            router: settings.router,
        })
    }

    /// Keeps every rate limiter's buckets, and the shared tier of every cache with `shared`, in
    /// `redis` (`state.redis`), from now on.
    pub fn share_state(&mut self, redis: &Arc<Redis>) {
        for cache in self.backends.iter().filter_map(|backend| backend.cache()) {
            cache.share(redis);
        }
        for endpoint in &mut self.endpoints {
            if let Some(limiter) = &mut endpoint.rate_limit {
                limiter.share(Arc::clone(redis), &endpoint.route);
            }
        }
    }

    /// Finds the endpoint for a request path and its raw (still percent-encoded) parameters.
    pub fn route<'p>(&self, path: &'p str) -> Option<(&EndpointPlan, matchit::Params<'_, 'p>)> {
        let matched = self.router.at(path).ok()?;
        let endpoint = self.endpoints.get(*matched.value)?;
        Some((endpoint, matched.params))
    }

    /// A human-readable listing of the plan, printed by `fanout check`.
    pub fn describe(&self) -> String {
        let s = &self.server;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "server: listen {} admin {} request_timeout {:?} max_in_flight {}",
            s.listen, s.admin_listen, s.request_timeout, s.max_in_flight
        );
        if let Some(redis) = &self.state.redis {
            let _ = writeln!(out, "state: redis {} timeout {:?}", shown_url(&redis.url), redis.timeout);
        }
        for endpoint in &self.endpoints {
            let _ = write!(out, "{} (timeout {:?}", endpoint.route, endpoint.timeout);
            if let Some(limit) = endpoint.rate_limit.as_ref().map(RateLimiter::settings) {
                let shared = if self.state.redis.is_some() { ", shared on redis" } else { "" };
                let _ = write!(
                    out,
                    ", rate limit {}/{:?} burst {} per {}{shared}",
                    limit.count,
                    limit.per,
                    limit.burst,
                    limit.key.name()
                );
            }
            out.push_str(")\n");
            for (index, call) in endpoint.calls.iter().enumerate() {
                let _ = write!(
                    out,
                    "  {:<16} {} {}{} timeout {:?}{}",
                    call.name,
                    call.backend.name(),
                    call.backend.base_url(),
                    call.path,
                    call.timeout,
                    if call.required { " required" } else { "" }
                );
                let deps: Vec<&str> =
                    endpoint.graph.deps(index).iter().map(|&d| &*endpoint.calls[d].name).collect();
                if !deps.is_empty() {
                    let _ = write!(out, " after {}", deps.join(", "));
                }
                if call.template.fan_out().is_some() {
                    let _ = write!(out, " per element, {} at once", call.concurrency);
                }
                if let Some(retry) = call.backend.retry() {
                    let _ = write!(out, " up to {} attempts", retry.attempts);
                }
                if call.backend.hedge().is_some() {
                    let _ = write!(out, " hedged");
                }
                if call.backend.circuit_breaker().is_some() {
                    let _ = write!(out, " behind a circuit breaker");
                }
                if call.backend.cache().is_some() {
                    let _ = write!(out, " cached");
                }
                out.push('\n');
                if let Some(most) = endpoint.list_exceeding_cap(index) {
                    let _ = writeln!(
                        out,
                        "  warning: {} may return up to max_fanout {} × {} bytes (backends.{}.max_response_body) = {most} bytes, over the endpoint's max_response_body ({} bytes): a longer answer fails the call with too_large. Lower max_fanout or the backend's max_response_body, or raise the endpoint's",
                        call.name,
                        endpoint.max_fanout,
                        call.backend.max_response_body(),
                        call.backend.name(),
                        endpoint.max_response_body,
                    );
                }
            }
            let (worst, chain) = endpoint.graph.longest_chain(|c| endpoint.worst_case(c));
            let names: Vec<&str> = chain.iter().map(|&c| &*endpoint.calls[c].name).collect();
            let _ = writeln!(
                out,
                "  worst case {:?} along {} (capped at the endpoint timeout, {:?})",
                worst,
                names.join(" → "),
                worst.min(endpoint.timeout)
            );
        }
        out
    }
}
