//! A registered account: its home, identity key and a client for its home server, with the
//! signed operations (login, lookup, presence) that several commands share.

use std::time::Duration;

use pd_client::{ClientError, ClientOptions, LookupMode, PdClient, VerifiedLookup};
use pd_proto::wire::{AccountInfo, PublishResponse, RotateRequest};
use pd_proto::{
    Address, Deletion, Endpoint, Login, Presence, ProblemType, PublicKey, Rotation, SecretKey,
    Signed, Withdrawal,
};
use url::Url;

use crate::contacts::{Contact, Contacts};
use crate::error::{ChatError, EXIT_HOME_UNREACHABLE, EXIT_REMOTE_UNREACHABLE};
use crate::home::{Home, HomeConfig, Session};
use crate::seq::next_seq;

/// What `rotate_key` did.
#[derive(Debug)]
pub(crate) enum RotateOutcome {
    /// A rotation an earlier run left staged turned out to be in force; this is the key.
    Recovered(PublicKey),
    /// The key was rotated.
    Rotated(AccountInfo),
}

/// A registered home with a client for its server.
#[derive(Debug)]
pub(crate) struct Account {
    home: Home,
    config: HomeConfig,
    key: SecretKey,
    client: PdClient,
    contacts: Contacts,
}

/// A lookup answer: fresh from the home node, or the one stored for the contact when the home
/// node (or the user's) could not be reached.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Verified just now.
    Live(VerifiedLookup),
    /// Stored earlier (and verified again when read).
    Stored {
        /// The stored contact.
        contact: Contact,
        /// Why the network could not answer, in a few words (`home node unreachable`).
        why: String,
    },
}

impl Answer {
    /// The verified answer, fresh or stored.
    pub(crate) fn lookup(&self) -> &VerifiedLookup {
        match self {
            Self::Live(found) => found,
            Self::Stored { contact, .. } => &contact.lookup,
        }
    }
}

impl Account {
    pub(crate) fn open(home: Home, ca_file: Option<std::path::PathBuf>) -> Result<Self, ChatError> {
        Self::open_with(home, ca_file, true)
    }

    /// Opens the account; `warn_pending` warns about a rotation an earlier run left staged.
    pub(crate) fn open_with(
        home: Home,
        ca_file: Option<std::path::PathBuf>,
        warn_pending: bool,
    ) -> Result<Self, ChatError> {
        let config = home.config()?;
        let key = home.key()?;
        if warn_pending && home.new_key_path().exists() {
            eprintln!(
                "warning: a key rotation was interrupted ({} exists); run `chat rotate-key` \
                 to finish or discard it",
                home.new_key_path().display()
            );
        }
        let client = client_for(&config.server, ca_file.or_else(|| config.ca_file.clone()))?;
        let contacts = Contacts::new(home.clone());
        Ok(Self {
            home,
            config,
            key,
            client,
            contacts,
        })
    }

    /// The account's home.
    pub(crate) fn home(&self) -> &Home {
        &self.home
    }

    /// The account's identity key.
    pub(crate) fn key(&self) -> &SecretKey {
        &self.key
    }

    /// The account's home server.
    pub(crate) fn server(&self) -> &Url {
        &self.config.server
    }

    /// Sends a registration of this account to its home server.
    pub(crate) async fn register(
        &self,
        request: &pd_proto::wire::RegisterRequest,
    ) -> Result<AccountInfo, ClientError> {
        self.client.register(request).await
    }

    /// The address the home server sees this client coming from.
    pub(crate) async fn reflexive_ip(&self) -> Result<std::net::IpAddr, ChatError> {
        Ok(self.client.whoami().await?.ip)
    }

    /// The account's address.
    pub(crate) fn address(&self) -> &Address {
        &self.config.address
    }

    /// The account's contacts (the stored lookup answers).
    pub(crate) fn contacts(&self) -> &Contacts {
        &self.contacts
    }

    /// Looks `address` up with a session token: the cached one when it is still valid,
    /// otherwise a fresh one; a 401 drops the cached token and retries once. A verified
    /// answer is stored in the contacts.
    pub(crate) async fn lookup(
        &self,
        address: &Address,
        mode: Option<LookupMode>,
    ) -> Result<VerifiedLookup, ChatError> {
        let token = self.token(false).await?;
        let answer = match self.client.lookup(address, Some(&token), mode).await {
            Err(err) if is_problem(&err, ProblemType::Unauthenticated) => {
                self.home.clear_session()?;
                let token = self.token(true).await?;
                self.client.lookup(address, Some(&token), mode).await
            }
            other => other,
        };
        let found = answer.map_err(|err| policy_refusal(address, err))?;
        self.contacts.record_lookup(&found, now_secs())?;
        Ok(found)
    }

