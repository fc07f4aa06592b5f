//! The circuit breaker (`backends.X.circuit_breaker`): closed, it counts finished calls and
//! failures over a sliding window and opens when, with at least `min_calls` finished, the share
//! of failures reaches `failure_rate`; open, every call fails at once (`circuit_open`) for
//! `open_for`; then half-open, it lets `half_open_calls` trial calls through: all succeed →
//! closed (with an empty window), one fails → open again. State changes are kept under one
//! short lock; each admitted call holds a [`Ticket`] of the state it was admitted in, so
//! results that arrive after a change (a slow call admitted while closed ends after the
//! breaker opened) are not counted against the new state.

use super::failures::Failures;
use super::window::Window;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// `backends.X.circuit_breaker`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    /// The sliding window finished calls are counted over.
    pub window: Duration,
    /// Fewer finished calls than this in the window never open the breaker.
    pub min_calls: u32,
    /// The share of failed calls (0 to 1) that opens it.
    pub failure_rate: f64,
    /// How long it stays open before letting trial calls through.
    pub open_for: Duration,
    /// Trial calls let through when half-open; all must succeed to close it.
    pub half_open_calls: u32,
    /// Which failures count (the rest count as successes: the backend answered).
    pub on: Failures,
}

/// The state of a breaker, as the `fanout_circuit_breaker_state` gauge shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through (gauge 0).
    Closed,
    /// A few trial calls go through (gauge 1).
    HalfOpen,
    /// Calls fail at once (gauge 2).
    Open,
}

impl CircuitState {
    /// Its name in logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Open => "open",
        }
    }

    /// Its gauge value.
    pub fn gauge(self) -> f64 {
        match self {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
        }
    }
}

/// A change of state, for the caller to log and count (outside the lock).
pub(crate) type Transition = (CircuitState, CircuitState);

#[derive(Debug)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { admitted: u32, succeeded: u32 },
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// Bumped at every change of state: tickets of an earlier state are not counted.
    generation: u64,
    /// Finished calls and failures while closed.
    window: Window,
}

/// One backend's breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    pub(crate) settings: BreakerSettings,
    state: Mutex<State>,
}

/// Leave to make one call: its result is reported with [`Breaker::record`]. A trial ticket
/// dropped without a result (the caller gave up) frees its trial slot.
#[derive(Debug)]
pub(crate) struct Ticket<'a> {
    breaker: &'a Breaker,
    generation: u64,
    trial: bool,
}

impl Breaker {
    pub(crate) fn new(settings: BreakerSettings) -> Self {
        let window = Window::new(settings.window, Instant::now());
        Self { settings, state: Mutex::new(State { phase: Phase::Closed, generation: 0, window }) }
    }

