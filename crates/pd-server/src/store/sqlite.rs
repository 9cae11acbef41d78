//! The embedded store: SQLite in the node's data directory, the default backend.
//!
//! The database runs in WAL mode with `synchronous = FULL`, so a write is on disk when its
//! transaction commits, and every write method commits before it returns. Writes go to one
//! writer thread that commits those waiting together (`group_commit.rs`); reads run
//! on the blocking pool on connections of their own (a few, taken in turn, so reads that
//! miss the node's caches run side by side), never on the async threads, and never wait
//! for a write's `fsync` (WAL readers see the last commit).
//! Signed operations compare-and-set `last_seq` inside their transaction, so two
//! concurrent writes cannot both succeed with the same sequence number. Migrations are
//! counted by `PRAGMA user_version`.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use rusqlite::{Connection, MAIN_DB, OpenFlags, OptionalExtension, params};
use tokio::sync::Semaphore;

use super::group_commit::{self, Writer};
use super::{
    AccountDump, AccountRow, Change, Dump, InviteRow, MAX_KEPT_ROTATIONS, PresenceRow, SessionRow,
    StoreError, TrustListRow, UserCounts, key32, to_i64, to_u64,
};

/// Schema migrations; `PRAGMA user_version` counts how many have been applied.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE accounts (
        name        TEXT PRIMARY KEY NOT NULL,
        public_key  BLOB NOT NULL,
        last_seq    INTEGER NOT NULL,
        created_at  INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE presence (
        name        TEXT PRIMARY KEY NOT NULL
                    REFERENCES accounts(name) ON DELETE CASCADE,
        seq         INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        envelope    TEXT NOT NULL
    ) STRICT;
    CREATE INDEX presence_expires_at ON presence(expires_at);
    CREATE TABLE invites (
        token_hash  BLOB PRIMARY KEY NOT NULL,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        used_at     INTEGER
    ) STRICT;
"#,
    r#"
    CREATE TABLE trust_lists (
        url         TEXT PRIMARY KEY NOT NULL,
        body        BLOB NOT NULL,
        fetched_at  INTEGER NOT NULL
    ) STRICT;
"#,
    r#"
    CREATE TABLE rotations (
        name        TEXT NOT NULL
                    REFERENCES accounts(name) ON DELETE CASCADE,
        seq         INTEGER NOT NULL,
        proof       TEXT NOT NULL,
        PRIMARY KEY (name, seq)
    ) STRICT;
"#,
    r#"
    CREATE TABLE sessions (
        token_hash  BLOB PRIMARY KEY NOT NULL,
        name        TEXT NOT NULL
                    REFERENCES accounts(name) ON DELETE CASCADE,
        public_key  BLOB NOT NULL,
        expires_at  INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX sessions_name ON sessions(name);
    CREATE INDEX sessions_expires_at ON sessions(expires_at);
"#,
];

/// Read connections of a database file: reads that miss the node's in-memory caches
/// (lookups of accounts not cached, with many users) run side by side, on the blocking
/// pool, one per connection.
const READERS: usize = 4;

/// Handle to the SQLite database; cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The connections reads use (one for an in-memory database).
    readers: Arc<Readers>,
    /// The writer thread with its own connection; `None` for an in-memory database, whose
    /// one connection also takes the writes.
    writer: Option<Arc<Writer>>,
}

/// What an SQLite database file holds, looked at without changing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// There is no file.
    Missing,
    /// The file is empty or holds no table: a database that was never set up (or was
    /// truncated).
    Empty,
    /// The file holds a schema.
    Initialised,
}

