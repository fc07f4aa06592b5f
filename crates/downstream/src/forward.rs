//! What a call forwards, shared by the modules that send, share and cache requests: the
//! [`ForwardHeaders`] an inbound request writes into its backend requests, the [`Propagate`]
//! function that writes a span's trace context, and the headers that differ per inbound request
//! by design ([`PER_REQUEST`]).

use http::HeaderMap;

/// Headers that differ per inbound request by design (its id, its trace context): never part of
/// what makes two requests identical (coalescing) or of a cache key.
pub(crate) const PER_REQUEST: [&str; 3] = ["x-request-id", "traceparent", "tracestate"];

/// Writes an inbound request's forwarded headers into each of its backend requests' maps,
/// directly: no map is built per inbound request for the calls to copy.
pub trait ForwardHeaders: Sync {
    /// Appends the headers of the endpoint's list `header_set` to `headers`.
    fn write(&self, header_set: usize, headers: &mut HeaderMap);
}

/// Forwarded headers already written out (what a coalesced request owns).
impl ForwardHeaders for HeaderMap {
    fn write(&self, _: usize, headers: &mut HeaderMap) {
        for (name, value) in self {
            headers.append(name, value.clone());
        }
    }
}

impl std::fmt::Debug for dyn ForwardHeaders + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ForwardHeaders")
    }
}

/// A function writing a span's trace context into request headers.
pub type Propagate = fn(&tracing::Span, &mut HeaderMap);
