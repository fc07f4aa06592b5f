//! The error contract: the catalog of error answers ([`ErrorAnswer`]: status, OpenAPI
//! component, when each is given, described from the real limits), which [`Problem::status`]
//! and the OpenAPI document read; and every error response fanout builds, as
//! `application/problem+json` (RFC 9457). Bodies say what went wrong without leaking internals.

use crate::Body;
use crate::limits::{MAX_HEAD_BYTES, MAX_HEADERS, MAX_URI_LEN};
use bytes::Bytes;
use compose::ParamError;
use downstream::CallError;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;
use std::time::Duration;

/// The error answers fanout gives: one row each of the error contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorAnswer {
    /// 400.
    BadRequest,
    /// 404.
    NotFound,
    /// 405.
    MethodNotAllowed,
    /// 413.
    ContentTooLarge,
    /// 414.
    UriTooLong,
    /// 429.
    TooManyRequests,
    /// 431, given by hyper before any request exists (so without a problem+json body).
    HeadersTooLarge,
    /// 502.
    BadGateway,
    /// 503.
    Overloaded,
    /// 504.
    GatewayTimeout,
}

impl ErrorAnswer {
    /// Every error answer, by status.
    pub const ALL: [ErrorAnswer; 10] = [
        ErrorAnswer::BadRequest,
        ErrorAnswer::NotFound,
        ErrorAnswer::MethodNotAllowed,
        ErrorAnswer::ContentTooLarge,
        ErrorAnswer::UriTooLong,
        ErrorAnswer::TooManyRequests,
        ErrorAnswer::HeadersTooLarge,
        ErrorAnswer::BadGateway,
        ErrorAnswer::Overloaded,
        ErrorAnswer::GatewayTimeout,
    ];

    /// Its HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorAnswer::BadRequest => StatusCode::BAD_REQUEST,
            ErrorAnswer::NotFound => StatusCode::NOT_FOUND,
            ErrorAnswer::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorAnswer::ContentTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorAnswer::UriTooLong => StatusCode::URI_TOO_LONG,
            ErrorAnswer::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorAnswer::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorAnswer::BadGateway => StatusCode::BAD_GATEWAY,
            ErrorAnswer::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ErrorAnswer::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// When it is given.
    pub fn when(self) -> String {
        match self {
            ErrorAnswer::BadRequest => {
                "a route parameter cannot be placed into a backend URL, the request has a \
                Transfer-Encoding body (the connection is then closed), or its \
                server.deadline_header is not a whole number of milliseconds"
                    .to_owned()
            }
            ErrorAnswer::NotFound => "no endpoint for this path".to_owned(),
            ErrorAnswer::MethodNotAllowed => {
                "the path exists; endpoints answer GET and HEAD (`Allow`)".to_owned()
            }
            ErrorAnswer::ContentTooLarge => "Content-Length over server.max_request_body".to_owned(),
            ErrorAnswer::UriTooLong => format!("request target over {} KiB", MAX_URI_LEN / 1024),
            ErrorAnswer::TooManyRequests => {
                "the endpoint's rate_limit for this client is used up (`Retry-After`: the seconds \
                until a request is allowed; `RateLimit-Policy` and `RateLimit` on every answer of a \
                limited endpoint)"
                    .to_owned()
            }
            ErrorAnswer::HeadersTooLarge => {
                format!("more than {MAX_HEADERS} headers or {} KiB of head", MAX_HEAD_BYTES / 1024)
            }
            ErrorAnswer::BadGateway => {
                "a required call failed (status, connect, invalid_body, too_large, …)".to_owned()
            }
            ErrorAnswer::Overloaded => {
                "more requests in flight than server.max_in_flight, or a required call's backend has \
                its circuit breaker open (`Retry-After`: the seconds until it lets calls through)"
                    .to_owned()
            }
            ErrorAnswer::GatewayTimeout => {
                "a required call timed out or the endpoint deadline passed".to_owned()
            }
        }
    }
}

