//! The node's configuration: one documented struct, read from TOML and overridden by flags.
//!
//! Precedence: built-in defaults (a local development node), then the `--config` file, then
//! command-line flags. Every field below states its default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use pd_federation::config::{FederationConfig, StaticPeer};
use pd_federation::trust::TrustConfig;
use pd_proto::Host;
use serde::Deserialize;

use crate::store::StoreSpec;

/// Why a configuration could not be loaded or is not acceptable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read. The I/O error is part of the message rather than a
    /// source, so that a report of the whole chain names it once.
    #[error("failed to read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not valid TOML for [`Config`].
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Who may register accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationPolicy {
    /// Anyone may register a free name.
    #[default]
    Open,
    /// Registration needs a single-use invite token (`pd-server invite create`).
    Invite,
    /// Nobody may register.
    Closed,
}

impl RegistrationPolicy {
    /// The policy's name as published in the well-known document.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Invite => "invite",
            Self::Closed => "closed",
        }
    }
}

/// Who may call the lookup endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LookupAccess {
    /// Only callers holding a session token of a registered user of this node.
    #[default]
    Users,
    /// Anyone.
    Public,
}

impl LookupAccess {
    /// The access mode's name as published in the well-known document.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Public => "public",
        }
    }
}

/// Format of the log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// TLS material for serving HTTPS directly.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain.
    pub cert: PathBuf,
    /// PEM file with the private key.
    pub key: PathBuf,
}

/// Request and connection limits. The defaults hold a node with 256 open files against
/// 300 idle and 40 slowly dripping connections from one address while other clients are
/// served (issue 12).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted request body in bytes. Default: 16384.
    pub max_body_bytes: usize,
    /// Longest time a request may take before it is answered with 503 timeout. Default: "10s".
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest a connection may take for each step of bringing a request in: the TLS
    /// handshake, its first byte, and each complete request head (request line and header
    /// fields), counted from the moment the node waits for it, which on a kept-alive
    /// HTTP/1.1 connection is the end of the previous answer (so it also closes HTTP/1.1
    /// connections left idle between requests). Default: "10s".
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Longest a connection may stay open with no byte read or written, whatever the
    /// protocol (HTTP/2 too, and clients that stop reading answers); must be longer than
    /// `request_timeout`. Default: "60s".
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Most connections open at once; a connection beyond it is closed at once, after
    /// answering its request 503 `unavailable` when it sends one right away over plain
    /// HTTP. Lowered at start to leave a quarter of the
    /// process's open-file limit (at least 64 files) for the store, federation and logs.
    /// Default: 4096.
    pub max_connections: usize,
    /// Most connections open at once from one client address (IPv6: one /64 network);
    /// one beyond it is closed at once, after answering its request 429 `rate-limited`
    /// when it sends one right away over plain HTTP.
    /// Connections from `trusted_proxies` count only towards `max_connections`.
    /// Default: 64.
    pub max_connections_per_ip: usize,
    /// Longest request target (path and query) in bytes; a longer one is answered 414
    /// `uri-too-long`. Default: 8192.
    pub max_uri_bytes: usize,
    /// Most header fields in a request; more are answered 431 `headers-too-large`.
    /// Default: 64.
    pub max_headers: usize,
    /// Largest total size of a request's header fields (names and values) in bytes; a
    /// larger one is answered 431 `headers-too-large`. Default: 16384.
    pub max_header_bytes: usize,
    /// Longest a store operation may take, waiting for a connection included (PostgreSQL),
    /// before the request is answered 503 `unavailable` with `Retry-After`; `/healthz`
    /// waits at most this long for the store too. Must be below `request_timeout`.
    /// Default: "3s".
    #[serde(with = "humantime_serde")]
    pub store_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024,
            request_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_connections_per_ip: 64,
            max_uri_bytes: 8 * 1024,
            max_headers: 64,
            max_header_bytes: 16 * 1024,
            store_timeout: Duration::from_secs(3),
        }
    }
}

