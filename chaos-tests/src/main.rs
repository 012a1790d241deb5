//! `chaos-tests`: runs a scenario, the whole matrix, or re-checks a history.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "relais chaos tests: run a scenario or the matrix, or re-check a history")]
struct Args {
    /// Re-checks a history (JSON lines) and prints the verdict.
    #[arg(long)]
    check: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(path) = args.check {
        let records = chaos_tests::history::read(&path)?;
        let verdict = chaos_tests::checker::check(&records);
        println!("{}", serde_json::to_string_pretty(&verdict)?);
        anyhow::ensure!(verdict.clean(), "{} finding(s)", verdict.findings.len());
    }
    Ok(())
}
