//! The resilience policies of one backend and the attempt loop that applies them to a call:
//! the circuit breaker admits each attempt (or the call fails at once with `circuit_open`),
//! each attempt runs under the call's timeout (never past the endpoint deadline) and may be
//! hedged (one more identical request once it is slower than the backend usually is), and a
//! failed attempt is retried when its failure is in `retry.on`, attempts are left, the backoff
//! plus the time an attempt needs fit before the deadline, and the retry budget allows it. The
//! bulkhead (`max_in_flight`) is taken inside each attempt. A backend without policies never
//! comes here (see [`crate::CallRequest`]): the loop costs nothing when off.
//!
//! Metrics (through the `metrics` facade, so they reach whichever recorder the gateway
//! installed): [`RETRIES`], [`CIRCUIT_STATE`], [`CIRCUIT_TRANSITIONS`], [`HEDGES`]; every
//! breaker state change is also one log line.

mod breaker;
mod failures;
mod hedge;
mod quota;
mod retry;
mod window;

pub use breaker::{BreakerSettings, CircuitState};
pub use failures::Failures;
pub use hedge::{HedgeAfter, HedgeSettings};
pub use retry::{BudgetSettings, RetrySettings};

use crate::error::CallError;
use crate::exchanged::{Attempted, Exchanged, Hedges};
use breaker::{Breaker, Ticket, Transition};
use futures_util::future::Either;
use hedge::Hedge;
use retry::Retry;
use std::future::Future;
use std::time::Duration;
use tokio::time::{Instant, sleep_until, timeout_at};

/// Counter of retries by backend and `outcome`: `sent`, or `refused` by the budget.
pub const RETRIES: &str = "fanout_backend_retries_total";
/// Gauge of each backend's breaker: 0 closed, 1 half-open, 2 open.
pub const CIRCUIT_STATE: &str = "fanout_circuit_breaker_state";
/// Counter of breaker state changes by backend and the state entered (`to`).
pub const CIRCUIT_TRANSITIONS: &str = "fanout_circuit_breaker_transitions_total";
/// Counter of hedges by backend and `outcome`: `sent`, and `won` (answered first, and well).
pub const HEDGES: &str = "fanout_backend_hedges_total";

/// The policies configured for one backend.
#[derive(Debug)]
pub(crate) struct Policies {
    /// The backend's name (metric label, log field).
    backend: Box<str>,
    retry: Option<Retry>,
    breaker: Option<Breaker>,
    hedge: Option<Hedge>,
}

impl Policies {
    pub(crate) fn new(
        backend: &str,
        retry: Option<RetrySettings>,
        breaker: Option<BreakerSettings>,
        hedge: Option<HedgeSettings>,
    ) -> Self {
        Self {
            backend: backend.into(),
            retry: retry.map(Retry::new),
            breaker: breaker.map(Breaker::new),
            hedge: hedge.map(Hedge::new),
        }
    }

    /// True when no policy is configured.
    pub(crate) fn are_off(&self) -> bool {
        self.retry.is_none() && self.breaker.is_none() && self.hedge.is_none()
    }

    pub(crate) fn hedge(&self) -> Option<&HedgeSettings> {
        self.hedge.as_ref().map(|hedge| &hedge.settings)
    }

    pub(crate) fn retry(&self) -> Option<&RetrySettings> {
        self.retry.as_ref().map(|retry| &retry.settings)
    }

    pub(crate) fn breaker(&self) -> Option<&BreakerSettings> {
        self.breaker.as_ref().map(|breaker| &breaker.settings)
    }

    pub(crate) fn circuit_state(&self) -> Option<CircuitState> {
        self.breaker.as_ref().map(|breaker| breaker.state(Instant::now()))
    }

