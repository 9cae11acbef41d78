//! `pd-server healthcheck`: one `GET /healthz` at the node this configuration describes
//! (or at `--url`), for container health checks on images without curl.
//!
//! Without `--url` the node is asked on the loopback address of its `listen` family and
//! port, over HTTPS when the configuration serves TLS. That certificate is not verified:
//! the check is about the process answering, and the certificate names a public host, not
//! the loopback address. A `--url` is verified like any HTTPS URL.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use anyhow::{Context as _, bail};
use url::Url;

use crate::config::Config;

/// The node's own `/healthz`, on loopback when it listens on every address.
pub fn default_url(config: &Config) -> anyhow::Result<Url> {
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let ip = match config.listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let host = match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let url = format!("{scheme}://{host}:{}/healthz", config.listen.port());
    Url::parse(&url).with_context(|| format!("cannot form the health URL {url}"))
}

/// `GET url`; returns the body when the answer is 2xx, an error naming the status (and the
/// body) otherwise. `verify` turns certificate verification on.
pub async fn check(url: &Url, verify: bool, timeout: Duration) -> anyhow::Result<String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(!verify)
        .timeout(timeout)
        .build()
        .context("failed to build the HTTP client")?;
    let response = client
        .get(url.clone())
        .send()
        .await
        .with_context(|| format!("GET {url} failed"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .with_context(|| format!("failed to read the answer of {url}"))?;
    if !status.is_success() {
        bail!("GET {url} answered {status}: {}", body.trim());
    }
    Ok(body)
}
