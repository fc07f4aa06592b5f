//! Retries (`backends.X.retry`): how many attempts, the backoff before each (exponential with
//! full jitter), which failures are retried, and the budget that keeps retries to a share of
//! the backend's recent calls (Finagle's and Linkerd's retry budgets), so a failing backend
//! gets at most `1 + ratio` times its load, never `attempts` times.

use super::failures::Failures;
use super::quota::Quota;
use crate::random::random_unit;
use std::time::Duration;

/// `backends.X.retry`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySettings {
    /// Attempts in all, the first included (2 or more).
    pub attempts: u32,
    /// The backoff ceiling before the first retry; it doubles for each further retry.
    pub backoff: Duration,
    /// The largest backoff ceiling.
    pub max_backoff: Duration,
    /// Which failures are retried.
    pub on: Failures,
    /// An attempt starts only when at least this much time is left before the endpoint
    /// deadline; `None`: the call's own timeout (an attempt is never started that could not
    /// run to its timeout).
    pub min_time_left: Option<Duration>,
    /// How many retries the backend may get.
    pub budget: BudgetSettings,
}

/// `backends.X.retry.budget`, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetSettings {
    /// Retries allowed per call made, over the window (0.2: one retry per five calls).
    pub ratio: f64,
    /// Retries allowed per second of window whatever the traffic, so a backend with few calls
    /// can still be retried.
    pub min_per_second: u32,
    /// The sliding window calls and retries are counted over.
    pub window: Duration,
}

/// The retry policy of one backend, with its budget.
#[derive(Debug)]
pub(crate) struct Retry {
    pub(crate) settings: RetrySettings,
    /// Calls (first attempts) and retries (and hedges) over the budget's window.
    pub(crate) budget: Quota,
}

impl Retry {
    pub(crate) fn new(settings: RetrySettings) -> Self {
        let BudgetSettings { ratio, min_per_second, window } = settings.budget;
        let budget = Quota::new(window, ratio, f64::from(min_per_second) * window.as_secs_f64());
        Self { settings, budget }
    }

    /// The wait before retry number `retry` (1 for the first): uniformly drawn from zero to
    /// `min(max_backoff, backoff × 2^(retry-1))` ("full jitter": retries of many callers that
    /// failed together spread out instead of arriving together again).
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        ceiling(&self.settings, retry).mul_f64(random_unit())
    }
}

/// The backoff ceiling before retry number `retry`.
fn ceiling(settings: &RetrySettings, retry: u32) -> Duration {
    let doubled = settings.backoff.saturating_mul(1 << retry.saturating_sub(1).min(20));
    doubled.min(settings.max_backoff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    const MS: Duration = Duration::from_millis(1);

    fn settings(ratio: f64, min_per_second: u32) -> RetrySettings {
        RetrySettings {
            attempts: 3,
            backoff: 10 * MS,
            max_backoff: 100 * MS,
            on: Failures::transient(),
            min_time_left: None,
            budget: BudgetSettings { ratio, min_per_second, window: Duration::from_secs(10) },
        }
    }

    #[test]
    fn backoff_ceilings_double_up_to_the_maximum() {
        let settings = settings(0.2, 10);
        let ceilings: Vec<Duration> = (1..=6).map(|retry| ceiling(&settings, retry)).collect();
        assert_eq!(ceilings, [10 * MS, 20 * MS, 40 * MS, 80 * MS, 100 * MS, 100 * MS]);
        assert_eq!(ceiling(&settings, u32::MAX), 100 * MS);
        let retry = Retry::new(settings);
        for _ in 0..1000 {
            let wait = retry.backoff(2);
            assert!(wait < 20 * MS, "{wait:?}");
        }
        // Full jitter: the waits spread over the whole range.
        let waits: Vec<Duration> = (0..1000).map(|_| retry.backoff(1)).collect();
        assert!(waits.iter().any(|w| *w < 2 * MS) && waits.iter().any(|w| *w > 8 * MS));
    }

    #[test]
    fn the_budget_is_a_share_of_recent_calls_plus_a_reserve() {
        let retry = Retry::new(settings(0.2, 0));
        let now = Instant::now();
        for _ in 0..10 {
            retry.budget.deposit(now);
        }
        // 20 % of 10 calls: two retries.
        assert!(retry.budget.withdraw(now));
        assert!(retry.budget.withdraw(now));
        assert!(!retry.budget.withdraw(now));
        for _ in 0..5 {
            retry.budget.deposit(now);
        }
        assert!(retry.budget.withdraw(now), "15 calls allow a third retry");
        assert!(!retry.budget.withdraw(now));
        // Once the calls have left the window, so has the budget they gave.
        assert!(!retry.budget.withdraw(now + Duration::from_secs(11)));
    }

    #[test]
    fn the_reserve_allows_retries_without_traffic() {
        // 1 per second over a 10 s window: 10 retries with no calls at all.
        let retry = Retry::new(settings(0.0, 1));
        let now = Instant::now();
        assert_eq!((0..20).filter(|_| retry.budget.withdraw(now)).count(), 10);
    }
}
