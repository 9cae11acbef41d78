//! `pd-crash`: kill -9 durability of the real `pd-server` binary (see `pd_e2e::crash`).
//!
//! ```text
//! cargo build -p pd-server -p chat --bins && cargo run -p pd-e2e --bin pd-crash -- --kills 50
//! cargo run -p pd-e2e --bin pd-crash -- --kills 50 --postgres "$PD_TEST_POSTGRES_URL"
//! ```
//!
//! With `--postgres URL` (a server where the URL's user may create databases) each run
//! creates a fresh database next to the one the URL names and drops it afterwards. Exits 1
//! when an acknowledged write was lost.

use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use pd_e2e::crash::{Backend, CrashOptions};

/// Kill -9 durability harness for pd-server.
#[derive(Debug, Parser)]
struct Args {
    /// How many times to kill the node (one trial per kill).
    #[arg(long, default_value_t = 50)]
    kills: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Accounts per client.
    #[arg(long, default_value_t = 8)]
    accounts: usize,
    /// Longest load phase before a kill, e.g. 1500ms.
    #[arg(long, default_value = "1500ms", value_parser = humantime::parse_duration)]
    max_load: Duration,
    /// Seed of the random choices (default: from the clock, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Use PostgreSQL at this URL instead of the embedded SQLite store.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("pd-crash: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<bool> {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(pd_proto::now_micros);
    let work = tempfile::tempdir().context("failed to create a work directory")?;
    let database = match &args.postgres {
        Some(url) => Some(FreshDatabase::create(url, seed)?),
        None => None,
    };
    let backend = match &database {
        Some(db) => Backend::Postgres(db.url.clone()),
        None => Backend::Sqlite,
    };
    let options = CrashOptions {
        backend,
        kills: args.kills,
        clients: args.clients,
        accounts_per_client: args.accounts,
        max_load: args.max_load,
        seed,
    };
    eprintln!(
        "pd-crash: {} kills, {} clients x {} accounts, {} store, seed {seed}",
        options.kills,
        options.clients,
        options.accounts_per_client,
        if database.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
    );
    let report = pd_e2e::crash::run(&options, work.path())?;
    println!(
        "store={} trials={} acknowledged_writes={} refused_writes={} unanswered_committed={} unanswered_not_committed={} losses={} slowest_restart_ms={} elapsed_s={:.1} seed={seed}",
        if database.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        report.trials,
        report.acknowledged,
        report.refused,
        report.in_flight_committed,
        report.in_flight_lost,
        report.losses.len(),
        report.slowest_restart.as_millis(),
        report.elapsed.as_secs_f64(),
    );
    for loss in &report.losses {
        println!("LOST {loss}");
    }
    Ok(report.losses.is_empty() && report.refused == 0)
}

/// A database created for one run and dropped after it.
struct FreshDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl FreshDatabase {
    fn create(admin_url: &str, seed: u64) -> anyhow::Result<Self> {
        let name = format!("pd_crash_{seed}");
        psql(admin_url, &format!("CREATE DATABASE {name}"))?;
        let base = admin_url
            .rsplit_once('/')
            .map(|(base, _)| base)
            .context("the PostgreSQL URL names no database")?;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            url: format!("{base}/{name}"),
            name,
        })
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        if let Err(e) = psql(
            &self.admin_url,
            &format!("DROP DATABASE {} WITH (FORCE)", self.name),
        ) {
            eprintln!("pd-crash: {e:#}");
        }
    }
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let output = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .context("failed to run psql")?;
    if !output.status.success() {
        bail!(
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
