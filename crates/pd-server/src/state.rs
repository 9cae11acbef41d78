//! The state shared by every request handler: cheap handles to the registry, the
//! configuration, the metrics, the node's identity and its federation side.

use std::sync::Arc;

use pd_proto::{PublicKey, SecretKey};

use crate::config::Config;
use crate::federation::Federation;
use crate::metrics::Metrics;
use crate::registry::Registry;

/// Handles shared by the HTTP handlers; cloning is cheap.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The node's configuration.
    pub config: Arc<Config>,
    /// Accounts, presence and sessions of this node's users.
    pub registry: Arc<Registry>,
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
    /// The node's public server key (published in `/.well-known/pd`).
    pub server_key: PublicKey,
    /// The node's secret server key (`server.key` in the data dir), for signing node-to-node
    /// requests.
    pub server_secret: Arc<SecretKey>,
    /// Lookups at other nodes, inbound node authentication and the trust policy.
    pub federation: Arc<Federation>,
}
