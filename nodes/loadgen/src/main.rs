//! `relais-loadgen`: parses the command line, runs the workload until its end or Ctrl-C, prints the
//! summary and optionally writes it as JSON.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use relais_loadgen::{Args, Summary};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // Warnings only by default, so that the progress bar and the live view stay readable; RUST_LOG
    // says otherwise.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .init();
    let stop = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // Without a signal handler the run simply goes to its end.
            std::future::pending::<()>().await;
        }
        eprintln!("stopping: hanging up waiting calls, logging informants out (Ctrl-C again to quit at once)");
        tokio::spawn(async {
            let _ = tokio::signal::ctrl_c().await;
            std::process::exit(130);
        });
    };
    let summary = match relais_loadgen::run_until(args.config(), stop).await {
        Ok(summary) => summary,
        Err(error) => {
            eprintln!("relais-loadgen: {error}");
            return ExitCode::FAILURE;
        }
    };
    print!("{summary}");
    if let Some(path) = &args.json
        && let Err(error) = write_json(&summary, path)
    {
        eprintln!("relais-loadgen: {error:#}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn write_json(summary: &Summary, path: &std::path::Path) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(summary).context("encoding the summary")?;
    std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
}
