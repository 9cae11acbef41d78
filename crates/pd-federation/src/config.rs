//! The `[federation]` section of the node's configuration: static peer routes, extra
//! certificate authorities, outbound limits, discovery cache lifetimes and the accepted age
//! of signed node requests.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use pd_proto::Host;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::backoff::BackoffConfig;
use crate::cache::CacheConfig;

/// Federation settings. Every field has a default, so an empty `[federation]` section
/// (or none at all) is valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FederationConfig {
    /// Static routes to other nodes (`[[federation.peers]]`), checked before any discovery.
    /// The only way plain `http://`, IP-literal, private or loopback nodes are ever
    /// contacted. Default: none.
    pub peers: Vec<StaticPeer>,
    /// A PEM file of extra certificate authorities that outbound HTTPS trusts, in addition
    /// to the built-in roots: for nodes on a private network whose certificates come from a
    /// private CA. A relative path in the node's configuration file is relative to that
    /// file's directory. Default: none.
    pub ca_file: Option<PathBuf>,
    /// Deadline for establishing a TCP connection (and TLS handshake) to another node.
    /// Default: `5s`.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait for any single read from another node (headers or a body chunk).
    /// Default: `10s`.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Deadline for a whole outbound exchange, from waiting for a connection slot to the
    /// last body byte. Default: `15s`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Largest response body accepted from another node, in bytes. Default: `65536`.
    pub max_response_bytes: u64,
    /// Largest `/.well-known/pd` body accepted during discovery, in bytes. Default: `4096`.
    pub max_well_known_bytes: u64,
    /// Most requests in flight to one destination (`host:port`) at a time. Default: `8`.
    pub per_peer_concurrency: usize,
    /// Most lookups a second this node sends to one remote domain for answers it does not
    /// have cached (sustained); beyond it a lookup is answered from the stale cache or with
    /// 429 `rate-limited` and `Retry-After`, and nothing is sent. Cached answers (negative
    /// ones included) are not counted. Default: `10`.
    pub upstream_lookups_per_second: u32,
    /// Uncached lookups of one remote domain allowed in a burst. Default: `50`.
    pub upstream_lookup_burst: u32,
    /// How long a successful discovery result is cached. Default: `6h`.
    #[serde(with = "humantime_serde")]
    pub discovery_ttl: Duration,
    /// Random spread applied to `discovery_ttl`, in percent (±), so that entries do not
    /// all expire together. Default: `10`.
    pub discovery_ttl_jitter_percent: u8,
    /// How long a failed discovery is cached. Default: `5m`.
    #[serde(with = "humantime_serde")]
    pub discovery_failure_ttl: Duration,
    /// Share of a successful discovery result's lifetime after which it is refreshed on
    /// use, in percent. If the refresh fails the previous result is kept until it expires.
    /// Default: `80`.
    pub discovery_refresh_percent: u8,
    /// Longest time another node's server keys are cached (they are also never used past
    /// their `valid_until`). Default: `24h`.
    #[serde(with = "humantime_serde")]
    pub server_key_ttl: Duration,
    /// Oldest (and furthest in the future) timestamp accepted on a signed inbound node
    /// request. Default: `5m`.
    #[serde(with = "humantime_serde")]
    pub max_request_age: Duration,
    /// The lookup cache (`[federation.cache]`); see [`CacheConfig`] for each default.
    pub cache: CacheConfig,
    /// Per-peer backoff (`[federation.backoff]`); see [`BackoffConfig`] for each default.
    pub backoff: BackoffConfig,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            peers: Vec::new(),
            ca_file: None,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(15),
            max_response_bytes: 64 * 1024,
            max_well_known_bytes: 4 * 1024,
            per_peer_concurrency: 8,
            upstream_lookups_per_second: 10,
            upstream_lookup_burst: 50,
            discovery_ttl: Duration::from_secs(6 * 3600),
            discovery_ttl_jitter_percent: 10,
            discovery_failure_ttl: Duration::from_secs(5 * 60),
            discovery_refresh_percent: 80,
            server_key_ttl: Duration::from_secs(24 * 3600),
            max_request_age: Duration::from_secs(5 * 60),
            cache: CacheConfig::default(),
            backoff: BackoffConfig::default(),
        }
    }
}