    /// Looks `address` up, and when the home node (or the user's home node) cannot be
    /// reached, falls back to the answer stored for the contact. Without a stored answer the
    /// lookup's error stands.
    pub(crate) async fn lookup_or_stored(
        &self,
        address: &Address,
        mode: Option<LookupMode>,
    ) -> Result<Answer, ChatError> {
        match self.lookup(address, mode).await {
            Ok(found) => Ok(Answer::Live(found)),
            Err(err) => {
                let why = match err.report().1 {
                    EXIT_HOME_UNREACHABLE => "home node unreachable".to_owned(),
                    EXIT_REMOTE_UNREACHABLE => {
                        format!("the home node of {} is unreachable", address.host())
                    }
                    _ => return Err(err),
                };
                match self.contacts.get(address)? {
                    Some(contact) => Ok(Answer::Stored { contact, why }),
                    None => Err(err),
                }
            }
        }
    }

    /// The error of an operation on the account itself: "unknown user" means the home
    /// server no longer knows the account, which is said in those words.
    fn own(&self, err: ClientError) -> ChatError {
        if is_problem(&err, ProblemType::UnknownUser) {
            ChatError::AccountLost {
                address: self.address().to_string(),
                server: self.server().to_string(),
            }
        } else {
            ChatError::Client(err)
        }
    }

