//! What one backend exchange gives ([`Exchanged`]: the status, the checked body or the
//! failure, the attempts and hedges it took, what the answer says about caching it, whether it
//! came from the cache) and what one attempt gives ([`Attempted`]).

use crate::cache::CacheUse;
use crate::cache::control::Directives;
use crate::error::CallError;
use bytes::Bytes;

/// What one attempt gives: the response status when one came, and the checked body or why it
/// failed.
pub(crate) type Attempted = (Option<u16>, Result<Bytes, CallError>);

/// What a backend exchange gives.
#[derive(Debug, Clone)]
pub struct Exchanged {
    /// The last attempt's response status, when one came.
    pub status: Option<u16>,
    /// The checked body, or why the call failed.
    pub result: Result<Bytes, CallError>,
    /// Attempts made.
    pub attempts: u32,
    /// Hedges sent and won.
    pub hedges: Hedges,
    /// For a backend with a cache: what the good answer said about caching it (boxed: every
    /// exchange's future carries the field, few fill it).
    pub directives: Option<Box<Directives>>,
    /// The answer came from the cache.
    pub cache: Option<CacheUse>,
}

impl Exchanged {
    /// What one attempt, unhedged, gave.
    pub fn once(status: Option<u16>, result: Result<Bytes, CallError>) -> Self {
        Self::made(status, result, 1, Hedges::default())
    }

    /// What `attempts` attempts with `hedges` gave.
    pub(crate) fn made(
        status: Option<u16>,
        result: Result<Bytes, CallError>,
        attempts: u32,
        hedges: Hedges,
    ) -> Self {
        Self { status, result, attempts, hedges, directives: None, cache: None }
    }

    /// A stored answer: no request made.
    pub(crate) fn from_cache(body: Bytes, cache: CacheUse) -> Self {
        Self { cache: Some(cache), ..Self::made(None, Ok(body), 0, Hedges::default()) }
    }
}

/// Hedges of one call ([`crate::policy`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hedges {
    /// Hedges sent.
    pub sent: u32,
    /// Hedges whose good answer came first.
    pub won: u32,
}
