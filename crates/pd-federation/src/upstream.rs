//! One verified lookup at a remote node: locate the node, send a signed
//! `GET {base}/v1/federation/lookup/{address}`, and accept the answer only if it is about
//! exactly the address asked, its presence record verifies under the returned key, and its
//! rotation proofs form a chain that ends at that key.
//!
//! Anything else is dropped and logged, never cached: an answer about another name or
//! another domain is how cache poisoning would happen.

use std::future::Future;
use std::sync::Arc;

use pd_proto::wire::{LookupResponse, Source};
use pd_proto::{Address, Problem, ProblemType, VerifiedLookup, paths, verify_lookup_answer};
use reqwest::header::{AUTHORIZATION, HeaderMap};

use crate::destination_limit::DestinationLimit;
use crate::discovery::Discovery;
use crate::error::{DiscoveryError, OutboundError};
use crate::guard::decode_json;
use crate::node_auth::NodeSigner;
use crate::resolver::{ResolveError, UpstreamLookup};

/// Fetches lookups from remote nodes on behalf of this node.
#[derive(Clone)]
pub struct Upstream {
    discovery: Arc<Discovery>,
    signer: NodeSigner,
    limit: Option<Arc<DestinationLimit>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Uses `discovery` (and its guarded client) to reach nodes, signing as `signer`.
    /// Discovery refuses a domain, or a host it delegates to, that the trust policy refuses
    /// ([`ResolveError::DelegationRefused`]) before anything is sent there.
    pub fn new(discovery: Arc<Discovery>, signer: NodeSigner) -> Self {
        Self {
            discovery,
            signer,
            limit: None,
        }
    }

    /// Sends at most as many lookups to one remote domain as `limit` allows; beyond it a
    /// lookup fails with [`ResolveError::RateLimited`] before anything is sent.
    pub fn with_destination_limit(mut self, limit: DestinationLimit) -> Self {
        self.limit = Some(Arc::new(limit));
        self
    }

    /// The path and query of the federation lookup of `addr`, as sent and signed.
    pub fn lookup_path(addr: &Address) -> String {
        paths::fill(paths::FEDERATION_LOOKUP, &encode_segment(&addr.to_string()))
    }

    /// Looks `addr` up at its home node and verifies the answer.
    pub async fn fetch_lookup(&self, addr: &Address) -> Result<VerifiedLookup, ResolveError> {
        let domain = addr.host();
        if let Some(limit) = &self.limit
            && let Err(retry_in) = limit.check(domain)
        {
            tracing::info!(remote.host = %domain, retry_in = ?retry_in, "uncached lookups of this domain are over their rate limit");
            return Err(ResolveError::RateLimited {
                per_second: limit.per_second(),
                retry_in,
            });
        }
        let route = self.discovery.locate(domain).await.map_err(|e| match e {
            DiscoveryError::NoNode { .. } => ResolveError::NoNode,
            DiscoveryError::Unreachable { .. } => ResolveError::Unreachable(e.to_string()),
            DiscoveryError::Invalid { .. } => ResolveError::BadAnswer(e.to_string()),
            DiscoveryError::Refused { host, .. } => ResolveError::DelegationRefused(host),
        })?;
        let path = Self::lookup_path(addr);
        let url = route
            .endpoint(&path)
            .map_err(|e| ResolveError::BadAnswer(format!("cannot form the lookup URL: {e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, self.signer.sign(domain, "GET", &path, b""));
        let response = self
            .discovery
            .client()
            .get(&url, headers, None)
            .await
            .map_err(|e| outbound_error(addr, e))?;
        match response.status {
            200 => {}
            404 if problem_of(&response) == Some(ProblemType::UnknownUser) => {
                return Err(ResolveError::UnknownUser);
            }
            403 => return Err(ResolveError::RemoteRefused),
            500..=599 => {
                return Err(ResolveError::Unreachable(format!(
                    "{domain} answered {}",
                    response.status
                )));
            }
            status => {
                return Err(bad_answer(
                    addr,
                    format!("unexpected status {status} from {domain}"),
                ));
            }
        }
        let answer: LookupResponse =
            decode_json(&url, &response).map_err(|e| bad_answer(addr, e.to_string()))?;
        verify_answer(addr, answer)
    }
}

impl UpstreamLookup for Upstream {
    fn fetch(
        &self,
        addr: &Address,
    ) -> impl Future<Output = Result<VerifiedLookup, ResolveError>> + Send {
        self.fetch_lookup(addr)
    }
}

/// The node's check of another node's answer: [`verify_lookup_answer`] (exactly the asked
/// address, a rotation chain ending at the key, a presence record that verifies), then
/// [`VerifiedLookup::check_record`] (an expired record is dropped, `ttl` bounded by the
/// record's remaining lifetime); the answer is marked as coming from the remote node.
///
/// Public so that the fuzz targets exercise exactly the check the node applies.
pub fn verify_answer(
    asked: &Address,
    answer: LookupResponse,
) -> Result<VerifiedLookup, ResolveError> {
    let had_presence = answer.presence.is_some();
    let verified = verify_lookup_answer(asked, answer)
        .and_then(|verified| verified.check_record(pd_proto::now_micros()))
        .map_err(|e| bad_answer(asked, e.to_string()))?;
    if had_presence && verified.presence().is_none() {
        tracing::debug!(address = %asked, "remote served an expired presence record; dropped");
    }
    Ok(verified.with_source(Source::Remote))
}

fn bad_answer(asked: &Address, reason: String) -> ResolveError {
    tracing::warn!(address = %asked, remote.host = %asked.host(), %reason, "dropped invalid answer from remote node");
    ResolveError::BadAnswer(reason)
}

fn outbound_error(asked: &Address, err: OutboundError) -> ResolveError {
    match err {
        OutboundError::Connect { .. } | OutboundError::Timeout { .. } => {
            ResolveError::Unreachable(err.to_string())
        }
        OutboundError::Status { status, .. } if status >= 500 => {
            ResolveError::Unreachable(err.to_string())
        }
        other => bad_answer(asked, other.to_string()),
    }
}

/// The problem type of a problem+json body, if it is one.
fn problem_of(response: &crate::guard::Response) -> Option<ProblemType> {
    if !response.is_json() {
        return None;
    }
    serde_json::from_slice::<Problem>(&response.body)
        .ok()?
        .problem_type()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
