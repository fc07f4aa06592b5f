//! The `fanout` binary: parse the command line, load the config (exit 2 with every error on a
//! bad one), then check it, print its OpenAPI document, or serve it (reloading on SIGHUP and
//! file changes) until SIGTERM / SIGINT and drain.

use anyhow::Context as _;
use clap::Parser;
use gateway::cli::{CheckFormat, Cli, Command, Format};
use gateway::config::RuntimeMode;
use gateway::reload::{self, Candidate, Live};
use gateway::server::{self, Listeners};
use gateway::telemetry;
use gateway::telemetry::metrics::Exporter;
use gateway::telemetry::otel::Tracing;
use gateway::telemetry::stall::StallDetector;
use gateway::upkeep;
use gateway::{effective, openapi};
use state::Redis;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: HashMap<String, String> = std::env::vars().collect();
    let candidate = match reload::compile(&cli.config, &env) {
        Ok(candidate) => candidate,
        Err(errors) => {
            eprintln!("fanout: {} has {} error(s):", cli.config.display(), errors.0.len());
            for error in &errors.0 {
                eprintln!("  {error}");
            }
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Check { format: CheckFormat::Text } => {
            write_out(&format!("{}config OK\n", candidate.plan.describe()))
        }
        Command::Check { format: CheckFormat::Json } => {
            write_out(&format!("{:#}\n", effective::settings(&candidate.plan)))
        }
        Command::Openapi { format } => {
            let document = openapi::document(&candidate.plan);
            write_out(&match format {
                Format::Yaml => openapi::to_yaml(&document),
                Format::Json => format!("{document:#}\n"),
            })
        }
        Command::Serve => match serve(candidate, cli.config, env) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("fanout: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Writes `text` to standard output. A reader that stopped early (`| head`) is not an error;
/// any other failure to write is (exit 1), never a panic as `print!` would make it.
fn write_out(text: &str) -> ExitCode {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fanout: writing to standard output failed: {error}");
            ExitCode::FAILURE
        }
    }
}

fn serve(candidate: Candidate, path: PathBuf, env: HashMap<String, String>) -> anyhow::Result<()> {
    // Before the runtime: the exporter's HTTP client must not live inside it.
    let tracing = Tracing::start(&candidate.plan.telemetry)?;
    // Dropped last: writes the log lines still buffered, down to `stopped`.
    let _logs =
        telemetry::init(&candidate.plan.telemetry, tracing.as_ref()).context("starting the log writer")?;
    let served = run(candidate, path, env);
    if let Some(tracing) = tracing {
        tracing.shutdown();
    }
    served
}

fn run(candidate: Candidate, path: PathBuf, env: HashMap<String, String>) -> anyhow::Result<()> {
    // With `per_core`, the public port has threads of its own (server::run starts them); this
    // runtime keeps the admin port, signals and reloads.
    let mut builder = match candidate.plan.server.runtime {
        RuntimeMode::WorkStealing => tokio::runtime::Builder::new_multi_thread(),
        RuntimeMode::PerCore => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = builder.enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        // Registered before the first log line, so an early SIGTERM still drains and exits 0
        // and an early SIGHUP reloads instead of killing the process.
        let shutdown = shutdown_signal().context("installing signal handlers")?;
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?;
        let plan = &candidate.plan;
        let listeners = Listeners::bind(plan).await?;
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
        let poll = plan.server.config_poll;
        // Connects in the background: a Redis that is down at start only means local state.
        let redis = match &candidate.plan.state.redis {
            Some(settings) => Some(Arc::new(Redis::connect(settings)?)),
            None => None,
        };
        let live = Arc::new(Live::new(candidate, path, env, redis));
        let watcher = tokio::spawn(reload::watch(Arc::clone(&live), hangup, poll));
        let upkeep = tokio::spawn(upkeep::run(Arc::clone(&live)));
        server::run(live, listeners, exporter, shutdown).await;
        watcher.abort();
        upkeep.abort();
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
