//! The lookup cache: verified answers about remote addresses, kept until the presence
//! record expires (clamped), negative answers kept briefly, and expired answers kept a
//! while longer so they can be served stale when the home node is unreachable.
//!
//! Freshness is decided here with [`tokio::time::Instant`] timestamps stored in each
//! entry, not by moka's own clock: moka only evicts entries after a generous upper bound
//! (`max(max_ttl, negative_ttl) + stale_window`) and when the cache is full. This keeps
//! the cache's behaviour exact under paused time in tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;
use pd_proto::wire::{LookupResponse, Source};
use pd_proto::{Address, Host, now_secs};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Lookup cache settings (`[federation.cache]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Most cached addresses (positive and negative answers together). Default `100000`.
    pub max_entries: u64,
    /// Approximate memory budget of the cached answers, in bytes. Default `67108864`
    /// (64 MiB).
    pub max_bytes: u64,
    /// Shortest time a positive answer is cached, even if its presence record expires
    /// sooner (the expired presence record is then dropped from the answer). Default `"30s"`.
    #[serde(with = "humantime_serde")]
    pub min_ttl: Duration,
    /// Longest time a positive answer is cached, even if its presence record lives
    /// longer. Default `"1h"`.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    /// Lifetime of a positive answer without a presence record (before clamping).
    /// Default `"60s"`.
    #[serde(with = "humantime_serde")]
    pub no_presence_ttl: Duration,
    /// How long an "unknown user" answer is cached. Default `"60s"`.
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// How long after expiry a positive answer may still be served, marked stale, while
    /// the home node is unreachable (RFC 8767). `"0s"` disables serving stale.
    /// Default `"1h"`.
    #[serde(with = "humantime_serde")]
    pub stale_window: Duration,
    /// The lifetime announced for a stale answer (never beyond the stale window).
    /// Default `"30s"`.
    #[serde(with = "humantime_serde")]
    pub stale_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_bytes: 64 * 1024 * 1024,
            min_ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(3600),
            no_presence_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(60),
            stale_window: Duration::from_secs(3600),
            stale_ttl: Duration::from_secs(30),
        }
    }
}

/// What is cached about an address.
#[derive(Debug, Clone)]
pub enum CachedAnswer {
    /// A verified answer from the address's home node.
    Found(Box<LookupResponse>),
    /// The home node said the user does not exist.
    UnknownUser,
}

/// One cached answer with its own timestamps.
#[derive(Debug)]
pub struct CacheEntry {
    answer: CachedAnswer,
    /// The answer is fresh until this moment.
    fresh_until: Instant,
    /// The presence record inside the answer must not be served from this moment on.
    presence_until: Option<Instant>,
    /// Approximate memory used by the entry, in bytes.
    size: u32,
    /// The positive answer's JSON members before `source`
    /// ([`LookupResponse::json_head`]), encoded once so that serving it is a copy.
    head: Option<Arc<str>>,
}

/// How usable an entry is at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Fresh, with this much lifetime left.
    Fresh(Duration),
    /// Expired, but within the stale window; this much of the window is left.
    Stale(Duration),
    /// Expired beyond the stale window (or a negative answer past its lifetime).
    Expired,
}

impl CacheEntry {
    /// The cached answer.
    pub fn answer(&self) -> &CachedAnswer {
        &self.answer
    }

    /// Whether this is a positive answer.
    pub fn is_found(&self) -> bool {
        matches!(self.answer, CachedAnswer::Found(_))
    }

    /// How usable the entry is at `now`, given the stale window. Negative answers are
    /// never stale: they are fresh or expired.
    pub fn freshness(&self, now: Instant, stale_window: Duration) -> Freshness {
        if now < self.fresh_until {
            return Freshness::Fresh(self.fresh_until - now);
        }
        let window_end = self.fresh_until + stale_window;
        if self.is_found() && now < window_end {
            Freshness::Stale(window_end - now)
        } else {
            Freshness::Expired
        }
    }

    /// The positive answer's JSON members before `source` as served at `now`
    /// ([`LookupResponse::json_head`]); `None` for a negative entry, and once the presence
    /// record inside is past its own expiry (the answer served then has none).
    pub fn json_head(&self, now: Instant) -> Option<Arc<str>> {
        if self.presence_until.is_some_and(|until| now >= until) {
            return None;
        }
        self.head.clone()
    }

    /// The answer as served at `now` with `source` and `ttl`, or `None` for a negative
    /// entry. A presence record past its own expiry is left out.
    pub fn response(&self, now: Instant, source: Source, ttl: Duration) -> Option<LookupResponse> {
        let CachedAnswer::Found(found) = &self.answer else {
            return None;
        };
        let mut response = LookupResponse::clone(found);
        if self.presence_until.is_some_and(|until| now >= until) {
            response.presence = None;
        }
        response.source = source;
        response.ttl = ttl_secs(ttl);
        Some(response)
    }
}

/// Whole seconds of `d`, rounded up (an answer with 0.4 s left announces 1 s).
pub fn ttl_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The moka-backed cache of lookup answers, keyed by address.
#[derive(Debug, Clone)]
pub struct LookupCache {
    config: CacheConfig,
    entries: Cache<Address, Arc<CacheEntry>>,
    /// Incremented by every flush, so that a fetch that started before a flush does not
    /// store its answer after it.
    epoch: Arc<AtomicU64>,
}

impl LookupCache {
    /// Creates an empty cache bounded by `config.max_entries` and `config.max_bytes`.
    ///
    /// Each entry weighs its approximate size, but at least `max_bytes / max_entries`,
    /// so that neither the entry count nor the memory budget can be exceeded.
    pub fn new(config: CacheConfig) -> Self {
        let max_entries = config.max_entries.max(1);
        let max_bytes = config.max_bytes.max(1);
        let floor = u32::try_from(max_bytes.div_ceil(max_entries)).unwrap_or(u32::MAX);
        let keep = config.max_ttl.max(config.negative_ttl) + config.stale_window;
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(move |_: &Address, entry: &Arc<CacheEntry>| entry.size.max(floor))
            .time_to_live(keep.max(Duration::from_secs(1)))
            .build();
        Self {
            config,
            entries,
            epoch: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The flush counter; pass it to [`LookupCache::store_since`] for an answer fetched
    /// after reading it.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// The settings in use.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// The entry for `addr`, whatever its freshness.
    pub async fn get(&self, addr: &Address) -> Option<Arc<CacheEntry>> {
        self.entries.get(addr).await
    }

    /// Stores a verified positive answer (see [`LookupCache::found_entry`]).
    pub async fn insert_found(&self, addr: Address, response: LookupResponse) -> Arc<CacheEntry> {
        let entry = self.found_entry(&addr, response);
        self.entries.insert(addr, Arc::clone(&entry)).await;
        entry
    }

    /// Stores `entry` unless the cache was flushed since `epoch` was read (see
    /// [`LookupCache::epoch`]); returns whether it was stored.
    pub async fn store_since(&self, epoch: u64, addr: &Address, entry: &Arc<CacheEntry>) -> bool {
        if self.epoch() != epoch {
            return false;
        }
        self.entries.insert(addr.clone(), Arc::clone(entry)).await;
        // A flush that began while inserting may have missed the new entry: undo.
        if self.epoch() != epoch {
            self.entries.invalidate(addr).await;
            return false;
        }
        true
    }

    /// A positive entry for `response`, not yet stored. Its lifetime runs until the
    /// presence record's expiry (or `no_presence_ttl` without one), clamped to
    /// `[min_ttl, max_ttl]`.
    pub fn found_entry(&self, addr: &Address, response: LookupResponse) -> Arc<CacheEntry> {
        let now = Instant::now();
        let presence_left = response
            .presence
            .as_ref()
            .and_then(|p| p.decode_unverified().ok())
            .map(|p| Duration::from_secs(p.expires_at.saturating_sub(now_secs())));
        let lifetime = presence_left.unwrap_or(self.config.no_presence_ttl);
        let ttl = lifetime.max(self.config.min_ttl).min(self.config.max_ttl);
        // Encoding a verified answer cannot fail; should it, the answer is encoded when
        // served instead.
        let head = response.json_head().ok().map(Arc::<str>::from);
        let size = approx_size(addr, &response).saturating_add(
            head.as_ref()
                .map_or(0, |h| u32::try_from(h.len()).unwrap_or(u32::MAX)),
        );
        Arc::new(CacheEntry {
            answer: CachedAnswer::Found(Box::new(response)),
            fresh_until: now + ttl,
            presence_until: presence_left.map(|left| now + left),
            size,
            head,
        })
    }

    /// Stores an "unknown user" answer for `negative_ttl`, replacing any positive one.
    pub async fn insert_unknown(&self, addr: Address) -> Arc<CacheEntry> {
        let entry = self.unknown_entry(&addr);
        self.entries.insert(addr, Arc::clone(&entry)).await;
        entry
    }

    /// A negative entry for `addr`, lasting `negative_ttl`, not yet stored.
    pub fn unknown_entry(&self, addr: &Address) -> Arc<CacheEntry> {
        Arc::new(CacheEntry {
            answer: CachedAnswer::UnknownUser,
            fresh_until: Instant::now() + self.config.negative_ttl,
            presence_until: None,
            size: approx_address_size(addr),
            head: None,
        })
    }

    /// Removes the entry for `addr`.
    pub async fn remove(&self, addr: &Address) {
        self.entries.invalidate(addr).await;
    }

    /// Removes every entry of addresses at `host`; returns how many were removed.
    pub async fn flush_domain(&self, host: &Host) -> usize {
        self.flush_where(|h| h == host).await
    }

    /// Removes every entry whose address's host matches `pred`; returns how many were
    /// removed. Answers of fetches in flight during the flush are not stored (see
    /// [`LookupCache::store_since`]).
    pub async fn flush_where(&self, pred: impl Fn(&Host) -> bool) -> usize {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let doomed: Vec<Arc<Address>> = self
            .entries
            .iter()
            .filter(|(addr, _)| pred(addr.host()))
            .map(|(addr, _)| addr)
            .collect();
        for addr in &doomed {
            self.entries.invalidate(addr.as_ref()).await;
        }
        doomed.len()
    }

    /// Approximate number of entries (moka counts lazily).
    pub fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }

    /// Applies pending evictions now (used by tests and before reporting sizes).
    pub async fn run_pending_tasks(&self) {
        self.entries.run_pending_tasks().await;
    }
}

/// Fixed overhead per entry: the entry, its `Arc`, the key, moka's bookkeeping.
const ENTRY_OVERHEAD: usize = 256;

fn approx_address_size(addr: &Address) -> u32 {
    let bytes = ENTRY_OVERHEAD + 2 * (addr.name().as_str().len() + addr.host().hostname().len());
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

fn approx_size(addr: &Address, response: &LookupResponse) -> u32 {
    let presence = response
        .presence
        .as_ref()
        .map_or(0, |p| p.payload().len() + 64);
    // Each proof: its payload, two signatures, a key and the vector slot.
    let rotations: usize = response
        .rotations
        .iter()
        .map(|r| r.rotation.payload().len() + 64 + 64 + 32 + 64)
        .sum();
    approx_address_size(addr)
        .saturating_add(u32::try_from(presence + rotations + 32).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolver::test_support::{found, signed_response};

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn positive_ttl_follows_presence_and_is_clamped() {
        let cache = LookupCache::new(CacheConfig::default());
        let now = Instant::now();
        let window = Duration::from_secs(3600);

        let a = addr("alice@a.example");
        let e = cache
            .insert_found(a.clone(), signed_response(&a, Some(600)))
            .await;
        // The record's expiry is in wall-clock seconds: allow a second tick in between.
        let fresh = [599, 600].map(|s| Freshness::Fresh(Duration::from_secs(s)));
        assert!(fresh.contains(&e.freshness(now, window)));

        let b = addr("bob@a.example");
        let e = cache
            .insert_found(b.clone(), signed_response(&b, Some(5)))
            .await;
        assert_eq!(
            e.freshness(now, window),
            Freshness::Fresh(Duration::from_secs(30))
        );

        let c = addr("carol@a.example");
        let e = cache
            .insert_found(c.clone(), signed_response(&c, Some(6 * 3600)))
            .await;
        assert_eq!(
            e.freshness(now, window),
            Freshness::Fresh(Duration::from_secs(3600))
        );

        let d = addr("dave@a.example");
        let e = cache
            .insert_found(d.clone(), signed_response(&d, None))
            .await;
        assert_eq!(
            e.freshness(now, window),
            Freshness::Fresh(Duration::from_secs(60))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn expired_presence_is_dropped_from_answers() {
        let cache = LookupCache::new(CacheConfig::default());
        let a = addr("alice@a.example");
        let e = cache
            .insert_found(a.clone(), signed_response(&a, Some(5)))
            .await;
        let ttl = Duration::from_secs(30);
        let served = e.response(Instant::now(), Source::Cache, ttl).unwrap();
        assert!(served.presence.is_some());
        assert_eq!(served.ttl, 30);
        tokio::time::advance(Duration::from_secs(6)).await;
        let served = e.response(Instant::now(), Source::Cache, ttl).unwrap();
        assert!(served.presence.is_none());
        assert_eq!(served.public_key, found(&a).public_key);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_window_and_negative_entries() {
        let cache = LookupCache::new(CacheConfig::default());
        let window = Duration::from_secs(3600);
        let a = addr("alice@a.example");
        let e = cache
            .insert_found(a.clone(), signed_response(&a, None))
            .await;
        let n = cache.insert_unknown(addr("ghost@a.example")).await;
        tokio::time::advance(Duration::from_secs(60)).await;
        let now = Instant::now();
        assert_eq!(e.freshness(now, window), Freshness::Stale(window));
        assert_eq!(n.freshness(now, window), Freshness::Expired);
        tokio::time::advance(window).await;
        assert_eq!(e.freshness(Instant::now(), window), Freshness::Expired);
    }

    #[tokio::test(start_paused = true)]
    async fn flush_domain_removes_only_that_domain() {
        let cache = LookupCache::new(CacheConfig::default());
        for s in ["a@one.example", "b@one.example", "a@two.example"] {
            let a = addr(s);
            cache
                .insert_found(a.clone(), signed_response(&a, None))
                .await;
        }
        cache.insert_unknown(addr("c@one.example")).await;
        let removed = cache
            .flush_domain(&Host::parse("one.example").unwrap())
            .await;
        assert_eq!(removed, 3);
        assert!(cache.get(&addr("a@one.example")).await.is_none());
        assert!(cache.get(&addr("c@one.example")).await.is_none());
        assert!(cache.get(&addr("a@two.example")).await.is_some());
        let removed = cache
            .flush_where(|h| h.hostname().ends_with(".example"))
            .await;
        assert_eq!(removed, 1);
        assert!(cache.get(&addr("a@two.example")).await.is_none());
    }

    #[tokio::test]
    async fn entry_count_is_bounded() {
        let cache = LookupCache::new(CacheConfig {
            max_entries: 10,
            ..CacheConfig::default()
        });
        for i in 0..100 {
            cache.insert_unknown(addr(&format!("u{i}@a.example"))).await;
        }
        cache.run_pending_tasks().await;
        assert!(cache.entry_count() <= 10, "{}", cache.entry_count());
    }

    #[test]
    fn config_defaults_and_humantime() {
        let c: CacheConfig =
            serde_json::from_str(r#"{"min_ttl": "10s", "stale_window": "0s"}"#).unwrap();
        assert_eq!(c.min_ttl, Duration::from_secs(10));
        assert_eq!(c.stale_window, Duration::ZERO);
        assert_eq!(c.max_ttl, Duration::from_secs(3600));
        assert_eq!(c.negative_ttl, Duration::from_secs(60));
        assert!(serde_json::from_str::<CacheConfig>(r#"{"nope": 1}"#).is_err());
    }

    #[test]
    fn ttl_rounds_up() {
        assert_eq!(ttl_secs(Duration::from_millis(400)), 1);
        assert_eq!(ttl_secs(Duration::from_secs(30)), 30);
        assert_eq!(ttl_secs(Duration::ZERO), 0);
    }
}