/// What went wrong with a request.
#[derive(Debug)]
pub enum Problem<'a> {
    /// No route matches the path.
    NotFound,
    /// The path matches, the method does not.
    MethodNotAllowed,
    /// `Content-Length` over `server.max_request_body`.
    BodyTooLarge(usize),
    /// Request-target longer than the limit.
    UriTooLong(usize),
    /// A `Transfer-Encoding` request body. Endpoints take no body, and hyper drops a
    /// `Content-Length` sent alongside `Transfer-Encoding`, so rejecting every chunked request
    /// is how `Content-Length` + `Transfer-Encoding` (request smuggling) gets its 400. The
    /// connection is closed after the answer.
    ChunkedBody,
    /// A route parameter cannot be placed into a backend URL.
    BadParameter {
        /// The parameter's name.
        name: &'a str,
        /// Why it is rejected.
        reason: ParamError,
    },
    /// More requests in flight than `server.max_in_flight`.
    Overloaded,
    /// The client's rate limit is used up; a request conforms again after this long.
    RateLimited(Duration),
    /// The `server.deadline_header` is not one whole number of milliseconds.
    BadDeadline(&'a str),
    /// A required call failed.
    RequiredCallFailed {
        /// The call's name.
        call: &'a str,
        /// Why it failed.
        error: &'a CallError,
    },
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    r#type: &'static str,
    title: &'static str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    call: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

impl Problem<'_> {
    /// The error answer this problem gets.
    pub fn answer(&self) -> ErrorAnswer {
        match self {
            Problem::NotFound => ErrorAnswer::NotFound,
            Problem::MethodNotAllowed => ErrorAnswer::MethodNotAllowed,
            Problem::BodyTooLarge(_) => ErrorAnswer::ContentTooLarge,
            Problem::UriTooLong(_) => ErrorAnswer::UriTooLong,
            Problem::RateLimited(_) => ErrorAnswer::TooManyRequests,
            Problem::BadParameter { .. } | Problem::ChunkedBody | Problem::BadDeadline(_) => {
                ErrorAnswer::BadRequest
            }
            Problem::Overloaded | Problem::RequiredCallFailed { error: CallError::CircuitOpen(_), .. } => {
                ErrorAnswer::Overloaded
            }
            Problem::RequiredCallFailed { error, .. } if error.is_timeout() => ErrorAnswer::GatewayTimeout,
            Problem::RequiredCallFailed { .. } => ErrorAnswer::BadGateway,
        }
    }

    /// The HTTP status for this problem.
    pub fn status(&self) -> StatusCode {
        self.answer().status()
    }

    fn detail(&self) -> String {
        match self {
            Problem::NotFound => "no endpoint is configured for this path".to_owned(),
            Problem::MethodNotAllowed => "this endpoint answers GET and HEAD".to_owned(),
            Problem::BodyTooLarge(limit) => format!("request body exceeds {limit} bytes"),
            Problem::UriTooLong(limit) => format!("request target exceeds {limit} bytes"),
            Problem::BadParameter { name, reason } => format!("route parameter {{{name}}} {reason}"),
            Problem::ChunkedBody => {
                "Transfer-Encoding is not accepted: endpoints take no request body".to_owned()
            }
            Problem::Overloaded => "too many requests in flight; retry shortly".to_owned(),
            Problem::RateLimited(wait) => {
                format!("rate limit exceeded; retry in {} s", retry_after_seconds(*wait))
            }
            Problem::BadDeadline(header) => {
                format!("header {header} must be one whole number of milliseconds (e.g. 800)")
            }
            Problem::RequiredCallFailed { call, error } => format!("required call {call:?} failed: {error}"),
        }
    }

    /// Renders the problem as a response.
    pub fn response(&self) -> Response<Body> {
        let status = self.status();
        let (call, error) = match self {
            Problem::RequiredCallFailed { call, error } => (Some(*call), Some(error.kind())),
            _ => (None, None),
        };
        let body = ProblemBody {
            r#type: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: self.detail(),
            call,
            error,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::from(bytes)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        match self {
            Problem::MethodNotAllowed => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            }
            Problem::Overloaded => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Problem::RequiredCallFailed { error: CallError::CircuitOpen(wait), .. }
            | Problem::RateLimited(wait) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds(*wait)));
            }
            Problem::ChunkedBody => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

/// A wait as `Retry-After` seconds: whole, rounded up (a client retrying then finds the breaker
/// letting trial calls through, or its bucket holding a request), at least 1.
fn retry_after_seconds(wait: Duration) -> u64 {
    whole_seconds(wait).max(1)
}

