//! The configuration file as written: serde types with `deny_unknown_fields`, so a typo is an
//! error, and optional fields whose defaults are applied in `validate` (see [`super::defaults`]).
//! Durations and sizes stay text here and are parsed in `validate`, so that one bad value does
//! not hide the other mistakes in the same section.

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// `server:` — listeners and inbound limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Text>,
    pub admin_listen: Option<Text>,
    pub request_timeout: Option<Text>,
    pub shutdown_grace: Option<Text>,
    pub header_read_timeout: Option<Text>,
    pub keep_alive_timeout: Option<Text>,
    pub max_connection_age: Option<Text>,
    pub max_request_body: Option<Text>,
    pub max_in_flight: Option<Text>,
    pub max_connections: Option<Text>,
    pub max_response_body: Option<Text>,
    pub admin_max_connections: Option<Text>,
    pub config_poll: Option<Text>,
    pub runtime: Option<RuntimeMode>,
    pub cors: Option<RawCors>,
    pub deadline_header: Option<Text>,
    pub rate_limit: Option<RawRateLimit>,
    pub trusted_proxies: Option<Vec<Text>>,
}

/// `server.rate_limit:` / `endpoints[i].rate_limit:` — a rate limit per client key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub key: Option<Text>,
    pub rate: Text,
    pub burst: Option<Text>,
    pub max_keys: Option<Text>,
}

/// How the server's threads share the work (`server.runtime`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeMode {
    /// One tokio runtime whose worker threads steal each other's tasks: one busy connection
    /// (an h2 client multiplexing everything) still spreads over every core.
    #[default]
    WorkStealing,
    /// One single-threaded runtime per core, each with its own listening socket
    /// (`SO_REUSEPORT`) and its own backend connections: no task or wake-up crosses threads,
    /// but a connection stays on the core the kernel gave it.
    PerCore,
}

/// `server.cors:` — cross-origin access for browser frontends.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    #[serde(default)]
    pub allow_origins: Vec<String>,
    #[serde(default)]
    pub allow_headers: Vec<String>,
    pub max_age: Option<Text>,
}

/// `state:` — state shared by replicas.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub redis: Option<RawRedis>,
}

/// `state.redis:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    pub url: Text,
    pub timeout: Option<Text>,
    pub key_prefix: Option<Text>,
}

/// `telemetry:` — logging.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub log_format: Option<LogFormat>,
    pub log_level: Option<Text>,
    pub metrics: Option<Flag>,
    pub stall_warning: Option<Text>,
    pub debug_endpoints: Option<Flag>,
    pub otlp_endpoint: Option<Text>,
    pub sampling_ratio: Option<Text>,
    pub trust_client_sampling: Option<Flag>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (production).
    #[default]
    Json,
    /// Human-readable, coloured when on a terminal (development).
    Pretty,
}

/// `backends.NAME:` — one backend service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub url: Text,
    pub timeout: Option<Text>,
    pub connect_timeout: Option<Text>,
    pub max_response_body: Option<Text>,
    #[serde(default)]
    pub headers: IndexMap<String, Text>,
    #[serde(default)]
    pub http2: Flag,
    pub max_idle_connections: Option<Text>,
    pub ca_file: Option<Text>,
    pub max_in_flight: Option<Text>,
    pub retry: Option<RawRetry>,
    pub circuit_breaker: Option<RawBreaker>,
    pub hedge: Option<RawHedge>,
    pub deadline_header: Option<Text>,
    #[serde(default)]
    pub coalesce: Flag,
    pub cache: Option<RawCache>,
}

/// `backends.NAME.cache:` — the response cache; every key has a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub max_bytes: Option<Text>,
    pub default_ttl: Option<Text>,
    pub stale_while_revalidate: Option<Text>,
    pub stale_if_error: Option<Text>,
    #[serde(default)]
    pub shared: Flag,
}

/// `backends.NAME.retry:` — retries with a budget; every key has a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub attempts: Option<Text>,
    pub backoff: Option<Text>,
    pub max_backoff: Option<Text>,
    pub on: Option<Vec<Text>>,
    pub min_time_left: Option<Text>,
    #[serde(default)]
    pub budget: RawBudget,
}

/// `backends.NAME.retry.budget:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    pub ratio: Option<Text>,
    pub min_per_second: Option<Text>,
    pub window: Option<Text>,
}

/// `backends.NAME.hedge:`; every key has a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHedge {
    pub after: Option<Text>,
    pub min_delay: Option<Text>,
    pub max_delay: Option<Text>,
    pub max_extra: Option<Text>,
}

/// `backends.NAME.circuit_breaker:`; every key has a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    pub window: Option<Text>,
    pub min_calls: Option<Text>,
    pub failure_rate: Option<Text>,
    pub open_for: Option<Text>,
    pub half_open_calls: Option<Text>,
    pub on: Option<Vec<Text>>,
}

/// `endpoints[i]:` — one aggregated route. `calls` stays untyped so each call is checked on its
/// own and reports its own key path.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    pub route: Text,
    pub timeout: Option<Text>,
    #[serde(default)]
    pub forward_headers: Vec<String>,
    #[serde(default)]
    pub forward_query: Vec<String>,
    #[serde(default)]
    pub merge: Merge,
    pub concurrency: Option<Text>,
    pub max_fanout: Option<Text>,
    pub max_response_body: Option<Text>,
    /// `off`, or a [`RawRateLimit`]; typed in `validate` so each form reports its own mistakes.
    pub rate_limit: Option<serde_json::Value>,
    pub calls: IndexMap<String, serde_json::Value>,
}

/// How call results are placed in the answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Merge {
    /// Each call's result under its name (the default).
    #[default]
    Group,
    /// Object results shallow-merged into the root, in declared order; later calls win.
    Flat,
}

/// What a failed element does to a call over a list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnElementError {
    /// The element becomes `null` and is listed in `_errors` (the default).
    #[default]
    Null,
    /// The whole call fails.
    Fail,
}

/// `endpoints[i].calls.NAME:` — one backend call.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCall {
    pub backend: Text,
    pub path: Text,
    #[serde(default)]
    pub required: Flag,
    pub timeout: Option<Text>,
    #[serde(default)]
    pub select: Vec<String>,
    #[serde(default)]
    pub omit: Vec<String>,
    #[serde(default)]
    pub rename: IndexMap<String, String>,
    pub pick: Option<String>,
    pub concurrency: Option<Text>,
    pub on_element_error: Option<OnElementError>,
    pub schema: Option<serde_json::Value>,
    pub forward_headers: Option<Vec<String>>,
}

/// A boolean written as `true`/`false` in YAML or as the text `"true"`/`"false"` (which is how
/// environment overrides arrive).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true or false")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Flag, E> {
                match v {
                    "true" => Ok(Flag(true)),
                    "false" => Ok(Flag(false)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A scalar read as text: YAML may give `8080` or `"8080"`; environment overrides are always
/// text, and stay text (no guessing of types), so `0123` stays `0123`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}
