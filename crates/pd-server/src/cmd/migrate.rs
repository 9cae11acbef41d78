//! `pd-server migrate --from --to`: copies a store into another, empty one, and the
//! domain's server key with it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use pd_proto::SecretKey;
use pd_proto::node_auth::server_key_id;

use crate::config::Config;
use crate::server_keys;
use crate::store::{Store, StoreSpec};

/// Runs `migrate`: copies everything from `from` into the empty store `to`, and the
/// domain's server key with it.
pub(crate) async fn run(
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
