//! The cache's second tier in Redis (`backends.X.cache.shared`, with `state.redis`): what one
//! replica stores, every replica finds — a replica that starts cold serves what another
//! cached, under the same keys, lifetimes and stale windows. The local tier is asked first;
//! Redis only when it has nothing better than an answer usable on error, and every good answer
//! stored locally is written to Redis too, in the background. Redis slow or down: the local
//! tier alone (the [`state`] crate's timeout, skip and metrics).
//!
//! Two scripts, one round trip each, build an entry's Redis key the same way (in Lua, once):
//! `{key_prefix}c:{backend}:i:{url}` holds the header names the URL's answers vary on, and the
//! entry lives at `{key_prefix}c:{backend}:e:` + the SHA-1 of the URL and those headers' values
//! (forwarded tokens never appear in a key name). The scripts read keys their `KEYS` do not
//! list: a single Redis (or one behind Sentinel), not Redis Cluster.
//!
//! A stored value is the answer's wall-clock store time and its three windows (milliseconds,
//! big-endian u64) followed by the body: replicas' clocks must agree (NTP) for ages to.

use super::control::Lifetimes;
use crate::call::PER_REQUEST;
use bytes::Bytes;
use http::{HeaderMap, HeaderName};
use state::{Redis, Script};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Builds the entry's key from `url`, the names (newline-separated) and the request's
/// `name, value` pairs from `ARGV[first]` on.
const ENTRY_KEY_LUA: &str = r"
local function entry_key(prefix, url, names, first)
  local key = url
  for name in string.gmatch(names, '[^\n]+') do
    key = key .. '\0' .. name
    local found = false
    for i = first, #ARGV, 2 do
      if ARGV[i] == name then
        key = key .. '=' .. ARGV[i + 1]
        found = true
      end
    end
    if not found then key = key .. '\1' end
  end
  return prefix .. redis.sha1hex(key)
end
";

/// `KEYS[1]`: the URL's index; `ARGV`: entry prefix, URL, then the request's header pairs.
/// Returns `{names, value}`, or nil.
const LOOKUP_LUA: &str = r"
local names = redis.call('GET', KEYS[1])
if not names then return nil end
local value = redis.call('GET', entry_key(ARGV[1], ARGV[2], names, 3))
if not value then return nil end
return {names, value}
";

/// `KEYS[1]`: the URL's index; `ARGV`: entry prefix, URL, names, value, TTL (ms), then the
/// request's header pairs.
const STORE_LUA: &str = r"
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[5])
redis.call('SET', entry_key(ARGV[1], ARGV[2], ARGV[3], 6), ARGV[4], 'PX', ARGV[5])
return 1
";

/// One backend's entries in Redis.
pub(crate) struct SharedTier {
    redis: Arc<Redis>,
    lookup: Script,
    store: Script,
    /// `{key_prefix}c:{backend}:i:`.
    index_prefix: Vec<u8>,
    /// `{key_prefix}c:{backend}:e:`.
    entry_prefix: Vec<u8>,
}

/// An entry as found in Redis.
pub(crate) struct Found {
    pub(crate) names: Vec<HeaderName>,
    pub(crate) body: Bytes,
    pub(crate) lifetimes: Lifetimes,
    /// Time since it was stored (by whichever replica).
    pub(crate) age: Duration,
}

impl SharedTier {
    /// The tier of `backend` in `redis`.
    pub(crate) fn new(redis: Arc<Redis>, backend: &str) -> Self {
        let index_prefix = redis.key(&[b"c:", backend.as_bytes(), b":i:"]);
        let entry_prefix = redis.key(&[b"c:", backend.as_bytes(), b":e:"]);
        Self {
            redis,
            lookup: Script::new(&format!("{ENTRY_KEY_LUA}{LOOKUP_LUA}")),
            store: Script::new(&format!("{ENTRY_KEY_LUA}{STORE_LUA}")),
            index_prefix,
            entry_prefix,
        }
    }

