//! Cross-request coalescing (`backends.X.coalesce`, "single flight"): identical requests to a
//! backend in flight at the same time, from different inbound requests, share one backend
//! exchange. Identical means the same URL and the same forwarded header values (so two users'
//! tokens never share an answer); the request id and trace context, which differ per inbound
//! request by design, are left out of the comparison (the shared request carries the first
//! caller's). The exchange is owned by nobody in particular: it runs while any caller still
//! awaits it, each under its own timeout, and is dropped (and forgotten) with the last one.

use crate::exchanged::Exchanged;
use crate::forward::PER_REQUEST;
use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt, Shared, WeakShared};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// Counter of calls that joined an identical exchange already in flight, by backend.
pub const COALESCED: &str = "fanout_backend_coalesced_total";

/// What makes two requests to one backend identical. The call's timeout is part of it: the
/// shared request runs under its creator's timeout, so only callers with the same timeout share
/// it (none is then held past its own).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FlightKey {
    path_and_query: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
}

impl FlightKey {
    /// The key of a request for `path_and_query` forwarding `headers`, with this timeout.
    pub(crate) fn new(path_and_query: Bytes, headers: &HeaderMap, timeout: Duration) -> Self {
        let headers = headers
            .iter()
            .filter(|(name, _)| !PER_REQUEST.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        Self { path_and_query, headers, timeout }
    }
}

/// One exchange in flight: its number (an entry is only ever removed by the exchange it belongs
/// to), its weak handle (the callers own the exchange) and when it ends at the latest.
type Flight = (u64, WeakShared<BoxFuture<'static, Exchanged>>, Instant);

/// The exchanges of one backend in flight, by key.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    in_flight: Mutex<HashMap<FlightKey, Flight>>,
    started: AtomicU64,
}

impl Flights {
    /// Joins the exchange in flight for `key`, or starts `exchange`, which ends by `ends`, as
    /// the one for it. An exchange whose end has passed is not joined (it may still be alive,
    /// held by a caller that has not looked at it since).
    pub(crate) fn join(
        flights: &Arc<Flights>,
        backend: &str,
        key: FlightKey,
        ends: Instant,
        exchange: impl Future<Output = Exchanged> + Send + 'static,
    ) -> Shared<BoxFuture<'static, Exchanged>> {
        let mut in_flight = flights.lock();
        let now = Instant::now();
        let running =
            in_flight.get(&key).filter(|(_, _, ends)| *ends > now).and_then(|(_, weak, _)| weak.upgrade());
        if let Some(running) = running {
            metrics::counter!(COALESCED, "backend" => backend.to_owned()).increment(1);
            // The caller's `backend_call` span (its wait is polled inside it).
            tracing::Span::current().record("coalesced", true);
            return running;
        }
        let id = flights.started.fetch_add(1, Ordering::Relaxed);
        let forget = Forget { flights: Arc::clone(flights), key: key.clone(), id };
        let shared = async move {
            // Forgets the entry when the exchange ends (later callers start a new one) or the
            // last caller drops it.
            let _forget = forget;
            exchange.await
        }
        .boxed()
        .shared();
        if let Some(weak) = shared.downgrade() {
            in_flight.insert(key, (id, weak, ends));
        }
        shared
    }

