//! The validated configuration: what [`super::validate`] makes of the file ([`super::raw`]),
//! parsed values only (addresses, durations, sizes, header names, URL templates, the route
//! table), every default applied ([`super::defaults`]).

use super::raw::{LogFormat, Merge, RuntimeMode};
use crate::rate_limit::RateLimitSettings;
use compose::{Graph, Shape, Template};
use downstream::BackendSettings;
use http::{HeaderName, HeaderValue};
use ipnet::IpNet;
use serde_json::Value;
use state::RedisSettings;
use std::net::SocketAddr;
use std::time::Duration;

/// The validated configuration.
#[derive(Debug)]
pub struct Settings {
    /// `server:` settings.
    pub server: ServerSettings,
    /// `telemetry:` settings.
    pub telemetry: TelemetrySettings,
    /// `state:` settings.
    pub state: StateSettings,
    /// `backends:`, in file order.
    pub backends: Vec<BackendConfig>,
    /// `endpoints:`, in file order.
    pub endpoints: Vec<EndpointConfig>,
    /// Route path → index into `endpoints`.
    pub router: matchit::Router<usize>,
}

/// `state:` — where state shared by replicas lives.
#[derive(Debug, Clone, Default)]
pub struct StateSettings {
    /// Redis, if configured; none: every replica keeps its state in memory.
    pub redis: Option<RedisSettings>,
}

/// `server:` with defaults applied.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Public listener (default [`defaults::LISTEN`]).
    pub listen: SocketAddr,
    /// Admin listener (default [`defaults::ADMIN_LISTEN`]).
    pub admin_listen: SocketAddr,
    /// Hard cap on any inbound request (default [`defaults::REQUEST_TIMEOUT`]).
    pub request_timeout: Duration,
    /// Drain time after SIGTERM (default [`defaults::SHUTDOWN_GRACE`]).
    pub shutdown_grace: Duration,
    /// Time a connection has from accept to complete its first request head (h2: preface and
    /// first HEADERS), and each later HTTP/1.1 head from its first byte (default
    /// [`defaults::HEADER_READ_TIMEOUT`]).
    pub header_read_timeout: Duration,
    /// Time a connection may stay open with no request in flight (default
    /// [`defaults::KEEP_ALIVE_TIMEOUT`]).
    pub keep_alive_timeout: Duration,
    /// Age at which a connection is asked to close (HTTP/1.1: `Connection: close` on the next
    /// answer; h2: GOAWAY); `None` (the default): never.
    pub max_connection_age: Option<Duration>,
    /// Largest accepted request body, by `Content-Length` (default [`defaults::MAX_REQUEST_BODY`]).
    pub max_request_body: usize,
    /// Requests served at once; more get 503 + `Retry-After` (default [`defaults::MAX_IN_FLIGHT`]).
    pub max_in_flight: usize,
    /// Open client connections; more are closed at accept (default [`defaults::MAX_CONNECTIONS`]: see
    /// docs/configuration.md).
    pub max_connections: usize,
    /// The default `max_response_body` of every endpoint (default [`defaults::MAX_RESPONSE_BODY`]).
    pub max_response_body: usize,
    /// Open connections to the admin listener; more are closed at accept (default
    /// [`defaults::ADMIN_MAX_CONNECTIONS`]).
    pub admin_max_connections: usize,
    /// How often the config file is checked for changes to reload (default [`defaults::CONFIG_POLL`]); `off`: never
    /// (SIGHUP still reloads).
    pub config_poll: Option<Duration>,
    /// Cross-origin access for browsers; none: no CORS headers.
    pub cors: Option<CorsSettings>,
    /// How the server's threads share the work.
    pub runtime: RuntimeMode,
    /// The request header a client gives its remaining budget in (milliseconds), which
    /// shortens the endpoint deadline; none: not read.
    pub deadline_header: Option<HeaderName>,
    /// The rate limit of every endpoint that sets none; none: unlimited.
    pub rate_limit: Option<RateLimitSettings>,
    /// Proxies whose `X-Forwarded-For` is believed when keying limits by `client_ip`.
    pub trusted_proxies: Vec<IpNet>,
}

