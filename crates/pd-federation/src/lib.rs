//! Node-to-node side of a PD node: everything one node needs to talk to another.
//!
//! - [`guard::GuardedClient`] is the one outbound HTTP client. It only speaks HTTPS to
//!   DNS names that resolve to public addresses, follows no redirects, caps bodies and
//!   enforces deadlines; statically configured peers are the only exception to the
//!   scheme and address rules.
//! - [`discovery::Discovery`] finds the node serving a domain (static peer, then
//!   `/.well-known/pd` delegation, then the domain itself) and fetches other nodes'
//!   server keys, caching both, within the trust policy: it refuses a domain or delegation
//!   target the policy refuses before contacting it, on every path.
//! - [`node_auth`] signs outbound node requests and verifies inbound ones
//!   (`Authorization: PD-Node ...`, modelled on Matrix's `X-Matrix`).
//! - [`upstream::Upstream`] performs one verified, signed lookup at a remote node, within
//!   the per-destination cap on uncached lookups ([`destination_limit`]).
//! - The lookup cache, per-peer backoff and the resolver engine that ties them together
//!   live in their own modules.
//!
//! Architecture invariant: nothing in this crate opens an outbound connection except
//! through [`guard::GuardedClient`].

#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod backoff;
pub mod cache;
pub mod config;
pub mod destination_limit;
pub mod discovery;
pub mod error;
pub mod guard;
pub mod node_auth;
pub mod resolver;
pub mod trust;
pub mod upstream;
