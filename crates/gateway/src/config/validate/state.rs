//! Checking `state:`: where replicas share state (`state.redis`).

use super::{Checker, shown_url};
use crate::config::defaults;
use crate::config::error::ConfigErrors;
use crate::config::raw::{RawState, Text};
use crate::config::settings::StateSettings;
use state::RedisSettings;

/// `state:`.
pub(super) fn state_settings(raw: RawState, errors: &mut ConfigErrors) -> StateSettings {
    let mut c = Checker { errors, prefix: "state" };
    let redis = raw.redis.map(|redis| {
        let Text(url) = redis.url;
        if let Err(why) = RedisSettings::check_url(&url) {
            c.error("redis.url", format!("invalid Redis URL {:?}: {why}", shown_url(&url)));
        }
        RedisSettings {
            url,
            timeout: c.duration("redis.timeout", redis.timeout, defaults::REDIS_TIMEOUT),
            key_prefix: redis
                .key_prefix
                .map_or_else(|| defaults::REDIS_KEY_PREFIX.to_owned(), |Text(prefix)| prefix),
        }
    });
    StateSettings { redis }
}
