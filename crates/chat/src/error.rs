//! What can go wrong in `chat`, and how each failure becomes one line of text and an exit
//! code.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success |
//! | 1 | any other error (local files, server errors without a more precise code) |
//! | 2 | bad command line or malformed address |
//! | 3 | unknown user |
//! | 4 | the home server is unreachable (connection, TLS, timeout, 503) |
//! | 5 | the home server refused the request (other 4xx) |
//! | 6 | the user's home node is unreachable or timed out (504 `remote-unreachable`) |
//! | 7 | invalid answer (bad signature, wrong record, undecodable, 502 `bad-remote-answer`) |
//! | 8 | refused by federation policy (403 `refused-by-policy`, `remote-refused`) |
//! | 9 | the domain has no PD node (502 `no-pd-node`) |
//! | 10 | the user is offline (no current presence record) |
//! | 11 | every endpoint of the user is unreachable |
//! | 12 | key mismatch: the peer presented another key than its record (possible impersonation) |
//! | 13 | the peer's key changed since the last conversation, with no signed rotation |
//! | 14 | the listener refused the conversation |
//! | 15 | the conversation broke: the peer vanished or broke the protocol |
//! | 129, 130, 143 | SIGHUP, Ctrl+C (SIGINT) or SIGTERM ended `listen` or `connect` before it could finish: while connecting, or a second time while leaving |
//! | 16 | the home server no longer knows your own account (`chat register --again`) |

use std::path::PathBuf;

use pd_client::{ClientError, TransportKind};
use pd_proto::{Problem, ProblemType};

/// Exit code: any other error.
pub const EXIT_OTHER: u8 = 1;
/// Exit code: bad command line or malformed address.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: unknown user.
pub const EXIT_UNKNOWN_USER: u8 = 3;
/// Exit code: the home server is unreachable.
pub const EXIT_HOME_UNREACHABLE: u8 = 4;
/// Exit code: the home server refused the request.
pub const EXIT_REFUSED: u8 = 5;
/// Exit code: the looked-up user's home node is unreachable or timed out.
pub const EXIT_REMOTE_UNREACHABLE: u8 = 6;
/// Exit code: an answer was invalid.
pub const EXIT_INVALID_ANSWER: u8 = 7;
/// Exit code: refused by federation policy.
pub const EXIT_POLICY: u8 = 8;
/// Exit code: the domain has no PD node.
pub const EXIT_NO_PD_NODE: u8 = 9;
/// Exit code: the user is offline.
pub const EXIT_OFFLINE: u8 = 10;
/// Exit code: every endpoint of the user is unreachable.
pub const EXIT_PEER_UNREACHABLE: u8 = 11;
/// Exit code: the peer presented another key than its record.
pub const EXIT_KEY_MISMATCH: u8 = 12;
/// Exit code: the peer's key changed with no signed rotation.
pub const EXIT_KEY_CHANGED: u8 = 13;
/// Exit code: the listener refused the conversation.
pub const EXIT_PEER_REFUSED: u8 = 14;
/// Exit code: the conversation broke.
pub const EXIT_CONVERSATION_BROKE: u8 = 15;
/// Exit code: the home server no longer knows the user's own account.
pub const EXIT_ACCOUNT_LOST: u8 = 16;

/// A failed `chat` command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    /// The command line is wrong (including a malformed address).
    #[error("{0}")]
    Usage(String),
    /// A call to the home server failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The home has no account yet.
    #[error("no account in {}: run `chat register NAME@DOMAIN --server URL` first", .0.display())]
    NotRegistered(PathBuf),
    /// The home already holds an account.
    #[error(
        "{} already holds the account {address}; use another --home for another account, or \
         `chat register --again` to register this one again at its home server",
        .home.display()
    )]
    AlreadyRegistered {
        /// The home directory.
        home: PathBuf,
        /// The account it holds.
        address: String,
    },
    /// A local file could not be read or written, or is malformed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. `failed to write /home/a/identity.key`.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The home server answered that the user's own account does not exist: it lost it
    /// (its data restored from an older backup, say).
    #[error(
        "your home server {server} no longer knows your account {address} (was its data \
         restored from an older backup?); to register the same key again, run `chat register \
         --again`"
    )]
    AccountLost {
        /// The account.
        address: String,
        /// The home server.
        server: String,
    },
    /// `register --again`: the name is registered with another key than the home's.
    #[error(
        "{address} is registered at {server} with another key than yours; the home server \
         gave the name to someone else"
    )]
    AccountTaken {
        /// The account.
        address: String,
        /// The home server.
        server: String,
    },
    /// A lookup refused by federation policy, by the home server or by the user's node.
    #[error("{0}")]
    Policy(String),
    /// A local file holds something unusable.
    #[error("{0}")]
    Home(String),
    /// A peer-to-peer conversation could not be opened or broke.
    #[error(transparent)]
    Peer(Box<crate::peer::PeerError>),
    /// A signal ended the command before it could finish.
    #[error("{message}")]
    Interrupted {
        /// What was cut short.
        message: String,
        /// The exit code (128 plus the signal's number).
        code: u8,
    },
    /// `chat listen` left but could not withdraw its presence record.
    #[error("could not withdraw the presence record (it stays valid until {until}): {why}")]
    NotWithdrawn {
        /// When the record expires on its own (RFC 3339).
        until: String,
        /// Why the withdrawal failed.
        why: String,
        /// The exit code of that failure.
        code: u8,
    },
}

