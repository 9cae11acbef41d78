//! Validated settings: the loose command line turned into typed values (addresses, URLs,
//! endpoints, durations) before any file is touched or any request is sent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use pd_client::LookupMode;
use pd_proto::{Address, Endpoint, MAX_PRESENCE_TTL_SECS};
use url::Url;

use crate::cli::{Cli, Command, ContactsCommand};
use crate::error::ChatError;
use crate::home::Home;

/// What `chat listen` was asked to do.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// Where to listen.
    pub bind: SocketAddr,
    /// Endpoints to publish instead of the detected ones (`HOST:PORT`).
    pub advertise: Vec<Endpoint>,
    /// Only these addresses may connect (everyone authenticated when empty).
    pub allow: Vec<Address>,
    /// Lifetime of the presence record.
    pub ttl: Duration,
    /// Read no input (service mode); also chosen when stdin is `/dev/null` or unreadable.
    pub no_console: bool,
    /// Whether to publish the home node's relay endpoint (when it offers one), and the
    /// direct endpoints.
    pub relay: RelayUse,
}

/// How `chat listen` uses its home node's relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayUse {
    /// Direct endpoints, and the relay when the home node offers one (the default).
    Also,
    /// Direct endpoints only (`--no-relay`).
    Never,
    /// The relay only (`--relay-only`).
    Only,
}

/// Everything a command needs, checked.
#[derive(Debug)]
pub struct Settings {
    /// Where the user's files live.
    pub home: Home,
    /// Extra CA certificates given on the command line (over the saved ones).
    pub ca_file: Option<PathBuf>,
    /// What to do.
    pub action: Action,
}

/// A command with its checked arguments.
#[derive(Debug)]
pub enum Action {
    /// Create an account.
    Register {
        /// The address to register.
        address: Address,
        /// The home server.
        server: Url,
        /// Invite token.
        invite: Option<String>,
    },
    /// Register the account the home holds again, with the same key.
    RegisterAgain {
        /// Invite token.
        invite: Option<String>,
    },
    /// Look a user up.
    Lookup {
        /// The address to look up.
        address: Address,
        /// Print JSON.
        json: bool,
        /// How the home server may use its cache (`None`: its default).
        mode: Option<LookupMode>,
    },
    /// Show the own account.
    Whoami {
        /// Print JSON.
        json: bool,
    },
    /// Publish a presence record.
    Publish {
        /// Where the user can be reached.
        endpoints: Vec<Endpoint>,
        /// How long the record stays valid.
        ttl: Duration,
    },
    /// Withdraw the presence record.
    Withdraw,
    /// Rotate the identity key.
    RotateKey,
    /// Delete the account (confirmed).
    DeleteAccount,
    /// Accept conversations.
    Listen(ListenOptions),
    /// Talk with a user.
    Connect(Address),
    /// Talk with several users in one group conversation.
    ConnectGroup(Vec<Address>),
    /// Accept a user's current key.
    Trust {
        /// The user.
        address: Address,
        /// The fingerprint the key must have.
        fingerprint: Option<String>,
    },
    /// List the contacts.
    Contacts {
        /// Print JSON.
        json: bool,
    },
    /// Forget a contact's stored answer.
    RemoveContact(Address),
    /// Show fingerprints (own when `None`).
    Fingerprint(Option<Address>),
    /// Export the chat certificate and key.
    ExportCert {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
    },
    /// Print shell completions.
    Completions(clap_complete::Shell),
}

impl Settings {
    /// Checks the command line. Every error here is a usage error (exit code 2), except a
    /// missing default home directory.
    pub fn from_cli(cli: Cli) -> Result<Self, ChatError> {
        let action = action(cli.command)?;
        let home = match cli.home {
            Some(dir) => Home::at(dir),
            None => Home::default_dirs()?,
        };
        let ca_file = cli.ca_file.map(absolute).transpose()?;
        Ok(Self {
            home,
            ca_file,
            action,
        })
    }
}

