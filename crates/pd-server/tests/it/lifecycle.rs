//! Starting, stopping and restarting a node; TLS.

use std::time::Duration;

use pd_proto::wire::WellKnown;
use pd_server::Server;
use pd_server::config::{Config, TlsConfig};
use reqwest::StatusCode;

use crate::util::{TestNode, User};

#[tokio::test]
async fn data_survives_a_restart() {
    let node = TestNode::start().await;
    let alice = User::new("alice");
    alice.register(&node).await;
    let signed = alice.publish(&node, 3600).await;
    let key_before: WellKnown = node.get("/.well-known/pd").await.json().await.unwrap();
    let TestNode { server, dir, .. } = node;
    server.shutdown().await.unwrap();

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("server.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let node = TestNode::bind(Config::for_tests(dir.path()), dir).await;
    let found = node.lookup_json(&alice, "alice@localhost").await;
    assert_eq!(found["public_key"], alice.key.public().to_string());
    assert_eq!(found["presence"], serde_json::to_value(&signed).unwrap());
    let key_after: WellKnown = node.get("/.well-known/pd").await.json().await.unwrap();
    assert_eq!(
        key_before.server_keys[0].public_key,
        key_after.server_keys[0].public_key
    );
    // Replay protection survives too.
    let resp = node.put(&alice.path("/presence"), &signed).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_frees_the_port() {
    let node = TestNode::start().await;
    let addr = node.server.http_addr();
    let client = node.client.clone();
    let url = format!("{}/healthz", node.url);
    let in_flight = tokio::spawn(async move { client.get(url).send().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    node.server.shutdown().await.unwrap();
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // The port is free again.
    std::net::TcpListener::bind(addr).unwrap();
}

#[tokio::test]
async fn a_bad_config_is_refused_at_bind() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path());
    config.rate_limit.burst = 0;
    let err = Server::bind(config).await.unwrap_err();
    assert!(err.to_string().contains("rate_limit.burst"), "{err}");
}

#[tokio::test]
async fn https_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = certified.cert.pem();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let mut config = Config::for_tests(&dir.path().join("data"));
    config.tls = Some(TlsConfig { cert, key });
    let server = Server::bind(config).await.unwrap();
    assert!(server.base_url().starts_with("https://"));
    let addr = server.http_addr();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .resolve("localhost", addr)
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://localhost:{}/healthz", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // A client that does not trust the certificate is refused.
    let untrusting = reqwest::Client::builder()
        .resolve("localhost", addr)
        .build()
        .unwrap();
    assert!(
        untrusting
            .get(format!("https://localhost:{}/healthz", addr.port()))
            .send()
            .await
            .is_err()
    );
    // Plain HTTP on the TLS port does not get an answer either.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != StatusCode::OK).unwrap_or(true));
    server.shutdown().await.unwrap();
}
