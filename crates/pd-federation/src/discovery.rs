//! Server discovery: which URL serves a domain's PD node, and which server keys that node
//! publishes.
//!
//! For a domain `H`, [`Discovery::locate`] tries, in order:
//!
//! 1. a static peer route from the configuration;
//! 2. delegation: `GET https://H/.well-known/pd` (body capped, no redirects). A JSON object
//!    with a `base_url` delegates to that URL, which must be `https`, name a valid DNS host
//!    and carry no user info, query or fragment. A 404 (or any other 4xx), or a document
//!    without `base_url` (the node's own well-known document), means no delegation;
//! 3. `https://H` itself.
//!
//! Discovery holds the node's trust policy and asks it at the moment of use, on every
//! path: a domain the policy refuses is never contacted (not even for its
//! `/.well-known/pd`), and a route that delegates to a host the policy refuses is refused
//! ([`DiscoveryError::Refused`]) before anything is sent to that host, whether the route
//! is fresh or cached and whatever asks for it: outbound lookups, the server key fetches
//! that authenticate inbound requests, and `pd-server doctor`. Static routes are the
//! operator's own configuration; only their domain is checked.
//!
//! Results are cached: successes for `discovery_ttl` with jitter, refreshed on use after
//! `discovery_refresh_percent` of that time (keeping the old result if the refresh fails),
//! failures for `discovery_failure_ttl`. Concurrent discoveries of one domain share one
//! request. [`Discovery::flush`] forgets a domain.
//!
//! Server keys ([`Discovery::fetch_server_keys`]) come from `GET {base}/.well-known/pd`;
//! the document must name the domain asked. Keys are cached until the earlier of
//! `server_key_ttl` and the last key's `valid_until`, and a key is never used after its own
//! `valid_until`. A key id that is not in the cached set makes discovery fetch the set
//! again at once (at most once a second per domain, and at most once every 30 seconds for
//! the same unknown key id), so a freshly rotated key is picked up by the first request
//! signed with it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use pd_proto::wire::{ServerKey, WellKnown};
use pd_proto::{Host, PublicKey, now_secs, paths};
use rand::Rng;
use reqwest::header::HeaderMap;
use url::Url;

use crate::config::FederationConfig;
use crate::error::{DiscoveryError, OutboundError};
use crate::guard::{GuardedClient, decode_json, ensure_success};
use crate::trust::Trust;

/// Entries kept per cache (routes and key sets).
const MAX_CACHED_DOMAINS: u64 = 100_000;

/// Longest a failed key fetch is cached.
const MAX_KEY_FAILURE_TTL: Duration = Duration::from_secs(60);

/// A key set is fetched again for an unknown key id only when it is older than this.
const MIN_KEY_REFETCH_INTERVAL: Duration = Duration::from_secs(1);

/// A key set fetched again for one unknown key id, which it still did not hold, is fetched
/// again for that same key id only when it is older than this.
const SAME_KEY_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// Longest accepted delegated base URL.
const MAX_BASE_URL_LEN: usize = 2048;

/// How a route was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A static peer from the configuration.
    Static,
    /// Delegation through the domain's `/.well-known/pd`.
    Delegated,
    /// The domain itself (`https://H`).
    Direct,
}

/// Where a domain's node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The node's API base URL.
    pub base_url: Url,
    /// How it was found.
    pub via: Via,
}

impl Route {
    /// The URL of `path` (which starts with `/`, already percent-encoded) under the base URL.
    pub fn endpoint(&self, path: &str) -> Result<Url, url::ParseError> {
        let base = self.base_url.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}{path}"))
    }
}

#[derive(Debug, Clone)]
struct CachedRoute {
    result: Result<Route, DiscoveryError>,
    fetched_at: Instant,
    ttl: Duration,
}

#[derive(Debug, Clone)]
struct CachedKeys {
    result: Result<Arc<Vec<ServerKey>>, DiscoveryError>,
    /// The host the keys were fetched from when the domain delegates elsewhere: checked
    /// against the policy again whenever the keys are used.
    delegated_to: Option<Host>,
    /// The unknown key id this fetch was made for, if any.
    fetched_for: Option<String>,
    fetched_at: Instant,
    ttl: Duration,
}

