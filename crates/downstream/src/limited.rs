//! One caller's wait for a backend exchange ([`limited`]): the exchange under
//! `min(limit, deadline)`, polled inside the call's span, its outcome recorded on the span. The
//! clock starts at the first poll, not at creation (a list's requests are created at once and
//! sent `concurrency` at a time). A hand-written future rather than combinators
//! (`lazy(..).flatten()` around a `Timeout`): the exchange stays where it was created, instead
//! of being moved into the timeout at the first poll, a copy of the whole call future per call.

use crate::call::CallOutcome;
use crate::error::CallError;
use crate::exchanged::Exchanged;
use crate::output::Output;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep, sleep_until};

pin_project_lite::pin_project! {
    /// The future of [`limited`].
    pub(crate) struct Limited<F> {
        #[pin]
        exchange: F,
        // Set at the first poll.
        #[pin]
        timer: Option<Sleep>,
        started: Instant,
        span: tracing::Span,
        limit: Option<Duration>,
        deadline: Instant,
    }
}

/// Awaits `exchange` under `min(limit, deadline)` (`limit` none: the deadline only, for an
/// exchange that bounds itself) inside `span`, and records the outcome on the span.
pub(crate) fn limited<F: Future<Output = Exchanged>>(
    span: tracing::Span,
    exchange: F,
    limit: Option<Duration>,
    deadline: Instant,
) -> Limited<F> {
    Limited { exchange, timer: None, started: deadline, span, limit, deadline }
}

impl<F: Future<Output = Exchanged>> Future for Limited<F> {
    type Output = CallOutcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CallOutcome> {
        let mut this = self.project();
        if this.timer.is_none() {
            *this.started = Instant::now();
            let own_limit = this.limit.map_or(*this.deadline, |limit| *this.started + limit);
            this.timer.set(Some(sleep_until(own_limit.min(*this.deadline))));
        }
        let polled = {
            let _entered = this.span.enter();
            this.exchange.poll(cx)
        };
        let exchanged = match polled {
            Poll::Ready(exchanged) => exchanged,
            Poll::Pending => match this.timer.as_pin_mut().map(|timer| timer.poll(cx)) {
                Some(Poll::Ready(())) => {
                    let timed_out = this.limit.filter(|limit| *this.started + *limit <= *this.deadline);
                    let error = timed_out.map_or(CallError::Cancelled, CallError::Timeout);
                    Exchanged::once(None, Err(error))
                }
                _ => return Poll::Pending,
            },
        };
        Poll::Ready(outcome(this.span, *this.started, exchanged))
    }
}

/// Records `exchanged` on `span` and makes it the call's outcome.
fn outcome(span: &tracing::Span, started: Instant, exchanged: Exchanged) -> CallOutcome {
    let Exchanged { status, result, attempts, hedges, cache, .. } = exchanged;
    let elapsed = started.elapsed();
    if let Some(status) = status {
        span.record("http.response.status_code", i64::from(status));
    }
    span.record("duration_ms", crate::millis(elapsed));
    if attempts > 1 {
        span.record("attempts", i64::from(attempts));
    }
    if hedges.sent > 0 {
        span.record("hedges", i64::from(hedges.sent));
        span.record("hedges_won", i64::from(hedges.won));
    }
    if let Err(error) = &result {
        span.record("error.type", error.kind());
        tracing::debug!(parent: span, error.kind = error.kind(), %error, "backend call failed");
    }
    if let Some(cache) = cache {
        span.record("cache", cache.as_str());
    }
    CallOutcome { result: result.map(Output::Body), elapsed, attempts, element_errors: Vec::new(), cache }
}
