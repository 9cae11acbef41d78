//! `pd-server doctor`: against real nodes on 127.0.0.1 (plain HTTP and HTTPS with a
//! private CA), misbehaving wiremock nodes, an unreachable node and a refusing policy, and
//! the binary's exit status and JSON.

use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant};

use pd_federation::config::StaticPeer;
use pd_federation::trust::{Mode, TrustPolicy};
use pd_proto::Host;
use pd_server::config::{Config, TlsConfig};
use pd_server::doctor::{Report, Status, diagnose};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::federation::network;
use crate::util::TestNode;

fn host(s: &str) -> Host {
    Host::parse(s).unwrap()
}

fn policy_of(config: &Config) -> TrustPolicy {
    TrustPolicy::new(config.domain.clone(), config.resolved_trust().unwrap()).unwrap()
}

async fn doctor(node: &TestNode, target: &str) -> Report {
    let config = node.server.state().config.as_ref().clone();
    diagnose(&config, policy_of(&config), &host(target)).await
}

fn status_of(report: &Report, step: &str) -> Status {
    report
        .steps
        .iter()
        .find(|s| s.step == step)
        .unwrap_or_else(|| panic!("no step {step}: {}", report.to_text()))
        .status
}

fn step<'a>(report: &'a Report, step: &str) -> &'a pd_server::doctor::Step {
    report.steps.iter().find(|s| s.step == step).unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_static_peer_passes_every_step() {
    let nodes = network(&["a.test", "b.test"], |_, _| {}).await;
    let report = doctor(&nodes[0], "b.test").await;
    assert!(report.ok, "{}", report.to_text());
    let names: Vec<&str> = report.steps.iter().map(|s| s.step).collect();
    assert_eq!(
        names,
        [
            "config",
            "trust",
            "discovery",
            "connection",
            "server-keys",
            "signed-request"
        ]
    );
    assert!(report.steps.iter().all(|s| s.status == Status::Pass));
    assert!(step(&report, "discovery").detail.contains("static route"));
    assert!(
        step(&report, "signed-request")
            .detail
            .contains("unknown-user"),
        "{}",
        report.to_text()
    );
    assert_eq!(report.origin, "a.test");
    // The JSON form carries the same steps.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["steps"][5]["step"], "signed-request");
    assert_eq!(json["steps"][5]["status"], "pass");
}

#[tokio::test]
async fn a_peer_that_refuses_this_node_fails_the_signed_request_with_a_hint() {
    let nodes = network(&["a.test", "b.test"], |domain, config| {
        if domain == "b.test" {
            config.trust.mode = Some(Mode::Allowlist);
        }
    })
    .await;
    let report = doctor(&nodes[0], "b.test").await;
    assert!(!report.ok);
    assert_eq!(status_of(&report, "server-keys"), Status::Pass);
    let signed = step(&report, "signed-request");
    assert_eq!(signed.status, Status::Fail, "{}", report.to_text());
    assert!(
        signed.hint.as_deref().unwrap().contains("allow a.test"),
        "{}",
        report.to_text()
    );
}

#[tokio::test]
async fn a_domain_this_node_refuses_is_not_contacted() {
    let nodes = network(&["a.test", "b.test"], |domain, config| {
        if domain == "a.test" {
            config.trust.mode = Some(Mode::Allowlist);
        }
    })
    .await;
    let before = crate::federation::requests_to(&nodes[1], "/.well-known/pd").await;
    let report = doctor(&nodes[0], "b.test").await;
    assert_eq!(status_of(&report, "trust"), Status::Fail);
    for later in ["discovery", "connection", "server-keys", "signed-request"] {
        assert_eq!(status_of(&report, later), Status::Skip);
    }
    assert!(
        step(&report, "trust")
            .hint
            .as_deref()
            .unwrap()
            .contains("[trust]")
    );
    let after = crate::federation::requests_to(&nodes[1], "/.well-known/pd").await;
    assert_eq!(before, after);
}

/// A private CA (a self-signed certificate for `localhost`) that `b.test` serves HTTPS
/// with; `a.test` reaches it through an `https` static route.
async fn tls_pair(trust_the_ca: bool) -> (TestNode, TestNode, tempfile::TempDir) {
    let certs = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = certs.path().join("cert.pem");
    let key = certs.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let (port_a, port_b) = (free_port(), free_port());
    let start = |domain: &str, port: u16, other: &str, url: String| {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_tests(dir.path());
        config.domain = host(domain);
        config.listen = SocketAddr::from(([127, 0, 0, 1], port));
        let peer: StaticPeer = format!("{other}={url}").parse().unwrap();
        config.federation.peers.push(peer);
        (config, dir)
    };
    let (mut config_b, dir_b) = start(
        "b.test",
        port_b,
        "a.test",
        format!("http://127.0.0.1:{port_a}"),
    );
    config_b.tls = Some(TlsConfig {
        cert: cert.clone(),
        key,
    });
    let (mut config_a, dir_a) = start(
        "a.test",
        port_a,
        "b.test",
        format!("https://localhost:{port_b}"),
    );
    if trust_the_ca {
        config_a.federation.ca_file = Some(cert);
    }
    let b = TestNode::bind(config_b, dir_b).await;
    let a = TestNode::bind(config_a, dir_a).await;
    // The CA file is read again by doctor, so it outlives the nodes' start.
    (a, b, certs)
}