/// `duration` in whole seconds, rounded up (what a header in seconds may promise).
pub fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn json_of(response: Response<Body>) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn required_failures_map_to_502_and_504() {
        let status = CallError::Status(500);
        let problem = Problem::RequiredCallFailed { call: "user", error: &status };
        assert_eq!(problem.status(), StatusCode::BAD_GATEWAY);
        let body = json_of(problem.response()).await;
        assert_eq!(body["call"], "user");
        assert_eq!(body["error"], "status");
        assert_eq!(body["detail"], "required call \"user\" failed: backend answered status 500");
        let timeout = CallError::Timeout(Duration::from_millis(50));
        assert_eq!(
            Problem::RequiredCallFailed { call: "u", error: &timeout }.status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        let cancelled = CallError::Cancelled;
        assert_eq!(
            Problem::RequiredCallFailed { call: "u", error: &cancelled }.status(),
            StatusCode::GATEWAY_TIMEOUT
        );
    }

    #[tokio::test]
    async fn a_required_call_behind_an_open_breaker_is_503_with_the_wait_as_retry_after() {
        for (wait, seconds) in
            [(Duration::from_millis(4200), "5"), (Duration::from_secs(3), "3"), (Duration::ZERO, "1")]
        {
            let open = CallError::CircuitOpen(wait);
            let response = Problem::RequiredCallFailed { call: "user", error: &open }.response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()["retry-after"], seconds, "{wait:?}");
            let body = json_of(response).await;
            assert_eq!(body["error"], "circuit_open");
            assert_eq!(
                body["detail"],
                "required call \"user\" failed: the backend's circuit breaker is open"
            );
        }
    }

    #[test]
    fn the_catalog_has_one_answer_per_status_and_every_problem_is_in_it() {
        let statuses: Vec<u16> = ErrorAnswer::ALL.iter().map(|answer| answer.status().as_u16()).collect();
        assert!(statuses.windows(2).all(|pair| pair[0] < pair[1]), "{statuses:?}");
        let status = CallError::Status(500);
        let timeout = CallError::Timeout(Duration::from_millis(1));
        let problems = [
            Problem::NotFound,
            Problem::MethodNotAllowed,
            Problem::BodyTooLarge(1),
            Problem::UriTooLong(MAX_URI_LEN),
            Problem::ChunkedBody,
            Problem::BadParameter { name: "id", reason: ParamError::Empty },
            Problem::Overloaded,
            Problem::RateLimited(Duration::from_millis(10)),
            Problem::BadDeadline("x-request-timeout-ms"),
            Problem::RequiredCallFailed { call: "a", error: &status },
            Problem::RequiredCallFailed { call: "a", error: &timeout },
            Problem::RequiredCallFailed { call: "a", error: &CallError::CircuitOpen(Duration::ZERO) },
        ];
        for problem in &problems {
            assert!(ErrorAnswer::ALL.contains(&problem.answer()), "{problem:?}");
            assert_eq!(problem.response().status(), problem.answer().status(), "{problem:?}");
        }
        // Descriptions are built from the limits the server enforces.
        assert_eq!(ErrorAnswer::UriTooLong.when(), format!("request target over {} KiB", MAX_URI_LEN / 1024));
    }

    #[tokio::test]
    async fn client_errors_are_problem_json() {
        let response = Problem::MethodNotAllowed.response();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "GET, HEAD");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let body =
            json_of(Problem::BadParameter { name: "id", reason: ParamError::Separator }.response()).await;
        assert_eq!(body["status"], 400);
        assert_eq!(body["title"], "Bad Request");
        assert_eq!(body["detail"], "route parameter {id} contains a path separator");
        assert_eq!(Problem::Overloaded.response().headers()["retry-after"], "1");
    }

    #[tokio::test]
    async fn a_rate_limited_request_is_429_with_the_wait_rounded_up() {
        let response = Problem::RateLimited(Duration::from_millis(1500)).response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "2");
        assert_eq!(json_of(response).await["detail"], "rate limit exceeded; retry in 2 s");
        let soon = Problem::RateLimited(Duration::from_micros(10)).response();
        assert_eq!(soon.headers()["retry-after"], "1");
    }
}
