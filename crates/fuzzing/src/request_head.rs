//! The `request_head` target: arbitrary bytes sent as one client connection to the real
//! server — `gateway::server::http_builder` (HTTP/1.1 and h2c, head limits, timers) serving
//! `gateway::service::stack` — over an in-memory pipe. The config has one endpoint whose
//! backends listen on a closed local port (calls fail at once with `connect`), and CORS on.
//!
//! Invariants: no panic (cargo-fuzz aborts on a panic in any task); no HTTP/1.1 answer is a
//! `500`; once the client has sent its bytes and closed its side, the server ends the
//! connection within [`DEADLINE`]. (h2c answers are binary frames: for them, no panic and the
//! deadline. The head deadlines and keep-alive watchdog of `connection.rs` are not part of this target.)

use gateway::config;
use gateway::reload::{Candidate, Live};
use gateway::server::{Protocols, http_builder};
use gateway::service;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

/// The longest a connection may stay open after the client is done.
const DEADLINE: Duration = Duration::from_secs(10);

/// The served config; `BACKEND` becomes an address nothing listens on.
const CONFIG: &str = r#"
server:
  request_timeout: 1s
  header_read_timeout: 1s
  max_request_body: 1KiB
  cors: { allow_origins: ["https://shop.example.com"], allow_headers: [authorization] }
backends:
  users: { url: "http://BACKEND", timeout: 200ms }
  orders: { url: "http://BACKEND/v1", timeout: 200ms }
endpoints:
  - route: GET /api/page/{id}
    forward_headers: [authorization, accept-language]
    forward_query: [locale]
    calls:
      user: { backend: users, path: "/users/{id}", required: true }
      orders: { backend: orders, path: "/orders?user={id}", select: [items] }
      items: { backend: users, path: "/items/{orders.items[*].sku}" }
  - route: GET /api/optional/{id}
    calls:
      orders: { backend: orders, path: "/orders/{id}" }
"#;

/// The runtime and the config every input is served with, built once.
struct Harness {
    runtime: Runtime,
    live: Arc<Live>,
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let runtime = runtime.unwrap_or_else(|e| panic!("cannot start a runtime: {e}"));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr());
    let closed = closed.unwrap_or_else(|e| panic!("cannot find a free port: {e}"));
    let yaml = CONFIG.replace("BACKEND", &closed.to_string());
    let env = HashMap::new();
    let candidate = config::load_str(&yaml, "request_head.yaml", &env).and_then(Candidate::new);
    let candidate = candidate.unwrap_or_else(|errors| panic!("the harness config is invalid: {errors}"));
    Harness { runtime, live: Arc::new(Live::new(candidate, PathBuf::new(), env, None)) }
});

/// Serves `data` as one connection and checks the invariants.
pub fn request_head(data: &[u8]) {
    let harness = &*HARNESS;
    let settings = harness.live.current().plan.server.clone();
    let answer = harness.runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let service = TowerToHyperService::new(service::stack(Arc::clone(&harness.live), &settings));
        let mut builder = http_builder(Protocols::Http1AndH2c);
        // The one difference from the real server: the client's closing of its side (after
        // the last byte of input) does not cancel the requests it sent, so every answer is seen.
        builder.http1().half_close(true);
        let serve = async move {
            // An error is the connection ending badly for the client, which is allowed.
            let _ = builder.serve_connection(TokioIo::new(server), service).await;
        };
        let talk = async move {
            // The server may close before reading everything: that is an answer, not a failure.
            let _ = client.write_all(data).await;
            let _ = client.shutdown().await;
            let mut answer = Vec::new();
            let _ = client.read_to_end(&mut answer).await;
            answer
        };
        let ended = tokio::time::timeout(DEADLINE, async { tokio::join!(serve, talk).1 }).await;
        ended.unwrap_or_else(|_| panic!("the connection was still open {DEADLINE:?} after the client closed"))
    });
    // Answers follow each other without a line break (bodies are JSON) and nothing the
    // gateway writes echoes the input's text, so a status line is found anywhere.
    let status_500 = answer.windows(12).position(|w| w.starts_with(b"HTTP/1.") && w.ends_with(b" 500"));
    assert!(status_500.is_none(), "answered 500: {}", String::from_utf8_lossy(&answer));
}
