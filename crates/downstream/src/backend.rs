//! A configured backend: its base URL, static headers, body limit and its own reqwest client,
//! so each backend has its own keep-alive pool. Clients follow no redirects and ignore proxy
//! environment variables: a gateway must call exactly the URL it was configured with.

use http::HeaderMap;
use std::time::Duration;

/// Everything needed to build a [`Backend`], already validated by the config layer.
#[derive(Debug, Clone)]
pub struct BackendSettings {
    /// The backend's name in config (used in spans, errors and `Server-Timing`).
    pub name: String,
    /// `http://host:port` plus an optional path prefix, without a trailing slash.
    pub base_url: String,
    /// Headers sent on every call to this backend.
    pub headers: HeaderMap,
    /// The largest response body accepted; larger bodies fail with `too_large`.
    pub max_response_body: usize,
    /// Speak HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1.
    pub http2: bool,
    /// How long a connection may take to establish.
    pub connect_timeout: Duration,
    /// How many idle keep-alive connections to keep.
    pub max_idle_connections: usize,
}

/// Why a backend could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The base URL does not parse.
    #[error("backend {name}: invalid URL: {source}")]
    Url {
        /// The backend's name.
        name: String,
        /// The parse error.
        #[source]
        source: url::ParseError,
    },
    /// The HTTP client could not be built.
    #[error("backend {name}: cannot build HTTP client: {source}")]
    Client {
        /// The backend's name.
        name: String,
        /// The client error.
        #[source]
        source: reqwest::Error,
    },
}

/// A backend with its connection pool; shared by every call to it.
#[derive(Debug)]
pub struct Backend {
    pub(crate) name: Box<str>,
    pub(crate) base_url: Box<str>,
    /// The base URL parsed once; each call only sets its path and query.
    pub(crate) base: reqwest::Url,
    /// The base URL's path prefix without a trailing slash (often empty).
    pub(crate) path_prefix: Box<str>,
    pub(crate) address: Box<str>,
    pub(crate) headers: HeaderMap,
    pub(crate) max_response_body: usize,
    pub(crate) client: reqwest::Client,
}

impl Backend {
    /// Builds the backend and its client.
    pub fn new(settings: BackendSettings) -> Result<Self, BackendError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .tcp_nodelay(true)
            .connect_timeout(settings.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(settings.max_idle_connections);
        if settings.http2 {
            builder = builder.http2_prior_knowledge();
        }
        let client =
            builder.build().map_err(|source| BackendError::Client { name: settings.name.clone(), source })?;
        let base = url::Url::parse(&settings.base_url)
            .map_err(|source| BackendError::Url { name: settings.name.clone(), source })?;
        let path_prefix = base.path().trim_end_matches('/').into();
        let address = settings
            .base_url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default()
            .into();
        Ok(Self {
            name: settings.name.into(),
            base_url: settings.base_url.into(),
            base,
            path_prefix,
            address,
            headers: settings.headers,
            max_response_body: settings.max_response_body,
            client,
        })
    }

    /// The backend's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The largest response body accepted from it.
    pub fn max_response_body(&self) -> usize {
        self.max_response_body
    }

    /// The base URL calls are made against.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}
