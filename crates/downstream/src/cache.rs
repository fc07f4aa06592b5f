//! The per-backend response cache (`backends.X.cache`): successful answers kept in memory as
//! the backend's `Cache-Control` allows ([`control`]), served fresh without a backend request,
//! served stale at once while one background request refreshes them (`stale-while-revalidate`),
//! and served stale when the call fails (`stale-if-error`: timeout, connect, 5xx, open
//! circuit). Errors are never stored.
//!
//! **Keys.** An answer is stored under its URL and the values of the request headers it varies
//! on: the ones its `Vary` names and — unless the backend marked it `public` — every header the
//! call forwards, so one user's answer (an `Authorization` forwarded) is never served to another.
//! The per-request headers (`X-Request-Id`, trace context) never count. What a URL's answers
//! vary on ([`Variance`]: the `Vary` names, public or not) is learned from the last answer stored
//! for it; a lookup keys on those names plus, unless public, every header *it* forwards, with its
//! own values. An entry is keyed by names and values, so a lookup only ever finds an entry
//! stored under the same headers with the same values: a request with a token never finds one
//! stored without, nor the reverse.
//!
//! With `shared: true` (and `state.redis`), a second tier in Redis ([`shared`]) lets every
//! replica find what one stored.
//!
//! **Memory.** Two moka caches, least recently used evicted first, weighed in bytes: the
//! entries (body, key and a fixed [`ENTRY_OVERHEAD`]) get 15/16 of `max_bytes`, the per-URL
//! index the rest. An entry is dropped when its last window ends. A stored body is a copy in
//! a buffer of its own size: the body a call returns is a view into the connection's read
//! buffer (8 KiB or more), which an entry would otherwise keep alive in full while weighing
//! only the body: an entry for a 500-byte answer, weighed at ~1 KiB, would hold 9 KiB or more.

pub mod control;
mod shared;

use crate::error::CallError;
use crate::forward::PER_REQUEST;
use bytes::Bytes;
use control::{Directives, Lifetimes};
use http::{HeaderMap, HeaderName, HeaderValue};
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use shared::SharedTier;
use state::Redis;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// Lookups by `result`: `hit` (fresh), `stale` (served while revalidating) or `miss`.
pub const LOOKUPS: &str = "fanout_cache_lookups_total";
/// Stale answers served, by `reason`: `revalidating`, or the error kind of the failed call.
pub const STALE_SERVED: &str = "fanout_cache_stale_served_total";
/// Entries evicted to stay within `max_bytes`.
pub const EVICTIONS: &str = "fanout_cache_evictions_total";
/// The bytes the cache holds (entries and index, as weighed).
pub const BYTES: &str = "fanout_cache_bytes";

/// What an entry costs besides its body and key: the entry itself, moka's node and its
/// bookkeeping (a few hundred bytes; rounded up so that `max_bytes` bounds the real memory).
pub const ENTRY_OVERHEAD: usize = 512;

/// `backends.X.cache`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// The most memory the cache may hold.
    pub max_bytes: usize,
    /// How long an answer that says nothing of its freshness is fresh; `None`: not stored.
    pub default_ttl: Option<Duration>,
    /// After freshness, how long a stale answer is served while it is refreshed (unless the
    /// answer sets its own `stale-while-revalidate`).
    pub stale_while_revalidate: Duration,
    /// After freshness, how long a stale answer is served when the call fails (unless the
    /// answer sets its own `stale-if-error`).
    pub stale_if_error: Duration,
    /// Keep a second tier in Redis (`state.redis`), shared by every replica.
    pub shared: bool,
}

/// How a call's answer came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    /// A fresh stored answer: no backend request.
    Hit,
    /// A stale stored answer, this old.
    Stale {
        /// Why it was served.
        reason: StaleReason,
        /// Time since it was stored.
        age: Duration,
    },
}

/// Why a stale answer was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReason {
    /// Within `stale-while-revalidate`: a background request refreshes it.
    Revalidating,
    /// The call failed with this error kind, within `stale-if-error`.
    Error(&'static str),
}

impl CacheUse {
    /// `hit` or `stale`: the `Server-Timing` description and the span field.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheUse::Hit => "hit",
            CacheUse::Stale { .. } => "stale",
        }
    }
}

impl StaleReason {
    /// `revalidating`, or the error kind.
    pub fn as_str(self) -> &'static str {
        match self {
            StaleReason::Revalidating => "revalidating",
            StaleReason::Error(kind) => kind,
        }
    }
}

