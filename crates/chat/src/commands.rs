//! The commands: each loads what it needs from the home, talks to the home server through
//! `PdClient`, and writes its result to the given output.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use clap::CommandFactory;
use pd_client::VerifiedLookup;
use pd_proto::wire::{AccountInfo, RegisterRequest};
use pd_proto::{Address, Endpoint, ProblemType, Registration, Signed};
use url::Url;

use crate::account::{Account, Answer, RotateOutcome, client_for, is_problem, now_secs};
use crate::cli::Cli;
use crate::contacts::{Contacts, age};
use crate::error::ChatError;
use crate::home::{Home, HomeConfig, write_new_private};
use crate::peer::PeerError;
use crate::peer::cert::IdentityCert;
use crate::peer::known::KnownPeers;
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
        Action::RegisterAgain { invite } => register_again(home, ca_file, invite, out).await,
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
            match account.lookup_or_stored(&address, mode).await? {
                Answer::Live(found) => print_lookup(&found, None, json, out),
                Answer::Stored { contact, why } => {
                    eprintln!(
                        "warning: {why}: showing the answer stored {} ago",
                        age(contact.fetched_at, now_secs())
                    );
                    print_lookup(&contact.lookup, Some(contact.fetched_at), json, out)
                }
            }
        }
        Action::Publish { endpoints, ttl } => {
            let account = Account::open(home, ca_file)?;
            let answer = account.publish(&endpoints, ttl).await?;
            write(
                out,
                format_args!(
                    "published {} endpoint(s) for {} until {}\n",
                    endpoints.len(),
                    account.address(),
                    rfc3339(answer.expires_at)
                ),
            )
        }
        Action::Withdraw => {
            let account = Account::open(home, ca_file)?;
            account.withdraw().await?;
            write(
                out,
                format_args!("withdrew the presence record of {}\n", account.address()),
            )
        }
        Action::RotateKey => {
            let pending = home.load_pending_key()?;
            let account = Account::open_with(home, ca_file, false)?;
            match account.rotate_key(pending).await? {
                RotateOutcome::Recovered(public) => write(
                    out,
                    format_args!(
                        "finished an interrupted key rotation of {}\nfingerprint: {}\n",
                        account.address(),
                        public.fingerprint()
                    ),
                ),
                RotateOutcome::Rotated(info) => print_account(&info, "rotated the key of", out),
            }
        }
        Action::Listen(options) => {
            crate::listen::listen(Account::open(home, ca_file)?, options, out).await
        }
        Action::Connect(address) => {
            crate::connect::connect(Account::open(home, ca_file)?, address, out).await
        }
        Action::Trust {
            address,
            fingerprint,
        } => trust(Account::open(home, ca_file)?, &address, fingerprint, out).await,
        Action::Contacts { json } => list_contacts(&home, json, out),
        Action::RemoveContact(address) => {
            home.config()?;
            if Contacts::new(home).remove(&address)? {
                write(out, format_args!("forgot the stored answer of {address}\n"))
            } else {
                Err(ChatError::Home(format!(
                    "{address} is not among the contacts (`chat contacts` lists them)"
                )))
            }
        }
        Action::Fingerprint(None) => {
            let key = home.key()?.public();
            write(out, format_args!("{}\n", key.fingerprint()))
        }
        Action::Fingerprint(Some(address)) => {
            fingerprint(Account::open(home, ca_file)?, &address, out).await
        }
        Action::ExportCert { cert, key } => export_cert(&home, &cert, &key, out),
        Action::DeleteAccount => {
            let account = Account::open(home, ca_file)?;
            let verb = if account.delete().await? {
                "deleted the account"
            } else {
                "the home server no longer knew the account; forgot"
            };
            write(
                out,
                format_args!(
                    "{verb} {} (the identity key stays in {})\n",
                    account.address(),
                    account.home().key_path().display()
                ),
            )
        }
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

