//! Sending a call's request: [`Sender`], what sending needs besides the URL, and its ways —
//! one attempt, the attempts the backend's policies allow ([`crate::policy`]), the exchange shared
//! with identical requests in flight ([`crate::coalesce`]), and through the backend's response
//! cache ([`crate::cache`]: a stored answer, a stale one while it is refreshed or when the call
//! fails).

use crate::backend::Backend;
use crate::cache::control::Directives;
use crate::cache::{CacheUse, Entry, LOOKUPS, ResponseCache, STALE_SERVED, StaleReason, Usable, stale_if};
use crate::coalesce::{FlightKey, Flights};
use crate::error::CallError;
use crate::exchanged::{Attempted, Exchanged};
use crate::forward::{ForwardHeaders, Propagate};
use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::{Instant, timeout_at};
use tracing::Instrument;

/// Taken off the time left that a backend is told (`deadline_header`): its answer must still
/// travel back and be composed before the caller stops waiting. 5 ms: a same-zone round trip is
/// ~0.5 ms and composing a page ~0.1 ms (docs/performance.md), with room for a busy scheduler.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(5);

/// What sending a request needs besides its URL, borrowed from the [`CallRequest`] (or, for a
/// coalesced request, from what the shared exchange owns).
#[derive(Clone, Copy)]
pub(crate) struct Sender<'a> {
    pub(crate) backend: &'a Arc<Backend>,
    pub(crate) headers: &'a dyn ForwardHeaders,
    pub(crate) header_set: usize,
    pub(crate) timeout: Duration,
    pub(crate) propagate: Option<Propagate>,
    /// Where a good answer's caching directives go (backends with a cache).
    pub(crate) directives: Option<&'a DirectivesSlot>,
}

/// The caching directives of an exchange's good answer, written by its attempts.
pub(crate) type DirectivesSlot = Mutex<Option<Box<Directives>>>;

impl<'a> Sender<'a> {
    /// The exchange without the cache: shared with identical requests in flight (`coalesce`),
    /// or sent under the policies.
    pub(crate) async fn uncached(self, uri: Uri, deadline: Instant) -> Exchanged {
        match &self.backend.flights {
            Some(flights) => self.coalesced(flights, uri, deadline).await,
            None => self.send(uri, deadline).await,
        }
    }

    /// The exchange shared with identical requests in flight ([`crate::coalesce`]): it owns
    /// what it sends (the URL, the forwarded headers written out once, the backend) and runs in
    /// its first caller's span (its trace context, its span fields). It has its own end: one
    /// attempt's timeout from its start without policies, else its first caller's deadline but
    /// never sooner than that (so a client's short budget cannot cut it for the others), and a
    /// caller whose request would outlive it starts a new one. Otherwise callers joining a hung
    /// request one after another would keep it, and every page after them, waiting on it for
    /// ever.
    async fn coalesced(self, flights: &Arc<Flights>, uri: Uri, deadline: Instant) -> Exchanged {
        let mut forwarded = HeaderMap::new();
        self.headers.write(self.header_set, &mut forwarded);
        let path_and_query = uri.path_and_query().map_or("", |p| p.as_str());
        let key = FlightKey::new(Bytes::copy_from_slice(path_and_query.as_bytes()), &forwarded, self.timeout);
        let (backend, timeout, propagate) = (Arc::clone(self.backend), self.timeout, self.propagate);
        let one_attempt = Instant::now() + timeout;
        let ends = if backend.policies.are_off() { one_attempt } else { deadline.max(one_attempt) };
        let exchange = async move {
            let sender = Sender {
                backend: &backend,
                headers: &forwarded,
                header_set: 0,
                timeout,
                propagate,
                directives: None,
            };
            match timeout_at(ends, sender.send(uri, ends)).await {
                Ok(exchanged) => exchanged,
                Err(_) => Exchanged::once(None, Err(CallError::Timeout(timeout))),
            }
        }
        .instrument(tracing::Span::current());
        Flights::join(flights, &self.backend.name, key, ends, exchange).await
    }

