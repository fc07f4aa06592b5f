//! Prometheus metrics on the admin port's `/metrics`: request and backend-call duration
//! histograms (OpenTelemetry semantic-convention names, buckets from 0.5 ms to 10 s), requests
//! in flight, open connections, backend errors by kind, partial answers per route, log lines
//! dropped by the log writer, and the process's resident memory; and the resilience policies'
//! own metrics, which the `downstream` crate records ([`downstream::policy`]: retries, breaker
//! states and transitions, hedges, coalesced calls), described here; and the rate limits'
//! ([`crate::rate_limit`]: requests allowed and limited, client keys tracked and evicted) and
//! the response caches' ([`downstream::cache`]: lookups, stale answers served, evictions, bytes). Label values come from config (route templates, backend names)
//! and fixed sets (status classes, error kinds), never from request data, so cardinality is
//! bounded. Handles are created once from the plan ([`PlanMetrics`]): recording is an atomic
//! update, with no key lookup or allocation per request. Without an installed [`Exporter`] the
//! handles are no-ops.

use crate::config::Version;
use crate::plan::Plan;
use crate::rate_limit;
use ::metrics::{
    Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram,
};
use ::metrics::{gauge, histogram};
use downstream::cache;
use downstream::policy::{CIRCUIT_STATE, CIRCUIT_TRANSITIONS, HEDGES, RETRIES};
use downstream::{COALESCED, ERROR_KINDS};
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};
use std::time::Duration;

const REQUEST_DURATION: &str = "http_server_request_duration_seconds";
const CALL_DURATION: &str = "http_client_request_duration_seconds";
const ACTIVE_REQUESTS: &str = "http_server_active_requests";
const OPEN_CONNECTIONS: &str = "fanout_open_connections";
const BACKEND_ERRORS: &str = "fanout_backend_errors_total";
const PARTIAL_RESPONSES: &str = "fanout_partial_responses_total";
const RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
const CONFIG_HASH: &str = "fanout_config_hash";
const CONFIG_RELOADS: &str = "fanout_config_reloads_total";
const CONFIG_RELOAD_OK: &str = "fanout_config_last_reload_successful";
const LOG_LINES_DROPPED: &str = "fanout_log_lines_dropped_total";
const SHORTENED_DEADLINES: &str = "fanout_client_deadlines_shortened_total";

/// How often recorded histogram samples are folded into their buckets. Until then the recorder
/// keeps every sample (8 bytes in 64-sample blocks, freed in batches): six per page, so at 2 s
/// the samples were ~1 MB of the peak RSS at 5.4k pages/s (heaptrack) and twice that at 12k.
/// 250 ms keeps an eighth of that, and the buckets scraped are the same. Measured: peak
/// anonymous memory 20.4 → 19.0 MB (medians of three alternating runs, peer benchmark's page at
/// `-c 64`, 5.4k pages/s). The price: a fold walks every series, empty or not, rebuilding its
/// name and labels (~6.8k instructions each; the demo config's 109 series take ~743k per fold,
/// callgrind), so ~3M instructions a second, busy or idle: ~0.4 % of the page's own
/// instructions at 4k pages/s (2 s cost an eighth of that).
const UPKEEP: Duration = Duration::from_millis(250);

/// Histogram buckets, in seconds: millisecond resolution at the low end.
const BUCKETS: [f64; 15] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Call outcomes: `ok` (0), then each of [`ERROR_KINDS`] (1…).
const OUTCOMES: usize = ERROR_KINDS.len() + 1;

fn outcome_label(outcome: usize) -> &'static str {
    outcome.checked_sub(1).and_then(|kind| ERROR_KINDS.get(kind)).copied().unwrap_or("ok")
}
/// The route label of requests that matched no endpoint.
const UNMATCHED: &str = "unmatched";

/// The installed Prometheus recorder.
#[derive(Debug)]
pub struct Exporter {
    handle: PrometheusHandle,
}

