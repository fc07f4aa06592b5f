//! Names: the rules for the names a config gives (route parameters, calls and backends, and
//! the references templates make to them), and the names fanout keeps for itself in answers.
//! Config validation, template parsing, composition and the OpenAPI document all read them
//! from here.

/// The answer's key for the calls that failed.
pub const ERRORS_KEY: &str = "_errors";
/// The answer's key for the calls answered from the cache with a stale answer.
pub const STALE_KEY: &str = "_stale";
/// The `Server-Timing` entry for the whole request.
pub const TOTAL_TIMING: &str = "total";
/// The `Server-Timing` entry for fanout's own time (the total minus the backend critical path).
pub const GATEWAY_TIMING: &str = "gateway";
/// Names a call may not take: they would collide with the gateway's `Server-Timing` entries.
/// ([`ERRORS_KEY`] is kept out by [`is_call_name`]: no call name starts with `_`.)
pub const RESERVED_CALL_NAMES: [&str; 2] = [GATEWAY_TIMING, TOTAL_TIMING];

/// A route parameter's name (`{id}` in a route): letters, digits and `_`.
pub fn is_param_name(name: &str) -> bool {
    made_of(name, b"_")
}

/// A call's or a backend's name: letters, digits, `-` and `_`, not starting with `_` (kept for
/// the gateway's own keys, such as [`ERRORS_KEY`]). Such names are JSON keys, span fields and
/// `Server-Timing` tokens as they are.
pub fn is_call_name(name: &str) -> bool {
    made_of(name, b"-_") && !name.starts_with('_')
}

/// A name a template refers to (a route parameter or a call): the characters of either.
pub fn is_reference_name(name: &str) -> bool {
    made_of(name, b"-_")
}

/// Not empty, and only ASCII letters, digits and the `extra` bytes.
fn made_of(name: &str, extra: &[u8]) -> bool {
    !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || extra.contains(&byte))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_name_has_its_characters() {
        for (name, param, call, reference) in [
            ("id", true, true, true),
            ("user_id", true, true, true),
            ("user-id", false, true, true),
            ("_x", true, false, true),
            ("", false, false, false),
            ("a.b", false, false, false),
            ("é", false, false, false),
            ("a b", false, false, false),
        ] {
            assert_eq!(is_param_name(name), param, "{name:?} as a route parameter");
            assert_eq!(is_call_name(name), call, "{name:?} as a call");
            assert_eq!(is_reference_name(name), reference, "{name:?} in a template");
        }
        assert!(!is_call_name(ERRORS_KEY));
        assert!(RESERVED_CALL_NAMES.iter().all(|name| is_call_name(name)), "reserved by list, not by rule");
    }
}