    /// Runs a call's attempts under the policies: each made by `attempt(started)` (a hedge gets
    /// its attempt's start) and bounded by `timeout` from its start or `deadline`, whichever
    /// comes first.
    pub(crate) async fn run<F, A>(&self, timeout: Duration, deadline: Instant, mut attempt: F) -> Exchanged
    where
        F: FnMut(Instant) -> A,
        A: Future<Output = Attempted>,
    {
        let now = Instant::now();
        if let Some(retry) = &self.retry {
            retry.budget.deposit(now);
        }
        if let Some(hedge) = &self.hedge {
            hedge.cap.deposit(now);
        }
        let (mut attempts, mut hedges) = (0, Hedges::default());
        let mut last: Option<Attempted> = None;
        loop {
            let ticket = match self.admit() {
                Ok(ticket) => ticket,
                // A retry the breaker refuses ends the call with its last real failure.
                Err(wait) => {
                    let (status, result) = last.unwrap_or((None, Err(CallError::CircuitOpen(wait))));
                    return Exchanged::made(status, result, attempts, hedges);
                }
            };
            attempts += 1;
            let started = Instant::now();
            let own_limit = started + timeout;
            let limit = own_limit.min(deadline);
            let expired =
                if deadline < own_limit { CallError::Cancelled } else { CallError::Timeout(timeout) };
            let primary = self.attempt_once(ticket, attempt(started), limit, &expired);
            let (status, result) = match &self.hedge {
                None => primary.await,
                Some(hedge) => {
                    self.hedged(hedge, primary, || attempt(started), limit, &expired, &mut hedges).await
                }
            };
            let retried = match (&result, &self.retry) {
                (Err(error), Some(retry))
                    if attempts < retry.settings.attempts && retry.settings.on.contains(error) =>
                {
                    self.next_attempt(retry, attempts, timeout, deadline)
                }
                _ => None,
            };
            let Some(start_at) = retried else {
                return Exchanged::made(status, result, attempts, hedges);
            };
            last = Some((status, result));
            sleep_until(start_at).await;
        }
    }