/// Per-client-IP rate limits (IPv6 clients by their /64 network). Refusals are 429
/// `rate-limited` with `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    /// Sustained writes per second per client IP. Default: 5.
    pub writes_per_second: u32,
    /// Writes a client may make in a burst. Default: 20.
    pub burst: u32,
    /// Sustained lookups (`GET /v1/lookup/…` and WebFinger queries together) per second
    /// per client IP. Default: 20.
    pub lookups_per_second: u32,
    /// Lookups a client may make in a burst. Default: 100.
    pub lookup_burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            writes_per_second: 5,
            burst: 20,
            lookups_per_second: 20,
            lookup_burst: 100,
        }
    }
}

/// The in-memory cache in front of the store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Most accounts kept in memory. Default: 100000.
    pub max_accounts: u64,
    /// With the shared (PostgreSQL) store: how long a replica answers lookups of its users
    /// from memory before reading the account again. A write made through another replica
    /// shows in this replica's lookups at most this late. Ignored with the embedded store,
    /// where the one node sees every write at once. Default: "2s".
    #[serde(with = "humantime_serde")]
    pub shared_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_accounts: 100_000,
            shared_ttl: Duration::from_secs(2),
        }
    }
}

/// The relay (`[relay]`, `federation-spec.md` section 13): a listener behind NAT holds a
/// slot on its home node, and peers reach it through the node, which carries only the
/// ciphertext of their TLS channel. Every refusal is a problem answer before the upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Offer the relay to this node's users: the well-known document says so (`"relay":
    /// true`), slots are accepted, and clients publish relay endpoints. Off: every relay
    /// request is answered 404 `not-found` and clients publish no relay endpoint.
    /// Default: true.
    pub enabled: bool,
    /// Slots one user may hold at once (one per running `chat listen`). Default: 2.
    pub max_slots_per_user: usize,
    /// Relayed conversations one user may have open at once. Default: 16.
    pub max_conversations_per_user: usize,
    /// Slots held on the node at once, by all users. Default: 1000.
    pub max_slots: usize,
    /// Relayed conversations open on the node at once. Default: 1000.
    pub max_conversations: usize,
    /// Bytes a second one relayed conversation may carry in each direction; faster
    /// senders are slowed down (not cut off). Default: 1048576 (1 MiB/s).
    pub bytes_per_second: u64,
    /// Bytes a user's relayed conversations may carry, both directions together, in a
    /// rolling hour; beyond it new conversations are refused (429 `rate-limited`) and
    /// open ones closed. Default: 1073741824 (1 GiB).
    pub bytes_per_user_per_hour: u64,
    /// A relayed conversation on which no byte moved for this long is closed. Default: "5m".
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How long a connecting peer waits for the listener to take the conversation (its
    /// `accept` request) before it is answered 504 `remote-unreachable`; at most four
    /// fifths of `limits.request_timeout` are used. Default: "5s".
    #[serde(with = "humantime_serde")]
    pub accept_timeout: Duration,
    /// Relay connection requests (`GET /v1/relay/{address}`) a second per client IP.
    /// Default: 2.
    pub connects_per_second: u32,
    /// Relay connection requests a client IP may make in a burst. Default: 10.
    pub connect_burst: u32,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_slots_per_user: 2,
            max_conversations_per_user: 16,
            max_slots: 1000,
            max_conversations: 1000,
            bytes_per_second: 1024 * 1024,
            bytes_per_user_per_hour: 1024 * 1024 * 1024,
            idle_timeout: Duration::from_secs(300),
            accept_timeout: Duration::from_secs(5),
            connects_per_second: 2,
            connect_burst: 10,
        }
    }
}

/// The environment variable that sets `admin.token` (and wins over the file).
pub const ENV_ADMIN_TOKEN: &str = "PD_ADMIN_TOKEN";

/// Shortest accepted `admin.token`, in characters.
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; keep it out of logs and messages.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The admin listener's access rules (`[admin]`); its address is `admin_listen`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Allow `admin_listen` on an address other than loopback, so that the admin pages
    /// and the JSON admin surface can be reached from other machines (or from a proxy in
    /// another container). Needs `token`. Default: false (loopback only).
    pub remote: bool,
    /// A bearer token every admin request must carry: `Authorization: Bearer <token>`, or
    /// HTTP Basic authentication with the token as the password (what browsers prompt
    /// for). At least 32 characters, e.g. `openssl rand -base64 32`. Required with
    /// `remote`; also honoured on loopback, so a proxy on the same machine can be given
    /// access safely. The environment variable `PD_ADMIN_TOKEN` wins over the file.
    /// Default: none (loopback clients need no token).
    pub token: Option<Secret>,
}

