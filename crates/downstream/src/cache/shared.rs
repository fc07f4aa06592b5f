//! The cache's second tier in Redis (`backends.X.cache.shared`, with `state.redis`): what one
//! replica stores, every replica finds — a replica that starts cold serves what another
//! cached, under the same keys, lifetimes and stale windows. The local tier is asked first;
//! Redis only when it has nothing better than an answer usable on error, and every good answer
//! stored locally is written to Redis too, in the background. Redis slow or down: the local
//! tier alone (the [`state`] crate's timeout, skip and metrics).
//!
//! Two scripts, one round trip each, build an entry's Redis key the same way (in Lua, once,
//! as the local tier does in Rust): `{key_prefix}c:{backend}:i:{SHA-1 of the URL}` holds what
//! the URL's answers vary on (public or not, the `Vary` names), and the entry lives at
//! `{key_prefix}c:{backend}:e:` + the SHA-1 of the URL's and the key headers' digests. Header
//! values and URLs reach Redis only as SHA-1 digests, in key names and script arguments alike
//! (`MONITOR` and `SLOWLOG` record arguments). The scripts read keys their `KEYS` do not list:
//! a single Redis (or one behind Sentinel), not Redis Cluster.
//!
//! A stored value is the answer's wall-clock store time and its three windows (milliseconds,
//! big-endian u64) followed by the body: replicas' clocks must agree (NTP) for ages to.

use super::control::Lifetimes;
use super::{Variance, key_headers};
use bytes::Bytes;
use http::{HeaderMap, HeaderName};
use state::{Op, Redis, Script, ScriptInvocation, hex_digest};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Builds the entry's key from the URL's digest, the variance (`public`: `1` or `0`; `vary`:
/// newline-separated names) and the request's `name, value digest` pairs from `ARGV[first]` on:
/// the names are the `Vary` ones and, unless public, every name the request has, sorted.
const ENTRY_KEY_LUA: &str = r"
local function entry_key(prefix, url, public, vary, first)
  local names, seen = {}, {}
  local function add(name)
    if not seen[name] then
      seen[name] = true
      table.insert(names, name)
    end
  end
  for name in string.gmatch(vary, '[^\n]+') do add(name) end
  if public ~= '1' then
    for i = first, #ARGV, 2 do add(ARGV[i]) end
  end
  table.sort(names)
  local key = url
  for _, name in ipairs(names) do
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

/// `KEYS[1]`: the URL's index; `ARGV`: entry prefix, URL digest, then the request's pairs.
/// Returns `{index, value}`, or nil.
const LOOKUP_LUA: &str = r"
local index = redis.call('GET', KEYS[1])
if not index then return nil end
local value = redis.call('GET', entry_key(ARGV[1], ARGV[2], string.sub(index, 1, 1), string.sub(index, 3), 3))
if not value then return nil end
return {index, value}
";

/// `KEYS[1]`: the URL's index; `ARGV`: entry prefix, URL digest, index, value, TTL (ms), then
/// the request's pairs.
const STORE_LUA: &str = r"
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[5])
local key = entry_key(ARGV[1], ARGV[2], string.sub(ARGV[3], 1, 1), string.sub(ARGV[3], 3), 6)
redis.call('SET', key, ARGV[4], 'PX', ARGV[5])
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
    pub(crate) variance: Variance,
    pub(crate) body: Bytes,
    pub(crate) lifetimes: Lifetimes,
    /// Time since it was stored (by whichever replica).
    pub(crate) age: Duration,
}

/// A request as the scripts see it: its URL's digest and its key headers' `name, value digest`
/// pairs.
struct Hashed {
    url: String,
    pairs: Vec<(HeaderName, String)>,
}

impl Hashed {
    fn of(url: &[u8], forwarded: &HeaderMap) -> Self {
        let pairs = key_headers(forwarded)
            .map(|(name, value)| (name.clone(), hex_digest(value.as_bytes())))
            .collect();
        Self { url: hex_digest(url), pairs }
    }

    fn push_pairs(&self, invocation: &mut ScriptInvocation<'_>) {
        for (name, value) in &self.pairs {
            invocation.arg(name.as_str()).arg(value);
        }
    }
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
        let hashed = Hashed::of(url, forwarded);
        let mut invocation = self.lookup.key(self.index_key(&hashed.url));
        invocation.arg(&self.entry_prefix[..]).arg(&hashed.url);
        hashed.push_pairs(&mut invocation);
        let found: Option<(Vec<u8>, Vec<u8>)> = self.redis.invoke(Op::CacheGet, &invocation).await.ok()?;
        let (index, value) = found?;
        let variance = parse_index(&index)?;
        decode(value).map(|(body, lifetimes, age)| Found { variance, body, lifetimes, age })
    }

    /// Writes an entry stored locally to Redis too, in the background (never waited for).
    pub(crate) fn store(
        self: &Arc<Self>,
        url: Bytes,
        forwarded: &HeaderMap,
        variance: &Variance,
        body: &Bytes,
        lifetimes: Lifetimes,
    ) {
        let hashed = Hashed::of(&url, forwarded);
        let index = index_text(variance);
        let value = encode(body, lifetimes);
        let ttl = u64::try_from(lifetimes.total().as_millis()).unwrap_or(u64::MAX).max(1);
        let tier = Arc::clone(self);
        tokio::spawn(async move {
            let mut invocation = tier.store.key(tier.index_key(&hashed.url));
            invocation.arg(&tier.entry_prefix[..]).arg(&hashed.url).arg(index).arg(value).arg(ttl);
            hashed.push_pairs(&mut invocation);
            let _: Result<u8, _> = tier.redis.invoke(Op::CacheSet, &invocation).await;
        });
    }

    fn index_key(&self, url_digest: &str) -> Vec<u8> {
        [&self.index_prefix[..], url_digest.as_bytes()].concat()
    }
}

/// What the index holds: `1` or `0` (public), a newline, the `Vary` names one per line.
fn index_text(variance: &Variance) -> String {
    let names: Vec<&str> = variance.vary.iter().map(HeaderName::as_str).collect();
    format!("{}\n{}", if variance.public { '1' } else { '0' }, names.join("\n"))
}

fn parse_index(index: &[u8]) -> Option<Variance> {
    let (public, vary) = (index.first()?, index.get(2..).unwrap_or_default());
    let vary: Vec<HeaderName> = vary
        .split(|b| *b == b'\n')
        .filter(|n| !n.is_empty())
        .filter_map(|n| HeaderName::from_bytes(n).ok())
        .collect();
    Some(Variance { vary: vary.into(), public: *public == b'1' })
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

    #[test]
    fn the_index_reads_back_as_written() {
        for variance in [
            Variance { vary: vec![HeaderName::from_static("accept-language")].into(), public: true },
            Variance { vary: Vec::new().into(), public: false },
        ] {
            assert_eq!(parse_index(index_text(&variance).as_bytes()), Some(variance));
        }
    }
}
