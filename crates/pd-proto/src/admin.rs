//! The JSON bodies of the admin listener's surface (`/admin/...`), an operator's API rather
//! than part of the federation protocol, but a wire format all the same: the node writes
//! them and scripts read them.

use serde::{Deserialize, Serialize};

/// `GET /admin/peers`: the peers this node tracks and its static routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeersReport {
    /// The tracked peers.
    pub peers: Vec<PeerReport>,
    /// The configured static routes.
    pub static_routes: Vec<StaticRoute>,
}

/// One tracked peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerReport {
    /// The peer's domain.
    pub domain: String,
    /// `healthy` or `backing_off` (the backoff state).
    pub state: String,
    /// The peer's condition as the status pages show it (including refusals).
    pub condition: String,
    /// Consecutive failures.
    pub failures: u32,
    /// Seconds until the next attempt, while backing off.
    pub retry_in_secs: Option<u64>,
    /// The last error.
    pub last_error: Option<String>,
    /// Unix seconds of the last failure.
    pub last_failure_at: Option<u64>,
    /// Unix seconds of the last success.
    pub last_success_at: Option<u64>,
    /// Moving average of the answer time, in milliseconds.
    pub latency_ms: Option<u64>,
    /// The last answer time, in milliseconds.
    pub last_latency_ms: Option<u64>,
    /// Whether the peer refused this node (403).
    pub refuses_this_node: bool,
    /// This node's trust verdict about the peer.
    pub trust: TrustVerdict,
}

/// A trust verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustVerdict {
    /// Whether this node federates with the domain.
    pub allowed: bool,
    /// A short stable label of the reason (`allowlisted`, `denied`, …).
    pub reason: String,
    /// One line naming the deciding entry and its reason (private reasons included).
    pub explanation: String,
}

/// A static route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticRoute {
    /// The domain.
    pub domain: String,
    /// The base URL of its node.
    pub url: String,
}

/// `POST /admin/peers/{domain}/retry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryAnswer {
    /// The domain.
    pub domain: String,
    /// Always `now`.
    pub retry: String,
}

/// `POST /admin/cache/flush/{domain}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushAnswer {
    /// The domain.
    pub domain: String,
    /// How many cached lookups were dropped.
    pub flushed_entries: usize,
}

/// `GET /admin/trust/explain/{domain}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainAnswer {
    /// The domain, normalised.
    pub domain: String,
    /// The verdict.
    #[serde(flatten)]
    pub verdict: TrustVerdict,
}

/// `POST /admin/trust/reload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadAnswer {
    /// Whether the policy in force changed.
    pub changed: bool,
    /// The mode after the reload (`open` or `allowlist`).
    pub mode: String,
    /// The entries added.
    pub added: Vec<String>,
    /// The entries removed.
    pub removed: Vec<String>,
    /// The entries changed.
    pub modified: Vec<String>,
}

/// `GET /admin/trust/subscriptions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionsReport {
    /// Each subscribed list.
    pub subscriptions: Vec<SubscriptionReport>,
}

/// One subscribed trust list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionReport {
    /// The list's URL.
    pub url: String,
    /// `allow` or `deny`.
    pub kind: String,
    /// Seconds between refreshes.
    pub refresh_secs: u64,
    /// Unix seconds of the last attempt.
    pub last_attempt: Option<u64>,
    /// Unix seconds of the last success.
    pub last_success: Option<u64>,
    /// The last error.
    pub last_error: Option<String>,
    /// Entries in the last good copy.
    pub entries: usize,
}
