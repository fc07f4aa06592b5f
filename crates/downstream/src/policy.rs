//! The resilience policies of one backend and the attempt loop that applies them to a call:
//! the circuit breaker admits each attempt (or the call fails at once with `circuit_open`),
//! each attempt runs under the call's timeout (never past the endpoint deadline), and a failed
//! attempt is retried when its failure is in `retry.on`, attempts are left, the backoff plus
//! the time an attempt needs fit before the deadline, and the retry budget allows it. The
//! bulkhead (`max_in_flight`) is taken inside each attempt. A backend without policies never
//! comes here (see [`crate::CallRequest`]): the loop costs nothing when off.
//!
//! Metrics (through the `metrics` facade, so they reach whichever recorder the gateway
//! installed): [`RETRIES`], [`CIRCUIT_STATE`], [`CIRCUIT_TRANSITIONS`]; every breaker state
//! change is also one log line.

mod breaker;
mod failures;
mod retry;
mod window;

pub use breaker::{BreakerSettings, CircuitState};
pub use failures::Failures;
pub use retry::{BudgetSettings, RetrySettings};

use crate::call::{CallError, Exchanged};
use breaker::{Breaker, Transition};
use bytes::Bytes;
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

/// What one attempt gives: the response status when one came, and the checked body or why it
/// failed.
pub(crate) type Attempted = (Option<u16>, Result<Bytes, CallError>);

/// The policies configured for one backend.
#[derive(Debug)]
pub(crate) struct Policies {
    /// The backend's name (metric label, log field).
    backend: Box<str>,
    retry: Option<Retry>,
    breaker: Option<Breaker>,
}

impl Policies {
    pub(crate) fn new(backend: &str, retry: Option<RetrySettings>, breaker: Option<BreakerSettings>) -> Self {
        Self { backend: backend.into(), retry: retry.map(Retry::new), breaker: breaker.map(Breaker::new) }
    }

    /// True when no policy is configured.
    pub(crate) fn are_off(&self) -> bool {
        self.retry.is_none() && self.breaker.is_none()
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

    /// Runs a call's attempts under the policies: each made by `attempt(limit)` and bounded by
    /// `limit`, `timeout` from its start or `deadline`, whichever comes first.
    pub(crate) async fn run<F, A>(&self, timeout: Duration, deadline: Instant, mut attempt: F) -> Exchanged
    where
        F: FnMut(Instant) -> A,
        A: Future<Output = Attempted>,
    {
        if let Some(retry) = &self.retry {
            retry.deposit(Instant::now());
        }
        let mut attempts = 0;
        let mut last: Option<Attempted> = None;
        loop {
            let ticket = match &self.breaker {
                None => None,
                Some(breaker) => {
                    let (admitted, transition) = breaker.admit(Instant::now());
                    self.changed(transition);
                    match admitted {
                        Ok(ticket) => Some(ticket),
                        // A retry the breaker refuses ends the call with its last real failure.
                        Err(wait) => {
                            let (status, result) = last.unwrap_or((None, Err(CallError::CircuitOpen(wait))));
                            return Exchanged { status, result, attempts };
                        }
                    }
                }
            };
            attempts += 1;
            let own_limit = Instant::now() + timeout;
            let limit = own_limit.min(deadline);
            let (status, result) = match timeout_at(limit, attempt(limit)).await {
                Ok(attempted) => attempted,
                Err(_) if deadline < own_limit => (None, Err(CallError::Cancelled)),
                Err(_) => (None, Err(CallError::Timeout(timeout))),
            };
            if let (Some(breaker), Some(ticket)) = (&self.breaker, ticket)
                && !matches!(result, Err(CallError::Cancelled))
            {
                let failed = result.as_ref().err().is_some_and(|error| breaker.settings.on.contains(error));
                self.changed(breaker.record(ticket, failed, Instant::now()));
            }
            let retried = match (&result, &self.retry) {
                (Err(error), Some(retry))
                    if attempts < retry.settings.attempts && retry.settings.on.contains(error) =>
                {
                    self.next_attempt(retry, attempts, timeout, deadline)
                }
                _ => None,
            };
            let Some(start_at) = retried else {
                return Exchanged { status, result, attempts };
            };
            last = Some((status, result));
            sleep_until(start_at).await;
        }
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
        let sent = retry.withdraw(now);
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
