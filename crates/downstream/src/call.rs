//! One backend call: build the request, send it on the backend's pool, read the body as a
//! stream up to the backend's limit, check that it is JSON, and classify every failure into
//! one of the contract's error kinds. Each call runs in its own `backend_call` span and is
//! bounded by `min(call timeout, time left before the endpoint deadline)` ([`crate::limited`]);
//! on a backend with resilience policies the timeout bounds each attempt instead
//! ([`crate::policy`]).

use crate::backend::Backend;
use crate::cache::CacheUse;
use crate::cache::control::Directives;
use crate::coalesce::{FlightKey, Flights};
use crate::error::CallError;
use crate::exchanged::{Attempted, Exchanged};
use crate::output::Output;
use bytes::Bytes;
use http::header::HOST;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::{Instant, timeout_at};
use tracing::{Instrument, field};

/// Span name of one backend call.
pub const CALL_SPAN: &str = "backend_call";

/// Taken off the time left that a backend is told (`deadline_header`): its answer must still
/// travel back and be composed before the caller stops waiting. 5 ms: a same-zone round trip is
/// ~0.5 ms and composing a page ~0.1 ms (docs/performance.md), with room for a busy scheduler.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(5);

/// Headers that differ per inbound request by design (its id, its trace context): never part of
/// what makes two requests identical (coalescing) or of a cache key.
pub(crate) const PER_REQUEST: [&str; 3] = ["x-request-id", "traceparent", "tracestate"];

/// One call to make: which backend, which path, which headers, how long it may take.
#[derive(Debug)]
pub struct CallRequest<'a> {
    /// The call's name in the endpoint (for spans and errors).
    pub name: &'a str,
    /// The backend to call.
    pub backend: &'a Arc<Backend>,
    /// The rendered, already-encoded path and query, starting with `/` (the backend's path
    /// prefix is added here).
    pub path_and_query: Bytes,
    /// Writes the forwarded headers (the backend's own headers are added here).
    pub headers: &'a dyn ForwardHeaders,
    /// Which of the endpoint's lists of forwarded headers `headers` writes: identical
    /// requests are shared only when they carry the same list.
    pub header_set: usize,
    /// The call's own timeout.
    pub timeout: Duration,
    /// Whether the endpoint fails when this call fails (the executor then stops at once).
    pub required: bool,
    /// For a call over a list: the element's index.
    pub element: Option<usize>,
    /// Writes the trace context of the call's span into the request headers (W3C
    /// `traceparent`); set exactly when the request is traced (exported).
    pub propagate: Option<Propagate>,
}

/// Writes an inbound request's forwarded headers into each of its backend requests' maps,
/// directly: no map is built per inbound request for the calls to copy.
pub trait ForwardHeaders: Sync {
    /// Appends the headers of the endpoint's list `header_set` to `headers`.
    fn write(&self, header_set: usize, headers: &mut HeaderMap);
}

/// Forwarded headers already written out (what a coalesced request owns).
impl ForwardHeaders for HeaderMap {
    fn write(&self, _: usize, headers: &mut HeaderMap) {
        for (name, value) in self {
            headers.append(name, value.clone());
        }
    }
}

impl std::fmt::Debug for dyn ForwardHeaders + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ForwardHeaders")
    }
}

/// A function writing a span's trace context into request headers.
pub type Propagate = fn(&tracing::Span, &mut HeaderMap);

/// The result of one call and how long it took.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    /// The validated JSON (for a call over a list: the element bodies), or why the call failed.
    pub result: Result<Output, CallError>,
    /// Time from the start of the call to its end.
    pub elapsed: Duration,
    /// Attempts made (more than one when retried; 0 for a call never sent, and for a call over
    /// a list).
    pub attempts: u32,
    /// For a call over a list: the elements that failed, by index.
    pub element_errors: Vec<(usize, CallError)>,
    /// The answer came from the backend's cache (fresh, or stale and why).
    pub cache: Option<CacheUse>,
}

impl CallOutcome {
    /// The outcome of a call that was never sent.
    pub fn failed(error: CallError) -> Self {
        Self {
            result: Err(error),
            elapsed: Duration::ZERO,
            attempts: 0,
            element_errors: Vec::new(),
            cache: None,
        }
    }
}

