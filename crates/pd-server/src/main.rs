//! The `pd-server` binary: parses the command line and runs the command; errors end the
//! process with one `error: ...` line on stderr and exit status 1.

use clap::Parser as _;
use pd_server::cli::{Cli, run};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