/// The node's configuration (TOML). `Default` is a local development node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The domain this node serves: the host part of its users' addresses. Default: "localhost".
    pub domain: Host,
    /// The URL under which this node's API is reached from outside, when it is not
    /// `https://<domain>`: for a delegated domain, the `base_url` that the domain's
    /// `/.well-known/pd` names (an `http` or `https` URL with a host, an optional port and
    /// path, and no user information, query or fragment). WebFinger links point under it.
    /// Default: none (`https://<domain>`).
    pub base_url: Option<String>,
    /// Address and port to listen on; port 0 picks a free one. Default: "127.0.0.1:8080".
    pub listen: SocketAddr,
    /// Directory holding the database and the server key; a relative path in a
    /// configuration file is relative to the file's directory (like every path in the
    /// file), one given with `--data-dir` or `PD_DATA_DIR` to the working directory.
    /// Default: "./pd-data" (in the working directory).
    pub data_dir: PathBuf,
    /// Where accounts and records are stored: a `postgres://user:password@host/db` URL
    /// selects PostgreSQL, shared by several replicas of the domain (which then also share
    /// the server key, kept in the database); an SQLite file path selects that file.
    /// Default: none, the embedded SQLite database `pd.sqlite3` in `data_dir`.
    pub store: Option<StoreSpec>,
    /// Who may register: "open", "invite" or "closed". Default: "open".
    pub registration: RegistrationPolicy,
    /// Who may look up users: "users" (a session token is needed) or "public". Default: "users".
    pub lookup_access: LookupAccess,
    /// Serve HTTPS with this certificate and key. Default: none (plain HTTP, for use behind
    /// a reverse proxy).
    pub tls: Option<TlsConfig>,
    /// Proxies (CIDR ranges) whose `X-Forwarded-For` header is believed. Default: none.
    pub trusted_proxies: Vec<IpNet>,
    /// Request limits.
    pub limits: Limits,
    /// Rate limit of the write endpoints.
    pub rate_limit: RateLimit,
    /// Lifetime of a lookup session token. Default: "1h".
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// How often a running node reads its server keys again (from the data directory, or
    /// from the shared database), so that `pd-server server-key rotate` reaches every
    /// running replica without a restart. A node that finds a new key publishes it at once
    /// and signs with it two intervals later, when every replica publishes it too.
    /// Default: "10s".
    #[serde(with = "humantime_serde")]
    pub server_key_reload: Duration,
    /// The in-memory account cache.
    pub cache: CacheConfig,
    /// Log format: "text" or "json". Default: "text".
    pub log_format: LogFormat,
    /// Federation with other nodes (`[federation]`, with `[[federation.peers]]`,
    /// `[federation.cache]` and `[federation.backoff]`). Default: no static peers,
    /// discovery over HTTPS, the documented limits.
    pub federation: FederationConfig,
    /// Which nodes this node federates with (`[trust]`). Default: mode "open", no entries.
    /// `file = "trust.toml"` (relative to this file) keeps the policy in its own file.
    pub trust: TrustConfig,
    /// Publish this node's effective allow entries as plain text (one domain per line) at
    /// `GET /.well-known/pd-allowlist.txt`, so that other nodes can subscribe to it as a
    /// community list. Default: false (404).
    pub publish_allowlist: bool,
    /// Address of the admin listener: the status pages (overview, peers, trust) and the
    /// JSON admin surface (peer state, retry, cache flush, trust explain and reload). A
    /// loopback address unless `admin.remote` is set. Default: none (the admin listener is
    /// off).
    pub admin_listen: Option<SocketAddr>,
    /// Who may use the admin listener (`[admin]`): loopback clients only, by default.
    pub admin: AdminConfig,
    /// The relay for this node's users behind NAT (`[relay]`). Default: on, with the
    /// documented limits.
    pub relay: RelayConfig,
    /// The file this configuration was read from, if any; the trust policy is reloaded
    /// from it. Not a TOML key.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            domain: default_domain(),
            base_url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./pd-data"),
            store: None,
            registration: RegistrationPolicy::default(),
            lookup_access: LookupAccess::default(),
            tls: None,
            trusted_proxies: Vec::new(),
            limits: Limits::default(),
            rate_limit: RateLimit::default(),
            session_ttl: Duration::from_secs(3600),
            server_key_reload: Duration::from_secs(10),
            cache: CacheConfig::default(),
            log_format: LogFormat::default(),
            federation: FederationConfig::default(),
            trust: TrustConfig::default(),
            publish_allowlist: false,
            admin_listen: None,
            admin: AdminConfig::default(),
            relay: RelayConfig::default(),
            source: None,
        }
    }
}

