//! Why a call failed: [`CallError`], each variant one of the contract's error kinds
//! ([`ERROR_KINDS`]), which `_errors`, problem bodies, metrics and the OpenAPI document share.

use std::time::Duration;

/// Why a call failed; [`CallError::kind`] is the contract's error kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The call's own timeout expired.
    #[error("no complete answer within {}ms", .0.as_millis())]
    Timeout(Duration),
    /// The endpoint's deadline was reached before the call finished.
    #[error("endpoint deadline reached")]
    Cancelled,
    /// The connection could not be made, or broke before a complete answer.
    #[error("{0}")]
    Connect(String),
    /// The backend answered with a non-2xx status.
    #[error("backend answered status {0}")]
    Status(u16),
    /// The body is not JSON.
    #[error("body is not JSON: {0}")]
    InvalidBody(String),
    /// The body is larger than the backend's `max_response_body`, or the call's result does not
    /// fit in what is left of the endpoint's `max_response_body`.
    #[error("body exceeds the {0} byte limit")]
    TooLarge(usize),
    /// A call this one reads from failed, so this one was not sent.
    #[error("call {0:?} it depends on failed")]
    DependencyFailed(String),
    /// A value this call reads from another response is missing, not a scalar, or unsafe.
    #[error("{0}")]
    InvalidReference(String),
    /// The list this call fans out over is longer than the endpoint's `max_fanout`.
    #[error("list of {len} elements exceeds max_fanout ({max})")]
    FanoutLimit {
        /// The list's length.
        len: usize,
        /// The endpoint's limit.
        max: usize,
    },
    /// The backend already had its `max_in_flight` requests in flight (the bulkhead): the call
    /// was not sent.
    #[error("the backend already has {0} requests in flight (its max_in_flight)")]
    Overloaded(usize),
    /// The backend's circuit breaker is open (or half-open with every trial call taken): the
    /// call was not sent. Holds the time until trial calls go through.
    #[error("the backend's circuit breaker is open")]
    CircuitOpen(Duration),
}

/// Every error kind [`CallError::kind`] can return, in the contract's order.
pub const ERROR_KINDS: [&str; 11] = [
    "timeout",
    "cancelled",
    "connect",
    "status",
    "invalid_body",
    "too_large",
    "dependency_failed",
    "invalid_reference",
    "fanout_limit",
    "overloaded",
    "circuit_open",
];

impl CallError {
    /// The contract's error kind: `timeout`, `cancelled`, `connect`, `status`, `invalid_body`,
    /// `too_large`, `dependency_failed`, `invalid_reference`, `fanout_limit`, `overloaded` or
    /// `circuit_open`.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Timeout(_) => "timeout",
            CallError::Cancelled => "cancelled",
            CallError::Connect(_) => "connect",
            CallError::Status(_) => "status",
            CallError::InvalidBody(_) => "invalid_body",
            CallError::TooLarge(_) => "too_large",
            CallError::DependencyFailed(_) => "dependency_failed",
            CallError::InvalidReference(_) => "invalid_reference",
            CallError::FanoutLimit { .. } => "fanout_limit",
            CallError::Overloaded(_) => "overloaded",
            CallError::CircuitOpen(_) => "circuit_open",
        }
    }

    /// True when the failure is about time (`timeout`, `cancelled`): a required call failing
    /// this way makes the endpoint answer 504 instead of 502.
    pub fn is_timeout(&self) -> bool {
        matches!(self, CallError::Timeout(_) | CallError::Cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_lists_every_kind_in_order() {
        let every = [
            CallError::Timeout(Duration::from_millis(1)),
            CallError::Cancelled,
            CallError::Connect(String::new()),
            CallError::Status(500),
            CallError::InvalidBody(String::new()),
            CallError::TooLarge(1),
            CallError::DependencyFailed(String::new()),
            CallError::InvalidReference(String::new()),
            CallError::FanoutLimit { len: 2, max: 1 },
            CallError::Overloaded(1),
            CallError::CircuitOpen(Duration::ZERO),
        ];
        assert_eq!(every.map(|e| e.kind()), ERROR_KINDS);
    }
}
