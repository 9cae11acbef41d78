//! The `chat` binary: parses the command line, runs the command and turns an error into one
//! `error: ...` line on stderr and the documented exit code.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;

fn main() -> ExitCode {
    // Before anything opens a file, which could take the number of a closed stdin.
    chat::console::detect_stdin();
    let cli = match chat::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let (stdout, message, code) = chat::clap_outcome(&err);
            match stdout {
                Some(text) => print!("{text}"),
                None => eprintln!("error: {message}"),
            }
            return ExitCode::from(code);
        }
    };
    init_tracing();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let (message, code) = match err.downcast_ref::<chat::ChatError>() {
                Some(chat_error) => chat_error.report(),
                None => (format!("{err:#}"), chat::error::EXIT_OTHER),
            };
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

fn run(cli: chat::Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    // Not locked for the whole run: the line editor's terminal library writes to stdout
    // from its own thread (its cursor-position query).
    let mut stdout = std::io::stdout();
    let outcome = runtime.block_on(chat::main_with(cli, &mut stdout));
    // A blocking task still running (a DNS lookup that hangs) must not hold the exit up.
    runtime.shutdown_timeout(Duration::from_millis(500));
    outcome?;
    Ok(())
}

/// Logs go to stderr, off unless `CHAT_LOG` (an env-filter directive) asks for them.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CHAT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
