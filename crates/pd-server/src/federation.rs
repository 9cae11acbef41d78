//! The node's federation side, assembled from `pd_federation`: the one guarded outbound
//! client, discovery, the resolver (cache, single flight, backoff, serve-stale) over signed
//! upstream lookups, the inbound verifier with the trust policy as its origin policy, and
//! the trust handle with its list subscriptions (their last good copies kept in the store).
//!
//! Architecture invariant: the trust policy is asked before every resolver call (the
//! resolver is private; [`Federation::resolve`] is the only way to it and asks first),
//! before any origin key is fetched, and (inside `Discovery`, on every path that locates a
//! node) about every domain and delegation target before it is contacted, so a refused
//! domain causes no network traffic at all.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use pd_federation::backoff::PeerStatus;
use pd_federation::destination_limit::DestinationLimit;
use pd_federation::discovery::Discovery;
use pd_federation::guard::GuardedClient;
use pd_federation::node_auth::{InboundVerifier, NodeSigner};
use pd_federation::resolver::{ResolveError, Resolved, Resolver, ResolverMetrics};
use pd_federation::trust::{
    ArchivedList, ListArchive, PolicyDiff, SubscriptionRefresher, SubscriptionStatus, Trust,
    TrustPolicy,
};
use pd_federation::upstream::Upstream;
use pd_proto::{Address, Host, LookupMode, SecretKey};
use tokio::sync::watch;
use url::Url;

use crate::config::{Config, ConfigError};
use crate::store::Store;

/// Why [`Federation::resolve`] gave no answer.
#[derive(Debug)]
pub enum RemoteError {
    /// The trust policy refuses the domain (the verdict's reason label); nothing was
    /// asked.
    Refused(&'static str),
    /// The resolver's error.
    Failed(ResolveError),
}

/// Everything the node needs to talk to other nodes; shared behind an `Arc`.
pub struct Federation {
    /// Lookups of other domains' users; reached only through [`Federation::resolve`],
    /// which asks the trust policy first.
    resolver: Resolver<Upstream>,
    /// Authenticates signed node-to-node requests; refuses origins the trust policy refuses
    /// before fetching their keys.
    pub verifier: InboundVerifier,
    /// The trust policy in force.
    pub trust: Trust,
    /// Routes to other nodes and their server keys.
    pub discovery: Arc<Discovery>,
    refresher: SubscriptionRefresher<Arc<GuardedClient>>,
    /// Held while cached answers are dropped: a reload drops them at once and the change
    /// watcher ([`Federation::run`]) sees the same change, so one finds nothing left and
    /// the drop is logged once.
    flushing: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Federation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Federation")
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

impl Federation {
    /// Builds the federation pieces from `config`, signing as this node with the key that
    /// `signing` holds at the moment of signing, and keeping subscribed trust lists in
    /// `store`.
    pub fn new(
        config: &Config,
        signing: Arc<ArcSwap<SecretKey>>,
        store: Store,
    ) -> anyhow::Result<Self> {
        let local = config.resolved_trust()?;
        let policy = TrustPolicy::new(config.domain.clone(), local)
            .context("failed to build the trust policy")?;
        let trust = Trust::new(policy);
        let (client, discovery) = outbound(config, &trust)?;
        let signer = NodeSigner::shared(signing, config.domain.clone());
        let upstream = upstream(config, &discovery, signer);
        let resolver = Resolver::new(
            upstream,
            config.federation.cache.clone(),
            config.federation.backoff.clone(),
        );
        let origin_trust = trust.clone();
        let verifier =
            InboundVerifier::new(Arc::clone(&discovery), config.federation.max_request_age)
                .with_policy(Arc::new(move |origin: &Host| origin_trust.allows(origin)));
        let refresher =
            SubscriptionRefresher::new(trust.clone(), client).with_archive(Arc::new(store));
        Ok(Self {
            resolver,
            verifier,
            trust,
            discovery,
            refresher,
            flushing: tokio::sync::Mutex::new(()),
        })
    }

    /// Looks `address` up through the resolver (cache, then one signed upstream lookup,
    /// per `mode`), after asking the trust policy about its domain: a refused domain causes
    /// no network traffic and gets no answer from the cache, in every mode.
    pub async fn resolve(
        &self,
        address: &Address,
        mode: LookupMode,
    ) -> Result<Resolved, RemoteError> {
        let verdict = self.trust.decide(address.host());
        if !verdict.allowed {
            return Err(RemoteError::Refused(verdict.why.as_str()));
        }
        self.resolver
            .lookup(address, mode)
            .await
            .map_err(RemoteError::Failed)
    }

    /// The peers the resolver tracks, with their backoff state.
    pub fn peers(&self) -> Vec<PeerStatus> {
        self.resolver.peers()
    }

    /// Clears the backoff of `host`; returns whether the peer was known.
    pub fn retry_now(&self, host: &Host) -> bool {
        self.resolver.retry_now(host)
    }

