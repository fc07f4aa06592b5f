//! The command line: `fanout [serve] --config FILE`, `fanout check --config FILE
//! [--format text|json]`, `fanout openapi --config FILE [--format yaml|json]`.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// fanout: an API fan-out aggregation gateway.
#[derive(Debug, Parser)]
#[command(name = "fanout", version, about)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The YAML config file.
    #[arg(long, short, global = true, default_value = "fanout.yaml")]
    pub config: PathBuf,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the configured endpoints (the default).
    Serve,
    /// Validate the config and print the compiled plan; exit 2 with every error on bad config.
    Check {
        /// `text`: the plan, for people; `json`: the effective settings (defaults and
        /// `FANOUT__…` overrides applied, durations in ms, sizes in bytes, secrets hidden).
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
    /// Print the OpenAPI 3.1 document of the configured endpoints.
    Openapi {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Yaml)]
        format: Format,
    },
}

/// What `fanout check` prints.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CheckFormat {
    /// The compiled plan, then `config OK`.
    Text,
    /// The effective settings as JSON.
    Json,
}

/// A document format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}
