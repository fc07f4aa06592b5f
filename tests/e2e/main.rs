//! End-to-end tests: the real `fanout` binary, started as a process with a generated config,
//! against real mock backends (`mockend`) on ephemeral ports, over real sockets.

// Test helpers panic on setup failures by design: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod caching;
mod check;
mod composition;
mod connections;
mod cors;
mod dependencies;
mod failures;
mod lifecycle;
mod limits;
mod openapi;
mod rate_limits;
mod reload;
mod resilience;
mod runtime;
mod safety;
mod shared_state;
mod support;
mod telemetry;
mod tls;
mod tracing;