#[tokio::test]
async fn https_with_a_private_ca_passes_when_the_ca_is_configured() {
    let (a, _b, _certs) = tls_pair(true).await;
    let report = doctor(&a, "b.test").await;
    assert!(report.ok, "{}", report.to_text());
    assert!(
        step(&report, "connection")
            .detail
            .contains("TLS certificate accepted"),
        "{}",
        report.to_text()
    );
}

#[tokio::test]
async fn https_with_an_unknown_ca_fails_the_connection_with_a_hint() {
    let (a, _b, _certs) = tls_pair(false).await;
    let report = doctor(&a, "b.test").await;
    let connection = step(&report, "connection");
    assert_eq!(connection.status, Status::Fail, "{}", report.to_text());
    assert!(
        connection
            .hint
            .as_deref()
            .unwrap()
            .contains("federation.ca_file"),
        "{}",
        report.to_text()
    );
    assert_eq!(status_of(&report, "server-keys"), Status::Skip);
}

/// A node for `a.test` whose only static route is `domain` at `url`.
async fn node_with_peer(domain: &str, url: &str) -> TestNode {
    TestNode::start_with(|config| {
        config.domain = host("a.test");
        config
            .federation
            .peers
            .push(format!("{domain}={url}").parse().unwrap());
    })
    .await
}

#[tokio::test]
async fn a_well_known_document_for_another_domain_fails_the_server_keys() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/healthz"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"status": "ok"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/.well-known/pd"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "domain": "other.test",
            "api_version": "v1",
            "server_keys": [],
            "lookup_access": "users",
            "registration": "open"
        })))
        .mount(&server)
        .await;
    let node = node_with_peer("bad.test", &server.uri()).await;
    let report = doctor(&node, "bad.test").await;
    assert!(!report.ok);
    assert_eq!(status_of(&report, "connection"), Status::Pass);
    let keys = step(&report, "server-keys");
    assert_eq!(keys.status, Status::Fail, "{}", report.to_text());
    assert!(keys.detail.contains("other.test"), "{}", report.to_text());
    assert!(
        keys.hint
            .as_deref()
            .unwrap()
            .contains("domain = \"bad.test\""),
        "{}",
        report.to_text()
    );
    // wiremock answers the signed lookup with a bare 404: not an authenticated answer.
    assert_eq!(status_of(&report, "signed-request"), Status::Fail);
}

#[tokio::test]
async fn a_node_that_does_not_know_this_nodes_key_gets_a_rotation_hint() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/healthz"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/.well-known/pd"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/v1/federation/lookup/"))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header("content-type", "application/problem+json")
                .set_body_string(
                    serde_json::json!({
                        "type": "urn:pd:problem:invalid-node-signature",
                        "title": "Invalid node signature",
                        "status": 401,
                        "detail": "a.test publishes no valid key ed25519:abcdefgh"
                    })
                    .to_string(),
                ),
        )
        .mount(&server)
        .await;
    let node = node_with_peer("bad.test", &server.uri()).await;
    let report = doctor(&node, "bad.test").await;
    let keys = step(&report, "server-keys");
    assert_eq!(keys.status, Status::Fail, "{}", report.to_text());
    assert!(
        keys.hint.as_deref().unwrap().contains("/.well-known/pd"),
        "{}",
        report.to_text()
    );
    let signed = step(&report, "signed-request");
    assert_eq!(signed.status, Status::Fail, "{}", report.to_text());
    assert!(signed.detail.contains("401"), "{}", report.to_text());
    assert!(
        signed
            .hint
            .as_deref()
            .unwrap()
            .contains("server-key rotate"),
        "{}",
        report.to_text()
    );
}

#[tokio::test]
async fn an_unreachable_node_fails_fast_at_the_connection() {
    let port = free_port();
    let node = node_with_peer("gone.test", &format!("http://127.0.0.1:{port}")).await;
    let started = Instant::now();
    let report = doctor(&node, "gone.test").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status_of(&report, "discovery"), Status::Pass);
    let connection = step(&report, "connection");
    assert_eq!(connection.status, Status::Fail, "{}", report.to_text());
    assert!(
        connection
            .hint
            .as_deref()
            .unwrap()
            .contains("nothing listens"),
        "{}",
        report.to_text()
    );
    assert_eq!(status_of(&report, "signed-request"), Status::Skip);
    assert!(report.to_text().contains("FAIL  connection"));
}

#[test]
fn the_binary_exits_non_zero_and_prints_json_when_a_step_fails() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let file = dir.path().join("pd.toml");
    std::fs::write(
        &file,
        format!(
            "domain = \"a.test\"\ndata_dir = \"{}\"\n[[federation.peers]]\ndomain = \"gone.test\"\nurl = \"http://127.0.0.1:{port}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let pd_server = || Command::new(env!("CARGO_BIN_EXE_pd-server"));
    // Without a server key there is nothing to sign with.
    let out = pd_server()
        .args(["doctor", "gone.test", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("FAIL  config"), "{text}");
    let rotated = pd_server()
        .args(["server-key", "rotate", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(rotated.status.success());
    let out = pd_server()
        .args(["doctor", "gone.test", "--json", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["domain"], "gone.test");
    assert_eq!(report["steps"][0]["status"], "pass");
    assert_eq!(report["steps"][3]["step"], "connection");
    assert_eq!(report["steps"][3]["status"], "fail");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("checks failed"), "{stderr}");
}
