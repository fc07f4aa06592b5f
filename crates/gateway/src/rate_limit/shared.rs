//! Buckets shared by every replica (`state.redis`): the GCRA of [`super::gcra`], step for step,
//! as one Lua script that Redis runs atomically — one round trip per check, on Redis's clock
//! (`TIME`), so replicas whose clocks differ still agree. A bucket's key expires when the
//! bucket would be full again (then it is the same as no key). When Redis does not answer
//! within `state.redis.timeout` the caller uses its local bucket instead ([`state`]).
//!
//! Keys: `{key_prefix}rl:{route}:{client}`, the client as `ip:ADDRESS`, `h:SHA1` (a header
//! value's digest: API keys are secrets and do not belong in key names that `SCAN` or `MONITOR`
//! show) or `anon`.

use super::client_key::ClientKey;
use super::gcra::{Decision, Quota};
use state::{Op, Redis, Script, Unavailable};
use std::io::Write;
use std::sync::Arc;

/// `KEYS[1]`: the bucket; `ARGV`: the quota's interval (µs) and burst. Returns the decision
/// as `{allowed, remaining, reset_us, retry_after_us}` — the arithmetic of `gcra::decide`.
/// Numbers are Lua doubles: microseconds since 1970 (~2^51) are exact; `%.0f` writes them
/// back without an exponent.
const GCRA_LUA: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local window = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local base = math.max(tat, now)
local ahead = base + interval - now
if ahead <= window then
  redis.call('SET', KEYS[1], string.format('%.0f', base + interval), 'PX', math.ceil(ahead / 1000))
  return {1, math.floor((window - ahead) / interval), ahead, 0}
end
return {0, 0, base - now, ahead - window}
";

/// One endpoint's buckets in Redis.
pub struct SharedBuckets {
    redis: Arc<Redis>,
    script: Script,
    /// `{key_prefix}rl:{route}:`.
    prefix: Vec<u8>,
}

impl SharedBuckets {
    /// The buckets of the endpoint `route` in `redis`.
    pub fn new(redis: Arc<Redis>, route: &str) -> Self {
        let prefix = redis.key(&[b"rl:", route.as_bytes(), b":"]);
        Self { redis, script: Script::new(GCRA_LUA), prefix }
    }

    /// Takes one request from `key`'s bucket, unless it is empty.
    pub async fn take(&self, key: &ClientKey, quota: Quota) -> Result<Decision, Unavailable> {
        let mut name = self.prefix.clone();
        // Written in place (writing into a Vec cannot fail): no string per check.
        let _ = match key {
            ClientKey::Ip(ip) => write!(name, "ip:{ip}"),
            ClientKey::Digest(digest) => {
                name.extend_from_slice(b"h:");
                digest.iter().try_for_each(|byte| write!(name, "{byte:02x}"))
            }
            ClientKey::Anonymous => name.write_all(b"anon"),
        };
        let mut invocation = self.script.key(name);
        invocation.arg(quota.interval_us).arg(quota.burst);
        let (allowed, remaining, reset_us, retry_after_us): (u8, u64, u64, u64) =
            self.redis.invoke(Op::RateLimit, &invocation).await?;
        // The stored TAT is Redis's; nothing local is updated.
        Ok(Decision { allowed: allowed == 1, tat: 0, remaining, reset_us, retry_after_us })
    }
}
