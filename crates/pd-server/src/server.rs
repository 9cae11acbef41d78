//! The running node: binds the listener, opens the store, loads the server keys, and owns
//! the serving and maintenance tasks.
//!
//! Construct with [`Server::bind`] and drive to completion with [`Server::join`], or stop
//! the tasks with [`Server::shutdown`]. Tasks cannot outlive their handle: they live in a
//! `JoinSet` owned by the `Server`, which aborts them when dropped.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use axum_server::Handle;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{Config, TlsConfig};
use crate::directory::Directory;
use crate::federation::Federation;
use crate::listener::{self, ConnectionLimits, FirstByte, IdleSwitch};
use crate::metrics::Metrics;
use crate::registry::{Registry, RegistryOptions};
use crate::relay::Relay;
use crate::server_keys::{self, KeyRing};
use crate::state::{AppState, Shared};
use crate::store::sqlite::{self, FileState};
use crate::store::{Store, StoreSpec};
use crate::{admin, http};

/// How often expired presence records are purged from the store.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// A running node.
pub struct Server {
    http_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    admin_handle: Handle,
    tls: bool,
    handle: Handle,
    stop: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
    state: AppState,
    grace: Duration,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("http_addr", &self.http_addr)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds the listener, opens the store, loads (or creates) the server keys and starts
    /// serving. Returns once the listener is bound, so [`Server::http_addr`] is the real
    /// address (port 0 works).
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("failed to create data dir {}", config.data_dir.display()))?;
        let listener = std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("failed to listen on {}", config.listen))?;
        listener
            .set_nonblocking(true)
            .context("failed to configure the listener")?;
        let http_addr = listener
            .local_addr()
            .context("failed to read the listener's address")?;
        let spec = config.store_spec();
        refuse_lost_database(&config, &spec).await?;
        let store = Store::connect_with_timeout(&spec, config.limits.store_timeout)
            .await
            .with_context(|| format!("failed to open the store {spec}"))?;
        let server_keys = server_keys::load_for_store(
            &store,
            &config.data_dir,
            config.federation.max_request_age,
            pd_proto::now_secs(),
        )
        .await?;
        tracing::info!(
            key_id = %server_keys.current_id(),
            retired = server_keys.retired().len(),
            store = %spec,
            "server keys loaded"
        );
        let tls = match &config.tls {
            Some(tls) => Some(load_tls(tls)?),
            None => None,
        };
        let store_is_shared = store.is_shared();
        let registry = Arc::new(Registry::new(
            store,
            RegistryOptions {
                domain: config.domain.clone(),
                registration: config.registration,
                session_ttl: config.session_ttl,
                max_accounts: config.cache.max_accounts,
                account_ttl: store_is_shared.then_some(config.cache.shared_ttl),
            },
        ));
        let admin_listener = match config.admin_listen {
            Some(addr) => {
                let l = std::net::TcpListener::bind(addr)
                    .with_context(|| format!("failed to listen on {addr} (admin_listen)"))?;
                l.set_nonblocking(true)
                    .context("failed to configure the admin listener")?;
                Some(l)
            }
            None => None,
        };
        let admin_addr = admin_listener
            .as_ref()
            .map(std::net::TcpListener::local_addr)
            .transpose()
            .context("failed to read the admin listener's address")?;
        let key_ring = Arc::new(KeyRing::new(
            server_keys,
            KeyRing::switch_delay_for(config.server_key_reload),
        ));
        let federation = Arc::new(Federation::new(
            &config,
            key_ring.signing(),
            registry.store().clone(),
        )?);
        federation.restore_trust_lists().await;
        let metrics = Arc::new(Metrics::with_extra(|r| {
            federation.resolver_metrics().register(r);
        }));
        let directory = Directory::new(
            Arc::clone(&registry),
            Arc::clone(&federation),
            Arc::clone(&metrics),
        );
        let grace = config.limits.request_timeout + Duration::from_secs(1);
        let idle_switch = IdleSwitch::default();
        let relay = Arc::new(Relay::new(
            config.relay.clone(),
            Arc::clone(&metrics),
            idle_switch.clone(),
        ));
        let state = AppState::new(Shared {
            config: Arc::new(config),
            registry: Arc::clone(&registry),
            metrics,
            server_keys: Arc::clone(&key_ring),
            federation: Arc::clone(&federation),
            directory,
            relay,
        });
        let app = http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let handle = Handle::new();
        let mut tasks = JoinSet::new();
        let is_tls = tls.is_some();
        // Remote admin access is served over the node's TLS certificate when it has one.
        let admin_tls = tls.clone().filter(|_| state.config.admin.remote);
        let limits = &state.config.limits;
        let caps = ConnectionLimits::new(limits, &state.config.trusted_proxies, !is_tls)
            .with_idle_switch(idle_switch);
        match tls {
            Some(tls) => {
                let tls = RustlsAcceptor::new(tls)
                    .handshake_timeout(limits.header_read_timeout)
                    .acceptor(caps);
                let mut server = axum_server::from_tcp(listener)
                    .acceptor(FirstByte::new(tls, limits.header_read_timeout))
                    .handle(handle.clone());
                listener::configure(server.http_builder(), limits);
                tasks.spawn(async move { server.serve(app).await.context("HTTPS server failed") });
            }
            None => {
                let mut server = axum_server::from_tcp(listener)
                    .acceptor(FirstByte::new(caps, limits.header_read_timeout))
                    .handle(handle.clone());
                listener::configure(server.http_builder(), limits);
                tasks.spawn(async move { server.serve(app).await.context("HTTP server failed") });
            }
        }
        let admin_handle = Handle::new();
        if let Some(admin_listener) = admin_listener {
            let admin_app =
                admin::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
            let admin_caps = ConnectionLimits::total_only(limits);
            match admin_tls {
                Some(tls) => {
                    let tls = RustlsAcceptor::new(tls)
                        .handshake_timeout(limits.header_read_timeout)
                        .acceptor(admin_caps);
                    let mut server = axum_server::from_tcp(admin_listener)
                        .acceptor(FirstByte::new(tls, limits.header_read_timeout))
                        .handle(admin_handle.clone());
                    listener::configure(server.http_builder(), limits);
                    tasks.spawn(async move {
                        server.serve(admin_app).await.context("admin server failed")
                    });
                }
                None => {
                    let mut server = axum_server::from_tcp(admin_listener)
                        .acceptor(FirstByte::new(admin_caps, limits.header_read_timeout))
                        .handle(admin_handle.clone());
                    listener::configure(server.http_builder(), limits);
                    tasks.spawn(async move {
                        server.serve(admin_app).await.context("admin server failed")
                    });
                }
            }
        }
        let (stop, stopped) = watch::channel(false);
        tasks.spawn(key_reload_task(state.clone(), stopped.clone()));
        tasks.spawn(purge_task(registry, stopped.clone()));
        tasks.spawn(async move { federation.run(stopped).await });
        tracing::info!(
            listen.addr = %http_addr,
            domain = %state.config.domain,
            tls = is_tls,
            "node started"
        );
        if let Some(addr) = admin_addr {
            tracing::info!(admin.addr = %addr, remote = state.config.admin.remote, "admin pages listening");
            if state.config.admin.remote && !is_tls {
                tracing::warn!(
                    admin.addr = %addr,
                    "remote admin access over plain HTTP: the token crosses the network in clear text unless a TLS proxy on the same host or private network sits in front"
                );
            }
        }
        Ok(Self {
            http_addr,
            admin_addr,
            admin_handle,
            tls: is_tls,
            handle,
            stop,
            tasks,
            state,
            grace,
        })
    }

    /// A node for tests: 127.0.0.1 on a free port, data in `dir`, default policies.
    pub async fn spawn_for_tests(dir: &Path) -> anyhow::Result<Self> {
        Self::bind(Config::for_tests(dir)).await
    }

    /// The address the HTTP(S) listener is bound to.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The address of the admin listener, when `admin_listen` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Reads the trust policy again from the configuration and puts it in force (what
    /// SIGHUP does). On error the policy in force stays.
    pub async fn reload_trust(&self) -> anyhow::Result<pd_federation::trust::PolicyDiff> {
        self.state
            .federation
            .reload_trust(&self.state.config)
            .await
            .context("the trust policy was not reloaded; the previous policy stays in force")
    }

    /// The base URL of the API (`http://addr` or `https://addr`).
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.http_addr)
    }

    /// The handles the HTTP handlers share.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Waits until a task ends (which only happens on failure) and reports why.
    pub async fn join(mut self) -> anyhow::Result<()> {
        let outcome = match self.tasks.join_next().await {
            Some(Ok(Ok(()))) => Err(anyhow!("a node task stopped unexpectedly")),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(anyhow!("a node task panicked: {e}")),
            None => Ok(()),
        };
        let stopped = self.stop_and_wait().await;
        outcome.and(stopped)
    }

    /// Stops gracefully: no new connections, in-flight requests finish (up to the request
    /// timeout), tasks end, then the store is closed.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop_and_wait().await
    }

    async fn stop_and_wait(&mut self) -> anyhow::Result<()> {
        self.handle.graceful_shutdown(Some(self.grace));
        self.admin_handle.graceful_shutdown(Some(self.grace));
        let _ = self.stop.send(true);
        // Upgraded relay connections are not the HTTP server's: the relay ends them.
        self.state.relay.shutdown().await;
        let mut result = Ok(());
        while let Some(joined) = self.tasks.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(e) => result = Err(anyhow!("a node task panicked: {e}")),
            }
        }
        self.state
            .registry
            .store()
            .close()
            .await
            .context("failed to close the store")?;
        tracing::info!("node stopped");
        result
    }
}

