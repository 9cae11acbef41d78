//! The `pd-server` binary: parses the command line and runs the command; errors end the
//! process with one `error: ...` line on stderr and exit status 1.

use clap::Parser as _;
use pd_server::cli::{Cli, run};

/// mimalloc instead of the C library's allocator: a lookup allocates a few dozen small
/// blocks (request head, header maps, extensions, the answer), and with glibc's `malloc`
/// those cost about a fifth of the node's own CPU time per lookup (`BENCHMARKS.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
