//! W3C Trace Context as clients send it (`traceparent`, `tracestate`): strict parsing, so a
//! malformed or oversized header is never trusted nor passed on, and the pass-through of a
//! client's context to backends for requests the gateway does not trace itself (tracing off,
//! or not sampled), so a trace is never cut at the gateway. Pure: no OpenTelemetry here.

use http::{HeaderMap, HeaderName, HeaderValue};

/// The `traceparent` header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` header.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// The longest `tracestate` passed on (W3C Trace Context: vendors may drop longer ones).
pub const MAX_TRACESTATE: usize = 512;
/// The most list members a `tracestate` may have (W3C Trace Context).
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// A client's valid `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent<'h> {
    /// The trace id: 32 lowercase hex digits, not all zero.
    pub trace_id: &'h str,
    /// The caller's sampled flag.
    pub sampled: bool,
}

/// The client's `traceparent`, when it is present and valid: version `00` (or a later version,
/// read as `00`), a non-zero trace id and parent id in lowercase hex, and flags.
pub fn traceparent(headers: &HeaderMap) -> Option<TraceParent<'_>> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let value = values.next().filter(|_| values.next().is_none())?.to_str().ok()?;
    let mut parts = value.split('-');
    let (version, trace_id, parent_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |text: &str, len: usize| {
        text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let nonzero = |text: &str| text.bytes().any(|b| b != b'0');
    let valid = hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && hex(trace_id, 32)
        && nonzero(trace_id)
        && hex(parent_id, 16)
        && nonzero(parent_id)
        && hex(flags, 2);
    let flags = u8::from_str_radix(flags, 16).ok().filter(|_| valid)?;
    Some(TraceParent { trace_id, sampled: flags & 1 == 1 })
}

/// True for a well-formed `tracestate` of at most [`MAX_TRACESTATE`] bytes: at most 32
/// comma-separated `key=value` members, keys `[a-z0-9_\-*/]` (with an optional `@vendor`),
/// values printable ASCII without `,` or `=`.
pub fn valid_tracestate(state: &str) -> bool {
    if state.len() > MAX_TRACESTATE {
        return false;
    }
    let members: Vec<&str> =
        state.split(',').map(|m| m.trim_matches([' ', '\t'])).filter(|m| !m.is_empty()).collect();
    let key_char = |b: u8| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/');
    let valid_key = |key: &str| {
        let (tenant, vendor) = key.split_once('@').map_or((key, None), |(t, v)| (t, Some(v)));
        let part = |p: &str, most: usize| !p.is_empty() && p.len() <= most && p.bytes().all(key_char);
        part(tenant, 256) && vendor.is_none_or(|v| part(v, 14) && tenant.len() <= 241)
    };
    let valid_value = |value: &str| {
        !value.is_empty()
            && value.len() <= 256
            && !value.ends_with(' ')
            && value.bytes().all(|b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
    };
    !members.is_empty()
        && members.len() <= MAX_TRACESTATE_MEMBERS
        && members
            .iter()
            .all(|member| member.split_once('=').is_some_and(|(k, v)| valid_key(k) && valid_value(v)))
}

/// Copies the client's trace context into `headers` unchanged, when it is valid: its
/// `traceparent`, and its `tracestate` if that is well-formed and short enough (several
/// `tracestate` fields are one list, joined with `,`).
pub fn pass_on(inbound: &HeaderMap, headers: &mut HeaderMap) {
    if traceparent(inbound).is_none() {
        return;
    }
    if let Some(parent) = inbound.get(TRACEPARENT) {
        headers.insert(TRACEPARENT, parent.clone());
    }
    let fields: Vec<&str> = inbound.get_all(TRACESTATE).iter().filter_map(|v| v.to_str().ok()).collect();
    let state = fields.join(",");
    if !state.is_empty()
        && valid_tracestate(&state)
        && let Ok(value) = HeaderValue::try_from(state)
    {
        headers.insert(TRACESTATE, value);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append((*name).clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn only_well_formed_traceparents_are_read() {
        let valid = headers(&[(&TRACEPARENT, VALID)]);
        let parsed = traceparent(&valid).unwrap();
        assert_eq!(parsed, TraceParent { trace_id: "0af7651916cd43dd8448eb211c80319c", sampled: true });
        assert!(!traceparent(&headers(&[(&TRACEPARENT, &VALID.replace("-01", "-00"))])).unwrap().sampled);
        assert!(traceparent(&headers(&[(&TRACEPARENT, &format!("01{}-future", &VALID[2..]))])).is_some());
        for bad in [
            "garbage",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
        ] {
            assert_eq!(traceparent(&headers(&[(&TRACEPARENT, bad)])), None, "{bad}");
        }
        assert_eq!(
            traceparent(&headers(&[(&TRACEPARENT, VALID), (&TRACEPARENT, VALID)])),
            None,
            "two fields"
        );
    }

    #[test]
    fn tracestate_must_be_well_formed_and_short() {
        assert!(valid_tracestate("congo=t61rcWkgMzE"));
        assert!(valid_tracestate("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"));
        assert!(valid_tracestate("tenant@vendor=x"));
        for bad in ["", "novalue", "=x", "UPPER=x", "k=a,b=", "k=v=w", "k=\u{7f}", "k=in ner=x"] {
            assert!(!valid_tracestate(bad), "{bad:?}");
        }
        let long = (0..40).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join(",");
        assert!(!valid_tracestate(&long), "more than 32 members");
        assert!(!valid_tracestate(&format!("k={}", "v".repeat(MAX_TRACESTATE))), "over 512 bytes");
    }

    #[test]
    fn a_valid_context_is_passed_on_unchanged_and_a_bad_state_is_dropped() {
        let mut out = HeaderMap::new();
        pass_on(&headers(&[(&TRACEPARENT, VALID), (&TRACESTATE, "a=1"), (&TRACESTATE, "b=2")]), &mut out);
        assert_eq!(out[TRACEPARENT], VALID);
        assert_eq!(out[TRACESTATE], "a=1,b=2");
        let mut out = HeaderMap::new();
        pass_on(&headers(&[(&TRACEPARENT, VALID), (&TRACESTATE, &"x".repeat(600))]), &mut out);
        assert_eq!(out[TRACEPARENT], VALID);
        assert!(!out.contains_key(TRACESTATE));
        let mut out = HeaderMap::new();
        pass_on(&headers(&[(&TRACEPARENT, "garbage"), (&TRACESTATE, "a=1")]), &mut out);
        assert!(out.is_empty(), "no state without a valid parent");
    }
}