/// One stored answer.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) body: Bytes,
    stored: Instant,
    lifetimes: Lifetimes,
    /// A background refresh is running.
    pub(crate) refreshing: AtomicBool,
}

/// What a stored answer is good for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usable {
    Fresh,
    Revalidate,
    IfError,
}

impl Entry {
    pub(crate) fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.stored)
    }

    pub(crate) fn usable(&self, now: Instant) -> Option<Usable> {
        let (age, l) = (self.age(now), &self.lifetimes);
        if age < l.fresh {
            Some(Usable::Fresh)
        } else if age < l.fresh.saturating_add(l.stale_while_revalidate) {
            Some(Usable::Revalidate)
        } else if age < l.fresh.saturating_add(l.stale_if_error) {
            Some(Usable::IfError)
        } else {
            None
        }
    }
}

/// Entries expire when their last window ends.
struct Expiry;

impl moka::Expiry<Box<[u8]>, Arc<Entry>> for Expiry {
    fn expire_after_create(
        &self,
        _: &Box<[u8]>,
        entry: &Arc<Entry>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(entry.lifetimes.total())
    }

    fn expire_after_update(
        &self,
        _: &Box<[u8]>,
        entry: &Arc<Entry>,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.lifetimes.total())
    }
}

/// One backend's cache.
pub struct ResponseCache {
    settings: CacheSettings,
    backend: Arc<str>,
    entries: Cache<Box<[u8]>, Arc<Entry>>,
    /// Per URL, what its last stored answer varies on.
    index: Cache<Bytes, Variance>,
    /// The tier in Redis, once the process's Redis is given ([`ResponseCache::share`]).
    shared: OnceLock<Arc<SharedTier>>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl ResponseCache {
    /// The cache of `backend` under `settings`.
    pub(crate) fn new(backend: &str, settings: CacheSettings) -> Self {
        let backend: Arc<str> = backend.into();
        let max = u64::try_from(settings.max_bytes).unwrap_or(u64::MAX);
        let weight = |bytes: usize| u32::try_from(bytes + ENTRY_OVERHEAD).unwrap_or(u32::MAX);
        let label = Arc::clone(&backend);
        let entries = Cache::<Box<[u8]>, Arc<Entry>>::builder()
            .max_capacity(max - max / 16)
            .weigher(move |key, entry| weight(key.len() + entry.body.len()))
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(Expiry)
            .eviction_listener(move |_, _, cause| {
                if cause == RemovalCause::Size {
                    metrics::counter!(EVICTIONS, "backend" => label.to_string()).increment(1);
                }
            })
            .build();
        let index = Cache::builder()
            .max_capacity(max / 16)
            .weigher(move |url: &Bytes, variance: &Variance| {
                weight(url.len() + variance.vary.iter().map(|n| n.as_str().len() + 8).sum::<usize>())
            })
            .eviction_policy(EvictionPolicy::lru())
            .build();
        Self { settings, backend, entries, index, shared: OnceLock::new() }
    }

    /// With `shared: true`, keeps the second tier in `redis` from now on (else nothing).
    pub fn share(&self, redis: &Arc<Redis>) {
        if self.settings.shared {
            let _ = self.shared.set(Arc::new(SharedTier::new(Arc::clone(redis), &self.backend)));
        }
    }

    /// The settings it runs under.
    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// The bytes it holds, as weighed (after its pending evictions).
    pub fn weighed_bytes(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.index.run_pending_tasks();
        self.entries.weighted_size() + self.index.weighted_size()
    }

    /// The entry for a request of `url` forwarding `forwarded`, and what it is good for now.
    fn lookup(&self, url: &Bytes, forwarded: &HeaderMap, now: Instant) -> Option<(Arc<Entry>, Usable)> {
        let variance = self.index.get(url)?;
        let key = key(url, &variance.names(forwarded), forwarded);
        let entry = self.entries.get(&key)?;
        let usable = entry.usable(now)?;
        Some((entry, usable))
    }

    /// Stores `body`, the answer to a request of `url` forwarding `forwarded`, if `directives`
    /// allow it (and writes it to the shared tier, if any).
    pub(crate) fn store(&self, url: Bytes, forwarded: &HeaderMap, body: Bytes, directives: &Directives) {
        let Some(lifetimes) = directives.lifetimes(&self.settings) else { return };
        let variance = Variance { vary: directives.vary.as_slice().into(), public: directives.public };
        if let Some(tier) = self.shared.get() {
            tier.store(url.clone(), forwarded, &variance, &body, lifetimes);
        }
        let body = Bytes::copy_from_slice(&body);
        self.insert(url, forwarded, variance, body, lifetimes, Instant::now());
    }

    /// Puts an entry in the local tier.
    fn insert(
        &self,
        url: Bytes,
        forwarded: &HeaderMap,
        variance: Variance,
        body: Bytes,
        lifetimes: Lifetimes,
        stored: Instant,
    ) -> Arc<Entry> {
        let key = key(&url, &variance.names(forwarded), forwarded);
        let entry = Arc::new(Entry { body, stored, lifetimes, refreshing: AtomicBool::new(false) });
        self.index.insert(url, variance);
        self.entries.insert(key, Arc::clone(&entry));
        entry
    }

    /// The entry for a request of `url` forwarding `forwarded`: the local tier's, or, when it
    /// has nothing better than an answer usable on error, the shared tier's if that is younger
    /// and usable (kept locally from then on).
    pub(crate) async fn find(
        &self,
        url: &Bytes,
        forwarded: &HeaderMap,
        now: Instant,
    ) -> Option<(Arc<Entry>, Usable)> {
        let local = self.lookup(url, forwarded, now);
        let Some(tier) = self.shared.get() else { return local };
        if matches!(local, Some((_, Usable::Fresh | Usable::Revalidate))) {
            return local;
        }
        let Some(found) = tier.lookup(url, forwarded).await else { return local };
        let younger = local.as_ref().is_none_or(|(entry, _)| found.age < entry.age(now));
        let stored = now.checked_sub(found.age);
        let (Some(stored), true) = (stored, younger) else { return local };
        let shared = Entry {
            body: found.body,
            stored,
            lifetimes: found.lifetimes,
            refreshing: AtomicBool::new(false),
        };
        let Some(usable) = shared.usable(now) else { return local };
        let entry =
            self.insert(url.clone(), forwarded, found.variance, shared.body, shared.lifetimes, stored);
        Some((entry, usable))
    }

    pub(crate) fn count(&self, name: &'static str, label: &'static str, value: &'static str) {
        metrics::counter!(name, "backend" => self.backend.to_string(), label => value).increment(1);
    }
}

/// What a URL's answers vary on, learned from the last answer stored for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Variance {
    /// The request headers its `Vary` named.
    pub(crate) vary: Arc<[HeaderName]>,
    /// It was `public`: shared whatever else the request forwarded.
    pub(crate) public: bool,
}

