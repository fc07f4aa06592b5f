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
}

/// Reads and validates the config file at `path` with `env` as the process environment.
pub fn load(path: &Path, env: &HashMap<String, String>) -> Result<Loaded, ConfigErrors> {
    let tree = read(path, env)?;
    let settings = validate(tree.clone())?;
    Ok(Loaded { version: Version::of(&tree), tree, settings })
}
