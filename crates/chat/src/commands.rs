//! The commands: each loads what it needs from the home, talks to the home server through
//! `PdClient`, and writes its result to the given output.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::CommandFactory;
use pd_client::{ClientError, ClientOptions, LookupMode, PdClient, VerifiedLookup};
use pd_proto::wire::{AccountInfo, RegisterRequest, RotateRequest};
use pd_proto::{
    Address, Deletion, Endpoint, Login, Presence, ProblemType, Registration, Rotation, SecretKey,
    Signed, Withdrawal,
};
use url::Url;

use crate::cli::Cli;
use crate::error::ChatError;
use crate::home::{Home, HomeConfig, Session};
use crate::seq::next_seq;
use crate::settings::{Action, Settings};

/// Runs one command, writing its normal output to `out` and warnings to stderr.
pub async fn run(settings: Settings, out: &mut dyn Write) -> Result<(), ChatError> {
    let Settings {
        home,
        ca_file,
        action,
    } = settings;
    match action {
        Action::Register {
            address,
            server,
            invite,
        } => register(&home, ca_file, address, server, invite, out).await,
        Action::Whoami { json } => whoami(&home, json, out),
        Action::Completions(shell) => {
            clap_complete::generate(shell, &mut Cli::command(), "chat", out);
            Ok(())
        }
        Action::Lookup {
            address,
            json,
            mode,
        } => {
            let account = Account::open(home, ca_file)?;
            let found = account.lookup(&address, mode).await?;
            print_lookup(&found, json, out)
        }
        Action::Publish { endpoints, ttl } => {
            Account::open(home, ca_file)?
                .publish(endpoints, ttl, out)
                .await
        }
        Action::Withdraw => Account::open(home, ca_file)?.withdraw(out).await,
        Action::RotateKey => {
            let pending = home.load_pending_key()?;
            Account::open_with(home, ca_file, false)?
                .rotate_key(pending, out)
                .await
        }
        Action::DeleteAccount => Account::open(home, ca_file)?.delete(out).await,
    }
}

/// A registered home with a client for its server.
#[derive(Debug)]
struct Account {
    home: Home,
    config: HomeConfig,
    key: SecretKey,
    client: PdClient,
}

impl Account {
    fn open(home: Home, ca_file: Option<std::path::PathBuf>) -> Result<Self, ChatError> {
        Self::open_with(home, ca_file, true)
    }

    /// Opens the account; `warn_pending` warns about a rotation an earlier run left staged.
    fn open_with(
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
        Ok(Self {
            home,
            config,
            key,
            client,
        })
    }

    fn address(&self) -> &Address {
        &self.config.address
    }

    /// Looks `address` up with a session token: the cached one when it is still valid,
    /// otherwise a fresh one; a 401 drops the cached token and retries once.
    async fn lookup(
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
        answer.map_err(|err| policy_refusal(address, err))
    }

    async fn token(&self, fresh: bool) -> Result<String, ChatError> {
        let now = now_secs();
        if !fresh
            && let Some(session) = self.home.load_session()
            && session.is_usable(&self.config, now)
        {
            return Ok(session.token);
        }
        let answer = retry_replayed(async |seq| {
            let login = Login {
                address: self.address().clone(),
                seq,
            };
            self.client.login(&Signed::sign(&self.key, &login)).await
        })
        .await?;
        self.home.save_session(&Session {
            address: self.address().clone(),
            server: self.config.server.clone(),
            token: answer.token.clone(),
            expires_at: now.saturating_add(answer.expires_in),
        })?;
        Ok(answer.token)
    }

    async fn publish(
        &self,
        endpoints: Vec<Endpoint>,
        ttl: Duration,
        out: &mut dyn Write,
    ) -> Result<(), ChatError> {
        let answer = retry_replayed(async |seq| {
            let presence = Presence {
                address: self.address().clone(),
                endpoints: endpoints.clone(),
                seq,
                expires_at: seq / 1_000_000 + ttl.as_secs(),
            };
            self.client
                .publish_presence(self.address(), &Signed::sign(&self.key, &presence))
                .await
        })
        .await?;
        write(
            out,
            format_args!(
                "published {} endpoint(s) for {} until {}\n",
                endpoints.len(),
                self.address(),
                rfc3339(answer.expires_at)
            ),
        )
    }

    async fn withdraw(&self, out: &mut dyn Write) -> Result<(), ChatError> {
        retry_replayed(async |seq| {
            let withdrawal = Withdrawal {
                address: self.address().clone(),
                seq,
            };
            self.client
                .withdraw(self.address(), &Signed::sign(&self.key, &withdrawal))
                .await
        })
        .await?;
        write(
            out,
            format_args!("withdrew the presence record of {}\n", self.address()),
        )
    }

    /// Replaces the key: the new key is staged on disk before the server is asked, and
    /// becomes `identity.key` only once the server confirmed it.
    async fn rotate_key(
        &self,
        pending: Option<SecretKey>,
        out: &mut dyn Write,
    ) -> Result<(), ChatError> {
        if let Some(pending) = pending
            && self.recover_rotation(&pending).await?
        {
            let public = pending.public();
            return write(
                out,
                format_args!(
                    "finished an interrupted key rotation of {}\nfingerprint: {}\n",
                    self.address(),
                    public.fingerprint()
                ),
            );
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
                print_account(&info, "rotated the key of", out)
            }
            // The server may or may not have switched keys: keep both on disk so the next
            // `rotate-key` can find out which one is current.
            Err(err @ ClientError::Transport { .. }) => Err(err.into()),
            Err(err) => {
                self.home.abandon_rotation()?;
                Err(err.into())
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
            Err(err) => Err(err.into()),
        }
    }

