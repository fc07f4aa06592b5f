//! Configuration: read the YAML file and `FANOUT__…` environment overrides ([`source`]), type
//! and check every key, collecting *all* errors with their key paths ([`validate`]), into
//! plain [`Settings`] that [`crate::plan::Plan`] compiles; [`diff`] names what a reload
//! changes. Everything but [`source`] is pure.

mod diff;
mod error;
mod model;
mod source;
mod units;
mod validate;

pub use diff::{Change, Version, changes, fnv1a};
pub use error::{ConfigError, ConfigErrors};
pub use model::{LogFormat, Merge};
pub use source::read;
pub use validate::{
    BackendConfig, CallConfig, CorsSettings, EndpointConfig, ServerSettings, Settings, TelemetrySettings,
    validate,
};

use std::collections::HashMap;
use std::path::Path;

/// A config as loaded: the tree as written (file and environment overrides, `${VAR}` not
/// filled) and the validated settings (with `${VAR}` filled).
#[derive(Debug)]
pub struct Loaded {
    /// The tree as written, kept to name what a reload changes.
    pub tree: serde_json::Value,
    /// Its version, computed before `${VAR}` is filled: `/readyz` shows it, so it must not
    /// let anyone guess a secret offline.
    pub version: Version,
    /// The validated settings.
    pub settings: Settings,
}

/// Reads and validates the config file at `path` with `env` as the process environment. Error
/// messages show values as written (`${USERS_API_KEY}`), never as filled in.
pub fn load(path: &Path, env: &HashMap<String, String>) -> Result<Loaded, ConfigErrors> {
    let read = read(path, env)?;
    let settings = validate(read.filled).map_err(|errors| read.redactions.apply(errors))?;
    Ok(Loaded { version: Version::of(&read.written), tree: read.written, settings })
}
