//! Durable storage of accounts, presence records, key-rotation proofs, sessions, invites,
//! the last good copy of each subscribed trust list and (when shared) the server key: one
//! interface, [`Store`], over two backends.
//!
//! - The embedded SQLite database ([`sqlite`]), the default: one node, data in its data
//!   directory.
//! - PostgreSQL ([`postgres`]), selected with `store = "postgres://…"`: several replicas of
//!   one domain share the database, and with it the server key.
//!
//! Both backends keep the same rules: every write method commits before it returns (so an
//! acknowledged write survives `kill -9`), and signed operations compare-and-set `last_seq`
//! inside their transaction in the database, so two concurrent writes, from one replica or
//! two, cannot both succeed with the same or a lower sequence number.

mod group_commit;
pub mod postgres;
pub mod sqlite;

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// Most rotation proofs kept per account: the most recent ones, which lookups serve.
pub const MAX_KEPT_ROTATIONS: usize = pd_proto::rotation::MAX_ROTATION_PROOFS;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The embedded database reported an error.
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    /// PostgreSQL reported an error about a statement.
    #[error("database error: {0}")]
    Postgres(String),
    /// The database cannot be reached (connection refused, lost or timed out). The HTTP
    /// edge answers 503 `unavailable`.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database was written by a newer version of the node.
    #[error("database schema version {0} is newer than this node understands")]
    TooNew(i64),
    /// The store has been closed.
    #[error("store is closed")]
    Closed,
    /// A blocking task failed.
    #[error("storage task failed: {0}")]
    Task(String),
    /// A stored value is malformed.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Registration: the name is already registered.
    #[error("name is already registered")]
    NameTaken,
    /// Registration: the invite token is unknown, used or expired.
    #[error("invite token is unknown, used or expired")]
    BadInvite,
    /// A signed operation on an account that does not exist (any more).
    #[error("no such account")]
    NoAccount,
    /// A signed operation lost the compare-and-set: the key changed or the sequence number
    /// is no longer above the stored one.
    #[error("account changed concurrently (sequence number or key)")]
    Conflict,
    /// An import into a store that already holds accounts.
    #[error("the target store already holds {0} accounts; migrate into an empty store")]
    NotEmpty(u64),
    /// The operation needs the shared (PostgreSQL) store.
    #[error("this operation needs the PostgreSQL store")]
    NotShared,
    /// The embedded database cannot be written: the file or its directory belongs to
    /// another user or lies on a read-only file system.
    #[error(
        "the database {} is read-only for this process (owned by another user, or on a \
         read-only file system); give the node's user write access to it and its directory",
        .0.display()
    )]
    ReadOnly(PathBuf),
}

impl StoreError {
    /// Whether the database cannot serve the operation for now (unreachable, read-only,
    /// full, failing or locked for too long) rather than refusing it: the HTTP edge answers
    /// 503 `unavailable` with `Retry-After`, never 500.
    pub fn is_unavailable(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            Self::Unavailable(_) | Self::Closed | Self::ReadOnly(_) => true,
            Self::Db(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                C::ReadOnly
                    | C::CannotOpen
                    | C::DiskFull
                    | C::SystemIoFailure
                    | C::DatabaseBusy
                    | C::DatabaseLocked
            ),
            _ => false,
        }
    }
}

/// How many users a store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserCounts {
    /// Accounts.
    pub registered: u64,
    /// Accounts with a presence record that has not expired.
    pub online: u64,
}

/// A stored presence record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceRow {
    /// Its sequence number.
    pub seq: u64,
    /// Unix seconds after which it must not be served.
    pub expires_at: u64,
    /// The signed envelope's JSON, exactly as stored.
    pub envelope: String,
}

/// A stored account with its presence record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    /// The name (local part of the address).
    pub name: String,
    /// The raw account key.
    pub public_key: [u8; 32],
    /// Highest sequence number accepted for the account.
    pub last_seq: u64,
    /// The presence record, if any (possibly expired).
    pub presence: Option<PresenceRow>,
    /// The kept rotation proofs (JSON, exactly as stored), oldest first.
    pub rotations: Vec<String>,
}

/// A stored lookup session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// SHA-256 of the bearer token (the token itself is never stored).
    pub token_hash: [u8; 32],
    /// The account's name.
    pub name: String,
    /// The key the user logged in with.
    pub public_key: [u8; 32],
    /// Unix seconds after which the session is over.
    pub expires_at: u64,
}