impl Exporter {
    /// Installs the global recorder; call once, inside the runtime, before
    /// [`PlanMetrics::new`]. A task drains the histograms' recorded samples into their buckets
    /// every [`UPKEEP`]: the recorder keeps every sample until then, so without it memory would
    /// grow with traffic whenever nobody scrapes `/metrics`.
    pub fn install() -> Result<Self, BuildError> {
        let handle = PrometheusBuilder::new().set_buckets(&BUCKETS)?.install_recorder()?;
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(UPKEEP);
            loop {
                every.tick().await;
                upkeep.run_upkeep();
            }
        });
        describe_histogram!(REQUEST_DURATION, Unit::Seconds, "Duration of inbound requests.");
        describe_histogram!(CALL_DURATION, Unit::Seconds, "Duration of backend calls, by outcome.");
        describe_gauge!(ACTIVE_REQUESTS, "Inbound requests being served.");
        describe_gauge!(OPEN_CONNECTIONS, "Open client connections.");
        describe_counter!(BACKEND_ERRORS, "Failed backend calls, by error kind.");
        describe_counter!(PARTIAL_RESPONSES, "200 answers with at least one failed call.");
        describe_gauge!(RESIDENT_MEMORY, Unit::Bytes, "Resident set size of the process.");
        describe_gauge!(CONFIG_HASH, "Version of the config being served (the hash /readyz shows in hex).");
        describe_counter!(CONFIG_RELOADS, "Config reloads, by result: applied, unchanged, rejected.");
        describe_gauge!(CONFIG_RELOAD_OK, "1 unless the last config reload was rejected.");
        describe_counter!(LOG_LINES_DROPPED, "Log lines dropped because the log writer's buffer was full.");
        describe_counter!(RETRIES, "Backend call retries, by outcome: sent, or refused by the retry budget.");
        describe_gauge!(CIRCUIT_STATE, "Each backend's circuit breaker: 0 closed, 1 half-open, 2 open.");
        describe_counter!(CIRCUIT_TRANSITIONS, "Circuit breaker state changes, by the state entered.");
        describe_counter!(
            HEDGES,
            "Hedged backend requests, by outcome: sent, and won (answered first, and well)."
        );
        describe_counter!(
            SHORTENED_DEADLINES,
            "Requests whose endpoint deadline a client's server.deadline_header shortened."
        );
        describe_counter!(COALESCED, "Backend calls that joined an identical request already in flight.");
        describe_counter!(
            state::OPERATIONS,
            "Redis operations (state.redis), by op and outcome: ok, timeout, error, skipped (Redis failed under a second ago)."
        );
        describe_gauge!(
            state::UP,
            "Per purpose (rate_limit, cache): 1 while Redis answers, 0 after it failed to."
        );
        describe_counter!(
            cache::LOOKUPS,
            "Response cache lookups, by result: hit (fresh), stale (served while revalidating), miss."
        );
        describe_counter!(
            cache::STALE_SERVED,
            "Stale cached answers served, by reason: revalidating, or the error kind of the failed call."
        );
        describe_counter!(
            cache::EVICTIONS,
            "Cached answers evicted to stay within the backend's cache.max_bytes."
        );
        describe_gauge!(cache::BYTES, Unit::Bytes, "Bytes a backend's response cache holds (as weighed).");
        describe_counter!(
            rate_limit::REQUESTS,
            "Requests checked by an endpoint's rate limit, by outcome: allowed, limited."
        );
        describe_counter!(
            rate_limit::EVICTIONS,
            "Client keys an endpoint's rate limiter dropped because it held max_keys."
        );
        describe_gauge!(rate_limit::KEYS, "Client keys an endpoint's rate limiter tracks.");
        gauge!(CONFIG_RELOAD_OK).set(1.0);
        counter!(LOG_LINES_DROPPED).absolute(super::dropped_log_lines());
        Ok(Self { handle })
    }

    /// The Prometheus text exposition of every metric. The values kept outside the recorder
    /// (resident memory, the log writer's dropped lines) are read now.
    pub fn render(&self) -> String {
        if let Some(rss) = crate::memory::resident_bytes() {
            gauge!(RESIDENT_MEMORY).set(rss as f64);
        }
        counter!(LOG_LINES_DROPPED).absolute(super::dropped_log_lines());
        self.handle.run_upkeep();
        self.handle.render()
    }
}

/// Metric handles for one plan.
#[derive(Debug)]
pub struct PlanMetrics {
    routes: Vec<RouteMetrics>,
    unmatched: RouteMetrics,
    backends: Vec<BackendMetrics>,
    active_requests: Gauge,
}

#[derive(Debug)]
struct RouteMetrics {
    durations: [Histogram; STATUS_CLASSES.len()],
    partial: Counter,
    shortened: Counter,
    /// Allowed and limited requests, for an endpoint with a rate limit.
    rate_limit: Option<[Counter; 2]>,
}

#[derive(Debug)]
struct BackendMetrics {
    durations: [Histogram; OUTCOMES],
    /// By error kind, in [`ERROR_KINDS`] order.
    errors: [Counter; ERROR_KINDS.len()],
}

