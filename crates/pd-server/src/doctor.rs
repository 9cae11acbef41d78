//! `pd-server doctor DOMAIN`: resolves a domain exactly as this node would when one of its
//! users looks up someone there, and reports each step with a pass or fail and a hint.
//!
//! Every step goes through the code that real lookups use: the node's configuration and
//! server key, its trust policy, [`Discovery`] over the one [`GuardedClient`] (static route,
//! `/.well-known/pd` delegation, `https://DOMAIN`), the server key fetch that verifies
//! node-to-node requests, and [`Upstream::fetch_lookup`], the signed federation lookup
//! (here of a name that does not exist: an authenticated `unknown-user` answer proves the
//! whole exchange). Only when that lookup fails is the same signed request sent once more,
//! to read the status and problem document the other node answered with, for the hint.
//!
//! The steps, in order: `config`, `trust`, `discovery`, `connection` (TLS and a
//! `GET /healthz` at the node's base URL), `server-keys` and `signed-request`. A failed step
//! skips those that cannot run without it.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pd_federation::discovery::{Discovery, Route, Via};
use pd_federation::error::{DiscoveryError, OutboundError};
use pd_federation::guard::GuardedClient;
use pd_federation::node_auth::NodeSigner;
use pd_federation::resolver::ResolveError;
use pd_federation::trust::{Trust, TrustPolicy};
use pd_federation::upstream::Upstream;
use pd_proto::node_auth::server_key_id;
use pd_proto::wire::ServerKey;
use pd_proto::{Address, Host, Name, Problem, SecretKey};
use rand::Rng as _;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde::Serialize;

use crate::config::Config;
use crate::federation;
use crate::server_keys;

/// The outcome of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The step succeeded.
    Pass,
    /// The step failed; the report as a whole fails.
    Fail,
    /// The step did not run because an earlier one failed.
    Skip,
}

/// One checked step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// The step's name: `config`, `trust`, `discovery`, `connection`, `server-keys` or
    /// `signed-request`.
    pub step: &'static str,
    /// Pass, fail or skip.
    pub status: Status,
    /// What was found (or what went wrong).
    pub detail: String,
    /// How to fix a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// How long the step took, in milliseconds.
    pub millis: u64,
}

/// The result of [`diagnose`].
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The domain that was checked.
    pub domain: String,
    /// The domain this node signs as.
    pub origin: String,
    /// Whether every step passed.
    pub ok: bool,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl Report {
    /// The steps that failed.
    pub fn failures(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.status == Status::Fail)
            .count()
    }

    /// The report as text, one line per step (with an indented hint under a failure).
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "checking {} as {} would reach it\n",
            self.domain, self.origin
        );
        for step in &self.steps {
            let label = match step.status {
                Status::Pass => "pass",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
            };
            let _ = writeln!(out, "  {label}  {:<15} {}", step.step, step.detail);
            if let Some(hint) = &step.hint {
                let _ = writeln!(out, "        {:<15} hint: {hint}", "");
            }
        }
        let failed = self.failures();
        if failed == 0 {
            let _ = writeln!(out, "all {} checks passed", self.steps.len());
        } else {
            let _ = writeln!(out, "{failed} of {} checks failed", self.steps.len());
        }
        out
    }
}

/// Collects steps, timing each one.
struct Steps {
    steps: Vec<Step>,
    started: Instant,
}

impl Steps {
    fn new() -> Self {
        Self {
            steps: Vec::new(),
            started: Instant::now(),
        }
    }

    fn push(&mut self, step: &'static str, status: Status, detail: String, hint: Option<String>) {
        let millis = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.started = Instant::now();
        self.steps.push(Step {
            step,
            status,
            detail,
            hint,
            millis,
        });
    }

    fn pass(&mut self, step: &'static str, detail: String) {
        self.push(step, Status::Pass, detail, None);
    }

    fn fail(&mut self, step: &'static str, detail: String, hint: String) {
        self.push(step, Status::Fail, detail, Some(hint));
    }