    async fn delete(&self, out: &mut dyn Write) -> Result<(), ChatError> {
        retry_replayed(async |seq| {
            let deletion = Deletion {
                address: self.address().clone(),
                seq,
            };
            self.client
                .delete(self.address(), &Signed::sign(&self.key, &deletion))
                .await
        })
        .await?;
        self.home.clear_session()?;
        self.home.remove_config()?;
        write(
            out,
            format_args!(
                "deleted the account {} (the identity key stays in {})\n",
                self.address(),
                self.home.key_path().display()
            ),
        )
    }
}

async fn register(
    home: &Home,
    ca_file: Option<std::path::PathBuf>,
    address: Address,
    server: Url,
    invite: Option<String>,
    out: &mut dyn Write,
) -> Result<(), ChatError> {
    if let Some(existing) = home.load_config()? {
        return Err(ChatError::AlreadyRegistered {
            home: home.display_dir().to_owned(),
            address: existing.address.to_string(),
        });
    }
    if pd_client::insecure_warning_needed(&server) {
        eprintln!(
            "warning: {server} is plain http:// on a host that is not loopback; your key \
             operations and lookups travel unencrypted"
        );
    }
    let client = client_for(&server, ca_file.clone())?;
    let key = home.load_or_create_key()?;
    let registration = Registration {
        address: address.clone(),
        public_key: key.public(),
        seq: next_seq(),
    };
    let request = RegisterRequest {
        registration: Signed::sign(&key, &registration),
        invite,
    };
    let info = client.register(&request).await?;
    home.save_config(&HomeConfig {
        address,
        server,
        ca_file,
    })?;
    home.clear_session()?;
    print_account(&info, "registered", out)
}

fn whoami(home: &Home, json: bool, out: &mut dyn Write) -> Result<(), ChatError> {
    let config = home.config()?;
    let key = home.key()?.public();
    if json {
        let value = serde_json::json!({
            "address": config.address.to_string(),
            "server": config.server.to_string(),
            "public_key": key.to_string(),
            "fingerprint": key.fingerprint(),
        });
        return write(out, format_args!("{value:#}\n"));
    }
    write(
        out,
        format_args!(
            "address:     {}\nserver:      {}\nfingerprint: {}\n",
            config.address,
            config.server,
            key.fingerprint()
        ),
    )
}

fn client_for(server: &Url, ca_file: Option<std::path::PathBuf>) -> Result<PdClient, ChatError> {
    let options = ClientOptions::default().with_ca_file(ca_file);
    PdClient::new(server.clone(), &options).map_err(|e| match e {
        ClientError::Setup(message) => ChatError::Home(message),
        other => ChatError::Client(other),
    })
}

/// Runs a signed operation with a fresh sequence number, and once more with a newer one if
/// the server answers 409 `replayed`.
async fn retry_replayed<T>(
    mut op: impl AsyncFnMut(u64) -> Result<T, ClientError>,
) -> Result<T, ClientError> {
    match op(next_seq()).await {
        Err(err) if is_problem(&err, ProblemType::Replayed) => op(next_seq()).await,
        other => other,
    }
}

fn is_problem(err: &ClientError, kind: ProblemType) -> bool {
    err.problem().and_then(|p| p.problem_type()) == Some(kind)
}

fn print_account(info: &AccountInfo, verb: &str, out: &mut dyn Write) -> Result<(), ChatError> {
    write(
        out,
        format_args!(
            "{verb} {}\nfingerprint: {}\n",
            info.address, info.fingerprint
        ),
    )
}

fn print_lookup(found: &VerifiedLookup, json: bool, out: &mut dyn Write) -> Result<(), ChatError> {
    let now = now_secs();
    let response = &found.response;
    let live = found.presence.as_ref().filter(|p| p.is_live(now));
    if json {
        // The answer as the node sent it (signed envelope included, so scripts can verify
        // it themselves), plus the fields this client derived from it after verification.
        let mut value = serde_json::to_value(response)
            .map_err(|e| ChatError::Home(format!("failed to encode the answer: {e}")))?;
        if let Some(object) = value.as_object_mut() {
            object.insert(
                "fingerprint".into(),
                response.public_key.fingerprint().into(),
            );
            object.insert("online".into(), live.is_some().into());
            let endpoints: Vec<&str> = live
                .map(|p| p.endpoints.iter().map(Endpoint::as_str).collect())
                .unwrap_or_default();
            object.insert("endpoints".into(), endpoints.into());
            object.insert("expires_at".into(), live.map(|p| p.expires_at).into());
        }
        return write(out, format_args!("{value:#}\n"));
    }
    let mut text = format!(
        "{}\n  fingerprint: {}\n",
        response.address,
        response.public_key.fingerprint()
    );
    match live {
        Some(presence) => {
            text.push_str(&format!(
                "  status:      online until {}\n",
                rfc3339(presence.expires_at)
            ));
            for (i, endpoint) in presence.endpoints.iter().enumerate() {
                let label = if i == 0 { "endpoints:" } else { "" };
                text.push_str(&format!("  {label:<12} {}\n", endpoint.as_str()));
            }
        }
        None => text.push_str("  status:      offline\n"),
    }
    if let Ok(serde_json::Value::String(source)) = serde_json::to_value(response.source) {
        text.push_str(&format!("  source:      {source}\n"));
    }
    write(out, format_args!("{text}"))
}

fn write(out: &mut dyn Write, args: std::fmt::Arguments<'_>) -> Result<(), ChatError> {
    out.write_fmt(args)
        .and_then(|()| out.flush())
        .map_err(|e| ChatError::io("failed to write the output", e))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn rfc3339(unix_secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix_secs)).to_string()
}

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