fn action(command: Command) -> Result<Action, ChatError> {
    Ok(match command {
        Command::Register {
            again: true,
            invite,
            ..
        } => Action::RegisterAgain { invite },
        Command::Register {
            address,
            server,
            invite,
            again: false,
        } => {
            let missing = || ChatError::Usage("register needs NAME@DOMAIN and --server URL".into());
            Action::Register {
                address: parse_address(&address.ok_or_else(missing)?)?,
                server: parse_server(&server.ok_or_else(missing)?)?,
                invite,
            }
        }
        Command::Lookup {
            address,
            json,
            refresh,
            cache_only,
        } => Action::Lookup {
            address: parse_address(&address)?,
            json,
            mode: match (refresh, cache_only) {
                (true, _) => Some(LookupMode::Refresh),
                (_, true) => Some(LookupMode::CacheOnly),
                _ => None,
            },
        },
        Command::Whoami { json } => Action::Whoami { json },
        Command::Publish { endpoints, ttl } => Action::Publish {
            endpoints: endpoints
                .iter()
                .map(|e| Endpoint::parse(e).map_err(|e| ChatError::Usage(e.to_string())))
                .collect::<Result<_, _>>()?,
            ttl: parse_ttl(&ttl)?,
        },
        Command::Withdraw => Action::Withdraw,
        Command::RotateKey => Action::RotateKey,
        Command::DeleteAccount { yes } => {
            if !yes {
                return Err(ChatError::Usage(
                    "deleting the account cannot be undone; confirm with --yes".to_owned(),
                ));
            }
            Action::DeleteAccount
        }
        Command::Listen {
            bind,
            advertise,
            allow,
            ttl,
            no_console,
            no_relay,
            relay_only,
        } => Action::Listen(ListenOptions {
            bind: parse_bind(&bind)?,
            advertise: advertise
                .iter()
                .map(|a| parse_advertise(a))
                .collect::<Result<_, _>>()?,
            allow: allow
                .iter()
                .map(|a| parse_address(a))
                .collect::<Result<_, _>>()?,
            ttl: parse_ttl(&ttl)?,
            no_console,
            relay: match (no_relay, relay_only) {
                (true, _) => RelayUse::Never,
                (false, true) => RelayUse::Only,
                (false, false) => RelayUse::Also,
            },
        }),
        Command::Connect { address } => connect_action(&address)?,
        Command::Trust {
            address,
            fingerprint,
        } => Action::Trust {
            address: parse_address(&address)?,
            fingerprint,
        },
        Command::Contacts { command, json } => match command {
            None => Action::Contacts { json },
            Some(ContactsCommand::Remove { address }) => {
                Action::RemoveContact(parse_address(&address)?)
            }
        },
        Command::Fingerprint { address } => {
            Action::Fingerprint(address.as_deref().map(parse_address).transpose()?)
        }
        Command::ExportCert { cert, key } => Action::ExportCert { cert, key },
        Command::Completions { shell } => Action::Completions(shell),
    })
}

fn parse_bind(input: &str) -> Result<SocketAddr, ChatError> {
    input.parse().map_err(|_| {
        ChatError::Usage(format!(
            "invalid --bind {input:?}: expected IP:PORT, e.g. 0.0.0.0:7000 or [::]:0"
        ))
    })
}

fn parse_advertise(input: &str) -> Result<Endpoint, ChatError> {
    let bad = |why: &str| ChatError::Usage(format!("invalid --advertise {input:?}: {why}"));
    if input.contains("://") {
        return Err(bad("expected HOST:PORT without a scheme"));
    }
    let endpoint = Endpoint::parse(&format!("tcp://{input}")).map_err(|e| bad(&e.to_string()))?;
    let url = Url::parse(endpoint.as_str()).map_err(|e| bad(&e.to_string()))?;
    if url.port().is_none_or(|port| port == 0) {
        return Err(bad("a port from 1 to 65535 is required"));
    }
    Ok(endpoint)
}

