//! What a backend's answer says about caching it (RFC 9111 `Cache-Control`, `Vary`, `Age`; RFC
//! 5861 `stale-while-revalidate` / `stale-if-error`), read into [`Directives`], and what that
//! makes of it under a backend's `cache` settings ([`Directives::lifetimes`]). Pure: headers
//! in, values out.

use super::CacheSettings;
use http::header::{AGE, CACHE_CONTROL, VARY};
use http::{HeaderMap, HeaderName};
use std::time::Duration;

/// The caching directives of one answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    /// `no-store`: never stored.
    pub no_store: bool,
    /// `no-cache`: stored, but never used without revalidation (here: only when the backend
    /// fails, within `stale-if-error`; never while revalidating).
    pub no_cache: bool,
    /// `private`: for one user's cache only: never stored by a gateway.
    pub private: bool,
    /// `public`: may be shared even when the request carried credentials.
    pub public: bool,
    /// `must-revalidate` / `proxy-revalidate`: never used stale.
    pub must_revalidate: bool,
    /// `max-age`, seconds.
    pub max_age: Option<u64>,
    /// `s-maxage`, seconds (for shared caches; wins over `max-age`).
    pub s_maxage: Option<u64>,
    /// `stale-while-revalidate`, seconds.
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error`, seconds.
    pub stale_if_error: Option<u64>,
    /// The request headers the answer varies on.
    pub vary: Vec<HeaderName>,
    /// `Vary: *`: it varies on something no key can capture.
    pub vary_any: bool,
    /// `Age`, seconds: how old the answer already is.
    pub age: u64,
}

/// How long a stored answer is used: fresh, then stale while revalidating, then stale only
/// when the backend fails (each window counted from when it was stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Served without asking the backend.
    pub fresh: Duration,
    /// After `fresh`: served at once while one background request refreshes it.
    pub stale_while_revalidate: Duration,
    /// After `fresh`: served when the call fails (timeout, connect, 5xx, circuit open).
    pub stale_if_error: Duration,
}

impl Lifetimes {
    /// How long it is of any use.
    pub fn total(&self) -> Duration {
        self.fresh.saturating_add(self.stale_while_revalidate.max(self.stale_if_error))
    }
}

/// The largest delta-seconds value taken as it is (RFC 9111 §1.2.2: 2^31 s, about 68 years);
/// a larger one means as much, and cannot overflow a time computation.
const MAX_DELTA_SECONDS: u64 = 1 << 31;

impl Directives {
    /// Reads the caching headers of an answer.
    pub fn of(headers: &HeaderMap) -> Self {
        let mut directives = Directives::default();
        for value in headers.get_all(CACHE_CONTROL) {
            let Ok(text) = value.to_str() else { continue };
            for directive in text.split(',') {
                let (name, argument) = match directive.split_once('=') {
                    Some((name, argument)) => (name.trim(), Some(argument.trim().trim_matches('"'))),
                    None => (directive.trim(), None),
                };
                let seconds =
                    || argument.and_then(|a| a.parse::<u64>().ok()).map(|s| s.min(MAX_DELTA_SECONDS));
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => directives.no_store = true,
                    "no-cache" => directives.no_cache = true,
                    "private" => directives.private = true,
                    "public" => directives.public = true,
                    "must-revalidate" | "proxy-revalidate" => directives.must_revalidate = true,
                    "max-age" => directives.max_age = seconds(),
                    "s-maxage" => directives.s_maxage = seconds(),
                    "stale-while-revalidate" => directives.stale_while_revalidate = seconds(),
                    "stale-if-error" => directives.stale_if_error = seconds(),
                    _ => {}
                }
            }
        }
        for value in headers.get_all(VARY) {
            let Ok(text) = value.to_str() else {
                directives.vary_any = true;
                continue;
            };
            for name in text.split(',').map(str::trim).filter(|name| !name.is_empty()) {
                match HeaderName::from_bytes(name.as_bytes()) {
                    Ok(name) if name != "*" => directives.vary.push(name),
                    _ => directives.vary_any = true,
                }
            }
        }
        directives.age = headers
            .get(AGE)
            .and_then(|age| age.to_str().ok()?.trim().parse::<u64>().ok())
            .map_or(0, |age| age.min(MAX_DELTA_SECONDS));
        directives
    }

    /// Whether the answer says anything about its freshness.
    fn explicit_freshness(&self) -> bool {
        self.max_age.is_some() || self.s_maxage.is_some() || self.no_cache
    }

    /// How long the answer may be used under `settings`, or `None` when it must not be stored:
    /// `no-store`, `private`, `Vary: *`, or no freshness of its own with `default_ttl: off`, or
    /// of no use at all (no time fresh and no stale window).
    pub fn lifetimes(&self, settings: &CacheSettings) -> Option<Lifetimes> {
        if self.no_store || self.private || self.vary_any {
            return None;
        }
        let lifetime = if self.no_cache {
            Duration::ZERO
        } else if self.explicit_freshness() {
            Duration::from_secs(self.s_maxage.or(self.max_age).unwrap_or(0))
        } else {
            settings.default_ttl?
        };
        // Already this much past its freshness when it arrived: the stale windows started then.
        let age = Duration::from_secs(self.age);
        let late = age.saturating_sub(lifetime);
        // `s-maxage` means `proxy-revalidate` to a shared cache (RFC 9111 §5.2.2.10): no stale
        // use by default, only what the answer itself allows with an explicit window.
        let defaults_allowed = self.s_maxage.is_none();
        let window = |own: Option<u64>, default: Duration| {
            let window = match own {
                Some(seconds) => Duration::from_secs(seconds),
                None if defaults_allowed => default,
                None => Duration::ZERO,
            };
            if self.must_revalidate { Duration::ZERO } else { window.saturating_sub(late) }
        };
        let lifetimes = Lifetimes {
            fresh: lifetime.saturating_sub(age),
            // `no-cache`: never used without revalidation, so never while revalidating.
            stale_while_revalidate: match self.no_cache {
                true => Duration::ZERO,
                false => window(self.stale_while_revalidate, settings.stale_while_revalidate),
            },
            stale_if_error: window(self.stale_if_error, settings.stale_if_error),
        };
        (lifetimes.total() > Duration::ZERO).then_some(lifetimes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn answer(pairs: &[(&str, &str)]) -> Directives {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        Directives::of(&headers)
    }

    fn settings(default_ttl: Option<u64>) -> CacheSettings {
        CacheSettings {
            max_bytes: 1 << 20,
            default_ttl: default_ttl.map(Duration::from_secs),
            stale_while_revalidate: Duration::from_secs(10),
            stale_if_error: Duration::from_secs(300),
            shared: false,
        }
    }

    #[test]
    fn directives_are_read_case_insensitively_over_several_lines() {
        let d = answer(&[
            ("cache-control", "Public, MAX-AGE=60, s-maxage=\"120\""),
            ("cache-control", "stale-while-revalidate=5,stale-if-error=600"),
            ("vary", "Accept-Language, accept-encoding"),
            ("age", "20"),
        ]);
        assert!(d.public && !d.private && !d.no_store);
        assert_eq!((d.max_age, d.s_maxage), (Some(60), Some(120)));
        assert_eq!((d.stale_while_revalidate, d.stale_if_error), (Some(5), Some(600)));
        assert_eq!(
            d.vary,
            [HeaderName::from_static("accept-language"), HeaderName::from_static("accept-encoding")]
        );
        assert_eq!(d.age, 20);
        // s-maxage wins for a shared cache; Age is already spent.
        assert_eq!(
            d.lifetimes(&settings(None)),
            Some(Lifetimes {
                fresh: Duration::from_secs(100),
                stale_while_revalidate: Duration::from_secs(5),
                stale_if_error: Duration::from_secs(600),
            })
        );
    }

    #[test]
    fn no_store_private_and_vary_star_are_never_stored() {
        for pairs in [
            &[("cache-control", "no-store, max-age=60")][..],
            &[("cache-control", "private, max-age=60")],
            &[("cache-control", "max-age=60"), ("vary", "*")],
        ] {
            assert_eq!(answer(pairs).lifetimes(&settings(Some(60))), None, "{pairs:?}");
        }
    }

    #[test]
    fn default_ttl_applies_only_when_the_backend_says_nothing_of_freshness() {
        assert_eq!(answer(&[]).lifetimes(&settings(None)), None, "default_ttl off: not stored");
        assert_eq!(answer(&[]).lifetimes(&settings(Some(30))).unwrap().fresh, Duration::from_secs(30));
        let public = answer(&[("cache-control", "public")]);
        assert_eq!(public.lifetimes(&settings(Some(30))).unwrap().fresh, Duration::from_secs(30));
        let zero = answer(&[("cache-control", "max-age=0")]).lifetimes(&settings(Some(30))).unwrap();
        assert_eq!(zero.fresh, Duration::ZERO, "the backend's own max-age=0 wins over default_ttl");
    }

    #[test]
    fn no_cache_is_never_fresh_and_must_revalidate_is_never_stale() {
        let no_cache =
            answer(&[("cache-control", "no-cache, max-age=60")]).lifetimes(&settings(None)).unwrap();
        assert_eq!(
            (no_cache.fresh, no_cache.stale_while_revalidate, no_cache.stale_if_error),
            (Duration::ZERO, Duration::ZERO, Duration::from_secs(300)),
            "no-cache: only when the backend fails"
        );
        let strict =
            answer(&[("cache-control", "max-age=60, must-revalidate")]).lifetimes(&settings(None)).unwrap();
        assert_eq!(strict.total(), Duration::from_secs(60));
        assert_eq!(
            answer(&[("cache-control", "no-cache, must-revalidate")]).lifetimes(&settings(None)),
            None
        );
    }

    #[test]
    fn s_maxage_allows_only_the_stale_windows_the_answer_gives() {
        let bare = answer(&[("cache-control", "s-maxage=60")]).lifetimes(&settings(None)).unwrap();
        assert_eq!(bare.total(), Duration::from_secs(60), "proxy-revalidate: no default windows");
        let own =
            answer(&[("cache-control", "s-maxage=1, stale-while-revalidate=59")]).lifetimes(&settings(None));
        assert_eq!(own.unwrap().stale_while_revalidate, Duration::from_secs(59));
    }

    #[test]
    fn an_answer_already_stale_on_arrival_has_its_windows_shortened() {
        let late = answer(&[("cache-control", "max-age=60, stale-if-error=100"), ("age", "90")]);
        let lifetimes = late.lifetimes(&settings(None)).unwrap();
        assert_eq!(
            (lifetimes.fresh, lifetimes.stale_while_revalidate, lifetimes.stale_if_error),
            (Duration::ZERO, Duration::ZERO, Duration::from_secs(70))
        );
    }

    #[test]
    fn huge_values_are_capped_not_overflowed() {
        let huge = answer(&[(
            "cache-control",
            "max-age=18446744073709551615, stale-while-revalidate=18446744073709551615",
        )]);
        let lifetimes = huge.lifetimes(&settings(None)).unwrap();
        assert_eq!(lifetimes.fresh, Duration::from_secs(1 << 31));
        assert!(lifetimes.total() >= lifetimes.fresh);
    }
}
