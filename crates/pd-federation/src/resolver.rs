//! The resolver engine: answers lookups of remote addresses from the cache, or through
//! one coalesced upstream fetch, honouring per-peer backoff and serving stale answers
//! when a peer is unreachable.

use std::future::Future;
use std::time::Duration;

use pd_proto::Address;
use pd_proto::wire::LookupResponse;

/// The seam between the resolver and the network: performs one verified lookup of a
/// remote address at that address's home node.
///
/// An implementation must only return `Ok` for an answer that is about exactly `addr`
/// (same name, same domain) and whose presence record verifies under the returned
/// account key. The resolver caches what it gets without checking again.
pub trait UpstreamLookup: Send + Sync + 'static {
    /// Fetches and verifies the lookup answer for `addr` from its home node.
    fn fetch(
        &self,
        addr: &Address,
    ) -> impl Future<Output = Result<LookupResponse, UpstreamError>> + Send;
}

/// Why an upstream lookup produced no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The remote node answered that the user does not exist (404). Cached briefly as a
    /// negative answer.
    #[error("the user does not exist at its home node")]
    UnknownUser,
    /// The domain has no PD node (discovery found none).
    #[error("the domain has no PD node")]
    NoNode,
    /// The remote node could not be reached: connection failure, timeout or a 5xx answer.
    #[error("the remote node is unreachable: {0}")]
    Unreachable(String),
    /// The remote node answered garbage: unparsable body, a record for another address,
    /// or a bad signature.
    #[error("the remote node gave an invalid answer: {0}")]
    BadAnswer(String),
    /// The remote node refused to answer this node (403).
    #[error("the remote node refused the request")]
    RemoteRefused,
}

/// Why a lookup failed, as the HTTP layer sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The user does not exist at its (reachable) home node.
    #[error("the user does not exist at its home node")]
    UnknownUser,
    /// The domain has no PD node.
    #[error("the domain has no PD node")]
    NoNode,
    /// The home node is unreachable or timed out, and no stale answer may be served.
    #[error("the remote node is unreachable: {0}")]
    Unreachable(String),
    /// The home node answered garbage or a wrong or badly signed record.
    #[error("the remote node gave an invalid answer: {0}")]
    BadAnswer(String),
    /// The home node refused to answer this node.
    #[error("the remote node refused the request")]
    RemoteRefused,
    /// The home node failed recently and is not contacted again before `retry_in`; no
    /// stale answer was available.
    #[error("the remote node is failing; next attempt in {}s", retry_in.as_secs())]
    PeerBackingOff {
        /// Time until the peer is contacted again.
        retry_in: Duration,
    },
    /// A cache-only lookup found no fresh cached answer.
    #[error("no cached answer for this address")]
    NotCached,
}

impl From<UpstreamError> for ResolveError {
    fn from(err: UpstreamError) -> Self {
        match err {
            UpstreamError::UnknownUser => Self::UnknownUser,
            UpstreamError::NoNode => Self::NoNode,
            UpstreamError::Unreachable(why) => Self::Unreachable(why),
            UpstreamError::BadAnswer(why) => Self::BadAnswer(why),
            UpstreamError::RemoteRefused => Self::RemoteRefused,
        }
    }
}

/// How a lookup may use the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LookupMode {
    /// Answer from the cache when fresh, otherwise fetch (serving stale on failure).
    #[default]
    Normal,
    /// Answer only from the cache; never contact the remote node.
    CacheOnly,
    /// Bypass the cache: always fetch, and store the new answer.
    Refresh,
}

/// A successful lookup.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The verified answer; `source` says where it came from (cache, remote or stale) and
    /// `ttl` equals [`Resolved::ttl_secs`].
    pub response: LookupResponse,
    /// Seconds the answer may still be used.
    pub ttl_secs: u64,
}
