//! The guarded outbound client: the one way this node talks to other hosts.
//!
//! Every outbound request (discovery, key fetches, forwarded lookups) goes through
//! [`GuardedClient`], which enforces:
//!
//! - HTTPS only and DNS names only, unless the URL belongs to a configured static peer;
//! - its own name resolution, which drops every resolved address that
//!   [`is_forbidden_ip`] refuses (loopback, private, link-local, CGNAT, multicast,
//!   documentation, unspecified, and IPv6 forms embedding any of those). The check runs for
//!   each new connection, so a name that later re-resolves to a private address (DNS
//!   rebinding) is refused too;
//! - no proxy from the environment (a proxy would bypass the address filter) and no
//!   redirects: a 3xx is an error naming its `Location`;
//! - connect, per-read and total deadlines; the total covers waiting for a connection slot;
//! - a body cap checked against `Content-Length` and again while streaming. Responses are
//!   never decompressed, so a compressed bomb stays within the cap;
//! - a cap on concurrent requests per destination (`scheme://host:port`).
//!
//! Static peers are explicitly configured by the operator, so they are reached by a
//! second internal client without the address filter, but with the same deadlines, caps,
//! no proxy and no redirects.
//!
//! Both internal clients trust the built-in roots plus the certificate authorities of
//! `federation.ca_file`, if set (a private CA for nodes on a private network).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::redirect::Policy;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use url::Url;

use crate::config::{FederationConfig, StaticPeer};
use crate::error::OutboundError;

/// How much of an error body is kept in [`OutboundError::Status`].
const STATUS_BODY_SNIPPET: usize = 4096;

/// Destinations whose slot semaphores are kept before idle ones are pruned.
const MAX_IDLE_DESTINATIONS: usize = 1024;

/// A response with its body fully read (within the cap).
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status (never 3xx).
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// Whether the content type is JSON (`application/json` or `application/*+json`).
    pub fn is_json(&self) -> bool {
        self.content_type.as_deref().is_some_and(|ct| {
            let media = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            media == "application/json"
                || (media.starts_with("application/") && media.ends_with("+json"))
        })
    }
}

/// Could not build the HTTP client (TLS backend initialisation).
#[derive(Debug, thiserror::Error)]
#[error("could not build the outbound HTTP client: {0}")]
pub struct ClientBuildError(String);

