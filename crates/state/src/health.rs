//! Whether Redis is worth trying now: after a failure it is skipped for [`SKIP_AFTER_FAILURE`]
//! (callers fall back at once instead of each waiting out a `timeout`), then tried again by
//! whichever requests come next. The transitions are logged — a failure at most once every
//! [`LOG_EVERY`], the return once — and shown on the [`super::UP`] gauge.

use super::{UP, Unavailable};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// How long Redis is skipped after a failure. A restarted Redis or a failed-over replica takes
/// seconds to come back (Sentinel's default `down-after-milliseconds` alone is 30 s), so
/// trying again once a second finds it within a second of its return, while requests wait on
/// a dead Redis for at most one `timeout` per second.
pub const SKIP_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// The most often a failure is logged (the metric counts every one).
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Redis's recent record.
#[derive(Debug)]
pub struct Health {
    /// The purpose it keeps the record of (the [`UP`] gauge's label).
    purpose: &'static str,
    /// Zero of the millisecond clock below.
    epoch: Instant,
    /// Until when Redis is skipped (ms since `epoch`; 0: not skipped).
    skip_until: AtomicU64,
    /// When a failure was last logged (ms since `epoch` + 1; 0: never).
    logged: AtomicU64,
    /// The last operation failed.
    down: AtomicBool,
}

impl Health {
    /// A record with no failures yet, shown as up.
    pub fn new(purpose: &'static str) -> Self {
        metrics::gauge!(UP, "purpose" => purpose).set(1.0);
        Self {
            purpose,
            epoch: Instant::now(),
            skip_until: AtomicU64::new(0),
            logged: AtomicU64::new(0),
            down: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether to skip Redis now.
    pub fn skipping(&self) -> bool {
        self.now_ms() < self.skip_until.load(Ordering::Relaxed)
    }

    /// An operation for `op` failed with `failure`; `unreachable`: Redis did not answer (it is
    /// then skipped a while and shown down), else it answered with an error.
    pub fn failed(&self, op: &'static str, failure: &Unavailable, unreachable: bool) {
        let now = self.now_ms();
        if unreachable {
            let skip = u64::try_from(SKIP_AFTER_FAILURE.as_millis()).unwrap_or(u64::MAX);
            self.skip_until.store(now.saturating_add(skip), Ordering::Relaxed);
            if !self.down.swap(true, Ordering::Relaxed) {
                metrics::gauge!(UP, "purpose" => self.purpose).set(0.0);
            }
        }
        let last = self.logged.load(Ordering::Relaxed);
        let every = u64::try_from(LOG_EVERY.as_millis()).unwrap_or(u64::MAX);
        let due = last == 0 || now.saturating_sub(last - 1) >= every;
        if due && self.logged.compare_exchange(last, now + 1, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            tracing::warn!(op, error = %failure, "redis unavailable: using local state (logged at most every 10 s per purpose; fanout_redis_operations_total counts each)");
        }
    }

    /// An operation succeeded.
    pub fn succeeded(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            metrics::gauge!(UP, "purpose" => self.purpose).set(1.0);
            tracing::info!(purpose = self.purpose, "redis answers again: shared state resumes");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn after_a_failure_redis_is_skipped_for_a_second_then_tried_again() {
        let health = Health::new("test");
        assert!(!health.skipping());
        health.failed("test", &Unavailable::Timeout(Duration::from_millis(20)), true);
        assert!(health.skipping());
        tokio::time::advance(SKIP_AFTER_FAILURE - Duration::from_millis(1)).await;
        assert!(health.skipping());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!health.skipping());
        health.succeeded();
        assert!(!health.down.load(Ordering::Relaxed));
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_answer_skips_nothing() {
        let health = Health::new("test");
        health.failed("test", &Unavailable::Timeout(Duration::from_millis(20)), false);
        assert!(!health.skipping());
        assert!(!health.down.load(Ordering::Relaxed));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_logged_at_most_every_ten_seconds() {
        let health = Health::new("test");
        let failure = Unavailable::Timeout(Duration::from_millis(20));
        health.failed("test", &failure, true);
        let first = health.logged.load(Ordering::Relaxed);
        tokio::time::advance(Duration::from_secs(5)).await;
        health.failed("test", &failure, true);
        assert_eq!(health.logged.load(Ordering::Relaxed), first, "not again within 10 s");
        tokio::time::advance(Duration::from_secs(5)).await;
        health.failed("test", &failure, true);
        assert_eq!(health.logged.load(Ordering::Relaxed), first + 10_000);
    }
}