    fn skip_rest(&mut self, from: &[&'static str]) {
        for step in from {
            self.push(
                step,
                Status::Skip,
                "not checked: an earlier step failed".into(),
                None,
            );
        }
    }
}

/// Every step, in order.
const STEPS: [&str; 6] = [
    "config",
    "trust",
    "discovery",
    "connection",
    "server-keys",
    "signed-request",
];

/// Checks `target` as this node (`config`, with the trust policy `policy`) would reach it.
pub async fn diagnose(config: &Config, policy: TrustPolicy, target: &Host) -> Report {
    let mut steps = Steps::new();
    run_steps(&mut steps, config, policy, target).await;
    let ok = steps.steps.iter().all(|s| s.status != Status::Fail);
    Report {
        domain: target.to_string(),
        origin: config.domain.to_string(),
        ok,
        steps: steps.steps,
    }
}

/// The current server key kept in the shared store, if any.
async fn shared_key(spec: &crate::store::StoreSpec) -> anyhow::Result<Option<pd_proto::SecretKey>> {
    use anyhow::Context as _;
    let store = crate::store::Store::connect(spec)
        .await
        .with_context(|| format!("failed to open the store {spec}"))?;
    let keys = store.read_server_keys().await;
    store.close().await?;
    keys?
        .map(|k| {
            pd_proto::SecretKey::from_text(k.current.trim())
                .context("failed to parse the server key stored in the database")
        })
        .transpose()
}

async fn run_steps(steps: &mut Steps, config: &Config, policy: TrustPolicy, target: &Host) {
    let origin = &config.domain;

    // config: the server key this node signs with and the outbound client.
    let spec = config.store_spec();
    let current = if spec.is_shared() {
        shared_key(&spec).await
    } else {
        server_keys::read_current(&config.data_dir)
    };
    let key = match current {
        Ok(Some(key)) => key,
        Ok(None) => {
            let place = if spec.is_shared() {
                spec.to_string()
            } else {
                config.data_dir.display().to_string()
            };
            steps.fail(
                "config",
                format!("no server key in {place}"),
                "run doctor with the node's own configuration (--config, or --data-dir): it \
                 signs with the node's server.key, which the node creates when it first starts"
                    .into(),
            );
            return steps.skip_rest(&STEPS[1..]);
        }
        Err(e) => {
            steps.fail(
                "config",
                format!("{e:#}"),
                "doctor must be able to read the node's server.key: run it as the node's user"
                    .into(),
            );
            return steps.skip_rest(&STEPS[1..]);
        }
    };
    let trust = Trust::new(policy);
    let (client, discovery) = match federation::outbound(config, &trust) {
        Ok(pair) => pair,
        Err(e) => {
            steps.fail(
                "config",
                format!("{e:#}"),
                "federation.ca_file must name a readable PEM file of CA certificates".into(),
            );
            return steps.skip_rest(&STEPS[1..]);
        }
    };
    steps.pass(
        "config",
        format!(
            "signing as {origin} with server key {}",
            server_key_id(&key.public())
        ),
    );

    // trust: asked before any network traffic, as for every real lookup.
    let now = SystemTime::now();
    let verdict = trust.current().decide(target, now);
    if verdict.allowed {
        steps.pass("trust", verdict.explain(target));
    } else {
        steps.fail(
            "trust",
            verdict.explain(target),
            format!(
                "this node refuses {target} before sending anything; allow it in [trust] (or \
                 remove the deny entry) and reload the node (SIGHUP)"
            ),
        );
        return steps.skip_rest(&STEPS[2..]);
    }

    // discovery: static route, delegation or the domain itself; discovery itself refuses a
    // delegation target the trust policy refuses, before contacting it.
    let route = match discovery.locate(target).await {
        Ok(route) => route,
        Err(e) => {
            let hint = discovery_hint(target, &e);
            steps.fail("discovery", e.to_string(), hint);
            return steps.skip_rest(&STEPS[3..]);
        }
    };
    steps.pass("discovery", describe_route(target, &route));

    // connection: TLS (or plain HTTP on a static route) to the base URL.
    if !check_connection(steps, &client, &route).await {
        return steps.skip_rest(&STEPS[4..]);
    }

    // server-keys: what other nodes fetch to verify requests signed by the target.
    match discovery.fetch_server_keys(target).await {
        Ok(keys) => steps.pass("server-keys", describe_keys(&keys)),
        Err(e) => {
            let hint = keys_hint(target, &route, &e);
            steps.fail("server-keys", e.to_string(), hint);
        }
    }

    // signed-request: the signed federation lookup of a name that does not exist.
    let signer = NodeSigner::new(key.clone(), config.domain.clone());
    let upstream = federation::upstream(config, &discovery, signer);
    let probe = probe_address(target);
    match upstream.fetch_lookup(&probe).await {
        Err(ResolveError::UnknownUser) => steps.pass(
            "signed-request",
            format!(
                "{target} authenticated a lookup signed by {origin} and answered unknown-user \
                 for {probe}"
            ),
        ),
        Ok(_) => steps.pass(
            "signed-request",
            format!("{target} authenticated a lookup signed by {origin} and answered {probe}"),
        ),
        Err(e) => {
            let answer = raw_answer(&discovery, &route, &key, origin, &probe).await;
            let hint = request_hint(origin, target, &e, answer.as_ref());
            let detail = match &answer {
                Some((status, Some(problem))) => {
                    format!("{e}; {target} answered {status}: {}", problem.detail)
                }
                Some((status, None)) => format!("{e}; {target} answered {status}"),
                None => e.to_string(),
            };
            steps.fail("signed-request", detail, hint);
        }
    }
}

/// A name nobody registers: `pd-doctor-` and random hex.
fn probe_address(target: &Host) -> Address {
    let suffix: u64 = rand::thread_rng().r#gen();
    let name = format!("pd-doctor-{suffix:016x}");
    // A lowercase ASCII name of 26 characters is always valid.
    let name = Name::parse(&name).unwrap_or_else(|_| unreachable!("probe names are valid"));
    Address::new(name, target.clone()).unwrap_or_else(|_| unreachable!("probe names are valid"))
}

fn describe_route(target: &Host, route: &Route) -> String {
    match route.via {
        Via::Static => format!("static route: {}", route.base_url),
        Via::Delegated => format!(
            "https://{target}/.well-known/pd delegates to {}",
            route.base_url
        ),
        Via::Direct => format!(
            "no delegation at https://{target}/.well-known/pd; the node is {}",
            route.base_url
        ),
    }
}

fn describe_keys(keys: &[ServerKey]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let listed: Vec<String> = keys
        .iter()
        .map(|k| {
            let days = k.valid_until.saturating_sub(now) / 86_400;
            format!("{} (valid {days} more days)", k.key_id)
        })
        .collect();
    format!("{} server key(s): {}", keys.len(), listed.join(", "))
}

/// `GET {base}/healthz` through the guarded client: proves DNS, TCP and TLS (certificate
/// chain and name) towards the node's base URL. Any HTTP answer passes.
async fn check_connection(steps: &mut Steps, client: &GuardedClient, route: &Route) -> bool {
    let url = match route.endpoint("/healthz") {
        Ok(url) => url,
        Err(e) => {
            steps.fail(
                "connection",
                format!("cannot form a URL under {}: {e}", route.base_url),
                "fix the base URL (static route or delegation)".into(),
            );
            return false;
        }
    };
    let scheme = if url.scheme() == "https" {
        "TLS certificate accepted"
    } else {
        "plain HTTP (static route)"
    };
    match client.get(&url, HeaderMap::new(), None).await {
        Ok(response) => {
            let health = if response.status == 200 {
                "/healthz answered 200".to_owned()
            } else {
                format!("/healthz answered {}", response.status)
            };
            steps.pass(
                "connection",
                format!("{}: {scheme}, {health}", route.base_url),
            );
            true
        }
        Err(e) => {
            let hint = connection_hint(route, &e);
            steps.fail("connection", e.to_string(), hint);
            false
        }
    }
}

/// Sends the signed lookup once more and returns the status and problem document.
async fn raw_answer(
    discovery: &Arc<Discovery>,
    route: &Route,
    key: &SecretKey,
    origin: &Host,
    probe: &Address,
) -> Option<(u16, Option<Problem>)> {
    let path = Upstream::lookup_path(probe);
    let url = route.endpoint(&path).ok()?;
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        pd_federation::node_auth::sign_request(key, origin, probe.host(), "GET", &path, b""),
    );
    let response = discovery.client().get(&url, headers, None).await.ok()?;
    let problem = serde_json::from_slice::<Problem>(&response.body).ok();
    Some((response.status, problem))
}

