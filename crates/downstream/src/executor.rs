//! The concurrent executor: runs an endpoint's calls as a graph inside the caller's future.
//! Every call starts the moment the last call it depends on completes (not in waves); a call
//! over a list runs one request per element, at most `concurrency` at a time, gathered in input
//! order; identical requests (same backend and URL) within one execution are sent once.
//! Nothing is spawned: when the inbound request is dropped (client gone) every backend call is
//! dropped with it. A required call's failure ends the execution at once, dropping the rest.
//! Results are kept as the bytes received (shared, never copied here) and counted against the
//! endpoint's [`Budget`] as they arrive: a call, or a list element, that would take the results
//! past it fails the call with `too_large` before anything is copied.

use crate::cache::CacheUse;
use crate::call::{CallOutcome, CallRequest};
use crate::error::CallError;
use crate::exchanged::Exchanged;
use crate::limited::limited;
use crate::output::{Budget, NULL, Output};
use bytes::Bytes;
use compose::{Graph, Schedule};
use futures_util::future::{BoxFuture, Either, FutureExt, Shared};
use futures_util::stream::{self, FuturesUnordered, Stream, StreamExt};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::time::Instant;

/// What to do for one call once its dependencies are done (see [`execute`]). `R` is a request
/// to a backend: a [`CallRequest`], or in tests a stand-in (see [`Request`]).
#[derive(Debug)]
pub enum Step<R> {
    /// Send one request.
    Call(R),
    /// Send one request per list element.
    FanOut(FanOut<R>),
    /// Do not send anything: the call fails with this error (e.g. `dependency_failed`).
    Fail(CallError),
}

/// A call over a list.
#[derive(Debug)]
pub struct FanOut<R> {
    /// One request per element, in list order, or why that element cannot be requested.
    pub requests: Vec<Result<R, CallError>>,
    /// At most this many in flight at once.
    pub concurrency: usize,
    /// When true, a failed element fails the whole call; else it becomes `null`.
    pub fail_on_element_error: bool,
}

/// What the executor needs of a request: the key identical requests share, its span, how long
/// a caller waits for it, and the backend exchange itself. [`CallRequest`] is the one fanout sends; the
/// executor's own tests use stand-ins whose exchange only waits, so its scheduling, sharing,
/// limits and cancellation are checked on tokio's paused clock.
pub trait Request<'a>: Send + 'a {
    /// Requests with equal keys are sent once per execution (when sharing is on).
    fn key(&self) -> RequestKey;
    /// The call's span ([`limited`] records the outcome on it).
    fn span(&self) -> tracing::Span;
    /// How long a caller waits for the exchange besides the endpoint deadline (the call's
    /// timeout); `None` when the exchange bounds itself (attempts under resilience policies).
    fn limit(&self) -> Option<std::time::Duration>;
    /// The exchange: every caller awaits it under its own limit.
    fn exchange(self, deadline: Instant) -> impl Future<Output = Exchanged> + Send + 'a;
}

impl<'a> Request<'a> for CallRequest<'a> {
    fn key(&self) -> RequestKey {
        let backend = Arc::as_ptr(self.backend) as usize;
        (backend, self.header_set, self.path_and_query.clone())
    }

    fn span(&self) -> tracing::Span {
        CallRequest::span(self)
    }

    fn limit(&self) -> Option<std::time::Duration> {
        CallRequest::limit(self)
    }

    fn exchange(self, deadline: Instant) -> impl Future<Output = Exchanged> + Send + 'a {
        CallRequest::exchange(self, deadline)
    }
}

/// What came of an endpoint's calls.
#[derive(Debug)]
pub struct Execution {
    /// One entry per call, by index; `None` for calls never finished because a required call
    /// failed first.
    pub outcomes: Vec<Option<CallOutcome>>,
    /// The index of the required call whose failure ended the execution.
    pub failed_required: Option<usize>,
}

