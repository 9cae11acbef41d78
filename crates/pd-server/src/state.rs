//! The state shared by every request handler: cheap handles to the registry, the
//! configuration, the metrics, the node's identity, its federation side and the lookup's
//! owner.

use std::ops::Deref;
use std::sync::Arc;

use crate::config::Config;
use crate::directory::Directory;
use crate::federation::Federation;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::relay::Relay;
use crate::server_keys::KeyRing;

/// Handles shared by the HTTP handlers, behind one `Arc`: axum clones the state for every
/// request, so a clone is one reference count, not one per handle. Fields are reached
/// through `Deref` (`state.registry`).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The state of a node made of `shared`.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
#[derive(Debug)]
pub struct Shared {
    /// The node's configuration.
    pub config: Arc<Config>,
    /// Accounts, presence and sessions of this node's users.
    pub registry: Arc<Registry>,
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
    /// The node's server keys: the current one, the retired ones still published in
    /// `/.well-known/pd`, and the one signing node-to-node requests; read again every
    /// `server_key_reload`.
    pub server_keys: Arc<KeyRing>,
    /// Inbound node authentication, the trust policy, discovery and the peers' state.
    pub federation: Arc<Federation>,
    /// Lookups, local and remote: the only way to the resolver.
    pub directory: Directory,
    /// The relay for this node's users behind NAT.
    pub relay: Arc<Relay>,
}