/// Refuses to start a node whose data directory was initialised (it holds `server.key`) but
/// whose embedded database is missing or empty: creating a fresh one silently would serve
/// the domain without its accounts, and anyone could take the old names. `pd-server init`
/// creates an empty database on purpose. A first start in an empty data directory creates
/// both, as before.
async fn refuse_lost_database(config: &Config, spec: &StoreSpec) -> anyhow::Result<()> {
    let StoreSpec::Sqlite(db) = spec else {
        return Ok(());
    };
    let key = config.server_key_path();
    if !key.exists() {
        return Ok(());
    }
    let path = db.clone();
    let state = tokio::task::spawn_blocking(move || sqlite::file_state(&path))
        .await
        .context("the database check failed")?
        .with_context(|| format!("failed to read the database {}", db.display()))?;
    let what = match state {
        FileState::Initialised => return Ok(()),
        FileState::Missing => "missing",
        FileState::Empty => "empty",
    };
    Err(anyhow!(
        "refusing to start: the data directory {} holds the node's server key, but its \
         database {} is {what}; starting would serve {} without its accounts, and anyone \
         could register the old names. Restore the database from a backup, or run \
         `pd-server init` to create an empty one on purpose",
        config.data_dir.display(),
        db.display(),
        config.domain,
    ))
}

