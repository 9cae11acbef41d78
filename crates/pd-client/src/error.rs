//! The errors of the PD client: refused requests, transport failures, undecodable answers and
//! answers that fail verification.

use std::fmt;

use pd_proto::{LookupAnswerError, Problem};

/// Why a call to a PD node failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The node answered with an error. Answers with a `problem+json` body are kept as they
    /// are; other error answers become a synthetic problem (`about:blank`) with their status.
    #[error("{}", problem_text(.0))]
    Problem(Problem),
    /// The request did not get an answer: the connection, the TLS handshake or the wait for
    /// the answer failed.
    #[error("{kind} talking to {url}: {cause}")]
    Transport {
        /// What failed.
        kind: TransportKind,
        /// The URL that was asked.
        url: String,
        /// The innermost cause, as text.
        cause: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The answer is not what the API defines (malformed JSON, wrong shape, too large).
    #[error("invalid answer from {url}: {detail}")]
    Decode {
        /// The URL that was asked.
        url: String,
        /// What is wrong with the answer.
        detail: String,
    },
    /// The answer was well formed but fails verification (bad signature, wrong record).
    #[error("answer from {url} refused: {reason}")]
    Verification {
        /// The URL that was asked.
        url: String,
        /// What failed.
        reason: VerifyError,
    },
    /// The client could not be set up (bad base URL, unreadable CA file).
    #[error("{0}")]
    Setup(String),
}

/// Which part of a request's transport failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// The TCP connection could not be established (refused, unreachable, DNS failure).
    Connect,
    /// The TLS handshake failed (untrusted certificate, name mismatch, protocol error).
    Tls,
    /// The connection or the answer took longer than the configured timeout.
    Timeout,
    /// Anything else (connection reset while reading the answer, ...).
    Other,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connection failure",
            Self::Tls => "TLS failure",
            Self::Timeout => "timeout",
            Self::Other => "transport failure",
        })
    }
}

/// Why a well-formed answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The answer is about another address than the one asked.
    #[error("asked for {asked}, the answer is about {answered}")]
    AddressMismatch {
        /// The address that was asked.
        asked: String,
        /// The address in the answer.
        answered: String,
    },
    /// A lookup answer failed [`pd_proto::verify_lookup_answer`].
    #[error(transparent)]
    Lookup(#[from] LookupAnswerError),
    /// The answer names another key than the one the request established.
    #[error("the answer names key {answered}, expected {expected}")]
    KeyMismatch {
        /// The key the request established.
        expected: String,
        /// The key in the answer.
        answered: String,
    },
    /// The fingerprint in the answer is not the fingerprint of the key in the answer.
    #[error("the fingerprint {0} does not belong to the answer's key")]
    Fingerprint(String),
    /// The node reports another sequence number than the one sent.
    #[error("the node reports seq {answered}, sent {sent}")]
    SeqMismatch {
        /// The sequence number sent.
        sent: u64,
        /// The sequence number in the answer.
        answered: u64,
    },
}

impl ClientError {
    /// The problem the node answered with, if it answered with an error.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Problem(problem) => Some(problem),
            _ => None,
        }
    }

    /// The kind of transport failure, if the request got no answer.
    pub fn transport_kind(&self) -> Option<TransportKind> {
        match self {
            Self::Transport { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Builds a transport error from a reqwest error, classifying what failed.
    pub(crate) fn transport(url: &str, source: reqwest::Error) -> Self {
        let kind = classify_transport(&source);
        Self::Transport {
            kind,
            url: url.to_owned(),
            cause: root_cause(&source),
            source,
        }
    }
}

fn problem_text(problem: &Problem) -> String {
    if problem.detail.is_empty() {
        format!("{} (HTTP {})", problem.title, problem.status)
    } else {
        format!(
            "{}: {} (HTTP {})",
            problem.title, problem.detail, problem.status
        )
    }
}

fn classify_transport(err: &reqwest::Error) -> TransportKind {
    if err.is_timeout() {
        return TransportKind::Timeout;
    }
    if chain(err).any(is_tls_error) {
        return TransportKind::Tls;
    }
    if err.is_connect() {
        return TransportKind::Connect;
    }
    TransportKind::Other
}

/// Whether `err` is a rustls error, directly or wrapped in (possibly nested) `io::Error`s,
/// whose `source` skips the wrapped error, so it has to be looked at explicitly.
fn is_tls_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = err;
    loop {
        if current.is::<rustls::Error>() {
            return true;
        }
        match current
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => current = inner,
            None => return false,
        }
    }
}

fn chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| e.source())
}

/// The innermost error message, which says what actually happened ("Connection refused").
fn root_cause(err: &reqwest::Error) -> String {
    let mut last = err.to_string();
    for e in chain(err).skip(1) {
        last = e.to_string();
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            last = inner.to_string();
        }
    }
    last
}