impl From<crate::peer::PeerError> for ChatError {
    fn from(err: crate::peer::PeerError) -> Self {
        Self::Peer(Box::new(err))
    }
}

impl ChatError {
    /// The one-line message and the exit code for this error.
    pub fn report(&self) -> (String, u8) {
        let (message, code) = match self {
            Self::Usage(message) => (message.clone(), EXIT_USAGE),
            Self::Policy(message) => (message.clone(), EXIT_POLICY),
            Self::Client(err) => classify(err),
            Self::Peer(err) => (err.to_string(), peer_exit_code(err)),
            Self::Interrupted { message, code } => (message.clone(), *code),
            Self::NotWithdrawn { code, .. } => (self.to_string(), *code),
            Self::AccountLost { .. } => (self.to_string(), EXIT_ACCOUNT_LOST),
            Self::AccountTaken { .. } => (self.to_string(), EXIT_REFUSED),
            other => (other.to_string(), EXIT_OTHER),
        };
        (one_line(&message), code)
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// The exit code of a failed conversation.
pub fn peer_exit_code(err: &crate::peer::PeerError) -> u8 {
    use crate::peer::PeerError as E;
    match err {
        E::Offline(_) => EXIT_OFFLINE,
        E::Unreachable { .. } => EXIT_PEER_UNREACHABLE,
        E::KeyMismatch { .. } | E::FingerprintDiffers { .. } => EXIT_KEY_MISMATCH,
        E::KeyChanged { .. } => EXIT_KEY_CHANGED,
        E::Refused { .. } => EXIT_PEER_REFUSED,
        E::Protocol { .. } | E::Ended(_) => EXIT_CONVERSATION_BROKE,
        E::Setup(_) => EXIT_OTHER,
    }
}

/// The message and exit code for a failed call to the home server.
pub fn classify(err: &ClientError) -> (String, u8) {
    match err {
        ClientError::Problem(problem) => {
            let code = problem_exit_code(problem);
            let lead = match code {
                _ if problem.problem_type() == Some(ProblemType::NotCached) => {
                    "no cached answer (a --cache-only lookup never asks the user's node)"
                }
                EXIT_USAGE => "malformed address",
                EXIT_UNKNOWN_USER => "unknown user",
                EXIT_HOME_UNREACHABLE => "the home server is unavailable",
                EXIT_REFUSED => "the home server refused the request",
                EXIT_REMOTE_UNREACHABLE => "the user's home node is unreachable",
                EXIT_INVALID_ANSWER => "invalid answer from the user's home node",
                EXIT_POLICY => "refused by federation policy",
                EXIT_NO_PD_NODE => "the domain has no PD node",
                _ if problem.problem_type() == Some(ProblemType::NotImplemented) => {
                    "not supported by the home server"
                }
                _ => "the home server failed",
            };
            let text = if problem.detail.is_empty() {
                problem.title.as_str()
            } else {
                problem.detail.as_str()
            };
            if problem.kind == "about:blank" && !matches!(problem.status, 502..=504) {
                // No problem document: not a PD node, and its detail says so.
                return (text.to_owned(), code);
            }
            (format!("{lead}: {text} (HTTP {})", problem.status), code)
        }
        ClientError::Transport {
            kind, url, cause, ..
        } => {
            let message = match kind {
                TransportKind::Connect => {
                    format!("cannot reach the home server at {url}: {cause}")
                }
                TransportKind::Tls => format!(
                    "TLS failure with the home server at {url}: {cause} (for a server with a \
                     private CA, pass --ca-file)"
                ),
                TransportKind::Timeout => {
                    format!("the home server at {url} did not answer in time")
                }
                _ => format!("the connection to the home server at {url} failed: {cause}"),
            };
            (message, EXIT_HOME_UNREACHABLE)
        }
        ClientError::Decode { .. } | ClientError::Verification { .. } => {
            (err.to_string(), EXIT_INVALID_ANSWER)
        }
        _ => (err.to_string(), EXIT_OTHER),
    }
}

/// The exit code for an error answer, by its problem type, or by its status when the type is
/// unknown (an answer from something that is not a PD node, such as a proxy).
pub fn problem_exit_code(problem: &Problem) -> u8 {
    match problem.problem_type() {
        Some(kind) => problem_type_exit_code(kind),
        None => match problem.status {
            502..=504 => EXIT_HOME_UNREACHABLE,
            400..=499 => EXIT_REFUSED,
            _ => EXIT_OTHER,
        },
    }
}

/// The exit code for a known problem type.
pub fn problem_type_exit_code(kind: ProblemType) -> u8 {
    use ProblemType as P;
    match kind {
        P::InvalidAddress => EXIT_USAGE,
        P::UnknownUser => EXIT_UNKNOWN_USER,
        P::Unavailable | P::Timeout => EXIT_HOME_UNREACHABLE,
        P::RemoteUnreachable => EXIT_REMOTE_UNREACHABLE,
        P::BadRemoteAnswer => EXIT_INVALID_ANSWER,
        P::RefusedByPolicy | P::RemoteRefused => EXIT_POLICY,
        P::NoPdNode => EXIT_NO_PD_NODE,
        P::Internal | P::NotImplemented => EXIT_OTHER,
        other if (400..500).contains(&other.status()) => EXIT_REFUSED,
        _ => EXIT_OTHER,
    }
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pd_client::VerifyError;

    fn code_of(kind: ProblemType) -> u8 {
        classify(&ClientError::Problem(kind.with_detail("d"))).1
    }

    #[test]
    fn every_problem_type_has_the_contract_exit_code() {
        use ProblemType as P;
        for kind in ProblemType::ALL {
            let expected = match kind {
                P::InvalidAddress => 2,
                P::UnknownUser => 3,
                P::Unavailable | P::Timeout => 4,
                P::RemoteUnreachable => 6,
                P::BadRemoteAnswer => 7,
                P::RefusedByPolicy | P::RemoteRefused => 8,
                P::NoPdNode => 9,
                P::Internal | P::NotImplemented => 1,
                _ => {
                    assert!((400..500).contains(&kind.status()), "{kind:?}");
                    5
                }
            };
            assert_eq!(code_of(*kind), expected, "{kind:?}");
        }
        // Spot checks of the refused (5) group.
        for kind in [
            P::NameTaken,
            P::Replayed,
            P::InvalidSignature,
            P::InviteRequired,
            P::RegistrationClosed,
            P::Unauthenticated,
            P::RateLimited,
            P::StaleRequest,
        ] {
            assert_eq!(code_of(kind), 5, "{kind:?}");
        }
    }

    #[test]
    fn answers_without_a_known_type_map_by_status() {
        let synthetic = |status| Problem {
            kind: "about:blank".to_owned(),
            title: "x".to_owned(),
            status,
            detail: String::new(),
        };
        assert_eq!(problem_exit_code(&synthetic(404)), 5);
        assert_eq!(problem_exit_code(&synthetic(502)), 4);
        assert_eq!(problem_exit_code(&synthetic(504)), 4);
        assert_eq!(problem_exit_code(&synthetic(500)), 1);
    }

    #[test]
    fn decode_and_verification_failures_are_invalid_answers() {
        let decode = ClientError::Decode {
            url: "u".into(),
            detail: "d".into(),
        };
        assert_eq!(classify(&decode).1, 7);
        let verify = ClientError::Verification {
            url: "u".into(),
            reason: VerifyError::Fingerprint("f".into()),
        };
        assert_eq!(classify(&verify).1, 7);
        assert_eq!(classify(&ClientError::Setup("bad CA".into())).1, 1);
    }

    #[tokio::test]
    async fn transport_failures_mean_the_home_server_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = pd_client::PdClient::new(
            url::Url::parse(&format!("http://{addr}")).unwrap(),
            &pd_client::ClientOptions::default(),
        )
        .unwrap();
        let err = client.health().await.unwrap_err();
        let (message, code) = ChatError::from(err).report();
        assert_eq!(code, 4);
        assert!(
            message.starts_with("cannot reach the home server"),
            "{message}"
        );
        assert!(!message.contains('\n'));
    }

    #[test]
    fn local_errors_are_other_errors_and_usage_errors_are_2() {
        assert_eq!(ChatError::Usage("bad".into()).report(), ("bad".into(), 2));
        let (message, code) = ChatError::NotRegistered(PathBuf::from("h")).report();
        assert_eq!(code, 1);
        assert!(message.contains("chat register"));
        let io = ChatError::io(
            "failed to read h/identity.key",
            std::io::Error::other("boom\nsecond line"),
        );
        assert_eq!(
            io.report(),
            ("failed to read h/identity.key: boom second line".into(), 1)
        );
    }

    #[test]
    fn problem_messages_are_one_line_with_the_detail() {
        let (message, code) = classify(&ClientError::Problem(
            ProblemType::UnknownUser.with_detail("no user bob@pd.test"),
        ));
        assert_eq!(code, 3);
        assert_eq!(message, "unknown user: no user bob@pd.test (HTTP 404)");
        let (message, code) = classify(&ClientError::Problem(
            ProblemType::NotImplemented.with_detail("no federation"),
        ));
        assert_eq!(code, 1);
        assert_eq!(
            message,
            "not supported by the home server: no federation (HTTP 501)"
        );
    }
}
