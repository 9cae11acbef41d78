//! The local registry: the domain logic of accounts, presence records and sessions, with the
//! in-memory caches in front of the store. No HTTP here.
//!
//! Signed account operations are checked in the order the API fixes: the account exists
//! (404), the payload decodes, names the path address and verifies under the account key
//! (400), its content is acceptable (400), and its `seq` is above the stored one (409).
//! Nothing changes on any error. The store repeats the `seq` check as a compare-and-set
//! inside its transaction, so concurrent writes cannot both win, on one node or across
//! replicas sharing a PostgreSQL store.
//!
//! Caching rule: signed operations always read the account from the store, so their
//! checks see every committed write whichever replica made it. Lookups read through the
//! in-memory account cache, which the writing node updates as it commits; with a shared
//! store, a cached account is read again after `cache.shared_ttl`, which bounds how late a
//! write made through another replica shows in this replica's lookups. Sessions are stored
//! (by the hash of the token) and cached per node; a session is valid on every replica
//! and ends with the account's key.

use std::sync::Arc;
use std::time::Duration;

use data_encoding::BASE64URL_NOPAD;
use moka::future::Cache;
use pd_proto::records::check_fresh;
use pd_proto::signed::SignedError;
use pd_proto::wire::{AccountInfo, PublishResponse, RegisterRequest, RotateRequest};
use pd_proto::{
    Address, Deletion, Host, KeyError, Login, Name, Presence, PublicKey, Record, RecordError,
    RotationProof, Signed, Withdrawal, now_micros, now_secs,
};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::RwLock;

use crate::config::RegistrationPolicy;
use crate::store::{AccountRow, Change, PresenceRow, Store, StoreError};

/// Why the registry refused an operation. Each variant maps to one problem type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The address's host is not this node's domain.
    #[error("{0} does not belong to this node's domain")]
    WrongDomain(Address),
    /// The request or its signed payload is malformed.
    #[error("{0}")]
    InvalidRequest(String),
    /// The signature does not verify, or was made for another address or purpose.
    #[error("{0}")]
    InvalidSignature(String),
    /// A public key is malformed or weak.
    #[error("{0}")]
    InvalidKey(String),
    /// The record's content is not acceptable.
    #[error("{0}")]
    InvalidRecord(RecordError),
    /// The record's content is not acceptable, found while decoding the payload (a
    /// malformed endpoint).
    #[error("{0}")]
    InvalidContent(String),
    /// The operation is dated outside the allowed clock skew.
    #[error("{0}")]
    Stale(RecordError),
    /// Registration is closed.
    #[error("this node does not accept registrations")]
    RegistrationClosed,
    /// Registration needs a valid invite token.
    #[error("registration on this node needs a valid, unused invite token")]
    InviteRequired,
    /// The name is taken.
    #[error("{0} is already registered")]
    NameTaken(Address),
    /// No such account.
    #[error("no user {0}")]
    UnknownUser(Address),
    /// The operation's `seq` is not above the account's `last_seq`.
    #[error("sequence number {seq} is not above the stored {last_seq}")]
    Replayed {
        /// The operation's sequence number.
        seq: u64,
        /// The account's last accepted sequence number.
        last_seq: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A local account as cached in memory.
#[derive(Debug, Clone)]
pub struct CachedAccount {
    /// The account key.
    pub key: PublicKey,
    /// Highest accepted sequence number.
    pub last_seq: u64,
    /// The presence record, ready to serve.
    pub presence: Option<CachedPresence>,
    /// The kept rotation proofs, ready to serve.
    pub rotations: Option<CachedRotations>,
}

/// The kept rotation proofs of an account (at least one), ready to be served byte for byte.
#[derive(Debug, Clone)]
pub struct CachedRotations {
    /// The JSON array of the proofs as stored, oldest first.
    pub json: Arc<str>,
}

impl CachedRotations {
    /// The proofs of `rows` (oldest first) as one JSON array; `None` without any.
    fn from_rows(rows: &[String]) -> Option<Self> {
        if rows.is_empty() {
            return None;
        }
        Some(Self {
            json: Arc::from(format!("[{}]", rows.join(","))),
        })
    }
}

/// A presence record ready to be served byte for byte.
#[derive(Debug, Clone)]
pub struct CachedPresence {
    /// Unix seconds after which it must not be served.
    pub expires_at: u64,
    /// The signed envelope's JSON as stored.
    pub envelope: Arc<str>,
}

/// The answer of a local lookup.
#[derive(Debug, Clone)]
pub struct LocalLookup {
    /// The account key.
    pub key: PublicKey,
    /// The live presence record, if any.
    pub presence: Option<CachedPresence>,
    /// The kept rotation proofs, if the key was ever rotated.
    pub rotations: Option<CachedRotations>,
}

/// A lookup session: who logged in, with which key.
#[derive(Debug, Clone)]
pub struct Session {
    /// The user.
    pub address: Address,
    /// The key the user logged in with; the session ends when the account key changes.
    pub key: PublicKey,
    /// Unix seconds after which the session is over.
    pub expires_at: u64,
}

/// Settings of the registry.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// This node's domain.
    pub domain: Host,
    /// Registration policy.
    pub registration: RegistrationPolicy,
    /// Lifetime of session tokens.
    pub session_ttl: Duration,
    /// Most accounts cached in memory.
    pub max_accounts: u64,
    /// How long an account is answered from memory before it is read again; `None` keeps
    /// it until it is evicted (a store no other node writes to).
    pub account_ttl: Option<Duration>,
}

