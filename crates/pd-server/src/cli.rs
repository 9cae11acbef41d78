//! The command line of the `pd-server` binary: `run` (the default), `check-config`,
//! `doctor`, `healthcheck`, `backup`, `invite create`, `trust explain|export|import`,
//! `server-key rotate|show`, `migrate` and `init`. The global settings can also come from the
//! environment (`PD_CONFIG`, `PD_DOMAIN`, `PD_LISTEN`, `PD_DATA_DIR`, `PD_STORE`,
//! `PD_TLS_CERT`, `PD_TLS_KEY`), as in a container; a flag wins over its variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::SystemTime;

use anyhow::{Context as _, anyhow};
use clap::{Parser, Subcommand, ValueEnum};
use pd_federation::config::StaticPeer;
use pd_federation::trust::{EntryKind, Trust, TrustConfig, TrustPolicy, lists, restore_archived};
use pd_proto::node_auth::server_key_id;
use pd_proto::{Host, SecretKey};

use crate::config::{Config, LogFormat, Overrides, RegistrationPolicy};
use crate::server_keys::{self, KeyRing, ServerKeys};
use crate::store::sqlite::{self, FileState};
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
enum ServerKeyCommand {
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
            pd_federation::guard::GuardedClient::new(&config.federation)
                .context("failed to build the outbound HTTP client")?;
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
        Command::Migrate {
            from,
            to,
            new_server_key,
        } => migrate(&config, &from, &to, new_server_key).await,
        Command::Init => init(&config).await,
        Command::Invite(InviteCommand::Create { expires }) => {
            let spec = config.store_spec();
            let store = Store::connect(&spec)
                .await
                .with_context(|| format!("failed to open the store {spec}"))?;
            let token = registry::create_invite(&store, *expires).await?;
            store.close().await?;
            if config.registration != RegistrationPolicy::Invite {
                eprintln!(
                    "warning: registration is {:?} on this node, so invites are {}: set \
                     registration = \"invite\" in the configuration for the token to matter",
                    config.registration.as_str(),
                    if config.registration == RegistrationPolicy::Open {
                        "not needed (anyone may register)"
                    } else {
                        "refused (nobody may register)"
                    }
                );
            }
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
                    () = hangup.recv() => match server.reload_trust().await {
                        Ok(diff) => {
                            tracing::info!("trust policy reloaded on SIGHUP: {}", diff.summary());
                        }
                        Err(e) => {
                            tracing::error!(error = %format!("{e:#}"), "SIGHUP: trust policy not reloaded");
                        }
                    },
                }
            }
            server.shutdown().await
        }
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
            let reload = config.server_key_reload;
            match &rotated.retired {
                Some(old) => eprintln!(
                    "retired {} (published until {}); running nodes publish the new key within \
                     {} and sign with it {} after the rotation",
                    old.key_id(),
                    format_secs(
                        old.retired_at
                            .saturating_add(config.federation.max_request_age.as_secs())
                    ),
                    humantime::format_duration(reload),
                    humantime::format_duration(KeyRing::switch_delay_for(reload)),
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

/// Runs `init`: creates the data directory, the store's schema and the server key where
/// they are missing, and says what it did.
async fn init(config: &Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("failed to create {}", config.data_dir.display()))?;
    let spec = config.store_spec();
    let before = match &spec {
        StoreSpec::Sqlite(path) => {
            let path = path.clone();
            Some(
                tokio::task::spawn_blocking(move || sqlite::file_state(&path))
                    .await
                    .context("the database check failed")??,
            )
        }
        StoreSpec::Postgres(_) => None,
    };
    let store = Store::connect(&spec)
        .await
        .with_context(|| format!("failed to open the store {spec}"))?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let had_key = server_keys::read_current(&config.data_dir)?.is_some();
    let keys = if store.is_shared() {
        server_keys::load_shared(
            &store,
            &config.data_dir,
            config.federation.max_request_age,
            now,
        )
        .await?
    } else {
        ServerKeys::load(&config.data_dir, config.federation.max_request_age, now)?
    };
    store.close().await?;
    let database = match before {
        Some(FileState::Initialised) => format!("{spec} was already set up; left as it is"),
        Some(FileState::Empty) => format!("set up the empty database {spec}"),
        Some(FileState::Missing) => format!("created the database {spec}"),
        None => format!("set up the schema of {spec} (existing data left as it is)"),
    };
    let key = if had_key && !spec.is_shared() {
        "kept the server key"
    } else {
        "the server key is"
    };
    eprintln!("{database}; {key} {}", keys.current_id());
    Ok(())
}

/// Runs `migrate`: copies everything from `from` into the empty store `to`, and the
/// domain's server key with it.
async fn migrate(
    config: &Config,
    from: &StoreSpec,
    to: &StoreSpec,
    new_server_key: bool,
) -> anyhow::Result<()> {
    if from == to {
        return Err(anyhow!("--from and --to name the same store"));
    }
    for (flag, spec) in [("--from", from), ("--to", to)] {
        if let StoreSpec::Sqlite(path) = spec
            && path.is_dir()
        {
            return Err(anyhow!(
                "{flag} {} is a directory; name the database file, e.g. {}",
                path.display(),
                path.join("pd.sqlite3").display()
            ));
        }
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
    let outcome = migrate_between(config, from, &source, to, &target, new_server_key).await;
    source.close().await?;
    target.close().await?;
    outcome
}

/// Where the domain's server key ends up after a migration.
enum KeyPlan {
    /// Store this key in the target (database row or `server.key` file).
    Carry(Box<SecretKey>),
    /// The target already holds this very key.
    AlreadyThere,
    /// No key is carried (`--new-server-key`): the target's own key, or a new one on the
    /// first start, becomes the domain's key.
    New,
}

async fn migrate_between(
    config: &Config,
    from: &StoreSpec,
    source: &Store,
    to: &StoreSpec,
    target: &Store,
    new_server_key: bool,
) -> anyhow::Result<()> {
    // Decided before anything is copied, so that a refusal leaves the target untouched.
    let plan = key_plan(config, from, source, to, target, new_server_key).await?;
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
    match plan {
        KeyPlan::Carry(key) => {
            let id = server_key_id(&key.public());
            match to {
                StoreSpec::Postgres(_) => {
                    let stored = target.shared_server_keys(key.to_text()).await?;
                    if stored.current.trim() != key.to_text().trim() {
                        return Err(anyhow!(
                            "{to} took another server key meanwhile; the domain's key {id} was \
                             not stored"
                        ));
                    }
                    eprintln!("stored the server key {id} in {to}");
                }
                StoreSpec::Sqlite(path) => {
                    let dir = sqlite_dir(path);
                    server_keys::install_current(&dir, &key)?;
                    eprintln!(
                        "wrote the server key {id} to {}",
                        dir.join(server_keys::CURRENT_KEY_FILE).display()
                    );
                }
            }
        }
        KeyPlan::AlreadyThere => eprintln!("{to} already holds the domain's server key"),
        KeyPlan::New => eprintln!(
            "note: no server key was carried over (--new-server-key): the domain's key \
             changes, and other nodes fetch the new one"
        ),
    }
    Ok(())
}

/// The directory an SQLite database file lives in (the node's data directory when the
/// file is its `pd.sqlite3`).
fn sqlite_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Finds the domain's server key for a migration from `from`, and checks that `to` can
/// take it.
async fn key_plan(
    config: &Config,
    from: &StoreSpec,
    source: &Store,
    to: &StoreSpec,
    target: &Store,
    new_server_key: bool,
) -> anyhow::Result<KeyPlan> {
    let (found, looked_in) = match from {
        StoreSpec::Postgres(_) => {
            let key = source
                .read_server_keys()
                .await
                .with_context(|| format!("failed to read the server key in {from}"))?
                .map(|k| {
                    SecretKey::from_text(k.current.trim())
                        .with_context(|| format!("the server key stored in {from} is malformed"))
                })
                .transpose()?;
            (key, from.to_string())
        }
        StoreSpec::Sqlite(path) => {
            let mut dirs = vec![sqlite_dir(path), config.data_dir.clone()];
            dirs.dedup_by(|a, b| same_dir(a, b));
            let mut keys: Vec<(PathBuf, SecretKey)> = Vec::new();
            for dir in &dirs {
                if let Some(key) = server_keys::read_current(dir)? {
                    keys.push((dir.clone(), key));
                }
            }
            if let [(a, ka), (b, kb)] = keys.as_slice()
                && ka.public() != kb.public()
            {
                return Err(anyhow!(
                    "{} and {} hold different server keys ({} and {}); name the node's data \
                     directory with --data-dir",
                    a.display(),
                    b.display(),
                    server_key_id(&ka.public()),
                    server_key_id(&kb.public())
                ));
            }
            let looked_in = dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(" and ");
            (keys.into_iter().next().map(|(_, k)| k), looked_in)
        }
    };
    let existing = match to {
        StoreSpec::Postgres(_) => target
            .read_server_keys()
            .await
            .with_context(|| format!("failed to read the server key in {to}"))?
            .map(|k| SecretKey::from_text(k.current.trim()))
            .transpose()
            .with_context(|| format!("the server key stored in {to} is malformed"))?,
        StoreSpec::Sqlite(path) => server_keys::read_current(&sqlite_dir(path))?,
    };
    let Some(key) = found else {
        if new_server_key {
            return Ok(KeyPlan::New);
        }
        return Err(anyhow!(
            "no server key found in {looked_in}: moving without it would change the domain's \
             identity towards other nodes. Name the node's data directory with --data-dir (or \
             --config), or pass --new-server-key to accept a new key"
        ));
    };
    match existing {
        None => Ok(KeyPlan::Carry(Box::new(key))),
        Some(other) if other.public() == key.public() => Ok(KeyPlan::AlreadyThere),
        Some(_) if new_server_key => Ok(KeyPlan::New),
        Some(other) => Err(anyhow!(
            "{to} already holds another server key ({}) than the domain's ({}); remove it \
             first, or pass --new-server-key to keep it as the domain's new key",
            server_key_id(&other.public()),
            server_key_id(&key.public())
        )),
    }
}

/// Whether two paths name the same directory.
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
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
