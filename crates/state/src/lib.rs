//! Shared state across replicas (`state.redis`): one [`Redis`] per process, a reconnecting
//! multiplexed connection (redis-rs's `ConnectionManager`) that every operation goes through
//! under the configured `timeout`. Redis is a help, never a dependency: an operation that fails
//! or times out returns [`Unavailable`] and the caller falls back to its local state; after a
//! failure Redis is skipped for [`SKIP_AFTER_FAILURE`] so that requests do not each wait out a
//! `timeout` while it is down ([`health`]). Every operation is counted by outcome
//! ([`OPERATIONS`]), [`UP`] says whether Redis answers, and a log line at most every
//! [`health::LOG_EVERY`] says when it stops (and one when it answers again).
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
/// 1 while Redis answers, 0 after an operation failed (until one succeeds again).
pub const UP: &str = "fanout_redis_up";

/// How long one (re)connection attempt may take. Requests never wait for it longer than
/// `timeout`: it runs on while they fall back.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

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
    health: Health,
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
        metrics::gauge!(UP).set(1.0);
        Ok(Self {
            connection,
            timeout: settings.timeout,
            key_prefix: settings.key_prefix.as_bytes().into(),
            health: Health::new(),
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
        op: &'static str,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, Unavailable> {
        let mut connection = self.connection.clone();
        self.guarded(op, invocation.invoke_async(&mut connection)).await
    }

    /// Runs `operation` unless Redis failed recently, for at most `timeout`, counting and
    /// logging what came of it.
    async fn guarded<T>(
        &self,
        op: &'static str,
        operation: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Unavailable> {
        let result = if self.health.skipping() {
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
                self.health.succeeded();
                "ok"
            }
            Err(Unavailable::Skipped) => "skipped",
            Err(failure) => {
                self.health.failed(op, failure);
                failure.outcome()
            }
        };
        metrics::counter!(OPERATIONS, "op" => op, "outcome" => outcome).increment(1);
        result
    }
}
