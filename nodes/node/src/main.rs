//! `relais-node`: parses its configuration and runs a node.

use clap::Parser;
use relais_node::config::{Args, NodeConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = NodeConfig::load(&args)?;
    // ractor opens an INFO span for each actor's whole life, which the
    // subscriber keeps (about 350 bytes per idle informant): off by default.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,ractor=warn".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if config.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    relais_node::run(config).await
}