/// Accounts, presence and sessions of this node's users.
#[derive(Debug)]
pub struct Registry {
    opts: RegistryOptions,
    store: Store,
    accounts: Cache<String, Arc<CachedAccount>>,
    sessions: Cache<String, Arc<Session>>,
    /// Per-name locks, striped: a writer holds its name's stripe exclusively while it
    /// commits and updates the cache; a cache miss holds it shared while it loads, so a
    /// slow load cannot overwrite a newer write. Writes to different names mostly take
    /// different stripes, so they commit concurrently (and the SQLite store commits them
    /// together).
    name_locks: NameLocks,
}

/// A fixed set of read-write locks; a name always maps to the same one.
struct NameLocks {
    stripes: Box<[RwLock<()>]>,
    hasher: std::hash::RandomState,
}

impl NameLocks {
    /// Enough stripes that concurrent writers of different names rarely share one.
    const STRIPES: usize = 256;

    fn new() -> Self {
        Self {
            stripes: (0..Self::STRIPES).map(|_| RwLock::new(())).collect(),
            hasher: std::hash::RandomState::new(),
        }
    }

    fn of(&self, name: &str) -> &RwLock<()> {
        use std::hash::BuildHasher;
        let index = self.hasher.hash_one(name) as usize % self.stripes.len();
        &self.stripes[index]
    }
}

impl std::fmt::Debug for NameLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameLocks")
            .field("stripes", &self.stripes.len())
            .finish_non_exhaustive()
    }
}

/// Hash under which an invite or session token is stored.
pub fn invite_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A fresh random token (32 bytes, base64url).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    BASE64URL_NOPAD.encode(&bytes)
}

/// Creates an invite valid for `lifetime` and returns its token (only the hash is stored).
pub async fn create_invite(store: &Store, lifetime: Duration) -> Result<String, StoreError> {
    let token = random_token();
    let now = now_secs();
    store
        .create_invite(invite_hash(&token), now, now + lifetime.as_secs())
        .await?;
    Ok(token)
}

/// Maps a payload or signature error to the API's distinction between malformed requests,
/// bad keys and bad signatures.
fn signed_error(e: SignedError) -> RegistryError {
    match e {
        SignedError::TooLarge => RegistryError::InvalidRequest(e.to_string()),
        SignedError::Malformed(m) => {
            if m.contains("weak") || m.contains("ed25519 public key") {
                RegistryError::InvalidKey(format!("payload has an invalid key: {m}"))
            } else {
                RegistryError::InvalidRequest(format!("payload is malformed: {m}"))
            }
        }
        SignedError::Content(m) => RegistryError::InvalidContent(m),
        SignedError::AddressMismatch { .. } => RegistryError::InvalidSignature(e.to_string()),
        SignedError::Signature(KeyError::WeakKey | KeyError::InvalidKey) => {
            RegistryError::InvalidKey(e.to_string())
        }
        other => RegistryError::InvalidSignature(other.to_string()),
    }
}

fn fresh(seq: u64) -> Result<(), RegistryError> {
    check_fresh(seq, now_micros()).map_err(RegistryError::Stale)
}

