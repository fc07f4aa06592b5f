//! [`Router`]: the innermost layer — the route table of the request's config (404), the method
//! (405 with `Allow`: endpoints answer GET and HEAD), the client's deadline header (400 when
//! malformed), the endpoint's rate limit (429, before any backend call: [`crate::rate_limit`]),
//! then the endpoint ([`crate::endpoint`]);
//! and, only with `telemetry.debug_endpoints`, the route that blocks a worker on purpose.

use crate::Body;
use crate::connection::PeerAddr;
use crate::deadline;
use crate::endpoint::{self, Served};
use crate::handle::{Handle, Handled, Scope};
use crate::problem::Problem;
use http::{HeaderValue, Method, Request, Response};
use std::future::Future;
use std::time::Duration;

/// Routes a request to its endpoint.
#[derive(Clone, Copy)]
pub struct Router;

impl Handle for Router {
    fn handle<B: Send>(
        &self,
        request: Request<B>,
        scope: &Scope<'_>,
    ) -> impl Future<Output = Handled> + Send {
        let (parts, _body) = request.into_parts();
        async move {
            let plan = scope.plan;
            if plan.telemetry.debug_endpoints
                && let Some(ms) =
                    parts.uri.path().strip_prefix(DEBUG_BLOCK).and_then(|ms| ms.parse::<u64>().ok())
            {
                return Handled::unrouted(block_worker(Duration::from_millis(ms.min(10_000))));
            }
            let Some((endpoint, params)) = plan.route(parts.uri.path()) else {
                return Handled::unrouted(Problem::NotFound.response());
            };
            let matched = Some(endpoint.index);
            if parts.method != Method::GET && parts.method != Method::HEAD {
                let response = Problem::MethodNotAllowed.response();
                return Handled { response, endpoint: matched, execution: None, calls: None };
            }
            let budget = match &plan.server.deadline_header {
                None => None,
                Some(header) => match deadline::client_budget(&parts.headers, header) {
                    Ok(budget) => {
                        if budget.is_some_and(|budget| budget < endpoint.timeout) {
                            scope.metrics.shortened_deadline(endpoint.index);
                        }
                        budget
                    }
                    Err(deadline::BadBudget) => {
                        let response = Problem::BadDeadline(header.as_str()).response();
                        return Handled { response, endpoint: matched, execution: None, calls: None };
                    }
                },
            };
            let limited = match &endpoint.rate_limit {
                None => None,
                Some(limiter) => {
                    let peer = parts.extensions.get::<PeerAddr>().map(|peer| peer.0);
                    let checked = limiter.check(&parts.headers, peer, &plan.server.trusted_proxies).await;
                    scope.metrics.rate_limit(endpoint.index, checked.allowed());
                    Some((limiter, checked))
                }
            };
            if let Some((limiter, checked)) = limited.filter(|(_, checked)| !checked.allowed()) {
                let mut response = Problem::RateLimited(checked.retry_after()).response();
                limiter.set_headers(checked, response.headers_mut());
                return Handled { response, endpoint: matched, execution: None, calls: None };
            }
            let Served { mut response, execution, calls } = endpoint::serve(
                endpoint,
                budget,
                scope.metrics,
                scope.traced,
                scope.logged,
                &params,
                &parts.uri,
                parts.headers,
            )
            .await;
            if let Some((limiter, checked)) = limited {
                limiter.set_headers(checked, response.headers_mut());
            }
            Handled { response, endpoint: matched, execution, calls }
        }
    }
}

/// The test-only route that blocks a worker (`telemetry.debug_endpoints`).
const DEBUG_BLOCK: &str = "/_fanout/debug/block/";

/// Blocks this runtime worker on purpose, as a buggy handler would: what the stall detector
/// exists to catch. Only reachable with `telemetry.debug_endpoints: true`.
fn block_worker(duration: Duration) -> Response<Body> {
    std::thread::sleep(duration);
    let mut response =
        Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"{\"blocked\":true}")));
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
