//! The state shared by every request handler: cheap handles to the registry, the
//! configuration, the metrics, the node's identity and its federation side.

use std::sync::Arc;

use crate::config::Config;
use crate::federation::Federation;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::server_keys::ServerKeys;

/// Handles shared by the HTTP handlers; cloning is cheap.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The node's configuration.
    pub config: Arc<Config>,
    /// Accounts, presence and sessions of this node's users.
    pub registry: Arc<Registry>,
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
    /// The node's server keys, loaded at start: the current one (signs node-to-node
    /// requests) and the retired ones still published in `/.well-known/pd`.
    pub server_keys: Arc<ServerKeys>,
    /// Lookups at other nodes, inbound node authentication and the trust policy.
    pub federation: Arc<Federation>,
}
