//! The resolver engine: answers lookups of remote addresses from the cache, or through
//! one coalesced upstream fetch, honouring per-peer backoff and serving stale answers
//! when a peer is unreachable.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use pd_proto::wire::{LookupResponse, Source};
use pd_proto::{Address, Host, VerifiedLookup};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backoff::{Backoff, BackoffConfig, PeerStatus};
use crate::cache::{CacheConfig, CacheEntry, Freshness, LookupCache};

/// The seam between the resolver and the network: performs one verified lookup of a
/// remote address at that address's home node.
///
/// The answer is a [`VerifiedLookup`], so it passed [`pd_proto::verify_lookup_answer`];
/// an implementation must also only return one about exactly `addr` (the resolver caches it
/// under `addr`).
pub trait UpstreamLookup: Send + Sync + 'static {
    /// Fetches and verifies the lookup answer for `addr` from its home node.
    fn fetch(
        &self,
        addr: &Address,
    ) -> impl Future<Output = Result<VerifiedLookup, ResolveError>> + Send;
}

/// Why a lookup of a remote address failed: at the home node (the upstream's errors), or
/// in the resolver itself (backoff, cache-only).
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
    /// The domain delegates to a host this node's policy refuses.
    #[error("the domain's node is at {0}, which this node does not federate with")]
    DelegationRefused(String),
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
    /// The answer is not cached and this node already sent as many uncached lookups to the
    /// domain as it allows; no stale answer was available.
    #[error("at most {per_second} uncached lookups a second go to one domain; next in {}s", retry_in.as_secs())]
    RateLimited {
        /// The per-destination limit.
        per_second: u32,
        /// Time until the next lookup of the domain may be sent.
        retry_in: Duration,
    },
}

pub use pd_proto::lookup::LookupMode;

/// A successful lookup.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The verified answer; `source` says where it came from (cache, remote or stale) and
    /// `ttl` equals [`Resolved::ttl_secs`].
    pub response: LookupResponse,
    /// Seconds the answer may still be used.
    pub ttl_secs: u64,
    /// `response`'s JSON members before `source` when they were encoded before (an
    /// answer from the cache), so that [`Resolved::to_json`] is a copy.
    head: Option<Arc<str>>,
}

impl<T: UpstreamLookup> UpstreamLookup for Arc<T> {
    fn fetch(
        &self,
        addr: &Address,
    ) -> impl Future<Output = Result<VerifiedLookup, ResolveError>> + Send {
        T::fetch(self, addr)
    }
}

/// The outcome of one upstream fetch, shared with every lookup that waited for it.
type FetchOutcome = Result<Arc<CacheEntry>, ResolveError>;

/// Resolves remote addresses: cache first, then one coalesced upstream fetch per address,
/// with per-peer backoff and RFC 8767 serve-stale.
///
/// Decisions:
/// - Stale answers (expired by at most `stale_window`) are served in normal mode when the
///   peer is unreachable, answered garbage ([`ResolveError::BadAnswer`]), is in backoff,
///   or is over the per-destination rate of uncached lookups. The stale answer was verified when it was fetched, so a bad answer now is no
///   reason to distrust it. "Unknown user", "refused" and "no node" are authoritative and
///   are never masked. Negative answers are never served stale.
/// - Only [`ResolveError::Unreachable`] and [`ResolveError::BadAnswer`] count as peer
///   failures for backoff; "unknown user" and "refused" prove the peer alive and reset
///   it; "no node" leaves it unchanged (discovery has its own failure cache).
/// - [`LookupMode::Refresh`] never answers from the cache, not even stale.
pub struct Resolver<U> {
    upstream: U,
    cache: LookupCache,
    backoff: Backoff,
    metrics: ResolverMetrics,
    inflight: Mutex<HashMap<Address, watch::Receiver<Option<FetchOutcome>>>>,
}

impl<U> fmt::Debug for Resolver<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("cache", &self.cache)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

enum Role {
    Leader(watch::Sender<Option<FetchOutcome>>),
    Follower(watch::Receiver<Option<FetchOutcome>>),
}