    /// One attempt, or the attempts its backend's policies allow; with a cache, with the good
    /// answer's caching directives.
    async fn send(self, uri: Uri, deadline: Instant) -> Exchanged {
        if self.backend.cache.is_none() {
            return self.attempts(uri, deadline).await;
        }
        let slot = DirectivesSlot::default();
        let mut exchanged = Sender { directives: Some(&slot), ..self }.attempts(uri, deadline).await;
        exchanged.directives = slot.into_inner().unwrap_or_else(PoisonError::into_inner);
        exchanged
    }

    async fn attempts(self, uri: Uri, deadline: Instant) -> Exchanged {
        let policies = &self.backend.policies;
        if policies.are_off() {
            let (status, result) = self.attempt(uri, deadline, None).await;
            return Exchanged::once(status, result);
        }
        policies
            .run(self.timeout, deadline, |started| self.attempt(uri.clone(), deadline, Some(started)))
            .await
    }

    /// One request to the backend and its checked body. Its caller waits for it until its
    /// timeout from the attempt's start (`started`, or now: a hedge is sent after its attempt
    /// started) or `deadline`, whichever comes first: what the backend is told with
    /// `deadline_header`.
    pub(crate) async fn attempt(self, uri: Uri, deadline: Instant, started: Option<Instant>) -> Attempted {
        let (backend, timeout) = (self.backend, self.timeout);
        // The bulkhead: held until the answer is in (or the attempt is dropped).
        let Ok(_in_flight) = backend.in_flight.try_acquire() else {
            return (None, Err(CallError::Overloaded(backend.max_in_flight)));
        };
        let (forwarded, header_set, propagate) = (self.headers, self.header_set, self.propagate);
        // Written into the map the client hands out (on HTTP/1.1, the one the connection's last
        // response came in: no allocation once a connection has answered once).
        let write_headers = |headers: &mut HeaderMap| {
            forwarded.write(header_set, headers);
            // The backend's own headers win over forwarded ones of the same name.
            for (name, value) in &backend.headers {
                headers.insert(name, value.clone());
            }
            if let Some(propagate) = propagate {
                propagate(&tracing::Span::current(), headers);
            }
            if !backend.client.http2() {
                headers.entry(HOST).or_insert_with(|| backend.host.clone());
            }
            if let Some(name) = &backend.deadline_header {
                write_time_left(name, started, timeout, deadline, headers);
            }
        };
        let answer = match backend.client.send(uri, write_headers).await {
            Ok(answer) => answer,
            Err(error) => return (None, Err(error)),
        };
        let status = answer.status().as_u16();
        if !answer.status().is_success() {
            return (Some(status), Err(CallError::Status(status)));
        }
        if let Some(slot) = self.directives {
            *slot.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(Box::new(Directives::of(answer.headers())));
        }
        let body = answer
            .body(backend.max_response_body)
            .await
            .and_then(|body| compose::check_json(&body).map(|()| body).map_err(CallError::InvalidBody));
        (Some(status), body)
    }
}

/// Writes the time an attempt's caller still waits (`timeout` from the attempt's start, `started`
/// or now, or less when `deadline` comes first), less [`DEADLINE_MARGIN`], as whole
/// milliseconds under `name`. Out of line: the attempt's own code stays small for the backends
/// that do not ask for it.
#[inline(never)]
fn write_time_left(
    name: &HeaderName,
    started: Option<Instant>,
    timeout: Duration,
    deadline: Instant,
    headers: &mut HeaderMap,
) {
    let now = Instant::now();
    let limit = (started.unwrap_or(now) + timeout).min(deadline);
    let left = limit.saturating_duration_since(now).saturating_sub(DEADLINE_MARGIN);
    let millis = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
    headers.insert(name, HeaderValue::from(millis));
    tracing::Span::current().record("time_left_ms", i64::try_from(millis).unwrap_or(i64::MAX));
}

