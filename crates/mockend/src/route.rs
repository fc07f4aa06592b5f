//! Routes compiled from specs (validated, bodies prepared) and the
//! per-request decision of what to answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::body::{self, Body};
use crate::error::MockError;
use crate::rng;
use crate::spec::{Behavior, Latency, Outage, RouteSpec};

/// The routes of one service, ready to answer requests.
#[derive(Debug)]
pub(crate) struct Routes {
    router: matchit::Router<Route>,
    has_reset: bool,
    /// When the service started (outages count from it).
    started: std::time::Instant,
    /// Requests that arrived during an outage.
    outage_requests: AtomicU64,
}

#[derive(Debug)]
struct Route {
    latency: Latency,
    /// The tail's rate and latency, and how many requests are still slow whatever the rate.
    tail: Option<(f64, Latency, AtomicU64)>,
    status: StatusCode,
    body: Body,
    error_rate: f64,
    error_status: StatusCode,
    /// Requests still to fail before the route answers normally.
    fail_first: AtomicU64,
    outage: Option<Outage>,
    behavior: Behavior,
    /// Headers of normal answers (`location`, `headers`); none: none.
    headers: Option<HeaderMap>,
}

/// What to do with a request once its latency has elapsed.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Answer this status with this JSON body (and these headers, when set).
    Respond(StatusCode, Bytes, Option<HeaderMap>),
    /// Never answer.
    Hang,
    /// Abort the connection with an RST.
    Reset,
}

impl Routes {
    /// Validates `specs` and prepares their bodies.
    pub(crate) fn compile(specs: &[RouteSpec]) -> Result<Self, MockError> {
        let mut router = matchit::Router::new();
        let mut has_reset = false;
        for spec in specs {
            let route = Route::compile(spec)?;
            has_reset |= route.behavior == Behavior::Reset;
            router
                .insert(spec.path.as_str(), route)
                .map_err(|source| MockError::Pattern { path: spec.path.clone(), source })?;
        }
        Ok(Self { router, has_reset, started: std::time::Instant::now(), outage_requests: AtomicU64::new(0) })
    }

    /// Requests that arrived during an outage so far.
    pub(crate) fn outage_requests(&self) -> u64 {
        self.outage_requests.load(Ordering::Relaxed)
    }

    /// Whether some route may have to reset its connection.
    pub(crate) fn has_reset(&self) -> bool {
        self.has_reset
    }

    /// Waits for the latency of the route matching `path` and tells how to
    /// answer.
    pub(crate) async fn answer(&self, path: &str) -> Outcome {
        let Ok(matched) = self.router.at(path) else {
            return Outcome::Respond(StatusCode::NOT_FOUND, body::not_found(), None);
        };
        let route = matched.value;
        let since = self.started.elapsed();
        let down = route.outage.is_some_and(|o| since >= o.after && since < o.after + o.lasts);
        if down {
            self.outage_requests.fetch_add(1, Ordering::Relaxed);
        }
        let slow = route.tail.as_ref().filter(|(rate, _, first)| {
            let forced = count_down(first);
            forced || (*rate > 0.0 && rng::unit() < *rate)
        });
        let delay = sample(slow.map_or(route.latency, |(_, latency, _)| *latency));
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if down && route.outage.is_some_and(|outage| outage.hang) {
            return Outcome::Hang;
        }
        let failing = count_down(&route.fail_first);
        if down || failing || (route.error_rate > 0.0 && rng::unit() < route.error_rate) {
            return Outcome::Respond(route.error_status, body::simulated_error(), None);
        }
        match route.behavior {
            Behavior::Normal => {
                Outcome::Respond(route.status, route.body.render(&matched.params), route.headers.clone())
            }
            Behavior::Hang => Outcome::Hang,
            Behavior::Reset => Outcome::Reset,
            Behavior::Garbage => Outcome::Respond(StatusCode::OK, body::garbage(), None),
        }
    }
}

impl Route {
    fn compile(spec: &RouteSpec) -> Result<Self, MockError> {
        let status = |status: u16| {
            StatusCode::from_u16(status).map_err(|_| MockError::Status { path: spec.path.clone(), status })
        };
        let tail = spec.tail.map(|tail| (tail.rate, tail.latency, AtomicU64::new(tail.first)));
        for rate in std::iter::once(spec.error_rate).chain(spec.tail.map(|tail| tail.rate)) {
            if !(0.0..=1.0).contains(&rate) {
                return Err(MockError::ErrorRate { path: spec.path.clone(), rate });
            }
        }
        for latency in std::iter::once(spec.latency).chain(spec.tail.map(|tail| tail.latency)) {
            if let Latency::Jitter { min, max } = latency
                && min > max
            {
                return Err(MockError::Jitter { path: spec.path.clone(), min, max });
            }
        }
        Ok(Self {
            latency: spec.latency,
            tail,
            status: status(spec.status)?,
            body: Body::compile(&spec.path, &spec.body, spec.body_size),
            error_rate: spec.error_rate,
            error_status: status(spec.error_status)?,
            fail_first: AtomicU64::new(spec.fail_first),
            outage: spec.outage,
            behavior: spec.behavior,
            headers: headers(spec)?,
        })
    }
}

/// The headers of a route's normal answers: its `location` and `headers`.
fn headers(spec: &RouteSpec) -> Result<Option<HeaderMap>, MockError> {
    let location = spec.location.as_deref().map(|location| ("location", location));
    let all =
        location.into_iter().chain(spec.headers.iter().map(|(name, value)| (name.as_str(), value.as_str())));
    let mut headers = HeaderMap::new();
    for (name, value) in all {
        let invalid = || MockError::Header { path: spec.path.clone(), name: name.to_owned() };
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        headers.append(name, HeaderValue::from_str(value).map_err(|_| invalid())?);
    }
    Ok((!headers.is_empty()).then_some(headers))
}

/// Takes one from `left` unless it is zero; true when it took one.
fn count_down(left: &AtomicU64) -> bool {
    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
}

/// The delay to apply to one request.
fn sample(latency: Latency) -> Duration {
    match latency {
        Latency::Fixed(delay) => delay,
        Latency::Jitter { min, max } => min + (max - min).mul_f64(rng::unit()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Routes, sample};
    use crate::error::MockError;
    use crate::spec::{Latency, RouteSpec};

    #[test]
    fn jitter_samples_stay_within_bounds() {
        let (min, max) = (Duration::from_millis(5), Duration::from_millis(25));
        for _ in 0..1000 {
            let delay = sample(Latency::Jitter { min, max });
            assert!(min <= delay && delay <= max, "{delay:?}");
        }
    }

    #[test]
    fn invalid_specs_are_rejected() {
        let check = |spec: RouteSpec| Routes::compile(&[spec]).err();
        assert!(matches!(check(RouteSpec::new("/a").status(42)), Some(MockError::Status { status: 42, .. })));
        assert!(matches!(
            check(RouteSpec::new("/a").error_rate(1.5, 500)),
            Some(MockError::ErrorRate { .. })
        ));
        assert!(matches!(
            check(RouteSpec::new("/a").jitter(Duration::from_millis(9), Duration::from_millis(1))),
            Some(MockError::Jitter { .. })
        ));
        assert!(matches!(check(RouteSpec::new("/a/{")), Some(MockError::Pattern { .. })));
        assert!(matches!(
            Routes::compile(&[RouteSpec::new("/a/{x}"), RouteSpec::new("/a/{y}")]),
            Err(MockError::Pattern { .. })
        ));
    }
}