impl<U: UpstreamLookup> Resolver<U> {
    /// Creates a resolver with an empty cache and no peer history.
    pub fn new(upstream: U, cache: CacheConfig, backoff: BackoffConfig) -> Self {
        Self {
            upstream,
            cache: LookupCache::new(cache),
            backoff: Backoff::new(backoff),
            metrics: ResolverMetrics::new(),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// Looks up `addr` at its home node (through the cache, per `mode`).
    #[tracing::instrument(level = "debug", skip_all, fields(remote.address = %addr, mode = ?mode))]
    pub async fn lookup(&self, addr: &Address, mode: LookupMode) -> Result<Resolved, ResolveError> {
        let mut counted_miss = false;
        loop {
            if mode != LookupMode::Refresh
                && let Some(answer) = self.fresh_from_cache(addr).await
            {
                return answer;
            }
            if !counted_miss {
                self.metrics.cache_misses.inc();
                counted_miss = true;
            }
            if mode == LookupMode::CacheOnly {
                return Err(ResolveError::NotCached);
            }
            if let Err(retry) = self.backoff.allows(addr.host()) {
                self.metrics.backoff_rejections.inc();
                let err = ResolveError::PeerBackingOff {
                    retry_in: retry.retry_in,
                };
                return self.stale_or(addr, mode, err).await;
            }
            let outcome = match self.join_or_lead(addr) {
                Role::Follower(mut rx) => {
                    self.metrics.coalesced_waits.inc();
                    let shared = match rx.wait_for(Option::is_some).await {
                        Ok(shared) => shared.clone(),
                        // The fetching lookup was cancelled; start over (possibly leading).
                        Err(_) => continue,
                    };
                    match shared {
                        Some(outcome) => outcome,
                        None => continue,
                    }
                }
                Role::Leader(tx) => {
                    let guard = InflightGuard {
                        inflight: &self.inflight,
                        addr,
                        rx: tx.subscribe(),
                    };
                    // A fetch may have finished between the cache check and taking the
                    // lead: then the cache answers, for this lookup and its waiters
                    // (dropping `tx` unanswered sends them back to the cache too).
                    if mode != LookupMode::Refresh && self.has_fresh(addr).await {
                        continue;
                    }
                    let outcome = self.fetch_and_store(addr).await;
                    tx.send_replace(Some(outcome.clone()));
                    drop(guard);
                    outcome
                }
            };
            return self.finish(addr, mode, outcome).await;
        }
    }

    /// The answer cache.
    pub fn cache(&self) -> &LookupCache {
        &self.cache
    }

    /// The per-peer failure tracking.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// The resolver's metrics (register them with [`ResolverMetrics::register`]).
    pub fn metrics(&self) -> &ResolverMetrics {
        &self.metrics
    }

    /// Removes every cached answer about addresses at `host`; returns how many.
    pub async fn flush_domain(&self, host: &Host) -> usize {
        self.cache.flush_domain(host).await
    }

    /// Removes every cached answer whose host matches `pred`; returns how many.
    pub async fn flush_where(&self, pred: impl Fn(&Host) -> bool) -> usize {
        self.cache.flush_where(pred).await
    }

    /// Lists the tracked peers with their state.
    pub fn peers(&self) -> Vec<PeerStatus> {
        self.backoff.snapshot()
    }

    /// Clears the backoff of `host`; returns whether the peer was known.
    pub fn retry_now(&self, host: &Host) -> bool {
        self.backoff.retry_now(host)
    }

    async fn fresh_from_cache(&self, addr: &Address) -> Option<Result<Resolved, ResolveError>> {
        let entry = self.cache.get(addr).await?;
        let now = Instant::now();
        let Freshness::Fresh(left) = entry.freshness(now, self.cache.config().stale_window) else {
            return None;
        };
        match Resolved::from_entry(&entry, now, Source::Cache, left) {
            Some(resolved) => {
                self.metrics.cache_hits.inc();
                Some(Ok(resolved))
            }
            None => {
                self.metrics.negative_hits.inc();
                Some(Err(ResolveError::UnknownUser))
            }
        }
    }

    async fn has_fresh(&self, addr: &Address) -> bool {
        let window = self.cache.config().stale_window;
        self.cache.get(addr).await.is_some_and(|entry| {
            matches!(entry.freshness(Instant::now(), window), Freshness::Fresh(_))
        })
    }

    fn join_or_lead(&self, addr: &Address) -> Role {
        let mut inflight = self.lock_inflight();
        if let Some(rx) = inflight.get(addr) {
            return Role::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        inflight.insert(addr.clone(), rx);
        Role::Leader(tx)
    }

    async fn fetch_and_store(&self, addr: &Address) -> FetchOutcome {
        let host = addr.host();
        self.metrics.upstream_requests.inc();
        let epoch = self.cache.epoch();
        let started = Instant::now();
        let result = self.upstream.fetch(addr).await;
        let elapsed = started.elapsed();
        self.metrics.upstream_latency.observe(elapsed.as_secs_f64());
        // The peer's answer time; a timeout or a failed connection is no answer.
        if !matches!(
            result,
            Err(ResolveError::Unreachable(_)
                | ResolveError::NoNode
                | ResolveError::DelegationRefused(_))
        ) {
            self.backoff.record_latency(host, elapsed);
        }
        match result {
            Ok(verified) => {
                self.backoff.record_success(host);
                let entry = self.cache.found_entry(addr, verified.into_response());
                self.cache.store_since(epoch, addr, &entry).await;
                Ok(entry)
            }
            Err(err) => {
                if let Some(kind) = ErrorKind::of(&err) {
                    self.metrics
                        .upstream_errors
                        .get_or_create(&ErrorLabels { kind })
                        .inc();
                }
                match &err {
                    ResolveError::UnknownUser => {
                        self.backoff.record_success(host);
                        let entry = self.cache.unknown_entry(addr);
                        self.cache.store_since(epoch, addr, &entry).await;
                    }
                    ResolveError::RemoteRefused => self.backoff.record_refusal(host),
                    ResolveError::Unreachable(why) | ResolveError::BadAnswer(why) => {
                        let retry = self.backoff.record_failure(host, &err.to_string());
                        tracing::warn!(
                            remote.address = %addr,
                            remote.host = %host,
                            retry_in = ?retry.retry_in,
                            error = %why,
                            "remote node failed; backing off"
                        );
                    }
                    ResolveError::NoNode
                    | ResolveError::DelegationRefused(_)
                    | ResolveError::RateLimited { .. }
                    | ResolveError::PeerBackingOff { .. }
                    | ResolveError::NotCached => {}
                }
                Err(err)
            }
        }
    }

    async fn finish(
        &self,
        addr: &Address,
        mode: LookupMode,
        outcome: FetchOutcome,
    ) -> Result<Resolved, ResolveError> {
        match outcome {
            Ok(entry) => {
                let now = Instant::now();
                let left = match entry.freshness(now, Duration::ZERO) {
                    Freshness::Fresh(left) => left,
                    Freshness::Stale(_) | Freshness::Expired => Duration::ZERO,
                };
                Resolved::from_entry(&entry, now, Source::Remote, left)
                    .ok_or(ResolveError::UnknownUser)
            }
            Err(
                err @ (ResolveError::Unreachable(_)
                | ResolveError::BadAnswer(_)
                | ResolveError::RateLimited { .. }),
            ) => self.stale_or(addr, mode, err).await,
            Err(err) => Err(err),
        }
    }

    /// Serves a stale positive answer for `addr` if one is within the stale window (and
    /// the mode allows the cache), otherwise fails with `err`.
    async fn stale_or(
        &self,
        addr: &Address,
        mode: LookupMode,
        err: ResolveError,
    ) -> Result<Resolved, ResolveError> {
        if mode == LookupMode::Refresh {
            return Err(err);
        }
        let Some(entry) = self.cache.get(addr).await else {
            return Err(err);
        };
        let now = Instant::now();
        let config = self.cache.config();
        let resolved = match entry.freshness(now, config.stale_window) {
            // Another lookup stored a fresh answer meanwhile.
            Freshness::Fresh(left) => {
                self.metrics.cache_hits.inc();
                Resolved::from_entry(&entry, now, Source::Cache, left)
            }
            Freshness::Stale(window_left) => {
                let ttl = config.stale_ttl.min(window_left);
                let resolved = Resolved::from_entry(&entry, now, Source::Stale, ttl);
                if resolved.is_some() {
                    self.metrics.stale_serves.inc();
                    tracing::debug!(remote.address = %addr, error = %err, "serving stale answer");
                }
                resolved
            }
            Freshness::Expired => None,
        };
        resolved.ok_or(err)
    }

    fn lock_inflight(
        &self,
    ) -> MutexGuard<'_, HashMap<Address, watch::Receiver<Option<FetchOutcome>>>> {
        // The map holds plain handles; a panic elsewhere cannot leave it inconsistent.
        self.inflight.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Resolved {
    fn new(response: LookupResponse) -> Self {
        Self {
            ttl_secs: response.ttl,
            response,
            head: None,
        }
    }

    /// The positive answer of `entry` as served at `now` with `source` and `ttl`, with
    /// its encoding (`None` for a negative entry).
    fn from_entry(entry: &CacheEntry, now: Instant, source: Source, ttl: Duration) -> Option<Self> {
        let response = entry.response(now, source, ttl)?;
        Some(Self {
            head: entry.json_head(now),
            ..Self::new(response)
        })
    }

    /// The answer as the JSON body of a lookup: the bytes `serde_json` writes for
    /// `response`, copied from the cached encoding when there is one.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        match &self.head {
            Some(head) => {
                let mut out = Vec::new();
                LookupResponse::write_with_head(
                    &mut out,
                    head,
                    self.response.source,
                    self.response.ttl,
                )?;
                Ok(out)
            }
            None => serde_json::to_vec(&self.response),
        }
    }
}

/// Removes the in-flight marker of a fetch when the fetching lookup finishes or is
/// dropped, so that a cancelled fetch leaves nothing behind: waiters see the channel
/// close and start over.
struct InflightGuard<'a> {
    inflight: &'a Mutex<HashMap<Address, watch::Receiver<Option<FetchOutcome>>>>,
    addr: &'a Address,
    rx: watch::Receiver<Option<FetchOutcome>>,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        let mut inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        if inflight
            .get(self.addr)
            .is_some_and(|rx| rx.same_channel(&self.rx))
        {
            inflight.remove(self.addr);
        }
    }
}