impl Sender<'_> {
    /// A call to a backend with a cache: a fresh stored answer, or a stale one being refreshed
    /// in the background, is the answer; else the backend is called (coalesced and under its
    /// policies as configured), a good answer stored, and a failure answered by a stale entry
    /// within `stale-if-error`. The call is bounded here (its timeout, or its policies'), not by
    /// its caller, so that a timeout can still be answered from the cache.
    pub(crate) async fn cached(self, cache: &Arc<ResponseCache>, uri: Uri, deadline: Instant) -> Exchanged {
        let mut forwarded = HeaderMap::new();
        self.headers.write(self.header_set, &mut forwarded);
        let url = Bytes::copy_from_slice(uri.path_and_query().map_or("", |p| p.as_str()).as_bytes());
        let now = Instant::now();
        let found = cache.find(&url, &forwarded, now).await;
        match &found {
            Some((entry, Usable::Fresh)) => {
                cache.count(LOOKUPS, "result", "hit");
                return Exchanged::from_cache(entry.body.clone(), CacheUse::Hit);
            }
            Some((entry, Usable::Revalidate)) => {
                cache.count(LOOKUPS, "result", "stale");
                cache.count(STALE_SERVED, "reason", StaleReason::Revalidating.as_str());
                if !entry.refreshing.swap(true, Ordering::AcqRel) {
                    self.refresh(cache, Arc::clone(entry), uri, url, forwarded);
                }
                let age = entry.age(now);
                return Exchanged::from_cache(
                    entry.body.clone(),
                    CacheUse::Stale { reason: StaleReason::Revalidating, age },
                );
            }
            _ => cache.count(LOOKUPS, "result", "miss"),
        }
        let sender = Sender { headers: &forwarded, header_set: 0, ..self };
        let bounded = self.backend.policies.are_off().then(|| (now + self.timeout).min(deadline));
        let exchanged = match bounded {
            None => sender.uncached(uri, deadline).await,
            Some(ends) => match timeout_at(ends, sender.uncached(uri, deadline)).await {
                Ok(exchanged) => exchanged,
                Err(_) if ends < deadline => Exchanged::once(None, Err(CallError::Timeout(self.timeout))),
                Err(_) => Exchanged::once(None, Err(CallError::Cancelled)),
            },
        };
        match (&exchanged.result, found) {
            (Ok(body), _) => {
                if let Some(directives) = &exchanged.directives {
                    cache.store(url, &forwarded, body.clone(), directives);
                }
                exchanged
            }
            // Still within its windows now that the call has failed (retries may have taken long).
            (Err(error), Some((entry, _))) if stale_if(error) && entry.usable(Instant::now()).is_some() => {
                let reason = StaleReason::Error(error.kind());
                cache.count(STALE_SERVED, "reason", reason.as_str());
                let age = entry.age(Instant::now());
                Exchanged {
                    result: Ok(entry.body.clone()),
                    cache: Some(CacheUse::Stale { reason, age }),
                    ..exchanged
                }
            }
            _ => exchanged,
        }
    }

    /// Refreshes `entry` in the background: one request under the call's timeout, stored if
    /// good; the entry's `refreshing` flag is cleared when it ends, however it ends.
    fn refresh(
        self,
        cache: &Arc<ResponseCache>,
        entry: Arc<Entry>,
        uri: Uri,
        url: Bytes,
        forwarded: HeaderMap,
    ) {
        struct Done(Arc<Entry>);
        impl Drop for Done {
            fn drop(&mut self) {
                self.0.refreshing.store(false, Ordering::Release);
            }
        }
        let (cache, backend, timeout) = (Arc::clone(cache), Arc::clone(self.backend), self.timeout);
        tokio::spawn(async move {
            let _done = Done(entry);
            let sender = Sender {
                backend: &backend,
                headers: &forwarded,
                header_set: 0,
                timeout,
                propagate: None,
                directives: None,
            };
            let ends = Instant::now() + timeout;
            if let Ok(Exchanged { result: Ok(body), directives: Some(directives), .. }) =
                timeout_at(ends, sender.uncached(uri, ends)).await
            {
                cache.store(url, &forwarded, body, &directives);
            }
        });
    }
}
