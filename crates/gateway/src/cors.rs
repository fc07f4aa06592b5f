//! Cross-origin access for browser frontends (`server.cors`), with tower-http's CORS layer:
//! preflight requests are answered before routing, and answers to an allowed origin carry
//! `Access-Control-Allow-Origin` and expose the gateway's own headers (`Server-Timing`,
//! `X-Fanout-Complete`, `X-Request-Id`) to scripts. [`timing_allow_origin`] then grants the
//! same origin `Timing-Allow-Origin`, so a page can read `Server-Timing` in the Resource Timing
//! API and DevTools. Exact origins are allowed with credentials (cookies, `Authorization`);
//! `*` never is, as the Fetch standard requires.

use crate::config::CorsSettings;
use http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, HeaderName};
use http::{Method, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// `Timing-Allow-Origin`.
const TIMING_ALLOW_ORIGIN: HeaderName = HeaderName::from_static("timing-allow-origin");

/// The response headers scripts of an allowed origin may read.
const EXPOSED: [HeaderName; 3] = [
    HeaderName::from_static("server-timing"),
    HeaderName::from_static("x-fanout-complete"),
    HeaderName::from_static("x-request-id"),
];

/// The CORS layer for `settings`.
pub fn layer(settings: &CorsSettings) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::HEAD])
        .allow_headers(settings.allow_headers.clone())
        .expose_headers(EXPOSED)
        .max_age(settings.max_age);
    match &settings.allow_origins {
        Some(origins) => layer.allow_origin(AllowOrigin::list(origins.clone())).allow_credentials(true),
        None => layer.allow_origin(AllowOrigin::any()),
    }
}

/// Sends `Timing-Allow-Origin` to the origin the answer is shared with, if any.
pub fn timing_allow_origin<B>(mut response: Response<B>) -> Response<B> {
    if let Some(origin) = response.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).cloned() {
        response.headers_mut().insert(TIMING_ALLOW_ORIGIN, origin);
    }
    response
}