/// Runs the calls of `graph`. `prepare(call, outcomes)` is asked what to do for each call when
/// all its dependencies have completed (their outcomes are in `outcomes`). With
/// `share_identical`, identical requests are sent once; without it (an endpoint whose calls
/// can never collide: distinct backends, no lists) the bookkeeping is skipped. The results
/// together may hold at most `max_output` bytes of JSON.
pub async fn execute<'a, R: Request<'a>>(
    graph: &Graph,
    required: &[bool],
    share_identical: bool,
    max_output: usize,
    deadline: Instant,
    mut prepare: impl FnMut(usize, &[Option<CallOutcome>]) -> Step<R>,
) -> Execution {
    let dedup = Dedup { requests: share_identical.then(Mutex::default), budget: Budget::new(max_output) };
    let mut outcomes: Vec<Option<CallOutcome>> = (0..graph.len()).map(|_| None).collect();
    let mut schedule = Schedule::new(graph);
    let mut running = FuturesUnordered::new();
    for call in schedule.roots() {
        running.push(start(call, prepare(call, &outcomes), &dedup, deadline));
    }
    while let Some((call, outcome)) = running.next().await {
        let failed = outcome.result.is_err() && required.get(call).copied().unwrap_or(false);
        outcomes[call] = Some(outcome);
        if failed {
            return Execution { outcomes, failed_required: Some(call) };
        }
        for ready in schedule.complete(call) {
            running.push(start(ready, prepare(ready, &outcomes), &dedup, deadline));
        }
    }
    Execution { outcomes, failed_required: None }
}

/// The future of one call, whatever its kind. Not boxed: the executor's set allocates a task
/// for each future it holds, and the future lives in it.
fn start<'a, 'd, R: Request<'a>>(
    call: usize,
    step: Step<R>,
    dedup: &'d Dedup<'a>,
    deadline: Instant,
) -> impl Future<Output = (usize, CallOutcome)> + Send + 'd
where
    'a: 'd,
{
    let outcome = match step {
        Step::Call(request) => {
            Either::Left(dedup.send(request, deadline).map(|outcome| dedup.admit(outcome)))
        }
        Step::Fail(error) => Either::Right(Either::Left(std::future::ready(CallOutcome::failed(error)))),
        Step::FanOut(fan_out) => {
            // Shared futures are lazy: `buffered` polls (so sends) at most `concurrency` at once.
            let requests: Vec<_> = fan_out
                .requests
                .into_iter()
                .map(|request| match request {
                    Ok(request) => Either::Left(dedup.send(request, deadline)),
                    Err(error) => Either::Right(std::future::ready(CallOutcome::failed(error))),
                })
                .collect();
            let elements = stream::iter(requests).buffered(fan_out.concurrency.max(1));
            Either::Right(Either::Right(gather(elements, fan_out.fail_on_element_error, &dedup.budget)))
        }
    };
    outcome.map(move |outcome| (call, outcome))
}

/// Collects element outcomes into a list, in input order; failed elements are `null` and listed
/// in `element_errors` (with `fail_on_element_error`, the first one fails the call once every
/// element is in). Each element is counted against `budget` as it arrives: one that does not fit
/// fails the call with `too_large` at once (the requests not yet answered are dropped). A list
/// that fails gives back what it had taken.
async fn gather(
    mut elements: impl Stream<Item = CallOutcome> + Unpin,
    fail_on_element_error: bool,
    budget: &Budget,
) -> CallOutcome {
    let started = Instant::now();
    let (mut list, mut element_errors) = (Vec::new(), Vec::new());
    // What the list has taken from the budget: the brackets, then each element with its comma.
    let mut taken = 0;
    let mut fits = budget.take(2);
    if fits {
        taken = 2;
    }
    let mut cache = ListCache::default();
    while fits && let Some(element) = elements.next().await {
        cache.add(element.cache);
        let body = match element.result {
            Ok(output) => output.into_body(),
            Err(error) => {
                element_errors.push((list.len(), error));
                NULL
            }
        };
        fits = budget.take(body.len() + 1);
        if fits {
            taken += body.len() + 1;
            list.push(body);
        }
    }
    let result = match element_errors.first() {
        _ if !fits => Err(CallError::TooLarge(budget.limit())),
        Some((_, error)) if fail_on_element_error => Err(error.clone()),
        _ => Ok(Output::List(list)),
    };
    if result.is_err() {
        budget.give_back(taken);
    }
    CallOutcome { result, elapsed: started.elapsed(), attempts: 0, element_errors, cache: cache.of_list() }
}

