//! Hedging (`backends.X.hedge`, "The Tail at Scale"): when an attempt has not answered after
//! the backend's observed latency quantile (or a fixed delay), one more identical request is
//! sent and the first good answer wins; the other is dropped (its connection closed). The
//! latencies come from a sliding histogram of the backend's recent attempts; hedges are capped
//! at a share of the backend's calls.

use super::quota::Quota;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// `backends.X.hedge`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct HedgeSettings {
    /// When to hedge: after a quantile of the backend's recent latencies, or a fixed delay.
    pub after: HedgeAfter,
    /// Never hedge sooner than this.
    pub min_delay: Duration,
    /// Never wait longer than this before hedging (and the delay while too few latencies are
    /// known).
    pub max_delay: Duration,
    /// Hedges allowed per call made (0.05: one per twenty calls), over the last 10 s.
    pub max_extra: f64,
}

/// When an attempt is hedged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HedgeAfter {
    /// After this quantile (0.9, 0.95, 0.99) of the backend's latencies over the last 10 s.
    Quantile(f64),
    /// After a fixed delay.
    Fixed(Duration),
}

/// The window latencies and the hedge cap are counted over: long enough to hold thousands of
/// calls on a busy backend, short enough to follow a backend that slows down within seconds.
const WINDOW: Duration = Duration::from_secs(10);
/// Fewer latencies than this in the window: the quantile is not trusted, `max_delay` is used.
const MIN_SAMPLES: u64 = 20;
/// Four buckets per power of two of microseconds (each ~19 % wide), up to 2^24 µs (~17 s).
const BUCKETS: usize = 24 * 4;

/// One backend's hedging: its latencies and how many hedges it was sent.
#[derive(Debug)]
pub(crate) struct Hedge {
    pub(crate) settings: HedgeSettings,
    latencies: Mutex<Latencies>,
    /// Calls and hedges over [`WINDOW`]: at most `max_extra` hedges per call.
    pub(crate) cap: Quota,
}

/// Two histograms, each half a window: the quantile reads both, so it covers between half a
/// window and a whole one.
#[derive(Debug)]
struct Latencies {
    current: [u64; BUCKETS],
    previous: [u64; BUCKETS],
    rotated: Instant,
}

impl Hedge {
    pub(crate) fn new(settings: HedgeSettings) -> Self {
        let now = Instant::now();
        let latencies = Latencies { current: [0; BUCKETS], previous: [0; BUCKETS], rotated: now };
        let cap = Quota::new(WINDOW, settings.max_extra, 0.0);
        Self { settings, latencies: Mutex::new(latencies), cap }
    }

    /// Records the latency of an attempt that answered.
    pub(crate) fn observe(&self, latency: Duration, now: Instant) {
        let mut latencies = self.latencies.lock().unwrap_or_else(PoisonError::into_inner);
        latencies.rotate(now);
        latencies.current[bucket(latency)] += 1;
    }

    /// How long to wait before hedging an attempt.
    pub(crate) fn delay(&self, now: Instant) -> Duration {
        let settings = &self.settings;
        let delay = match settings.after {
            HedgeAfter::Fixed(delay) => delay,
            HedgeAfter::Quantile(q) => {
                let mut latencies = self.latencies.lock().unwrap_or_else(PoisonError::into_inner);
                latencies.rotate(now);
                latencies.quantile(q).unwrap_or(settings.max_delay)
            }
        };
        delay.clamp(settings.min_delay, settings.max_delay.max(settings.min_delay))
    }
}

impl Latencies {
    fn rotate(&mut self, now: Instant) {
        let since = now.saturating_duration_since(self.rotated);
        if since >= WINDOW {
            self.previous = [0; BUCKETS];
            self.current = [0; BUCKETS];
            self.rotated = now;
        } else if since >= WINDOW / 2 {
            self.previous = self.current;
            self.current = [0; BUCKETS];
            self.rotated = now;
        }
    }

    /// The upper bound of the bucket holding quantile `q`, or none with too few samples.
    fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self.current.iter().zip(&self.previous).map(|(a, b)| a + b).collect();
        let total: u64 = counts.iter().sum();
        if total < MIN_SAMPLES {
            return None;
        }
        let rank = (q * total as f64).ceil() as u64;
        let mut seen = 0;
        for (index, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(upper_bound(index));
            }
        }
        Some(upper_bound(BUCKETS - 1))
    }
}

/// The bucket of a latency: four per power of two of microseconds.
fn bucket(latency: Duration) -> usize {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
    let power = 63 - micros.leading_zeros() as usize;
    let quarter = if power >= 2 { ((micros >> (power - 2)) & 3) as usize } else { 0 };
    (power * 4 + quarter).min(BUCKETS - 1)
}

/// The largest latency in bucket `index`.
fn upper_bound(index: usize) -> Duration {
    let (power, quarter) = (index / 4, (index % 4) as u64);
    let base = 1u64 << power;
    let step = if power >= 2 { base / 4 } else { base };
    Duration::from_micros(base + (quarter + 1) * step)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn hedge(after: HedgeAfter) -> Hedge {
        Hedge::new(HedgeSettings { after, min_delay: 2 * MS, max_delay: 200 * MS, max_extra: 0.05 })
    }

    #[test]
    fn buckets_are_a_fifth_wide_and_bound_their_latencies() {
        for micros in [1, 3, 100, 999, 1000, 1001, 25_000, 300_000, 5_000_000] {
            let latency = Duration::from_micros(micros);
            let index = bucket(latency);
            assert!(upper_bound(index) >= latency, "{micros} µs in bucket {index}");
            if index > 0 && micros > 8 {
                assert!(upper_bound(index - 1) < latency, "{micros} µs");
                assert!(upper_bound(index).as_secs_f64() <= latency.as_secs_f64() * 1.26, "{micros} µs");
            }
        }
    }

    #[test]
    fn the_delay_follows_the_quantile_within_its_bounds() {
        let hedge = hedge(HedgeAfter::Quantile(0.95));
        let now = Instant::now();
        assert_eq!(hedge.delay(now), 200 * MS, "no latencies yet: max_delay");
        // 95 answers in 10 ms, 5 in 300 ms: p95 is in the 10 ms bucket.
        for _ in 0..95 {
            hedge.observe(10 * MS, now);
        }
        for _ in 0..5 {
            hedge.observe(300 * MS, now);
        }
        let delay = hedge.delay(now);
        assert!(delay >= 10 * MS && delay <= 13 * MS, "{delay:?}");
        // Fast answers: never under min_delay.
        let fast = self::hedge(HedgeAfter::Quantile(0.5));
        for _ in 0..50 {
            fast.observe(Duration::from_micros(100), now);
        }
        assert_eq!(fast.delay(now), 2 * MS);
        // Latencies older than the window are forgotten.
        assert_eq!(hedge.delay(now + WINDOW), 200 * MS);
        assert_eq!(self::hedge(HedgeAfter::Fixed(30 * MS)).delay(now), 30 * MS);
    }

    #[test]
    fn hedges_are_capped_at_a_share_of_calls() {
        let hedge = hedge(HedgeAfter::Fixed(5 * MS));
        let now = Instant::now();
        for _ in 0..40 {
            hedge.cap.deposit(now);
        }
        assert!(hedge.cap.withdraw(now));
        assert!(hedge.cap.withdraw(now));
        assert!(!hedge.cap.withdraw(now), "5 % of 40 calls: two hedges");
    }
}
