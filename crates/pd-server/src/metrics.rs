//! The node's Prometheus metrics: requests, lookups, registrations, store errors, refusals
//! by the trust policy, problem answers by type, and the federation resolver's cache and
//! upstream metrics; and the [`traffic`] ring the admin overview charts.

pub mod traffic;

use std::borrow::Cow;
use std::fmt;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use self::traffic::{LookupClass, Traffic};

/// Labels of the request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route pattern, or `unmatched`.
    pub route: Cow<'static, str>,
    /// The response status code.
    pub status: u16,
}

/// Labels of the lookup counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    /// Where the answer came from (`local`, ...).
    pub source: Cow<'static, str>,
    /// `found`, `not_found`, `error`.
    pub result: Cow<'static, str>,
}

/// Labels of the refusal counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// Why: the trust verdict (`denied`, `not_in_allowlist`), or `unauthenticated` for an
    /// inbound request whose node signature did not verify.
    pub reason: String,
}

/// Labels of the problem answer counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProblemLabels {
    /// The problem type's short name (`unknown-user`, ...).
    pub r#type: &'static str,
}

/// All metrics of a node.
pub struct Metrics {
    registry: Registry,
    /// HTTP requests by route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Lookups by source and result.
    pub lookups: Family<LookupLabels, Counter>,
    /// Accounts created.
    pub registrations: Counter,
    /// Store operations that failed.
    pub store_errors: Counter,
    /// Lookups of other domains refused by this node's trust policy, by reason.
    pub refused_lookups: Family<RefusalLabels, Counter>,
    /// Inbound node-to-node requests refused, by reason.
    pub refused_inbound: Family<RefusalLabels, Counter>,
    /// Problem answers of the API, by type.
    pub problems: Family<ProblemLabels, Counter>,
    /// Per-minute lookups and problem answers of the last hour.
    pub traffic: Traffic,
    /// Relay slots held now.
    pub relay_slots: Gauge,
    /// Relayed conversations open now (waiting for their listener included).
    pub relay_conversations: Gauge,
    /// Relayed conversations spliced since the start.
    pub relay_conversations_total: Counter,
    /// Bytes carried by the relay, both directions.
    pub relay_bytes: Counter,
    /// Relay requests refused, by reason.
    pub relay_refusals: Family<RefusalLabels, Counter>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Self {
        Self::with_extra(|_| {})
    }

    /// Creates and registers the metrics, letting `extra` register more (the resolver's).
    pub fn with_extra(extra: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::with_prefix("pd");
        let requests = Family::<RequestLabels, Counter>::default();
        let lookups = Family::<LookupLabels, Counter>::default();
        let registrations = Counter::default();
        let store_errors = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register("lookups", "Lookups by source and result", lookups.clone());
        registry.register("registrations", "Accounts created", registrations.clone());
        registry.register(
            "store_errors",
            "Store operations that failed",
            store_errors.clone(),
        );
        let refused_lookups = Family::<RefusalLabels, Counter>::default();
        let refused_inbound = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "refused_lookups",
            "Lookups of other domains refused by the trust policy, by reason",
            refused_lookups.clone(),
        );
        registry.register(
            "refused_inbound",
            "Inbound node-to-node requests refused, by reason",
            refused_inbound.clone(),
        );
        let problems = Family::<ProblemLabels, Counter>::default();
        registry.register(
            "problems",
            "Problem answers of the API, by problem type",
            problems.clone(),
        );
        let relay_slots = Gauge::default();
        let relay_conversations = Gauge::default();
        let relay_conversations_total = Counter::default();
        let relay_bytes = Counter::default();
        let relay_refusals = Family::<RefusalLabels, Counter>::default();
        registry.register("relay_slots", "Relay slots held now", relay_slots.clone());
        registry.register(
            "relay_conversations",
            "Relayed conversations open now, waiting ones included",
            relay_conversations.clone(),
        );
        registry.register(
            "relay_conversations_spliced",
            "Relayed conversations spliced since the start",
            relay_conversations_total.clone(),
        );
        registry.register(
            "relay_bytes",
            "Bytes carried by the relay, both directions",
            relay_bytes.clone(),
        );
        registry.register(
            "relay_refusals",
            "Relay requests refused, by reason",
            relay_refusals.clone(),
        );
        extra(&mut registry);
        Self {
            relay_slots,
            relay_conversations,
            relay_conversations_total,
            relay_bytes,
            relay_refusals,
            problems,
            traffic: Traffic::new(),
            registry,
            refused_lookups,
            refused_inbound,
            requests,
            lookups,
            registrations,
            store_errors,
        }
    }

    /// Counts a lookup.
    pub fn lookup(&self, source: &'static str, result: &'static str) {
        self.lookups
            .get_or_create(&LookupLabels {
                source: Cow::Borrowed(source),
                result: Cow::Borrowed(result),
            })
            .inc();
        self.traffic.lookup(LookupClass::of(source, result));
    }

    /// Counts a problem answer.
    pub fn problem(&self, kind: pd_proto::ProblemType) {
        self.problems
            .get_or_create(&ProblemLabels {
                r#type: kind.slug(),
            })
            .inc();
        self.traffic.problem(kind);
    }

    /// Counts a lookup refused by the trust policy.
    pub fn refused_lookup(&self, reason: &str) {
        self.refused_lookups
            .get_or_create(&RefusalLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a refused inbound node-to-node request.
    pub fn refused_inbound(&self, reason: &str) {
        self.refused_inbound
            .get_or_create(&RefusalLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