/// The change a signed operation makes after winning its compare-and-set.
#[derive(Debug, Clone)]
pub enum Change {
    /// Only `last_seq` moves.
    Touch,
    /// Open a lookup session (login): `last_seq` moves and the session is stored.
    Login {
        /// SHA-256 of the bearer token.
        token_hash: [u8; 32],
        /// Unix seconds after which the session is over.
        expires_at: u64,
    },
    /// Store this presence record.
    Publish(PresenceRow),
    /// Drop the presence record.
    Withdraw,
    /// Replace the key, keep the proof of the rotation (dropping the oldest proofs beyond
    /// [`MAX_KEPT_ROTATIONS`]), drop the presence record (it was signed by the old key) and
    /// end the account's sessions.
    Rotate {
        /// The new account key.
        new_key: [u8; 32],
        /// The rotation proof's JSON, as lookups serve it.
        proof: String,
    },
    /// Delete the account, its presence record, rotation proofs and sessions.
    Delete,
}

/// One account with everything stored about it, as `pd-server migrate` copies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountDump {
    /// The account row.
    pub name: String,
    /// The raw account key.
    pub public_key: [u8; 32],
    /// Highest sequence number accepted.
    pub last_seq: u64,
    /// When it was created (Unix seconds).
    pub created_at: u64,
    /// The presence record, if any.
    pub presence: Option<PresenceRow>,
    /// The kept rotation proofs with their sequence numbers, oldest first.
    pub rotations: Vec<(u64, String)>,
}

/// A stored invite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteRow {
    /// SHA-256 of the token.
    pub token_hash: [u8; 32],
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// Unix seconds, once used.
    pub used_at: Option<u64>,
}

/// A kept copy of a subscribed trust list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustListRow {
    /// The list's URL.
    pub url: String,
    /// Its body as fetched.
    pub body: Vec<u8>,
    /// When it was fetched (Unix seconds).
    pub fetched_at: u64,
}

/// Everything a store holds about the domain's users, for `pd-server migrate`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dump {
    /// Accounts with their presence records and rotation proofs.
    pub accounts: Vec<AccountDump>,
    /// Sessions.
    pub sessions: Vec<SessionRow>,
    /// Invites.
    pub invites: Vec<InviteRow>,
    /// Kept trust lists.
    pub trust_lists: Vec<TrustListRow>,
}

/// The server key as the shared store keeps it: the current secret key (text form) and
/// the retired public keys (text form) with their retirement times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedServerKeys {
    /// The current secret key, in `SecretKey::to_text` form.
    pub current: String,
    /// Retired keys: public key text and retirement time (Unix seconds).
    pub retired: Vec<(String, u64)>,
}

/// Where the data lives: `store` in the configuration, `--store` on the command line.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// The embedded SQLite database at this path.
    Sqlite(PathBuf),
    /// A PostgreSQL connection string (`postgres://user:password@host:port/database`).
    Postgres(String),
}

impl StoreSpec {
    /// Whether several replicas can share this store.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }
}

impl FromStr for StoreSpec {
    type Err = String;

    /// `postgres://…` or `postgresql://…` is PostgreSQL; `sqlite:PATH` or a plain path is
    /// an SQLite database file.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err("the store must be a postgres:// URL or an SQLite file path".into());
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            s.parse::<tokio_postgres::Config>()
                .map_err(|e| format!("invalid PostgreSQL connection string: {e}"))?;
            return Ok(Self::Postgres(s.to_owned()));
        }
        let path = s.strip_prefix("sqlite:").unwrap_or(s);
        if path.is_empty() {
            return Err("sqlite: needs a file path".into());
        }
        Ok(Self::Sqlite(PathBuf::from(path)))
    }
}

/// Shows the store without the password of a connection string.
impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Self::Postgres(url) => match url::Url::parse(url) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("***"));
                    }
                    write!(f, "{u}")
                }
                Err(_) => f.write_str("postgres://(unparsable)"),
            },
        }
    }
}

impl fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreSpec({self})")
    }
}

impl<'de> Deserialize<'de> for StoreSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// Handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// Longest one operation may take, waiting for a connection included.
    timeout: Duration,
}

