//! The effective settings of a compiled plan as JSON, for `fanout check --format json`: every
//! default and `FANOUT__…` override applied, as the binary will run; durations in
//! milliseconds, sizes in bytes; passwords in URLs shown as `***`, and backends' own headers
//! (often API keys) left out. Deploy checks read this instead of re-implementing the defaults.

use crate::config::shown_url;
use crate::plan::Plan;
use crate::rate_limit::RateLimitSettings;
use downstream::policy::HedgeAfter;
use serde_json::{Value, json};
use std::time::Duration;

/// The effective settings of `plan`.
pub fn settings(plan: &Plan) -> Value {
    let (s, t) = (&plan.server, &plan.telemetry);
    let cors = s.cors.as_ref().map(|cors| {
        let text = |value: &http::HeaderValue| value.to_str().unwrap_or_default().to_owned();
        json!({
            "allow_origins": cors.allow_origins.as_ref().map_or_else(|| vec!["*".to_owned()], |o| o.iter().map(text).collect()),
            "allow_headers": cors.allow_headers.iter().map(http::HeaderName::as_str).collect::<Vec<_>>(),
            "max_age": ms(cors.max_age),
        })
    });
    json!({
        "server": {
            "listen": s.listen.to_string(),
            "admin_listen": s.admin_listen.to_string(),
            "request_timeout": ms(s.request_timeout),
            "shutdown_grace": ms(s.shutdown_grace),
            "header_read_timeout": ms(s.header_read_timeout),
            "keep_alive_timeout": ms(s.keep_alive_timeout),
            "max_connection_age": s.max_connection_age.map(ms),
            "max_request_body": s.max_request_body,
            "max_in_flight": s.max_in_flight,
            "max_connections": s.max_connections,
            "max_response_body": s.max_response_body,
            "admin_max_connections": s.admin_max_connections,
            "config_poll": s.config_poll.map(ms),
            "cors": cors,
            "runtime": s.runtime,
            "deadline_header": s.deadline_header.as_ref().map(http::HeaderName::as_str),
            "rate_limit": s.rate_limit.as_ref().map(rate_limit),
            "trusted_proxies": s.trusted_proxies.iter().map(ToString::to_string).collect::<Vec<_>>(),
        },
        "telemetry": {
            "log_format": t.log_format,
            "log_level": t.log_level,
            "metrics": t.metrics,
            "stall_warning": ms(t.stall_warning),
            "otlp_endpoint": t.otlp_endpoint.as_deref().map(shown_url),
            "sampling_ratio": t.sampling_ratio,
            "trust_client_sampling": t.trust_client_sampling,
            "debug_endpoints": t.debug_endpoints,
        },
        "state": {
            "redis": plan.state.redis.as_ref().map(|redis| json!({
                "url": shown_url(&redis.url),
                "timeout": ms(redis.timeout),
                "key_prefix": redis.key_prefix,
            })),
        },
        "backends": plan.backends.iter().map(|backend| json!({
            "name": backend.name(),
            "url": shown_url(backend.base_url()),
            "max_response_body": backend.max_response_body(),
            "max_in_flight": backend.max_in_flight(),
            "deadline_header": backend.deadline_header().map(http::HeaderName::as_str),
            "coalesce": backend.coalesces(),
            "cache": backend.cache().map(|cache| {
                let s = cache.settings();
                json!({
                    "max_bytes": s.max_bytes,
                    "default_ttl": s.default_ttl.map(ms),
                    "stale_while_revalidate": ms(s.stale_while_revalidate),
                    "stale_if_error": ms(s.stale_if_error),
                    "shared": s.shared,
                })
            }),
            "retry": backend.retry().map(|r| json!({
                "attempts": r.attempts,
                "backoff": ms(r.backoff),
                "max_backoff": ms(r.max_backoff),
                "on": r.on.items(),
                "min_time_left": r.min_time_left.map(ms),
                "budget": {
                    "ratio": r.budget.ratio,
                    "min_per_second": r.budget.min_per_second,
                    "window": ms(r.budget.window),
                },
            })),
            "hedge": backend.hedge().map(|h| json!({
                "after": match h.after {
                    HedgeAfter::Quantile(q) => json!(format!("p{}", q * 100.0)),
                    HedgeAfter::Fixed(delay) => json!(ms(delay)),
                },
                "min_delay": ms(h.min_delay),
                "max_delay": ms(h.max_delay),
                "max_extra": h.max_extra,
            })),
            "circuit_breaker": backend.circuit_breaker().map(|b| json!({
                "window": ms(b.window),
                "min_calls": b.min_calls,
                "failure_rate": b.failure_rate,
                "open_for": ms(b.open_for),
                "half_open_calls": b.half_open_calls,
                "on": b.on.items(),
            })),
        })).collect::<Vec<_>>(),
        "endpoints": plan.endpoints.iter().map(|endpoint| json!({
            "route": &*endpoint.route,
            "timeout": ms(endpoint.timeout),
            "merge": endpoint.merge,
            "max_fanout": endpoint.max_fanout,
            "max_response_body": endpoint.max_response_body,
            "rate_limit": endpoint.rate_limit.as_ref().map(|limiter| rate_limit(limiter.settings())),
            "calls": endpoint.calls.iter().map(|call| json!({
                "name": &*call.name,
                "backend": call.backend.name(),
                "path": &*call.path,
                "timeout": ms(call.timeout),
                "required": call.required,
                "concurrency": call.concurrency,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// A rate limit: `count` requests per `per` milliseconds, `burst` at once.
fn rate_limit(limit: &RateLimitSettings) -> Value {
    json!({
        "key": limit.key.name(),
        "count": limit.count,
        "per": ms(limit.per),
        "burst": limit.burst,
        "max_keys": limit.max_keys,
    })
}

/// A duration in whole milliseconds.
fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