impl CachedAccount {
    fn from_row(row: AccountRow) -> Result<Self, StoreError> {
        let key = PublicKey::from_stored_bytes(&row.public_key)
            .map_err(|e| StoreError::Corrupt(format!("key of {}: {e}", row.name)))?;
        Ok(Self {
            key,
            last_seq: row.last_seq,
            presence: row.presence.map(|p| CachedPresence {
                expires_at: p.expires_at,
                envelope: Arc::from(p.envelope),
            }),
            rotations: CachedRotations::from_rows(&row.rotations),
        })
    }
}

impl Registry {
    /// A registry over `store`.
    pub fn new(store: Store, opts: RegistryOptions) -> Self {
        let accounts = match opts.account_ttl {
            Some(ttl) => Cache::builder()
                .max_capacity(opts.max_accounts)
                .time_to_live(ttl)
                .build(),
            None => Cache::builder().max_capacity(opts.max_accounts).build(),
        };
        let sessions = Cache::builder()
            .max_capacity(1_000_000)
            .time_to_live(opts.session_ttl)
            .build();
        Self {
            opts,
            store,
            accounts,
            sessions,
            name_locks: NameLocks::new(),
        }
    }

    /// This node's domain.
    pub fn domain(&self) -> &Host {
        &self.opts.domain
    }

    /// The store behind the registry.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether `address` belongs to this node.
    pub fn is_local(&self, address: &Address) -> bool {
        address.host() == &self.opts.domain
    }

    /// Reads an account through the cache.
    async fn account(&self, address: &Address) -> Result<Option<Arc<CachedAccount>>, StoreError> {
        let name = address.name().as_str();
        if let Some(hit) = self.accounts.get(name).await {
            return Ok(Some(hit));
        }
        self.load(name).await
    }

    /// Reads an account from the store and puts it in the cache.
    async fn load(&self, name: &str) -> Result<Option<Arc<CachedAccount>>, StoreError> {
        let _shared = self.name_locks.of(name).read().await;
        let Some(row) = self.store.account(name).await? else {
            self.accounts.invalidate(name).await;
            return Ok(None);
        };
        let account = Arc::new(CachedAccount::from_row(row)?);
        self.accounts
            .insert(name.to_owned(), Arc::clone(&account))
            .await;
        Ok(Some(account))
    }

    /// Creates an account (`POST /v1/accounts`).
    pub async fn register(&self, req: RegisterRequest) -> Result<AccountInfo, RegistryError> {
        let reg = req.registration.decode_unverified().map_err(signed_error)?;
        if !self.is_local(&reg.address) {
            return Err(RegistryError::WrongDomain(reg.address));
        }
        fresh(reg.seq)?;
        req.registration
            .verify(&reg.public_key, &reg.address)
            .map_err(signed_error)?;
        let invite = match self.opts.registration {
            RegistrationPolicy::Open => None,
            RegistrationPolicy::Closed => return Err(RegistryError::RegistrationClosed),
            RegistrationPolicy::Invite => match req.invite.as_deref() {
                Some(token) if !token.is_empty() => Some(invite_hash(token)),
                _ => return Err(RegistryError::InviteRequired),
            },
        };
        let name = reg.address.name().as_str();
        let _exclusive = self.name_locks.of(name).write().await;
        let created = self
            .store
            .create_account(name, reg.public_key.to_bytes(), reg.seq, invite, now_secs())
            .await;
        match created {
            Ok(()) => {}
            Err(StoreError::NameTaken) => return Err(RegistryError::NameTaken(reg.address)),
            Err(StoreError::BadInvite) => return Err(RegistryError::InviteRequired),
            Err(e) => return Err(e.into()),
        }
        self.accounts
            .insert(
                name.to_owned(),
                Arc::new(CachedAccount {
                    key: reg.public_key,
                    last_seq: reg.seq,
                    presence: None,
                    rotations: None,
                }),
            )
            .await;
        Ok(AccountInfo {
            fingerprint: reg.public_key.fingerprint(),
            address: reg.address,
            public_key: reg.public_key,
        })
    }

    /// The first checks of every signed account operation: the account exists, the record
    /// verifies under its key for `address`.
    async fn authorize<T: Record>(
        &self,
        address: &Address,
        signed: &Signed<T>,
    ) -> Result<(T, Arc<CachedAccount>), RegistryError> {
        if !self.is_local(address) {
            return Err(RegistryError::WrongDomain(address.clone()));
        }
        // Read from the store, not the cache: another replica may have changed the account.
        let account = self
            .load(address.name().as_str())
            .await?
            .ok_or_else(|| RegistryError::UnknownUser(address.clone()))?;
        let record = signed.verify(&account.key, address).map_err(signed_error)?;
        Ok((record, account))
    }

