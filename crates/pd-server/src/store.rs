//! Durable storage of accounts, presence records, key-rotation proofs, invites and the last
//! good copy of each subscribed trust list in SQLite.
//!
//! The database runs in WAL mode with `synchronous = FULL`, so a write is on disk when its
//! transaction commits, and every write method commits before it returns. Blocking calls
//! run on the blocking pool with the one connection behind a mutex. Signed operations
//! compare-and-set `last_seq` inside their transaction, so two concurrent writes cannot
//! both succeed with the same sequence number.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

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
];

/// Most rotation proofs kept per account: the most recent ones, which lookups serve.
pub const MAX_KEPT_ROTATIONS: usize = pd_proto::rotation::MAX_ROTATION_PROOFS;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    /// The database file was written by a newer version of the node.
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

/// The change a signed operation makes after winning its compare-and-set.
#[derive(Debug, Clone)]
pub enum Change {
    /// Only `last_seq` moves (login).
    Touch,
    /// Store this presence record.
    Publish(PresenceRow),
    /// Drop the presence record.
    Withdraw,
    /// Replace the key, keep the proof of the rotation (dropping the oldest proofs beyond
    /// [`MAX_KEPT_ROTATIONS`]) and drop the presence record (it was signed by the old key).
    Rotate {
        /// The new account key.
        new_key: [u8; 32],
        /// The rotation proof's JSON, as lookups serve it.
        proof: String,
    },
    /// Delete the account, its presence record and its rotation proofs.
    Delete,
}

/// Handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    conn: Arc<Mutex<Option<Connection>>>,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        Self::init(conn, true)
    }

    /// An in-memory database, for tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?, false)
    }

    fn init(mut conn: Connection, wal: bool) -> Result<Self, StoreError> {
        conn.busy_timeout(Duration::from_secs(5))?;
        if wal {
            conn.pragma_update(None, "journal_mode", "WAL")?;
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(Some(conn))),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
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
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
                // Dropping the transaction rolls back the invite's consumption.
                return Err(StoreError::NameTaken);
            }
            tx.commit()?;
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
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
                    tx.execute("DELETE FROM accounts WHERE name = ?1", params![name])?;
                }
            }
            tx.commit()?;
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
        self.with(move |c| {
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
        self.with(move |c| {
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
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let names = tx
                .prepare("DELETE FROM presence WHERE expires_at <= ?1 RETURNING name")?
                .query_map(params![to_i64(now_secs)], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            tx.execute(
                "DELETE FROM invites WHERE expires_at <= ?1",
                params![to_i64(now_secs)],
            )?;
            tx.commit()?;
            Ok(names)
        })
        .await
    }

    /// Closes the database (checkpointing the WAL). Later calls fail with
    /// [`StoreError::Closed`].
    pub async fn close(&self) -> Result<(), StoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let taken = conn
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take();
            match taken {
                Some(c) => c.close().map_err(|(_, e)| StoreError::Db(e)),
                None => Ok(()),
            }
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
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

fn read_account(c: &Connection, name: &str) -> Result<Option<AccountRow>, StoreError> {
    let row = c
        .query_row(
            "SELECT a.public_key, a.last_seq, p.seq, p.expires_at, p.envelope
             FROM accounts a LEFT JOIN presence p ON p.name = a.name
             WHERE a.name = ?1",
            params![name],
            |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((key, last_seq, seq, expires_at, envelope)) = row else {
        return Ok(None);
    };
    let public_key = <[u8; 32]>::try_from(key.as_slice())
        .map_err(|_| StoreError::Corrupt(format!("key of {name} has {} bytes", key.len())))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    const K1: [u8; 32] = [1; 32];
    const K2: [u8; 32] = [2; 32];

    fn presence(seq: u64, expires_at: u64) -> PresenceRow {
        PresenceRow {
            seq,
            expires_at,
            envelope: format!("{{\"seq\":{seq}}}"),
        }
    }

    #[tokio::test]
    async fn accounts_are_created_once() {
        let s = Store::open_in_memory().unwrap();
        s.create_account("alice", K1, 10, None, 100).await.unwrap();
        let err = s.create_account("alice", K2, 20, None, 100).await;
        assert!(matches!(err, Err(StoreError::NameTaken)));
        let row = s.account("alice").await.unwrap().unwrap();
        assert_eq!(row.public_key, K1);
        assert_eq!(row.last_seq, 10);
        assert_eq!(row.presence, None);
        assert_eq!(s.account("bob").await.unwrap(), None);
    }

    #[tokio::test]
    async fn sequence_numbers_only_grow() {
        let s = Store::open_in_memory().unwrap();
        s.create_account("alice", K1, 10, None, 100).await.unwrap();
        s.apply("alice", K1, 11, Change::Publish(presence(11, 500)))
            .await
            .unwrap();
        for seq in [11, 5] {
            let err = s
                .apply("alice", K1, seq, Change::Publish(presence(seq, 600)))
                .await;
            assert!(matches!(err, Err(StoreError::Conflict)));
        }
        let err = s.apply("alice", K2, 20, Change::Touch).await;
        assert!(matches!(err, Err(StoreError::Conflict)), "wrong key");
        let err = s.apply("bob", K1, 20, Change::Touch).await;
        assert!(matches!(err, Err(StoreError::NoAccount)));
        let row = s.account("alice").await.unwrap().unwrap();
        assert_eq!(row.last_seq, 11);
        assert_eq!(row.presence, Some(presence(11, 500)));
    }

    #[tokio::test]
    async fn rotation_withdraw_and_delete() {
        let s = Store::open_in_memory().unwrap();
        s.create_account("alice", K1, 10, None, 100).await.unwrap();
        s.apply("alice", K1, 11, Change::Publish(presence(11, 500)))
            .await
            .unwrap();
        s.apply("alice", K1, 12, rotate(K2, 12)).await.unwrap();
        let row = s.account("alice").await.unwrap().unwrap();
        assert_eq!((row.public_key, row.last_seq, row.presence), (K2, 12, None));
        assert_eq!(row.rotations, vec![rotate_proof(12)]);
        s.apply("alice", K2, 13, Change::Publish(presence(13, 500)))
            .await
            .unwrap();
        s.apply("alice", K2, 14, Change::Withdraw).await.unwrap();
        assert_eq!(s.account("alice").await.unwrap().unwrap().presence, None);
        s.apply("alice", K2, 15, Change::Publish(presence(15, 500)))
            .await
            .unwrap();
        s.apply("alice", K2, 16, Change::Delete).await.unwrap();
        assert_eq!(s.account("alice").await.unwrap(), None);
        // The presence and rotation rows went with the account.
        s.create_account("alice", K1, 20, None, 100).await.unwrap();
        let row = s.account("alice").await.unwrap().unwrap();
        assert_eq!((row.presence, row.rotations), (None, Vec::new()));
        let left: i64 = s
            .with(|c| Ok(c.query_row("SELECT COUNT(*) FROM rotations", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(left, 0);
    }

    fn rotate_proof(seq: u64) -> String {
        format!("{{\"rotation\":{seq}}}")
    }

    fn rotate(new_key: [u8; 32], seq: u64) -> Change {
        Change::Rotate {
            new_key,
            proof: rotate_proof(seq),
        }
    }

    #[tokio::test]
    async fn only_the_latest_rotations_are_kept_oldest_first() {
        let s = Store::open_in_memory().unwrap();
        s.create_account("alice", [0; 32], 10, None, 100)
            .await
            .unwrap();
        let total = MAX_KEPT_ROTATIONS as u64 + 3;
        for i in 0..total {
            let (old, new) = ([i as u8; 32], [i as u8 + 1; 32]);
            s.apply("alice", old, 11 + i, rotate(new, 11 + i))
                .await
                .unwrap();
        }
        // A rotation that loses its compare-and-set keeps nothing.
        let lost = s.apply("alice", [0; 32], 1000, rotate(K2, 1000)).await;
        assert!(matches!(lost, Err(StoreError::Conflict)));
        let row = s.account("alice").await.unwrap().unwrap();
        let expected: Vec<String> = (total - MAX_KEPT_ROTATIONS as u64..total)
            .map(|i| rotate_proof(11 + i))
            .collect();
        assert_eq!(row.rotations, expected);
        let kept: i64 = s
            .with(|c| Ok(c.query_row("SELECT COUNT(*) FROM rotations", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(kept, MAX_KEPT_ROTATIONS as i64);
    }

    #[tokio::test]
    async fn invites_are_single_use_and_expire() {
        let s = Store::open_in_memory().unwrap();
        s.create_invite([7; 32], 100, 200).await.unwrap();
        s.create_invite([8; 32], 100, 150).await.unwrap();
        let bad = s.create_account("a", K1, 1, Some([9; 32]), 120).await;
        assert!(matches!(bad, Err(StoreError::BadInvite)));
        let expired = s.create_account("a", K1, 1, Some([8; 32]), 160).await;
        assert!(matches!(expired, Err(StoreError::BadInvite)));
        s.create_account("a", K1, 1, Some([7; 32]), 120)
            .await
            .unwrap();
        let reused = s.create_account("b", K1, 1, Some([7; 32]), 120).await;
        assert!(matches!(reused, Err(StoreError::BadInvite)));
    }

    #[tokio::test]
    async fn name_taken_does_not_consume_the_invite() {
        let s = Store::open_in_memory().unwrap();
        s.create_account("a", K1, 1, None, 100).await.unwrap();
        s.create_invite([7; 32], 100, 200).await.unwrap();
        let taken = s.create_account("a", K2, 1, Some([7; 32]), 120).await;
        assert!(matches!(taken, Err(StoreError::NameTaken)));
        s.create_account("b", K2, 1, Some([7; 32]), 120)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn purge_removes_only_expired_presence() {
        let s = Store::open_in_memory().unwrap();
        s.create_account("a", K1, 1, None, 100).await.unwrap();
        s.create_account("b", K1, 1, None, 100).await.unwrap();
        s.apply("a", K1, 2, Change::Publish(presence(2, 150)))
            .await
            .unwrap();
        s.apply("b", K1, 2, Change::Publish(presence(2, 250)))
            .await
            .unwrap();
        assert_eq!(s.purge_expired(200).await.unwrap(), vec!["a".to_owned()]);
        assert_eq!(s.account("a").await.unwrap().unwrap().presence, None);
        assert!(s.account("b").await.unwrap().unwrap().presence.is_some());
    }

    #[tokio::test]
    async fn data_survives_reopening_and_close_is_final() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let s = Store::open(&path).unwrap();
        s.create_account("a", K1, 1, None, 100).await.unwrap();
        s.close().await.unwrap();
        assert!(matches!(s.ping().await, Err(StoreError::Closed)));
        let s = Store::open(&path).unwrap();
        assert_eq!(s.account("a").await.unwrap().unwrap().last_seq, 1);
        let mode: String = s
            .with(|c| Ok(c.pragma_query_value(None, "journal_mode", |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }
}
