//! The `fanout` binary: parse the command line, load the config (exit 2 with every error on a
//! bad one), then check it or serve until SIGTERM / SIGINT and drain.

use anyhow::Context as _;
use clap::Parser;
use gateway::cli::{Cli, Command};
use gateway::config::{self, ConfigErrors};
use gateway::plan::Plan;
use gateway::server::{self, Listeners};
use gateway::telemetry;
use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let plan = match load(&cli.config) {
        Ok(plan) => plan,
        Err(errors) => {
            eprintln!("fanout: {} has {} error(s):", cli.config.display(), errors.0.len());
            for error in &errors.0 {
                eprintln!("  {error}");
            }
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Check => {
            print!("{}", plan.describe());
            println!("config OK");
            ExitCode::SUCCESS
        }
        Command::Serve => match serve(plan) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("fanout: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn load(path: &Path) -> Result<Plan, ConfigErrors> {
    let env: HashMap<String, String> = std::env::vars().collect();
    Plan::build(config::load(path, &env)?)
}

fn serve(plan: Plan) -> anyhow::Result<()> {
    telemetry::init(&plan.telemetry);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let listeners = Listeners::bind(&plan).await?;
        let (public, admin) = listeners.addrs();
        tracing::info!(
            public = %public.map(|a| a.to_string()).unwrap_or_default(),
            admin = %admin.map(|a| a.to_string()).unwrap_or_default(),
            endpoints = plan.endpoints.len(),
            "listening"
        );
        server::run(Arc::new(plan), listeners, shutdown_signal()).await;
        Ok(())
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