    /// The state now (an open breaker whose time is up counts as half-open).
    pub(crate) fn state(&self, now: Instant) -> CircuitState {
        match self.lock().phase {
            Phase::Closed => CircuitState::Closed,
            Phase::Open { until } if now < until => CircuitState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// Lets a call through, or says how long until trial calls may go through (zero while
    /// half-open with every trial slot taken). Also reports the move from open to half-open.
    pub(crate) fn admit(&self, now: Instant) -> (Result<Ticket<'_>, Duration>, Option<Transition>) {
        let mut state = self.lock();
        let mut transition = None;
        if let Phase::Open { until } = state.phase {
            if now < until {
                return (Err(until - now), None);
            }
            state.change(Phase::HalfOpen { admitted: 0, succeeded: 0 });
            transition = Some((CircuitState::Open, CircuitState::HalfOpen));
        }
        let generation = state.generation;
        let ticket = |trial| Ticket { breaker: self, generation, trial };
        let admitted = match &mut state.phase {
            Phase::Closed => Ok(ticket(false)),
            Phase::HalfOpen { admitted, .. } if *admitted < self.settings.half_open_calls => {
                *admitted += 1;
                Ok(ticket(true))
            }
            Phase::HalfOpen { .. } | Phase::Open { .. } => Err(Duration::ZERO),
        };
        (admitted, transition)
    }

    /// Counts the result of a call let through with `ticket`; returns the change of state it
    /// causes, if any.
    pub(crate) fn record(&self, ticket: Ticket<'_>, failed: bool, now: Instant) -> Option<Transition> {
        let ticket = std::mem::ManuallyDrop::new(ticket);
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.generation != ticket.generation {
            return None;
        }
        let settings = &self.settings;
        let trials_succeeded = match &mut state.phase {
            Phase::Open { .. } => return None,
            Phase::Closed => None,
            Phase::HalfOpen { succeeded, .. } => {
                *succeeded += u32::from(!failed);
                Some(*succeeded)
            }
        };
        let (from, to) = match trials_succeeded {
            None => {
                state.window.add(now, [1, u64::from(failed)]);
                let [calls, failures] = state.window.totals(now);
                let opens = calls >= u64::from(settings.min_calls)
                    && failures as f64 >= settings.failure_rate * calls as f64;
                if !opens {
                    return None;
                }
                (CircuitState::Closed, CircuitState::Open)
            }
            Some(_) if failed => (CircuitState::HalfOpen, CircuitState::Open),
            Some(succeeded) if succeeded >= settings.half_open_calls => {
                (CircuitState::HalfOpen, CircuitState::Closed)
            }
            Some(_) => return None,
        };
        if to == CircuitState::Open {
            state.change(Phase::Open { until: now + settings.open_for });
        } else {
            state.change(Phase::Closed);
            state.window.clear();
        }
        Some((from, to))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn change(&mut self, phase: Phase) {
        self.phase = phase;
        self.generation += 1;
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.trial {
            return;
        }
        let mut state = self.breaker.lock();
        if state.generation == self.generation
            && let Phase::HalfOpen { admitted, .. } = &mut state.phase
        {
            *admitted = admitted.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn breaker() -> Breaker {
        Breaker::new(BreakerSettings {
            window: Duration::from_secs(10),
            min_calls: 4,
            failure_rate: 0.5,
            open_for: 100 * MS,
            half_open_calls: 2,
            on: Failures::transient(),
        })
    }

    /// Lets a call through at `now` and records its result.
    fn call(breaker: &Breaker, now: Instant, failed: bool) -> Option<Transition> {
        let (ticket, _) = breaker.admit(now);
        breaker.record(ticket.unwrap_or_else(|wait| panic!("refused for {wait:?}")), failed, now)
    }

    #[test]
    fn opens_at_the_failure_rate_once_enough_calls_finished() {
        let breaker = breaker();
        let now = Instant::now();
        // Three failures are under min_calls: still closed.
        for _ in 0..3 {
            assert_eq!(call(&breaker, now, true), None);
        }
        assert_eq!(call(&breaker, now, true), Some((CircuitState::Closed, CircuitState::Open)));
        assert_eq!(breaker.state(now), CircuitState::Open);
        let (refused, _) = breaker.admit(now + 40 * MS);
        assert_eq!(refused.err(), Some(60 * MS), "refused until half-open");
    }

    #[test]
    fn stays_closed_below_the_failure_rate() {
        let breaker = breaker();
        let now = Instant::now();
        for failed in [true, false, false, false, true, false, false] {
            assert_eq!(call(&breaker, now, failed), None);
        }
        assert_eq!(breaker.state(now), CircuitState::Closed);
    }

    #[test]
    fn half_open_trials_close_it_or_open_it_again() {
        let breaker = breaker();
        let now = Instant::now();
        for _ in 0..4 {
            call(&breaker, now, true);
        }
        let later = now + 100 * MS;
        assert_eq!(breaker.state(later), CircuitState::HalfOpen);
        let (first, moved) = breaker.admit(later);
        assert_eq!(moved, Some((CircuitState::Open, CircuitState::HalfOpen)));
        let (second, _) = breaker.admit(later);
        let (third, _) = breaker.admit(later);
        assert_eq!(third.err(), Some(Duration::ZERO), "only half_open_calls trials at once");
        let (first, second) = (first.unwrap_or_else(|_| panic!()), second.unwrap_or_else(|_| panic!()));
        assert_eq!(breaker.record(first, false, later), None);
        assert_eq!(
            breaker.record(second, false, later),
            Some((CircuitState::HalfOpen, CircuitState::Closed))
        );
        // Closed with an empty window: one failure does not reopen it.
        assert_eq!(call(&breaker, later, true), None);

        for _ in 0..3 {
            call(&breaker, later, true);
        }
        let again = later + 100 * MS;
        assert_eq!(call(&breaker, again, true), Some((CircuitState::HalfOpen, CircuitState::Open)));
        assert_eq!(breaker.state(again), CircuitState::Open);
    }

    #[test]
    fn a_dropped_trial_frees_its_slot_and_stale_results_are_ignored() {
        let breaker = breaker();
        let now = Instant::now();
        let (slow, _) = breaker.admit(now);
        for _ in 0..4 {
            call(&breaker, now, true);
        }
        // A call admitted while closed ends after the breaker opened: not counted.
        assert_eq!(breaker.record(slow.unwrap_or_else(|_| panic!()), false, now), None);
        let later = now + 100 * MS;
        let (trials, _): (Vec<_>, Vec<_>) = (0..2).map(|_| breaker.admit(later)).unzip();
        assert!(breaker.admit(later).0.is_err());
        drop(trials);
        assert!(breaker.admit(later).0.is_ok(), "dropped trials free their slots");
    }
}