/// Reads the server keys again every `server_key_reload` and puts them in force, so that a
/// rotation reaches this node while it runs. A failed read keeps the keys in force.
async fn key_reload_task(
    state: AppState,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let config = Arc::clone(&state.config);
    let mut interval = tokio::time::interval(config.server_key_reload);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stopped.changed() => return Ok(()),
        }
        let now = pd_proto::now_micros() / 1_000_000;
        let store = state.registry.store();
        match server_keys::read_again(
            store,
            &config.data_dir,
            config.federation.max_request_age,
            now,
        )
        .await
        {
            Ok(fresh) => {
                state.server_keys.update(fresh, now);
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "failed to read the server keys again; keeping those in force");
            }
        }
    }
}

async fn purge_task(
    registry: Arc<Registry>,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut interval = tokio::time::interval(PURGE_INTERVAL);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                match registry.purge_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(purged = n, "purged expired presence records"),
                    Err(e) => tracing::warn!(error = %e, "failed to purge expired presence records"),
                }
            }
            _ = stopped.changed() => return Ok(()),
        }
    }
}

/// Builds the rustls configuration (ring provider) from PEM files.
fn load_tls(tls: &TlsConfig) -> anyhow::Result<RustlsConfig> {
    let cert_pem = std::fs::read(&tls.cert)
        .with_context(|| format!("failed to read TLS certificate {}", tls.cert.display()))?;
    let key_pem = std::fs::read(&tls.key)
        .with_context(|| format!("failed to read TLS key {}", tls.key.display()))?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("failed to parse TLS certificate {}", tls.cert.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("no certificate in {}", tls.cert.display()));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .with_context(|| format!("failed to parse TLS key {}", tls.key.display()))?
        .ok_or_else(|| anyhow!("no private key in {}", tls.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("failed to set up TLS")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not match or are unsupported")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(config)))
}
