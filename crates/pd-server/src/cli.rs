//! The command line of the `pd-server` binary: `run` (the default), `check-config`,
//! `doctor`, `healthcheck`, `backup`, `invite create`, `trust explain|export|import`,
//! `server-key rotate|show` and `migrate`. The global settings can also come from the
//! environment (`PD_CONFIG`, `PD_DOMAIN`, `PD_LISTEN`, `PD_DATA_DIR`, `PD_STORE`,
//! `PD_TLS_CERT`, `PD_TLS_KEY`), as in a container; a flag wins over its variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::SystemTime;

use anyhow::{Context as _, anyhow};
use clap::{Parser, Subcommand, ValueEnum};
use pd_federation::config::StaticPeer;
use pd_federation::trust::{EntryKind, Trust, TrustConfig, TrustPolicy, lists, restore_archived};
use pd_proto::Host;

use crate::config::{Config, LogFormat, Overrides};
use crate::server_keys::{self, ServerKeys};
use crate::store::{Store, StoreSpec};
use crate::{Server, backup, doctor, healthcheck, registry};

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
    /// Address to listen on (overrides the file).
    #[arg(long, global = true, env = "PD_LISTEN")]
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
    /// first). Moving into PostgreSQL also stores the data directory's server key there,
    /// so the domain keeps its key.
    Migrate {
        /// The store to copy from: an SQLite file (`sqlite:PATH` or a path) or a
        /// postgres:// URL.
        #[arg(long, value_name = "URL|PATH")]
        from: StoreSpec,
        /// The store to copy into (created and migrated if needed; must hold no accounts).
        #[arg(long, value_name = "URL|PATH")]
        to: StoreSpec,
    },
}

#[derive(Debug, Subcommand)]
enum ServerKeyCommand {
    /// Generate a new server key and print its id. The old key is kept as retired and
    /// still published (for verification only) until the retirement time plus the
    /// federation's max_request_age. A running node picks up the new key when restarted.
    Rotate,
    /// Print the current server key's id and fingerprint, then each retired key still
    /// published with the time until which it is.
    Show,
}

#[derive(Debug, Subcommand)]
enum TrustCommand {
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
enum ListFormatArg {
    /// One domain per line.
    Text,
    /// Mastodon's domain-block CSV.
    Csv,
}

/// An entry kind on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum KindArg {
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
        Command::CheckConfig => {
            let policy = TrustPolicy::new(config.domain.clone(), config.resolved_trust()?)
                .context("invalid trust policy")?;
            crate::federation::outbound(&config)?;
            for warning in policy.warnings() {
                eprintln!("warning: {warning}");
            }
            eprintln!("configuration is valid (domain {})", config.domain);
            Ok(())
        }
        Command::Doctor { target, json } => doctor(&config, &target, json).await,
        Command::Healthcheck { url, timeout } => {
            let (url, verify) = match url {
                Some(url) => (url, true),
                None => (healthcheck::default_url(&config)?, false),
            };
            let body = healthcheck::check(&url, verify, *timeout).await?;
            #[allow(clippy::print_stdout)]
            {
                println!("{}", body.trim_end());
            }
            Ok(())
        }
        Command::Backup { dir } => {
            let to = dir.clone();
            let written = tokio::task::spawn_blocking(move || backup::backup(&config, &to))
                .await
                .context("backup task failed")??;
            let mut parts = vec![format!("pd.sqlite3 ({} bytes)", written.database_bytes)];
            if written.server_key {
                parts.push("server.key".into());
            }
            if written.retired_keys > 0 {
                parts.push(format!("{} retired key(s)", written.retired_keys));
            }
            eprintln!("backed up to {}: {}", dir.display(), parts.join(", "));
            Ok(())
        }
        Command::Trust(command) => trust(&config, command).await,
        Command::ServerKey(command) => server_key(&config, command).await,
        Command::Migrate { from, to } => migrate(&config, &from, &to).await,
        Command::Invite(InviteCommand::Create { expires }) => {
            let spec = config.store_spec();
            let store = Store::connect(&spec)
                .await
                .with_context(|| format!("failed to open the store {spec}"))?;
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
            let shutdown = shutdown_signal();
            tokio::pin!(shutdown);
            let mut hangup = Hangup::new();
            loop {
                tokio::select! {
                    () = &mut shutdown => break,
                    () = hangup.recv() => {
                        if let Err(e) = server.reload_trust().await {
                            tracing::error!(error = %format!("{e:#}"), "SIGHUP: trust policy not reloaded");
                        }
                    }
                }
            }
            server.shutdown().await
        }
    }
}