/// Kinds of upstream failure, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ErrorKind {
    /// [`ResolveError::UnknownUser`].
    unknown_user,
    /// [`ResolveError::NoNode`].
    no_node,
    /// [`ResolveError::Unreachable`].
    unreachable,
    /// [`ResolveError::BadAnswer`].
    bad_answer,
    /// [`ResolveError::RemoteRefused`].
    refused,
    /// [`ResolveError::DelegationRefused`].
    delegation_refused,
    /// [`ResolveError::RateLimited`].
    rate_limited,
}

impl ErrorKind {
    /// The kind of an upstream's error; `None` for the resolver's own refusals, which no
    /// upstream returns.
    fn of(err: &ResolveError) -> Option<Self> {
        Some(match err {
            ResolveError::UnknownUser => Self::unknown_user,
            ResolveError::NoNode => Self::no_node,
            ResolveError::Unreachable(_) => Self::unreachable,
            ResolveError::BadAnswer(_) => Self::bad_answer,
            ResolveError::RemoteRefused => Self::refused,
            ResolveError::DelegationRefused(_) => Self::delegation_refused,
            ResolveError::RateLimited { .. } => Self::rate_limited,
            ResolveError::PeerBackingOff { .. } | ResolveError::NotCached => return None,
        })
    }
}

