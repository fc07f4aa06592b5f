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
    // Handlers first: a SIGTERM that arrives right after the "listening" lines must still
    // stop the process cleanly (exit 0) rather than kill it.
    let shutdown = shutdown_signal().context("cannot listen for termination signals")?;
    let mut servers = Vec::with_capacity(demo.services.len());
    for (name, spec) in demo.services {
        let server = MockServer::spawn(spec).await.with_context(|| format!("service {name:?}"))?;
        println!("{name} listening on {}", server.url());
        servers.push(server);
    }
    shutdown.await;
    drop(servers);
    Ok(())
}

/// Installs SIGINT and SIGTERM handlers now; the future completes on either.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
