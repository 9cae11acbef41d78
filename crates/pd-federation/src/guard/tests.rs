//! Tests of the guarded client: the address filter for every forbidden form, the scheme
//! and IP-literal rules, and each misbehaving-server fault through the static-peer route.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn forbidden_ipv4_ranges() {
    for s in [
        "0.0.0.0",
        "0.1.2.3",
        "10.0.0.1",
        "10.255.255.255",
        "100.64.0.1",
        "100.127.255.254",
        "127.0.0.1",
        "127.1.2.3",
        "169.254.169.254",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.8",
        "192.0.2.1",
        "192.88.99.1",
        "192.168.1.1",
        "198.18.0.1",
        "198.19.255.255",
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
    ] {
        assert!(is_forbidden_ip(ip(s)), "{s} must be forbidden");
    }
}

#[test]
fn public_ipv4_addresses_are_allowed() {
    for s in [
        "1.1.1.1",
        "8.8.8.8",
        "100.63.255.255",
        "100.128.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "192.0.3.1",
        "198.17.255.255",
        "198.20.0.0",
        "93.184.216.34",
        "223.255.255.255",
    ] {
        assert!(!is_forbidden_ip(ip(s)), "{s} must be allowed");
    }
}

#[test]
fn forbidden_ipv6_ranges() {
    for s in [
        "::",
        "::1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "febf::1",
        "fec0::1",
        "ff02::1",
        "ff0e::1",
        "2001:db8::1",
        "2001:2::1",
        "2001:10::1",
        "3fff::1",
        "100::1",
        "64:ff9b:1::1",
        "::2",
        "1::1",
    ] {
        assert!(is_forbidden_ip(ip(s)), "{s} must be forbidden");
    }
}

#[test]
fn embedded_ipv4_forms_are_unwrapped_and_rechecked() {
    for s in [
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:0.0.0.0",
        "::127.0.0.1",
        "::ffff:0:127.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::192.168.0.1",
        "2002:7f00:1::1",
        "2002:c0a8:0101::1",
        "2002:a9fe:a9fe::",
        // Teredo with a private server, then with an inverted loopback client.
        "2001:0:a00:1::1",
        "2001:0:808:808:0:0:80ff:fffe",
    ] {
        assert!(is_forbidden_ip(ip(s)), "{s} must be forbidden");
    }
    for s in [
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
        // Teredo: server 8.8.8.8, client 1.1.1.1 (inverted: fefe:fefe).
        "2001:0:808:808::fefe:fefe",
    ] {
        assert!(!is_forbidden_ip(ip(s)), "{s} must be allowed");
    }
}

#[test]
fn public_ipv6_addresses_are_allowed() {
    for s in [
        "2606:4700:4700::1111",
        "2a00:1450:4001:80b::200e",
        "2400:cb00::1",
    ] {
        assert!(!is_forbidden_ip(ip(s)), "{s} must be allowed");
    }
}

#[test]
fn resolved_addresses_are_filtered_one_by_one() {
    let sock = |s: &str| SocketAddr::new(ip(s), 0);
    // A name resolving to a public and a private address keeps only the public one, so a
    // rebinding answer can never be connected to.
    let kept = filter_resolved(
        "mixed.example",
        vec![
            sock("10.0.0.1"),
            sock("93.184.216.34"),
            sock("::ffff:127.0.0.1"),
        ],
    )
    .unwrap();
    assert_eq!(kept, vec![sock("93.184.216.34")]);
    let err = filter_resolved(
        "rebind.example",
        vec![sock("127.0.0.1"), sock("169.254.169.254"), sock("::")],
    )
    .unwrap_err();
    assert!(err.to_string().contains("rebind.example"));
    assert!(filter_resolved("empty.example", Vec::new()).is_err());
}

fn config_with_peer(url: &str) -> FederationConfig {
    FederationConfig {
        peers: vec![format!("peer.example={url}").parse().unwrap()],
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(2),
        max_response_bytes: 1024,
        ..FederationConfig::default()
    }
}

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

fn peer_client(server: &MockServer) -> (GuardedClient, Url) {
    let client = GuardedClient::new(&config_with_peer(&server.uri())).unwrap();
    (client, url(&server.uri()))
}

#[tokio::test]
async fn static_peer_json_round_trip() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/ok"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"a": 1})))
        .mount(&server)
        .await;
    let (client, base) = peer_client(&server);
    let value: serde_json::Value = client
        .get_json(&base.join("/ok").unwrap(), HeaderMap::new())
        .await
        .unwrap();
    assert_eq!(value["a"], 1);
}

