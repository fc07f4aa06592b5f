//! Checking rate limits: `server.rate_limit` (every endpoint's default), `server.trusted_proxies`
//! and `endpoints[i].rate_limit` (`off`, or a limit of its own).

use super::{Checker, typed};
use crate::config::defaults;
use crate::config::raw::{RawRateLimit, Text};
use crate::config::units::parse_rate;
use crate::rate_limit::RateLimitSettings;
use crate::rate_limit::client_key::KeySource;
use ipnet::IpNet;
use serde_json::Value;
use std::net::IpAddr;
use std::time::Duration;

/// The largest `burst`: a million requests at once is already no limit at all.
const MAX_BURST: usize = 1_000_000;

/// A `rate_limit` mapping.
pub(super) fn rate_limit(c: &mut Checker<'_>, raw: RawRateLimit) -> RateLimitSettings {
    let key_text = raw.key.map_or_else(|| defaults::RATE_LIMIT_KEY.to_owned(), |Text(key)| key);
    let key = KeySource::parse(key_text.trim()).unwrap_or_else(|why| {
        c.error("rate_limit.key", why);
        KeySource::Global
    });
    let (count, per) = parse_rate(&raw.rate.0).unwrap_or_else(|why| {
        c.error("rate_limit.rate", why);
        (1, Duration::from_secs(1))
    });
    let burst = c.count("rate_limit.burst", raw.burst, count as usize);
    if burst > MAX_BURST && !c.reported("rate_limit.burst") {
        c.error("rate_limit.burst", format!("{burst} is over the {MAX_BURST} maximum"));
    }
    RateLimitSettings {
        key,
        count,
        per,
        burst: u32::try_from(burst.min(MAX_BURST)).unwrap_or(1),
        max_keys: c.count("rate_limit.max_keys", raw.max_keys, defaults::RATE_LIMIT_MAX_KEYS),
    }
}

/// `endpoints[i].rate_limit`: absent, the server's default; `off`, none; else its own.
pub(super) fn endpoint_rate_limit(
    c: &mut Checker<'_>,
    value: Option<Value>,
    default: Option<&RateLimitSettings>,
) -> Option<RateLimitSettings> {
    match value {
        None | Some(Value::Null) => default.cloned(),
        Some(Value::String(text)) if text.trim() == "off" => None,
        Some(Value::String(text)) => {
            c.error("rate_limit", format!("{text:?}: write off, or a mapping with a rate"));
            None
        }
        Some(value) => {
            let path = c.path("rate_limit");
            typed::<RawRateLimit>(value, &path, c.errors).map(|raw| rate_limit(c, raw))
        }
    }
}

/// `server.trusted_proxies`: addresses (`10.0.0.7`) and networks (`10.0.0.0/8`).
pub(super) fn trusted_proxies(c: &mut Checker<'_>, raw: Vec<Text>) -> Vec<IpNet> {
    raw.into_iter()
        .enumerate()
        .filter_map(|(i, Text(text))| {
            let text = text.trim();
            let net = text.parse::<IpNet>().ok().or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from));
            if net.is_none() {
                c.error(
                    &format!("trusted_proxies[{i}]"),
                    format!("{text:?} is not an address or network (write e.g. 10.0.0.0/8 or 10.0.0.7)"),
                );
            }
            net
        })
        .collect()
}