/// Per-entry lifetimes for the moka caches.
struct ByTtl;

impl Expiry<Host, CachedRoute> for ByTtl {
    fn expire_after_create(&self, _: &Host, value: &CachedRoute, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
    fn expire_after_update(
        &self,
        _: &Host,
        value: &CachedRoute,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

impl Expiry<Host, CachedKeys> for ByTtl {
    fn expire_after_create(&self, _: &Host, value: &CachedKeys, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
    fn expire_after_update(
        &self,
        _: &Host,
        value: &CachedKeys,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Finds other domains' nodes and their server keys, through the guarded client, within
/// the trust policy.
#[derive(Debug)]
pub struct Discovery {
    client: Arc<GuardedClient>,
    trust: Trust,
    peers: HashMap<Host, Url>,
    routes: Cache<Host, CachedRoute>,
    keys: Cache<Host, CachedKeys>,
    refreshing: Mutex<HashSet<Host>>,
    ttl: Duration,
    jitter_percent: u8,
    failure_ttl: Duration,
    refresh_percent: u8,
    key_ttl: Duration,
    max_well_known_bytes: u64,
    /// Replaces `https://H/` in tests, where nodes are plain-HTTP servers on loopback.
    direct_override: Option<Url>,
}

impl Discovery {
    /// Builds discovery over `client` with the static peers and lifetimes of `config`,
    /// contacting only what `trust` allows at the moment of use.
    pub fn new(client: Arc<GuardedClient>, config: &FederationConfig, trust: Trust) -> Self {
        Self {
            client,
            trust,
            peers: config
                .peers
                .iter()
                .map(|p| (p.domain.clone(), p.url.clone()))
                .collect(),
            routes: Cache::builder()
                .max_capacity(MAX_CACHED_DOMAINS)
                .expire_after(ByTtl)
                .build(),
            keys: Cache::builder()
                .max_capacity(MAX_CACHED_DOMAINS)
                .expire_after(ByTtl)
                .build(),
            refreshing: Mutex::new(HashSet::new()),
            ttl: config.discovery_ttl,
            jitter_percent: config.discovery_ttl_jitter_percent,
            failure_ttl: config.discovery_failure_ttl,
            refresh_percent: config.discovery_refresh_percent,
            key_ttl: config.server_key_ttl,
            max_well_known_bytes: config.max_well_known_bytes,
            direct_override: None,
        }
    }

    /// The guarded client discovery uses.
    pub fn client(&self) -> &Arc<GuardedClient> {
        &self.client
    }

    /// The trust policy discovery works within.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// Finds the node serving `domain`: [`DiscoveryError::Refused`] when the policy
    /// refuses the domain (nothing is sent) or the host it delegates to (nothing is sent to
    /// that host).
    pub async fn locate(&self, domain: &Host) -> Result<Route, DiscoveryError> {
        self.check(domain, domain)?;
        let route = self.route(domain).await?;
        if route.via == Via::Delegated {
            self.check(domain, &route_host(domain, &route)?)?;
        }
        Ok(route)
    }

    /// Refuses `host` (the domain itself, or the host it delegates to) when the policy in
    /// force refuses it.
    fn check(&self, domain: &Host, host: &Host) -> Result<(), DiscoveryError> {
        if self.trust.allows(host) {
            return Ok(());
        }
        if host != domain {
            tracing::info!(remote.host = %domain, delegation.target = %host, "delegation target refused by policy");
        }
        Err(DiscoveryError::Refused {
            domain: domain.to_string(),
            host: host.to_string(),
        })
    }

    /// The route to `domain` (static, cached or discovered now), not yet checked.
    async fn route(&self, domain: &Host) -> Result<Route, DiscoveryError> {
        if let Some(url) = self.peers.get(domain) {
            return Ok(Route {
                base_url: url.clone(),
                via: Via::Static,
            });
        }
        if domain.is_ip_literal() && self.direct_override.is_none() {
            return Err(DiscoveryError::NoNode {
                domain: domain.to_string(),
                reason: "IP-literal hosts are only contacted when configured as a static peer"
                    .into(),
            });
        }
        if let Some(entry) = self.routes.get(domain).await {
            if entry.result.is_ok() && self.due_for_refresh(&entry) && self.start_refresh(domain) {
                let fresh = self.discover(domain).await;
                self.end_refresh(domain);
                if fresh.result.is_ok() {
                    self.routes.insert(domain.clone(), fresh.clone()).await;
                    return fresh.result;
                }
                tracing::debug!(remote.host = %domain, "discovery refresh failed; keeping the previous route");
            }
            return entry.result;
        }
        self.routes
            .get_with_by_ref(domain, self.discover(domain))
            .await
            .result
    }

    /// Forgets the cached route and server keys of `domain`.
    pub async fn flush(&self, domain: &Host) {
        self.routes.invalidate(domain).await;
        self.keys.invalidate(domain).await;
    }

    /// The server keys `domain`'s node publishes and that are still valid, from cache
    /// when possible.
    pub async fn fetch_server_keys(&self, domain: &Host) -> Result<Vec<ServerKey>, DiscoveryError> {
        let entry = self.cached_keys(domain).await?;
        let now = now_secs();
        entry.result.map(|keys| {
            keys.iter()
                .filter(|k| k.valid_until > now)
                .cloned()
                .collect()
        })
    }

    /// The public key `domain` publishes under `key_id`, valid at `at` (Unix seconds).
    /// An unknown key id makes discovery fetch the key set again at once, to pick up a
    /// freshly rotated key: unless the set is less than a second old, or was already
    /// fetched again for this same key id less than 30 seconds ago.
    pub async fn server_key(
        &self,
        domain: &Host,
        key_id: &str,
        at: u64,
    ) -> Result<Option<PublicKey>, DiscoveryError> {
        let find = |keys: &[ServerKey]| {
            keys.iter()
                .find(|k| k.key_id == key_id && k.valid_until >= at && k.valid_until > now_secs())
                .map(|k| k.public_key)
        };
        let entry = self.cached_keys(domain).await?;
        if let Ok(keys) = &entry.result {
            if let Some(key) = find(keys) {
                return Ok(Some(key));
            }
            let age = entry.fetched_at.elapsed();
            let same_id = entry.fetched_for.as_deref() == Some(key_id);
            if age < MIN_KEY_REFETCH_INTERVAL || (same_id && age < SAME_KEY_REFETCH_INTERVAL) {
                return Ok(None);
            }
            tracing::debug!(remote.host = %domain, key_id, "unknown server key id; fetching the keys again");
            self.keys.invalidate(domain).await;
            let fresh = self
                .keys
                .get_with_by_ref(domain, self.load_keys(domain, Some(key_id)))
                .await;
            self.check_keys(domain, &fresh)?;
            return fresh.result.map(|keys| find(&keys));
        }
        entry.result.map(|_| None)
    }

    /// The cached (or freshly fetched) key set of `domain`, after checking the policy about
    /// the domain and the host that served the keys.
    async fn cached_keys(&self, domain: &Host) -> Result<CachedKeys, DiscoveryError> {
        self.check(domain, domain)?;
        let entry = self
            .keys
            .get_with_by_ref(domain, self.load_keys(domain, None))
            .await;
        self.check_keys(domain, &entry)?;
        Ok(entry)
    }

    fn check_keys(&self, domain: &Host, entry: &CachedKeys) -> Result<(), DiscoveryError> {
        match &entry.delegated_to {
            Some(target) => self.check(domain, target),
            None => Ok(()),
        }
    }

    fn due_for_refresh(&self, entry: &CachedRoute) -> bool {
        entry.fetched_at.elapsed() >= entry.ttl.mul_f64(f64::from(self.refresh_percent) / 100.0)
    }

    /// Claims the refresh of `domain`; false when another caller is already refreshing it.
    fn start_refresh(&self, domain: &Host) -> bool {
        let mut refreshing = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
        refreshing.insert(domain.clone())
    }

    fn end_refresh(&self, domain: &Host) {
        let mut refreshing = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
        refreshing.remove(domain);
    }

    fn success_ttl(&self) -> Duration {
        let spread = f64::from(self.jitter_percent) / 100.0;
        let factor = if spread > 0.0 {
            1.0 + rand::thread_rng().gen_range(-spread..=spread)
        } else {
            1.0
        };
        self.ttl.mul_f64(factor)
    }

    fn direct_base(&self, domain: &Host) -> Result<Url, DiscoveryError> {
        if let Some(url) = &self.direct_override {
            return Ok(url.clone());
        }
        Url::parse(&format!("https://{domain}/")).map_err(|e| DiscoveryError::NoNode {
            domain: domain.to_string(),
            reason: format!("cannot form a URL: {e}"),
        })
    }

    async fn discover(&self, domain: &Host) -> CachedRoute {
        let result = self.discover_uncached(domain).await;
        let ttl = match &result {
            Ok(route) => {
                tracing::debug!(remote.host = %domain, base_url = %route.base_url, via = ?route.via, "discovered node");
                self.success_ttl()
            }
            Err(err) => {
                tracing::info!(remote.host = %domain, error = %err, "discovery failed");
                self.failure_ttl
            }
        };
        CachedRoute {
            result,
            fetched_at: Instant::now(),
            ttl,
        }
    }

    async fn discover_uncached(&self, domain: &Host) -> Result<Route, DiscoveryError> {
        let direct = Route {
            base_url: self.direct_base(domain)?,
            via: Via::Direct,
        };
        let url = direct
            .endpoint(paths::WELL_KNOWN)
            .map_err(|e| DiscoveryError::NoNode {
                domain: domain.to_string(),
                reason: format!("cannot form a URL: {e}"),
            })?;
        let response = self
            .client
            .get(&url, HeaderMap::new(), Some(self.max_well_known_bytes))
            .await
            .map_err(|e| discovery_error(domain, e))?;
        match response.status {
            200..=299 => {}
            500..=599 => {
                return Err(DiscoveryError::Unreachable {
                    domain: domain.to_string(),
                    reason: format!("{} answered {}", paths::WELL_KNOWN, response.status),
                });
            }
            // 404 and any other refusal: the domain publishes no delegation.
            _ => return Ok(direct),
        }
        let invalid = |reason: String| DiscoveryError::Invalid {
            domain: domain.to_string(),
            reason,
        };
        let document: serde_json::Value = serde_json::from_slice(&response.body)
            .map_err(|e| invalid(format!("{} is not JSON: {e}", paths::WELL_KNOWN)))?;
        let object = document
            .as_object()
            .ok_or_else(|| invalid(format!("{} is not a JSON object", paths::WELL_KNOWN)))?;
        match object.get("base_url") {
            None | Some(serde_json::Value::Null) => Ok(direct),
            Some(serde_json::Value::String(base)) => Ok(Route {
                base_url: validate_delegation(base).map_err(invalid)?,
                via: Via::Delegated,
            }),
            Some(_) => Err(invalid("base_url is not a string".into())),
        }
    }

    async fn load_keys(&self, domain: &Host, fetched_for: Option<&str>) -> CachedKeys {
        let (result, delegated_to) = match self.load_keys_uncached(domain).await {
            Ok((keys, delegated_to)) => (Ok(keys), delegated_to),
            Err(e) => (Err(e), None),
        };
        let now = now_secs();
        let ttl = match &result {
            // A refusal by policy is decided again at every use, so it is not kept.
            Err(DiscoveryError::Refused { .. }) => Duration::ZERO,
            Ok(keys) => {
                let last_valid = keys.iter().map(|k| k.valid_until).max().unwrap_or(now);
                self.key_ttl
                    .min(Duration::from_secs(last_valid.saturating_sub(now)))
                    .max(Duration::from_secs(1))
            }
            Err(err) => {
                tracing::info!(remote.host = %domain, error = %err, "server key fetch failed");
                self.failure_ttl.min(MAX_KEY_FAILURE_TTL)
            }
        };
        CachedKeys {
            result,
            delegated_to,
            fetched_for: fetched_for.map(str::to_owned),
            fetched_at: Instant::now(),
            ttl,
        }
    }

    /// The keys `domain` publishes, and the host they came from when it delegates.
    async fn load_keys_uncached(
        &self,
        domain: &Host,
    ) -> Result<(Arc<Vec<ServerKey>>, Option<Host>), DiscoveryError> {
        let route = self.locate(domain).await?;
        let delegated_to = match route.via {
            Via::Delegated => Some(route_host(domain, &route)?),
            Via::Static | Via::Direct => None,
        };
        let url = route
            .endpoint(paths::WELL_KNOWN)
            .map_err(|e| DiscoveryError::Invalid {
                domain: domain.to_string(),
                reason: format!("cannot form a URL: {e}"),
            })?;
        let response = self
            .client
            .get(&url, HeaderMap::new(), None)
            .await
            .map_err(|e| discovery_error(domain, e))?;
        ensure_success(&url, &response).map_err(|e| discovery_error(domain, e))?;
        let document: WellKnown =
            decode_json(&url, &response).map_err(|e| discovery_error(domain, e))?;
        if document.domain != *domain {
            tracing::warn!(remote.host = %domain, claimed = %document.domain, "well-known document names another domain");
            return Err(DiscoveryError::Invalid {
                domain: domain.to_string(),
                reason: format!("the document is for {}", document.domain),
            });
        }
        let now = now_secs();
        let keys: Vec<ServerKey> = document
            .server_keys
            .into_iter()
            .filter(|k| k.valid_until > now && pd_proto::node_auth::is_valid_key_id(&k.key_id))
            .collect();
        if keys.is_empty() {
            return Err(DiscoveryError::Invalid {
                domain: domain.to_string(),
                reason: "no valid server key is published".into(),
            });
        }
        Ok((Arc::new(keys), delegated_to))
    }
}

/// The host a route leads to, as the trust policy sees it (without the port).
fn route_host(domain: &Host, route: &Route) -> Result<Host, DiscoveryError> {
    route
        .base_url
        .host_str()
        .and_then(|h| Host::parse(h).ok())
        .ok_or_else(|| DiscoveryError::Invalid {
            domain: domain.to_string(),
            reason: format!("the route {} names no valid host", route.base_url),
        })
}

/// Checks a delegated base URL: `https`, a DNS host that is a valid PD host, no user info,
/// query or fragment. Returns it with a trailing `/`.
fn validate_delegation(base: &str) -> Result<Url, String> {
    if base.len() > MAX_BASE_URL_LEN {
        return Err("base_url is too long".into());
    }
    let url = Url::parse(base).map_err(|e| format!("base_url is not a URL: {e}"))?;
    if url.scheme() != "https" {
        return Err("base_url must use https".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("base_url must not contain user info".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("base_url must not contain a query or fragment".into());
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_owned(),
        Some(_) => return Err("base_url must name a DNS host, not an IP address".into()),
        None => return Err("base_url has no host".into()),
    };
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    };
    Host::parse(&authority).map_err(|e| format!("base_url host is invalid: {e}"))?;
    let mut url = url;
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

fn discovery_error(domain: &Host, err: OutboundError) -> DiscoveryError {
    let domain = domain.to_string();
    let reason = err.to_string();
    match err {
        OutboundError::Forbidden { .. } | OutboundError::Connect { .. } => {
            DiscoveryError::NoNode { domain, reason }
        }
        OutboundError::Timeout { .. } => DiscoveryError::Unreachable { domain, reason },
        OutboundError::Status { status, .. } if status >= 500 => {
            DiscoveryError::Unreachable { domain, reason }
        }
        _ => DiscoveryError::Invalid { domain, reason },
    }
}

#[cfg(test)]
impl Discovery {
    /// Discovery whose direct route for every non-static domain is `base` (a loopback
    /// test server that `client` treats as a static peer).
    pub(crate) fn with_direct_base(
        client: Arc<GuardedClient>,
        config: &FederationConfig,
        trust: Trust,
        base: Url,
    ) -> Self {
        Self {
            direct_override: Some(base),
            ..Self::new(client, config, trust)
        }
    }
}

#[cfg(test)]
mod tests;
