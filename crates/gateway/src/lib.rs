//! fanout's gateway: configuration, the compiled plan, the HTTP server and its middleware, the
//! endpoint handler that fans out to backends and composes the response, and the admin server.
//!
//! Layout (a request's path through the code is in `docs/request-lifecycle.md`):
//! - [`config`]: YAML + environment → validated [`config::Settings`], every error with its key path.
//! - [`plan`]: settings compiled into the immutable [`plan::Plan`] used by the hot path.
//! - [`server`]: listeners, connection limits, graceful shutdown.
//! - [`connection`]: one client connection on either listener: head deadlines, keep-alive
//!   timeout, connection age, head size cap, drain.
//! - [`cors`]: `server.cors` (preflight, allowed origins, `Timing-Allow-Origin`).
//! - [`service`]: the inbound stack, each layer named, outermost first (request id, CORS,
//!   request telemetry, load shedding, limits, routing); [`handle`]: what its inner layers share.
//! - [`endpoint`]: one endpoint request: check parameters, run the call graph, within the
//!   client's budget when it gives one ([`deadline`]).
//! - [`respond`]: compose the answer: grouped or flat, shaped or raw, `_errors`, headers.
//! - [`openapi`]: the OpenAPI document of the configured endpoints; [`effective`]: the
//!   effective settings as JSON (`fanout check --format json`).
//! - [`problem`]: every error response (`application/problem+json`) and the catalog of error
//!   answers ([`problem::ErrorAnswer`]); [`limits`]: the fixed limits on a request.
//! - [`rate_limit`]: per-endpoint rate limits (GCRA buckets per client key, 429, `RateLimit`).
//! - [`scratch`]: per-thread buffers for text copied out once (backend paths, `Server-Timing`,
//!   log lines, span fields).
//! - [`reload`]: the config serving now, swapped whole on SIGHUP or a file change.
//! - [`admin`]: `/healthz`, `/readyz` and `/metrics` on the admin port.
//! - [`upkeep`]: once a second, backend pool upkeep and giving memory back ([`memory`]).

/// The body of every response the gateway gives: bytes known in full.
pub type Body = http_body_util::Full<bytes::Bytes>;

pub mod admin;
pub mod cli;
pub mod config;
pub mod connection;
pub mod cors;
pub mod deadline;
pub mod effective;
pub mod endpoint;
pub mod handle;
pub mod limits;
pub mod memory;
pub mod openapi;
pub mod plan;
pub mod problem;
pub mod rate_limit;
pub mod reload;
pub mod respond;
pub mod scratch;
pub mod server;
pub mod service;
pub mod telemetry;
pub mod upkeep;
