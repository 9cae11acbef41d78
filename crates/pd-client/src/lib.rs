//! Typed HTTP client for the PD API.
//!
//! [`PdClient`] has one method per endpoint of a node. Every answer is decoded into the
//! wire types of `pd_proto` and checked before it is returned: error answers become
//! [`ClientError::Problem`], and a lookup answer whose presence record does not verify under
//! the answer's key for exactly the asked address, or whose key-rotation proofs do not form
//! a chain ending at that key, is refused ([`ClientError::Verification`]).

#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod client;
mod error;

pub use client::{
    ClientOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, MAX_RESPONSE_BYTES, PdClient,
    insecure_warning_needed, suggest_url,
};
pub use error::{ClientError, TransportKind, VerifyError};
pub use pd_proto::{LookupAnswerError, LookupMode, VerifiedLookup, verify_lookup_answer};
