//! The error type of the crate.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why a mock service could not be loaded, validated or started.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// The YAML file could not be read or does not match [`crate::DemoFile`].
    #[error("cannot load {}", path.display())]
    Load {
        /// The file that was read.
        path: PathBuf,
        /// What the `config` crate reported.
        source: config::ConfigError,
    },
    /// YAML text did not match [`crate::DemoFile`].
    #[error("invalid demo file")]
    Parse(#[source] config::ConfigError),
    /// A service of a demo file has no `listen` address.
    #[error("service {service:?} has no listen address")]
    MissingListen {
        /// Name of the service.
        service: String,
    },
    /// A named service is invalid or could not start.
    #[error("service {service:?}")]
    Service {
        /// Name of the service.
        service: String,
        /// What went wrong.
        source: Box<MockError>,
    },
    /// A route path is not a valid matchit pattern or conflicts with another.
    #[error("route {path:?}: invalid path pattern")]
    Pattern {
        /// The offending pattern.
        path: String,
        /// What matchit reported.
        source: matchit::InsertError,
    },
    /// A status code is outside 100..=999.
    #[error("route {path:?}: invalid status code {status}")]
    Status {
        /// Path of the route.
        path: String,
        /// The rejected code.
        status: u16,
    },
    /// A rate (`error_rate`, `tail.rate`) is not within 0.0..=1.0.
    #[error("route {path:?}: rate {rate} (error_rate or tail.rate) is not within 0.0..=1.0")]
    ErrorRate {
        /// Path of the route.
        path: String,
        /// The rejected rate.
        rate: f64,
    },
    /// A `location` or `headers` entry that is not a valid header.
    #[error("route {path:?}: {name:?} is not a valid header name and value")]
    Header {
        /// Path of the route.
        path: String,
        /// The header's name.
        name: String,
    },
    /// A jitter range has `min` greater than `max`.
    #[error("route {path:?}: latency min {min:?} exceeds max {max:?}")]
    Jitter {
        /// Path of the route.
        path: String,
        /// The lower bound.
        min: Duration,
        /// The upper bound.
        max: Duration,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address that was requested.
        addr: String,
        /// What the operating system reported.
        source: io::Error,
    },
    /// A test certificate could not be made.
    #[error("cannot make a test certificate")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the server configuration.
    #[error("invalid TLS configuration")]
    Tls(#[from] rustls::Error),
}
