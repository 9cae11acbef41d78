//! `Directory`: the one owner of the lookup. This node's users are answered from the
//! registry; other domains' users through federation, whose only way to the resolver asks
//! the trust policy first ([`Federation::resolve`]), so no caller can skip the check. The
//! lookup metrics are counted here, once per lookup.

use std::sync::Arc;

use pd_federation::resolver::{ResolveError, Resolved};
use pd_proto::lookup::LookupMode;
use pd_proto::wire::{LookupResponse, Source};
use pd_proto::{Address, now_micros};

use crate::federation::{Federation, RemoteError};
use crate::metrics::Metrics;
use crate::registry::{LocalLookup, Registry, RegistryError};

/// Seconds a lookup answer without a presence record may be reused.
const NO_PRESENCE_TTL: u64 = 60;

/// Answers lookups: local users from the registry, others through federation.
#[derive(Debug, Clone)]
pub struct Directory {
    registry: Arc<Registry>,
    federation: Arc<Federation>,
    metrics: Arc<Metrics>,
}

/// A successful lookup.
#[derive(Debug)]
pub enum Answer {
    /// One of this node's users, as stored (the presence envelope and rotation proofs are
    /// kept as the bytes received).
    Local {
        /// The address asked.
        address: Address,
        /// What the registry holds.
        found: LocalLookup,
    },
    /// Another domain's user: a verified answer, from the cache or the user's home node.
    Remote(Resolved),
}

/// Why a lookup failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// The registry refused or failed (unknown user, database unavailable).
    #[error(transparent)]
    Local(#[from] RegistryError),
    /// The trust policy refuses the address's domain; nothing was sent anywhere.
    #[error("this node does not federate with {}", .address.host().hostname())]
    Refused {
        /// The address asked.
        address: Address,
    },
    /// The lookup through federation failed.
    #[error("the lookup of {address} failed: {error}")]
    Remote {
        /// The address asked.
        address: Address,
        /// Why.
        error: ResolveError,
    },
}

impl Directory {
    /// A directory over `registry` and `federation`, counting lookups in `metrics`.
    pub fn new(
        registry: Arc<Registry>,
        federation: Arc<Federation>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            registry,
            federation,
            metrics,
        }
    }

    /// Looks `address` up: in the registry when it is this node's, else through federation
    /// (the trust policy first, then the resolver, per `mode`).
    pub async fn lookup(&self, address: &Address, mode: LookupMode) -> Result<Answer, LookupError> {
        if self.registry.is_local(address) {
            self.local(address).await
        } else {
            self.remote(address, mode).await
        }
    }

    /// Looks up one of this node's users (`wrong-domain` for another domain's); the
    /// node-to-node endpoint answers only this way.
    pub async fn local(&self, address: &Address) -> Result<Answer, LookupError> {
        match self.registry.lookup_local(address).await {
            Ok(found) => {
                self.metrics.lookup("local", "found");
                Ok(Answer::Local {
                    address: address.clone(),
                    found,
                })
            }
            Err(e) => {
                let result = if matches!(e, RegistryError::UnknownUser(_)) {
                    "not_found"
                } else {
                    "error"
                };
                self.metrics.lookup("local", result);
                Err(e.into())
            }
        }
    }

    async fn remote(&self, address: &Address, mode: LookupMode) -> Result<Answer, LookupError> {
        match self.federation.resolve(address, mode).await {
            Ok(resolved) => {
                let source = match resolved.response.source {
                    Source::Local => "local",
                    Source::Cache => "cache",
                    Source::Remote => "remote",
                    Source::Stale => "stale",
                };
                self.metrics.lookup(source, "found");
                Ok(Answer::Remote(resolved))
            }
            Err(RemoteError::Refused(reason)) => {
                self.metrics.refused_lookup(reason);
                self.metrics.lookup("remote", "refused");
                Err(LookupError::Refused {
                    address: address.clone(),
                })
            }
            Err(RemoteError::Failed(error)) => {
                let result = match &error {
                    ResolveError::UnknownUser => "not_found",
                    ResolveError::RateLimited { .. } => "rate_limited",
                    ResolveError::DelegationRefused(_) => {
                        self.metrics.refused_lookup("delegation_refused");
                        "refused"
                    }
                    _ => "error",
                };
                self.metrics.lookup("remote", result);
                Err(LookupError::Remote {
                    address: address.clone(),
                    error,
                })
            }
        }
    }
}

impl Answer {
    /// The answer as the JSON body of `GET /v1/lookup/{address}` (and of the node-to-node
    /// lookup): a local user's stored presence envelope and rotation proofs are placed as
    /// stored, by [`LookupResponse::write_local`], with `ttl` the seconds until the record
    /// expires (60 without a record).
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        match self {
            Self::Local { address, found } => {
                let now = now_micros() / 1_000_000;
                let (presence, ttl) = match &found.presence {
                    Some(p) => (Some(&*p.envelope), p.expires_at.saturating_sub(now)),
                    None => (None, NO_PRESENCE_TTL),
                };
                let rotations = found.rotations.as_ref().map(|r| &*r.json);
                let mut body = Vec::new();
                LookupResponse::write_local(
                    &mut body, address, &found.key, presence, rotations, ttl,
                )?;
                Ok(body)
            }
            Self::Remote(resolved) => resolved.to_json(),
        }
    }
}
