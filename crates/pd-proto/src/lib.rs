//! Protocol types of the PD network: `name@host` addresses, ed25519 keys, signed records,
//! the JSON messages of the HTTP API and the frames of the chat channel. This crate does no
//! I/O; the server and the clients share it so that the wire format is defined in exactly
//! one place.

#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod address;
pub mod admin;
pub mod chat;
pub mod group;
pub mod keys;
pub mod lookup;
pub mod node_auth;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod paths;
pub mod problem;
pub mod records;
pub mod relay;
pub mod rotation;
pub mod signed;
pub mod wire;

pub use address::{Address, AddressError, Host, HostKind, Name};
pub use keys::{KeyError, PublicKey, SecretKey, Signature};
pub use lookup::{LookupAnswerError, LookupMode, VerifiedLookup, verify_lookup_answer};
pub use problem::{Problem, ProblemType};
pub use records::{
    Deletion, Endpoint, Login, Presence, RecordError, Registration, Rotation, Withdrawal,
};
pub use rotation::{ProofError, RotationError, RotationProof};
pub use signed::{Purpose, Record, Signed, SignedError};

/// The version segment of every API path (`/v1/...`).
pub const API_VERSION: &str = "v1";

/// Largest clock difference tolerated between a signer and a verifier, in microseconds
/// (five minutes). Signed operations dated further in the past or future are refused.
pub const MAX_CLOCK_SKEW_MICROS: u64 = 300 * 1_000_000;

/// Longest lifetime a presence record may claim, in seconds (seven days).
pub const MAX_PRESENCE_TTL_SECS: u64 = 7 * 24 * 3600;

/// Longest a client keeps an idle kept-alive connection to a node for reuse (five seconds).
/// A node may close a connection that has waited 10 seconds for its next request head
/// (section 8.1); a client that sends on it at that moment gets a reset rather than an
/// answer, so clients drop idle connections well before (section 8.1).
pub const CLIENT_IDLE_REUSE: std::time::Duration = std::time::Duration::from_secs(5);

/// The current time as microseconds since the Unix epoch (the unit of sequence numbers).
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The current time as whole seconds since the Unix epoch (the unit of `expires_at`).
pub fn now_secs() -> u64 {
    now_micros() / 1_000_000
}
