//! One backend call: [`CallRequest`] (which backend, path, headers, timeout), its span and URI,
//! and the way it is sent ([`crate::sender`]: one attempt, the policies, coalescing, the cache);
//! [`CallOutcome`], what came of it. Each call runs in its own `backend_call` span and is
//! bounded by `min(call timeout, time left before the endpoint deadline)` ([`crate::limited`]);
//! on a backend with resilience policies the timeout bounds each attempt instead
//! ([`crate::policy`]), and with a cache the cache layer bounds the call.

use crate::backend::Backend;
use crate::cache::CacheUse;
use crate::error::CallError;
use crate::exchanged::Exchanged;
use crate::forward::{ForwardHeaders, Propagate};
use crate::output::Output;
use crate::sender::Sender;
use bytes::Bytes;
use http::Uri;
use http::uri::PathAndQuery;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::field;

/// Span name of one backend call.
pub const CALL_SPAN: &str = "backend_call";

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
    /// span at all (an enabled span's fields are formatted as JSON text by the log layer when
    /// it starts, and each field recorded later is appended to that text).
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