fn discovery_hint(target: &Host, err: &DiscoveryError) -> String {
    match err {
        DiscoveryError::NoNode { reason, .. } => {
            if reason.contains("forbidden addresses") || reason.contains("IP-literal") {
                format!(
                    "{target} resolves to a private or loopback address, which nodes only \
                     contact through a static route ([[federation.peers]] or --peer)"
                )
            } else if reason.contains("dns") || reason.contains("resolve") {
                format!(
                    "{target} does not resolve: publish an A/AAAA record for it, or add a \
                     static route ([[federation.peers]])"
                )
            } else {
                format!(
                    "nothing answers HTTPS at {target}:443: the domain (or the reverse proxy \
                     in front of the node) must serve https://{target}/, or \
                     https://{target}/.well-known/pd must delegate to the node"
                )
            }
        }
        DiscoveryError::Unreachable { .. } => format!(
            "https://{target}/.well-known/pd timed out or answered 5xx: check the web \
             server or reverse proxy of {target}"
        ),
        DiscoveryError::Invalid { .. } => format!(
            "https://{target}/.well-known/pd must be JSON: the node's own document, or a \
             delegation such as {{\"base_url\": \"https://pd.{target}\"}} (an https URL with \
             a DNS name, no query or fragment)"
        ),
        DiscoveryError::Refused { host, .. } => format!(
            "{target} delegates to {host}, which this node's trust policy refuses: allow \
             {host} in [trust] too, or ask {target} to delegate elsewhere"
        ),
        _ => "check the domain's DNS and web server".into(),
    }
}