    /// The entry for a request of `url` forwarding `forwarded`, if Redis has one (and answers
    /// in time).
    pub(crate) async fn lookup(&self, url: &Bytes, forwarded: &HeaderMap) -> Option<Found> {
        let mut invocation = self.lookup.key(self.index_key(url));
        invocation.arg(&self.entry_prefix[..]).arg(&url[..]);
        push_pairs(&mut invocation, forwarded);
        let found: Option<(Vec<u8>, Vec<u8>)> = self.redis.invoke("cache_get", &invocation).await.ok()?;
        let (names, value) = found?;
        let names =
            names.split(|b| *b == b'\n').filter_map(|name| HeaderName::from_bytes(name).ok()).collect();
        decode(value).map(|(body, lifetimes, age)| Found { names, body, lifetimes, age })
    }

    /// Writes an entry stored locally to Redis too, in the background (never waited for).
    pub(crate) fn store(
        self: &Arc<Self>,
        url: Bytes,
        forwarded: &HeaderMap,
        names: &[HeaderName],
        body: &Bytes,
        lifetimes: Lifetimes,
    ) {
        let names = names.iter().map(HeaderName::as_str).collect::<Vec<_>>().join("\n");
        let value = encode(body, lifetimes);
        let ttl = u64::try_from(lifetimes.total().as_millis()).unwrap_or(u64::MAX).max(1);
        let pairs = pairs(forwarded);
        let tier = Arc::clone(self);
        tokio::spawn(async move {
            let mut invocation = tier.store.key(tier.index_key(&url));
            invocation.arg(&tier.entry_prefix[..]).arg(&url[..]).arg(names).arg(value).arg(ttl);
            for (name, value) in &pairs {
                invocation.arg(name.as_str()).arg(&value[..]);
            }
            let _: Result<u8, _> = tier.redis.invoke("cache_set", &invocation).await;
        });
    }

    fn index_key(&self, url: &[u8]) -> Vec<u8> {
        [&self.index_prefix[..], url].concat()
    }
}

/// The request's forwarded `name, value` pairs that can be part of a key.
fn pairs(forwarded: &HeaderMap) -> Vec<(HeaderName, Bytes)> {
    forwarded
        .iter()
        .filter(|(name, _)| !PER_REQUEST.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), Bytes::copy_from_slice(value.as_bytes())))
        .collect()
}

fn push_pairs(invocation: &mut state::ScriptInvocation<'_>, forwarded: &HeaderMap) {
    for (name, value) in forwarded.iter().filter(|(name, _)| !PER_REQUEST.contains(&name.as_str())) {
        invocation.arg(name.as_str()).arg(value.as_bytes());
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(0))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The stored value: store time, windows, body.
fn encode(body: &Bytes, lifetimes: Lifetimes) -> Vec<u8> {
    let mut value = Vec::with_capacity(32 + body.len());
    for field in [
        unix_ms(),
        millis(lifetimes.fresh),
        millis(lifetimes.stale_while_revalidate),
        millis(lifetimes.stale_if_error),
    ] {
        value.extend_from_slice(&field.to_be_bytes());
    }
    value.extend_from_slice(body);
    value
}

/// The body, windows and age of a stored value (`None`: not one of ours).
fn decode(value: Vec<u8>) -> Option<(Bytes, Lifetimes, Duration)> {
    let field =
        |i: usize| -> Option<u64> { Some(u64::from_be_bytes(value.get(i * 8..i * 8 + 8)?.try_into().ok()?)) };
    let (stored, fresh, revalidate, if_error) = (field(0)?, field(1)?, field(2)?, field(3)?);
    let lifetimes = Lifetimes {
        fresh: Duration::from_millis(fresh),
        stale_while_revalidate: Duration::from_millis(revalidate),
        stale_if_error: Duration::from_millis(if_error),
    };
    let age = Duration::from_millis(unix_ms().saturating_sub(stored));
    let body = Bytes::from(value).slice(32..);
    Some((body, lifetimes, age))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_value_decodes_to_what_was_encoded() {
        let lifetimes = Lifetimes {
            fresh: Duration::from_secs(60),
            stale_while_revalidate: Duration::from_secs(10),
            stale_if_error: Duration::from_secs(300),
        };
        let (body, decoded, age) = decode(encode(&Bytes::from_static(b"{\"a\":1}"), lifetimes)).unwrap();
        assert_eq!((&body[..], decoded), (&b"{\"a\":1}"[..], lifetimes));
        assert!(age < Duration::from_secs(1));
        assert!(decode(b"short".to_vec()).is_none());
    }
}