impl Variance {
    /// The header names a request forwarding `forwarded` is keyed on: the `Vary` names and,
    /// unless public, every header it forwards (but the per-request ones); sorted, once each.
    fn names(&self, forwarded: &HeaderMap) -> Vec<HeaderName> {
        let mut names = self.vary.to_vec();
        if !self.public {
            names.extend(key_headers(forwarded).map(|(name, _)| name.clone()));
        }
        names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        names.dedup();
        names
    }
}

/// The forwarded headers that can be part of a key: all but the per-request ones.
pub(crate) fn key_headers(forwarded: &HeaderMap) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
    forwarded.iter().filter(|(name, _)| !PER_REQUEST.contains(&name.as_str()))
}

/// The key of an entry: the URL, then each header name with its values (absent and empty
/// differ).
fn key(url: &[u8], names: &[HeaderName], forwarded: &HeaderMap) -> Box<[u8]> {
    let mut key = url.to_vec();
    for name in names {
        key.push(0);
        key.extend_from_slice(name.as_str().as_bytes());
        let mut values = forwarded.get_all(name).iter().peekable();
        if values.peek().is_none() {
            key.push(1);
        }
        for value in values {
            key.push(b'=');
            key.extend_from_slice(value.as_bytes());
        }
    }
    key.into_boxed_slice()
}

/// An error after which a stale answer may be served (`stale-if-error`): the backend is
/// unreachable, slow, failing (5xx) or its circuit is open. Not `cancelled` (the endpoint's
/// deadline passed: the answer is no longer waited for) nor bad answers (4xx, invalid bodies).
pub(crate) fn stale_if(error: &CallError) -> bool {
    match error {
        CallError::Timeout(_)
        | CallError::Connect(_)
        | CallError::CircuitOpen(_)
        | CallError::Overloaded(_) => true,
        CallError::Status(status) => *status >= 500,
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
