//! Shared state across replicas (`state.redis`): one [`Redis`] per process, a reconnecting
//! multiplexed connection (redis-rs's `ConnectionManager`) that every operation goes through
//! under the configured `timeout`. Redis is a help, never a dependency: an operation that fails
//! or times out returns [`Unavailable`] and the caller falls back to its local state; after
//! Redis failed to answer (timeout, connection refused or dropped) it is skipped for
//! [`SKIP_AFTER_FAILURE`] so that requests do not each wait out a `timeout` while it is down
//! ([`health`]). Each purpose ([`Op::purpose`]: rate limits, the cache) keeps its own record, so
//! a slow cache write cannot switch shared rate limits off; an error *answer* (out of memory, a
//! script error) is counted and logged but skips nothing. Every operation is counted by
//! outcome ([`OPERATIONS`]), [`UP`] says per purpose whether Redis answers, and a log line at
//! most every [`health::LOG_EVERY`] says when it fails (and one when it answers again).
//!
//! What is stored, and the scripts that store it, belong to the callers (the gateway's rate
//! limits); this crate owns the connection and the failing open.

pub mod health;

use health::Health;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::future::Future;
use std::time::Duration;

pub use health::SKIP_AFTER_FAILURE;
pub use redis::{FromRedisValue, Script, ScriptInvocation};

/// Redis operations, by `op` (what they were for) and `outcome` (`ok`, `timeout`, `error`,
/// or `skipped`: not tried, Redis failed less than [`SKIP_AFTER_FAILURE`] ago).
pub const OPERATIONS: &str = "fanout_redis_operations_total";
/// Per purpose: 1 while Redis answers, 0 after it failed to (until an operation succeeds again).
pub const UP: &str = "fanout_redis_up";

/// What an operation is for: its metric label, and whose failures it shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A rate-limit check.
    RateLimit,
    /// A cache lookup.
    CacheGet,
    /// A cache write.
    CacheSet,
}

impl Op {
    /// The `op` label.
    pub fn name(self) -> &'static str {
        match self {
            Op::RateLimit => "rate_limit",
            Op::CacheGet => "cache_get",
            Op::CacheSet => "cache_set",
        }
    }

    /// The purpose whose record of failures it shares: `rate_limit` or `cache`.
    pub fn purpose(self) -> &'static str {
        match self {
            Op::RateLimit => "rate_limit",
            Op::CacheGet | Op::CacheSet => "cache",
        }
    }
}

/// How long one (re)connection attempt may take. Requests never wait for it longer than
/// `timeout`: it runs on while they fall back.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The SHA-1 digest of `bytes`: what stands for a secret (an API key, a forwarded token) in a
/// key name or a script argument, so that neither `SCAN` nor `MONITOR` shows it.
pub fn digest(bytes: &[u8]) -> [u8; 20] {
    sha1_smol::Sha1::from(bytes).digest().bytes()
}

/// [`digest`] in lowercase hex.
pub fn hex_digest(bytes: &[u8]) -> String {
    sha1_smol::Sha1::from(bytes).hexdigest()
}

/// `state.redis`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://[user:password@]host[:port][/db]`.
    pub url: String,
    /// The longest any operation may take before the caller falls back.
    pub timeout: Duration,
    /// Put in front of every key (several deployments can share one Redis).
    pub key_prefix: String,
}

impl RedisSettings {
    /// Checks that `url` is a Redis URL this build can connect to (no I/O).
    pub fn check_url(url: &str) -> Result<(), String> {
        if !url.starts_with("redis://") {
            return Err("must start with redis:// (TLS to Redis, rediss://, is not built in)".to_owned());
        }
        redis::Client::open(url).map(drop).map_err(|error| error.to_string())
    }
}

/// Why Redis could not be used; the caller uses its local state instead.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// Redis failed less than [`SKIP_AFTER_FAILURE`] ago: not tried.
    #[error("skipped: redis failed recently")]
    Skipped,
    /// No answer within `timeout`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connecting failed, or Redis answered with an error.
    #[error("{0}")]
    Error(#[from] redis::RedisError),
}

impl Unavailable {
    fn outcome(&self) -> &'static str {
        match self {
            Unavailable::Skipped => "skipped",
            Unavailable::Timeout(_) => "timeout",
            Unavailable::Error(_) => "error",
        }
    }

    /// Redis did not answer (as opposed to answering with an error): worth skipping it a while.
    fn unreachable(&self) -> bool {
        match self {
            Unavailable::Skipped | Unavailable::Timeout(_) => true,
            Unavailable::Error(error) => {
                error.is_io_error()
                    || error.is_connection_refusal()
                    || error.is_connection_dropped()
                    || error.is_timeout()
                    || error.is_unrecoverable_error()
            }
        }
    }
}

/// Why a Redis connection could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("state.redis.url: {0}")]
pub struct ConnectError(#[from] redis::RedisError);

/// The process's Redis.
pub struct Redis {
    connection: ConnectionManager,
    timeout: Duration,
    key_prefix: Box<[u8]>,
    /// The rate limits' record, then the cache's.
    health: [Health; 2],
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl Redis {
    /// Sets up the connection to `settings.url`, connecting in the background (a Redis that is
    /// down at start is not an error: operations fall back until it answers). Call inside the
    /// tokio runtime.
    pub fn connect(settings: &RedisSettings) -> Result<Self, ConnectError> {
        let client = redis::Client::open(settings.url.as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(SKIP_AFTER_FAILURE);
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            connection,
            timeout: settings.timeout,
            key_prefix: settings.key_prefix.as_bytes().into(),
            health: [Health::new(Op::RateLimit.purpose()), Health::new(Op::CacheGet.purpose())],
        })
    }

    /// `key_prefix` followed by `parts`: a key of this deployment.
    pub fn key(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut key =
            Vec::with_capacity(self.key_prefix.len() + parts.iter().map(|p| p.len()).sum::<usize>());
        key.extend_from_slice(&self.key_prefix);
        for part in parts {
            key.extend_from_slice(part);
        }
        key
    }

    /// Runs a script (EVALSHA, loading it on first use) for `op`.
    pub async fn invoke<T: FromRedisValue>(
        &self,
        op: Op,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, Unavailable> {
        let mut connection = self.connection.clone();
        self.guarded(op, invocation.invoke_async(&mut connection)).await
    }

    /// Runs `operation` unless Redis failed recently, for at most `timeout`, counting and
    /// logging what came of it.
    async fn guarded<T>(
        &self,
        op: Op,
        operation: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Unavailable> {
        let health = &self.health[usize::from(op.purpose() == "cache")];
        let result = if health.skipping() {
            Err(Unavailable::Skipped)
        } else {
            match tokio::time::timeout(self.timeout, operation).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => Err(Unavailable::Error(error)),
                Err(_) => Err(Unavailable::Timeout(self.timeout)),
            }
        };
        let outcome = match &result {
            Ok(_) => {
                health.succeeded();
                "ok"
            }
            Err(Unavailable::Skipped) => "skipped",
            Err(failure) => {
                health.failed(op.name(), failure, failure.unreachable());
                failure.outcome()
            }
        };
        metrics::counter!(OPERATIONS, "op" => op.name(), "outcome" => outcome).increment(1);
        result
    }
}
