//! Rate limits per endpoint (`endpoints[].rate_limit`, by default `server.rate_limit`): each
//! endpoint with a limit has one [`RateLimiter`], a GCRA bucket ([`gcra`]) per client key
//! ([`client_key`]). A request over its limit is answered `429` before any backend call; every
//! answer of a limited endpoint carries the IETF `RateLimit-Policy` and `RateLimit` fields
//! (draft-ietf-httpapi-ratelimit-headers-10), a `429` also `Retry-After`.
//!
//! With `state.redis`, the buckets live in Redis ([`shared`]) and a limit holds across every
//! replica; when Redis does not answer in time, the local buckets decide (failing open to the
//! per-replica limit, never to no limit).
//!
//! Memory is bounded: the buckets live in a moka cache of at most `max_keys` entries, the least
//! recently used evicted first (counted in `fanout_rate_limit_evictions_total`), and a key idle
//! for as long as its bucket takes to refill is dropped — its state then equals no state, so
//! that loses nothing. An evicted busy key starts again with a full bucket: under a flood of
//! new keys the limiter errs towards allowing, never towards refusing a client it lost track of.

pub mod client_key;
pub mod gcra;
pub mod shared;

use client_key::{ClientKey, KeySource};
use gcra::{Decision, Quota};
use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use shared::SharedBuckets;
use state::Redis;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Requests checked, by endpoint and outcome (`allowed`, `limited`).
pub const REQUESTS: &str = "fanout_rate_limit_requests_total";
/// Keys dropped because an endpoint's limiter held `max_keys`.
pub const EVICTIONS: &str = "fanout_rate_limit_evictions_total";
/// Keys an endpoint's limiter tracks now.
pub const KEYS: &str = "fanout_rate_limit_keys";

/// `RateLimit-Policy`: the limit, as a quota `q` per window `w` seconds.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`: what is left (`r`) and the seconds until the bucket is full (`t`).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// One limit as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Whose bucket a request draws from.
    pub key: KeySource,
    /// Requests allowed per `per`, in the long run.
    pub count: u32,
    /// The period of `count`.
    pub per: Duration,
    /// Requests allowed at once.
    pub burst: u32,
    /// Keys tracked at most.
    pub max_keys: usize,
}

impl RateLimitSettings {
    /// The GCRA quota.
    pub fn quota(&self) -> Quota {
        Quota::new(self.count, self.per, self.burst)
    }
}

/// One endpoint's limiter.
pub struct RateLimiter {
    settings: RateLimitSettings,
    quota: Quota,
    buckets: Cache<ClientKey, Arc<AtomicU64>>,
    /// Zero of the buckets' clock.
    epoch: Instant,
    /// The `RateLimit-Policy` value, made once.
    policy: HeaderValue,
    /// The policy's name, quoted: the start of every `RateLimit` value.
    quoted_name: Box<str>,
    /// The buckets in Redis, with `state.redis`.
    shared: Option<SharedBuckets>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// What a check came to.
#[derive(Debug, Clone, Copy)]
pub struct Checked(Decision);

impl Checked {
    /// The request may go on.
    pub fn allowed(&self) -> bool {
        self.0.allowed
    }

    /// How long until a request would be allowed.
    pub fn retry_after(&self) -> Duration {
        Duration::from_micros(self.0.retry_after_us)
    }
}

impl RateLimiter {
    /// A limiter for `settings` on the endpoint `route` (the label of its eviction count).
    pub fn new(settings: &RateLimitSettings, route: &str) -> Self {
        let quota = settings.quota();
        let route: Arc<str> = route.into();
        let buckets = Cache::builder()
            .max_capacity(u64::try_from(settings.max_keys).unwrap_or(u64::MAX))
            .time_to_idle(Duration::from_micros(quota.window_us()).max(Duration::from_secs(1)))
            .eviction_policy(EvictionPolicy::lru())
            .eviction_listener(move |_key, _bucket, cause| {
                if cause == RemovalCause::Size {
                    metrics::counter!(EVICTIONS, "http_route" => route.to_string()).increment(1);
                }
            })
            .build();
        let name = settings.key.name();
        let policy = format!("\"{name}\";q={};w={}", quota.burst, whole_seconds(quota.window_us()));
        Self {
            settings: settings.clone(),
            quota,
            buckets,
            epoch: Instant::now(),
            policy: HeaderValue::try_from(policy).unwrap_or(HeaderValue::from_static("\"limit\"")),
            quoted_name: format!("\"{name}\"").into(),
            shared: None,
        }
    }

    /// Keeps the buckets of the endpoint `route` in `redis` from now on (the local ones then
    /// decide only when Redis does not answer in time).
    pub fn share(&mut self, redis: Arc<Redis>, route: &str) {
        self.shared = Some(SharedBuckets::new(redis, route));
    }

    /// The limit as configured.
    pub fn settings(&self) -> &RateLimitSettings {
        &self.settings
    }

    /// Whether its keys are client addresses (the request then needs its peer address).
    pub fn keys_by_client_ip(&self) -> bool {
        self.settings.key == KeySource::ClientIp
    }

    /// Checks (and, if allowed, counts) a request with these `headers` from `peer`: in Redis
    /// when shared and it answers in time, else locally.
    pub async fn check(&self, headers: &HeaderMap, peer: Option<IpAddr>, trusted: &[IpNet]) -> Checked {
        let key = self.settings.key.key_of(headers, peer, trusted);
        if let Some(shared) = &self.shared
            && let Ok(decision) = shared.take(&key, self.quota).await
        {
            return Checked(decision);
        }
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        Checked(self.take(key, now))
    }

    /// Takes one request from `key`'s bucket at `now` (µs since the epoch), unless it is empty.
    fn take(&self, key: ClientKey, now: u64) -> Decision {
        let bucket = self.buckets.get_with(key, || Arc::new(AtomicU64::new(0)));
        let mut tat = bucket.load(Ordering::Relaxed);
        loop {
            let decision = gcra::decide(self.quota, tat, now);
            if !decision.allowed {
                return decision;
            }
            match bucket.compare_exchange_weak(tat, decision.tat, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return decision,
                Err(stored) => tat = stored,
            }
        }
    }

    /// Sets `RateLimit-Policy` and `RateLimit` for what `checked` found.
    pub fn set_headers(&self, checked: Checked, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT_POLICY, self.policy.clone());
        let Checked(decision) = checked;
        let value =
            format!("{};r={};t={}", self.quoted_name, decision.remaining, whole_seconds(decision.reset_us));
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(RATELIMIT, value);
        }
    }

    /// Keys tracked now (moka's count, which trails recent inserts and evictions a little).
    pub fn tracked_keys(&self) -> u64 {
        self.buckets.run_pending_tasks();
        self.buckets.entry_count()
    }
}

/// Microseconds as whole seconds, rounded up.
fn whole_seconds(us: u64) -> u64 {
    crate::problem::whole_seconds(Duration::from_micros(us))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
