//! A sliding window of two counts (calls and failures, requests and retries): ten buckets, each
//! a tenth of the window, so what the window holds moves forward in tenths and a count leaves
//! it between 0.9 and 1 window after it was added. Time is given, never read, so the arithmetic
//! is tested without a clock.

use std::time::Duration;
use tokio::time::Instant;

/// Buckets per window.
const BUCKETS: usize = 10;

/// Two counts over the last `window`.
#[derive(Debug)]
pub(crate) struct Window {
    origin: Instant,
    bucket_len: Duration,
    /// Each bucket's tick (its start, in bucket lengths since `origin`) and its two counts.
    buckets: [(u64, [u64; 2]); BUCKETS],
}

impl Window {
    /// An empty window of length `window`, starting at `now`.
    pub(crate) fn new(window: Duration, now: Instant) -> Self {
        let bucket_len = (window / BUCKETS as u32).max(Duration::from_millis(1));
        Self { origin: now, bucket_len, buckets: [(u64::MAX, [0; 2]); BUCKETS] }
    }

    /// Adds `counts` at `now`.
    pub(crate) fn add(&mut self, now: Instant, counts: [u64; 2]) {
        let tick = self.tick(now);
        let bucket = &mut self.buckets[slot(tick)];
        if bucket.0 != tick {
            *bucket = (tick, [0; 2]);
        }
        bucket.1[0] += counts[0];
        bucket.1[1] += counts[1];
    }

    /// The two counts added over the window ending at `now`.
    pub(crate) fn totals(&self, now: Instant) -> [u64; 2] {
        let tick = self.tick(now);
        let live = |bucket_tick: u64| bucket_tick <= tick && tick - bucket_tick < BUCKETS as u64;
        self.buckets
            .iter()
            .filter(|(t, _)| live(*t))
            .fold([0; 2], |sum, (_, c)| [sum[0] + c[0], sum[1] + c[1]])
    }

    /// Forgets every count.
    pub(crate) fn clear(&mut self) {
        self.buckets = [(u64::MAX, [0; 2]); BUCKETS];
    }

    fn tick(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin);
        u64::try_from(since.as_nanos() / self.bucket_len.as_nanos()).unwrap_or(u64::MAX - 1)
    }
}

fn slot(tick: u64) -> usize {
    // The remainder is below BUCKETS.
    usize::try_from(tick % BUCKETS as u64).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn counts_leave_the_window_a_window_later() {
        let start = Instant::now();
        let mut window = Window::new(1000 * MS, start);
        window.add(start, [1, 0]);
        window.add(start + 150 * MS, [1, 1]);
        assert_eq!(window.totals(start + 150 * MS), [2, 1]);
        assert_eq!(window.totals(start + 999 * MS), [2, 1]);
        // The first bucket (0–100 ms) has left at 1000 ms, the second (100–200 ms) at 1100 ms.
        assert_eq!(window.totals(start + 1000 * MS), [1, 1]);
        assert_eq!(window.totals(start + 1100 * MS), [0, 0]);
    }

    #[test]
    fn a_reused_bucket_starts_from_zero() {
        let start = Instant::now();
        let mut window = Window::new(1000 * MS, start);
        window.add(start, [5, 5]);
        // Same slot, one window later.
        window.add(start + 1000 * MS, [1, 0]);
        assert_eq!(window.totals(start + 1000 * MS), [1, 0]);
        window.clear();
        assert_eq!(window.totals(start + 1000 * MS), [0, 0]);
    }
}