fn default_domain() -> Host {
    // "localhost" is a valid host name; parsing it cannot fail.
    Host::parse("localhost").unwrap_or_else(|_| unreachable!("localhost is a valid host"))
}

/// Values given on the command line, which win over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--domain`.
    pub domain: Option<String>,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--store`.
    pub store: Option<StoreSpec>,
    /// `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// `--peer DOMAIN=URL`, appended to `federation.peers`.
    pub peers: Vec<StaticPeer>,
}

impl Config {
    /// Parses a TOML document (`path` is only used in messages).
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let message = e.message().trim().replace('\n', " ");
            let located = e.span().map(|span| {
                let start = span.start.min(text.len());
                let before = &text.as_bytes()[..start];
                let line = before.iter().filter(|b| **b == b'\n').count() + 1;
                let line_text = text.lines().nth(line - 1).unwrap_or_default().trim();
                let line_text: String = line_text.chars().take(80).collect();
                format!("line {line} ({line_text}): {message}")
            });
            ConfigError::Parse {
                path: path.to_owned(),
                message: located.unwrap_or(message),
            }
        })
    }

    /// Reads and parses a TOML file (not yet validated). Relative paths written in the file
    /// (`data_dir`, an SQLite `store`, `tls.cert`, `tls.key`, `federation.ca_file`,
    /// `trust.file`) are resolved against the file's directory, wherever the node is
    /// started from; paths given as flags or in the environment stay relative to the
    /// working directory.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        let mut config = Self::from_toml(&text, path)?;
        // `data_dir` has a default, which stays relative to the working directory; only a
        // `data_dir` written in the file is the file's.
        let data_dir_written = text
            .parse::<toml::Table>()
            .is_ok_and(|table| table.contains_key("data_dir"));
        let base = path.parent().unwrap_or_else(|| Path::new(""));
        config.resolve_paths(base, data_dir_written);
        Ok(config)
    }

    /// Makes the relative paths of a configuration read from a file in `base` relative to
    /// `base` instead (absolute paths stay as they are).
    fn resolve_paths(&mut self, base: &Path, data_dir_written: bool) {
        let against = |path: &mut PathBuf| {
            if path.is_relative() && !path.as_os_str().is_empty() {
                *path = base.join(&*path);
            }
        };
        if data_dir_written {
            against(&mut self.data_dir);
        }
        if let Some(StoreSpec::Sqlite(path)) = &mut self.store {
            against(path);
        }
        if let Some(tls) = &mut self.tls {
            against(&mut tls.cert);
            against(&mut tls.key);
        }
        if let Some(ca_file) = &mut self.federation.ca_file {
            against(ca_file);
        }
        // `trust.file` is resolved against the same directory when the trust policy is
        // read ([`Config::resolved_trust`]), on every reload.
    }

    /// Loads the file (if any), applies the flags and validates the result.
    pub fn load(path: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        config.source = path.map(Path::to_owned);
        config.apply(overrides)?;
        if let Some(token) = std::env::var_os(ENV_ADMIN_TOKEN) {
            let token = token.into_string().map_err(|_| {
                ConfigError::Invalid(format!("{ENV_ADMIN_TOKEN} is not valid UTF-8"))
            })?;
            config.admin.token = Some(Secret::new(token));
        }
        config.validate()?;
        Ok(config)
    }

    /// Applies command-line values over this configuration.
    pub fn apply(&mut self, o: Overrides) -> Result<(), ConfigError> {
        if let Some(domain) = o.domain {
            self.domain = Host::parse(&domain)
                .map_err(|e| ConfigError::Invalid(format!("--domain {domain:?}: {e}")))?;
        }
        if let Some(listen) = o.listen {
            self.listen = listen;
        }
        if let Some(dir) = o.data_dir {
            self.data_dir = dir;
        }
        if let Some(store) = o.store {
            self.store = Some(store);
        }
        self.federation.peers.extend(o.peers);
        match (o.tls_cert, o.tls_key) {
            (Some(cert), Some(key)) => self.tls = Some(TlsConfig { cert, key }),
            (None, None) => {}
            _ => {
                return Err(ConfigError::Invalid(
                    "--tls-cert and --tls-key must be given together".into(),
                ));
            }
        }
        Ok(())
    }

    /// The base URL of this node's API as others reach it, without a trailing `/`:
    /// `base_url` when set, else `https://<domain>`.
    pub fn public_base_url(&self) -> String {
        match &self.base_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("https://{}", self.domain),
        }
    }

    /// Checks ranges and consistency, with a message naming the offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if let Some(base) = &self.base_url {
            let well_formed = url::Url::parse(base).is_ok_and(|url| {
                matches!(url.scheme(), "http" | "https")
                    && url.host_str().is_some_and(|h| !h.is_empty())
                    && url.username().is_empty()
                    && url.password().is_none()
                    && url.query().is_none()
                    && url.fragment().is_none()
            });
            if !well_formed {
                return bad(
                    "base_url must be an http or https URL with a host and without user \
                     information, query or fragment",
                );
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir must not be empty");
        }
        if self.limits.max_body_bytes < 1024 {
            return bad("limits.max_body_bytes must be at least 1024");
        }
        if self.limits.max_body_bytes > 16 * 1024 * 1024 {
            return bad("limits.max_body_bytes must be at most 16 MiB");
        }
        let limits = &self.limits;
        if limits.request_timeout.is_zero() {
            return bad("limits.request_timeout must be above zero");
        }
        if limits.header_read_timeout.is_zero() {
            return bad("limits.header_read_timeout must be above zero");
        }
        if limits.idle_timeout <= limits.request_timeout {
            return bad("limits.idle_timeout must be longer than limits.request_timeout");
        }
        if limits.store_timeout.is_zero() || limits.store_timeout >= limits.request_timeout {
            return Err(ConfigError::Invalid(format!(
                "limits.store_timeout ({}) must be above zero and below limits.request_timeout \
                 ({}); lower it with the request timeout",
                humantime::format_duration(limits.store_timeout),
                humantime::format_duration(limits.request_timeout)
            )));
        }
        if limits.max_connections == 0 {
            return bad("limits.max_connections must be at least 1");
        }
        if limits.max_connections_per_ip == 0
            || limits.max_connections_per_ip > limits.max_connections
        {
            return bad(
                "limits.max_connections_per_ip must be at least 1 and at most limits.max_connections",
            );
        }
        if !(1024..=32 * 1024).contains(&limits.max_uri_bytes) {
            return bad("limits.max_uri_bytes must be between 1024 and 32768");
        }
        if !(8..=256).contains(&limits.max_headers) {
            return bad("limits.max_headers must be between 8 and 256");
        }
        if !(4 * 1024..=64 * 1024).contains(&limits.max_header_bytes) {
            return bad("limits.max_header_bytes must be between 4096 and 65536");
        }
        let relay = &self.relay;
        if relay.max_slots_per_user == 0 || relay.max_slots == 0 {
            return bad("relay.max_slots_per_user and relay.max_slots must be at least 1");
        }
        if relay.max_conversations_per_user == 0 || relay.max_conversations == 0 {
            return bad(
                "relay.max_conversations_per_user and relay.max_conversations must be at least 1",
            );
        }
        if relay.bytes_per_second < 1024 || relay.bytes_per_user_per_hour < 1024 {
            return bad(
                "relay.bytes_per_second and relay.bytes_per_user_per_hour must be at least 1024",
            );
        }
        if relay.idle_timeout < Duration::from_secs(60) {
            return bad("relay.idle_timeout must be at least 60s (peers ping every 15 s)");
        }
        if relay.accept_timeout.is_zero() {
            return bad("relay.accept_timeout must be above zero");
        }
        if relay.connects_per_second == 0 || relay.connect_burst == 0 {
            return bad("relay.connects_per_second and relay.connect_burst must be at least 1");
        }
        let rates = &self.rate_limit;
        if rates.writes_per_second == 0 {
            return bad("rate_limit.writes_per_second must be at least 1");
        }
        if rates.burst == 0 {
            return bad("rate_limit.burst must be at least 1");
        }
        if rates.lookups_per_second == 0 {
            return bad("rate_limit.lookups_per_second must be at least 1");
        }
        if rates.lookup_burst == 0 {
            return bad("rate_limit.lookup_burst must be at least 1");
        }
        if self.server_key_reload < Duration::from_millis(100)
            || self.server_key_reload.saturating_mul(4) > self.federation.max_request_age
        {
            return bad(
                "server_key_reload must be at least 100ms and at most a quarter of \
                 federation.max_request_age",
            );
        }
        if self.session_ttl < Duration::from_secs(1) {
            return bad("session_ttl must be at least 1s");
        }
        if self.session_ttl > Duration::from_secs(30 * 24 * 3600) {
            return bad("session_ttl must be at most 30 days");
        }
        if self.cache.max_accounts == 0 {
            return bad("cache.max_accounts must be at least 1");
        }
        if self.cache.shared_ttl > Duration::from_secs(3600) {
            return bad("cache.shared_ttl must be at most 1h");
        }
        if let Some(tls) = &self.tls
            && (tls.cert.as_os_str().is_empty() || tls.key.as_os_str().is_empty())
        {
            return bad("tls.cert and tls.key must both name files");
        }
        if let Some(token) = &self.admin.token {
            let token = token.expose();
            if token.chars().count() < MIN_ADMIN_TOKEN_LEN {
                return bad(&format!(
                    "admin.token (or {ENV_ADMIN_TOKEN}) must be at least {MIN_ADMIN_TOKEN_LEN} characters (e.g. the output of `openssl rand -base64 32`)"
                ));
            }
            if !token.chars().all(|c| c.is_ascii_graphic()) {
                return bad(&format!(
                    "admin.token (or {ENV_ADMIN_TOKEN}) must be printable ASCII without spaces"
                ));
            }
        }
        if self.admin.remote && self.admin.token.is_none() {
            return bad(&format!(
                "admin.remote needs admin.token (or {ENV_ADMIN_TOKEN}): remote admin access is never unauthenticated"
            ));
        }
        if let Some(admin) = self.admin_listen
            && !admin.ip().is_loopback()
            && !self.admin.remote
        {
            return bad(
                "admin_listen must be a loopback address, unless admin.remote = true and admin.token are set",
            );
        }
        self.federation
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.resolved_trust()?;
        Ok(())
    }

    /// The effective `[trust]` section: the named trust file's contents when `trust.file`
    /// is set (relative to the configuration file's directory), validated.
    pub fn resolved_trust(&self) -> Result<TrustConfig, ConfigError> {
        let base = self
            .source
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or_else(|| Path::new("."));
        self.trust
            .resolve(base)
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// A configuration for tests (and the benchmark's load): 127.0.0.1 on a free port, data
    /// in `dir`, generous rate limits (per client and per destination) and connection caps.
    pub fn for_tests(dir: &Path) -> Self {
        let mut config = Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: dir.to_owned(),
            rate_limit: RateLimit {
                writes_per_second: 10_000,
                burst: 10_000,
                lookups_per_second: 100_000,
                lookup_burst: 100_000,
            },
            ..Self::default()
        };
        config.limits.max_connections_per_ip = config.limits.max_connections;
        config.relay.connects_per_second = 1000;
        config.relay.connect_burst = 1000;
        config.federation.upstream_lookups_per_second = 100_000;
        config.federation.upstream_lookup_burst = 100_000;
        config
    }

    /// Path of the embedded SQLite database in the data directory.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("pd.sqlite3")
    }

    /// The store in use: `store` if set, else the embedded database in the data directory.
    pub fn store_spec(&self) -> StoreSpec {
        self.store
            .clone()
            .unwrap_or_else(|| StoreSpec::Sqlite(self.db_path()))
    }

    /// Path of the server key.
    pub fn server_key_path(&self) -> PathBuf {
        self.data_dir.join("server.key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        let c = Config::from_toml(s, Path::new("test.toml"))?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn base_url_is_checked_and_defaults_to_the_domain() {
        let c = parse("domain = \"example.com\"").unwrap();
        assert_eq!(c.public_base_url(), "https://example.com");
        let c = parse("domain = \"example.com\"\nbase_url = \"https://pd.example.com:8443/api/\"")
            .unwrap();
        assert_eq!(c.public_base_url(), "https://pd.example.com:8443/api");
        for bad in [
            "ftp://pd.example.com",
            "https://user@pd.example.com",
            "https://pd.example.com/?q",
            "https://pd.example.com/#f",
            "pd.example.com",
        ] {
            let text = format!("base_url = \"{bad}\"");
            assert!(parse(&text).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn empty_file_is_the_default() {
        let c = parse("").unwrap();
        assert_eq!(c.domain.to_string(), "localhost");
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("./pd-data"));
        assert_eq!(c.registration, RegistrationPolicy::Open);
        assert_eq!(c.lookup_access, LookupAccess::Users);
        assert_eq!(c.limits.max_body_bytes, 16384);
        assert_eq!(c.limits.request_timeout, Duration::from_secs(10));
        assert_eq!(c.rate_limit.writes_per_second, 5);
        assert_eq!(c.rate_limit.burst, 20);
        assert_eq!(c.rate_limit.lookups_per_second, 20);
        assert_eq!(c.rate_limit.lookup_burst, 100);
        assert_eq!(c.limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.limits.max_connections, 4096);
        assert_eq!(c.limits.max_connections_per_ip, 64);
        assert_eq!(c.limits.max_uri_bytes, 8192);
        assert_eq!(c.limits.max_headers, 64);
        assert_eq!(c.limits.max_header_bytes, 16384);
        assert_eq!(c.limits.store_timeout, Duration::from_secs(3));
        assert_eq!(c.server_key_reload, Duration::from_secs(10));
        assert_eq!(c.session_ttl, Duration::from_secs(3600));
        assert_eq!(c.cache.max_accounts, 100_000);
        assert!(c.relay.enabled);
        assert_eq!(c.relay.max_slots_per_user, 2);
        assert_eq!(c.relay.max_conversations_per_user, 16);
        assert_eq!(c.relay.bytes_per_second, 1024 * 1024);
        assert_eq!(c.relay.idle_timeout, Duration::from_secs(300));
        assert!(c.tls.is_none());
        assert!(!c.store_spec().is_shared());
    }

    #[test]
    fn full_file_parses() {
        let c = parse(
            r#"
            domain = "Chat.Example"
            listen = "0.0.0.0:443"
            data_dir = "/var/lib/pd"
            registration = "invite"
            lookup_access = "public"
            trusted_proxies = ["10.0.0.0/8", "::1/128"]
            session_ttl = "30m"
            log_format = "json"
            store = "postgres://pd@db.internal/pd"
            [tls]
            cert = "cert.pem"
            key = "key.pem"
            [limits]
            max_body_bytes = 4096
            request_timeout = "2s"
            store_timeout = "1s"
            [rate_limit]
            writes_per_second = 1
            burst = 3
            [cache]
            max_accounts = 10
            shared_ttl = "500ms"
            "#,
        )
        .unwrap();
        assert_eq!(c.domain.to_string(), "chat.example");
        assert_eq!(c.registration, RegistrationPolicy::Invite);
        assert_eq!(c.lookup_access, LookupAccess::Public);
        assert_eq!(c.trusted_proxies.len(), 2);
        assert_eq!(c.session_ttl, Duration::from_secs(1800));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.tls.as_ref().unwrap().cert, PathBuf::from("cert.pem"));
        assert_eq!(c.limits.request_timeout, Duration::from_secs(2));
        assert!(c.store_spec().is_shared());
        assert_eq!(c.cache.shared_ttl, Duration::from_millis(500));
    }

    #[test]
    fn bad_files_are_refused_with_a_message() {
        for (text, needle) in [
            ("domian = \"x\"", "unknown field"),
            ("domain = \"bad host!\"", "domain"),
            ("registration = \"maybe\"", "registration"),
            ("session_ttl = \"soon\"", "session_ttl"),
            ("listen = \"nowhere\"", "listen"),
            ("[rate_limit]\nburst = 0", "rate_limit.burst"),
            ("[limits]\nmax_body_bytes = 10", "max_body_bytes"),
            ("[limits]\nidle_timeout = \"5s\"", "limits.idle_timeout"),
            ("[limits]\nstore_timeout = \"10s\"", "limits.store_timeout"),
            (
                "[limits]\nmax_connections_per_ip = 5000",
                "max_connections_per_ip",
            ),
            ("[limits]\nmax_uri_bytes = 100000", "max_uri_bytes"),
            ("[rate_limit]\nlookups_per_second = 0", "lookups_per_second"),
            ("server_key_reload = \"10m\"", "server_key_reload"),
            ("session_ttl = \"0s\"", "session_ttl"),
            ("trusted_proxies = [\"10.0.0.1/99\"]", "trusted_proxies"),
            ("store = \"postgres://db:port/pd\"", "store"),
            ("admin_listen = \"0.0.0.0:9091\"", "admin.remote"),
            (
                "admin_listen = \"0.0.0.0:9091\"\n[admin]\nremote = true",
                "admin.token",
            ),
            ("[admin]\ntoken = \"short\"", "at least 32"),
            (
                "[admin]\ntoken = \"with a space in it, which is not allowed\"",
                "printable",
            ),
            ("[admin]\nremote = \"yes\"", "remote"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn remote_admin_access_needs_a_token() {
        let c = parse(
            "admin_listen = \"0.0.0.0:9091\"\n[admin]\nremote = true\ntoken = \"0123456789abcdef0123456789abcdef\"",
        )
        .unwrap();
        assert!(c.admin.remote);
        assert_eq!(
            c.admin.token.as_ref().unwrap().expose(),
            "0123456789abcdef0123456789abcdef"
        );
        // The token never shows in debug output.
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        let local = parse("admin_listen = \"127.0.0.1:9091\"").unwrap();
        assert!(!local.admin.remote);
        assert!(local.admin.token.is_none());
    }

    #[test]
    fn relative_paths_in_a_file_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        let file = etc.join("node.toml");
        std::fs::write(
            &file,
            r#"
            data_dir = "../data"
            store = "sqlite:db/pd.sqlite3"
            [tls]
            cert = "tls/cert.pem"
            key = "/abs/key.pem"
            [federation]
            ca_file = "ca.pem"
            "#,
        )
        .unwrap();
        let c = Config::from_file(&file).unwrap();
        assert_eq!(c.data_dir, etc.join("../data"));
        assert_eq!(
            c.store,
            Some(StoreSpec::Sqlite(etc.join("db/pd.sqlite3"))),
            "an SQLite store path is the file's too"
        );
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert, etc.join("tls/cert.pem"));
        assert_eq!(
            tls.key,
            PathBuf::from("/abs/key.pem"),
            "absolute paths stay"
        );
        assert_eq!(c.federation.ca_file, Some(etc.join("ca.pem")));

        // Only a data_dir written in the file is resolved against it: the default stays in
        // the working directory.
        std::fs::write(&file, "domain = \"a.example\"\n").unwrap();
        let c = Config::from_file(&file).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./pd-data"));

        // Flags (and the environment, which reaches the flags) stay relative to the
        // working directory.
        std::fs::write(&file, "data_dir = \"../data\"\n").unwrap();
        let c = Config::load(
            Some(file.as_path()),
            Overrides {
                data_dir: Some("here".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("here"));
    }

    #[test]
    fn a_trust_file_is_found_next_to_a_config_file_named_relatively() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        std::fs::write(etc.join("node.toml"), "[trust]\nfile = \"trust.toml\"\n").unwrap();
        std::fs::write(etc.join("trust.toml"), "deny = [\"spam.example\"]\n").unwrap();
        let c = Config::load(Some(etc.join("node.toml").as_path()), Overrides::default()).unwrap();
        let trust = c.resolved_trust().unwrap();
        assert_eq!(trust.deny.len(), 1);
    }

    #[test]
    fn flags_override_the_file() {
        let mut c = parse("domain = \"a.example\"").unwrap();
        c.apply(Overrides {
            domain: Some("B.example".into()),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: Some("d".into()),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(c.domain.to_string(), "b.example");
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.data_dir, PathBuf::from("d"));
        let half_tls = Overrides {
            tls_cert: Some("c".into()),
            ..Overrides::default()
        };
        assert!(c.apply(half_tls).is_err());
    }
}