/// `policy` with the copies of its subscribed lists kept in the node's store (when the
/// node has a store and the policy subscribes to any list).
async fn with_kept_lists(config: &Config, policy: TrustPolicy) -> anyhow::Result<TrustPolicy> {
    let spec = config.store_spec();
    let missing = matches!(&spec, StoreSpec::Sqlite(path) if !path.exists());
    if policy.local().subscriptions.is_empty() || missing {
        return Ok(policy);
    }
    let store = Store::connect(&spec)
        .await
        .with_context(|| format!("failed to open the store {spec}"))?;
    let trust = Trust::new(policy);
    restore_archived(&trust, &store).await;
    store.close().await.context("failed to close the store")?;
    Ok(trust.current().as_ref().clone())
}

/// Runs `doctor`: the report goes to stdout, as text or JSON; an error when a step failed.
#[allow(clippy::print_stdout)]
async fn doctor(config: &Config, target: &str, json: bool) -> anyhow::Result<()> {
    let host =
        Host::parse(target.trim()).map_err(|e| anyhow!("{target:?} is not a valid domain: {e}"))?;
    let policy = TrustPolicy::new(config.domain.clone(), config.resolved_trust()?)
        .context("invalid trust policy")?;
    let policy = with_kept_lists(config, policy).await?;
    let report = doctor::diagnose(config, policy, &host).await;
    if json {
        let text = serde_json::to_string_pretty(&report).context("failed to format the report")?;
        println!("{text}");
    } else {
        print!("{}", report.to_text());
    }
    match report.failures() {
        0 => Ok(()),
        n => Err(anyhow!(
            "{n} of {} checks failed for {host}",
            report.steps.len()
        )),
    }
}

/// Runs a `trust` subcommand; output goes to stdout.
#[allow(clippy::print_stdout)]
async fn trust(config: &Config, command: TrustCommand) -> anyhow::Result<()> {
    let now = SystemTime::now();
    match command {
        TrustCommand::Explain { target } => {
            let host = Host::parse(target.trim())
                .map_err(|e| anyhow!("{target:?} is not a valid domain: {e}"))?;
            let policy = TrustPolicy::new(config.domain.clone(), config.resolved_trust()?)
                .context("invalid trust policy")?;
            let policy = with_kept_lists(config, policy).await?;
            for sub in &policy.local().subscriptions {
                if !policy.subscribed().contains_key(&sub.url) {
                    eprintln!(
                        "note: subscribed list {} has no kept copy in {}; it is not considered",
                        sub.url,
                        config.data_dir.display()
                    );
                }
            }
            println!("{}", crate::admin::explain(&policy, &host, now).line);
        }
        TrustCommand::Export { format, kind } => {
            let policy = TrustPolicy::new(config.domain.clone(), config.resolved_trust()?)
                .context("invalid trust policy")?;
            let kind = EntryKind::from(kind);
            let entries = policy.effective(kind, now);
            match format {
                ListFormatArg::Text => print!("{}", lists::export_text(&entries)),
                ListFormatArg::Csv => print!("{}", lists::export_mastodon_csv(&entries, kind)),
            }
        }
        TrustCommand::Import { file, kind } => {
            let bytes = std::fs::read(&file)
                .with_context(|| format!("failed to read {}", file.display()))?;
            let mut parsed = lists::parse(&bytes)
                .with_context(|| format!("failed to parse {}", file.display()))?;
            let name = file.file_name().map_or_else(
                || file.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            lists::mark_imported(&mut parsed.entries, &name, now);
            for warning in &parsed.warnings {
                eprintln!("warning: line {}: {}", warning.line, warning.message);
            }
            let mut snippet = TrustConfig::default();
            match EntryKind::from(kind) {
                EntryKind::Allow => snippet.allow = parsed.entries,
                EntryKind::Deny => snippet.deny = parsed.entries,
            }
            // Nested under `trust`, so entries with metadata (arrays of tables) land in
            // `[[trust.deny]]` rather than at the top level when pasted.
            #[derive(serde::Serialize)]
            struct Snippet {
                trust: TrustConfig,
            }
            let text = toml::to_string(&Snippet { trust: snippet })
                .context("failed to format the entries")?;
            print!("{text}");
        }
    }
    Ok(())
}

/// Runs a `server-key` subcommand; output goes to stdout.
#[allow(clippy::print_stdout)]
async fn server_key(config: &Config, command: ServerKeyCommand) -> anyhow::Result<()> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let spec = config.store_spec();
    let shared = if spec.is_shared() {
        Some(
            Store::connect(&spec)
                .await
                .with_context(|| format!("failed to open the store {spec}"))?,
        )
    } else {
        None
    };
    let max_age = config.federation.max_request_age;
    match command {
        ServerKeyCommand::Rotate => {
            let rotated = match &shared {
                Some(store) => server_keys::rotate_shared(store, max_age, now).await?,
                None => server_keys::rotate(&config.data_dir, now).with_context(|| {
                    format!(
                        "failed to rotate the server key in {}",
                        config.data_dir.display()
                    )
                })?,
            };
            println!("{}", rotated.new_key_id);
            match &rotated.retired {
                Some(old) => eprintln!(
                    "retired {} (published until {}); restart the node to sign with the new key",
                    old.key_id(),
                    format_secs(
                        old.retired_at
                            .saturating_add(config.federation.max_request_age.as_secs())
                    ),
                ),
                None => eprintln!("there was no server key yet; created one"),
            }
        }
        ServerKeyCommand::Show => {
            let keys = match &shared {
                Some(store) => server_keys::inspect_shared(store, max_age, now).await?,
                None => ServerKeys::inspect(&config.data_dir, max_age, now)?,
            };
            let current = keys.current_public();
            println!("{} {}", keys.current_id(), current.fingerprint());
            for retired in keys.retired() {
                println!(
                    "retired {} {} valid until {}",
                    retired.key_id(),
                    retired.public_key.fingerprint(),
                    format_secs(keys.retired_valid_until(retired)),
                );
            }
        }
    }
    Ok(())
}

