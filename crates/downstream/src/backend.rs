//! A configured backend: its base URL (scheme and authority parsed once), static headers, body
//! limit and its own client, so each backend has its own connection pool. Calls follow no
//! redirects and ignore proxy environment variables: a gateway must call exactly the URL it
//! was configured with.

use crate::cache::{CacheSettings, ResponseCache};
use crate::client::Client;
use crate::coalesce::Flights;
use crate::policy::{BreakerSettings, CircuitState, HedgeSettings, Policies, RetrySettings};
use crate::tls::{self, TlsError};
use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Everything needed to build a [`Backend`], already validated by the config layer.
#[derive(Debug, Clone)]
pub struct BackendSettings {
    /// The backend's name in config (used in spans, errors and `Server-Timing`).
    pub name: String,
    /// `http(s)://host:port` plus an optional path prefix, without a trailing slash.
    pub base_url: String,
    /// Headers sent on every call to this backend.
    pub headers: HeaderMap,
    /// The largest response body accepted; larger bodies fail with `too_large`.
    pub max_response_body: usize,
    /// Speak HTTP/2 (h2c with prior knowledge, or ALPN `h2` over TLS) instead of HTTP/1.1.
    pub http2: bool,
    /// How long a connection (with its TLS handshake) may take to establish.
    pub connect_timeout: Duration,
    /// How many idle keep-alive connections to keep.
    pub max_idle_connections: usize,
    /// PEM certificates trusted for this backend besides the system's roots (https only).
    pub ca_file: Option<PathBuf>,
    /// The most requests in flight to this backend at once (the bulkhead); a call beyond them
    /// fails at once with `overloaded`.
    pub max_in_flight: usize,
    /// Retries (`retry`); none: one attempt per call.
    pub retry: Option<RetrySettings>,
    /// The circuit breaker (`circuit_breaker`); none: calls always go through.
    pub circuit_breaker: Option<BreakerSettings>,
    /// Hedging (`hedge`); none: one request per attempt.
    pub hedge: Option<HedgeSettings>,
    /// The header each request carries the time its caller still waits in, in milliseconds
    /// (`deadline_header`); none: not sent.
    pub deadline_header: Option<HeaderName>,
    /// Share identical requests in flight from different inbound requests (`coalesce`).
    pub coalesce: bool,
    /// The response cache (`cache`); none: every call asks the backend.
    pub cache: Option<CacheSettings>,
}

/// Why a backend could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The base URL is not `scheme://authority[/prefix]`.
    #[error("invalid URL {0:?}")]
    Url(String),
    /// The TLS configuration (trust roots, `ca_file`) could not be built.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
}

impl BackendError {
    /// The settings key the error is about, under `backends.NAME`.
    pub fn key(&self) -> &'static str {
        match self {
            BackendError::Url(_) => "url",
            BackendError::Tls(TlsError::CaFile { .. }) => "ca_file",
            BackendError::Tls(_) => "url",
        }
    }
}

/// A backend with its connection pool; shared by every call to it.
#[derive(Debug)]
pub struct Backend {
    pub(crate) name: Box<str>,
    pub(crate) base_url: Box<str>,
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
    /// The `Host` header HTTP/1.1 requests carry (h2 sends the authority instead).
    pub(crate) host: HeaderValue,
    /// The base URL's path prefix without a trailing slash (often empty).
    pub(crate) path_prefix: Box<str>,
    pub(crate) headers: HeaderMap,
    pub(crate) max_response_body: usize,
    pub(crate) client: Client,
    /// One permit per request in flight (the bulkhead), `max_in_flight` of them.
    pub(crate) in_flight: Semaphore,
    pub(crate) max_in_flight: usize,
    /// Retry, circuit breaker and hedging.
    pub(crate) policies: Policies,
    pub(crate) deadline_header: Option<HeaderName>,
    /// The exchanges in flight, with `coalesce`.
    pub(crate) flights: Option<Arc<Flights>>,
    /// Stored answers, with `cache`.
    pub(crate) cache: Option<Arc<ResponseCache>>,
}

impl Backend {
    /// Builds the backend and its client.
    pub fn new(settings: BackendSettings) -> Result<Self, BackendError> {
        let invalid = || BackendError::Url(settings.base_url.clone());
        let uri: Uri = settings.base_url.parse().map_err(|_| invalid())?;
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned()) else {
            return Err(invalid());
        };
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| invalid())?;
        let target = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|_| invalid())?;
        let tls = tls::for_target(&target, settings.ca_file.as_deref())?;
        let client =
            Client::new(target, tls, settings.http2, settings.connect_timeout, settings.max_idle_connections);
        let policies =
            Policies::new(&settings.name, settings.retry, settings.circuit_breaker, settings.hedge);
        Ok(Self {
            policies,
            deadline_header: settings.deadline_header,
            flights: settings.coalesce.then(Arc::default),
            cache: settings.cache.map(|cache| Arc::new(ResponseCache::new(&settings.name, cache))),
            name: settings.name.into(),
            path_prefix: uri.path().trim_end_matches('/').into(),
            base_url: settings.base_url.into(),
            scheme,
            authority,
            host,
            headers: settings.headers,
            max_response_body: settings.max_response_body,
            client,
            in_flight: Semaphore::new(settings.max_in_flight.min(Semaphore::MAX_PERMITS)),
            max_in_flight: settings.max_in_flight,
        })
    }

    /// Pool upkeep: call every [`crate::SWEEP_PERIOD`] (expired idle connections are closed,
    /// long-idle ones parked: see the client's documentation).
    pub fn sweep_idle(&self) {
        self.client.sweep();
    }

    /// The backend's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The largest response body accepted from it.
    pub fn max_response_body(&self) -> usize {
        self.max_response_body
    }

    /// The most requests in flight to it at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// Its retry policy, if any.
    pub fn retry(&self) -> Option<&RetrySettings> {
        self.policies.retry()
    }

    /// Its circuit breaker's settings, if it has one.
    pub fn circuit_breaker(&self) -> Option<&BreakerSettings> {
        self.policies.breaker()
    }

    /// Its hedging settings, if it hedges.
    pub fn hedge(&self) -> Option<&HedgeSettings> {
        self.policies.hedge()
    }

    /// Its circuit breaker's state now, if it has one.
    pub fn circuit_state(&self) -> Option<CircuitState> {
        self.policies.circuit_state()
    }

    /// Whether identical requests in flight to it are shared across inbound requests.
    pub fn coalesces(&self) -> bool {
        self.flights.is_some()
    }

    /// Its response cache, if it has one.
    pub fn cache(&self) -> Option<&ResponseCache> {
        self.cache.as_deref()
    }

    /// The header it is told the time left in, if any.
    pub fn deadline_header(&self) -> Option<&HeaderName> {
        self.deadline_header.as_ref()
    }

    /// The base URL calls are made against.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `host[:port]`, as spans show it.
    pub(crate) fn address(&self) -> &str {
        self.authority.as_str()
    }
}