impl PlanMetrics {
    /// Creates every handle the plan's routes and backends can need, and shows each circuit
    /// breaker's state from the start (the breakers update it as it changes).
    pub fn new(plan: &Plan) -> Self {
        for backend in &plan.backends {
            if let Some(state) = backend.circuit_state() {
                gauge!(CIRCUIT_STATE, "backend" => backend.name().to_owned()).set(state.gauge());
            }
        }
        Self {
            routes: plan
                .endpoints
                .iter()
                .map(|e| RouteMetrics::new(&e.route, e.rate_limit.is_some()))
                .collect(),
            unmatched: RouteMetrics::new(UNMATCHED, false),
            backends: plan.backends.iter().map(|b| BackendMetrics::new(b.name())).collect(),
            active_requests: gauge!(ACTIVE_REQUESTS),
        }
    }

    /// Counts a request in flight until the returned guard is dropped.
    pub fn request_started(&self) -> InFlight {
        InFlight::new(self.active_requests.clone())
    }

    /// Records an answered request; `endpoint` is `None` for paths that matched no route.
    pub fn request(&self, endpoint: Option<usize>, status: u16, elapsed: Duration) {
        let route = endpoint.and_then(|e| self.routes.get(e)).unwrap_or(&self.unmatched);
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        route.durations[class].record(elapsed.as_secs_f64());
    }

    /// Records a request whose deadline the client's budget shortened.
    pub fn shortened_deadline(&self, endpoint: usize) {
        if let Some(route) = self.routes.get(endpoint) {
            route.shortened.increment(1);
        }
    }

    /// Records a request its endpoint's rate limit `allowed` or refused.
    pub fn rate_limit(&self, endpoint: usize, allowed: bool) {
        if let Some([allowed_count, limited]) = self.routes.get(endpoint).and_then(|r| r.rate_limit.as_ref())
        {
            if allowed { allowed_count } else { limited }.increment(1);
        }
    }

    /// Records a 200 answer with failed calls.
    pub fn partial(&self, endpoint: usize) {
        if let Some(route) = self.routes.get(endpoint) {
            route.partial.increment(1);
        }
    }

    /// Records a finished backend call; `error` is its error kind, `None` when it succeeded.
    pub fn call(&self, backend: usize, error: Option<&str>, elapsed: Duration) {
        let Some(metrics) = self.backends.get(backend) else { return };
        let outcome = error.and_then(|e| ERROR_KINDS.iter().position(|k| *k == e)).map_or(0, |kind| kind + 1);
        metrics.durations[outcome].record(elapsed.as_secs_f64());
        if let Some(errors) = outcome.checked_sub(1).and_then(|kind| metrics.errors.get(kind)) {
            errors.increment(1);
        }
    }
}

impl RouteMetrics {
    fn new(route: &str, rate_limited: bool) -> Self {
        let route = route.to_owned();
        Self {
            rate_limit: rate_limited.then(|| {
                ["allowed", "limited"]
                    .map(|outcome| counter!(rate_limit::REQUESTS, "http_route" => route.clone(), "outcome" => outcome))
            }),
            durations: STATUS_CLASSES.map(|class| {
                histogram!(REQUEST_DURATION, "http_route" => route.clone(), "http_response_status_class" => class)
            }),
            partial: counter!(PARTIAL_RESPONSES, "http_route" => route.clone()),
            shortened: counter!(SHORTENED_DEADLINES, "http_route" => route.clone()),
        }
    }
}

impl BackendMetrics {
    fn new(backend: &str) -> Self {
        let backend = backend.to_owned();
        Self {
            durations: std::array::from_fn(
                |outcome| histogram!(CALL_DURATION, "backend" => backend.clone(), "outcome" => outcome_label(outcome)),
            ),
            errors: ERROR_KINDS
                .map(|kind| counter!(BACKEND_ERRORS, "backend" => backend.clone(), "error_kind" => kind)),
        }
    }
}

/// Records the version of the config now serving.
pub fn config_version(version: Version) {
    gauge!(CONFIG_HASH).set(version.as_f64());
}

/// Counts a config reload by its result (`applied`, `unchanged`, `rejected`).
pub fn config_reload(result: &'static str) {
    counter!(CONFIG_RELOADS, "result" => result).increment(1);
    gauge!(CONFIG_RELOAD_OK).set(if result == "rejected" { 0.0 } else { 1.0 });
}

/// The open client connections gauge: hold one [`InFlight`] per connection.
pub fn open_connections() -> Gauge {
    gauge!(OPEN_CONNECTIONS)
}

/// Increments its gauge now and decrements it when dropped.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl InFlight {
    /// Counts one more on `gauge` until dropped.
    pub fn new(gauge: Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
