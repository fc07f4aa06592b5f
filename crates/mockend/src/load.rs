//! Reading and validating a [`DemoFile`] from YAML.

use std::path::Path;

use config::{Config, ConfigError, File, FileFormat, FileSourceFile, FileSourceString};

use crate::error::MockError;
use crate::route::Routes;
use crate::spec::DemoFile;

impl DemoFile {
    /// Reads the YAML file at `path` and validates it (see
    /// [`DemoFile::validate`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, MockError> {
        let path = path.as_ref();
        let source: File<FileSourceFile, FileFormat> = File::from(path).format(FileFormat::Yaml);
        let file = deserialize(source).map_err(|source| MockError::Load { path: path.to_owned(), source })?;
        file.validate()?;
        Ok(file)
    }

    /// Parses YAML text and validates it (see [`DemoFile::validate`]).
    pub fn parse(yaml: &str) -> Result<Self, MockError> {
        let source: File<FileSourceString, FileFormat> = File::from_str(yaml, FileFormat::Yaml);
        let file = deserialize(source).map_err(MockError::Parse)?;
        file.validate()?;
        Ok(file)
    }

    /// Checks that every service has a `listen` address and valid routes.
    pub fn validate(&self) -> Result<(), MockError> {
        for (name, service) in &self.services {
            if service.listen.is_none() {
                return Err(MockError::MissingListen { service: name.clone() });
            }
            Routes::compile(&service.routes)
                .map_err(|source| MockError::Service { service: name.clone(), source: Box::new(source) })?;
        }
        Ok(())
    }
}

fn deserialize<S>(source: S) -> Result<DemoFile, ConfigError>
where
    S: config::Source + Send + Sync + 'static,
{
    Config::builder().add_source(source).build()?.try_deserialize()
}
