//! Simulated JSON HTTP backends for the fanout demo, its end-to-end tests and
//! its benchmarks.
//!
//! A [`ServiceSpec`] lists [`RouteSpec`]s (path pattern, latency, status,
//! JSON body, failure behavior); [`MockServer::spawn`] serves it in-process
//! over HTTP/1.1 and h2c (or https: [`MockServer::spawn_tls`] with a
//! certificate from a [`TestCa`]) and records what it receives. The `mockend` binary
//! serves every service of a [`DemoFile`]:
//!
//! ```yaml
//! services:
//!   catalog:
//!     listen: 127.0.0.1:7101
//!     routes:
//!       - path: /products/{id}
//!         latency: { min: 5ms, max: 25ms }   # or a fixed "20ms"
//!         body: { id: "{id}", name: "Hoodie" }
//!       - { path: /broken, behavior: reset }  # normal | hang | reset | garbage
//!       - { path: /flaky, error_rate: 0.1, error_status: 503 }
//!       - { path: /down, fail_first: 50, error_status: 503 }  # then answers normally
//!       - { path: /tail, latency: 5ms, tail: { rate: 0.02, latency: 300ms } }  # 2 % slow
//!       - { path: /outage, outage: { after: 3s, for: 5s }, error_status: 503 }  # down, then up
//!       - { path: /huge, body_size: 10485760 }
//! ```
//!
//! Every service also answers `GET /_mockend/requests` (not recorded) with what it received so
//! far: `{"requests": 1200, "outage_requests": 40}` (the second: requests that arrived during an
//! outage). Load tests read it to count what reached a backend.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), mockend::MockError> {
//! use mockend::{MockServer, RouteSpec, ServiceSpec};
//!
//! let server = MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json(
//!     "/users/{id}",
//!     serde_json::json!({"id": "{id}"}),
//! )
//! .latency(std::time::Duration::from_millis(5))]))
//! .await?;
//! assert!(server.url().starts_with("http://127.0.0.1:"));
//! assert!(server.requests().is_empty());
//! # Ok(())
//! # }
//! ```

mod body;
mod error;
mod load;
mod record;
mod rng;
mod route;
mod server;
mod spec;
mod tls;

pub use error::MockError;
pub use record::{RECORD_LIMIT, Recorded};
pub use server::MockServer;
pub use spec::{Behavior, DemoFile, Latency, Outage, RouteSpec, ServiceSpec, Tail};
pub use tls::{ServerIdentity, TestCa};
