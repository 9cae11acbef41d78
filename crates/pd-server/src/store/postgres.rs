//! The shared store: PostgreSQL, for a domain served by several `pd-server` replicas.
//!
//! Connections come from a `deadpool-postgres` pool over `tokio-postgres` (plain TCP or a
//! Unix socket, without TLS: run the database on a private network, loopback or a socket).
//! Every write is one transaction that commits before the method returns; with
//! PostgreSQL's default `synchronous_commit = on` the commit is on disk then. Signed
//! operations compare-and-set `last_seq` with one `UPDATE … WHERE last_seq < $seq`: a
//! concurrent writer of the same account waits for the row lock and re-checks the
//! condition against the committed row, so of two replicas writing at once only a higher
//! sequence number can win. A registration is `INSERT … ON CONFLICT DO NOTHING`, so of
//! concurrent registrations of one name exactly one inserts.
//!
//! Migrations run in one transaction holding a transaction-scoped advisory lock: replicas
//! starting together take turns, the first applies them, the others find them applied.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::{
    AccountDump, AccountRow, Change, Dump, InviteRow, MAX_KEPT_ROTATIONS, PresenceRow, SessionRow,
    SharedServerKeys, StoreError, TrustListRow, UserCounts, key32, to_i64, to_u64,
};

/// The advisory lock key migrations hold ("pd-migr" in ASCII).
const MIGRATION_LOCK: i64 = 0x0070_642d_6d69_6772;

/// Most connections one replica opens.
const POOL_SIZE: usize = 16;

/// Longest the migrations at start may take (they wait for other replicas' migrations).
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Schema migrations; the table `pd_schema` holds how many have been applied.
const MIGRATIONS: &[&str] = &[r#"
    CREATE TABLE accounts (
        name        TEXT PRIMARY KEY,
        public_key  BYTEA NOT NULL,
        last_seq    BIGINT NOT NULL,
        created_at  BIGINT NOT NULL
    );
    CREATE TABLE presence (
        name        TEXT PRIMARY KEY REFERENCES accounts(name) ON DELETE CASCADE,
        seq         BIGINT NOT NULL,
        expires_at  BIGINT NOT NULL,
        envelope    TEXT NOT NULL
    );
    CREATE INDEX presence_expires_at ON presence(expires_at);
    CREATE TABLE rotations (
        name        TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
        seq         BIGINT NOT NULL,
        proof       TEXT NOT NULL,
        PRIMARY KEY (name, seq)
    );
    CREATE TABLE sessions (
        token_hash  BYTEA PRIMARY KEY,
        name        TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
        public_key  BYTEA NOT NULL,
        expires_at  BIGINT NOT NULL
    );
    CREATE INDEX sessions_name ON sessions(name);
    CREATE INDEX sessions_expires_at ON sessions(expires_at);
    CREATE TABLE invites (
        token_hash  BYTEA PRIMARY KEY,
        created_at  BIGINT NOT NULL,
        expires_at  BIGINT NOT NULL,
        used_at     BIGINT
    );
    CREATE TABLE trust_lists (
        url         TEXT PRIMARY KEY,
        body        BYTEA NOT NULL,
        fetched_at  BIGINT NOT NULL
    );
    CREATE TABLE server_key (
        id          SMALLINT PRIMARY KEY CHECK (id = 1),
        secret      TEXT NOT NULL
    );
    CREATE TABLE retired_server_keys (
        public_key  TEXT PRIMARY KEY,
        retired_at  BIGINT NOT NULL
    );
"#];

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        let Some(db) = e.as_db_error() else {
            // I/O errors, a closed connection, timeouts: the database is not reachable.
            return Self::Unavailable(e.to_string());
        };
        let code = db.code();
        let unavailable = code.code().starts_with("08")
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::TOO_MANY_CONNECTIONS
            || *code == SqlState::INVALID_CATALOG_NAME;
        if unavailable {
            Self::Unavailable(db.to_string())
        } else {
            Self::Postgres(db.to_string())
        }
    }
}

impl From<PoolError> for StoreError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Closed => Self::Closed,
            PoolError::Backend(e) => match Self::from(e) {
                Self::Postgres(m) => Self::Unavailable(m),
                other => other,
            },
            other => Self::Unavailable(other.to_string()),
        }
    }
}

/// Handle to the connection pool; cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

type Client = deadpool_postgres::Object;