/// Calls the same method on whichever backend the store has, within the store's deadline.
macro_rules! dispatch {
    ($self:ident, $method:ident($($arg:expr),*)) => {
        $self.bounded(async {
            match &$self.backend {
                Backend::Sqlite(s) => s.$method($($arg),*).await,
                Backend::Postgres(s) => s.$method($($arg),*).await,
            }
        })
        .await
    };
}

/// The deadline of one store operation unless the node configures another
/// (`limits.store_timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and applies migrations.
    /// Blocking: call it off the async threads (or use [`Store::connect`]).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Sqlite(sqlite::SqliteStore::open(path)?),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// An in-memory SQLite database, for tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Sqlite(sqlite::SqliteStore::open_in_memory()?),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Opens the store `spec` names and applies migrations (SQLite on the blocking pool;
    /// PostgreSQL under an advisory lock, so replicas starting together migrate once), with
    /// the default deadline per operation.
    pub async fn connect(spec: &StoreSpec) -> Result<Self, StoreError> {
        Self::connect_with_timeout(spec, DEFAULT_TIMEOUT).await
    }

    /// [`Store::connect`] with `timeout` as the longest one operation may take, waiting for
    /// a connection included; a slower one fails with [`StoreError::Unavailable`], so that
    /// a hung database is answered 503 `unavailable` long before the request deadline.
    /// PostgreSQL also gets it as its `statement_timeout`.
    pub async fn connect_with_timeout(
        spec: &StoreSpec,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let backend = match spec {
            StoreSpec::Sqlite(path) => {
                let path = path.clone();
                let store = tokio::task::spawn_blocking(move || {
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir).map_err(|e| {
                            StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
                        })?;
                    }
                    sqlite::SqliteStore::open(&path)
                })
                .await
                .map_err(|e| StoreError::Task(e.to_string()))??;
                Backend::Sqlite(store)
            }
            StoreSpec::Postgres(url) => {
                Backend::Postgres(postgres::PgStore::connect(url, timeout).await?)
            }
        };
        Ok(Self { backend, timeout })
    }

    /// Runs one operation within the store's deadline.
    async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!(
                "the database did not answer within {}",
                humantime::format_duration(self.timeout)
            ))),
        }
    }

    /// Whether several replicas may share this store (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, ping())
    }

    /// Counts the accounts, and those with a presence record unexpired at `now_secs`.
    pub async fn user_counts(&self, now_secs: u64) -> Result<UserCounts, StoreError> {
        dispatch!(self, user_counts(now_secs))
    }

    /// Reads an account, its presence record and its kept rotation proofs.
    pub async fn account(&self, name: &str) -> Result<Option<AccountRow>, StoreError> {
        dispatch!(self, account(name))
    }

    /// Creates an account. With `invite_hash`, the invite must be valid and is consumed in
    /// the same transaction. Of concurrent registrations of one name exactly one succeeds;
    /// the others get [`StoreError::NameTaken`] and consume no invite.
    pub async fn create_account(
        &self,
        name: &str,
        public_key: [u8; 32],
        seq: u64,
        invite_hash: Option<[u8; 32]>,
        now_secs: u64,
    ) -> Result<(), StoreError> {
        dispatch!(
            self,
            create_account(name, public_key, seq, invite_hash, now_secs)
        )
    }

    /// Applies a signed operation: in one transaction, moves `last_seq` to `seq` if the
    /// account still has `key` and a lower `last_seq`, then makes `change`.
    pub async fn apply(
        &self,
        name: &str,
        key: [u8; 32],
        seq: u64,
        change: Change,
    ) -> Result<(), StoreError> {
        dispatch!(self, apply(name, key, seq, change))
    }

    /// The session stored under `token_hash`, if any (possibly expired).
    pub async fn session(&self, token_hash: [u8; 32]) -> Result<Option<SessionRow>, StoreError> {
        dispatch!(self, session(token_hash))
    }

    /// Records a new invite token by its hash.
    pub async fn create_invite(
        &self,
        token_hash: [u8; 32],
        now_secs: u64,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        dispatch!(self, create_invite(token_hash, now_secs, expires_at))
    }

    /// The kept copy of the subscribed trust list at `url`: its body and when it was
    /// fetched (Unix seconds).
    pub async fn trust_list(&self, url: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        dispatch!(self, trust_list(url))
    }

    /// Keeps `body` as the copy of the subscribed trust list at `url`.
    pub async fn save_trust_list(
        &self,
        url: &str,
        body: Vec<u8>,
        fetched_at: u64,
    ) -> Result<(), StoreError> {
        dispatch!(self, save_trust_list(url, body, fetched_at))
    }

    /// Deletes presence records that expired at or before `now_secs`, expired sessions and
    /// expired invites; returns the names whose presence record went.
    pub async fn purge_expired(&self, now_secs: u64) -> Result<Vec<String>, StoreError> {
        dispatch!(self, purge_expired(now_secs))
    }

    /// Reads everything about the domain's users, for `pd-server migrate`. A bulk
    /// operation off the request path: not bounded by the per-operation deadline, which
    /// a large domain's copy would exceed (nor, on PostgreSQL, by `statement_timeout`).
    pub async fn export(&self) -> Result<Dump, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.export().await,
            Backend::Postgres(s) => s.export().await,
        }
    }

    /// Writes `dump` in one transaction; refuses a store that already holds accounts. Not
    /// bounded by the per-operation deadline, as [`Store::export`].
    pub async fn import(&self, dump: Dump) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.import(dump).await,
            Backend::Postgres(s) => s.import(dump).await,
        }
    }

    /// The server key shared by the replicas: the stored one, or `candidate` (a secret key
    /// in text form) if none is stored yet, whichever replica stores first winning.
    /// [`StoreError::NotShared`] on the embedded store, whose key is a file.
    pub async fn shared_server_keys(
        &self,
        candidate: String,
    ) -> Result<SharedServerKeys, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Err(StoreError::NotShared),
            Backend::Postgres(s) => self.bounded(s.shared_server_keys(candidate)).await,
        }
    }

    /// The shared server keys, without creating any.
    pub async fn read_server_keys(&self) -> Result<Option<SharedServerKeys>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Err(StoreError::NotShared),
            Backend::Postgres(s) => self.bounded(s.read_server_keys()).await,
        }
    }

    /// Replaces the shared current server key with `new` (text form), keeping the old one
    /// as retired at `now_secs`, and deletes retired keys retired before `forget_before`.
    /// Returns the old key's secret text, if there was one.
    pub async fn rotate_server_key(
        &self,
        new: String,
        now_secs: u64,
        forget_before: u64,
    ) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Err(StoreError::NotShared),
            Backend::Postgres(s) => {
                self.bounded(s.rotate_server_key(new, now_secs, forget_before))
                    .await
            }
        }
    }

    /// Closes the database (SQLite checkpoints its WAL; PostgreSQL closes the pool). Later
    /// calls fail with [`StoreError::Closed`].
    pub async fn close(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.close().await,
            Backend::Postgres(s) => {
                s.close();
                Ok(())
            }
        }
    }
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn key32(bytes: &[u8], what: &str) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes)
        .map_err(|_| StoreError::Corrupt(format!("{what} has {} bytes", bytes.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_that_cannot_write_is_unavailable_not_an_internal_error() {
        let sqlite = |code| {
            StoreError::Db(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        for code in [
            rusqlite::ffi::SQLITE_READONLY,
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_IOERR,
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_CANTOPEN,
        ] {
            assert!(sqlite(code).is_unavailable(), "{code}");
        }
        assert!(StoreError::ReadOnly(PathBuf::from("pd.sqlite3")).is_unavailable());
        assert!(!sqlite(rusqlite::ffi::SQLITE_CONSTRAINT).is_unavailable());
        assert!(!StoreError::Corrupt("x".into()).is_unavailable());
    }

    #[test]
    fn specs_parse_and_hide_passwords() {
        let pg: StoreSpec = "postgres://pd:secret@db.internal:5432/pd".parse().unwrap();
        assert!(pg.is_shared());
        assert_eq!(pg.to_string(), "postgres://pd:***@db.internal:5432/pd");
        assert!(!format!("{pg:?}").contains("secret"));
        assert_eq!(
            "sqlite:/var/lib/pd/pd.sqlite3"
                .parse::<StoreSpec>()
                .unwrap(),
            StoreSpec::Sqlite("/var/lib/pd/pd.sqlite3".into())
        );
        assert_eq!(
            "pd.sqlite3".parse::<StoreSpec>().unwrap(),
            StoreSpec::Sqlite("pd.sqlite3".into())
        );
        assert!("".parse::<StoreSpec>().is_err());
        assert!("sqlite:".parse::<StoreSpec>().is_err());
    }
}
