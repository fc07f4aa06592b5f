//! Config errors: each names the key path it is about and what is wrong, so `fanout check`
//! can print every mistake at once, e.g.
//! `endpoints[0].calls.orders.backend: unknown backend "order" (known: users, orders)`.

use std::fmt;

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key path, e.g. `endpoints[0].calls.user.timeout`; empty for the file as a whole.
    pub path: String,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

/// Every problem found in one configuration, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Records a problem at `path`.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError { path: path.into(), message: message.into() });
    }

    /// True when a problem was recorded at exactly `path`. A value with a problem of its own
    /// stands in with a placeholder, which checks that compare values must not read: each bad
    /// value is reported once, not again through every rule that uses it.
    pub fn reported(&self, path: &str) -> bool {
        self.0.iter().any(|error| error.path == path)
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was recorded, else the errors.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.is_empty() { Ok(value) } else { Err(self) }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
