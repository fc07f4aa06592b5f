//! End-to-end tests: the real `fanout` binary, started as a process with a generated config,
//! against real mock backends (`mockend`) on ephemeral ports, over real sockets.

mod check;
mod composition;
mod failures;
mod lifecycle;
mod safety;
mod support;