    fn check_seq(seq: u64, account: &CachedAccount) -> Result<(), RegistryError> {
        if seq <= account.last_seq {
            return Err(RegistryError::Replayed {
                seq,
                last_seq: account.last_seq,
            });
        }
        Ok(())
    }

    /// Commits a change and brings the cache up to date.
    async fn commit(
        &self,
        address: &Address,
        account: &CachedAccount,
        seq: u64,
        change: Change,
        updated: Option<CachedAccount>,
    ) -> Result<(), RegistryError> {
        let name = address.name().as_str();
        let _exclusive = self.name_locks.of(name).write().await;
        let result = self
            .store
            .apply(name, account.key.to_bytes(), seq, change)
            .await;
        match result {
            Ok(()) => {
                match updated {
                    Some(a) => self.accounts.insert(name.to_owned(), Arc::new(a)).await,
                    None => self.accounts.invalidate(name).await,
                }
                Ok(())
            }
            Err(e) => {
                // The cached copy was stale (another writer won); reload it next time.
                self.accounts.invalidate(name).await;
                Err(match e {
                    StoreError::NoAccount => RegistryError::UnknownUser(address.clone()),
                    StoreError::Conflict => RegistryError::Replayed {
                        seq,
                        last_seq: account.last_seq,
                    },
                    other => other.into(),
                })
            }
        }
    }

    /// Stores a presence record (`PUT /v1/accounts/{address}/presence`).
    pub async fn publish(
        &self,
        address: &Address,
        signed: Signed<Presence>,
    ) -> Result<PublishResponse, RegistryError> {
        let (presence, account) = self.authorize(address, &signed).await?;
        presence
            .validate(now_micros())
            .map_err(RegistryError::InvalidRecord)?;
        Self::check_seq(presence.seq, &account)?;
        let envelope = serde_json::to_string(&signed)
            .map_err(|e| RegistryError::InvalidRequest(e.to_string()))?;
        let row = PresenceRow {
            seq: presence.seq,
            expires_at: presence.expires_at,
            envelope: envelope.clone(),
        };
        let updated = CachedAccount {
            key: account.key,
            last_seq: presence.seq,
            presence: Some(CachedPresence {
                expires_at: presence.expires_at,
                envelope: Arc::from(envelope),
            }),
            rotations: account.rotations.clone(),
        };
        self.commit(
            address,
            &account,
            presence.seq,
            Change::Publish(row),
            Some(updated),
        )
        .await?;
        Ok(PublishResponse {
            seq: presence.seq,
            expires_at: presence.expires_at,
        })
    }

    /// Drops the presence record (`POST /v1/accounts/{address}/presence/withdraw`).
    pub async fn withdraw(
        &self,
        address: &Address,
        signed: Signed<Withdrawal>,
    ) -> Result<(), RegistryError> {
        let (w, account) = self.authorize(address, &signed).await?;
        fresh(w.seq)?;
        Self::check_seq(w.seq, &account)?;
        let updated = CachedAccount {
            key: account.key,
            last_seq: w.seq,
            presence: None,
            rotations: account.rotations.clone(),
        };
        self.commit(address, &account, w.seq, Change::Withdraw, Some(updated))
            .await
    }

    /// Replaces the account key (`POST /v1/accounts/{address}/rotate`) and keeps the proof of
    /// the rotation, in the same transaction. The presence record goes: it was signed by the
    /// old key.
    pub async fn rotate(
        &self,
        address: &Address,
        req: RotateRequest,
    ) -> Result<AccountInfo, RegistryError> {
        let (rotation, account) = self.authorize(address, &req.rotation).await?;
        req.rotation
            .verify_countersignature(&rotation.new_key, address, &req.new_key_signature)
            .map_err(|e| {
                RegistryError::InvalidSignature(format!("new key's countersignature: {e}"))
            })?;
        if rotation.new_key == account.key {
            return Err(RegistryError::InvalidRequest(
                "the new key is the current key".into(),
            ));
        }
        fresh(rotation.seq)?;
        Self::check_seq(rotation.seq, &account)?;
        let proof = RotationProof::new(account.key, req.rotation, req.new_key_signature);
        let proof = serde_json::to_string(&proof)
            .map_err(|e| RegistryError::InvalidRequest(e.to_string()))?;
        // The cached entry is dropped rather than rebuilt: the store decides which proofs
        // are kept, and the next read loads them.
        self.commit(
            address,
            &account,
            rotation.seq,
            Change::Rotate {
                new_key: rotation.new_key.to_bytes(),
                proof,
            },
            None,
        )
        .await?;
        Ok(AccountInfo {
            address: address.clone(),
            public_key: rotation.new_key,
            fingerprint: rotation.new_key.fingerprint(),
        })
    }