#[tokio::test]
async fn loopback_name_is_refused_before_connecting() {
    let server = MockServer::start().await;
    let port = server.address().port();
    let client = GuardedClient::new(&FederationConfig::default()).unwrap();
    let err = client
        .get(
            &url(&format!("https://localhost:{port}/x")),
            HeaderMap::new(),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, OutboundError::Forbidden { .. }), "{err:?}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn ip_literals_of_every_forbidden_form_are_refused() {
    let client = GuardedClient::new(&FederationConfig::default()).unwrap();
    for target in [
        "https://127.0.0.1/",
        "https://10.1.2.3/",
        "https://169.254.169.254/latest/meta-data",
        "https://0.0.0.0/",
        "https://[::]/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://[64:ff9b::a9fe:a9fe]/",
        "https://[2002:7f00:1::1]/",
        "https://[2001:0:a00:1::1]/",
        "https://[fe80::1]/",
        "https://[fd00::1]/",
        "https://2130706433/",
        "https://0x7f.1/",
        // Even a public IP literal is refused: nodes are reached by name.
        "https://8.8.8.8/",
    ] {
        let err = client
            .get(&url(target), HeaderMap::new(), None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, OutboundError::Forbidden { .. }),
            "{target}: {err:?}"
        );
    }
}

#[tokio::test]
async fn plain_http_is_refused_unless_static_peer() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({})))
        .mount(&server)
        .await;
    let strict = GuardedClient::new(&FederationConfig::default()).unwrap();
    for target in [
        "http://example.com/",
        "ftp://example.com/",
        "https://user:pw@example.com/",
    ] {
        let err = strict
            .get(&url(target), HeaderMap::new(), None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, OutboundError::Forbidden { .. }),
            "{target}: {err:?}"
        );
    }
    let err = strict
        .get(&url(&server.uri()), HeaderMap::new(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, OutboundError::Forbidden { .. }), "{err:?}");
    let (client, base) = peer_client(&server);
    assert!(client.is_static_peer(&base));
    client.get_bytes(&base, HeaderMap::new()).await.unwrap();
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn slow_headers_time_out() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let (client, base) = peer_client(&server);
    let started = Instant::now();
    let err = client.get_bytes(&base, HeaderMap::new()).await.unwrap_err();
    assert!(matches!(err, OutboundError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// A raw HTTP server that answers every connection with `head`, then writes `body` in
/// `chunk`-sized pieces separated by `pause`.
async fn raw_server(
    head: String,
    body: Vec<u8>,
    chunk: usize,
    pause: Duration,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 2048];
            let _ = socket.read(&mut buf).await;
            if socket.write_all(head.as_bytes()).await.is_err() {
                continue;
            }
            for piece in body.chunks(chunk.max(1)) {
                if socket.write_all(piece).await.is_err() {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    });
    (addr, task)
}

#[tokio::test]
async fn trickling_body_hits_the_total_deadline() {
    // 1 byte every 100 ms: each read is quick, but the whole body takes 10 s.
    let (addr, task) = raw_server(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n".into(),
        vec![b' '; 100],
        1,
        Duration::from_millis(100),
    )
    .await;
    let base = url(&format!("http://{addr}/"));
    let client = GuardedClient::new(&config_with_peer(base.as_str())).unwrap();
    let started = Instant::now();
    let err = client.get_bytes(&base, HeaderMap::new()).await.unwrap_err();
    task.abort();
    assert!(matches!(err, OutboundError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn stalled_body_hits_the_read_deadline() {
    let (addr, task) = raw_server(
        "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n".into(),
        b"{".to_vec(),
        1,
        Duration::ZERO,
    )
    .await;
    let base = url(&format!("http://{addr}/"));
    let mut config = config_with_peer(base.as_str());
    config.request_timeout = Duration::from_secs(20);
    let client = GuardedClient::new(&config).unwrap();
    let started = Instant::now();
    let err = client.get_bytes(&base, HeaderMap::new()).await.unwrap_err();
    task.abort();
    assert!(matches!(err, OutboundError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn huge_declared_body_is_refused() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b'a'; 100_000]))
        .mount(&server)
        .await;
    let (client, base) = peer_client(&server);
    let err = client.get_bytes(&base, HeaderMap::new()).await.unwrap_err();
    assert!(
        matches!(err, OutboundError::TooLarge { limit: 1024, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn huge_undeclared_body_is_cut_while_streaming() {
    // Chunked encoding: no Content-Length to pre-check, so the bytes are counted.
    let mut body = Vec::new();
    for _ in 0..64 {
        body.extend_from_slice(b"100\r\n");
        body.extend_from_slice(&[b'a'; 256]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let (addr, task) = raw_server(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".into(),
        body,
        261,
        Duration::from_millis(1),
    )
    .await;
    let base = url(&format!("http://{addr}/"));
    let client = GuardedClient::new(&config_with_peer(base.as_str())).unwrap();
    let err = client.get_bytes(&base, HeaderMap::new()).await.unwrap_err();
    task.abort();
    assert!(matches!(err, OutboundError::TooLarge { .. }), "{err:?}");
}

#[tokio::test]
async fn lying_content_length_is_not_trusted() {
    // Declares 10 bytes but sends far more: only the declared bytes are read.
    let (addr, task) = raw_server(
        "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n".into(),
        vec![b'a'; 50_000],
        50_000,
        Duration::ZERO,
    )
    .await;
    let base = url(&format!("http://{addr}/"));
    let client = GuardedClient::new(&config_with_peer(base.as_str())).unwrap();
    let body = client.get_bytes(&base, HeaderMap::new()).await.unwrap();
    task.abort();
    assert_eq!(body.len(), 10);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/start"))
        .respond_with(
            ResponseTemplate::new(302).insert_header("location", "http://169.254.169.254/latest"),
        )
        .mount(&server)
        .await;
    let (client, base) = peer_client(&server);
    let err = client
        .get_bytes(&base.join("/start").unwrap(), HeaderMap::new())
        .await
        .unwrap_err();
    match err {
        OutboundError::Redirect {
            status, location, ..
        } => {
            assert_eq!(status, 302);
            assert_eq!(location.as_deref(), Some("http://169.254.169.254/latest"));
        }
        other => panic!("expected a redirect error, got {other:?}"),
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn server_errors_carry_status_and_body() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).set_body_string("overloaded"))
        .mount(&server)
        .await;
    let (client, base) = peer_client(&server);
    let err = client.get_bytes(&base, HeaderMap::new()).await.unwrap_err();
    assert_eq!(
        err,
        OutboundError::Status {
            host: format!("127.0.0.1:{}", server.address().port()),
            status: 503,
            body: "overloaded".into()
        }
    );
}

#[tokio::test]
async fn garbage_json_and_wrong_content_type_are_decode_errors() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/garbage"))
        .respond_with(ResponseTemplate::new(200).set_body_raw("{not json", "application/json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/html"))
        .respond_with(ResponseTemplate::new(200).set_body_raw("{}", "text/html"))
        .mount(&server)
        .await;
    let (client, base) = peer_client(&server);
    for p in ["/garbage", "/html"] {
        let err = client
            .get_json::<serde_json::Value>(&base.join(p).unwrap(), HeaderMap::new())
            .await
            .unwrap_err();
        assert!(matches!(err, OutboundError::Decode { .. }), "{p}: {err:?}");
    }
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let base = url(&format!("http://{addr}/"));
    let client = GuardedClient::new(&config_with_peer(base.as_str())).unwrap();
    let err = client.get_bytes(&base, HeaderMap::new()).await.unwrap_err();
    assert!(matches!(err, OutboundError::Connect { .. }), "{err:?}");
    assert!(err.is_transport());
}

#[tokio::test]
async fn concurrency_is_capped_per_destination() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(300)))
        .mount(&server)
        .await;
    let mut config = config_with_peer(&server.uri());
    config.per_peer_concurrency = 2;
    config.read_timeout = Duration::from_secs(5);
    config.request_timeout = Duration::from_secs(10);
    let client = GuardedClient::new(&config).unwrap();
    let base = url(&server.uri());
    let started = Instant::now();
    let results =
        futures::future::join_all((0..4).map(|_| client.get_bytes(&base, HeaderMap::new()))).await;
    assert!(results.iter().all(Result::is_ok));
    // Four requests, two at a time, 300 ms each: at least two rounds.
    assert!(started.elapsed() >= Duration::from_millis(600));
}

#[tokio::test]
async fn trust_lists_are_fetched_through_the_guard() {
    use crate::trust::ListFetcher;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/list.txt"))
        .respond_with(ResponseTemplate::new(200).set_body_string("evil.example\n"))
        .mount(&server)
        .await;
    let (client, base) = peer_client(&server);
    let body = client
        .fetch(&base.join("/list.txt").unwrap())
        .await
        .unwrap();
    assert_eq!(body, b"evil.example\n");
    assert!(client.fetch(&base.join("/missing").unwrap()).await.is_err());
    let strict = GuardedClient::new(&FederationConfig::default()).unwrap();
    assert!(
        strict
            .fetch(&base.join("/list.txt").unwrap())
            .await
            .is_err()
    );
}

#[test]
fn a_ca_file_that_is_missing_or_holds_no_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let config = FederationConfig {
        ca_file: Some(missing),
        ..FederationConfig::default()
    };
    let err = GuardedClient::new(&config).unwrap_err().to_string();
    assert!(err.contains("missing.pem"), "{err}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let config = FederationConfig {
        ca_file: Some(empty),
        ..FederationConfig::default()
    };
    let err = GuardedClient::new(&config).unwrap_err().to_string();
    assert!(err.contains("no certificate"), "{err}");
}
