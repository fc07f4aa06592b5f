//! The concurrent executor: all of an endpoint's calls start at once and are driven together
//! inside the caller's future. Nothing is spawned, so when the inbound request is dropped
//! (client gone) every in-flight backend call is dropped with it. An optional call's failure
//! cuts nothing short; a required call's failure ends the execution at once (the answer is a
//! 502/504 whatever the others return), and the calls still running are dropped.

use crate::call::{CallOutcome, CallRequest};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

/// What came of an endpoint's calls.
#[derive(Debug)]
pub struct Execution {
    /// One entry per call, in the order given; `None` for calls dropped unfinished because a
    /// required call failed first.
    pub outcomes: Vec<Option<CallOutcome>>,
    /// The index of the required call whose failure ended the execution.
    pub failed_required: Option<usize>,
}

/// Runs every call concurrently, each bounded by its own timeout and by `deadline`.
pub async fn execute(calls: Vec<CallRequest<'_>>, deadline: Instant) -> Execution {
    let required: Vec<bool> = calls.iter().map(|call| call.required).collect();
    let mut outcomes: Vec<Option<CallOutcome>> = calls.iter().map(|_| None).collect();
    let mut running: FuturesUnordered<_> = calls
        .into_iter()
        .enumerate()
        .map(|(index, call)| async move { (index, call.run(deadline).await) })
        .collect();
    while let Some((index, outcome)) = running.next().await {
        let failed = required[index] && outcome.result.is_err();
        outcomes[index] = Some(outcome);
        if failed {
            return Execution { outcomes, failed_required: Some(index) };
        }
    }
    Execution { outcomes, failed_required: None }
}
