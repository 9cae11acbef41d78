//! The command line of `chat` as clap sees it: loose strings, checked later by `settings`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The exit codes, as `chat --help` lists them (the table in `error` and the README).
const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    any other error (local files, unexpected server errors)
  2    bad command line or malformed address
  3    unknown user
  4    the home server is unreachable (connection, TLS, timeout, 503)
  5    the home server refused the request (other 4xx: name taken, invite required, ...)
  6    the user's home node is unreachable or timed out
  7    invalid answer: bad signature, a record for someone else, garbage
  8    refused by federation policy
  9    the domain has no PD node
  10   the user is offline (no current presence record)
  11   every endpoint of the user is unreachable
  12   key mismatch: the peer presented another key than its record vouches for
  13   the peer's key changed with no rotation signed by the old key (see chat trust)
  14   the listener refused the conversation
  15   the conversation broke: the peer vanished or broke the protocol
  16   the home server no longer knows your account (chat register --again)
  129, 130, 143   SIGHUP, Ctrl+C or SIGTERM ended listen or connect before it could finish";

/// Find people on the PD network, tell it where you can be reached, and talk with them
/// directly over an authenticated, encrypted channel.
#[derive(Debug, Parser)]
#[command(
    name = "chat",
    version,
    propagate_version = true,
    after_help = "Exit codes: 0 success, 2 bad command line, 3 unknown user, 4 home server \
                  unreachable, ... (the whole table: chat --help)",
    after_long_help = EXIT_CODES
)]
pub struct Cli {
    /// Directory holding your identity key, configuration and session (several users on one
    /// machine use several homes) [default: the XDG config and data directories]
    #[arg(long, global = true, env = "CHAT_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// PEM file of extra CA certificates to trust, for a home server with a private CA
    /// (saved by `register`; given later, it replaces the saved one for that run)
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an account NAME@DOMAIN on a home server (creates the identity key if there is
    /// none, and saves the home server)
    Register {
        /// The address to register, NAME@DOMAIN
        #[arg(required_unless_present = "again")]
        address: Option<String>,
        /// The home server's URL, https://... (http:// only for a local node)
        #[arg(long, value_name = "URL", required_unless_present = "again")]
        server: Option<String>,
        /// Invite token, when the server only accepts invited users
        #[arg(long, value_name = "TOKEN")]
        invite: Option<String>,
        /// Register the account this home holds again, with the same key, at the same home
        /// server: for when the home server no longer knows it (say, its data was restored
        /// from an older backup)
        #[arg(long, conflicts_with_all = ["address", "server"])]
        again: bool,
    },
    /// Look up a user through your home server: key fingerprint, online or not, endpoints
    Lookup {
        /// The address to look up, NAME@DOMAIN
        address: String,
        /// Print the lookup answer as JSON, for scripts
        #[arg(long)]
        json: bool,
        /// Ask the user's home node again, bypassing your home server's cache
        #[arg(long, conflicts_with = "cache_only")]
        refresh: bool,
        /// Answer only from your home server's cache, never asking the user's home node
        #[arg(long)]
        cache_only: bool,
    },
    /// Show your address, home server and key fingerprint
    Whoami {
        /// Print as JSON, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Tell your home server where you can be reached
    Publish {
        /// An endpoint URL such as tcp://203.0.113.5:7000 (repeat for several, best first)
        #[arg(long = "endpoint", value_name = "URL", required = true)]
        endpoints: Vec<String>,
        /// How long the record stays valid (at most 7 days)
        #[arg(long, value_name = "DURATION", default_value = "1h")]
        ttl: String,
    },
    /// Withdraw your presence record (appear offline)
    Withdraw,
    /// Replace your identity key with a new one (the old key signs, the new key accepts)
    RotateKey,
    /// Delete your account on the home server
    DeleteAccount {
        /// Confirm the deletion
        #[arg(long)]
        yes: bool,
    },
    /// Wait for conversations: publish where you can be reached, accept peers, talk with
    /// several at once (/list, /to ADDRESS, /quit); withdraws the record on exit
    Listen {
        /// Address and port to listen on (0.0.0.0:0: a free port on all interfaces)
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:0")]
        bind: String,
        /// HOST:PORT to publish instead of the detected addresses (repeat for several, best
        /// first), e.g. a port forwarded on your router
        #[arg(long = "advertise", value_name = "HOST:PORT")]
        advertise: Vec<String>,
        /// Accept only this peer (repeat for several), and join its group invitations at
        /// once (others wait for /join) [default: every authenticated peer]
        #[arg(long = "allow", value_name = "ADDRESS")]
        allow: Vec<String>,
        /// How long each published presence record stays valid (republished at half)
        #[arg(long, value_name = "DURATION", default_value = "10m")]
        ttl: String,
        /// Read no input, for running in the background or as a service: received lines go
        /// to stdout, Ctrl+C or SIGTERM leaves (the default when stdin is /dev/null)
        #[arg(long)]
        no_console: bool,
        /// Publish no relay endpoint, even when the home node offers a relay (peers then
        /// need a direct endpoint)
        #[arg(long, conflicts_with = "relay_only")]
        no_relay: bool,
        /// Publish only the home node's relay endpoint, no direct one, so your IP address is
        /// not published (needs a home node that offers a relay)
        #[arg(long)]
        relay_only: bool,
    },
    /// Talk with a user: look them up, check their key, connect, send the lines you type (or
    /// pipe in) and print what they say; ends at end of input or /quit
    Connect {
        /// The address to talk with, NAME@DOMAIN; several (at most 15) open one group
        /// conversation with all of them
        #[arg(required = true, num_args = 1..)]
        address: Vec<String>,
    },
    /// List your contacts: everyone you looked up or talked with, whose last verified
    /// lookup answer is kept for when your home node is unreachable
    Contacts {
        /// What to do with the contacts [default: list them]
        #[command(subcommand)]
        command: Option<ContactsCommand>,
        /// Print the list as JSON, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Accept the current key of a user whose key changed (after comparing fingerprints by
    /// another way)
    Trust {
        /// The user, NAME@DOMAIN
        address: String,
        /// Accept the key only if it has this fingerprint (as `chat fingerprint` shows it)
        #[arg(long, value_name = "FINGERPRINT")]
        fingerprint: Option<String>,
    },
    /// Show a user's key fingerprint as their home node vouches for it and as remembered
    /// here, to compare out of band (without ADDRESS: your own)
    Fingerprint {
        /// The user, NAME@DOMAIN
        address: Option<String>,
    },
    /// Write your chat certificate and its private key as PEM files, for checks with
    /// standard TLS tools (e.g. openssl s_client)
    ExportCert {
        /// Where to write the certificate
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// Where to write the private key (created with mode 0600; must not exist)
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// Print shell completions
    Completions {
        /// The shell to generate completions for
        shell: clap_complete::Shell,
    },
}

/// What `chat contacts` does besides listing.
#[derive(Debug, Subcommand)]
pub enum ContactsCommand {
    /// Forget the answer stored for a user (the key remembered in known_peers stays)
    Remove {
        /// The user, NAME@DOMAIN
        address: String,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_are_accepted_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "chat",
            "register",
            "alice@pd.test",
            "--server",
            "https://pd.test",
            "--ca-file",
            "ca.pem",
            "--home",
            "h",
        ])
        .unwrap();
        assert_eq!(cli.home, Some(PathBuf::from("h")));
        assert_eq!(cli.ca_file, Some(PathBuf::from("ca.pem")));
    }

    #[test]
    fn register_needs_an_address_and_a_server_unless_again() {
        assert!(Cli::try_parse_from(["chat", "register"]).is_err());
        assert!(Cli::try_parse_from(["chat", "register", "a@pd.test"]).is_err());
        let again = Cli::try_parse_from(["chat", "register", "--again"]).unwrap();
        assert!(matches!(
            again.command,
            Command::Register { again: true, .. }
        ));
        assert!(
            Cli::try_parse_from(["chat", "register", "--again", "a@pd.test"]).is_err(),
            "--again takes the account the home holds"
        );
    }

    #[test]
    fn publish_needs_an_endpoint() {
        assert!(Cli::try_parse_from(["chat", "publish"]).is_err());
        let cli = Cli::try_parse_from([
            "chat",
            "publish",
            "--endpoint",
            "tcp://a:1",
            "--endpoint",
            "tcp://b:2",
        ])
        .unwrap();
        match cli.command {
            Command::Publish { endpoints, ttl } => {
                assert_eq!(endpoints, ["tcp://a:1", "tcp://b:2"]);
                assert_eq!(ttl, "1h");
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}
