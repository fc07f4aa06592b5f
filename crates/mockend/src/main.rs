//! The `mockend` binary: serves every service of a demo YAML file until
//! SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use mockend::{DemoFile, MockServer};

/// Simulated JSON backends for the fanout demo.
#[derive(Debug, Parser)]
#[command(name = "mockend", version, about)]
struct Cli {
    /// YAML file describing the services to simulate.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let demo = match DemoFile::load(&cli.config) {
        Ok(demo) => demo,
        Err(err) => {
            eprintln!("mockend: {:#}", anyhow::Error::from(err));
            return ExitCode::from(2);
        }
    };
    match run(demo).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mockend: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Starts every service, then waits for a termination signal.
async fn run(demo: DemoFile) -> anyhow::Result<()> {
    let mut servers = Vec::with_capacity(demo.services.len());
    for (name, spec) in demo.services {
        let server = MockServer::spawn(spec).await.with_context(|| format!("service {name:?}"))?;
        println!("{name} listening on {}", server.url());
        servers.push(server);
    }
    shutdown_signal().await.context("cannot listen for termination signals")?;
    drop(servers);
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
#[cfg(unix)]
async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted,
        _ = terminate.recv() => Ok(()),
    }
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
async fn shutdown_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}
