//! The `fanout` binary: parse the command line, load the config (exit 2 with every error on a
//! bad one), then check it or serve until SIGTERM / SIGINT and drain.

use anyhow::Context as _;
use clap::Parser;
use gateway::cli::{Cli, Command};
use gateway::config::{self, ConfigErrors};
use gateway::plan::Plan;
use gateway::server::{self, Listeners};
use gateway::telemetry;
use gateway::telemetry::metrics::Exporter;
use gateway::telemetry::otel::Tracing;
use gateway::telemetry::stall::StallDetector;
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
    // Before the runtime: the exporter's HTTP client must not live inside it.
    let tracing = Tracing::start(&plan.telemetry)?;
    telemetry::init(&plan.telemetry, tracing.as_ref());
    let served = run(plan);
    if let Some(tracing) = tracing {
        tracing.shutdown();
    }
    served
}

fn run(plan: Plan) -> anyhow::Result<()> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        // Registered before the first log line, so an early SIGTERM still drains and exits 0.
        let shutdown = shutdown_signal().context("installing signal handlers")?;
        let listeners = Listeners::bind(&plan).await?;
        let (public, admin) = listeners.addrs();
        tracing::info!(
            public = %public.map(|a| a.to_string()).unwrap_or_default(),
            admin = %admin.map(|a| a.to_string()).unwrap_or_default(),
            endpoints = plan.endpoints.len(),
            "listening"
        );
        let exporter = if plan.telemetry.metrics {
            Some(Exporter::install().context("installing the metrics recorder")?)
        } else {
            None
        };
        // After the recorder, so the detector's counter is a real one.
        let _detector =
            StallDetector::start(plan.telemetry.stall_warning).context("starting the stall detector")?;
        server::run(Arc::new(plan), listeners, exporter, shutdown).await;
        Ok(())
    })
}

/// Installs SIGTERM and SIGINT handlers now; the returned future resolves on either.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    })
}