/// `server.cors:` with defaults applied.
#[derive(Debug, Clone)]
pub struct CorsSettings {
    /// Origins allowed to read answers; `None` is `*` (any origin, without credentials).
    pub allow_origins: Option<Vec<HeaderValue>>,
    /// Request headers a browser may send cross-origin (besides the CORS-safelisted ones).
    pub allow_headers: Vec<HeaderName>,
    /// How long a browser may cache a preflight answer (default [`defaults::CORS_MAX_AGE`]).
    pub max_age: Duration,
}

/// `telemetry:` with defaults applied.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// `json` (default) or `pretty`.
    pub log_format: LogFormat,
    /// A `tracing` filter such as `info` or `gateway=debug` (default [`defaults::LOG_LEVEL`]); `RUST_LOG` wins.
    pub log_level: String,
    /// Serve Prometheus metrics on the admin port's `/metrics` (default true).
    pub metrics: bool,
    /// Warn when a task blocks a runtime worker longer than this (default [`defaults::STALL_WARNING`]).
    pub stall_warning: Duration,
    /// Serve `GET /_fanout/debug/block/{ms}`, which blocks a worker on purpose (tests only;
    /// default false).
    pub debug_endpoints: bool,
    /// OTLP/HTTP base URL (spans go to `/v1/traces`); none: no export, no cost.
    pub otlp_endpoint: Option<String>,
    /// The share of requests whose traces are exported, 0 to 1 (default 1).
    pub sampling_ratio: f64,
    /// Follow a caller's sampled flag (in `traceparent`) instead of `sampling_ratio` (default
    /// false: clients do not decide what is exported).
    pub trust_client_sampling: bool,
}

/// One backend: its client settings and its default call timeout.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Client settings (name, base URL, headers, limits).
    pub settings: BackendSettings,
    /// Default timeout of calls to this backend (default [`defaults::BACKEND_TIMEOUT`]).
    pub timeout: Duration,
}

/// One endpoint.
#[derive(Debug)]
pub struct EndpointConfig {
    /// The route as written, e.g. `GET /api/page/{id}`.
    pub route: String,
    /// Route parameter names, in path order.
    pub params: Vec<String>,
    /// Deadline for the whole endpoint (default `server.request_timeout`).
    pub timeout: Duration,
    /// Inbound headers copied to every call.
    pub forward_headers: Vec<HeaderName>,
    /// Inbound query parameters copied to every call.
    pub forward_query: Vec<String>,
    /// The calls, in declared order (the response keeps this order).
    pub calls: Vec<CallConfig>,
    /// Which call reads which (checked: no cycles).
    pub graph: Graph,
    /// How results are placed in the answer.
    pub merge: Merge,
    /// The longest list a call may fan out over (default [`defaults::MAX_FANOUT`]).
    pub max_fanout: usize,
    /// The most bytes the call results in one answer may add up to (default
    /// `server.max_response_body`).
    pub max_response_body: usize,
    /// Its rate limit (default `server.rate_limit`; `off`: none).
    pub rate_limit: Option<RateLimitSettings>,
}

/// One call of an endpoint.
#[derive(Debug)]
pub struct CallConfig {
    /// The call's name: its key in the response.
    pub name: String,
    /// Index into [`Settings::backends`].
    pub backend: usize,
    /// The path template as written.
    pub path: String,
    /// The parsed path template.
    pub template: Template,
    /// The call's timeout (default: its backend's).
    pub timeout: Duration,
    /// A required call's failure fails the endpoint (502/504).
    pub required: bool,
    /// `select` / `omit` / `rename` / `pick`.
    pub shape: Shape,
    /// For a call over a list (`[*]`): requests in flight at once (default: the endpoint's
    /// `concurrency`, itself 16 by default).
    pub concurrency: usize,
    /// For a call over a list: whether a failed element fails the call (else it is `null`).
    pub fail_on_element_error: bool,
    /// The JSON Schema of the call's value in the answer, for the OpenAPI document only.
    pub schema: Option<Value>,
    /// Inbound headers copied to this call, replacing the endpoint's `forward_headers`.
    pub forward_headers: Option<Vec<HeaderName>>,
}