fn connection_hint(route: &Route, err: &OutboundError) -> String {
    let base = &route.base_url;
    let text = err.to_string().to_ascii_lowercase();
    match err {
        OutboundError::Timeout { .. } => format!(
            "{base} did not answer in time: check firewalls and that the node (or its proxy) \
             is running"
        ),
        OutboundError::Forbidden { .. } => format!(
            "{base} is a private, loopback or non-https address: such nodes are only contacted \
             through a static route"
        ),
        _ if text.contains("certificate") || text.contains("tls") || text.contains("handshake") => {
            format!(
                "the TLS certificate at {base} is not accepted: it must be valid for the host \
                 name and served with its full chain; for a private CA, set federation.ca_file \
                 to the CA's PEM file"
            )
        }
        _ if text.contains("dns") => {
            format!("the host of {base} does not resolve: check its DNS records")
        }
        _ if text.contains("refused") => format!(
            "nothing listens at {base}: start the node, or fix the port in the route or \
             delegation"
        ),
        _ => format!("check that the node (or its reverse proxy) is reachable at {base}"),
    }
}

fn keys_hint(target: &Host, route: &Route, err: &DiscoveryError) -> String {
    let document = format!("{}.well-known/pd", route.base_url);
    let text = err.to_string();
    if text.contains("the document is for") {
        format!(
            "{document} belongs to another domain: the node at {} must be configured with \
             domain = \"{target}\" (or the route or delegation points at the wrong node)",
            route.base_url
        )
    } else if text.contains("no valid server key") {
        format!(
            "{document} lists no valid server key: is the node's clock right, and does its \
             data directory hold server.key?"
        )
    } else if text.contains("status 404") || text.contains("content type") {
        format!(
            "{document} is not the node's well-known document: the reverse proxy must pass \
             /.well-known/pd to the node"
        )
    } else {
        format!("{document} must be the node's well-known document (JSON, with server_keys)")
    }
}

fn request_hint(
    origin: &Host,
    target: &Host,
    err: &ResolveError,
    answer: Option<&(u16, Option<Problem>)>,
) -> String {
    if matches!(err, ResolveError::RemoteRefused) {
        return format!(
            "{target}'s trust policy does not federate with {origin}: ask its operators to \
             allow {origin} (lookups in both directions need both sides to agree)"
        );
    }
    let detail = answer
        .and_then(|(_, p)| p.as_ref())
        .map(|p| p.detail.clone())
        .unwrap_or_default();
    match answer.map(|(status, _)| *status) {
        Some(401) if detail.contains("publishes no valid key") => format!(
            "{target} fetched {origin}'s server keys but not the key this node signs with: \
             restart the node after `pd-server server-key rotate`, and make sure \
             https://{origin}/.well-known/pd is served by this node (run `pd-server doctor \
             {origin}`)"
        ),
        Some(401) if detail.contains("dated outside") => format!(
            "the clocks of {origin} and {target} disagree by more than the accepted request \
             age: run NTP on both"
        ),
        Some(401) if detail.contains("addressed to") => format!(
            "the node answering for {target} serves another domain: fix the static route or \
             the delegation"
        ),
        Some(401) => format!(
            "{target} did not accept the signature: a reverse proxy in front of it must pass \
             the path and query unchanged, and keep the Authorization header"
        ),
        Some(502 | 504) if detail.contains("server keys") => format!(
            "{target} could not fetch {origin}'s server keys: https://{origin}/.well-known/pd \
             (or the delegation there) must be reachable from {target}; run `pd-server doctor \
             {origin}` here and check {origin}'s DNS, TLS and proxy"
        ),
        Some(500..=599) => format!("{target} failed to answer: check its logs"),
        Some(404) => format!(
            "{target} answered 404 without unknown-user: the reverse proxy must pass \
             /v1/federation/ to the node"
        ),
        _ => format!("{target} did not give a valid answer to a signed lookup: check its logs"),
    }
}