    /// Whether the home server accepts a login signed by the account's key (the account
    /// exists there with this key).
    pub(crate) async fn can_log_in(&self) -> Result<bool, ChatError> {
        let login = Login {
            address: self.address().clone(),
            seq: next_seq(),
        };
        match self.client.login(&Signed::sign(&self.key, &login)).await {
            // `replayed` comes after the signature check, so it proves the key too.
            Ok(_) => Ok(true),
            Err(err) if is_problem(&err, ProblemType::Replayed) => Ok(true),
            Err(err)
                if is_problem(&err, ProblemType::InvalidSignature)
                    || is_problem(&err, ProblemType::UnknownUser) =>
            {
                Ok(false)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// The client of the home server (also used for other nodes' relays).
    pub(crate) fn client(&self) -> &PdClient {
        &self.client
    }

    /// A session token of the account: the stored one while usable, else a fresh login
    /// (`fresh` forces one).
    pub(crate) async fn session_token(&self, fresh: bool) -> Result<String, ChatError> {
        self.token(fresh).await
    }

    async fn token(&self, fresh: bool) -> Result<String, ChatError> {
        let now = now_secs();
        if !fresh
            && let Some(session) = self.home.load_session()
            && session.is_usable(&self.config, now)
        {
            return Ok(session.token);
        }
        // Written out rather than with `retry_replayed`: lookups run in spawned tasks, and
        // the compiler cannot yet prove an async closure's future `Send` there.
        let login = |seq| {
            let login = Login {
                address: self.address().clone(),
                seq,
            };
            Signed::sign(&self.key, &login)
        };
        let answer = match self.client.login(&login(next_seq())).await {
            Err(err) if is_problem(&err, ProblemType::Replayed) => {
                self.client.login(&login(next_seq())).await
            }
            other => other,
        }
        .map_err(|err| self.own(err))?;
        self.home.save_session(&Session {
            address: self.address().clone(),
            server: self.config.server.clone(),
            token: answer.token.clone(),
            expires_at: now.saturating_add(answer.expires_in),
        })?;
        Ok(answer.token)
    }

    /// Publishes a signed presence record with `endpoints`, valid for `ttl`.
    pub(crate) async fn publish(
        &self,
        endpoints: &[Endpoint],
        ttl: Duration,
    ) -> Result<PublishResponse, ChatError> {
        let answer = retry_replayed(async |seq| {
            let presence = Presence {
                address: self.address().clone(),
                endpoints: endpoints.to_vec(),
                seq,
                expires_at: seq / 1_000_000 + ttl.as_secs(),
            };
            self.client
                .publish_presence(self.address(), &Signed::sign(&self.key, &presence))
                .await
        })
        .await
        .map_err(|err| self.own(err))?;
        Ok(answer)
    }

    /// Withdraws the presence record (the account appears offline).
    pub(crate) async fn withdraw(&self) -> Result<(), ChatError> {
        retry_replayed(async |seq| {
            let withdrawal = Withdrawal {
                address: self.address().clone(),
                seq,
            };
            self.client
                .withdraw(self.address(), &Signed::sign(&self.key, &withdrawal))
                .await
        })
        .await
        .map_err(|err| self.own(err))?;
        Ok(())
    }

    /// Replaces the key: the new key is staged on disk before the server is asked, and
    /// becomes `identity.key` only once the server confirmed it.
    pub(crate) async fn rotate_key(
        &self,
        pending: Option<SecretKey>,
    ) -> Result<RotateOutcome, ChatError> {
        if let Some(pending) = pending
            && self.recover_rotation(&pending).await?
        {
            return Ok(RotateOutcome::Recovered(pending.public()));
        }
        let old = self.home.key()?;
        let new = SecretKey::generate();
        self.home.stage_rotation(&old, &new)?;
        let result = retry_replayed(async |seq| {
            let rotation = Signed::sign(
                &old,
                &Rotation {
                    address: self.address().clone(),
                    new_key: new.public(),
                    seq,
                },
            );
            let new_key_signature = rotation.countersign(&new, self.address());
            let request = RotateRequest {
                rotation,
                new_key_signature,
            };
            self.client.rotate(self.address(), &request).await
        })
        .await;
        match result {
            Ok(info) => {
                self.home.commit_rotation()?;
                Ok(RotateOutcome::Rotated(info))
            }
            // The server may or may not have switched keys: keep both on disk so the next
            // `rotate-key` can find out which one is current.
            Err(err @ ClientError::Transport { .. }) => Err(err.into()),
            Err(err) => {
                self.home.abandon_rotation()?;
                Err(self.own(err))
            }
        }
    }

    /// Finishes or discards a rotation an earlier run left staged: if the server accepts a
    /// login signed by the pending key, that key is current and is moved into place
    /// (`true`); if the server refuses it, the staged files are removed (`false`).
    async fn recover_rotation(&self, pending: &SecretKey) -> Result<bool, ChatError> {
        let login = Login {
            address: self.address().clone(),
            seq: next_seq(),
        };
        // The node checks the signature before the sequence number, so `replayed` also
        // proves that the pending key is the account key.
        match self.client.login(&Signed::sign(pending, &login)).await {
            Ok(_) => {
                self.home.commit_rotation()?;
                Ok(true)
            }
            Err(err) if is_problem(&err, ProblemType::Replayed) => {
                self.home.commit_rotation()?;
                Ok(true)
            }
            Err(err) if is_problem(&err, ProblemType::InvalidSignature) => {
                self.home.abandon_rotation()?;
                Ok(false)
            }
            // Anything else proves nothing either way: keep both keys for the next attempt.
            Err(err) => Err(self.own(err)),
        }
    }

    /// Deletes the account and forgets it locally (the identity key stays). Returns false
    /// when the home server no longer knew the account (it is forgotten here all the same).
    pub(crate) async fn delete(&self) -> Result<bool, ChatError> {
        let deleted = retry_replayed(async |seq| {
            let deletion = Deletion {
                address: self.address().clone(),
                seq,
            };
            self.client
                .delete(self.address(), &Signed::sign(&self.key, &deletion))
                .await
        })
        .await;
        let known = match deleted {
            Ok(_) => true,
            Err(err) if is_problem(&err, ProblemType::UnknownUser) => false,
            Err(err) => return Err(err.into()),
        };
        self.home.clear_session()?;
        self.home.remove_config()?;
        Ok(known)
    }
}

pub(crate) fn client_for(
    server: &Url,
    ca_file: Option<std::path::PathBuf>,
) -> Result<PdClient, ChatError> {
    let options = ClientOptions::default().with_ca_file(ca_file);
    PdClient::new(server.clone(), &options).map_err(|e| match e {
        ClientError::Setup(message) => ChatError::Home(message),
        other => ChatError::Client(other),
    })
}

/// Runs a signed operation with a fresh sequence number, and once more with a newer one if
/// the server answers 409 `replayed`.
pub(crate) async fn retry_replayed<T>(
    mut op: impl AsyncFnMut(u64) -> Result<T, ClientError>,
) -> Result<T, ClientError> {
    match op(next_seq()).await {
        Err(err) if is_problem(&err, ProblemType::Replayed) => op(next_seq()).await,
        other => other,
    }
}

pub(crate) fn is_problem(err: &ClientError, kind: ProblemType) -> bool {
    err.problem().and_then(|p| p.problem_type()) == Some(kind)
}

pub(crate) use pd_proto::now_secs;

/// Names the side that refused a lookup by federation policy, in the user's terms.
fn policy_refusal(address: &Address, err: ClientError) -> ChatError {
    let domain = address.host();
    if is_problem(&err, ProblemType::RefusedByPolicy) {
        ChatError::Policy(format!("your home server does not federate with {domain}"))
    } else if is_problem(&err, ProblemType::RemoteRefused) {
        ChatError::Policy(format!("{domain} does not accept lookups from your server"))
    } else {
        ChatError::Client(err)
    }
}