/// `chat connect` with one address (a two-person conversation) or several (a group of at
/// most [`MAX_MEMBERS`](pd_proto::group::MAX_MEMBERS), the user included).
fn connect_action(inputs: &[String]) -> Result<Action, ChatError> {
    let addresses: Vec<Address> = inputs
        .iter()
        .map(|a| parse_address(a))
        .collect::<Result<_, _>>()?;
    let max = pd_proto::group::MAX_MEMBERS;
    if addresses.len() >= max {
        return Err(ChatError::Usage(format!(
            "a conversation holds at most {max} members, you included: {} addresses given \
             (at most {})",
            addresses.len(),
            max - 1
        )));
    }
    for (i, address) in addresses.iter().enumerate() {
        if addresses[..i].contains(address) {
            return Err(ChatError::Usage(format!("{address} is given twice")));
        }
    }
    Ok(match <[Address; 1]>::try_from(addresses) {
        Ok([address]) => Action::Connect(address),
        Err(addresses) => Action::ConnectGroup(addresses),
    })
}

fn parse_address(input: &str) -> Result<Address, ChatError> {
    Address::parse(input).map_err(|e| ChatError::Usage(format!("invalid address {input:?}: {e}")))
}

fn parse_server(input: &str) -> Result<Url, ChatError> {
    if !input.contains("://") {
        return Err(ChatError::Usage(format!(
            "invalid server URL {input:?}: a URL needs a scheme; did you mean {}?",
            pd_client::suggest_url(input)
        )));
    }
    let url = Url::parse(input)
        .map_err(|e| ChatError::Usage(format!("invalid server URL {input:?}: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none_or(str::is_empty) {
        return Err(ChatError::Usage(format!(
            "invalid server URL {input:?}: expected https://HOST[:PORT] (or http:// for a local node)"
        )));
    }
    Ok(url)
}

fn parse_ttl(input: &str) -> Result<Duration, ChatError> {
    let ttl = humantime::parse_duration(input)
        .map_err(|e| ChatError::Usage(format!("invalid --ttl {input:?}: {e}")))?;
    if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(MAX_PRESENCE_TTL_SECS) {
        return Err(ChatError::Usage(format!(
            "invalid --ttl {input:?}: must be between 1s and 7days"
        )));
    }
    Ok(ttl)
}

fn absolute(path: PathBuf) -> Result<PathBuf, ChatError> {
    std::path::absolute(&path)
        .map_err(|e| ChatError::io(format!("failed to resolve {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn settings(args: &[&str]) -> Result<Settings, ChatError> {
        let mut argv = vec!["chat", "--home", "h"];
        argv.extend_from_slice(args);
        Settings::from_cli(Cli::try_parse_from(argv).unwrap())
    }

    fn usage_message(args: &[&str]) -> String {
        match settings(args) {
            Err(ChatError::Usage(message)) => message,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    #[test]
    fn addresses_are_parsed_and_normalised() {
        match settings(&["lookup", "Bob@PD.Test"]).unwrap().action {
            Action::Lookup {
                address,
                json,
                mode,
            } => {
                assert_eq!(address.to_string(), "bob@pd.test");
                assert!(!json);
                assert_eq!(mode, None);
            }
            other => panic!("{other:?}"),
        }
        for (flag, expected) in [
            ("--refresh", LookupMode::Refresh),
            ("--cache-only", LookupMode::CacheOnly),
        ] {
            match settings(&["lookup", "bob@pd.test", flag]).unwrap().action {
                Action::Lookup { mode, .. } => assert_eq!(mode, Some(expected)),
                other => panic!("{other:?}"),
            }
        }
        assert!(
            Cli::try_parse_from(["chat", "lookup", "bob@pd.test", "--refresh", "--cache-only"])
                .is_err()
        );
        let message = usage_message(&["lookup", "bob@@pd.test"]);
        assert!(message.contains("more than one '@'"), "{message}");
        assert_eq!(settings(&["lookup", "nope"]).unwrap_err().report().1, 2);
    }

    #[test]
    fn server_urls_must_be_http_or_https() {
        assert!(settings(&["register", "a@pd.test", "--server", "https://pd.test"]).is_ok());
        assert!(settings(&["register", "a@pd.test", "--server", "http://127.0.0.1:8080"]).is_ok());
        for bad in ["ftp://pd.test", "pd.test", "https://"] {
            usage_message(&["register", "a@pd.test", "--server", bad]);
        }
    }

    #[test]
    fn publish_checks_endpoints_and_ttl() {
        match settings(&[
            "publish",
            "--endpoint",
            "tcp://192.0.2.1:7000",
            "--ttl",
            "2h",
        ])
        .unwrap()
        .action
        {
            Action::Publish { endpoints, ttl } => {
                assert_eq!(endpoints.len(), 1);
                assert_eq!(ttl, Duration::from_secs(7200));
            }
            other => panic!("{other:?}"),
        }
        usage_message(&["publish", "--endpoint", "no-port://x"]);
        usage_message(&["publish", "--endpoint", "tcp://a:1", "--ttl", "8days"]);
        usage_message(&["publish", "--endpoint", "tcp://a:1", "--ttl", "soon"]);
    }

    #[test]
    fn listen_checks_its_options() {
        match settings(&[
            "listen",
            "--bind",
            "127.0.0.1:7000",
            "--advertise",
            "chat.example:7000",
            "--advertise",
            "[2001:db8::1]:7000",
            "--allow",
            "Bob@B.example",
        ])
        .unwrap()
        .action
        {
            Action::Listen(options) => {
                assert_eq!(options.bind, "127.0.0.1:7000".parse().unwrap());
                let advertised: Vec<&str> =
                    options.advertise.iter().map(Endpoint::as_str).collect();
                assert_eq!(
                    advertised,
                    ["tcp://chat.example:7000", "tcp://[2001:db8::1]:7000"]
                );
                assert_eq!(options.allow[0].to_string(), "bob@b.example");
                assert_eq!(options.ttl, Duration::from_secs(600));
            }
            other => panic!("{other:?}"),
        }
        assert!(usage_message(&["listen", "--bind", "localhost"]).contains("--bind"));
        assert!(usage_message(&["listen", "--advertise", "tcp://a:1"]).contains("scheme"));
        assert!(usage_message(&["listen", "--advertise", "a.example"]).contains("port"));
        assert!(usage_message(&["listen", "--advertise", "a.example:0"]).contains("port"));
        assert!(usage_message(&["listen", "--allow", "nope"]).contains("invalid address"));
        match settings(&["listen", "--no-console"]).unwrap().action {
            Action::Listen(options) => assert!(options.no_console),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            settings(&["connect", "bob@b.example"]).unwrap().action,
            Action::Connect(_)
        ));
        assert_eq!(settings(&["connect", "bob"]).unwrap_err().report().1, 2);
        let many: Vec<String> = (0..16).map(|i| format!("u{i}@h.example")).collect();
        let args = |n: usize| {
            let mut args = vec!["connect"];
            args.extend(many[..n].iter().map(String::as_str));
            args
        };
        match settings(&args(15)).unwrap().action {
            Action::ConnectGroup(addresses) => assert_eq!(addresses.len(), 15),
            other => panic!("{other:?}"),
        }
        let refused = settings(&args(16)).unwrap_err();
        assert_eq!(refused.report().1, 2);
        assert!(
            refused.to_string().contains("at most 16 members"),
            "{refused}"
        );
        assert!(usage_message(&["connect", "bob@b.example", "Bob@b.example"]).contains("twice"));
    }

    #[test]
    fn contacts_list_or_remove_one() {
        assert!(matches!(
            settings(&["contacts"]).unwrap().action,
            Action::Contacts { json: false }
        ));
        assert!(matches!(
            settings(&["contacts", "--json"]).unwrap().action,
            Action::Contacts { json: true }
        ));
        match settings(&["contacts", "remove", "Bob@B.example"])
            .unwrap()
            .action
        {
            Action::RemoveContact(address) => assert_eq!(address.to_string(), "bob@b.example"),
            other => panic!("{other:?}"),
        }
        assert!(usage_message(&["contacts", "remove", "nope"]).contains("invalid address"));
    }

    #[test]
    fn delete_needs_confirmation() {
        assert!(usage_message(&["delete-account"]).contains("--yes"));
        assert!(matches!(
            settings(&["delete-account", "--yes"]).unwrap().action,
            Action::DeleteAccount
        ));
    }

    #[test]
    fn the_ca_file_is_made_absolute() {
        let s = settings(&["whoami", "--ca-file", "ca.pem"]).unwrap();
        assert!(s.ca_file.unwrap().is_absolute());
    }
}
