//! The backend side of fanout: one keep-alive pool per backend ([`Backend`]), one call with its
//! timeout, body cap and tracing span ([`call`]), and the executor that runs all of an
//! endpoint's calls concurrently inside the inbound request's future ([`execute`]).

mod backend;
mod call;
mod executor;

pub use backend::{Backend, BackendError, BackendSettings};
pub use call::{CallError, CallOutcome, CallRequest};
pub use executor::{Execution, execute};