/// Label set of the upstream error counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The kind of failure.
    pub kind: ErrorKind,
}

/// Counters and the latency histogram of the resolver. Cloning shares the metrics.
#[derive(Debug, Clone)]
pub struct ResolverMetrics {
    /// Lookups answered from a fresh positive cache entry.
    pub cache_hits: Counter,
    /// Lookups that found no fresh cache entry (including cache-only misses).
    pub cache_misses: Counter,
    /// Lookups answered from a fresh negative ("unknown user") cache entry.
    pub negative_hits: Counter,
    /// Lookups answered with a stale entry because the peer failed or was backing off.
    pub stale_serves: Counter,
    /// Lookups that waited for another lookup's fetch of the same address.
    pub coalesced_waits: Counter,
    /// Lookups refused at once because the peer is in backoff.
    pub backoff_rejections: Counter,
    /// Fetches from remote nodes.
    pub upstream_requests: Counter,
    /// Failed fetches by kind.
    pub upstream_errors: Family<ErrorLabels, Counter>,
    /// Duration of fetches from remote nodes, in seconds.
    pub upstream_latency: Histogram,
}

impl Default for ResolverMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ResolverMetrics {
    /// Fresh metrics, all zero. Latency buckets run from 5 ms to about 40 s.
    pub fn new() -> Self {
        Self {
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            negative_hits: Counter::default(),
            stale_serves: Counter::default(),
            coalesced_waits: Counter::default(),
            backoff_rejections: Counter::default(),
            upstream_requests: Counter::default(),
            upstream_errors: Family::default(),
            upstream_latency: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
        }
    }

    /// Registers every metric in `registry` under `federation_lookup_*` names (after the
    /// registry's own prefix: `pd_federation_lookup_*` in the node).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("federation_lookup");
        r.register(
            "cache_hits",
            "Lookups answered from a fresh cache entry",
            self.cache_hits.clone(),
        );
        r.register(
            "cache_misses",
            "Lookups without a fresh cache entry",
            self.cache_misses.clone(),
        );
        r.register(
            "negative_hits",
            "Lookups answered from a cached unknown-user answer",
            self.negative_hits.clone(),
        );
        r.register(
            "stale_serves",
            "Expired answers served because the home node failed",
            self.stale_serves.clone(),
        );
        r.register(
            "coalesced_waits",
            "Lookups that waited for a concurrent fetch of the same address",
            self.coalesced_waits.clone(),
        );
        r.register(
            "backoff_rejections",
            "Lookups not forwarded because the peer is backing off",
            self.backoff_rejections.clone(),
        );
        r.register(
            "upstream_requests",
            "Lookups forwarded to remote nodes",
            self.upstream_requests.clone(),
        );
        r.register(
            "upstream_errors",
            "Failed lookups at remote nodes by kind",
            self.upstream_errors.clone(),
        );
        r.register_with_unit(
            "upstream_latency",
            "Duration of lookups at remote nodes",
            Unit::Seconds,
            self.upstream_latency.clone(),
        );
    }
}

/// Real signed lookup answers for tests.
#[cfg(test)]
pub(crate) mod test_support {
    use pd_proto::records::{Endpoint, Presence};
    use pd_proto::wire::{LookupResponse, Source};
    use pd_proto::{Address, SecretKey, Signed};
    use sha2::{Digest, Sha256};

    /// The account key of `addr` (derived from the address, so stable across calls).
    pub(crate) fn key_of(addr: &Address) -> SecretKey {
        let seed: [u8; 32] = Sha256::digest(addr.to_string().as_bytes()).into();
        SecretKey::from_seed(&seed)
    }

    /// An answer with the account key and no presence record.
    pub(crate) fn found(addr: &Address) -> LookupResponse {
        signed_response(addr, None)
    }

