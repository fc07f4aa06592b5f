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
pub use source::{Filled, read, read_str};
pub use validate::{
    BackendConfig, CallConfig, CorsSettings, EndpointConfig, ServerSettings, Settings, TelemetrySettings,
    validate,
};

use std::collections::HashMap;
use std::path::Path;

/// A config as loaded: the effective tree (file, environment overrides, `${VAR}` filled) and
/// its validated settings.
#[derive(Debug)]
pub struct Loaded {
    /// The effective tree, kept to name what a reload changes.
    pub tree: serde_json::Value,
    /// Its version.
    pub version: Version,
    /// The validated settings.
    pub settings: Settings,
    /// The `${VAR}` values filled in, to hide in later errors.
    pub filled: Filled,
}

/// Reads and validates the config file at `path` with `env` as the process environment.
pub fn load(path: &Path, env: &HashMap<String, String>) -> Result<Loaded, ConfigErrors> {
    Loaded::new(read(path, env)?)
}

/// [`load`] for YAML text instead of a file (`origin` names it in errors).
pub fn load_str(yaml: &str, origin: &str, env: &HashMap<String, String>) -> Result<Loaded, ConfigErrors> {
    Loaded::new(read_str(yaml, origin, env)?)
}

impl Loaded {
    /// Validates an effective tree; the errors show no filled-in value.
    fn new((tree, filled): (serde_json::Value, Filled)) -> Result<Self, ConfigErrors> {
        let settings = validate(tree.clone()).map_err(|errors| filled.hide(errors))?;
        Ok(Loaded { version: Version::of(&tree), tree, settings, filled })
    }
}