/// How a list's elements came from the cache: the list is stale if any element was (reported
/// with the first stale element's reason and the oldest age), a hit if every element was.
#[derive(Default)]
struct ListCache {
    elements: usize,
    hits: usize,
    stale: Option<CacheUse>,
}

impl ListCache {
    fn add(&mut self, element: Option<CacheUse>) {
        self.elements += 1;
        match (element, &mut self.stale) {
            (Some(CacheUse::Hit), _) => self.hits += 1,
            (Some(stale @ CacheUse::Stale { .. }), None) => self.stale = Some(stale),
            (Some(CacheUse::Stale { age, .. }), Some(CacheUse::Stale { age: oldest, .. })) => {
                *oldest = (*oldest).max(age);
            }
            _ => {}
        }
    }

    fn of_list(self) -> Option<CacheUse> {
        self.stale.or((self.elements > 0 && self.hits == self.elements).then_some(CacheUse::Hit))
    }
}

/// Requests in flight or done during one execution, by backend and URL, so identical requests
/// are sent once and every caller gets the same response; each caller still waits at most its
/// own timeout. `None` when sharing is off: every request is sent.
struct Dedup<'a> {
    requests: Option<Mutex<HashMap<RequestKey, SharedExchange<'a>>>>,
    /// What the results may still add up to.
    budget: Budget,
}

/// A backend (by address), a list of forwarded headers and a path-and-query.
pub type RequestKey = (usize, usize, Bytes);
/// One backend exchange whose result every identical call shares.
type SharedExchange<'a> = Shared<BoxFuture<'a, Exchanged>>;

impl<'a> Dedup<'a> {
    fn send<R: Request<'a>>(
        &self,
        request: R,
        deadline: Instant,
    ) -> impl Future<Output = CallOutcome> + Send + 'a {
        let (span, limit) = (request.span(), request.limit());
        let Some(requests) = &self.requests else {
            return Either::Left(limited(span, request.exchange(deadline), limit, deadline));
        };
        let key = request.key();
        let exchange = requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_insert_with(|| request.exchange(deadline).boxed().shared())
            .clone();
        Either::Right(limited(span, exchange, limit, deadline))
    }

    /// Counts a single call's body against the budget, or fails it with `too_large`.
    fn admit(&self, mut outcome: CallOutcome) -> CallOutcome {
        if let Ok(output) = &outcome.result
            && !self.budget.take(output.json_len())
        {
            outcome.result = Err(CallError::TooLarge(self.budget.limit()));
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::StaleReason;
    use std::time::Duration;

    fn list(elements: &[Option<CacheUse>]) -> Option<CacheUse> {
        let mut cache = ListCache::default();
        for element in elements {
            cache.add(*element);
        }
        cache.of_list()
    }

    #[test]
    fn a_list_is_a_hit_when_every_element_is_and_stale_when_any_is() {
        let stale =
            |age| CacheUse::Stale { reason: StaleReason::Error("timeout"), age: Duration::from_secs(age) };
        assert_eq!(list(&[Some(CacheUse::Hit), Some(CacheUse::Hit)]), Some(CacheUse::Hit));
        assert_eq!(list(&[Some(CacheUse::Hit), None]), None, "one element came from the backend");
        assert_eq!(list(&[]), None);
        assert_eq!(list(&[None, Some(stale(3)), Some(CacheUse::Hit), Some(stale(9))]), Some(stale(9)));
    }
}