    /// Drops the cached answers about addresses at `host`; returns how many.
    pub async fn flush_domain(&self, host: &Host) -> usize {
        self.resolver.flush_domain(host).await
    }

    /// How many answers the cache holds (after its pending maintenance), for the status
    /// pages and tests; the cached answers themselves are only served through
    /// [`Federation::resolve`].
    pub async fn cached_answers(&self) -> u64 {
        let cache = self.resolver.cache();
        cache.run_pending_tasks().await;
        cache.entry_count()
    }

    /// The resolver's metrics, to register with the node's.
    pub fn resolver_metrics(&self) -> &ResolverMetrics {
        self.resolver.metrics()
    }

    /// Reads the trust policy again (from the configuration file the node was started
    /// with, or the trust file it names) and puts it in force. On error the policy in force
    /// stays. Cached answers of newly refused domains are dropped.
    pub async fn reload_trust(&self, config: &Config) -> Result<PolicyDiff, ConfigError> {
        let fresh = match &config.source {
            Some(path) => {
                let mut reread = Config::from_file(path)?;
                reread.source = Some(path.clone());
                reread.resolved_trust()?
            }
            None => config.resolved_trust()?,
        };
        let diff = self
            .trust
            .reload(fresh)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.flush_newly_refused(&diff).await;
        Ok(diff)
    }

    /// Puts the kept copies of subscribed trust lists in force; call once before serving.
    pub async fn restore_trust_lists(&self) -> usize {
        let restored = self.refresher.restore().await;
        if restored > 0 {
            tracing::info!(restored, "subscribed trust lists restored from the store");
        }
        restored
    }

    /// The state of each subscribed trust list tried so far.
    pub fn subscriptions(&self) -> HashMap<Url, SubscriptionStatus> {
        self.refresher.status()
    }

    /// Drops cached answers of hosts that `diff` newly refuses.
    pub async fn flush_newly_refused(&self, diff: &PolicyDiff) -> usize {
        if !diff.may_refuse_more() {
            return 0;
        }
        let _flushing = self.flushing.lock().await;
        let now = SystemTime::now();
        let flushed = self
            .resolver
            .flush_where(|host| diff.newly_refused(host, now))
            .await;
        if flushed > 0 {
            tracing::info!(
                flushed,
                "dropped cached answers of domains the new trust policy refuses"
            );
        }
        flushed
    }

    /// Keeps subscribed trust lists fresh and, after every policy change (reloads and
    /// list refreshes alike), drops cached answers of newly refused domains; returns when
    /// `stop` turns true.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut stopped = stop.clone();
        let refresher = self.refresher.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        });
        let watcher = async {
            let mut changes = self.trust.subscribe_changes();
            let mut before = self.trust.current();
            while changes.changed().await.is_ok() {
                let after = self.trust.current();
                let diff = PolicyDiff::between(before, Arc::clone(&after));
                self.flush_newly_refused(&diff).await;
                before = after;
            }
        };
        tokio::select! {
            () = refresher => {}
            () = watcher => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        Ok(())
    }
}

/// The node's one guarded outbound client (trusting `federation.ca_file` besides the
/// built-in roots) and discovery over it within `trust`, as every outbound path of the node
/// uses them: discovery refuses a refused domain, or a host a domain delegates to that the
/// policy refuses, before contacting it.
pub fn outbound(
    config: &Config,
    trust: &Trust,
) -> anyhow::Result<(Arc<GuardedClient>, Arc<Discovery>)> {
    let client = Arc::new(
        GuardedClient::new(&config.federation)
            .context("failed to build the outbound HTTP client")?,
    );
    let discovery = Arc::new(Discovery::new(
        Arc::clone(&client),
        &config.federation,
        trust.clone(),
    ));
    Ok((client, discovery))
}

/// Signed, verified lookups at other nodes through `discovery`, signed by `signer`, within
/// the per-destination cap on uncached lookups (`federation.upstream_lookups_per_second`).
pub fn upstream(config: &Config, discovery: &Arc<Discovery>, signer: NodeSigner) -> Upstream {
    let nonzero = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
    let limit = DestinationLimit::new(
        nonzero(config.federation.upstream_lookups_per_second),
        nonzero(config.federation.upstream_lookup_burst),
    );
    Upstream::new(Arc::clone(discovery), signer).with_destination_limit(limit)
}

impl ListArchive for Store {
    fn load<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, Result<Option<ArchivedList>, String>> {
        Box::pin(async move {
            let copy = self
                .trust_list(url.as_str())
                .await
                .map_err(|e| e.to_string())?;
            Ok(copy.map(|(body, fetched_at)| ArchivedList {
                body,
                fetched_at: UNIX_EPOCH + Duration::from_secs(fetched_at),
            }))
        })
    }

    fn save<'a>(&'a self, url: &'a Url, list: ArchivedList) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let fetched_at = list
                .fetched_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            self.save_trust_list(url.as_str(), list.body, fetched_at)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
