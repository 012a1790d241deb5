//! `relaisctl`: see `relais_ctl`.

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = relais_ctl::Args::parse();
    match relais_ctl::run(&args).await {
        Ok(out) => print!("{out}"),
        Err(e) => {
            eprintln!("relaisctl: {e}");
            std::process::exit(1);
        }
    }
}
