//! `pd-server backup DIR`: a consistent copy of the node's data directory, taken while the
//! node runs (or not).
//!
//! The database is in WAL mode, so copying `pd.sqlite3` alone can miss committed writes
//! still in `pd.sqlite3-wal`, and copying both while the node writes can tear them.
//! `VACUUM INTO` instead writes a consistent snapshot of the whole database into one new
//! file, through SQLite itself, from a read-only connection that waits for the node's write
//! lock instead of failing. The server key and the retired keys are copied beside it with
//! mode 0600. The result is a data directory: restoring is replacing the node's data
//! directory with it while the node is stopped.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use rusqlite::{Connection, OpenFlags};

use crate::config::Config;
use crate::server_keys::{CURRENT_KEY_FILE, RETIRED_DIR};
use crate::store::StoreSpec;

/// How long the snapshot waits for the node's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct Backup {
    /// The database snapshot.
    pub database: PathBuf,
    /// Its size in bytes.
    pub database_bytes: u64,
    /// Whether the server key was copied (a node that never started has none).
    pub server_key: bool,
    /// How many retired server keys were copied.
    pub retired_keys: usize,
}

/// Writes a backup of `config`'s data directory into `dest`, which must not exist yet or be
/// empty.
pub fn backup(config: &Config, dest: &Path) -> anyhow::Result<Backup> {
    let db = match config.store_spec() {
        StoreSpec::Sqlite(path) => path,
        StoreSpec::Postgres(_) => bail!(
            "this node's store is PostgreSQL, which holds the server key too: back the \
             database up with PostgreSQL's tools (pg_dump), see deploy/replicas.md"
        ),
    };
    if !db.exists() {
        bail!(
            "there is no database in {} (wrong --config or --data-dir?)",
            config.data_dir.display()
        );
    }
    prepare(dest)?;
    let database = dest.join(
        db.file_name()
            .context("the database path has no file name")?,
    );
    let connection = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("failed to open {}", db.display()))?;
    connection
        .busy_timeout(BUSY_TIMEOUT)
        .context("failed to set the busy timeout")?;
    let target = database
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", database.display()))?;
    connection
        .execute("VACUUM INTO ?1", [target])
        .with_context(|| format!("failed to write a snapshot of {} to {target}", db.display()))?;
    drop(connection);
    restrict(&database)?;
    let database_bytes = fs::metadata(&database)
        .with_context(|| format!("failed to read {}", database.display()))?
        .len();

    let key = config.data_dir.join(CURRENT_KEY_FILE);
    let server_key = key.exists();
    if server_key {
        copy_private(&key, &dest.join(CURRENT_KEY_FILE))?;
    }
    let mut retired_keys = 0;
    let retired = config.data_dir.join(RETIRED_DIR);
    if retired.is_dir() {
        let to = dest.join(RETIRED_DIR);
        create_private_dir(&to)?;
        for entry in fs::read_dir(&retired)
            .with_context(|| format!("failed to read {}", retired.display()))?
        {
            let entry = entry.with_context(|| format!("failed to read {}", retired.display()))?;
            if entry.path().extension().is_some_and(|e| e == "key") {
                copy_private(&entry.path(), &to.join(entry.file_name()))?;
                retired_keys += 1;
            }
        }
    }
    Ok(Backup {
        database,
        database_bytes,
        server_key,
        retired_keys,
    })
}

/// Creates `dest` (mode 0700), or accepts it when it is an empty directory.
fn prepare(dest: &Path) -> anyhow::Result<()> {
    if dest.exists() {
        let mut entries =
            fs::read_dir(dest).with_context(|| format!("{} is not a directory", dest.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty; back up into a new directory",
                dest.display()
            );
        }
        return Ok(());
    }
    create_private_dir(dest)
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("failed to restrict {}", dir.display()))?;
    }
    Ok(())
}

fn copy_private(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::copy(from, to)
        .with_context(|| format!("failed to copy {} to {}", from.display(), to.display()))?;
    restrict(to)
}

/// Mode 0600: the snapshot holds every account, the key files are secrets.
fn restrict(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("failed to restrict {}", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
