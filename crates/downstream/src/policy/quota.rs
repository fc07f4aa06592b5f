//! A share of a backend's recent calls that may get something extra (retries, hedges): over a
//! sliding window, the extras taken stay at most `ratio` × the calls made plus a fixed
//! `reserve`. The retry budget and the hedge cap are both one.

use super::window::Window;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// Calls and extras over a window, and how many extras they allow.
#[derive(Debug)]
pub(crate) struct Quota {
    /// Calls made and extras taken.
    counts: Mutex<Window>,
    ratio: f64,
    reserve: f64,
}

impl Quota {
    /// `ratio` extras per call over `window`, plus `reserve` whatever the calls.
    pub(crate) fn new(window: Duration, ratio: f64, reserve: f64) -> Self {
        Self { counts: Mutex::new(Window::new(window, Instant::now())), ratio, reserve }
    }

    /// Counts a call.
    pub(crate) fn deposit(&self, now: Instant) {
        self.lock().add(now, [1, 0]);
    }

    /// Whether an extra is left now (nothing is taken).
    pub(crate) fn allows(&self, now: Instant) -> bool {
        self.has_room(&self.lock(), now)
    }

    /// Takes one extra; false when they are spent.
    pub(crate) fn withdraw(&self, now: Instant) -> bool {
        let mut counts = self.lock();
        if !self.has_room(&counts, now) {
            return false;
        }
        counts.add(now, [0, 1]);
        true
    }

    fn has_room(&self, counts: &Window, now: Instant) -> bool {
        let [calls, extras] = counts.totals(now);
        (extras + 1) as f64 <= self.ratio * calls as f64 + self.reserve
    }

    fn lock(&self) -> MutexGuard<'_, Window> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
