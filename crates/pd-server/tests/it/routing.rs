//! Requests the router refuses: unknown routes, wrong methods, bad bodies, rate limits.

use pd_proto::ProblemType;
use pd_server::config::RateLimit;
use reqwest::StatusCode;

use crate::util::{TestNode, User, assert_problem};

#[tokio::test]
async fn unknown_routes_and_wrong_methods_get_problems() {
    let node = TestNode::start().await;
    let resp = node.get("/v2/lookup/alice@localhost").await;
    assert_problem(resp, 404, ProblemType::NotFound).await;
    let resp = node.get("/").await;
    assert_problem(resp, 404, ProblemType::NotFound).await;
    let resp = node.get("/v1/accounts").await;
    assert_problem(resp, 405, ProblemType::MethodNotAllowed).await;
    let resp = node
        .client
        .delete(format!("{}/v1/lookup/alice@localhost", node.url))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 405, ProblemType::MethodNotAllowed).await;
    let resp = node.post("/healthz", &serde_json::json!({})).await;
    assert_problem(resp, 405, ProblemType::MethodNotAllowed).await;
}

#[tokio::test]
async fn bad_json_is_an_invalid_request() {
    let node = TestNode::start().await;
    for body in ["", "{", "null", "{\"registration\": 5}", "[]"] {
        let resp = node
            .client
            .post(format!("{}/v1/accounts", node.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 400, ProblemType::InvalidRequest).await;
    }
    // Unknown fields are refused too.
    let mut req = serde_json::to_value(User::new("bob").registration()).unwrap();
    req["extra"] = serde_json::json!(1);
    let resp = node.post("/v1/accounts", &req).await;
    assert_problem(resp, 400, ProblemType::InvalidRequest).await;
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let node = TestNode::start().await;
    let resp = node.get("/healthz").await;
    assert!(resp.headers().contains_key("x-request-id"));
    let resp = node
        .client
        .get(format!("{}/nowhere", node.url))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers().get("x-request-id").unwrap(), "abc-123");
}

#[tokio::test]
async fn writes_are_rate_limited_per_client_but_reads_are_not() {
    let node = TestNode::start_with(|c| {
        c.rate_limit = RateLimit {
            writes_per_second: 1,
            burst: 2,
            ..c.rate_limit.clone()
        }
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        let resp = node
            .post("/v1/accounts", &User::new(&format!("u{i}")).registration())
            .await;
        statuses.push(resp.status());
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = resp
                .headers()
                .get("retry-after")
                .unwrap()
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(retry >= 1);
            assert_problem(resp, 429, ProblemType::RateLimited).await;
        }
    }
    assert_eq!(&statuses[..2], &[StatusCode::CREATED, StatusCode::CREATED]);
    assert!(
        statuses[2..].contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    for _ in 0..10 {
        assert_eq!(node.get("/healthz").await.status(), StatusCode::OK);
    }
}

#[test]
fn forwarded_for_is_believed_only_from_trusted_proxies() {
    use axum::http::HeaderMap;
    use pd_server::http::ClientIpKey;
    let key = ClientIpKey::new(vec!["10.0.0.0/8".parse().unwrap()]);
    let mut headers = HeaderMap::new();
    headers.insert("x-forwarded-for", "198.51.100.7, 10.0.0.3".parse().unwrap());
    let proxy = "10.0.0.2".parse().unwrap();
    let stranger = "203.0.113.9".parse().unwrap();
    assert_eq!(
        key.client_ip(proxy, &headers),
        "198.51.100.7".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(key.client_ip(stranger, &headers), stranger);
    assert_eq!(key.client_ip(proxy, &HeaderMap::new()), proxy);
}