impl FederationConfig {
    /// Checks values that serde cannot: non-zero limits, percentages in range and
    /// one route per peer domain.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let nonzero = [
            ("connect_timeout", self.connect_timeout.is_zero()),
            ("read_timeout", self.read_timeout.is_zero()),
            ("request_timeout", self.request_timeout.is_zero()),
            ("max_response_bytes", self.max_response_bytes == 0),
            ("max_well_known_bytes", self.max_well_known_bytes == 0),
            ("per_peer_concurrency", self.per_peer_concurrency == 0),
            (
                "upstream_lookups_per_second",
                self.upstream_lookups_per_second == 0,
            ),
            ("upstream_lookup_burst", self.upstream_lookup_burst == 0),
            ("discovery_ttl", self.discovery_ttl.is_zero()),
            (
                "discovery_failure_ttl",
                self.discovery_failure_ttl.is_zero(),
            ),
            ("server_key_ttl", self.server_key_ttl.is_zero()),
            ("max_request_age", self.max_request_age.is_zero()),
        ];
        if self
            .ca_file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            return Err(ConfigError::Invalid(
                "federation.ca_file must name a file".into(),
            ));
        }
        if let Some((field, _)) = nonzero.iter().find(|(_, zero)| *zero) {
            return Err(ConfigError::Invalid(format!(
                "federation.{field} must not be zero"
            )));
        }
        if self.discovery_ttl_jitter_percent > 50 {
            return Err(ConfigError::Invalid(
                "federation.discovery_ttl_jitter_percent must be at most 50".into(),
            ));
        }
        if !(1..=100).contains(&self.discovery_refresh_percent) {
            return Err(ConfigError::Invalid(
                "federation.discovery_refresh_percent must be between 1 and 100".into(),
            ));
        }
        if self.cache.max_entries == 0 || self.cache.max_bytes == 0 {
            return Err(ConfigError::Invalid(
                "federation.cache.max_entries and max_bytes must not be zero".into(),
            ));
        }
        if self.cache.min_ttl > self.cache.max_ttl {
            return Err(ConfigError::Invalid(
                "federation.cache.min_ttl must not exceed federation.cache.max_ttl".into(),
            ));
        }
        if !(self.backoff.factor >= 1.0 && self.backoff.factor.is_finite()) {
            return Err(ConfigError::Invalid(
                "federation.backoff.factor must be at least 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.backoff.jitter) {
            return Err(ConfigError::Invalid(
                "federation.backoff.jitter must be between 0 and 1".into(),
            ));
        }
        if self.backoff.initial.is_zero() || self.backoff.initial > self.backoff.max {
            return Err(ConfigError::Invalid(
                "federation.backoff.initial must be above zero and at most federation.backoff.max"
                    .into(),
            ));
        }
        for (i, peer) in self.peers.iter().enumerate() {
            if self.peers[..i].iter().any(|p| p.domain == peer.domain) {
                return Err(ConfigError::Invalid(format!(
                    "federation.peers lists {} more than once",
                    peer.domain
                )));
            }
        }
        Ok(())
    }
}

/// Why a federation setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A static peer is malformed.
    #[error("invalid static peer {input:?}: {reason}")]
    Peer {
        /// The offending input.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Another setting is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// A statically configured route: requests for `domain` go to `url`.
///
/// In TOML: `[[federation.peers]]` with `domain = "blackmesa.us"` and
/// `url = "https://pd.blackmesa.us:8443"`; on the command line: `--peer DOMAIN=URL`.
/// The URL must be `http` or `https`, with a host and without user info, query or
/// fragment; a path is kept as the API root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StaticPeerFields", into = "StaticPeerFields")]
pub struct StaticPeer {
    /// The domain served by the peer (normalised).
    pub domain: Host,
    /// The peer's API base URL.
    pub url: Url,
}

impl StaticPeer {
    /// Builds a route after checking the URL.
    pub fn new(domain: Host, url: Url) -> Result<Self, ConfigError> {
        let bad = |reason: &str| ConfigError::Peer {
            input: format!("{domain}={url}"),
            reason: reason.to_owned(),
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("the URL scheme must be http or https"));
        }
        if url.host().is_none() {
            return Err(bad("the URL has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("the URL must not contain user info"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("the URL must not contain a query or fragment"));
        }
        Ok(Self { domain, url })
    }
}

impl FromStr for StaticPeer {
    type Err = ConfigError;

    /// Parses `DOMAIN=URL`, as given to `--peer`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| ConfigError::Peer {
            input: s.to_owned(),
            reason,
        };
        let (domain, url) = s
            .split_once('=')
            .ok_or_else(|| bad("expected DOMAIN=URL".to_owned()))?;
        let domain = Host::parse(domain.trim()).map_err(|e| bad(e.to_string()))?;
        let url = parse_peer_url(url.trim()).map_err(bad)?;
        Self::new(domain, url)
    }
}

/// Parses a static route's URL; one written without a scheme (`127.0.0.1:8081`) gets a
/// suggestion rather than the URL parser's `relative URL without a base`.
fn parse_peer_url(url: &str) -> Result<Url, String> {
    if !url.contains("://") {
        return Err(format!(
            "the URL {url:?} needs a scheme; did you mean http://{url}? (https:// for a node \
             serving TLS)"
        ));
    }
    Url::parse(url).map_err(|e| e.to_string())
}

impl fmt::Display for StaticPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.domain, self.url)
    }
}

/// The TOML shape of a [`StaticPeer`], validated on conversion.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticPeerFields {
    domain: Host,
    url: String,
}

