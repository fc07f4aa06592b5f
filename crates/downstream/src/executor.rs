//! The concurrent executor: all of an endpoint's calls start at once and are awaited together
//! with `join_all` inside the caller's future. Nothing is spawned, so when the inbound request
//! is dropped (client gone) every in-flight backend call is dropped with it; and no call's
//! failure cuts the others short (unlike `try_join_all`).

use crate::call::{CallOutcome, CallRequest};
use futures_util::future::join_all;
use tokio::time::Instant;

/// Runs every call concurrently, each bounded by its own timeout and by `deadline`; the
/// outcomes come back in the order of `calls`.
pub async fn execute(calls: Vec<CallRequest<'_>>, deadline: Instant) -> Vec<CallOutcome> {
    join_all(calls.into_iter().map(|call| call.run(deadline))).await
}
