//! Per-peer failure tracking: exponential backoff with jitter for remote nodes that fail,
//! so that a dead or misbehaving peer is not contacted on every lookup.
//!
//! Only transport-level failures count (the peer was unreachable, timed out, answered
//! 5xx, or answered garbage or a badly signed record). An authoritative answer such as
//! "unknown user" or "refused" proves the peer is alive and resets its backoff.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use pd_proto::Host;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Backoff settings (`[federation.backoff]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffConfig {
    /// Delay after the first failure. Default `"5s"`.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// Factor by which the delay grows with each further consecutive failure. Default `2.0`.
    pub factor: f64,
    /// Longest delay between attempts. Default `"1h"`.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Fraction of the delay that is randomised: the actual delay lies between
    /// `delay * (1 - jitter)` and `delay`. Between 0 and 1. Default `0.2`.
    pub jitter: f64,
    /// Most peers tracked at once; healthy peers are forgotten first when full.
    /// Default `10000`.
    pub max_tracked_peers: usize,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(5),
            factor: 2.0,
            max: Duration::from_secs(3600),
            jitter: 0.2,
            max_tracked_peers: 10_000,
        }
    }
}

impl BackoffConfig {
    /// The delay before the next attempt after `failures` consecutive failures, before
    /// jitter: `initial * factor^(failures - 1)`, capped at `max`.
    pub fn base_delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let exponent = i32::try_from(failures - 1).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.factor.max(1.0).powi(exponent);
        let max = self.max.as_secs_f64();
        if secs.is_finite() && secs < max {
            Duration::from_secs_f64(secs)
        } else {
            self.max
        }
    }
}

/// A peer is in backoff until this moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAt {
    /// When the peer may be contacted again.
    pub at: Instant,
    /// Time left until then (when the check was made).
    pub retry_in: Duration,
}

/// Whether a peer is currently contacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerHealth {
    /// The last contact succeeded, or the backoff delay has run out.
    Healthy,
    /// The peer failed and is not contacted before its retry time.
    BackingOff,
}

impl PeerHealth {
    /// `healthy` or `backing_off`, for admin listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::BackingOff => "backing_off",
        }
    }
}

/// One peer as listed by [`Backoff::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's domain.
    pub host: Host,
    /// Current state.
    pub health: PeerHealth,
    /// Consecutive failures since the last success.
    pub failures: u32,
    /// Time until the next attempt is allowed, while backing off.
    pub retry_in: Option<Duration>,
    /// The most recent failure's description.
    pub last_error: Option<String>,
    /// Wall-clock time of the most recent failure.
    pub last_failure_at: Option<SystemTime>,
    /// Wall-clock time of the most recent success.
    pub last_success_at: Option<SystemTime>,
    /// How long the peer takes to answer: a moving average over its recent answers
    /// (successes, authoritative refusals and bad answers; not timeouts).
    pub latency: Option<Duration>,
    /// How long its most recent answer took.
    pub last_latency: Option<Duration>,
    /// Whether its most recent answer refused this node (403): the peer is alive, but
    /// its own policy does not federate with this node.
    pub refuses_us: bool,
}

/// Weight of the newest answer in [`PeerStatus::latency`].
const LATENCY_WEIGHT: f64 = 0.25;

/// Failure tracking for all remote peers. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Backoff {
    config: BackoffConfig,
    peers: Mutex<HashMap<Host, PeerEntry>>,
}

#[derive(Debug, Clone, Default)]
struct PeerEntry {
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<String>,
    last_failure_at: Option<SystemTime>,
    last_success_at: Option<SystemTime>,
    latency: Option<Duration>,
    last_latency: Option<Duration>,
    refuses_us: bool,
}

