//! The admin operations, one function each, shared by the JSON admin surface and the
//! status pages (and, for `explain`, by `pd-server trust explain`), so that a button on a
//! page does exactly what the JSON endpoint does.

use std::time::SystemTime;

use pd_federation::backoff::{PeerHealth, PeerStatus};
use pd_federation::trust::{
    PolicyDiff, SubscriptionConfig, SubscriptionStatus, TrustPolicy, Verdict,
};
use pd_proto::{Host, ProblemType};
use url::Url;

use crate::config::ConfigError;
use crate::http::ApiError;
use crate::state::AppState;

/// Why an admin operation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The domain does not parse.
    #[error("{input:?} is not a valid domain: {reason}")]
    InvalidDomain {
        /// The input, shortened to 200 characters.
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// The peer has never been contacted, so it has no backoff to clear.
    #[error("{0} is not a tracked peer")]
    NotTracked(Host),
    /// The new trust policy was refused; the previous one stays in force.
    #[error("the trust policy was not reloaded (the previous policy stays in force): {0}")]
    Reload(#[from] ConfigError),
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        let kind = match &e {
            AdminError::InvalidDomain { .. } | AdminError::Reload(_) => ProblemType::InvalidRequest,
            AdminError::NotTracked(_) => ProblemType::NotFound,
        };
        ApiError::new(kind, e.to_string())
    }
}

/// Parses a domain typed by the operator.
pub fn parse_domain(raw: &str) -> Result<Host, AdminError> {
    Host::parse(raw.trim()).map_err(|e| AdminError::InvalidDomain {
        input: raw.chars().take(200).collect(),
        reason: e.to_string(),
    })
}

/// How a peer is doing, from the operator's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Its last contact succeeded.
    Healthy,
    /// It failed, and its backoff has run out: the next lookup contacts it again.
    Failing,
    /// It failed and is not contacted before its retry time.
    BackingOff,
    /// It answered, but its own policy refuses this node.
    RefusesUs,
    /// This node's trust policy refuses it: nothing is sent to it.
    RefusedByTrust,
}

impl PeerState {
    /// A stable name (`healthy`, `failing`, `backing_off`, `refuses_us`,
    /// `refused_by_trust`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Failing => "failing",
            Self::BackingOff => "backing_off",
            Self::RefusesUs => "refuses_us",
            Self::RefusedByTrust => "refused_by_trust",
        }
    }

    /// The words the status pages show.
    pub fn label(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Failing => "failing",
            Self::BackingOff => "backing off",
            Self::RefusesUs => "refuses this node",
            Self::RefusedByTrust => "refused by trust",
        }
    }
}

/// A remote node this node has contacted, with this node's verdict about it.
#[derive(Debug, Clone)]
pub struct PeerReport {
    /// Its contact history.
    pub status: PeerStatus,
    /// What this node's trust policy says about it now.
    pub verdict: Verdict,
    /// The verdict as one line.
    pub explanation: String,
}

impl PeerReport {
    /// How it is doing.
    pub fn state(&self) -> PeerState {
        if !self.verdict.allowed {
            PeerState::RefusedByTrust
        } else if self.status.health == PeerHealth::BackingOff {
            PeerState::BackingOff
        } else if self.status.failures > 0 {
            PeerState::Failing
        } else if self.status.refuses_us {
            PeerState::RefusesUs
        } else {
            PeerState::Healthy
        }
    }
}

/// Every remote node contacted so far, sorted by domain.
pub fn peers(state: &AppState) -> Vec<PeerReport> {
    let policy = state.federation.trust.current();
    let now = SystemTime::now();
    state
        .federation
        .peers()
        .into_iter()
        .map(|status| {
            let explained = explain(&policy, &status.host, now);
            PeerReport {
                status,
                verdict: explained.verdict,
                explanation: explained.line,
            }
        })
        .collect()
}

/// The configured static routes: domain and base URL.
pub fn static_routes(state: &AppState) -> Vec<(Host, Url)> {
    state
        .config
        .federation
        .peers
        .iter()
        .map(|p| (p.domain.clone(), p.url.clone()))
        .collect()
}

/// Clears the backoff of `host`, so that the next lookup contacts it at once.
pub fn retry(state: &AppState, host: &Host) -> Result<(), AdminError> {
    if !state.federation.retry_now(host) {
        return Err(AdminError::NotTracked(host.clone()));
    }
    tracing::info!(remote.host = %host, "peer backoff cleared by the admin");
    Ok(())
}

/// Drops the cached lookups of `host`, and its discovery route and server keys; returns
/// how many lookups were dropped.
pub async fn flush(state: &AppState, host: &Host) -> usize {
    let flushed = state.federation.flush_domain(host).await;
    state.federation.discovery.flush(host).await;
    tracing::info!(remote.host = %host, flushed, "cache of a domain flushed by the admin");
    flushed
}

/// A trust verdict with its one-line explanation.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The verdict and the deciding entry.
    pub verdict: Verdict,
    /// The verdict as one line, as `pd-server trust explain` prints it.
    pub line: String,
}

/// Whether `policy` lets this node federate with `host` at `now`, and why: the one code
/// path of `pd-server trust explain`, `GET /admin/trust/explain/{domain}` and the trust
/// page's explain form.
pub fn explain(policy: &TrustPolicy, host: &Host, now: SystemTime) -> Explanation {
    let verdict = policy.decide(host, now);
    let line = verdict.explain(host);
    Explanation { verdict, line }
}

/// Reads the trust policy again (like SIGHUP) and puts it in force.
pub async fn reload(state: &AppState) -> Result<PolicyDiff, AdminError> {
    match state.federation.reload_trust(&state.config).await {
        Ok(diff) => Ok(diff),
        Err(e) => {
            tracing::error!(error = %e, "trust policy not reloaded; the previous policy stays in force");
            Err(AdminError::Reload(e))
        }
    }
}

/// A subscribed trust list with the state of its fetches.
#[derive(Debug, Clone)]
pub struct SubscriptionReport {
    /// The subscription as configured.
    pub config: SubscriptionConfig,
    /// Its fetches so far.
    pub status: SubscriptionStatus,
}

/// Every subscribed trust list, in configuration order.
pub fn subscriptions(state: &AppState) -> Vec<SubscriptionReport> {
    let status = state.federation.subscriptions();
    state
        .federation
        .trust
        .current()
        .local()
        .subscriptions
        .iter()
        .map(|sub| SubscriptionReport {
            config: sub.clone(),
            status: status.get(&sub.url).cloned().unwrap_or_default(),
        })
        .collect()
}