impl<'a> CallRequest<'a> {
    /// The call's `backend_call` span: at `info` when the request is traced (so it is
    /// exported), else at `debug`, so that at the usual log levels an untraced call costs no
    /// span at all (every field recorded on an enabled span is re-formatted by the JSON log
    /// layer: five calls cost as much as the rest of the page).
    pub(crate) fn span(&self) -> tracing::Span {
        macro_rules! call_span {
            ($level:expr) => {
                tracing::span!(
                    $level,
                    CALL_SPAN,
                    otel.name = "GET",
                    otel.kind = "client",
                    http.request.method = "GET",
                    call = self.name,
                    backend = &*self.backend.name,
                    server.address = self.backend.address(),
                    element = self.element.and_then(|i| i64::try_from(i).ok()),
                    http.response.status_code = field::Empty,
                    error.r#type = field::Empty,
                    duration_ms = field::Empty,
                    attempts = field::Empty,
                    hedges = field::Empty,
                    hedges_won = field::Empty,
                    coalesced = field::Empty,
                    time_left_ms = field::Empty,
                    cache = field::Empty,
                )
            };
        }
        match self.propagate {
            Some(_) => call_span!(tracing::Level::INFO),
            None => call_span!(tracing::Level::DEBUG),
        }
    }

    /// How long a caller waits for [`Self::exchange`] besides the endpoint deadline: the call's
    /// timeout, or `None` on a backend with policies, whose exchange bounds each attempt itself,
    /// or with a cache, which bounds the call itself (to answer a timeout from the cache).
    pub(crate) fn limit(&self) -> Option<Duration> {
        (self.backend.policies.are_off() && self.backend.cache.is_none()).then_some(self.timeout)
    }

    /// The backend exchange itself: unbounded without policies (every caller awaits it under
    /// its own limit, [`limited`]), else the attempts the policies allow before `deadline`. It
    /// is dropped when the last caller is. The coalesced and policy paths are boxed, so only
    /// the plain path's attempt sizes every call's future (futures are copied as they move
    /// to the executor).
    pub(crate) async fn exchange(mut self, deadline: Instant) -> Exchanged {
        let uri = match self.uri() {
            Ok(uri) => uri,
            Err(error) => return Exchanged { attempts: 0, ..Exchanged::once(None, Err(error)) },
        };
        let sender = Sender {
            backend: self.backend,
            headers: self.headers,
            header_set: self.header_set,
            timeout: self.timeout,
            propagate: self.propagate,
            directives: None,
        };
        if let Some(cache) = &self.backend.cache {
            return Box::pin(sender.cached(cache, uri, deadline)).await;
        }
        if self.backend.flights.is_some() || !self.backend.policies.are_off() {
            return Box::pin(sender.uncached(uri, deadline)).await;
        }
        let (status, result) = sender.attempt(uri, deadline, None).await;
        Exchanged::once(status, result)
    }

    /// The request URI: origin form (`/prefix/path?query`) for HTTP/1.1, absolute for h2. The
    /// path and query are moved out of the request, not copied, when there is no prefix.
    fn uri(&mut self) -> Result<Uri, CallError> {
        let backend = self.backend;
        let path_and_query = if backend.path_prefix.is_empty() {
            std::mem::take(&mut self.path_and_query)
        } else {
            Bytes::from([backend.path_prefix.as_bytes(), &self.path_and_query].concat())
        };
        let path_and_query = PathAndQuery::from_maybe_shared(path_and_query)
            .map_err(|e| CallError::InvalidReference(format!("the rendered path is not a valid URI: {e}")))?;
        if !backend.client.http2() {
            return Ok(Uri::from(path_and_query));
        }
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(backend.scheme.clone());
        parts.authority = Some(backend.authority.clone());
        parts.path_and_query = Some(path_and_query);
        Uri::from_parts(parts).map_err(|e| CallError::InvalidReference(format!("invalid request URI: {e}")))
    }
}

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
    async fn attempt(self, uri: Uri, deadline: Instant, started: Option<Instant>) -> Attempted {
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
