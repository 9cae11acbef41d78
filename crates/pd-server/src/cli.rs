//! The command line of the `pd-server` binary: `run` (the default), `check-config` and
//! `invite create`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat, Overrides};
use crate::store::Store;
use crate::{Server, registry};

/// A PD node: accounts, presence records and lookups for one domain.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML configuration file.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// The domain this node serves (overrides the file).
    #[arg(long, global = true)]
    domain: Option<String>,
    /// Address to listen on (overrides the file).
    #[arg(long, global = true)]
    listen: Option<SocketAddr>,
    /// Data directory (overrides the file).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// PEM certificate chain; serve HTTPS (with --tls-key).
    #[arg(long, global = true)]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, global = true)]
    tls_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node (the default).
    Run,
    /// Validate the configuration and exit.
    CheckConfig,
    /// Manage invite tokens.
    #[command(subcommand)]
    Invite(InviteCommand),
}

#[derive(Debug, Subcommand)]
enum InviteCommand {
    /// Create a single-use invite token and print it.
    Create {
        /// How long the invite stays valid.
        #[arg(long, default_value = "7d")]
        expires: humantime::Duration,
    },
}

/// Runs the command the command line names.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let overrides = Overrides {
        domain: cli.domain,
        listen: cli.listen,
        data_dir: cli.data_dir,
        tls_cert: cli.tls_cert,
        tls_key: cli.tls_key,
    };
    let config = Config::load(cli.config.as_deref(), overrides)?;
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => {
            eprintln!("configuration is valid (domain {})", config.domain);
            Ok(())
        }
        Command::Invite(InviteCommand::Create { expires }) => {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("failed to create {}", config.data_dir.display()))?;
            let store = Store::open(&config.db_path()).with_context(|| {
                format!("failed to open the store in {}", config.data_dir.display())
            })?;
            let token = registry::create_invite(&store, *expires).await?;
            store.close().await?;
            #[allow(clippy::print_stdout)]
            {
                println!("{token}");
            }
            Ok(())
        }
        Command::Run => {
            init_tracing(config.log_format);
            let server = Server::bind(config).await?;
            shutdown_signal().await;
            server.shutdown().await
        }
    }
}

/// Sets up logging to stderr in the configured format (`RUST_LOG` overrides the level).
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,pd_server=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Completes on Ctrl+C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