impl PgStore {
    /// Connects to the database named by `url` and applies migrations. `timeout` bounds
    /// the wait for a connection (from the pool, or a new one) and is the sessions'
    /// `statement_timeout`, so the server gives up a statement (and its locks) no later
    /// than the node gives up waiting for it; the caller bounds each whole operation by it
    /// as well, since a hung server answers nothing at all.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Postgres(format!("invalid connection string: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("pd-server");
        }
        if config.get_options().is_none() {
            let millis = timeout.as_millis();
            // A transaction left open by a node that stopped answering releases its row
            // locks after a while instead of holding them until its connection dies.
            config.options(format!(
                "-c statement_timeout={millis} -c idle_in_transaction_session_timeout={}",
                millis.saturating_mul(10)
            ));
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|e| StoreError::Postgres(e.to_string()))?;
        let store = Self { pool };
        tokio::time::timeout(MIGRATION_TIMEOUT, store.migrate())
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "the migrations did not finish within {}",
                    humantime::format_duration(MIGRATION_TIMEOUT)
                ))
            })??;
        Ok(store)
    }

    async fn client(&self) -> Result<Client, StoreError> {
        Ok(self.pool.get().await?)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS pd_schema (version BIGINT NOT NULL)")
            .await?;
        let version: i64 = match tx.query_opt("SELECT version FROM pd_schema", &[]).await? {
            Some(row) => row.get(0),
            None => {
                tx.execute("INSERT INTO pd_schema (version) VALUES (0)", &[])
                    .await?;
                0
            }
        };
        let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if version > known {
            return Err(StoreError::TooNew(version));
        }
        for sql in MIGRATIONS.iter().skip(to_u64(version) as usize) {
            tx.batch_execute(sql).await?;
        }
        if version < known {
            tx.execute("UPDATE pd_schema SET version = $1", &[&known])
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client().await?.simple_query("SELECT 1").await?;
        Ok(())
    }

    /// Counts the accounts, and those with a presence record unexpired at `now_secs`.
    pub async fn user_counts(&self, now_secs: u64) -> Result<UserCounts, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "SELECT (SELECT COUNT(*) FROM accounts),
                        (SELECT COUNT(*) FROM presence WHERE expires_at > $1)",
                &[&to_i64(now_secs)],
            )
            .await?;
        Ok(UserCounts {
            registered: to_u64(row.get(0)),
            online: to_u64(row.get(1)),
        })
    }

    /// Reads an account, its presence record and its kept rotation proofs (one snapshot).
    pub async fn account(&self, name: &str) -> Result<Option<AccountRow>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT a.public_key, a.last_seq, p.seq, p.expires_at, p.envelope,
                        ARRAY(SELECT r.proof FROM rotations r WHERE r.name = a.name
                              ORDER BY r.seq DESC LIMIT $2)
                 FROM accounts a LEFT JOIN presence p ON p.name = a.name
                 WHERE a.name = $1",
                &[&name, &to_i64(MAX_KEPT_ROTATIONS as u64)],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let key: Vec<u8> = row.get(0);
        let seq: Option<i64> = row.get(2);
        let expires_at: Option<i64> = row.get(3);
        let envelope: Option<String> = row.get(4);
        let mut rotations: Vec<String> = row.get(5);
        rotations.reverse();
        Ok(Some(AccountRow {
            name: name.to_owned(),
            public_key: key32(&key, &format!("key of {name}"))?,
            last_seq: to_u64(row.get(1)),
            presence: match (seq, expires_at, envelope) {
                (Some(seq), Some(expires_at), Some(envelope)) => Some(PresenceRow {
                    seq: to_u64(seq),
                    expires_at: to_u64(expires_at),
                    envelope,
                }),
                _ => None,
            },
            rotations,
        }))
    }

    /// Creates an account, consuming the invite in the same transaction.
    pub async fn create_account(
        &self,
        name: &str,
        public_key: [u8; 32],
        seq: u64,
        invite_hash: Option<[u8; 32]>,
        now_secs: u64,
    ) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        if let Some(hash) = invite_hash {
            let used = tx
                .execute(
                    "UPDATE invites SET used_at = $1
                     WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
                    &[&to_i64(now_secs), &&hash[..]],
                )
                .await?;
            if used != 1 {
                return Err(StoreError::BadInvite);
            }
        }
        let inserted = tx
            .execute(
                "INSERT INTO accounts (name, public_key, last_seq, created_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
                &[&name, &&public_key[..], &to_i64(seq), &to_i64(now_secs)],
            )
            .await?;
        if inserted != 1 {
            // Dropping the transaction rolls back the invite's consumption.
            return Err(StoreError::NameTaken);
        }
        tx.commit().await?;
        Ok(())
    }

    /// Applies a signed operation after winning the compare-and-set on `last_seq`.
    pub async fn apply(
        &self,
        name: &str,
        key: [u8; 32],
        seq: u64,
        change: Change,
    ) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let seq_i = to_i64(seq);
        let won = tx
            .execute(
                "UPDATE accounts SET last_seq = $1
                 WHERE name = $2 AND public_key = $3 AND last_seq < $1",
                &[&seq_i, &name, &&key[..]],
            )
            .await?;
        if won != 1 {
            let exists = tx
                .query_opt("SELECT 1 FROM accounts WHERE name = $1", &[&name])
                .await?
                .is_some();
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
                     VALUES ($1, $2, $3, $4)",
                    &[&&token_hash[..], &name, &&key[..], &to_i64(expires_at)],
                )
                .await?;
            }
            Change::Publish(p) => {
                tx.execute(
                    "INSERT INTO presence (name, seq, expires_at, envelope)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (name) DO UPDATE SET
                       seq = excluded.seq, expires_at = excluded.expires_at,
                       envelope = excluded.envelope",
                    &[&name, &to_i64(p.seq), &to_i64(p.expires_at), &p.envelope],
                )
                .await?;
            }
            Change::Withdraw => {
                tx.execute("DELETE FROM presence WHERE name = $1", &[&name])
                    .await?;
            }
            Change::Rotate { new_key, proof } => {
                tx.execute(
                    "UPDATE accounts SET public_key = $1 WHERE name = $2",
                    &[&&new_key[..], &name],
                )
                .await?;
                tx.execute("DELETE FROM presence WHERE name = $1", &[&name])
                    .await?;
                tx.execute("DELETE FROM sessions WHERE name = $1", &[&name])
                    .await?;
                tx.execute(
                    "INSERT INTO rotations (name, seq, proof) VALUES ($1, $2, $3)",
                    &[&name, &seq_i, &proof],
                )
                .await?;
                tx.execute(
                    "DELETE FROM rotations WHERE name = $1 AND seq NOT IN
                       (SELECT seq FROM rotations WHERE name = $1
                        ORDER BY seq DESC LIMIT $2)",
                    &[&name, &to_i64(MAX_KEPT_ROTATIONS as u64)],
                )
                .await?;
            }
            Change::Delete => {
                for sql in [
                    "DELETE FROM presence WHERE name = $1",
                    "DELETE FROM rotations WHERE name = $1",
                    "DELETE FROM sessions WHERE name = $1",
                    "DELETE FROM accounts WHERE name = $1",
                ] {
                    tx.execute(sql, &[&name]).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The session stored under `token_hash`, if any.
    pub async fn session(&self, token_hash: [u8; 32]) -> Result<Option<SessionRow>, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                "SELECT name, public_key, expires_at FROM sessions WHERE token_hash = $1",
                &[&&token_hash[..]],
            )
            .await?;
        row.map(|r| {
            let key: Vec<u8> = r.get(1);
            Ok(SessionRow {
                token_hash,
                name: r.get(0),
                public_key: key32(&key, "session key")?,
                expires_at: to_u64(r.get(2)),
            })
        })
        .transpose()
    }

    /// Records a new invite token by its hash.
    pub async fn create_invite(
        &self,
        token_hash: [u8; 32],
        now_secs: u64,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO invites (token_hash, created_at, expires_at) VALUES ($1, $2, $3)",
                &[&&token_hash[..], &to_i64(now_secs), &to_i64(expires_at)],
            )
            .await?;
        Ok(())
    }

    /// The kept copy of a subscribed trust list.
    pub async fn trust_list(&self, url: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT body, fetched_at FROM trust_lists WHERE url = $1",
                &[&url],
            )
            .await?;
        Ok(row.map(|r| (r.get::<_, Vec<u8>>(0), to_u64(r.get(1)))))
    }

    /// Keeps `body` as the copy of the subscribed trust list at `url`.
    pub async fn save_trust_list(
        &self,
        url: &str,
        body: Vec<u8>,
        fetched_at: u64,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO trust_lists (url, body, fetched_at) VALUES ($1, $2, $3)
                 ON CONFLICT (url) DO UPDATE SET body = excluded.body,
                   fetched_at = excluded.fetched_at",
                &[&url, &body, &to_i64(fetched_at)],
            )
            .await?;
        Ok(())
    }

    /// Deletes expired presence records, sessions and invites.
    pub async fn purge_expired(&self, now_secs: u64) -> Result<Vec<String>, StoreError> {
        let now = to_i64(now_secs);
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let names = tx
            .query(
                "DELETE FROM presence WHERE expires_at <= $1 RETURNING name",
                &[&now],
            )
            .await?
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect();
        tx.execute("DELETE FROM invites WHERE expires_at <= $1", &[&now])
            .await?;
        tx.execute("DELETE FROM sessions WHERE expires_at <= $1", &[&now])
            .await?;
        tx.commit().await?;
        Ok(names)
    }

    /// Reads everything in one repeatable-read snapshot, for `pd-server migrate`.
    pub async fn export(&self) -> Result<Dump, StoreError> {
        let mut c = self.client().await?;
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        // A bulk copy: the session's statement_timeout is for requests.
        tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
        let mut dump = Dump::default();
        let accounts = tx
            .query(
                "SELECT a.name, a.public_key, a.last_seq, a.created_at,
                        p.seq, p.expires_at, p.envelope
                 FROM accounts a LEFT JOIN presence p ON p.name = a.name ORDER BY a.name",
                &[],
            )
            .await?;
        for r in accounts {
            let name: String = r.get(0);
            let key: Vec<u8> = r.get(1);
            let seq: Option<i64> = r.get(4);
            let presence = match (seq, r.get::<_, Option<i64>>(5), r.get(6)) {
                (Some(seq), Some(expires_at), Some(envelope)) => Some(PresenceRow {
                    seq: to_u64(seq),
                    expires_at: to_u64(expires_at),
                    envelope,
                }),
                _ => None,
            };
            let rotations = tx
                .query(
                    "SELECT seq, proof FROM rotations WHERE name = $1 ORDER BY seq",
                    &[&name],
                )
                .await?
                .iter()
                .map(|r| (to_u64(r.get(0)), r.get::<_, String>(1)))
                .collect();
            dump.accounts.push(AccountDump {
                public_key: key32(&key, "account key")?,
                name,
                last_seq: to_u64(r.get(2)),
                created_at: to_u64(r.get(3)),
                presence,
                rotations,
            });
        }
        for r in tx
            .query(
                "SELECT token_hash, name, public_key, expires_at FROM sessions",
                &[],
            )
            .await?
        {
            let hash: Vec<u8> = r.get(0);
            let key: Vec<u8> = r.get(2);
            dump.sessions.push(SessionRow {
                token_hash: key32(&hash, "session hash")?,
                name: r.get(1),
                public_key: key32(&key, "session key")?,
                expires_at: to_u64(r.get(3)),
            });
        }
        for r in tx
            .query(
                "SELECT token_hash, created_at, expires_at, used_at FROM invites",
                &[],
            )
            .await?
        {
            let hash: Vec<u8> = r.get(0);
            dump.invites.push(InviteRow {
                token_hash: key32(&hash, "invite hash")?,
                created_at: to_u64(r.get(1)),
                expires_at: to_u64(r.get(2)),
                used_at: r.get::<_, Option<i64>>(3).map(to_u64),
            });
        }
        for r in tx
            .query(
                "SELECT url, body, fetched_at FROM trust_lists ORDER BY url",
                &[],
            )
            .await?
        {
            dump.trust_lists.push(TrustListRow {
                url: r.get(0),
                body: r.get(1),
                fetched_at: to_u64(r.get(2)),
            });
        }
        tx.commit().await?;
        Ok(dump)
    }

    /// Writes `dump` in one transaction into a store without accounts.
    pub async fn import(&self, dump: Dump) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // A bulk copy: the session's statement_timeout is for requests.
        tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
        tx.execute("LOCK TABLE accounts IN EXCLUSIVE MODE", &[])
            .await?;
        let count: i64 = tx
            .query_one("SELECT COUNT(*) FROM accounts", &[])
            .await?
            .get(0);
        if count > 0 {
            return Err(StoreError::NotEmpty(to_u64(count)));
        }
        for a in &dump.accounts {
            tx.execute(
                "INSERT INTO accounts (name, public_key, last_seq, created_at)
                 VALUES ($1, $2, $3, $4)",
                &[
                    &a.name,
                    &&a.public_key[..],
                    &to_i64(a.last_seq),
                    &to_i64(a.created_at),
                ],
            )
            .await?;
            if let Some(p) = &a.presence {
                tx.execute(
                    "INSERT INTO presence (name, seq, expires_at, envelope)
                     VALUES ($1, $2, $3, $4)",
                    &[&a.name, &to_i64(p.seq), &to_i64(p.expires_at), &p.envelope],
                )
                .await?;
            }
            for (seq, proof) in &a.rotations {
                tx.execute(
                    "INSERT INTO rotations (name, seq, proof) VALUES ($1, $2, $3)",
                    &[&a.name, &to_i64(*seq), proof],
                )
                .await?;
            }
        }
        for s in &dump.sessions {
            tx.execute(
                "INSERT INTO sessions (token_hash, name, public_key, expires_at)
                 VALUES ($1, $2, $3, $4)",
                &[
                    &&s.token_hash[..],
                    &s.name,
                    &&s.public_key[..],
                    &to_i64(s.expires_at),
                ],
            )
            .await?;
        }
        for i in &dump.invites {
            tx.execute(
                "INSERT INTO invites (token_hash, created_at, expires_at, used_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (token_hash) DO NOTHING",
                &[
                    &&i.token_hash[..],
                    &to_i64(i.created_at),
                    &to_i64(i.expires_at),
                    &i.used_at.map(to_i64),
                ],
            )
            .await?;
        }
        for l in &dump.trust_lists {
            tx.execute(
                "INSERT INTO trust_lists (url, body, fetched_at) VALUES ($1, $2, $3)
                 ON CONFLICT (url) DO UPDATE SET body = excluded.body,
                   fetched_at = excluded.fetched_at",
                &[&l.url, &l.body, &to_i64(l.fetched_at)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The stored server keys, storing `candidate` as the current key if there is none.
    pub async fn shared_server_keys(
        &self,
        candidate: String,
    ) -> Result<SharedServerKeys, StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO server_key (id, secret) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
                &[&candidate],
            )
            .await?;
        self.read_server_keys()
            .await?
            .ok_or_else(|| StoreError::Corrupt("the server key vanished".into()))
    }

    /// The stored server keys, if a current key is stored.
    pub async fn read_server_keys(&self) -> Result<Option<SharedServerKeys>, StoreError> {
        let mut c = self.client().await?;
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let Some(current) = tx
            .query_opt("SELECT secret FROM server_key WHERE id = 1", &[])
            .await?
        else {
            return Ok(None);
        };
        let retired = tx
            .query(
                "SELECT public_key, retired_at FROM retired_server_keys ORDER BY retired_at DESC",
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get::<_, String>(0), to_u64(r.get(1))))
            .collect();
        tx.commit().await?;
        Ok(Some(SharedServerKeys {
            current: current.get(0),
            retired,
        }))
    }

    /// Replaces the current server key, retiring the old one.
    pub async fn rotate_server_key(
        &self,
        new: String,
        now_secs: u64,
        forget_before: u64,
    ) -> Result<Option<String>, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let old: Option<String> = tx
            .query_opt("SELECT secret FROM server_key WHERE id = 1 FOR UPDATE", &[])
            .await?
            .map(|r| r.get(0));
        if let Some(old) = &old {
            let public = pd_proto::SecretKey::from_text(old.trim())
                .map_err(|e| StoreError::Corrupt(format!("stored server key: {e}")))?
                .public()
                .to_string();
            tx.execute(
                "INSERT INTO retired_server_keys (public_key, retired_at) VALUES ($1, $2)
                 ON CONFLICT (public_key) DO UPDATE SET retired_at = excluded.retired_at",
                &[&public, &to_i64(now_secs)],
            )
            .await?;
        }
        tx.execute(
            "INSERT INTO server_key (id, secret) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET secret = excluded.secret",
            &[&new],
        )
        .await?;
        tx.execute(
            "DELETE FROM retired_server_keys WHERE retired_at < $1",
            &[&to_i64(forget_before)],
        )
        .await?;
        tx.commit().await?;
        Ok(old)
    }

    /// Closes the pool; later calls fail with [`StoreError::Closed`].
    pub fn close(&self) {
        self.pool.close();
    }
}