/// `chat register --again`: registers the account the home holds once more, with the same
/// key, at the same home server, for when the server lost it. When the server still holds
/// the name, a login tells whether it is this account (nothing to do) or someone else's.
async fn register_again(
    home: Home,
    ca_file: Option<std::path::PathBuf>,
    invite: Option<String>,
    out: &mut dyn Write,
) -> Result<(), ChatError> {
    let account = Account::open(home, ca_file)?;
    let key = account.key();
    let registration = Registration {
        address: account.address().clone(),
        public_key: key.public(),
        seq: next_seq(),
    };
    let request = RegisterRequest {
        registration: Signed::sign(key, &registration),
        invite,
    };
    match account.register(&request).await {
        Ok(info) => {
            account.home().clear_session()?;
            print_account(&info, "registered again, with the same key,", out)
        }
        Err(err) if is_problem(&err, ProblemType::NameTaken) => {
            if account.can_log_in().await? {
                write(
                    out,
                    format_args!(
                        "{} is still registered at {} with your key; nothing to do\nfingerprint: {}\n",
                        account.address(),
                        account.server(),
                        key.public().fingerprint()
                    ),
                )
            } else {
                Err(ChatError::AccountTaken {
                    address: account.address().to_string(),
                    server: account.server().to_string(),
                })
            }
        }
        Err(err) => Err(err.into()),
    }
}

/// `chat trust`: remembers the key the home node now vouches for, after the user compared
/// fingerprints by another way.
async fn trust(
    account: Account,
    address: &Address,
    fingerprint: Option<String>,
    out: &mut dyn Write,
) -> Result<(), ChatError> {
    let found = account.lookup(address, None).await?;
    let key = *found.public_key();
    if let Some(expected) = fingerprint
        && !same_fingerprint(&expected, &key.fingerprint())
    {
        return Err(PeerError::FingerprintDiffers {
            address: address.clone(),
            given: expected,
            current: key.fingerprint(),
        }
        .into());
    }
    let known = KnownPeers::new(account.home().clone());
    match known.trust(address, &key)? {
        Some(previous) if previous == key => write(
            out,
            format_args!("{address} already trusted with key {}\n", key.fingerprint()),
        ),
        Some(previous) => write(
            out,
            format_args!(
                "{address}: now trusting key {} (instead of {})\n",
                key.fingerprint(),
                previous.fingerprint()
            ),
        ),
        None => write(
            out,
            format_args!("{address}: now trusting key {}\n", key.fingerprint()),
        ),
    }
}

/// Fingerprints compare without case and separators, so a fingerprint read aloud or typed
/// without dashes still matches.
fn same_fingerprint(a: &str, b: &str) -> bool {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase())
            .collect()
    };
    clean(a) == clean(b)
}

/// `chat fingerprint ADDRESS`: the key the user's home node vouches for, and the one
/// remembered here.
async fn fingerprint(
    account: Account,
    address: &Address,
    out: &mut dyn Write,
) -> Result<(), ChatError> {
    let found = account.lookup(address, None).await?;
    let current = found.public_key();
    let remembered = KnownPeers::new(account.home().clone()).get(address)?;
    let remembered = match remembered {
        None => "none (you have not talked yet)".to_owned(),
        Some(key) if key == *current => format!("{} (the same)", key.fingerprint()),
        Some(key) if found.rotated_from(&key).is_ok() => format!(
            "{} (rotated since: the new key is signed by this one, so `chat connect` accepts \
             it and remembers it)",
            key.fingerprint()
        ),
        Some(key) => format!(
            "{} (DIFFERENT, and no rotation signed by this key leads to the new one: see `chat \
             trust`)",
            key.fingerprint()
        ),
    };
    write(
        out,
        format_args!(
            "{address}\n  fingerprint: {}\n  remembered:  {remembered}\n",
            current.fingerprint()
        ),
    )
}