/// Looks at the database file at `path` without creating or changing it.
pub fn file_state(path: &Path) -> Result<FileState, StoreError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileState::Missing),
        Err(e) => {
            return Err(StoreError::Unavailable(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
        Ok(meta) if meta.len() == 0 => return Ok(FileState::Empty),
        Ok(_) => {}
    }
    // Read through SQLite (not the file's bytes), so that tables still in the WAL count.
    let tables = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .and_then(|conn| {
        conn.query_row("SELECT COUNT(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })
    });
    Ok(match tables {
        Ok(0) => FileState::Empty,
        Ok(_) => FileState::Initialised,
        // A file that cannot even be read here (a read-only directory, say) is not known to
        // be empty: opening it for real reports what is wrong with it.
        Err(e) => {
            tracing::debug!(error = %e, path = %path.display(), "could not look into the database");
            FileState::Initialised
        }
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations. A file
    /// the node cannot write (owned by another user, or on a read-only file system) is
    /// refused with [`StoreError::ReadOnly`] rather than opened read-only, where every
    /// write would fail.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        if conn.is_readonly(MAIN_DB)? {
            return Err(StoreError::ReadOnly(path.to_owned()));
        }
        let opened = Self::init(conn, true).and_then(|mut store| {
            // Opened after the migrations, so they see the final schema.
            let mut readers = vec![store.take_first_reader()?];
            for _ in 1..READERS {
                let reader = Connection::open(path)?;
                configure(&reader, true)?;
                readers.push(reader);
            }
            store.readers = Arc::new(Readers::new(readers));
            let writer = Connection::open(path)?;
            configure(&writer, true)?;
            store.writer = Some(Arc::new(Writer::start(writer)?));
            Ok(store)
        });
        opened.map_err(|e| match e {
            // Switching to WAL or migrating writes to the file and the directory: a read-only
            // one fails here even when the file itself could be opened for writing.
            StoreError::Db(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ReadOnly =>
            {
                StoreError::ReadOnly(path.to_owned())
            }
            other => other,
        })
    }

    /// An in-memory database, for tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?, false)
    }

    fn init(mut conn: Connection, wal: bool) -> Result<Self, StoreError> {
        configure(&conn, wal)?;
        migrate(&mut conn)?;
        Ok(Self {
            readers: Arc::new(Readers::new(vec![conn])),
            writer: None,
        })
    }

    /// The one connection of a store just set up, taken out of it.
    fn take_first_reader(&self) -> Result<Connection, StoreError> {
        self.readers.conns[0]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or(StoreError::Closed)
    }

    /// Runs the write `f` in a transaction of its own or one it shares with other writes,
    /// and returns once that transaction has committed.
    async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        match &self.writer {
            Some(writer) => writer.write(f).await,
            None => self.with(move |c| group_commit::write_alone(c, f)).await,
        }
    }

    /// Runs `f` with a read connection on the blocking pool.
    async fn with<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        // A read waits here, not on a blocking thread, while every connection is in use:
        // many reads at once (lookups missing the cache) would otherwise each hold a thread
        // blocked on a connection's lock.
        let permit = Arc::clone(&self.readers.free)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut guard = readers.lock();
            let conn = guard.as_mut().ok_or(StoreError::Closed)?;
            f(conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| {
            c.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    /// Counts the accounts, and those with a presence record unexpired at `now_secs`
    /// (through the index on `expires_at`).
    pub async fn user_counts(&self, now_secs: u64) -> Result<UserCounts, StoreError> {
        self.with(move |c| {
            let registered: i64 = c.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))?;
            let online: i64 = c.query_row(
                "SELECT COUNT(*) FROM presence WHERE expires_at > ?1",
                params![to_i64(now_secs)],
                |r| r.get(0),
            )?;
            Ok(UserCounts {
                registered: to_u64(registered),
                online: to_u64(online),
            })
        })
        .await
    }

    /// Reads an account and its presence record.
    pub async fn account(&self, name: &str) -> Result<Option<AccountRow>, StoreError> {
        let name = name.to_owned();
        self.with(move |c| read_account(c, &name)).await
    }

    /// Creates an account. With `invite_hash`, the invite must be valid and is consumed in
    /// the same transaction.
    pub async fn create_account(
        &self,
        name: &str,
        public_key: [u8; 32],
        seq: u64,
        invite_hash: Option<[u8; 32]>,
        now_secs: u64,
    ) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write(move |tx| {
            if let Some(hash) = invite_hash {
                let used = tx.execute(
                    "UPDATE invites SET used_at = ?1
                     WHERE token_hash = ?2 AND used_at IS NULL AND expires_at > ?1",
                    params![to_i64(now_secs), &hash[..]],
                )?;
                if used != 1 {
                    return Err(StoreError::BadInvite);
                }
            }
            let inserted = tx.execute(
                "INSERT INTO accounts (name, public_key, last_seq, created_at)
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT(name) DO NOTHING",
                params![name, &public_key[..], to_i64(seq), to_i64(now_secs)],
            )?;
            if inserted != 1 {
                // Failing rolls the write's savepoint back, invite consumption included.
                return Err(StoreError::NameTaken);
            }
            Ok(())
        })
        .await
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
        let name = name.to_owned();
        self.write(move |tx| {
            let won = tx.execute(
                "UPDATE accounts SET last_seq = ?1
                 WHERE name = ?2 AND public_key = ?3 AND last_seq < ?1",
                params![to_i64(seq), name, &key[..]],
            )?;
            if won != 1 {
                let exists: bool = tx.query_row(
                    "SELECT EXISTS(SELECT 1 FROM accounts WHERE name = ?1)",
                    params![name],
                    |r| r.get(0),
                )?;
                return Err(if exists {
                    StoreError::Conflict
                } else {
                    StoreError::NoAccount
                });
            }
            match change {
                Change::Touch => {}
                Change::Login {
                    token_hash,
                    expires_at,
                } => {
                    tx.execute(
                        "INSERT INTO sessions (token_hash, name, public_key, expires_at)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![&token_hash[..], name, &key[..], to_i64(expires_at)],
                    )?;
                }
                Change::Publish(p) => {
                    tx.execute(
                        "INSERT INTO presence (name, seq, expires_at, envelope)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT(name) DO UPDATE SET
                           seq = excluded.seq, expires_at = excluded.expires_at,
                           envelope = excluded.envelope",
                        params![name, to_i64(p.seq), to_i64(p.expires_at), p.envelope],
                    )?;
                }
                Change::Withdraw => {
                    tx.execute("DELETE FROM presence WHERE name = ?1", params![name])?;
                }
                Change::Rotate { new_key, proof } => {
                    tx.execute(
                        "UPDATE accounts SET public_key = ?1 WHERE name = ?2",
                        params![&new_key[..], name],
                    )?;
                    tx.execute("DELETE FROM presence WHERE name = ?1", params![name])?;
                    tx.execute("DELETE FROM sessions WHERE name = ?1", params![name])?;
                    tx.execute(
                        "INSERT INTO rotations (name, seq, proof) VALUES (?1, ?2, ?3)",
                        params![name, to_i64(seq), proof],
                    )?;
                    tx.execute(
                        "DELETE FROM rotations WHERE name = ?1 AND seq NOT IN
                           (SELECT seq FROM rotations WHERE name = ?1
                            ORDER BY seq DESC LIMIT ?2)",
                        params![name, to_i64(MAX_KEPT_ROTATIONS as u64)],
                    )?;
                }
                Change::Delete => {
                    // Presence and rotation rows go with the account too (foreign key
                    // cascade); deleted explicitly so that a re-registered name starts a
                    // fresh chain whatever the database's foreign key setting.
                    tx.execute("DELETE FROM presence WHERE name = ?1", params![name])?;
                    tx.execute("DELETE FROM rotations WHERE name = ?1", params![name])?;
                    tx.execute("DELETE FROM sessions WHERE name = ?1", params![name])?;
                    tx.execute("DELETE FROM accounts WHERE name = ?1", params![name])?;
                }
            }
            Ok(())
        })
        .await
    }

    /// The session stored under `token_hash`, if any.
    pub async fn session(&self, token_hash: [u8; 32]) -> Result<Option<SessionRow>, StoreError> {
        self.with(move |c| {
            let row = c
                .query_row(
                    "SELECT name, public_key, expires_at FROM sessions WHERE token_hash = ?1",
                    params![&token_hash[..]],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Vec<u8>>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    },
                )
                .optional()?;
            row.map(|(name, key, expires_at)| {
                Ok(SessionRow {
                    token_hash,
                    public_key: key32(&key, "session key")?,
                    name,
                    expires_at: to_u64(expires_at),
                })
            })
            .transpose()
        })
        .await
    }

    /// Reads everything, for `pd-server migrate`.
    pub async fn export(&self) -> Result<Dump, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let dump = export(&tx)?;
            tx.commit()?;
            Ok(dump)
        })
        .await
    }

    /// Writes `dump` in one transaction into a store without accounts.
    pub async fn import(&self, dump: Dump) -> Result<(), StoreError> {
        self.write(move |tx| {
            let count: i64 = tx.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))?;
            if count > 0 {
                return Err(StoreError::NotEmpty(to_u64(count)));
            }
            import(tx, &dump)?;
            Ok(())
        })
        .await
    }

    /// Records a new invite token by its hash.
    pub async fn create_invite(
        &self,
        token_hash: [u8; 32],
        now_secs: u64,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO invites (token_hash, created_at, expires_at) VALUES (?1, ?2, ?3)",
                params![&token_hash[..], to_i64(now_secs), to_i64(expires_at)],
            )?;
            Ok(())
        })
        .await
    }

    /// The kept copy of the subscribed trust list at `url`: its body and when it was
    /// fetched (Unix seconds).
    pub async fn trust_list(&self, url: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        let url = url.to_owned();
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT body, fetched_at FROM trust_lists WHERE url = ?1",
                params![url],
                |r| Ok((r.get::<_, Vec<u8>>(0)?, to_u64(r.get::<_, i64>(1)?))),
            )
            .optional()?)
        })
        .await
    }

    /// Keeps `body` as the copy of the subscribed trust list at `url`.
    pub async fn save_trust_list(
        &self,
        url: &str,
        body: Vec<u8>,
        fetched_at: u64,
    ) -> Result<(), StoreError> {
        let url = url.to_owned();
        self.write(move |c| {
            c.execute(
                "INSERT INTO trust_lists (url, body, fetched_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (url) DO UPDATE SET body = excluded.body, fetched_at = excluded.fetched_at",
                params![url, body, to_i64(fetched_at)],
            )?;
            Ok(())
        })
        .await
    }

    /// Deletes presence records that expired at or before `now_secs`, and expired invites;
    /// returns the names whose presence record went.
    pub async fn purge_expired(&self, now_secs: u64) -> Result<Vec<String>, StoreError> {
        self.write(move |tx| {
            let names = tx
                .prepare("DELETE FROM presence WHERE expires_at <= ?1 RETURNING name")?
                .query_map(params![to_i64(now_secs)], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            tx.execute(
                "DELETE FROM invites WHERE expires_at <= ?1",
                params![to_i64(now_secs)],
            )?;
            tx.execute(
                "DELETE FROM sessions WHERE expires_at <= ?1",
                params![to_i64(now_secs)],
            )?;
            Ok(names)
        })
        .await
    }

    /// Closes the database (checkpointing the WAL). Later calls fail with
    /// [`StoreError::Closed`].
    pub async fn close(&self) -> Result<(), StoreError> {
        let readers = Arc::clone(&self.readers);
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            for reader in &readers.conns {
                let taken = reader.lock().unwrap_or_else(PoisonError::into_inner).take();
                if let Some(c) = taken {
                    c.close().map_err(|(_, e)| StoreError::Db(e))?;
                }
            }
            // The writer's connection closes last, so it is the one that checkpoints the
            // WAL into the database file.
            if let Some(c) = writer.map(|w| w.close()).transpose()?.flatten() {
                c.close().map_err(|(_, e)| StoreError::Db(e))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// The read connections, taken in turn; a read waits only when every one is in use.
#[derive(Debug)]
struct Readers {
    /// `None` once closed.
    conns: Box<[Mutex<Option<Connection>>]>,
    next: AtomicUsize,
    /// One permit per connection: reads beyond them wait asynchronously.
    free: Arc<Semaphore>,
}

impl Readers {
    fn new(conns: Vec<Connection>) -> Self {
        Self {
            free: Arc::new(Semaphore::new(conns.len())),
            conns: conns.into_iter().map(|c| Mutex::new(Some(c))).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// A free connection, or the next one in turn once it is free.
    fn lock(&self) -> MutexGuard<'_, Option<Connection>> {
        let n = self.conns.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            match self.conns[(first + i) % n].try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        self.conns[first]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The settings every connection to the database uses.
fn configure(conn: &Connection, wal: bool) -> Result<(), StoreError> {
    conn.busy_timeout(Duration::from_secs(5))?;
    if wal {
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if version > known {
        return Err(StoreError::TooNew(version));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(to_u64(version) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

fn export(tx: &rusqlite::Transaction<'_>) -> Result<Dump, StoreError> {
    let mut dump = Dump::default();
    let accounts = tx
        .prepare("SELECT name, public_key, last_seq, created_at FROM accounts ORDER BY name")?
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (name, key, last_seq, created_at) in accounts {
        let presence = tx
            .query_row(
                "SELECT seq, expires_at, envelope FROM presence WHERE name = ?1",
                params![name],
                |r| {
                    Ok(PresenceRow {
                        seq: to_u64(r.get(0)?),
                        expires_at: to_u64(r.get(1)?),
                        envelope: r.get(2)?,
                    })
                },
            )
            .optional()?;
        let rotations = tx
            .prepare("SELECT seq, proof FROM rotations WHERE name = ?1 ORDER BY seq")?
            .query_map(params![name], |r| {
                Ok((to_u64(r.get::<_, i64>(0)?), r.get::<_, String>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        dump.accounts.push(AccountDump {
            public_key: key32(&key, "account key")?,
            name,
            last_seq: to_u64(last_seq),
            created_at: to_u64(created_at),
            presence,
            rotations,
        });
    }
    let sessions = tx
        .prepare("SELECT token_hash, name, public_key, expires_at FROM sessions")?
        .query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (hash, name, key, expires_at) in sessions {
        dump.sessions.push(SessionRow {
            token_hash: key32(&hash, "session hash")?,
            name,
            public_key: key32(&key, "session key")?,
            expires_at: to_u64(expires_at),
        });
    }
    let invites = tx
        .prepare("SELECT token_hash, created_at, expires_at, used_at FROM invites")?
        .query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<i64>>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (hash, created_at, expires_at, used_at) in invites {
        dump.invites.push(InviteRow {
            token_hash: key32(&hash, "invite hash")?,
            created_at: to_u64(created_at),
            expires_at: to_u64(expires_at),
            used_at: used_at.map(to_u64),
        });
    }
    dump.trust_lists = tx
        .prepare("SELECT url, body, fetched_at FROM trust_lists ORDER BY url")?
        .query_map([], |r| {
            Ok(TrustListRow {
                url: r.get(0)?,
                body: r.get(1)?,
                fetched_at: to_u64(r.get(2)?),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(dump)
}

fn import(tx: &Connection, dump: &Dump) -> Result<(), StoreError> {
    for a in &dump.accounts {
        tx.execute(
            "INSERT INTO accounts (name, public_key, last_seq, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![
                a.name,
                &a.public_key[..],
                to_i64(a.last_seq),
                to_i64(a.created_at)
            ],
        )?;
        if let Some(p) = &a.presence {
            tx.execute(
                "INSERT INTO presence (name, seq, expires_at, envelope) VALUES (?1, ?2, ?3, ?4)",
                params![a.name, to_i64(p.seq), to_i64(p.expires_at), p.envelope],
            )?;
        }
        for (seq, proof) in &a.rotations {
            tx.execute(
                "INSERT INTO rotations (name, seq, proof) VALUES (?1, ?2, ?3)",
                params![a.name, to_i64(*seq), proof],
            )?;
        }
    }
    for s in &dump.sessions {
        tx.execute(
            "INSERT INTO sessions (token_hash, name, public_key, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![&s.token_hash[..], s.name, &s.public_key[..], to_i64(s.expires_at)],
        )?;
    }
    for i in &dump.invites {
        tx.execute(
            "INSERT INTO invites (token_hash, created_at, expires_at, used_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (token_hash) DO NOTHING",
            params![&i.token_hash[..], to_i64(i.created_at), to_i64(i.expires_at), i.used_at.map(to_i64)],
        )?;
    }
    for l in &dump.trust_lists {
        tx.execute(
            "INSERT INTO trust_lists (url, body, fetched_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (url) DO UPDATE SET body = excluded.body, fetched_at = excluded.fetched_at",
            params![l.url, l.body, to_i64(l.fetched_at)],
        )?;
    }
    Ok(())
}

fn read_account(c: &Connection, name: &str) -> Result<Option<AccountRow>, StoreError> {
    let row = c
        .prepare_cached(
            "SELECT a.public_key, a.last_seq, p.seq, p.expires_at, p.envelope
             FROM accounts a LEFT JOIN presence p ON p.name = a.name
             WHERE a.name = ?1",
        )?
        .query_row(params![name], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })
        .optional()?;
    let Some((key, last_seq, seq, expires_at, envelope)) = row else {
        return Ok(None);
    };
    let public_key = key32(&key, &format!("key of {name}"))?;
    let presence = match (seq, expires_at, envelope) {
        (Some(seq), Some(expires_at), Some(envelope)) => Some(PresenceRow {
            seq: to_u64(seq),
            expires_at: to_u64(expires_at),
            envelope,
        }),
        _ => None,
    };
    let mut rotations = c
        .prepare_cached("SELECT proof FROM rotations WHERE name = ?1 ORDER BY seq DESC LIMIT ?2")?
        .query_map(params![name, to_i64(MAX_KEPT_ROTATIONS as u64)], |r| {
            r.get::<_, String>(0)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rotations.reverse();
    Ok(Some(AccountRow {
        name: name.to_owned(),
        public_key,
        last_seq: to_u64(last_seq),
        presence,
        rotations,
    }))
}