    /// Deletes the account and its presence record (`POST /v1/accounts/{address}/delete`).
    pub async fn delete(
        &self,
        address: &Address,
        signed: Signed<Deletion>,
    ) -> Result<(), RegistryError> {
        let (d, account) = self.authorize(address, &signed).await?;
        fresh(d.seq)?;
        Self::check_seq(d.seq, &account)?;
        self.commit(address, &account, d.seq, Change::Delete, None)
            .await
    }

    /// Opens a lookup session (`POST /v1/sessions`); returns the token and its lifetime.
    pub async fn login(&self, signed: Signed<Login>) -> Result<(String, u64), RegistryError> {
        let claimed = signed.decode_unverified().map_err(signed_error)?;
        let address = claimed.address;
        let (login, account) = self.authorize(&address, &signed).await?;
        fresh(login.seq)?;
        Self::check_seq(login.seq, &account)?;
        let updated = CachedAccount {
            last_seq: login.seq,
            ..(*account).clone()
        };
        let token = random_token();
        let expires_at = now_secs().saturating_add(self.opts.session_ttl.as_secs());
        let change = Change::Login {
            token_hash: invite_hash(&token),
            expires_at,
        };
        self.commit(&address, &account, login.seq, change, Some(updated))
            .await?;
        self.sessions
            .insert(
                token.clone(),
                Arc::new(Session {
                    address,
                    key: account.key,
                    expires_at,
                }),
            )
            .await;
        Ok((token, self.opts.session_ttl.as_secs()))
    }

    /// The session of a bearer token, if it is known, unexpired, and its account still
    /// exists with the same key.
    pub async fn session(&self, token: &str) -> Result<Option<Arc<Session>>, StoreError> {
        let session = match self.sessions.get(token).await {
            Some(session) => session,
            None => {
                // Opened on another replica, or before a restart.
                let Some(row) = self.store.session(invite_hash(token)).await? else {
                    return Ok(None);
                };
                let Ok(address) = Name::parse(&row.name)
                    .and_then(|name| Address::new(name, self.opts.domain.clone()))
                else {
                    return Ok(None);
                };
                let key = PublicKey::from_stored_bytes(&row.public_key)
                    .map_err(|e| StoreError::Corrupt(format!("session key: {e}")))?;
                let session = Arc::new(Session {
                    address,
                    key,
                    expires_at: row.expires_at,
                });
                self.sessions
                    .insert(token.to_owned(), Arc::clone(&session))
                    .await;
                session
            }
        };
        if session.expires_at <= now_secs() {
            self.sessions.invalidate(token).await;
            return Ok(None);
        }
        match self.account(&session.address).await? {
            Some(account) if account.key == session.key => Ok(Some(session)),
            _ => {
                self.sessions.invalidate(token).await;
                Ok(None)
            }
        }
    }

    /// Looks up one of this node's users; expired presence records are never returned.
    pub async fn lookup_local(&self, address: &Address) -> Result<LocalLookup, RegistryError> {
        if !self.is_local(address) {
            return Err(RegistryError::WrongDomain(address.clone()));
        }
        let account = self
            .account(address)
            .await?
            .ok_or_else(|| RegistryError::UnknownUser(address.clone()))?;
        let now = now_secs();
        Ok(LocalLookup {
            key: account.key,
            presence: account
                .presence
                .as_ref()
                .filter(|p| p.expires_at > now)
                .cloned(),
            rotations: account.rotations.clone(),
        })
    }

    /// Deletes expired presence records from the store and drops those accounts from the
    /// cache; returns how many records went.
    pub async fn purge_expired(&self) -> Result<usize, StoreError> {
        // No name lock: the purge deletes only records expired at `now`, which lookups
        // never serve, and a record published meanwhile has a later expiry, so the
        // delete cannot take it. At worst an entry is dropped from the cache and read
        // again.
        let now = now_secs();
        let purged = self.store.purge_expired(now).await?;
        for name in &purged {
            self.accounts.invalidate(name.as_str()).await;
        }
        Ok(purged.len())
    }
}
