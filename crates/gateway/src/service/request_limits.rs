//! [`RequestLimits`]: what a request may not be, checked before routing — a request-target
//! over [`MAX_URI_LEN`] (414), any `Transfer-Encoding` body (400, connection closed: this
//! covers `Content-Length` + `Transfer-Encoding`, request smuggling), a `Content-Length` over
//! `server.max_request_body` (413).

use crate::handle::{Handle, Handled, Scope};
use crate::limits::MAX_URI_LEN;
use crate::problem::Problem;
use http::Request;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use std::future::Future;

/// Refuses requests over the limits, then hands the others to `inner`.
#[derive(Clone)]
pub struct RequestLimits<H> {
    inner: H,
}

impl<H> RequestLimits<H> {
    /// Limits in front of `inner`.
    pub fn new(inner: H) -> Self {
        Self { inner }
    }
}

impl<H: Handle> Handle for RequestLimits<H> {
    fn handle<B: Send>(
        &self,
        request: Request<B>,
        scope: &Scope<'_>,
    ) -> impl Future<Output = Handled> + Send {
        let refused = refusal(&request, scope.plan.server.max_request_body);
        async move {
            match refused {
                Some(problem) => Handled::unrouted(problem.response()),
                None => self.inner.handle(request, scope).await,
            }
        }
    }
}

/// Why `request` is refused, if it is.
fn refusal<B>(request: &Request<B>, max_request_body: usize) -> Option<Problem<'static>> {
    if request.uri().path_and_query().map_or(0, |pq| pq.as_str().len()) > MAX_URI_LEN {
        return Some(Problem::UriTooLong(MAX_URI_LEN));
    }
    let headers = request.headers();
    if headers.contains_key(TRANSFER_ENCODING) {
        return Some(Problem::ChunkedBody);
    }
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    declared
        .is_some_and(|len| len > max_request_body as u64)
        .then_some(Problem::BodyTooLarge(max_request_body))
}
