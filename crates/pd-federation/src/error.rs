//! Errors of the outbound client, discovery and node request authentication, with the
//! problem type each one maps to at the HTTP edge.

use pd_proto::ProblemType;

/// Why an outbound request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutboundError {
    /// The request was refused before anything was sent: a scheme other than `https` for a
    /// non-static destination, an IP-literal host, or a host that resolves only to
    /// forbidden addresses (loopback, private, link-local, ...).
    #[error("refused to contact {url}: {reason}")]
    Forbidden {
        /// The URL that was refused (without query).
        url: String,
        /// Why.
        reason: String,
    },
    /// Name resolution or the connection (TCP or TLS) failed.
    #[error("could not connect to {host}: {reason}")]
    Connect {
        /// The destination host.
        host: String,
        /// What failed.
        reason: String,
    },
    /// A connect, read or total deadline passed, or no connection slot was free in time.
    #[error("request to {host} timed out")]
    Timeout {
        /// The destination host.
        host: String,
    },
    /// The response body is larger than allowed (declared or counted while streaming).
    #[error("response from {host} is larger than {limit} bytes")]
    TooLarge {
        /// The destination host.
        host: String,
        /// The limit that was exceeded.
        limit: u64,
    },
    /// The response has an unexpected status. `body` holds the start of the body.
    #[error("{host} answered with status {status}")]
    Status {
        /// The destination host.
        host: String,
        /// The HTTP status.
        status: u16,
        /// The first bytes of the body (lossy UTF-8).
        body: String,
    },
    /// The response is a redirect; redirects are never followed.
    #[error("{host} answered with a redirect ({status}) to {location:?}, which is not followed")]
    Redirect {
        /// The destination host.
        host: String,
        /// The 3xx status.
        status: u16,
        /// The `Location` header, if any.
        location: Option<String>,
    },
    /// The body could not be decoded (wrong content type, invalid JSON, wrong shape).
    #[error("could not decode the answer of {host}: {reason}")]
    Decode {
        /// The destination host.
        host: String,
        /// What was wrong.
        reason: String,
    },
}

impl OutboundError {
    /// Whether the failure says nothing about the remote's answer (transport-level:
    /// connect failure or timeout), as opposed to a bad or refused answer.
    pub fn is_transport(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::Timeout { .. })
    }
}

/// Why no node could be found for a domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// Nothing answers for the domain: it does not resolve, resolves only to forbidden
    /// addresses, refuses connections, or is an IP literal that is not a static peer.
    #[error("{domain} has no PD node: {reason}")]
    NoNode {
        /// The domain asked about.
        domain: String,
        /// Why.
        reason: String,
    },
    /// The domain's web server could not be reached in time or failed (5xx).
    #[error("the node of {domain} is unreachable: {reason}")]
    Unreachable {
        /// The domain asked about.
        domain: String,
        /// Why.
        reason: String,
    },
    /// The domain published an invalid delegation or well-known document.
    #[error("{domain} published an invalid well-known document: {reason}")]
    Invalid {
        /// The domain asked about.
        domain: String,
        /// What was wrong.
        reason: String,
    },
    /// The trust policy refuses the domain, or the host it delegates to; nothing was sent
    /// to the refused host.
    #[error("{}", refused_text(domain, host))]
    Refused {
        /// The domain asked about.
        domain: String,
        /// The refused host: the domain itself or its delegation target.
        host: String,
    },
}

fn refused_text(domain: &str, host: &str) -> String {
    if domain == host {
        format!("this node does not federate with {domain}")
    } else {
        format!("the node of {domain} is at {host}, which this node does not federate with")
    }
}

impl DiscoveryError {
    /// The problem type to answer with at the HTTP edge.
    pub fn problem_type(&self) -> ProblemType {
        match self {
            Self::NoNode { .. } => ProblemType::NoPdNode,
            Self::Unreachable { .. } => ProblemType::RemoteUnreachable,
            Self::Invalid { .. } => ProblemType::BadRemoteAnswer,
            Self::Refused { .. } => ProblemType::RefusedByPolicy,
        }
    }
}

/// Why an inbound node request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeAuthError {
    /// No `Authorization: PD-Node ...` header.
    #[error("the request carries no node signature")]
    Missing,
    /// The header is malformed.
    #[error("malformed node authorization: {0}")]
    Malformed(String),
    /// The request is addressed to another node.
    #[error("the request is addressed to {0}, not to this node")]
    WrongDestination(String),
    /// The timestamp is outside the accepted window.
    #[error("the request is dated outside the accepted window")]
    Stale,
    /// The origin's node does not publish the key id used, or it has expired.
    #[error("{origin} publishes no valid key {key_id}")]
    UnknownKey {
        /// The claimed origin.
        origin: String,
        /// The key id used.
        key_id: String,
    },
    /// The signature does not verify.
    #[error("the node signature does not verify")]
    BadSignature,
    /// The origin is refused by this node's policy (checked before any key fetch).
    #[error("requests from {0} are refused by this node's policy")]
    Refused(String),
    /// The origin's node is at a host this node's policy refuses (its `/.well-known/pd`
    /// delegates there); its keys were not fetched from it.
    #[error("the node of {origin} is at {target}, which this node does not federate with")]
    DelegationRefused {
        /// The claimed origin.
        origin: String,
        /// The refused delegation target.
        target: String,
    },
    /// The origin's server keys could not be fetched.
    #[error("could not fetch the server keys of {origin}: {reason}")]
    KeyFetch {
        /// The claimed origin.
        origin: String,
        /// Why.
        reason: String,
        /// Whether the failure was a timeout (504) rather than a bad or missing answer (502).
        timeout: bool,
    },
}

impl NodeAuthError {
    /// The problem type to answer with: 401 `invalid-node-signature` for anything wrong
    /// with the request itself, 403 `refused-by-policy` for a refused origin, 502/504 when
    /// the origin's keys cannot be fetched.
    pub fn problem_type(&self) -> ProblemType {
        match self {
            Self::Missing
            | Self::Malformed(_)
            | Self::WrongDestination(_)
            | Self::Stale
            | Self::UnknownKey { .. }
            | Self::BadSignature => ProblemType::InvalidNodeSignature,
            Self::Refused(_) | Self::DelegationRefused { .. } => ProblemType::RefusedByPolicy,
            Self::KeyFetch { timeout: true, .. } => ProblemType::RemoteUnreachable,
            Self::KeyFetch { timeout: false, .. } => ProblemType::BadRemoteAnswer,
        }
    }
}
