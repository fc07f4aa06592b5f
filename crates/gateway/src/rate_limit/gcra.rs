//! The generic cell rate algorithm (GCRA, ITU-T I.371; what governor, redis-cell and most
//! gateway limiters run): a token bucket whose whole state is one number per key, the
//! *theoretical arrival time* (TAT) — when the bucket would be full again. Pure arithmetic on
//! microseconds of whichever clock the caller reads (the process's monotonic clock locally,
//! Redis's `TIME` in the shared script, which runs these same steps), so it is tested directly.

use std::time::Duration;

/// A limit: `burst` requests at once, refilled at one per `interval_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Microseconds between two refills (≥ 1).
    pub interval_us: u64,
    /// Requests a full bucket holds (≥ 1).
    pub burst: u64,
}

impl Quota {
    /// `count` requests `per` period, `burst` at once. The interval is rounded down to whole
    /// microseconds, never below one (validation keeps rates at or under a million per second).
    pub fn new(count: u32, per: Duration, burst: u32) -> Self {
        let per_us = u64::try_from(per.as_micros()).unwrap_or(u64::MAX);
        Self { interval_us: (per_us / u64::from(count.max(1))).max(1), burst: u64::from(burst.max(1)) }
    }

    /// How long an empty bucket takes to fill: after that an idle key's state is the same as
    /// no state, so it can be forgotten without changing any answer.
    pub fn window_us(self) -> u64 {
        self.interval_us.saturating_mul(self.burst)
    }
}

/// What one check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The request conforms.
    pub allowed: bool,
    /// The TAT to store (unchanged when the request was refused).
    pub tat: u64,
    /// Requests the bucket still holds after this one.
    pub remaining: u64,
    /// Microseconds until the bucket is full again.
    pub reset_us: u64,
    /// Microseconds until a request would conform (0 when this one did).
    pub retry_after_us: u64,
}

/// Decides a request at `now` for a key whose stored TAT is `tat` (0: no state yet).
pub fn decide(quota: Quota, tat: u64, now: u64) -> Decision {
    let base = tat.max(now);
    let next = base.saturating_add(quota.interval_us);
    let window = quota.window_us();
    let ahead = next - now;
    if ahead <= window {
        Decision {
            allowed: true,
            tat: next,
            remaining: (window - ahead) / quota.interval_us,
            reset_us: ahead,
            retry_after_us: 0,
        }
    } else {
        Decision {
            allowed: false,
            tat: base,
            remaining: 0,
            reset_us: base - now,
            retry_after_us: ahead - window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 a second (one per 100 ms), 3 at once.
    const QUOTA: Quota = Quota { interval_us: 100_000, burst: 3 };

    #[test]
    fn a_quota_is_its_rate_as_an_interval() {
        assert_eq!(Quota::new(100, Duration::from_secs(1), 200), Quota { interval_us: 10_000, burst: 200 });
        assert_eq!(Quota::new(5, Duration::from_secs(60), 5).window_us(), 60_000_000);
        assert_eq!(Quota::new(3_000_000, Duration::from_secs(1), 1).interval_us, 1);
    }

    #[test]
    fn a_full_bucket_allows_its_burst_at_once_then_refuses_until_one_interval_refills() {
        let now = 5_000_000;
        let mut tat = 0;
        for remaining in [2, 1, 0] {
            let decision = decide(QUOTA, tat, now);
            assert!(decision.allowed);
            assert_eq!(decision.remaining, remaining);
            tat = decision.tat;
        }
        let refused = decide(QUOTA, tat, now);
        assert!(!refused.allowed);
        assert_eq!(refused.tat, tat, "a refusal changes nothing");
        assert_eq!(refused.retry_after_us, 100_000);
        assert_eq!(refused.reset_us, 300_000);
        assert!(!decide(QUOTA, tat, now + 99_999).allowed);
        let later = decide(QUOTA, tat, now + 100_000);
        assert!(later.allowed);
        assert_eq!(later.remaining, 0);
    }

    #[test]
    fn the_long_run_rate_is_the_quota_not_the_burst() {
        // Requests every 10 ms for 10 s: 3 at first, then one per 100 ms.
        let mut tat = 0;
        let allowed = (0..1_000u64)
            .filter(|i| {
                let decision = decide(QUOTA, tat, 1_000_000 + i * 10_000);
                tat = decision.tat;
                decision.allowed
            })
            .count();
        assert!((100..=103).contains(&allowed), "{allowed}");
    }

    #[test]
    fn an_idle_key_refills_to_its_burst_and_no_further() {
        let first = decide(QUOTA, 0, 1_000_000);
        let much_later = decide(QUOTA, first.tat, 60_000_000);
        assert_eq!(much_later.remaining, 2);
        assert_eq!(much_later.reset_us, 100_000);
        assert_eq!(much_later, decide(QUOTA, 0, 60_000_000), "an idle key is the same as a new one");
    }
}