impl TryFrom<StaticPeerFields> for StaticPeer {
    type Error = ConfigError;
    fn try_from(fields: StaticPeerFields) -> Result<Self, Self::Error> {
        let url = parse_peer_url(&fields.url).map_err(|reason| ConfigError::Peer {
            input: format!("{}={}", fields.domain, fields.url),
            reason,
        })?;
        Self::new(fields.domain, url)
    }
}

impl From<StaticPeer> for StaticPeerFields {
    fn from(peer: StaticPeer) -> Self {
        Self {
            domain: peer.domain,
            url: peer.url.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Root {
        federation: FederationConfig,
    }

    #[test]
    fn toml_with_peers_and_durations() {
        let root: Root = toml::from_str(
            r#"
            [federation]
            request_timeout = "20s"
            max_request_age = "2m"

            [[federation.peers]]
            domain = "BlackMesa.us"
            url = "https://pd.blackmesa.us:8443"
            "#,
        )
        .unwrap();
        let config = root.federation;
        assert_eq!(config.request_timeout, Duration::from_secs(20));
        assert_eq!(config.max_request_age, Duration::from_secs(120));
        assert_eq!(config.connect_timeout, Duration::from_secs(5));
        assert_eq!(config.peers.len(), 1);
        assert_eq!(config.peers[0].domain.to_string(), "blackmesa.us");
        assert_eq!(
            config.peers[0].url.as_str(),
            "https://pd.blackmesa.us:8443/"
        );
        config.validate().unwrap();
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let config = FederationConfig::default();
        config.validate().unwrap();
        assert_eq!(config.max_response_bytes, 65536);
        assert_eq!(config.max_well_known_bytes, 4096);
        assert_eq!(config.per_peer_concurrency, 8);
        assert_eq!(config.discovery_ttl, Duration::from_secs(6 * 3600));
        assert_eq!(config.discovery_failure_ttl, Duration::from_secs(300));
        let empty: Root = toml::from_str("[federation]").unwrap();
        assert_eq!(empty.federation, config);
    }

    #[test]
    fn bad_peers_are_refused() {
        for bad in [
            "blackmesa.us",
            "blackmesa.us=ftp://x.example",
            "blackmesa.us=https://u:p@x.example",
            "blackmesa.us=https://x.example/?q=1",
            "blackmesa.us=https://x.example/#f",
            "bad host=https://x.example",
            "blackmesa.us=not a url",
        ] {
            assert!(bad.parse::<StaticPeer>().is_err(), "{bad}");
        }
        let no_scheme = "b.localhost=127.0.0.1:8081"
            .parse::<StaticPeer>()
            .unwrap_err()
            .to_string();
        assert_eq!(
            no_scheme,
            "invalid static peer \"b.localhost=127.0.0.1:8081\": the URL \"127.0.0.1:8081\" \
             needs a scheme; did you mean http://127.0.0.1:8081? (https:// for a node serving TLS)"
        );
        let bad_toml = toml::from_str::<Root>(
            "[[federation.peers]]\ndomain = \"a.example\"\nurl = \"ftp://a.example\"\n",
        );
        assert!(bad_toml.is_err());
    }

    #[test]
    fn cli_peer_round_trips() {
        let peer: StaticPeer = "b.example:8443=http://127.0.0.1:9000".parse().unwrap();
        assert_eq!(peer.domain.to_string(), "b.example:8443");
        assert_eq!(peer.url.as_str(), "http://127.0.0.1:9000/");
        assert_eq!(peer.to_string().parse::<StaticPeer>().unwrap(), peer);
    }

    #[test]
    fn duplicate_peers_and_zero_limits_are_refused() {
        let mut config = FederationConfig {
            peers: vec![
                "a.example=https://x.example".parse().unwrap(),
                "A.example=https://y.example".parse().unwrap(),
            ],
            ..FederationConfig::default()
        };
        assert!(config.validate().is_err());
        config.peers.pop();
        config.validate().unwrap();
        config.per_peer_concurrency = 0;
        assert!(config.validate().is_err());
    }

    #[test]
    fn cache_and_backoff_sections_parse_and_are_checked() {
        let root: Root = toml::from_str(
            "[federation.cache]\nstale_window = \"10m\"\n[federation.backoff]\nmax = \"5m\"\n",
        )
        .unwrap();
        assert_eq!(root.federation.cache.stale_window, Duration::from_secs(600));
        assert_eq!(root.federation.backoff.max, Duration::from_secs(300));
        root.federation.validate().unwrap();
        let mut bad = root.federation.clone();
        bad.backoff.jitter = 2.0;
        assert!(bad.validate().is_err());
        let mut bad = root.federation;
        bad.cache.min_ttl = Duration::from_secs(7200);
        assert!(bad.validate().is_err());
        assert!(toml::from_str::<Root>("[federation.cache]\ncolour = 1\n").is_err());
    }
}
