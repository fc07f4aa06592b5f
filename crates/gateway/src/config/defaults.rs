//! The defaults of the config file, each written once: validation applies them, and a test
//! holds the tables of docs/configuration.md to them. Why each default is
//! what it is — a measurement or a reference — is in that document.

/// `server.listen`
pub const LISTEN: &str = "0.0.0.0:8080";
/// `server.admin_listen`
pub const ADMIN_LISTEN: &str = "0.0.0.0:9901";
/// `server.request_timeout`
pub const REQUEST_TIMEOUT: &str = "2s";
/// `server.shutdown_grace`
pub const SHUTDOWN_GRACE: &str = "20s";
/// `server.header_read_timeout`
pub const HEADER_READ_TIMEOUT: &str = "5s";
/// `server.keep_alive_timeout`
pub const KEEP_ALIVE_TIMEOUT: &str = "75s";
/// `server.max_request_body`
pub const MAX_REQUEST_BODY: &str = "1MiB";
/// `server.max_in_flight`
pub const MAX_IN_FLIGHT: usize = 10_000;
/// `server.max_connections`
pub const MAX_CONNECTIONS: usize = 30_000;
/// `server.max_response_body`
pub const MAX_RESPONSE_BODY: &str = "8MiB";
/// `server.admin_max_connections`
pub const ADMIN_MAX_CONNECTIONS: usize = 256;
/// `server.config_poll`
pub const CONFIG_POLL: &str = "1s";
/// `server.cors.max_age`
pub const CORS_MAX_AGE: &str = "10m";
/// `server.rate_limit.key` (and `endpoints[].rate_limit.key`)
pub const RATE_LIMIT_KEY: &str = "client_ip";
/// `server.rate_limit.max_keys` (and `endpoints[].rate_limit.max_keys`)
pub const RATE_LIMIT_MAX_KEYS: usize = 100_000;
/// `backends.NAME.cache.max_bytes`
pub const CACHE_MAX_BYTES: &str = "64MiB";
/// `backends.NAME.cache.default_ttl`
pub const CACHE_DEFAULT_TTL: &str = "off";
/// `backends.NAME.cache.stale_while_revalidate`
pub const CACHE_STALE_WHILE_REVALIDATE: &str = "10s";
/// `backends.NAME.cache.stale_if_error`
pub const CACHE_STALE_IF_ERROR: &str = "5m";
/// `state.redis.timeout`
pub const REDIS_TIMEOUT: &str = "20ms";
/// `state.redis.key_prefix`
pub const REDIS_KEY_PREFIX: &str = "fanout:";
/// `telemetry.log_level`
pub const LOG_LEVEL: &str = "info";
/// `telemetry.stall_warning`
pub const STALL_WARNING: &str = "100ms";
/// `backends.NAME.timeout`
pub const BACKEND_TIMEOUT: &str = "1s";
/// `backends.NAME.max_response_body`
pub const BACKEND_MAX_RESPONSE_BODY: &str = "4MiB";
/// `backends.NAME.max_idle_connections`
pub const MAX_IDLE_CONNECTIONS: usize = 128;
/// `backends.NAME.max_in_flight`
pub const BACKEND_MAX_IN_FLIGHT: usize = 1024;
/// `backends.NAME.retry.attempts`
pub const RETRY_ATTEMPTS: usize = 3;
/// `backends.NAME.retry.backoff`
pub const RETRY_BACKOFF: &str = "10ms";
/// `backends.NAME.retry.max_backoff`
pub const RETRY_MAX_BACKOFF: &str = "100ms";
/// `backends.NAME.retry.on` (and `circuit_breaker.on` unless `retry.on` is set)
pub const RETRY_ON: &str = "[connect, timeout, 502, 503, 504]";
/// `backends.NAME.retry.budget.ratio`
pub const RETRY_BUDGET_RATIO: &str = "0.2";
/// `backends.NAME.retry.budget.min_per_second`
pub const RETRY_BUDGET_MIN_PER_SECOND: usize = 10;
/// `backends.NAME.retry.budget.window`
pub const RETRY_BUDGET_WINDOW: &str = "10s";
/// `backends.NAME.circuit_breaker.window`
pub const BREAKER_WINDOW: &str = "10s";
/// `backends.NAME.circuit_breaker.min_calls`
pub const BREAKER_MIN_CALLS: usize = 20;
/// `backends.NAME.circuit_breaker.failure_rate`
pub const BREAKER_FAILURE_RATE: &str = "50%";
/// `backends.NAME.circuit_breaker.open_for`
pub const BREAKER_OPEN_FOR: &str = "5s";
/// `backends.NAME.circuit_breaker.half_open_calls`
pub const BREAKER_HALF_OPEN_CALLS: usize = 3;
/// `backends.NAME.hedge.after`
pub const HEDGE_AFTER: &str = "p95";
/// `backends.NAME.hedge.min_delay`
pub const HEDGE_MIN_DELAY: &str = "2ms";
/// `backends.NAME.hedge.max_delay`
pub const HEDGE_MAX_DELAY: &str = "200ms";
/// `backends.NAME.hedge.max_extra`
pub const HEDGE_MAX_EXTRA: &str = "5%";
/// `endpoints[i].concurrency`
pub const CONCURRENCY: usize = 16;
/// `endpoints[i].max_fanout`
pub const MAX_FANOUT: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    /// A default as docs/configuration.md shows it.
    #[derive(Debug, Clone, Copy)]
    enum Shown {
        Text(&'static str),
        Count(usize),
    }

    /// The defaults above by the docs' section heading and key.
    const DOCUMENTED: [(&str, &str, Shown); 45] = [
        ("server", "listen", Shown::Text(LISTEN)),
        ("server", "admin_listen", Shown::Text(ADMIN_LISTEN)),
        ("server", "request_timeout", Shown::Text(REQUEST_TIMEOUT)),
        ("server", "shutdown_grace", Shown::Text(SHUTDOWN_GRACE)),
        ("server", "header_read_timeout", Shown::Text(HEADER_READ_TIMEOUT)),
        ("server", "keep_alive_timeout", Shown::Text(KEEP_ALIVE_TIMEOUT)),
        ("server", "max_request_body", Shown::Text(MAX_REQUEST_BODY)),
        ("server", "max_in_flight", Shown::Count(MAX_IN_FLIGHT)),
        ("server", "max_connections", Shown::Count(MAX_CONNECTIONS)),
        ("server", "max_response_body", Shown::Text(MAX_RESPONSE_BODY)),
        ("server", "admin_max_connections", Shown::Count(ADMIN_MAX_CONNECTIONS)),
        ("server", "config_poll", Shown::Text(CONFIG_POLL)),
        ("server.cors", "max_age", Shown::Text(CORS_MAX_AGE)),
        ("server.rate_limit", "key", Shown::Text(RATE_LIMIT_KEY)),
        ("server.rate_limit", "max_keys", Shown::Count(RATE_LIMIT_MAX_KEYS)),
        ("backends.NAME.cache", "max_bytes", Shown::Text(CACHE_MAX_BYTES)),
        ("backends.NAME.cache", "default_ttl", Shown::Text(CACHE_DEFAULT_TTL)),
        ("backends.NAME.cache", "stale_while_revalidate", Shown::Text(CACHE_STALE_WHILE_REVALIDATE)),
        ("backends.NAME.cache", "stale_if_error", Shown::Text(CACHE_STALE_IF_ERROR)),
        ("state.redis", "timeout", Shown::Text(REDIS_TIMEOUT)),
        ("state.redis", "key_prefix", Shown::Text(REDIS_KEY_PREFIX)),
        ("telemetry", "log_level", Shown::Text(LOG_LEVEL)),
        ("telemetry", "stall_warning", Shown::Text(STALL_WARNING)),
        ("backends.NAME", "timeout", Shown::Text(BACKEND_TIMEOUT)),
        ("backends.NAME", "max_response_body", Shown::Text(BACKEND_MAX_RESPONSE_BODY)),
        ("backends.NAME", "max_idle_connections", Shown::Count(MAX_IDLE_CONNECTIONS)),
        ("backends.NAME", "max_in_flight", Shown::Count(BACKEND_MAX_IN_FLIGHT)),
        ("backends.NAME.retry", "attempts", Shown::Count(RETRY_ATTEMPTS)),
        ("backends.NAME.retry", "backoff", Shown::Text(RETRY_BACKOFF)),
        ("backends.NAME.retry", "max_backoff", Shown::Text(RETRY_MAX_BACKOFF)),
        ("backends.NAME.retry", "on", Shown::Text(RETRY_ON)),
        ("backends.NAME.retry", "budget.ratio", Shown::Text(RETRY_BUDGET_RATIO)),
        ("backends.NAME.retry", "budget.min_per_second", Shown::Count(RETRY_BUDGET_MIN_PER_SECOND)),
        ("backends.NAME.retry", "budget.window", Shown::Text(RETRY_BUDGET_WINDOW)),
        ("backends.NAME.circuit_breaker", "window", Shown::Text(BREAKER_WINDOW)),
        ("backends.NAME.circuit_breaker", "min_calls", Shown::Count(BREAKER_MIN_CALLS)),
        ("backends.NAME.circuit_breaker", "failure_rate", Shown::Text(BREAKER_FAILURE_RATE)),
        ("backends.NAME.circuit_breaker", "open_for", Shown::Text(BREAKER_OPEN_FOR)),
        ("backends.NAME.circuit_breaker", "half_open_calls", Shown::Count(BREAKER_HALF_OPEN_CALLS)),
        ("backends.NAME.hedge", "after", Shown::Text(HEDGE_AFTER)),
        ("backends.NAME.hedge", "min_delay", Shown::Text(HEDGE_MIN_DELAY)),
        ("backends.NAME.hedge", "max_delay", Shown::Text(HEDGE_MAX_DELAY)),
        ("backends.NAME.hedge", "max_extra", Shown::Text(HEDGE_MAX_EXTRA)),
        ("endpoints[i]", "concurrency", Shown::Count(CONCURRENCY)),
        ("endpoints[i]", "max_fanout", Shown::Count(MAX_FANOUT)),
    ];

    /// The default column of each `| \`key\` | default | meaning |` row of docs/configuration.md,
    /// by the heading of its section.
    fn documented_defaults() -> Vec<(String, String, String)> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut section = String::new();
        let mut rows = Vec::new();
        for line in text.lines() {
            if let Some(heading) = line.strip_prefix("## ").or_else(|| line.strip_prefix("### ")) {
                section = heading.trim_matches('`').to_owned();
            } else if let Some(row) = line.strip_prefix("| `") {
                let cells: Vec<&str> = row.split(" | ").collect();
                if let [key, default, ..] = cells[..] {
                    rows.push((section.clone(), key.trim_end_matches('`').to_owned(), default.to_owned()));
                }
            }
        }
        rows
    }

    #[test]
    fn the_configuration_reference_shows_every_default_as_the_code_applies_it() {
        let rows = documented_defaults();
        assert!(rows.len() > 40, "the tables of docs/configuration.md were not found");
        for (section, key, shown) in DOCUMENTED {
            let expected = match shown {
                Shown::Text(text) => format!("`{text}`"),
                Shown::Count(count) => format!("`{count}`"),
            };
            let found = rows.iter().find(|(s, k, _)| s == section && k == key).map(|(_, _, d)| d);
            assert_eq!(found, Some(&expected), "{section}.{key} in docs/configuration.md");
        }
    }
}
