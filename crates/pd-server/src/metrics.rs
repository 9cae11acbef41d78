//! The node's Prometheus metrics: requests, lookups, registrations and store errors.

use std::fmt;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Labels of the request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route pattern, or `unmatched`.
    pub route: String,
    /// The response status code.
    pub status: u16,
}

/// Labels of the lookup counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    /// Where the answer came from (`local`, ...).
    pub source: String,
    /// `found`, `not_found`, `error`.
    pub result: String,
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
        Self {
            registry,
            requests,
            lookups,
            registrations,
            store_errors,
        }
    }

    /// Counts a lookup.
    pub fn lookup(&self, source: &str, result: &str) {
        self.lookups
            .get_or_create(&LookupLabels {
                source: source.to_owned(),
                result: result.to_owned(),
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
