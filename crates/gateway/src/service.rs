//! The inbound stack, assembled in one place ([`stack`]). Outermost first, each layer a named
//! type, and why it sits where it does:
//! 1. [`SetRequestId`] ([`request_id`]): first, so that every answer (a CORS preflight's too)
//!    and everything logged about a request carries its id;
//! 2. with `server.cors`: `Timing-Allow-Origin` for a shared answer, then tower-http's CORS
//!    layer ([`crate::cors`]): preflights are answered here, before anything is counted, shed
//!    or routed;
//! 3. [`RequestTelemetry`] ([`request_telemetry`]): sampling, the `request` span, the stall
//!    watch, `Server-Timing`, request metrics and the `request` log line (with the wiring of
//!    [`crate::telemetry`]) — outside every layer that can refuse a request, so refusals are
//!    observed as answers;
//! 4. [`LoadShed`] ([`load_shed`]): at most `max_in_flight` at once (503 + `Retry-After`),
//!    before a request costs anything more;
//! 5. [`RequestLimits`] ([`request_limits`]): 414, 400 for any `Transfer-Encoding` body, 413,
//!    before routing;
//! 6. [`Router`] ([`router`]): 404, 405, then the endpoint ([`crate::endpoint`]).
//!
//! Layers 4–6 are [`Handle`]s composed by generics inside the one boxed future of a request
//! (see [`crate::handle`]); a request keeps the config it arrived under to its end.

pub mod load_shed;
pub mod request_id;
pub mod request_limits;
pub mod request_telemetry;
pub mod router;

use crate::Body;
use crate::config::ServerSettings;
use crate::cors;
use crate::handle::Handle;
use crate::reload::Live;
use http::{Request, Response};
use load_shed::LoadShed;
use request_id::{RequestIds, SetRequestId};
use request_limits::RequestLimits;
use request_telemetry::RequestTelemetry;
use router::Router;
use std::convert::Infallible;
use std::sync::Arc;
use tower::{Service, ServiceBuilder};

/// Builds the full stack over the `live` config, with the `server` settings the process
/// started with (`max_in_flight`, `cors`).
pub fn stack<B: Send + 'static>(
    live: Arc<Live>,
    server: &ServerSettings,
) -> impl Service<Request<B>, Response = Response<Body>, Error = Infallible, Future: Send> + Clone + Send + 'static
{
    let ids = RequestIds::default();
    ServiceBuilder::new()
        .layer_fn(move |inner| SetRequestId::new(inner, ids.clone()))
        .map_response(cors::timing_allow_origin::<Body>)
        .option_layer(server.cors.as_ref().map(cors::layer))
        .service(RequestTelemetry::new(live, inner_layers(server)))
}

/// Layers 4–6 of the stack.
fn inner_layers(server: &ServerSettings) -> impl Handle {
    LoadShed::new(server.max_in_flight, RequestLimits::new(Router))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