/// Runs `migrate`: copies everything from `from` into the empty store `to`.
async fn migrate(config: &Config, from: &StoreSpec, to: &StoreSpec) -> anyhow::Result<()> {
    if from == to {
        return Err(anyhow!("--from and --to name the same store"));
    }
    if let StoreSpec::Sqlite(path) = from
        && !path.exists()
    {
        return Err(anyhow!("{} does not exist", path.display()));
    }
    let source = Store::connect(from)
        .await
        .with_context(|| format!("failed to open {from}"))?;
    let target = Store::connect(to)
        .await
        .with_context(|| format!("failed to open {to}"))?;
    let dump = source
        .export()
        .await
        .with_context(|| format!("failed to read {from}"))?;
    let (accounts, sessions, invites, lists) = (
        dump.accounts.len(),
        dump.sessions.len(),
        dump.invites.len(),
        dump.trust_lists.len(),
    );
    let records = dump
        .accounts
        .iter()
        .filter(|a| a.presence.is_some())
        .count();
    target
        .import(dump)
        .await
        .with_context(|| format!("failed to write {to}"))?;
    eprintln!(
        "copied {accounts} accounts ({records} with a presence record), {sessions} sessions, \
         {invites} invites and {lists} kept trust lists from {from} to {to}"
    );
    if target.is_shared() {
        match server_keys::read_current(&config.data_dir)? {
            Some(key) => {
                let stored = target.shared_server_keys(key.to_text()).await?;
                if stored.current.trim() == key.to_text().trim() {
                    eprintln!(
                        "stored the server key of {} in the database",
                        config.data_dir.display()
                    );
                } else {
                    eprintln!("warning: the database already holds another server key; it stays");
                }
            }
            None => eprintln!(
                "note: no server key in {}; the first replica to start creates one",
                config.data_dir.display()
            ),
        }
    }
    source.close().await?;
    target.close().await?;
    Ok(())
}

/// Unix seconds as an RFC 3339 UTC time.
fn format_secs(secs: u64) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// SIGHUP, which reloads the trust policy (unix only).
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn new() -> Self {
        Self {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    /// Completes on the next SIGHUP (never, where there is none).
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = self.signal.as_mut() {
            signal.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// Sets up logging to stderr in the configured format (`RUST_LOG` overrides the level).
/// Text is coloured only when stderr is a terminal (and `NO_COLOR` is unset), so a journal
/// or a log file gets plain lines.
pub fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,pd_server=info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
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
