//! The backend side of fanout ("downstream": the backends fanout calls, below it in the path
//! of a request): one keep-alive pool per backend ([`Backend`]), one call with its
//! timeout, body cap and tracing span ([`call`]), and the executor that runs an endpoint's
//! call graph — dependent calls, lists, shared identical requests — inside the inbound
//! request's future ([`execute`]); the per-backend resilience policies (retry with a budget,
//! circuit breaker) that a call's attempts run under ([`policy`]), and the sharing of identical
//! requests across inbound requests (`coalesce`), and the response cache with its stale
//! windows ([`cache`]).

mod backend;
pub mod cache;
mod call;
mod client;
mod coalesce;
mod error;
mod exchanged;
mod executor;
mod forward;
mod limited;
mod millis;
mod output;
pub mod policy;
mod random;
mod sender;
mod tls;

pub use backend::{Backend, BackendError, BackendSettings};
pub use cache::{CacheSettings, CacheUse, StaleReason};
pub use call::{CallOutcome, CallRequest};
pub use client::{IDLE_TIMEOUT, MAX_WORKERS, SWEEP_PERIOD, set_worker};
pub use coalesce::COALESCED;
pub use error::{CallError, ERROR_KINDS};
pub use exchanged::{Exchanged, Hedges};
pub use executor::{Execution, FanOut, Request, RequestKey, Step, execute};
pub use forward::{ForwardHeaders, Propagate};
pub use millis::millis;
pub use output::{Budget, NULL, Output};
pub use random::random_unit;
pub use sender::DEADLINE_MARGIN;
pub use tls::TlsError;