impl Backoff {
    /// Creates an empty tracker.
    pub fn new(config: BackoffConfig) -> Self {
        Self {
            config,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }

    /// Whether `host` may be contacted now; if not, when it may be.
    pub fn allows(&self, host: &Host) -> Result<(), RetryAt> {
        let now = Instant::now();
        match self.lock().get(host).and_then(|p| p.retry_at) {
            Some(at) if at > now => Err(RetryAt {
                at,
                retry_in: at - now,
            }),
            _ => Ok(()),
        }
    }

    /// Records a successful contact (including authoritative negative answers): the
    /// peer's failures and backoff are cleared.
    pub fn record_success(&self, host: &Host) {
        let mut peers = self.lock();
        if !peers.contains_key(host) {
            self.make_room(&mut peers);
        }
        let entry = peers.entry(host.clone()).or_default();
        entry.failures = 0;
        entry.retry_at = None;
        entry.last_success_at = Some(SystemTime::now());
        entry.refuses_us = false;
    }

    /// Records an answer in which `host` refused this node (403): the peer is alive, so
    /// its failures and backoff are cleared as by a success, and it is listed as refusing
    /// until it answers otherwise.
    pub fn record_refusal(&self, host: &Host) {
        self.record_success(host);
        if let Some(entry) = self.lock().get_mut(host) {
            entry.refuses_us = true;
        }
    }

    /// Records how long an answer of `host` took; call it for every answer the peer gave
    /// (not for timeouts or connection failures).
    pub fn record_latency(&self, host: &Host, elapsed: Duration) {
        let mut peers = self.lock();
        if !peers.contains_key(host) {
            self.make_room(&mut peers);
        }
        let entry = peers.entry(host.clone()).or_default();
        entry.last_latency = Some(elapsed);
        entry.latency = Some(match entry.latency {
            Some(mean) => mean.mul_f64(1.0 - LATENCY_WEIGHT) + elapsed.mul_f64(LATENCY_WEIGHT),
            None => elapsed,
        });
    }

    /// Records a failed contact and returns the new retry time.
    pub fn record_failure(&self, host: &Host, error: &str) -> RetryAt {
        let mut peers = self.lock();
        if !peers.contains_key(host) {
            self.make_room(&mut peers);
        }
        let entry = peers.entry(host.clone()).or_default();
        entry.failures = entry.failures.saturating_add(1);
        let delay = self.jittered(self.config.base_delay(entry.failures));
        let now = Instant::now();
        let at = now + delay;
        entry.retry_at = Some(at);
        entry.last_error = Some(error.to_owned());
        entry.last_failure_at = Some(SystemTime::now());
        RetryAt {
            at,
            retry_in: delay,
        }
    }

    /// Clears the backoff of `host` so that the next lookup contacts it at once; the
    /// failure count restarts at zero (the last error stays listed). Returns whether the
    /// peer was known.
    pub fn retry_now(&self, host: &Host) -> bool {
        match self.lock().get_mut(host) {
            Some(entry) => {
                entry.failures = 0;
                entry.retry_at = None;
                true
            }
            None => false,
        }
    }

    /// All tracked peers with their state, sorted by host.
    pub fn snapshot(&self) -> Vec<PeerStatus> {
        let now = Instant::now();
        let mut list: Vec<PeerStatus> = self
            .lock()
            .iter()
            .map(|(host, entry)| {
                let retry_in = entry.retry_at.filter(|at| *at > now).map(|at| at - now);
                PeerStatus {
                    host: host.clone(),
                    health: if retry_in.is_some() {
                        PeerHealth::BackingOff
                    } else {
                        PeerHealth::Healthy
                    },
                    failures: entry.failures,
                    retry_in,
                    last_error: entry.last_error.clone(),
                    last_failure_at: entry.last_failure_at,
                    last_success_at: entry.last_success_at,
                    latency: entry.latency,
                    last_latency: entry.last_latency,
                    refuses_us: entry.refuses_us,
                }
            })
            .collect();
        list.sort_by(|a, b| a.host.cmp(&b.host));
        list
    }

    fn jittered(&self, delay: Duration) -> Duration {
        let jitter = self.config.jitter.clamp(0.0, 1.0);
        if jitter == 0.0 || delay.is_zero() {
            return delay;
        }
        let cut: f64 = rand::thread_rng().gen_range(0.0..jitter);
        delay.mul_f64(1.0 - cut)
    }

    /// Keeps the map bounded: when full, forgets peers that are not backing off; if all
    /// are, forgets the one whose backoff ends first.
    fn make_room(&self, peers: &mut HashMap<Host, PeerEntry>) {
        if peers.len() < self.config.max_tracked_peers.max(1) {
            return;
        }
        let now = Instant::now();
        peers.retain(|_, e| e.retry_at.is_some_and(|at| at > now));
        if peers.len() >= self.config.max_tracked_peers.max(1)
            && let Some(first) = peers
                .iter()
                .min_by_key(|(_, e)| e.retry_at)
                .map(|(h, _)| h.clone())
        {
            peers.remove(&first);
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Host, PeerEntry>> {
        // The map holds plain data; a panic elsewhere cannot leave it inconsistent.
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> Host {
        Host::parse(s).unwrap()
    }

    fn no_jitter() -> BackoffConfig {
        BackoffConfig {
            jitter: 0.0,
            ..BackoffConfig::default()
        }
    }

    #[test]
    fn base_delay_doubles_and_is_capped() {
        let c = BackoffConfig::default();
        assert_eq!(c.base_delay(0), Duration::ZERO);
        assert_eq!(c.base_delay(1), Duration::from_secs(5));
        assert_eq!(c.base_delay(2), Duration::from_secs(10));
        assert_eq!(c.base_delay(3), Duration::from_secs(20));
        assert_eq!(c.base_delay(10), Duration::from_secs(2560));
        assert_eq!(c.base_delay(11), Duration::from_secs(3600));
        assert_eq!(c.base_delay(u32::MAX), Duration::from_secs(3600));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_is_capped_and_resets_on_success() {
        let b = Backoff::new(no_jitter());
        let h = host("blackmesa.us");
        assert!(b.allows(&h).is_ok());
        let mut expected = 5;
        for _ in 0..8 {
            let r = b.record_failure(&h, "connection refused");
            assert_eq!(r.retry_in, Duration::from_secs(expected));
            let err = b.allows(&h).unwrap_err();
            assert_eq!(err.retry_in, Duration::from_secs(expected));
            expected *= 2;
        }
        for _ in 0..20 {
            b.record_failure(&h, "timeout");
        }
        assert_eq!(
            b.allows(&h).unwrap_err().retry_in,
            Duration::from_secs(3600)
        );

        // Once the delay runs out, the peer is allowed again (one attempt).
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(b.allows(&h).is_ok());

        b.record_success(&h);
        assert!(b.allows(&h).is_ok());
        assert_eq!(b.record_failure(&h, "x").retry_in, Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_stays_within_bounds() {
        let b = Backoff::new(BackoffConfig::default());
        let h = host("blackmesa.us");
        for n in 1..40u32 {
            let r = b.record_failure(&h, "x");
            let base = b.config().base_delay(n);
            assert!(r.retry_in <= base, "{n}: {:?} > {base:?}", r.retry_in);
            assert!(r.retry_in >= base.mul_f64(0.8), "{n}: {:?}", r.retry_in);
            assert!(r.retry_in <= Duration::from_secs(3600));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_now_clears_backoff_and_snapshot_reports_state() {
        let b = Backoff::new(no_jitter());
        let dead = host("dead.example");
        let fine = host("fine.example");
        b.record_failure(&dead, "connection refused");
        b.record_failure(&dead, "connection refused");
        b.record_success(&fine);

        let snap = b.snapshot();
        assert_eq!(snap.len(), 2);
        assert_eq!(snap[0].host, dead);
        assert_eq!(snap[0].health, PeerHealth::BackingOff);
        assert_eq!(snap[0].failures, 2);
        assert_eq!(snap[0].retry_in, Some(Duration::from_secs(10)));
        assert_eq!(snap[0].last_error.as_deref(), Some("connection refused"));
        assert_eq!(snap[1].host, fine);
        assert_eq!(snap[1].health, PeerHealth::Healthy);
        assert_eq!(snap[1].retry_in, None);

        assert!(b.retry_now(&dead));
        assert!(b.allows(&dead).is_ok());
        assert_eq!(b.snapshot()[0].health, PeerHealth::Healthy);
        assert!(!b.retry_now(&host("unknown.example")));
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_and_latency_are_listed() {
        let b = Backoff::new(no_jitter());
        let h = host("strict.example");
        b.record_failure(&h, "timeout");
        b.record_refusal(&h);
        b.record_latency(&h, Duration::from_millis(100));
        b.record_latency(&h, Duration::from_millis(200));
        let peer = &b.snapshot()[0];
        assert!(peer.refuses_us);
        assert_eq!(peer.health, PeerHealth::Healthy);
        assert_eq!(peer.failures, 0);
        assert_eq!(peer.last_latency, Some(Duration::from_millis(200)));
        assert_eq!(peer.latency, Some(Duration::from_millis(125)));
        // An answer that accepts this node again clears the refusal.
        b.record_success(&h);
        assert!(!b.snapshot()[0].refuses_us);
        // A first answer starts tracking a peer.
        b.record_latency(&host("other.example"), Duration::from_millis(1));
        assert_eq!(b.snapshot().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn tracked_peers_are_bounded() {
        let b = Backoff::new(BackoffConfig {
            max_tracked_peers: 3,
            ..no_jitter()
        });
        b.record_failure(&host("a.example"), "x");
        for name in ["b.example", "c.example", "d.example", "e.example"] {
            b.record_success(&host(name));
        }
        let snap = b.snapshot();
        assert!(snap.len() <= 3);
        // The failing peer is kept in preference to healthy ones.
        assert!(snap.iter().any(|p| p.host == host("a.example")));
    }

    #[test]
    fn config_parses_humantime_and_defaults() {
        let c: BackoffConfig = serde_json::from_str(r#"{"initial": "2s", "max": "10m"}"#).unwrap();
        assert_eq!(c.initial, Duration::from_secs(2));
        assert_eq!(c.max, Duration::from_secs(600));
        assert_eq!(c.factor, 2.0);
    }
}
