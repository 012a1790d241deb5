//! `relais-node`: parses its configuration and runs a node.

use clap::Parser;
use relais_node::config::{Args, NodeConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = NodeConfig::load(&args)?;
    relais_node::run(config).await
}
