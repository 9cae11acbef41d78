//! The command line of the `pd-server` binary: `run` (the default), `check-config`,
//! `doctor`, `healthcheck`, `backup`, `invite create`, `trust explain|export|import`,
//! `server-key rotate|show`, `migrate` and `init`. The global settings can also come from the
//! environment (`PD_CONFIG`, `PD_DOMAIN`, `PD_LISTEN`, `PD_DATA_DIR`, `PD_STORE`,
//! `PD_TLS_CERT`, `PD_TLS_KEY`), as in a container; a flag wins over its variable. This
//! module only parses and dispatches: each subcommand runs in its own module of `cmd`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use pd_federation::config::StaticPeer;
use pd_federation::trust::EntryKind;

use crate::cmd;
pub use crate::cmd::run::{init_tracing, shutdown_signal};
use crate::config::{Config, Overrides};
use crate::store::StoreSpec;

/// A PD node: accounts, presence records and lookups for one domain.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML configuration file.
    #[arg(long, global = true, env = "PD_CONFIG")]
    config: Option<PathBuf>,
    /// The domain this node serves (overrides the file).
    #[arg(long, global = true, env = "PD_DOMAIN")]
    domain: Option<String>,
    /// Address to listen on, IP:PORT (overrides the file).
    #[arg(long, global = true, env = "PD_LISTEN", value_name = "IP:PORT", value_parser = parse_listen)]
    listen: Option<SocketAddr>,
    /// Data directory (overrides the file).
    #[arg(long, global = true, env = "PD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Store: a postgres:// URL (shared by replicas) or an SQLite file (overrides the
    /// file; default: the embedded database in the data directory).
    #[arg(
        long,
        global = true,
        env = "PD_STORE",
        hide_env_values = true,
        value_name = "URL|PATH"
    )]
    store: Option<StoreSpec>,
    /// PEM certificate chain; serve HTTPS (with --tls-key).
    #[arg(long, global = true, env = "PD_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, global = true, env = "PD_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// A static route to another node, DOMAIN=URL (repeatable; added to federation.peers).
    #[arg(long = "peer", value_name = "DOMAIN=URL", global = true)]
    peers: Vec<StaticPeer>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node (the default).
    Run,
    /// Validate the configuration and exit.
    CheckConfig,
    /// Check that this node can federate with DOMAIN: resolve it exactly as a lookup would
    /// (trust policy, discovery, TLS, server keys, a signed request), printing each step
    /// with a hint for what fails. Exits non-zero when a step fails.
    Doctor {
        /// The domain to check (this node's own domain checks how others reach it).
        #[arg(value_name = "DOMAIN")]
        target: String,
        /// Print the report as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// GET the node's /healthz (on loopback, from the configured listen address and TLS)
    /// and exit 0 if it answers 2xx, 1 otherwise; prints the answer. For container health
    /// checks.
    Healthcheck {
        /// Ask this URL instead (its certificate is verified).
        #[arg(long, value_name = "URL")]
        url: Option<url::Url>,
        /// How long to wait for the answer.
        #[arg(long, default_value = "5s")]
        timeout: humantime::Duration,
    },
    /// Write a consistent copy of the data directory (database snapshot, server key and
    /// retired keys) into DIR, which must be new or empty; safe while the node runs.
    /// Restore by replacing the data directory with DIR while the node is stopped.
    Backup {
        /// Where to write the copy.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Manage invite tokens.
    #[command(subcommand)]
    Invite(InviteCommand),
    /// Inspect and convert the trust policy.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Manage the server key that signs node-to-node requests.
    #[command(subcommand)]
    ServerKey(ServerKeyCommand),
    /// Copy every account, presence record, rotation proof, session, invite and kept trust
    /// list from one store into another, empty one, in one transaction (stop the node
    /// first), and the domain's server key with them, so the domain keeps its identity
    /// towards other nodes. The key comes from the source database (PostgreSQL) or from
    /// the directory of the source file and the data directory (SQLite); it goes into the
    /// target database (PostgreSQL) or the directory of the target file (SQLite). Refuses
    /// when the key cannot be carried over, unless --new-server-key is given.
    Migrate {
        /// The store to copy from: an SQLite database file (`sqlite:PATH` or a path, e.g.
        /// /var/lib/pd/pd.sqlite3) or a postgres:// URL.
        #[arg(long, value_name = "URL|FILE")]
        from: StoreSpec,
        /// The store to copy into (created and migrated if needed; must hold no accounts).
        #[arg(long, value_name = "URL|FILE")]
        to: StoreSpec,
        /// Accept that the domain gets a new server key when its key is not found or the
        /// target already holds another one (other nodes then fetch the new key).
        #[arg(long)]
        new_server_key: bool,
    },
    /// Set up the data directory and the store on purpose: the database schema and the
    /// server key. Needed to start over with an empty database where the node's data
    /// directory still holds its server key (a node refuses to start there, so that a lost
    /// database is never silently replaced by an empty one); a first start in an empty
    /// data directory does this by itself.
    Init,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ServerKeyCommand {
    /// Generate a new server key and print its id. The old key is kept as retired and
    /// still published (for verification only) until the retirement time plus the
    /// federation's max_request_age. Running nodes (every replica) publish the new key
    /// within server_key_reload and sign with it two intervals and a second later.
    Rotate,
    /// Print the current server key's id and fingerprint, then each retired key still
    /// published with the time until which it is.
    Show,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TrustCommand {
    /// Print whether this node federates with DOMAIN, and the deciding entry. Subscribed
    /// lists are not fetched: the copies the node last fetched and kept in its data
    /// directory are considered (a list with no kept copy is named on stderr).
    Explain {
        /// The domain to decide about.
        #[arg(value_name = "DOMAIN")]
        target: String,
    },
    /// Print the configured entries of one kind as a list others can import.
    Export {
        /// Output format: plain text (one domain per line) or Mastodon's domain-block CSV.
        #[arg(long, value_enum, default_value_t = ListFormatArg::Text)]
        format: ListFormatArg,
        /// Which entries to export.
        #[arg(long, value_enum, default_value_t = KindArg::Deny)]
        kind: KindArg,
    },
    /// Read a list (plain text or Mastodon CSV) and print its entries as a [trust] TOML
    /// snippet to paste into the configuration.
    Import {
        /// The list file.
        file: PathBuf,
        /// Whether the entries are allow or deny entries.
        #[arg(long, value_enum, default_value_t = KindArg::Deny)]
        kind: KindArg,
    },
}

/// A list format on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ListFormatArg {
    /// One domain per line.
    Text,
    /// Mastodon's domain-block CSV.
    Csv,
}

/// An entry kind on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum KindArg {
    /// Allow entries.
    Allow,
    /// Deny entries.
    Deny,
}

impl From<KindArg> for EntryKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Allow => EntryKind::Allow,
            KindArg::Deny => EntryKind::Deny,
        }
    }
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
        store: cli.store,
        tls_cert: cli.tls_cert,
        tls_key: cli.tls_key,
        peers: cli.peers,
    };
    let config = Config::load(cli.config.as_deref(), overrides)?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => cmd::run::run(config).await,
        Command::CheckConfig => cmd::check_config::run(&config),
        Command::Doctor { target, json } => cmd::doctor::run(&config, &target, json).await,
        Command::Healthcheck { url, timeout } => {
            cmd::healthcheck::run(&config, url, *timeout).await
        }
        Command::Backup { dir } => cmd::backup::run(config, dir).await,
        Command::Invite(InviteCommand::Create { expires }) => {
            cmd::invite::create(&config, *expires).await
        }
        Command::Trust(command) => cmd::trust::run(&config, command).await,
        Command::ServerKey(command) => cmd::server_key::run(&config, command).await,
        Command::Migrate {
            from,
            to,
            new_server_key,
        } => cmd::migrate::run(&config, &from, &to, new_server_key).await,
        Command::Init => cmd::init::run(&config).await,
    }
}

/// `--listen`: an IP address and a port. A host name is refused with the address to write
/// instead, since a node listens on addresses, and a name may stand for several.
fn parse_listen(input: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = input.trim().parse() {
        return Ok(addr);
    }
    let port = input
        .rsplit_once(':')
        .map(|(host, port)| (host, port.parse::<u16>()));
    match port {
        Some((host, Ok(port))) if !host.is_empty() => {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            let suggestion = if name == "localhost" || name.ends_with(".localhost") {
                format!("127.0.0.1:{port}")
            } else {
                format!("0.0.0.0:{port} (every interface)")
            };
            Err(format!(
                "expected an IP address and a port, not a host name (e.g. {suggestion})"
            ))
        }
        _ => Err("expected an IP address and a port, e.g. 127.0.0.1:8080 or [::]:8080".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
