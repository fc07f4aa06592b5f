//! Checking a backend's resilience policies (`retry`, `circuit_breaker`, `hedge`) and its response
//! `cache`: every key has a default ([`super::defaults`]), and every bad value is reported with
//! its key path.

use super::Checker;
use super::defaults;
use crate::config::raw::{RawBreaker, RawCache, RawHedge, RawRetry, Text};
use crate::config::units::parse_duration;
use downstream::CacheSettings;
use downstream::policy::{
    BreakerSettings, BudgetSettings, Failures, HedgeAfter, HedgeSettings, RetrySettings,
};
use std::time::Duration;

/// The most attempts a call may make (gRPC's retry policy caps `maxAttempts` at 5; ten leaves
/// room for hedging-like use without letting one call multiply a backend's load unboundedly).
const MAX_ATTEMPTS: usize = 10;

/// `backends.NAME.cache`.
pub(super) fn cache(c: &mut Checker<'_>, raw: RawCache) -> CacheSettings {
    let mut window = |key: &str, value: Option<Text>, default: &str| {
        c.duration_or_off(key, value, Some(default)).unwrap_or(Duration::ZERO)
    };
    let stale_while_revalidate = window(
        "cache.stale_while_revalidate",
        raw.stale_while_revalidate,
        defaults::CACHE_STALE_WHILE_REVALIDATE,
    );
    let stale_if_error = window("cache.stale_if_error", raw.stale_if_error, defaults::CACHE_STALE_IF_ERROR);
    CacheSettings {
        max_bytes: c.size("cache.max_bytes", raw.max_bytes, defaults::CACHE_MAX_BYTES),
        default_ttl: c.duration_or_off(
            "cache.default_ttl",
            raw.default_ttl,
            Some(defaults::CACHE_DEFAULT_TTL),
        ),
        stale_while_revalidate,
        stale_if_error,
        shared: raw.shared.0,
    }
}

/// `backends.NAME.retry`.
pub(super) fn retry(c: &mut Checker<'_>, raw: RawRetry) -> RetrySettings {
    let attempts = c.count("retry.attempts", raw.attempts.clone(), defaults::RETRY_ATTEMPTS);
    if !(2..=MAX_ATTEMPTS).contains(&attempts) && !c.reported("retry.attempts") {
        c.error("retry.attempts", format!("{attempts} must be from 2 (one retry) to {MAX_ATTEMPTS}"));
    }
    let backoff = c.duration("retry.backoff", raw.backoff, defaults::RETRY_BACKOFF);
    let max_backoff = c.duration("retry.max_backoff", raw.max_backoff, defaults::RETRY_MAX_BACKOFF);
    if max_backoff < backoff && !c.reported("retry.backoff") && !c.reported("retry.max_backoff") {
        c.error("retry.max_backoff", format!("{max_backoff:?} is shorter than retry.backoff ({backoff:?})"));
    }
    let min_time_left = raw.min_time_left.map(|t| c.duration("retry.min_time_left", Some(t), ""));
    let budget = BudgetSettings {
        ratio: fraction(c, "retry.budget.ratio", raw.budget.ratio, defaults::RETRY_BUDGET_RATIO),
        min_per_second: whole(
            c,
            "retry.budget.min_per_second",
            raw.budget.min_per_second,
            defaults::RETRY_BUDGET_MIN_PER_SECOND,
        ),
        window: c.duration("retry.budget.window", raw.budget.window, defaults::RETRY_BUDGET_WINDOW),
    };
    RetrySettings {
        attempts: u32::try_from(attempts).unwrap_or(2),
        backoff,
        max_backoff,
        on: failures(c, "retry.on", raw.on.as_deref(), None),
        min_time_left,
        budget,
    }
}

/// `backends.NAME.circuit_breaker`; its failures default to `retry_on`, the backend's retry
/// list when it has one.
pub(super) fn circuit_breaker(
    c: &mut Checker<'_>,
    raw: RawBreaker,
    retry_on: Option<&Failures>,
) -> BreakerSettings {
    let count = |c: &mut Checker<'_>, key: &str, value: Option<Text>, default: usize| {
        u32::try_from(c.count(key, value, default).min(u32::MAX as usize)).unwrap_or(u32::MAX)
    };
    BreakerSettings {
        window: c.duration("circuit_breaker.window", raw.window, defaults::BREAKER_WINDOW),
        min_calls: count(c, "circuit_breaker.min_calls", raw.min_calls, defaults::BREAKER_MIN_CALLS),
        failure_rate: share(
            c,
            "circuit_breaker.failure_rate",
            raw.failure_rate,
            defaults::BREAKER_FAILURE_RATE,
        ),
        open_for: c.duration("circuit_breaker.open_for", raw.open_for, defaults::BREAKER_OPEN_FOR),
        half_open_calls: count(
            c,
            "circuit_breaker.half_open_calls",
            raw.half_open_calls,
            defaults::BREAKER_HALF_OPEN_CALLS,
        ),
        on: failures(c, "circuit_breaker.on", raw.on.as_deref(), retry_on),
    }
}