    /// How many exchanges are in flight.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<FlightKey, Flight>> {
        self.in_flight.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes its exchange's entry.
struct Forget {
    flights: Arc<Flights>,
    key: FlightKey,
    id: u64,
}

impl Drop for Forget {
    fn drop(&mut self) {
        let mut in_flight = self.flights.lock();
        if in_flight.get(&self.key).is_some_and(|(id, _, _)| *id == self.id) {
            in_flight.remove(&self.key);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    fn key(path: &'static str, token: &'static str, request_id: &'static str) -> FlightKey {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static(token));
        headers.insert("x-request-id", HeaderValue::from_static(request_id));
        FlightKey::new(Bytes::from_static(path.as_bytes()), &headers, Duration::from_secs(1))
    }

    /// An end far enough not to matter.
    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    /// An exchange that counts its starts and answers after 100 ms.
    fn exchange(started: &Arc<AtomicUsize>) -> impl Future<Output = Exchanged> + Send + 'static {
        let started = Arc::clone(started);
        async move {
            started.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            Exchanged::once(Some(200), Ok(Bytes::from_static(b"{}")))
        }
    }

    #[test]
    fn the_request_id_and_trace_context_do_not_make_requests_differ_the_rest_does() {
        assert_eq!(key("/a", "t1", "id-1"), key("/a", "t1", "id-2"));
        assert_ne!(key("/a", "t1", "id-1"), key("/a", "t2", "id-1"));
        assert_ne!(key("/a", "t1", "id-1"), key("/b", "t1", "id-1"));
    }

    #[tokio::test(start_paused = true)]
    async fn identical_requests_in_flight_share_one_exchange_and_are_forgotten_when_it_ends() {
        let flights = Arc::new(Flights::default());
        let started = Arc::new(AtomicUsize::new(0));
        let first = Flights::join(&flights, "b", key("/a", "t", "1"), far(), exchange(&started));
        let second = Flights::join(&flights, "b", key("/a", "t", "2"), far(), exchange(&started));
        let other = Flights::join(&flights, "b", key("/a", "u", "3"), far(), exchange(&started));
        assert_eq!(flights.len(), 2);
        let (first, second, other) = tokio::join!(first, second, other);
        assert_eq!(started.load(Ordering::SeqCst), 2, "one exchange per distinct request");
        assert_eq!(
            (first.result, second.result.clone()),
            (second.result.clone(), Ok(Bytes::from_static(b"{}")))
        );
        assert!(other.result.is_ok());
        assert_eq!(flights.len(), 0, "finished exchanges are forgotten");
        // A request after the exchange ended starts a new one.
        let _ = Flights::join(&flights, "b", key("/a", "t", "4"), far(), exchange(&started)).await;
        assert_eq!(started.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn an_exchange_past_its_end_is_not_joined_and_different_timeouts_never_share() {
        let flights = Arc::new(Flights::default());
        let started = Arc::new(AtomicUsize::new(0));
        let ended = Instant::now() + Duration::from_millis(10);
        let held = Flights::join(&flights, "b", key("/a", "t", "1"), ended, exchange(&started));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let fresh = Flights::join(&flights, "b", key("/a", "t", "2"), far(), exchange(&started));
        let (_, _) = tokio::join!(held, fresh);
        assert_eq!(started.load(Ordering::SeqCst), 2, "the expired exchange was not joined");

        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("t"));
        let short = FlightKey::new(Bytes::from_static(b"/a"), &headers, Duration::from_millis(100));
        let long = FlightKey::new(Bytes::from_static(b"/a"), &headers, Duration::from_secs(1));
        assert_ne!(short, long);
    }

    #[tokio::test(start_paused = true)]
    async fn one_caller_giving_up_does_not_cancel_the_exchange_for_the_others() {
        let flights = Arc::new(Flights::default());
        let started = Arc::new(AtomicUsize::new(0));
        let impatient = Flights::join(&flights, "b", key("/a", "t", "1"), far(), exchange(&started));
        let patient = Flights::join(&flights, "b", key("/a", "t", "2"), far(), exchange(&started));
        let gave_up = tokio::time::timeout(Duration::from_millis(10), impatient).await;
        assert!(gave_up.is_err());
        let answer = patient.await;
        assert_eq!(answer.result, Ok(Bytes::from_static(b"{}")));
        assert_eq!(started.load(Ordering::SeqCst), 1);

        // When every caller has given up, the exchange is dropped and forgotten.
        let abandoned = Flights::join(&flights, "b", key("/b", "t", "3"), far(), exchange(&started));
        assert!(tokio::time::timeout(Duration::from_millis(10), abandoned).await.is_err());
        assert_eq!(flights.len(), 0);
    }
}
