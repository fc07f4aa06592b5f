//! Configuration: read the YAML file and `FANOUT__…` environment overrides ([`source`]), type
//! and check every key, collecting *all* errors with their key paths ([`validate`]), into
//! plain [`Settings`] that [`crate::plan::Plan`] compiles. Everything but [`source`] is pure.

mod error;
mod model;
mod source;
mod units;
mod validate;

pub use error::{ConfigError, ConfigErrors};
pub use model::{LogFormat, Merge};
pub use source::read;
pub use validate::{
    BackendConfig, CallConfig, EndpointConfig, ServerSettings, Settings, TelemetrySettings, validate,
};

use std::collections::HashMap;
use std::path::Path;

/// Reads and validates the config file at `path` with `env` as the process environment.
pub fn load(path: &Path, env: &HashMap<String, String>) -> Result<Settings, ConfigErrors> {
    validate(read(path, env)?)
}
