//! The peer-to-peer channel: identity certificates, the TLS configuration and verifiers, the
//! frame protocol, known peers, and one conversation's life. The command-line side
//! (`chat listen`, `chat connect`) lives in `crate::listen` and `crate::connect`.

pub mod cert;
pub mod frame;
pub mod known;
pub mod session;
pub mod tls;

use pd_proto::Address;

/// Why a conversation could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The user has no current presence record.
    #[error("{0} is offline (no current presence record)")]
    Offline(Address),
    /// No endpoint answered the handshake.
    #[error("could not reach {address} at any of its endpoints: {tried}")]
    Unreachable {
        /// Who.
        address: Address,
        /// Each endpoint tried and why it failed.
        tried: String,
    },
    /// The listener presented another key than its record: possible impersonation.
    #[error(
        "possible impersonation: the peer at {endpoint} presented key {presented}, but the home \
         node of {address} vouches for key {expected}; nothing was sent"
    )]
    KeyMismatch {
        /// Who was looked up.
        address: Address,
        /// Where.
        endpoint: String,
        /// Fingerprint of the record's key.
        expected: String,
        /// Fingerprint of the presented key.
        presented: String,
    },
    /// `chat trust --fingerprint`: the fingerprint the user typed is not the one the home
    /// node vouches for.
    #[error(
        "the fingerprint you gave, {given}, is not the fingerprint of the key the home node of \
         {address} vouches for, {current}; nothing was trusted. Compare fingerprints with \
         {address} again by another way"
    )]
    FingerprintDiffers {
        /// Who.
        address: Address,
        /// The fingerprint the user typed.
        given: String,
        /// Fingerprint of the key the home node vouches for.
        current: String,
    },
    /// The looked-up key differs from the remembered one and no signed rotation links them.
    #[error(
        "the key of {address} has changed: you talked with key {known}, its home node now \
         vouches for key {current}, and no rotation signed by the old key links them. This \
         can be an impersonation. Compare fingerprints with {address} by another way; if the \
         new one is right, run `chat trust {address}`"
    )]
    KeyChanged {
        /// Who.
        address: Address,
        /// Fingerprint of the remembered key.
        known: String,
        /// Fingerprint of the current key.
        current: String,
    },
    /// The listener refused the conversation.
    #[error("{address} refused the conversation: {reason}{}", detail_suffix(.detail))]
    Refused {
        /// Who.
        address: Address,
        /// Why, in words.
        reason: String,
        /// The listener's explanation, if any.
        detail: String,
    },
    /// The peer broke the protocol while the conversation was opened.
    #[error("{address} broke the chat protocol: {detail}")]
    Protocol {
        /// Who.
        address: Address,
        /// What went wrong.
        detail: String,
    },
    /// The conversation ended without a goodbye.
    #[error("{0}")]
    Ended(String),
    /// Local setup failed (certificate, TLS configuration, binding the port).
    #[error("{0}")]
    Setup(String),
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}
