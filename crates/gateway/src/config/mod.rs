//! Configuration: read the YAML file and `FANOUT__…` environment overrides ([`source`]), type
//! and check every key, collecting *all* errors with their key paths ([`validate`]), into
//! plain [`Settings`] that [`crate::plan::Plan`] compiles; [`diff`] names what a reload
//! changes; [`defaults`] holds every default. Everything but [`source`] is pure.

pub mod defaults;
mod diff;
mod error;
mod raw;
mod settings;
mod source;
mod units;
mod validate;

pub use diff::{Change, SERVER_KEYS_ON_RELOAD, Version, changes, fnv1a};
pub use error::{ConfigError, ConfigErrors};
pub use raw::{LogFormat, Merge, RuntimeMode};
pub use settings::{
    BackendConfig, CallConfig, CorsSettings, EndpointConfig, ServerSettings, Settings, StateSettings,
    TelemetrySettings,
};
pub use source::{Read, Redactions, read, read_str};
pub use validate::{shown_url, validate};

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
    /// How to hide the `${VAR}` values filled in, in later errors (those of building the plan).
    pub redactions: Redactions,
}

/// Reads and validates the config file at `path` with `env` as the process environment. Error
/// messages show values as written (`${USERS_API_KEY}`), never as filled in.
pub fn load(path: &Path, env: &HashMap<String, String>) -> Result<Loaded, ConfigErrors> {
    Loaded::new(read(path, env)?)
}

/// [`load`] for YAML text instead of a file (`origin` names it in errors).
pub fn load_str(yaml: &str, origin: &str, env: &HashMap<String, String>) -> Result<Loaded, ConfigErrors> {
    Loaded::new(read_str(yaml, origin, env)?)
}

impl Loaded {
    /// Validates a config as read; the errors show no filled-in value.
    fn new(read: Read) -> Result<Self, ConfigErrors> {
        let Read { written, filled, redactions } = read;
        let settings = validate(filled).map_err(|errors| redactions.apply(errors))?;
        Ok(Loaded { version: Version::of(&written), tree: written, settings, redactions })
    }
}