/// The one outbound HTTP client. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct GuardedClient {
    /// For everything that is not a static peer: filtered resolution, HTTPS only.
    strict: reqwest::Client,
    /// For static peers only.
    trusted: reqwest::Client,
    /// Origins (`scheme://host:port`) of the static peers.
    static_origins: Vec<String>,
    request_timeout: Duration,
    max_response_bytes: u64,
    per_peer_concurrency: usize,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl GuardedClient {
    /// Builds the client from the federation settings, trusting the certificate
    /// authorities of `config.ca_file` (if set) besides the built-in ones.
    pub fn new(config: &FederationConfig) -> Result<Self, ClientBuildError> {
        let roots = match &config.ca_file {
            Some(path) => load_ca_file(path)?,
            None => Vec::new(),
        };
        Self::with_root_certificates(config, roots)
    }

    /// Builds the client, trusting `roots` in addition to the built-in certificate
    /// authorities (for private networks whose nodes use a private CA).
    pub fn with_root_certificates(
        config: &FederationConfig,
        roots: Vec<reqwest::Certificate>,
    ) -> Result<Self, ClientBuildError> {
        let base = || {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
            let builder = reqwest::Client::builder()
                .no_proxy()
                .redirect(Policy::none())
                .connect_timeout(config.connect_timeout)
                .read_timeout(config.read_timeout)
                .timeout(config.request_timeout)
                // Dropped before the remote node's wait for a next request head can close
                // it under a request (spec 8.1).
                .pool_idle_timeout(pd_proto::CLIENT_IDLE_REUSE)
                .default_headers(headers)
                .user_agent(concat!("pd-node/", env!("CARGO_PKG_VERSION")));
            roots
                .iter()
                .fold(builder, |b, root| b.add_root_certificate(root.clone()))
        };
        let strict = base()
            .https_only(true)
            .dns_resolver(Arc::new(FilteringResolver))
            .build()
            .map_err(|e| ClientBuildError(e.to_string()))?;
        let trusted = base()
            .build()
            .map_err(|e| ClientBuildError(e.to_string()))?;
        Ok(Self {
            strict,
            trusted,
            static_origins: config.peers.iter().map(|p| origin_of(&p.url)).collect(),
            request_timeout: config.request_timeout,
            max_response_bytes: config.max_response_bytes,
            per_peer_concurrency: config.per_peer_concurrency,
            slots: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `url` belongs to a configured static peer (same scheme, host and port).
    pub fn is_static_peer(&self, url: &Url) -> bool {
        let origin = origin_of(url);
        self.static_origins.contains(&origin)
    }

    /// Whether `peer`'s URL is one the client treats as static.
    pub fn knows_peer(&self, peer: &StaticPeer) -> bool {
        self.is_static_peer(&peer.url)
    }

    /// `GET url` and return the response whatever its status (except 3xx, which is
    /// [`OutboundError::Redirect`]), with the body capped at `max_bytes` (or the configured
    /// `max_response_bytes` when `None`).
    pub async fn get(
        &self,
        url: &Url,
        headers: HeaderMap,
        max_bytes: Option<u64>,
    ) -> Result<Response, OutboundError> {
        let client = self.client_for(url)?;
        let limit = max_bytes.unwrap_or(self.max_response_bytes);
        let host = host_label(url);
        let exchange = async {
            let slot = self.slot(url);
            let _permit = slot.acquire().await.map_err(|_| OutboundError::Connect {
                host: host.clone(),
                reason: "connection slots closed".into(),
            })?;
            let mut response = client
                .get(url.clone())
                .headers(headers)
                .send()
                .await
                .map_err(|e| map_reqwest_error(&e, url))?;
            let status = response.status();
            if status.is_redirection() {
                return Err(OutboundError::Redirect {
                    host: host.clone(),
                    status: status.as_u16(),
                    location: response
                        .headers()
                        .get(header::LOCATION)
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
                });
            }
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if response.content_length().is_some_and(|len| len > limit) {
                return Err(OutboundError::TooLarge {
                    host: host.clone(),
                    limit,
                });
            }
            let mut body = BytesMut::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| map_reqwest_error(&e, url))?
            {
                if (body.len() + chunk.len()) as u64 > limit {
                    return Err(OutboundError::TooLarge {
                        host: host.clone(),
                        limit,
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Response {
                status: status.as_u16(),
                content_type,
                body: body.freeze(),
            })
        };
        match tokio::time::timeout(self.request_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(OutboundError::Timeout { host }),
        }
    }

    /// `GET url`, requiring a 2xx status; returns the (capped) body.
    pub async fn get_bytes(&self, url: &Url, headers: HeaderMap) -> Result<Bytes, OutboundError> {
        let response = self.get(url, headers, None).await?;
        ensure_success(url, &response)?;
        Ok(response.body)
    }

    /// `GET url`, requiring a 2xx status and a JSON body, decoded as `T`.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        url: &Url,
        headers: HeaderMap,
    ) -> Result<T, OutboundError> {
        let response = self.get(url, headers, None).await?;
        ensure_success(url, &response)?;
        decode_json(url, &response)
    }

    /// Picks the internal client for `url`, refusing what the strict client must not reach.
    fn client_for(&self, url: &Url) -> Result<&reqwest::Client, OutboundError> {
        let forbidden = |reason: &str| OutboundError::Forbidden {
            url: redacted(url),
            reason: reason.to_owned(),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(forbidden("URLs with user info are never contacted"));
        }
        if self.is_static_peer(url) {
            return Ok(&self.trusted);
        }
        if url.scheme() != "https" {
            return Err(forbidden(
                "only https is used for nodes that are not static peers",
            ));
        }
        match url.host() {
            Some(url::Host::Domain(_)) => Ok(&self.strict),
            Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => Err(forbidden(
                "IP-literal hosts are only contacted when configured as a static peer",
            )),
            None => Err(forbidden("the URL has no host")),
        }
    }

    /// The concurrency slot of `url`'s destination.
    fn slot(&self, url: &Url) -> Arc<Semaphore> {
        let key = origin_of(url);
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.len() >= MAX_IDLE_DESTINATIONS && !slots.contains_key(&key) {
            let max = self.per_peer_concurrency;
            slots.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < max);
        }
        slots
            .entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_peer_concurrency)))
            .clone()
    }
}

