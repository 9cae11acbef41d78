//! `GET /v1/whoami`: the caller's address as the node sees it, with the proxy rules of the
//! rate limiter.

use std::net::IpAddr;

use pd_proto::wire::WhoamiResponse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::TestNode;

/// Sends `GET /v1/whoami` on a fresh connection with `extra` header lines; returns the
/// client's local port, the answer's head and its body.
async fn whoami(node: &TestNode, extra: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(node.server.http_addr()).await.unwrap();
    let local_port = stream.local_addr().unwrap().port();
    let request =
        format!("GET /v1/whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (local_port, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn whoami_reports_the_peer_address_and_port_and_is_not_cached() {
    let node = TestNode::start().await;
    let (port, head, body) = whoami(&node, "").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    let answer: WhoamiResponse = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer,
        WhoamiResponse {
            ip: IpAddr::from([127, 0, 0, 1]),
            port: Some(port),
        }
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"ip": "127.0.0.1", "port": port})
    );
    // No session token needed, even with lookup_access = "users" (the default).
    let resp = node.get("/v1/whoami").await;
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
}

#[tokio::test]
async fn whoami_believes_forwarded_for_only_from_a_trusted_proxy() {
    let behind_proxy =
        TestNode::start_with(|c| c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]).await;
    let (_, head, body) = whoami(
        &behind_proxy,
        "X-Forwarded-For: 198.51.100.7, 127.0.0.2\r\n",
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    // The proxy does not pass the client's port on: the answer has none.
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"ip": "198.51.100.7"})
    );
    // A trusted peer that names no client is the client itself.
    let (port, _, body) = whoami(&behind_proxy, "").await;
    let answer: WhoamiResponse = serde_json::from_str(&body).unwrap();
    assert_eq!(answer.port, Some(port));

    let elsewhere =
        TestNode::start_with(|c| c.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()]).await;
    let (port, _, body) = whoami(&elsewhere, "X-Forwarded-For: 198.51.100.7\r\n").await;
    let answer: WhoamiResponse = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer,
        WhoamiResponse {
            ip: IpAddr::from([127, 0, 0, 1]),
            port: Some(port),
        }
    );
}
