//! Signing outbound node requests and authenticating inbound ones
//! (`Authorization: PD-Node ...`; the canonical bytes live in `pd_proto::node_auth`).
//!
//! An inbound request is authenticated in this order, cheapest and least trusting first:
//! parse the header, check that the destination is this node, check the timestamp against
//! `max_request_age`, ask the origin policy (so a refused origin never causes a key fetch),
//! then fetch the origin's server keys through discovery (cached; discovery refuses an origin
//! whose node is at a host the trust policy refuses) and verify the signature with
//! `verify_strict`. The result is the authenticated origin domain, which is what trust
//! decisions act on; `Host` and forwarding headers play no part, so reverse proxies in front
//! of either node do not matter as long as they pass the path and query through unchanged.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use pd_proto::node_auth::{NodeAuthorization, SCHEME, request_signing_bytes, server_key_id};
use pd_proto::{Host, SecretKey, now_secs};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

use crate::discovery::Discovery;
use crate::error::{DiscoveryError, NodeAuthError};

/// Signs `method path_and_query` from `origin` to `destination` with `server_key`, dated
/// now, and returns the `Authorization` header value.
///
/// `path_and_query` must be exactly the request target as sent, relative to the
/// destination's API root (e.g. `/v1/federation/lookup/alice%40b.example`).
pub fn sign_request(
    server_key: &SecretKey,
    origin: &Host,
    destination: &Host,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> HeaderValue {
    sign_request_at(
        server_key,
        origin,
        destination,
        method,
        path_and_query,
        body,
        now_secs(),
    )
}

/// [`sign_request`] with an explicit timestamp (Unix seconds).
pub fn sign_request_at(
    server_key: &SecretKey,
    origin: &Host,
    destination: &Host,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    timestamp: u64,
) -> HeaderValue {
    let bytes = request_signing_bytes(method, path_and_query, origin, destination, timestamp, body);
    let authorization = NodeAuthorization {
        origin: origin.clone(),
        destination: destination.clone(),
        key_id: server_key_id(&server_key.public()),
        timestamp,
        signature: server_key.sign(&bytes),
    };
    // Hosts, key ids, digits and base64url are all visible ASCII, so this cannot fail.
    HeaderValue::from_str(&authorization.to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("PD-Node"))
}

/// This node's identity for signing outbound node requests. Clones share the key, which
/// [`NodeSigner::shared`] lets the node replace while it runs (after a rotation).
#[derive(Clone)]
pub struct NodeSigner {
    key: Arc<ArcSwap<SecretKey>>,
    origin: Host,
}

impl NodeSigner {
    /// Signs as `origin` (this node's domain) with its server key.
    pub fn new(key: SecretKey, origin: Host) -> Self {
        Self::shared(Arc::new(ArcSwap::from_pointee(key)), origin)
    }

    /// Signs as `origin` with whatever key `key` holds at the moment of signing.
    pub fn shared(key: Arc<ArcSwap<SecretKey>>, origin: Host) -> Self {
        Self { key, origin }
    }

    /// This node's domain.
    pub fn origin(&self) -> &Host {
        &self.origin
    }

    /// The id under which the key signing now is published.
    pub fn key_id(&self) -> String {
        server_key_id(&self.key.load().public())
    }

    /// The `Authorization` header for a request to `destination`, dated now.
    pub fn sign(
        &self,
        destination: &Host,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> HeaderValue {
        sign_request(
            &self.key.load(),
            &self.origin,
            destination,
            method,
            path_and_query,
            body,
        )
    }
}

impl fmt::Debug for NodeSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeSigner")
            .field("origin", &self.origin)
            .field("key_id", &self.key_id())
            .finish()
    }
}

/// Decides whether requests from an origin are considered at all. Consulted before the
/// origin's keys are fetched, so a refused origin costs no outbound request.
pub trait OriginPolicy: Send + Sync {
    /// Whether requests from `origin` may be authenticated.
    fn allows(&self, origin: &Host) -> bool;
}

impl<F> OriginPolicy for F
where
    F: Fn(&Host) -> bool + Send + Sync,
{
    fn allows(&self, origin: &Host) -> bool {
        self(origin)
    }
}

/// Authenticates inbound node requests.
pub struct InboundVerifier {
    discovery: Arc<Discovery>,
    max_age: Duration,
    policy: Arc<dyn OriginPolicy>,
}

impl InboundVerifier {
    /// A verifier that fetches origin keys through `discovery` and accepts timestamps
    /// within `max_age` of now. Every origin is allowed until [`Self::with_policy`].
    pub fn new(discovery: Arc<Discovery>, max_age: Duration) -> Self {
        Self {
            discovery,
            max_age,
            policy: Arc::new(|_: &Host| true),
        }
    }

    /// Replaces the origin policy.
    pub fn with_policy(mut self, policy: Arc<dyn OriginPolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// Authenticates a request received by `local_domain`; returns the origin domain.
    ///
    /// `path_and_query` must be the request target exactly as received (still
    /// percent-encoded), relative to this node's API root.
    pub async fn verify(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
        local_domain: &Host,
    ) -> Result<Host, NodeAuthError> {
        self.verify_at(
            method,
            path_and_query,
            headers,
            body,
            local_domain,
            now_secs(),
        )
        .await
    }

    /// [`Self::verify`] at an explicit time (Unix seconds).
    pub async fn verify_at(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
        local_domain: &Host,
        now: u64,
    ) -> Result<Host, NodeAuthError> {
        let mut values = headers.get_all(AUTHORIZATION).iter().filter(|v| {
            v.as_bytes()
                .get(..SCHEME.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(SCHEME.as_bytes()))
        });
        let value = values.next().ok_or(NodeAuthError::Missing)?;
        if values.next().is_some() {
            return Err(NodeAuthError::Malformed(
                "more than one PD-Node authorization".into(),
            ));
        }
        let text = value
            .to_str()
            .map_err(|_| NodeAuthError::Malformed("not visible ASCII".into()))?;
        let auth =
            NodeAuthorization::parse(text).map_err(|e| NodeAuthError::Malformed(e.to_string()))?;
        if auth.destination != *local_domain {
            return Err(NodeAuthError::WrongDestination(
                auth.destination.to_string(),
            ));
        }
        if now.abs_diff(auth.timestamp) > self.max_age.as_secs() {
            return Err(NodeAuthError::Stale);
        }
        if !self.policy.allows(&auth.origin) {
            return Err(NodeAuthError::Refused(auth.origin.to_string()));
        }
        let key = self
            .discovery
            .server_key(&auth.origin, &auth.key_id, auth.timestamp)
            .await
            .map_err(|e| match e {
                DiscoveryError::Refused { domain, host } if domain == host => {
                    NodeAuthError::Refused(domain)
                }
                DiscoveryError::Refused { domain, host } => NodeAuthError::DelegationRefused {
                    origin: domain,
                    target: host,
                },
                e => NodeAuthError::KeyFetch {
                    origin: auth.origin.to_string(),
                    timeout: matches!(e, DiscoveryError::Unreachable { .. }),
                    reason: e.to_string(),
                },
            })?
            .ok_or_else(|| NodeAuthError::UnknownKey {
                origin: auth.origin.to_string(),
                key_id: auth.key_id.clone(),
            })?;
        key.verify(
            &auth.signing_bytes(method, path_and_query, body),
            &auth.signature,
        )
        .map_err(|_| NodeAuthError::BadSignature)?;
        Ok(auth.origin)
    }
}

impl fmt::Debug for InboundVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundVerifier")
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