    /// The breaker's leave for one attempt (none without a breaker), or the time until it lets
    /// calls through.
    fn admit(&self) -> Result<Option<Ticket<'_>>, Duration> {
        let Some(breaker) = &self.breaker else { return Ok(None) };
        let (admitted, transition) = breaker.admit(Instant::now());
        self.changed(transition);
        admitted.map(Some)
    }

    /// One attempt, bounded by `limit` (then failing with `expired`), its outcome counted by the
    /// breaker and, when it answered well, its latency by the hedging histogram. An attempt cut
    /// by the deadline, or never sent because the bulkhead was full, says nothing about the
    /// backend: the breaker does not count it.
    async fn attempt_once(
        &self,
        ticket: Option<Ticket<'_>>,
        attempt: impl Future<Output = Attempted>,
        limit: Instant,
        expired: &CallError,
    ) -> Attempted {
        let started = Instant::now();
        let (status, result) =
            timeout_at(limit, attempt).await.unwrap_or_else(|_| (None, Err(expired.clone())));
        // An answer's latency, or a timed-out attempt's (a lower bound: leaving the slow ones
        // out would pull the quantile down).
        if let (Some(hedge), Ok(_) | Err(CallError::Timeout(_))) = (&self.hedge, &result) {
            hedge.observe(started.elapsed(), Instant::now());
        }
        if let (Some(breaker), Some(ticket)) = (&self.breaker, ticket)
            && !matches!(result, Err(CallError::Cancelled | CallError::Overloaded(_)))
        {
            let failed = result.as_ref().err().is_some_and(|error| breaker.settings.on.contains(error));
            self.changed(breaker.record(ticket, failed, Instant::now()));
        }
        (status, result)
    }

    /// Awaits `primary`; if it has not answered after the hedge delay (and the breaker, the
    /// hedge cap and the retry budget allow it), sends one more identical request: the first
    /// good answer wins, the other request is dropped.
    async fn hedged<A>(
        &self,
        hedge: &Hedge,
        primary: impl Future<Output = Attempted>,
        attempt: impl FnOnce() -> A,
        limit: Instant,
        expired: &CallError,
        hedges: &mut Hedges,
    ) -> Attempted
    where
        A: Future<Output = Attempted>,
    {
        let began = Instant::now();
        let hedge_at = began + hedge.delay(began);
        let mut primary = std::pin::pin!(primary);
        if hedge_at >= limit {
            return primary.await;
        }
        tokio::select! {
            biased;
            answered = &mut primary => return answered,
            () = sleep_until(hedge_at) => {}
        }
        let ticket = match self.may_hedge(hedge) {
            Some(ticket) => ticket,
            None => return primary.await,
        };
        hedges.sent += 1;
        self.count_hedge("sent");
        let mut second = std::pin::pin!(self.attempt_once(ticket, attempt(), limit, expired));
        let (first, other, hedge_first) = tokio::select! {
            biased;
            answered = &mut primary => (answered, Either::Left(second), false),
            answered = &mut second => (answered, Either::Right(primary), true),
        };
        let (answered, hedge_won) =
            if first.1.is_ok() { (first, hedge_first) } else { (other.await, !hedge_first) };
        if hedge_won && answered.1.is_ok() {
            hedges.won += 1;
            self.count_hedge("won");
            // The attempt it beat is dropped unanswered: its latency so far is a lower bound,
            // kept so that hedged calls do not leave only their fast answers in the histogram.
            hedge.observe(began.elapsed(), Instant::now());
        }
        answered
    }

    /// Whether a hedge may be sent now, with the breaker's leave for it: never unless the
    /// breaker is closed; then within the hedge cap and (with `retry`) the retry budget.
    fn may_hedge(&self, hedge: &Hedge) -> Option<Option<Ticket<'_>>> {
        let now = Instant::now();
        if self.breaker.as_ref().is_some_and(|breaker| breaker.state(now) != CircuitState::Closed) {
            return None;
        }
        // Nothing is taken from the cap or the budget unless the hedge is sent.
        if !hedge.cap.allows(now) || self.retry.as_ref().is_some_and(|retry| !retry.budget.allows(now)) {
            return None;
        }
        let ticket = self.admit().ok()?;
        hedge.cap.withdraw(now);
        if let Some(retry) = &self.retry {
            retry.budget.withdraw(now);
        }
        Some(ticket)
    }

    fn count_hedge(&self, outcome: &'static str) {
        metrics::counter!(HEDGES, "backend" => self.backend.to_string(), "outcome" => outcome).increment(1);
    }

    /// When the retry after attempt number `attempts` may start, if it may: its backoff, plus
    /// the time an attempt needs, must fit before the deadline, and the budget must allow it.
    fn next_attempt(
        &self,
        retry: &Retry,
        attempts: u32,
        timeout: Duration,
        deadline: Instant,
    ) -> Option<Instant> {
        let now = Instant::now();
        let start_at = now + retry.backoff(attempts);
        if start_at + retry.settings.min_time_left.unwrap_or(timeout) > deadline {
            return None;
        }
        let sent = retry.budget.withdraw(now);
        let outcome = if sent { "sent" } else { "refused" };
        metrics::counter!(RETRIES, "backend" => self.backend.to_string(), "outcome" => outcome).increment(1);
        sent.then_some(start_at)
    }

    /// Logs and counts a breaker's change of state.
    fn changed(&self, transition: Option<Transition>) {
        let Some((from, to)) = transition else { return };
        tracing::warn!(
            backend = &*self.backend,
            from = from.name(),
            to = to.name(),
            "circuit breaker changed state"
        );
        metrics::counter!(CIRCUIT_TRANSITIONS, "backend" => self.backend.to_string(), "to" => to.name())
            .increment(1);
        metrics::gauge!(CIRCUIT_STATE, "backend" => self.backend.to_string()).set(to.gauge());
    }
}

#[cfg(test)]
mod tests;
