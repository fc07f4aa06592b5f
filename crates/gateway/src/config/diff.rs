//! What a reload changes: the config's [`Version`] (a hash of the whole effective tree, after
//! environment overrides and `${VAR}` substitution) and the list of [`Change`]s between two
//! trees, keyed the way an operator thinks of them (`backends.pricing`, `endpoints[GET /x]`,
//! `server.listen`). Pure: trees in, values out.

use serde_json::{Map, Value};
use std::fmt;

/// Sections read once at start: a reload reports their changes but does not apply them.
const AT_RESTART: [&str; 3] = ["server", "telemetry", "state"];

/// The keys of `server` a reload does apply: they are the endpoints' defaults, read with them.
pub const SERVER_KEYS_ON_RELOAD: [&str; 2] = ["rate_limit", "trusted_proxies"];

/// A config version: the first 48 bits of the FNV-1a hash of the effective tree, shown as 12
/// hex digits (`/readyz`) and exported exactly as a number (`fanout_config_hash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version(u64);

impl Version {
    /// The version of `tree`.
    pub fn of(tree: &Value) -> Self {
        Self(fnv1a(tree.to_string().as_bytes()) >> 16)
    }

    /// The version as a number (exact in an `f64`: 48 bits).
    pub fn as_f64(self) -> f64 {
        self.0 as f64
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:012x}", self.0)
    }
}

/// The 64-bit FNV-1a hash of `bytes` (stable across builds and platforms).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// One difference between two configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What changed: `server.listen`, `backends.pricing`, `endpoints[GET /api/x/{id}]`.
    pub key: String,
    /// `added`, `removed` or `changed`.
    pub what: &'static str,
    /// True for keys read only at start (`server.*`, `telemetry.*`): not applied by a reload.
    pub needs_restart: bool,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key, self.what)?;
        if self.needs_restart {
            f.write_str(" (applies at restart)")?;
        }
        Ok(())
    }
}

/// Every difference from `old` to `new`: per key of `server` and `telemetry`, per backend by
/// name, per endpoint by route; in that order.
pub fn changes(old: &Value, new: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    for section in AT_RESTART {
        compare_maps(section, old.get(section), new.get(section), true, &mut out);
    }
    compare_maps("backends", old.get("backends"), new.get("backends"), false, &mut out);
    let by_route = |tree: &Value| -> Map<String, Value> {
        let endpoints =
            tree.get("endpoints").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let route =
                    e.get("route").and_then(Value::as_str).map_or_else(|| i.to_string(), str::to_owned);
                (route, e.clone())
            })
            .collect()
    };
    let (old_routes, new_routes) = (Value::Object(by_route(old)), Value::Object(by_route(new)));
    let mut endpoints = Vec::new();
    compare_maps("endpoints", Some(&old_routes), Some(&new_routes), false, &mut endpoints);
    out.extend(
        endpoints
            .into_iter()
            .map(|c| Change { key: format!("endpoints[{}]", &c.key["endpoints.".len()..]), ..c }),
    );
    out
}

/// Compares the entries of two mappings at `prefix` (a missing section is an empty one).
fn compare_maps(
    prefix: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    needs_restart: bool,
    out: &mut Vec<Change>,
) {
    let empty = Map::new();
    let old = old.and_then(Value::as_object).unwrap_or(&empty);
    let new = new.and_then(Value::as_object).unwrap_or(&empty);
    let mut push = |key: &str, what| {
        let needs_restart = needs_restart && !(prefix == "server" && SERVER_KEYS_ON_RELOAD.contains(&key));
        out.push(Change { key: format!("{prefix}.{key}"), what, needs_restart });
    };
    for (key, value) in old {
        match new.get(key) {
            None => push(key, "removed"),
            Some(other) if other != value => push(key, "changed"),
            Some(_) => {}
        }
    }
    for key in new.keys().filter(|k| !old.contains_key(*k)) {
        push(key, "added");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "server": {"listen": "0.0.0.0:8080", "request_timeout": "2s"},
            "backends": {"users": {"url": "http://u"}, "orders": {"url": "http://o"}},
            "endpoints": [
                {"route": "GET /a/{id}", "calls": {"u": {"backend": "users", "path": "/u/{id}"}}},
                {"route": "GET /b", "calls": {"o": {"backend": "orders", "path": "/o"}}}
            ]
        })
    }

    fn listed(old: &Value, new: &Value) -> Vec<String> {
        changes(old, new).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn identical_trees_have_no_changes_and_one_version() {
        assert!(changes(&base(), &base()).is_empty());
        assert_eq!(Version::of(&base()), Version::of(&base()));
        assert_eq!(Version::of(&base()).to_string().len(), 12);
    }

    #[test]
    fn changes_are_named_by_key_backend_and_route() {
        let mut new = base();
        new["server"]["listen"] = json!("0.0.0.0:9000");
        new["backends"]["orders"]["url"] = json!("http://o2");
        new["backends"]["carts"] = json!({"url": "http://c"});
        new["backends"].as_object_mut().unwrap().shift_remove("users");
        new["endpoints"][1]["calls"]["o"]["path"] = json!("/o2");
        new["endpoints"].as_array_mut().unwrap().push(json!({"route": "GET /c", "calls": {}}));
        new["endpoints"].as_array_mut().unwrap().remove(0);
        assert_eq!(
            listed(&base(), &new),
            [
                "server.listen changed (applies at restart)",
                "backends.users removed",
                "backends.orders changed",
                "backends.carts added",
                "endpoints[GET /a/{id}] removed",
                "endpoints[GET /b] changed",
                "endpoints[GET /c] added",
            ]
        );
        assert_ne!(Version::of(&base()), Version::of(&new));
    }

    #[test]
    fn reordering_endpoints_is_not_a_change_of_any_endpoint() {
        let mut new = base();
        new["endpoints"].as_array_mut().unwrap().swap(0, 1);
        assert!(changes(&base(), &new).is_empty());
    }

    #[test]
    fn a_section_appearing_lists_its_keys() {
        let mut new = base();
        new["telemetry"] = json!({"log_level": "debug"});
        assert_eq!(listed(&base(), &new), ["telemetry.log_level added (applies at restart)"]);
    }

    #[test]
    fn the_servers_rate_limit_defaults_apply_on_reload() {
        let mut new = base();
        new["server"]["rate_limit"] = json!({"rate": "10/s"});
        new["server"]["trusted_proxies"] = json!(["10.0.0.0/8"]);
        assert_eq!(listed(&base(), &new), ["server.rate_limit added", "server.trusted_proxies added"]);
    }

    #[test]
    fn connection_limits_apply_at_restart() {
        let mut new = base();
        new["server"]["keep_alive_timeout"] = json!("90s");
        new["server"]["admin_max_connections"] = json!(16);
        assert_eq!(
            listed(&base(), &new),
            [
                "server.keep_alive_timeout added (applies at restart)",
                "server.admin_max_connections added (applies at restart)"
            ]
        );
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
