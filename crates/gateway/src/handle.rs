//! What the layers inside the request telemetry share: [`Handle`], a layer that answers a
//! request under the [`Scope`] it is served in, and [`Handled`], what came of it, which the
//! telemetry layer turns into the response, its `Server-Timing`, metrics and log line. These
//! layers are composed statically (generics, no boxing): the request's one boxed future holds
//! them all.

use crate::Body;
use crate::plan::Plan;
use crate::telemetry::metrics::PlanMetrics;
use downstream::Execution;
use http::{Request, Response};
use std::future::Future;

/// One layer inside the request telemetry.
pub trait Handle: Clone + Send + Sync + 'static {
    /// Answers `request` in `scope`.
    fn handle<B: Send>(&self, request: Request<B>, scope: &Scope<'_>)
    -> impl Future<Output = Handled> + Send;
}

/// What one request is served under: the config it took (kept to its end, even if a reload
/// swaps in another) and how it is observed.
pub struct Scope<'r> {
    /// The compiled config.
    pub plan: &'r Plan,
    /// Its metric handles.
    pub metrics: &'r PlanMetrics,
    /// The request is traced (its backend calls propagate the trace context).
    pub traced: bool,
    /// Its `request` log line is written (the calls' outcomes are then gathered for it).
    pub logged: bool,
}

/// What came of one request, for its `Server-Timing`, its metrics and its log line.
pub struct Handled {
    /// The answer (without `Server-Timing`: the telemetry layer sets it).
    pub response: Response<Body>,
    /// The index of the endpoint it matched, if any.
    pub endpoint: Option<usize>,
    /// That endpoint's calls as they ran, if they did.
    pub execution: Option<Execution>,
    /// Its calls' outcomes (`product:ok price:timeout …`), when the request line is logged.
    pub calls: Option<String>,
}

impl Handled {
    /// An answer given before any endpoint was matched.
    pub fn unrouted(response: Response<Body>) -> Self {
        Self { response, endpoint: None, execution: None, calls: None }
    }
}