/// `backends.NAME.hedge`.
pub(super) fn hedge(c: &mut Checker<'_>, raw: RawHedge) -> HedgeSettings {
    let text = raw.after.map_or_else(|| defaults::HEDGE_AFTER.to_owned(), |t| t.0);
    let after = match hedge_after(text.trim()) {
        Some(after) => after,
        None => {
            c.error(
                "hedge.after",
                format!(
                    "{text:?} is neither a quantile from p50 to p99.9 (e.g. p95) nor a duration (e.g. 20ms)"
                ),
            );
            HedgeAfter::Quantile(0.95)
        }
    };
    let min_delay = c.duration("hedge.min_delay", raw.min_delay, defaults::HEDGE_MIN_DELAY);
    let max_delay = c.duration("hedge.max_delay", raw.max_delay, defaults::HEDGE_MAX_DELAY);
    if max_delay < min_delay && !c.reported("hedge.min_delay") && !c.reported("hedge.max_delay") {
        c.error("hedge.max_delay", format!("{max_delay:?} is shorter than hedge.min_delay ({min_delay:?})"));
    }
    let max_extra = share(c, "hedge.max_extra", raw.max_extra, defaults::HEDGE_MAX_EXTRA);
    HedgeSettings { after, min_delay, max_delay, max_extra }
}

/// `p95`, `p99.9` (a quantile from p50 to p99.9) or a duration.
fn hedge_after(text: &str) -> Option<HedgeAfter> {
    if let Some(percent) = text.strip_prefix('p') {
        let q = percent.parse::<f64>().ok()? / 100.0;
        return (0.5..=0.999).contains(&q).then_some(HedgeAfter::Quantile(q));
    }
    parse_duration(text).ok().map(HedgeAfter::Fixed)
}

/// An `on:` list, or `default` (else the transient failures) when absent.
fn failures(c: &mut Checker<'_>, key: &str, items: Option<&[Text]>, default: Option<&Failures>) -> Failures {
    let Some(items) = items else {
        return default.cloned().unwrap_or_else(Failures::transient);
    };
    if items.is_empty() {
        c.error(key, "list at least one failure (e.g. [connect, timeout, 503])");
    }
    let mut failures = Failures::default();
    for (i, Text(item)) in items.iter().enumerate() {
        if let Err(message) = failures.add(item.trim()) {
            c.error(&format!("{key}[{i}]"), message);
        }
    }
    failures
}

/// A number from 0 to 1.
fn fraction(c: &mut Checker<'_>, key: &str, value: Option<Text>, default: &str) -> f64 {
    let text = value.map_or_else(|| default.to_owned(), |t| t.0);
    match text.trim().parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => ratio,
        _ => {
            c.error(key, format!("{text:?} must be a number from 0 to 1"));
            0.0
        }
    }
}

/// A whole number from 0 to 1,000,000.
fn whole(c: &mut Checker<'_>, key: &str, value: Option<Text>, default: usize) -> u32 {
    let Some(Text(text)) = value else { return u32::try_from(default).unwrap_or_default() };
    match text.trim().parse::<u32>() {
        Ok(n) if n <= 1_000_000 => n,
        _ => {
            c.error(key, format!("{text:?} must be a whole number from 0 to 1000000"));
            0
        }
    }
}

/// A share: a percentage (`50%`) or a fraction (`0.5`), above 0 and at most 1.
fn share(c: &mut Checker<'_>, key: &str, value: Option<Text>, default: &str) -> f64 {
    let text = value.map_or_else(|| default.to_owned(), |t| t.0);
    let trimmed = text.trim();
    let rate = match trimmed.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => trimmed.parse::<f64>(),
    };
    match rate {
        Ok(rate) if rate > 0.0 && rate <= 1.0 => rate,
        _ => {
            c.error(
                key,
                format!("{text:?} must be a share above 0 and at most 100% (write e.g. 50% or 0.5)"),
            );
            1.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_default_list_is_the_one_applied() {
        let items: Vec<Text> = defaults::RETRY_ON
            .trim_matches(['[', ']'])
            .split(',')
            .map(|item| Text(item.trim().to_owned()))
            .collect();
        let mut errors = crate::config::ConfigErrors::default();
        let mut c = Checker { errors: &mut errors, prefix: "backends.b" };
        assert_eq!(failures(&mut c, "retry.on", Some(&items), None), Failures::transient());
        assert!(errors.is_empty());
    }
}