/// `chat export-cert`: the certificate this account presents in conversations, and its key.
fn export_cert(
    home: &Home,
    cert_path: &Path,
    key_path: &Path,
    out: &mut dyn Write,
) -> Result<(), ChatError> {
    let config = home.config()?;
    let key = home.key()?;
    let identity =
        IdentityCert::new(&key, &config.address).map_err(|e| PeerError::Setup(e.to_string()))?;
    write_new_private(key_path, identity.private_key_pem().as_bytes())?;
    std::fs::write(cert_path, identity.cert_pem.as_bytes())
        .map_err(|e| ChatError::io(format!("failed to write {}", cert_path.display()), e))?;
    write(
        out,
        format_args!(
            "wrote the certificate of {} to {} and its private key to {}\n",
            config.address,
            cert_path.display(),
            key_path.display()
        ),
    )
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

fn print_account(info: &AccountInfo, verb: &str, out: &mut dyn Write) -> Result<(), ChatError> {
    write(
        out,
        format_args!(
            "{verb} {}\nfingerprint: {}\n",
            info.address, info.fingerprint
        ),
    )
}

/// Prints a lookup answer; `stored_at` is when a stored answer (shown because the home node
/// could not be reached) was fetched.
fn print_lookup(
    found: &VerifiedLookup,
    stored_at: Option<u64>,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), ChatError> {
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
            if let Some(stored_at) = stored_at {
                object.insert("source".into(), "stored".into());
                object.insert("stored_at".into(), stored_at.into());
                object.insert(
                    "stored_age_secs".into(),
                    now.saturating_sub(stored_at).into(),
                );
                let expired = found.presence.as_ref().filter(|p| !p.is_live(now));
                let expired_endpoints: Vec<&str> = expired
                    .map(|p| p.endpoints.iter().map(Endpoint::as_str).collect())
                    .unwrap_or_default();
                object.insert("expired_endpoints".into(), expired_endpoints.into());
            }
        }
        return write(out, format_args!("{value:#}\n"));
    }
    let mut text = format!(
        "{}\n  fingerprint: {}\n",
        response.address,
        response.public_key.fingerprint()
    );
    let endpoints = |presence: &pd_proto::Presence, text: &mut String| {
        for (i, endpoint) in presence.endpoints.iter().enumerate() {
            let label = if i == 0 { "endpoints:" } else { "" };
            text.push_str(&format!("  {label:<12} {}\n", endpoint.as_str()));
        }
    };
    match (live, &found.presence) {
        (Some(presence), _) => {
            text.push_str(&format!(
                "  status:      online until {}\n",
                rfc3339(presence.expires_at)
            ));
            endpoints(presence, &mut text);
        }
        (None, Some(presence)) if stored_at.is_some() => {
            text.push_str(&format!(
                "  status:      offline? (its record expired at {}, {} ago)\n",
                rfc3339(presence.expires_at),
                age(presence.expires_at, now)
            ));
            endpoints(presence, &mut text);
        }
        _ => text.push_str("  status:      offline\n"),
    }
    match stored_at {
        Some(stored_at) => text.push_str(&format!(
            "  source:      stored\n  stored:      {} ago ({})\n",
            age(stored_at, now),
            rfc3339(stored_at)
        )),
        None => {
            if let Ok(serde_json::Value::String(source)) = serde_json::to_value(response.source) {
                text.push_str(&format!("  source:      {source}\n"));
            }
        }
    }
    write(out, format_args!("{text}"))
}

/// `chat contacts`: everyone whose answer is stored, with when they were last seen online and
/// talked with.
fn list_contacts(home: &Home, json: bool, out: &mut dyn Write) -> Result<(), ChatError> {
    home.config()?;
    let contacts = Contacts::new(home.clone()).list()?;
    let now = now_secs();
    if json {
        let list: Vec<serde_json::Value> = contacts
            .iter()
            .map(|c| {
                serde_json::json!({
                    "address": c.address,
                    "public_key": c.key.map(|k| k.to_string()),
                    "fingerprint": c.key.map(|k| k.fingerprint()),
                    "fetched_at": c.fetched_at,
                    "last_seen_online": c.last_seen_online,
                    "last_talked": c.last_talked,
                    "damaged": c.damaged,
                })
            })
            .collect();
        return write(out, format_args!("{:#}\n", serde_json::Value::from(list)));
    }
    if contacts.is_empty() {
        return write(
            out,
            format_args!(
                "no contacts yet (an answer is kept for everyone you look up or talk with)\n"
            ),
        );
    }
    let when =
        |t: Option<u64>| t.map_or_else(|| "never".to_owned(), |t| format!("{} ago", age(t, now)));
    let rows: Vec<[String; 5]> = contacts
        .iter()
        .map(|c| {
            [
                c.address.clone(),
                c.key.map_or_else(
                    || "(damaged: `chat contacts remove` it)".to_owned(),
                    |k| k.fingerprint(),
                ),
                when(c.last_seen_online),
                when(c.last_talked),
                when(Some(c.fetched_at)),
            ]
        })
        .collect();
    let header = [
        "ADDRESS",
        "FINGERPRINT",
        "LAST SEEN ONLINE",
        "LAST TALKED",
        "STORED",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |cells: [&str; 5]| {
        let mut row = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                row.push_str(cell);
            } else {
                row.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.push_str(row.trim_end());
        text.push('\n');
    };
    line(header);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
    write(out, format_args!("{text}"))
}

pub(crate) fn write(out: &mut dyn Write, args: std::fmt::Arguments<'_>) -> Result<(), ChatError> {
    out.write_fmt(args)
        .and_then(|()| out.flush())
        .map_err(|e| ChatError::io("failed to write the output", e))
}

pub(crate) fn rfc3339(unix_secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix_secs)).to_string()
}
