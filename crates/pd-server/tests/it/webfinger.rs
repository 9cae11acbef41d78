//! WebFinger: a JRD with the key and a lookup link for this node's users, 400 for a
//! missing or malformed resource, 404 for unknown users and other domains, open CORS.

use pd_proto::ProblemType;
use reqwest::StatusCode;
use serde_json::Value;

use crate::util::{TestNode, User, assert_problem};

#[tokio::test]
async fn webfinger_answers_for_local_users_with_the_key() {
    let node = TestNode::start().await;
    let alice = User::new("alice");
    alice.register(&node).await;
    let resp = node
        .client
        .get(format!(
            "{}/.well-known/webfinger?resource=acct%3Aalice%40localhost",
            node.url
        ))
        .header("origin", "https://tools.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/jrd+json"
    );
    assert_eq!(
        resp.headers().get("access-control-allow-origin").unwrap(),
        "*"
    );
    let jrd: Value = resp.json().await.unwrap();
    assert_eq!(jrd["subject"], "acct:alice@localhost");
    assert_eq!(
        jrd["properties"]["https://pd.example/ns/public-key"],
        serde_json::to_value(alice.key.public()).unwrap()
    );
    let link = &jrd["links"][0];
    assert_eq!(link["rel"], "https://pd.example/ns/lookup");
    assert_eq!(
        link["href"], "https://localhost/v1/lookup/alice%40localhost",
        "{jrd}"
    );
}

// Issue 14: a delegated domain's API is at its `base_url`, and the lookup link points
// there, not at `https://<domain>` (where only the delegation document is served).
#[tokio::test]
async fn webfinger_links_a_delegated_domain_to_its_base_url() {
    let node = TestNode::start_with(|config| {
        config.base_url = Some("https://pd.example.com:8443/api/".to_owned());
    })
    .await;
    let alice = User::new("alice");
    alice.register(&node).await;
    let resp = node
        .get("/.well-known/webfinger?resource=acct:alice@localhost")
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let jrd: Value = resp.json().await.unwrap();
    assert_eq!(
        jrd["links"][0]["href"], "https://pd.example.com:8443/api/v1/lookup/alice%40localhost",
        "{jrd}"
    );
}

#[tokio::test]
async fn webfinger_refuses_bad_and_unknown_resources() {
    let node = TestNode::start().await;
    for query in [
        "",
        "?resource=",
        "?resource=alice@localhost",
        "?resource=acct:not%20an%20address",
        "?resource=acct:a@localhost&resource=acct:b@localhost",
    ] {
        let resp = node.get(&format!("/.well-known/webfinger{query}")).await;
        assert_problem(resp, 400, ProblemType::InvalidRequest).await;
    }
    for resource in ["acct:nobody@localhost", "acct:bob@other.example"] {
        let resp = node
            .get(&format!("/.well-known/webfinger?resource={resource}"))
            .await;
        assert_problem(resp, 404, ProblemType::UnknownUser).await;
    }
}

#[tokio::test]
async fn webfinger_answers_a_cors_preflight() {
    let node = TestNode::start().await;
    let resp = node
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!(
                "{}/.well-known/webfinger?resource=acct%3Aalice%40localhost",
                node.url
            ),
        )
        .header("origin", "https://tools.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(
        resp.headers().get("access-control-allow-origin").unwrap(),
        "*"
    );
    let methods = resp
        .headers()
        .get("access-control-allow-methods")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(methods.contains("GET"), "{methods}");
}
