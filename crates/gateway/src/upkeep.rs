//! Once every [`SWEEP_PERIOD`], the work no request should wait for: each backend pool of the
//! config serving now closes its expired idle connections and parks the long-idle ones, each
//! response cache shows its size, each rate limiter drops its expired keys and shows how many it
//! tracks, then the allocator is
//! asked to give memory back if a burst left some ([`memory::TrimPolicy`]).

use crate::memory::{self, TrimPolicy};
use crate::rate_limit;
use crate::reload::Live;
use downstream::SWEEP_PERIOD;
use downstream::cache;
use std::sync::Arc;
use tokio::time::MissedTickBehavior;

/// Runs the upkeep until the task is dropped.
pub async fn run(live: Arc<Live>) {
    let mut every = tokio::time::interval(SWEEP_PERIOD);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut policy = TrimPolicy::default();
    loop {
        every.tick().await;
        let serving = live.current();
        for backend in &serving.plan.backends {
            backend.sweep_idle();
            if let Some(cache) = backend.cache() {
                let bytes = cache.weighed_bytes() as f64;
                metrics::gauge!(cache::BYTES, "backend" => backend.name().to_owned()).set(bytes);
            }
        }
        for endpoint in &serving.plan.endpoints {
            if let Some(limiter) = &endpoint.rate_limit {
                let keys = limiter.tracked_keys() as f64;
                metrics::gauge!(rate_limit::KEYS, "http_route" => endpoint.route.to_string()).set(keys);
            }
        }
        drop(serving);
        let (Some(resident), Some(in_use)) = (memory::resident_bytes(), memory::heap_in_use()) else {
            continue;
        };
        if policy.observe(resident, in_use) {
            let started = std::time::Instant::now();
            memory::trim();
            tracing::debug!(
                before = resident,
                after = memory::resident_bytes().unwrap_or_default(),
                took_us = started.elapsed().as_micros() as u64,
                "gave freed memory back to the system"
            );
        }
    }
}