/// Reads the certificates of a PEM file of certificate authorities; fails when the file
/// cannot be read or holds no certificate.
pub fn load_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, ClientBuildError> {
    let pem = std::fs::read(path).map_err(|e| {
        ClientBuildError(format!(
            "failed to read federation.ca_file {}: {e}",
            path.display()
        ))
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        ClientBuildError(format!(
            "federation.ca_file {} is not valid PEM: {e}",
            path.display()
        ))
    })?;
    if certs.is_empty() {
        return Err(ClientBuildError(format!(
            "federation.ca_file {} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Largest trust list accepted from a subscription, in bytes (4 MiB).
pub const MAX_LIST_BYTES: u64 = 4 * 1024 * 1024;

/// Subscribed trust lists are fetched through the guarded client like everything else,
/// with a larger body cap ([`MAX_LIST_BYTES`]) since lists can be long.
impl crate::trust::ListFetcher for GuardedClient {
    async fn fetch(&self, url: &Url) -> Result<Vec<u8>, String> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/plain, text/csv, */*;q=0.5"),
        );
        let response = self
            .get(url, headers, Some(MAX_LIST_BYTES))
            .await
            .map_err(|e| e.to_string())?;
        ensure_success(url, &response).map_err(|e| e.to_string())?;
        Ok(response.body.to_vec())
    }
}

/// Maps a non-2xx response to [`OutboundError::Status`].
pub(crate) fn ensure_success(url: &Url, response: &Response) -> Result<(), OutboundError> {
    if (200..300).contains(&response.status) {
        return Ok(());
    }
    let end = response.body.len().min(STATUS_BODY_SNIPPET);
    Err(OutboundError::Status {
        host: host_label(url),
        status: response.status,
        body: String::from_utf8_lossy(&response.body[..end]).into_owned(),
    })
}

/// Decodes a JSON response body, requiring a JSON content type.
pub(crate) fn decode_json<T: DeserializeOwned>(
    url: &Url,
    response: &Response,
) -> Result<T, OutboundError> {
    let decode = |reason: String| OutboundError::Decode {
        host: host_label(url),
        reason,
    };
    if !response.is_json() {
        return Err(decode(format!(
            "content type is {:?}, expected application/json",
            response.content_type.as_deref().unwrap_or("none")
        )));
    }
    serde_json::from_slice(&response.body).map_err(|e| decode(e.to_string()))
}

/// Whether an address must never be contacted by the strict client.
///
/// Refused: unspecified, loopback, private (RFC 1918), CGNAT `100.64/10`, link-local,
/// IETF protocol assignments `192.0.0/24`, documentation (`192.0.2/24`, `198.51.100/24`,
/// `203.0.113/24`, `2001:db8::/32`, `3fff::/20`), benchmarking (`198.18/15`,
/// `2001:2::/48`), the 6to4 relay anycast `192.88.99/24`, multicast, reserved `240/4`
/// including broadcast, `0/8`, ULA `fc00::/7`, link-local `fe80::/10`, site-local
/// `fec0::/10`, discard-only `100::/64`, local NAT64 `64:ff9b:1::/48`, the rest of the
/// IETF block `2001::/23`, and every IPv6 address outside global unicast `2000::/3`.
/// IPv4-mapped (`::ffff:0:0/96`), IPv4-compatible (`::/96`), IPv4-translated
/// (`::ffff:0:0:0/96`), NAT64 (`64:ff9b::/96`), 6to4 (`2002::/16`) and Teredo
/// (`2001::/32`, server and client) addresses have their embedded IPv4 address unwrapped
/// and checked.
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    const RANGES: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),       // "this network", includes 0.0.0.0
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // CGNAT
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local (cloud metadata)
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // documentation TEST-NET-1
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation TEST-NET-2
        ([203, 0, 113, 0], 24),  // documentation TEST-NET-3
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, includes broadcast
    ];
    RANGES.iter().any(|(net, prefix)| in_v4(ip, *net, *prefix))
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    u128::from(ip) & mask == u128::from(net) & mask
}

fn v4_at(bits: u128, shift: u32) -> Ipv4Addr {
    // Truncation to the 32 bits at `shift` is the point.
    Ipv4Addr::from(((bits >> shift) & 0xffff_ffff) as u32)
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    let net = |s: &str| s.parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::UNSPECIFIED);
    if ip.is_unspecified() || ip.is_loopback() {
        return true;
    }
    // IPv4-mapped ::ffff:a.b.c.d and IPv4-compatible ::a.b.c.d.
    if in_v6(ip, net("::ffff:0:0"), 96) || in_v6(ip, Ipv6Addr::UNSPECIFIED, 96) {
        return is_forbidden_v4(v4_at(bits, 0));
    }
    // IPv4-translated ::ffff:0:a.b.c.d (RFC 2765) and NAT64 64:ff9b::a.b.c.d.
    if in_v6(ip, net("::ffff:0:0:0"), 96) || in_v6(ip, net("64:ff9b::"), 96) {
        return is_forbidden_v4(v4_at(bits, 0));
    }
    // 6to4: 2002:AABB:CCDD::/48 embeds AA.BB.CC.DD.
    if in_v6(ip, net("2002::"), 16) {
        return is_forbidden_v4(v4_at(bits, 80));
    }
    // Teredo: 2001:0:SSSS:SSSS:flags:port:CCCC:CCCC, server in clear, client inverted.
    if in_v6(ip, net("2001::"), 32) {
        return is_forbidden_v4(v4_at(bits, 64)) || is_forbidden_v4(!v4_at(bits, 0));
    }
    // Only global unicast 2000::/3 may be contacted; this excludes ::/8 leftovers,
    // 64:ff9b:1::/48, 100::/64, fc00::/7, fe80::/10, fec0::/10 and ff00::/8.
    if !in_v6(ip, net("2000::"), 3) {
        return true;
    }
    const GLOBAL_EXCEPTIONS: &[(&str, u32)] = &[
        ("2001::", 23),     // IETF protocol assignments (benchmarking, ORCHID, ...)
        ("2001:db8::", 32), // documentation
        ("3fff::", 20),     // documentation (RFC 9637)
    ];
    GLOBAL_EXCEPTIONS
        .iter()
        .any(|(n, prefix)| in_v6(ip, net(n), *prefix))
}

/// Resolves with the system resolver and drops every forbidden address; fails when
/// nothing is left.
#[derive(Debug)]
struct FilteringResolver;

/// Every address a name resolved to is forbidden.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to forbidden addresses ({addrs})")]
struct ForbiddenResolution {
    host: String,
    addrs: String,
}

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = filter_resolved(&host, resolved)?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Keeps the addresses a connection may be made to; fails when none is left.
fn filter_resolved(
    host: &str,
    resolved: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, ForbiddenResolution> {
    let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = resolved
        .into_iter()
        .partition(|addr| !is_forbidden_ip(addr.ip()));
    if allowed.is_empty() {
        let addrs = refused
            .iter()
            .map(|a| a.ip().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        tracing::warn!(remote.host = %host, %addrs, "refused to connect: forbidden addresses only");
        return Err(ForbiddenResolution {
            host: host.to_owned(),
            addrs,
        });
    }
    if !refused.is_empty() {
        tracing::warn!(remote.host = %host, refused = refused.len(), "dropped forbidden addresses");
    }
    Ok(allowed)
}

fn map_reqwest_error(err: &reqwest::Error, url: &Url) -> OutboundError {
    let host = host_label(url);
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut reasons = Vec::new();
    while let Some(e) = source {
        if let Some(forbidden) = e.downcast_ref::<ForbiddenResolution>() {
            return OutboundError::Forbidden {
                url: redacted(url),
                reason: forbidden.to_string(),
            };
        }
        reasons.push(e.to_string());
        source = e.source();
    }
    if err.is_timeout() {
        return OutboundError::Timeout { host };
    }
    OutboundError::Connect {
        host,
        reason: reasons.join(": "),
    }
}

/// `scheme://host:port` of a URL, with the scheme's default port filled in.
fn origin_of(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// `host[:port]` for messages.
fn host_label(url: &Url) -> String {
    match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or("")),
        None => url.host_str().unwrap_or("").to_owned(),
    }
}

/// The URL without query or fragment, for messages.
fn redacted(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

#[cfg(test)]
mod tests;