    /// An answer whose presence record (if `expires_in` is given) expires that many
    /// seconds from now, signed by the account key.
    pub(crate) fn signed_response(addr: &Address, expires_in: Option<u64>) -> LookupResponse {
        let key = key_of(addr);
        let presence = expires_in.map(|secs| {
            let now = pd_proto::now_micros();
            let record = Presence {
                address: addr.clone(),
                endpoints: vec![Endpoint::parse("tcp://203.0.113.5:7000").unwrap()],
                seq: now,
                expires_at: now / 1_000_000 + secs,
            };
            Signed::sign(&key, &record)
        });
        LookupResponse {
            address: addr.clone(),
            public_key: key.public(),
            presence,
            rotations: Vec::new(),
            source: Source::Local,
            ttl: expires_in.unwrap_or(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::future::join_all;
    use prometheus_client::encoding::text::encode;
    use tokio::time::{advance, timeout};

    use pd_proto::verify_lookup_answer;

    use super::test_support::signed_response;
    use super::*;

    /// What the fake remote node answers.
    #[derive(Debug, Clone)]
    enum Reply {
        /// A signed answer; the presence record expires after this many seconds.
        Found(Option<u64>),
        Fail(ResolveError),
    }

    /// Test double of the network edge: counts fetches, answers as told, optionally slowly.
    #[derive(Debug)]
    struct FakeUpstream {
        calls: AtomicUsize,
        reply: Mutex<Reply>,
        delay: Mutex<Duration>,
    }

    impl FakeUpstream {
        fn new(reply: Reply) -> Arc<Self> {
            Arc::new(Self {
                calls: AtomicUsize::new(0),
                reply: Mutex::new(reply),
                delay: Mutex::new(Duration::ZERO),
            })
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
        fn set(&self, reply: Reply) {
            *self.reply.lock().unwrap() = reply;
        }
        fn set_delay(&self, delay: Duration) {
            *self.delay.lock().unwrap() = delay;
        }
    }

    impl UpstreamLookup for FakeUpstream {
        async fn fetch(&self, addr: &Address) -> Result<VerifiedLookup, ResolveError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let delay = *self.delay.lock().unwrap();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let reply = self.reply.lock().unwrap().clone();
            match reply {
                Reply::Found(expires_in) => {
                    Ok(verify_lookup_answer(addr, signed_response(addr, expires_in)).unwrap())
                }
                Reply::Fail(err) => Err(err),
            }
        }
    }

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    fn no_jitter() -> BackoffConfig {
        BackoffConfig {
            jitter: 0.0,
            ..BackoffConfig::default()
        }
    }

    fn resolver(reply: Reply) -> (Resolver<Arc<FakeUpstream>>, Arc<FakeUpstream>) {
        resolver_with(reply, CacheConfig::default())
    }

    fn resolver_with(
        reply: Reply,
        cache: CacheConfig,
    ) -> (Resolver<Arc<FakeUpstream>>, Arc<FakeUpstream>) {
        let fake = FakeUpstream::new(reply);
        (Resolver::new(Arc::clone(&fake), cache, no_jitter()), fake)
    }

    fn unreachable() -> Reply {
        Reply::Fail(ResolveError::Unreachable("connection refused".into()))
    }

    #[tokio::test(start_paused = true)]
    async fn hundred_concurrent_cold_lookups_make_one_upstream_request() {
        let (r, fake) = resolver(Reply::Found(Some(600)));
        fake.set_delay(Duration::from_millis(200));
        let a = addr("gordon.freeman@blackmesa.us");
        let results = join_all((0..100).map(|_| r.lookup(&a, LookupMode::Normal))).await;
        assert_eq!(fake.calls(), 1);
        for result in results {
            let resolved = result.unwrap();
            assert_eq!(resolved.response.source, Source::Remote);
            assert_eq!(resolved.response.address, a);
        }
        assert_eq!(r.metrics().coalesced_waits.get(), 99);
        assert_eq!(r.metrics().upstream_requests.get(), 1);
        // And the answer is now cached.
        let again = r.lookup(&a, LookupMode::Normal).await.unwrap();
        assert_eq!(again.response.source, Source::Cache);
        assert_eq!(fake.calls(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn hundred_lookups_from_parallel_tasks_make_one_upstream_request() {
        let (r, fake) = resolver(Reply::Found(None));
        fake.set_delay(Duration::from_millis(50));
        let r = Arc::new(r);
        let a = addr("gordon.freeman@blackmesa.us");
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let (r, a) = (Arc::clone(&r), a.clone());
            tasks.spawn(async move { r.lookup(&a, LookupMode::Normal).await });
        }
        let mut remote = 0;
        while let Some(joined) = tasks.join_next().await {
            let resolved = joined.unwrap().unwrap();
            assert_eq!(resolved.response.address, a);
            remote += usize::from(resolved.response.source == Source::Remote);
        }
        assert_eq!(fake.calls(), 1);
        // Tasks that started after the fetch finished were answered from the cache.
        let m = r.metrics();
        assert_eq!(remote as u64, 1 + m.coalesced_waits.get());
        assert_eq!(m.cache_hits.get() + remote as u64, 100);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_lookups_share_a_failure_without_caching_it() {
        let (r, fake) = resolver(Reply::Fail(ResolveError::NoNode));
        fake.set_delay(Duration::from_millis(200));
        let a = addr("gordon.freeman@blackmesa.us");
        let results = join_all((0..10).map(|_| r.lookup(&a, LookupMode::Normal))).await;
        assert_eq!(fake.calls(), 1);
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(ResolveError::NoNode)))
        );
        // Not cached as a negative answer: the next lookup asks again.
        assert_eq!(
            r.lookup(&a, LookupMode::Normal).await.unwrap_err(),
            ResolveError::NoNode
        );
        assert_eq!(fake.calls(), 2);
        assert!(r.backoff().allows(a.host()).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_loader_leaves_nothing_poisoned() {
        let (r, fake) = resolver(Reply::Found(None));
        fake.set_delay(Duration::from_secs(10));
        let a = addr("gordon.freeman@blackmesa.us");

        // The leader is dropped mid-fetch.
        let cut = timeout(Duration::from_secs(1), r.lookup(&a, LookupMode::Normal)).await;
        assert!(cut.is_err());
        assert_eq!(fake.calls(), 1);

        // A fresh lookup fetches again and succeeds.
        fake.set_delay(Duration::ZERO);
        let resolved = r.lookup(&a, LookupMode::Normal).await.unwrap();
        assert_eq!(resolved.response.source, Source::Remote);
        assert_eq!(fake.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn waiter_takes_over_when_the_leader_is_cancelled() {
        let (r, fake) = resolver(Reply::Found(None));
        fake.set_delay(Duration::from_secs(10));
        let a = addr("gordon.freeman@blackmesa.us");
        let leader = timeout(Duration::from_secs(1), r.lookup(&a, LookupMode::Normal));
        let follower = async {
            // Join after the leader started.
            tokio::time::sleep(Duration::from_millis(100)).await;
            r.lookup(&a, LookupMode::Normal).await
        };
        let (cut, followed) = tokio::join!(leader, follower);
        assert!(cut.is_err());
        assert_eq!(followed.unwrap().response.source, Source::Remote);
        assert_eq!(fake.calls(), 2);
        assert_eq!(r.metrics().coalesced_waits.get(), 1);
        assert!(r.lock_inflight().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_counts_down_and_entry_is_refetched_after_expiry() {
        let cache = CacheConfig {
            no_presence_ttl: Duration::from_secs(300),
            ..CacheConfig::default()
        };
        let (r, fake) = resolver_with(Reply::Found(None), cache);
        let a = addr("gordon.freeman@blackmesa.us");

        let first = r.lookup(&a, LookupMode::Normal).await.unwrap();
        assert_eq!(
            (first.response.source, first.ttl_secs),
            (Source::Remote, 300)
        );
        assert_eq!(first.response.ttl, 300);

        advance(Duration::from_secs(100)).await;
        let hit = r.lookup(&a, LookupMode::Normal).await.unwrap();
        assert_eq!((hit.response.source, hit.ttl_secs), (Source::Cache, 200));

        advance(Duration::from_secs(199)).await;
        let hit = r.lookup(&a, LookupMode::Normal).await.unwrap();
        assert_eq!((hit.response.source, hit.ttl_secs), (Source::Cache, 1));
        assert_eq!(fake.calls(), 1);

        advance(Duration::from_secs(1)).await;
        let refetched = r.lookup(&a, LookupMode::Normal).await.unwrap();
        assert_eq!(
            (refetched.response.source, refetched.ttl_secs),
            (Source::Remote, 300)
        );
        assert_eq!(fake.calls(), 2);
        assert_eq!(r.metrics().cache_hits.get(), 2);
        assert_eq!(r.metrics().cache_misses.get(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn positive_ttl_follows_the_presence_record() {
        let (r, _fake) = resolver(Reply::Found(Some(600)));
        let a = addr("gordon.freeman@blackmesa.us");
        let first = r.lookup(&a, LookupMode::Normal).await.unwrap();
        // The record's expiry is in wall-clock seconds; allow one second of slack.
        assert!((599..=600).contains(&first.ttl_secs), "{}", first.ttl_secs);
        assert!(first.response.presence.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn negative_answers_are_cached_for_the_negative_ttl() {
        let (r, fake) = resolver(Reply::Fail(ResolveError::UnknownUser));
        let a = addr("nobody@blackmesa.us");
        assert_eq!(
            r.lookup(&a, LookupMode::Normal).await.unwrap_err(),
            ResolveError::UnknownUser
        );
        advance(Duration::from_secs(59)).await;
        assert_eq!(
            r.lookup(&a, LookupMode::Normal).await.unwrap_err(),
            ResolveError::UnknownUser
        );
        assert_eq!(
            r.lookup(&a, LookupMode::CacheOnly).await.unwrap_err(),
            ResolveError::UnknownUser
        );
        assert_eq!(fake.calls(), 1);
        assert_eq!(r.metrics().negative_hits.get(), 2);

        advance(Duration::from_secs(1)).await;
        fake.set(Reply::Found(None));
        assert_eq!(
            r.lookup(&a, LookupMode::Normal)
                .await
                .unwrap()
                .response
                .source,
            Source::Remote
        );
        assert_eq!(fake.calls(), 2);
        // An unknown-user answer proves the peer alive.
        assert!(r.backoff().allows(a.host()).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn transport_errors_are_not_cached() {
        let (r, fake) = resolver(unreachable());
        let a = addr("gordon.freeman@blackmesa.us");
        assert!(matches!(
            r.lookup(&a, LookupMode::Normal).await,
            Err(ResolveError::Unreachable(_))
        ));
        assert!(r.cache().get(&a).await.is_none());
        assert_eq!(
            r.lookup(&a, LookupMode::CacheOnly).await.unwrap_err(),
            ResolveError::NotCached
        );
        // Once the backoff ends the peer is asked again, and its answer is used.
        advance(Duration::from_secs(5)).await;
        fake.set(Reply::Found(None));
        let resolved = r.lookup(&a, LookupMode::Normal).await.unwrap();
        assert_eq!(resolved.response.source, Source::Remote);
        assert_eq!(fake.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_answers_are_served_within_the_window_and_refused_beyond() {
        let (r, fake) = resolver(Reply::Found(None));
        let a = addr("gordon.freeman@blackmesa.us");
        r.lookup(&a, LookupMode::Normal).await.unwrap();

        // Expired (60 s) and the home node is down: stale, with a short ttl.
        fake.set(unreachable());
        advance(Duration::from_secs(61)).await;
        let stale = r.lookup(&a, LookupMode::Normal).await.unwrap();
        assert_eq!((stale.response.source, stale.ttl_secs), (Source::Stale, 30));
        assert_eq!(fake.calls(), 2);

        // The peer is now backing off: stale again, without asking it.
        let stale = r.lookup(&a, LookupMode::Normal).await.unwrap();
        assert_eq!(stale.response.source, Source::Stale);
        assert_eq!(fake.calls(), 2);
        assert_eq!(r.metrics().stale_serves.get(), 2);

        // Near the end of the window the announced ttl does not outlive it.
        advance(Duration::from_secs(3600 - 1 - 10)).await;
        let stale = r.lookup(&a, LookupMode::Normal).await.unwrap();
        assert_eq!((stale.response.source, stale.ttl_secs), (Source::Stale, 10));

        // Past the window: never served.
        advance(Duration::from_secs(11)).await;
        r.retry_now(a.host());
        assert!(matches!(
            r.lookup(&a, LookupMode::Normal).await,
            Err(ResolveError::Unreachable(_))
        ));
        assert!(matches!(
            r.lookup(&a, LookupMode::Normal).await,
            Err(ResolveError::PeerBackingOff { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn bad_answers_fall_back_to_stale_but_authoritative_answers_do_not() {
        let (r, fake) = resolver(Reply::Found(None));
        let a = addr("gordon.freeman@blackmesa.us");
        r.lookup(&a, LookupMode::Normal).await.unwrap();
        advance(Duration::from_secs(61)).await;

        fake.set(Reply::Fail(ResolveError::BadAnswer("bad signature".into())));
        let stale = r.lookup(&a, LookupMode::Normal).await.unwrap();
        assert_eq!(stale.response.source, Source::Stale);
        // A bad answer counts as a failure of the peer.
        assert!(r.backoff().allows(a.host()).is_err());

        r.retry_now(a.host());
        fake.set(Reply::Fail(ResolveError::RemoteRefused));
        assert_eq!(
            r.lookup(&a, LookupMode::Normal).await.unwrap_err(),
            ResolveError::RemoteRefused
        );

        fake.set(Reply::Fail(ResolveError::UnknownUser));
        assert_eq!(
            r.lookup(&a, LookupMode::Normal).await.unwrap_err(),
            ResolveError::UnknownUser
        );
        // The deleted user's old answer is gone, replaced by the negative answer.
        fake.set(unreachable());
        assert_eq!(
            r.lookup(&a, LookupMode::Normal).await.unwrap_err(),
            ResolveError::UnknownUser
        );
    }

    #[tokio::test(start_paused = true)]
    async fn lookups_during_backoff_answer_at_once() {
        let (r, fake) = resolver(unreachable());
        let host_addr = addr("gordon.freeman@blackmesa.us");
        let other = addr("alyx.vance@blackmesa.us");
        assert!(r.lookup(&host_addr, LookupMode::Normal).await.is_err());
        assert_eq!(fake.calls(), 1);

        // The peer now hangs; lookups must not wait for it.
        fake.set_delay(Duration::from_secs(3600));
        let answer = timeout(
            Duration::from_millis(10),
            r.lookup(&other, LookupMode::Normal),
        )
        .await
        .expect("a lookup during backoff must not hang");
        assert_eq!(
            answer.unwrap_err(),
            ResolveError::PeerBackingOff {
                retry_in: Duration::from_secs(5)
            }
        );
        assert_eq!(fake.calls(), 1);
        assert_eq!(r.metrics().backoff_rejections.get(), 1);

        // The backoff grows with each failed attempt.
        fake.set_delay(Duration::ZERO);
        advance(Duration::from_secs(5)).await;
        assert!(matches!(
            r.lookup(&other, LookupMode::Normal).await,
            Err(ResolveError::Unreachable(_))
        ));
        assert_eq!(
            r.lookup(&other, LookupMode::Normal).await.unwrap_err(),
            ResolveError::PeerBackingOff {
                retry_in: Duration::from_secs(10)
            }
        );
        let peers = r.peers();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].failures, 2);
        assert_eq!(peers[0].health, crate::backoff::PeerHealth::BackingOff);

        // retry_now lets the next lookup through; a success resets the peer.
        assert!(r.retry_now(other.host()));
        fake.set(Reply::Found(None));
        assert_eq!(
            r.lookup(&other, LookupMode::Normal)
                .await
                .unwrap()
                .response
                .source,
            Source::Remote
        );
        assert_eq!(r.peers()[0].failures, 0);
        assert_eq!(r.peers()[0].health, crate::backoff::PeerHealth::Healthy);
        // Other domains are unaffected by a peer's backoff.
        assert!(
            r.backoff()
                .allows(&Host::parse("aperture.example").unwrap())
                .is_ok()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_bypasses_the_cache() {
        let (r, fake) = resolver(Reply::Found(None));
        let a = addr("gordon.freeman@blackmesa.us");
        r.lookup(&a, LookupMode::Normal).await.unwrap();
        advance(Duration::from_secs(20)).await;
        let refreshed = r.lookup(&a, LookupMode::Refresh).await.unwrap();
        assert_eq!(
            (refreshed.response.source, refreshed.ttl_secs),
            (Source::Remote, 60)
        );
        assert_eq!(fake.calls(), 2);
        let hit = r.lookup(&a, LookupMode::Normal).await.unwrap();
        assert_eq!((hit.response.source, hit.ttl_secs), (Source::Cache, 60));

        // Refresh never falls back to the cache, not even stale.
        fake.set(unreachable());
        assert!(matches!(
            r.lookup(&a, LookupMode::Refresh).await,
            Err(ResolveError::Unreachable(_))
        ));
        assert!(matches!(
            r.lookup(&a, LookupMode::Refresh).await,
            Err(ResolveError::PeerBackingOff { .. })
        ));
        assert_eq!(
            r.lookup(&a, LookupMode::Normal)
                .await
                .unwrap()
                .response
                .source,
            Source::Cache
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cache_only_misses_give_not_cached() {
        let (r, fake) = resolver(Reply::Found(None));
        let a = addr("gordon.freeman@blackmesa.us");
        assert_eq!(
            r.lookup(&a, LookupMode::CacheOnly).await.unwrap_err(),
            ResolveError::NotCached
        );
        assert_eq!(fake.calls(), 0);
        r.lookup(&a, LookupMode::Normal).await.unwrap();
        let hit = r.lookup(&a, LookupMode::CacheOnly).await.unwrap();
        assert_eq!(hit.response.source, Source::Cache);
        // An expired entry is not served in cache-only mode.
        advance(Duration::from_secs(60)).await;
        assert_eq!(
            r.lookup(&a, LookupMode::CacheOnly).await.unwrap_err(),
            ResolveError::NotCached
        );
        assert_eq!(fake.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn flush_domain_forces_a_refetch() {
        let (r, fake) = resolver(Reply::Found(None));
        let a = addr("gordon.freeman@blackmesa.us");
        let b = addr("glados@aperture.example");
        r.lookup(&a, LookupMode::Normal).await.unwrap();
        r.lookup(&b, LookupMode::Normal).await.unwrap();
        assert_eq!(r.flush_domain(a.host()).await, 1);
        assert_eq!(
            r.lookup(&a, LookupMode::Normal)
                .await
                .unwrap()
                .response
                .source,
            Source::Remote
        );
        assert_eq!(
            r.lookup(&b, LookupMode::Normal)
                .await
                .unwrap()
                .response
                .source,
            Source::Cache
        );
        assert_eq!(fake.calls(), 3);
        assert_eq!(r.flush_where(|_| true).await, 2);
        assert_eq!(
            r.lookup(&b, LookupMode::CacheOnly).await.unwrap_err(),
            ResolveError::NotCached
        );
    }

    #[tokio::test(start_paused = true)]
    async fn flush_during_a_fetch_keeps_its_answer_out_of_the_cache() {
        let (r, fake) = resolver(Reply::Found(None));
        fake.set_delay(Duration::from_secs(1));
        let a = addr("gordon.freeman@blackmesa.us");
        let (resolved, flushed) = tokio::join!(r.lookup(&a, LookupMode::Normal), async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            r.flush_domain(a.host()).await
        });
        assert_eq!(resolved.unwrap().response.source, Source::Remote);
        assert_eq!(flushed, 0);
        assert!(r.cache().get(&a).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn metrics_are_exported() {
        let (r, fake) = resolver(Reply::Found(None));
        let a = addr("gordon.freeman@blackmesa.us");
        r.lookup(&a, LookupMode::Normal).await.unwrap();
        r.lookup(&a, LookupMode::Normal).await.unwrap();
        fake.set(Reply::Fail(ResolveError::UnknownUser));
        r.lookup(&addr("nobody@blackmesa.us"), LookupMode::Normal)
            .await
            .unwrap_err();

        let mut registry = Registry::with_prefix("pd");
        r.metrics().register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "pd_federation_lookup_cache_hits_total 1",
            "pd_federation_lookup_cache_misses_total 2",
            "pd_federation_lookup_upstream_requests_total 2",
            "pd_federation_lookup_upstream_errors_total{kind=\"unknown_user\"} 1",
            "pd_federation_lookup_upstream_latency_seconds_count 2",
            "pd_federation_lookup_stale_serves_total 0",
            "pd_federation_lookup_coalesced_waits_total 0",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
