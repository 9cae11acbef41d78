//! The in-process tier: `http::router(state)` driven with `oneshot` (no socket between
//! the test and the router), and the node's `Directory` against a fake remote node
//! (wiremock, reached through a static route): the trust check before any traffic, the
//! verification of the remote answer, the cache, and the problems of the edge.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use pd_federation::config::StaticPeer;
use pd_federation::trust::{DomainPattern, Entry};
use pd_proto::wire::{LookupResponse, Source};
use pd_proto::{Address, LookupMode, Problem, ProblemType};
use pd_server::config::LookupAccess;
use pd_server::directory::{Answer, LookupError};
use pd_server::http;
use serde_json::Value;
use tower::ServiceExt as _;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::util::{TestNode, User};

/// A node of `localhost` with public lookups and static routes to `fake` for `b.test` and
/// `evil.test`, the latter denied by its trust policy.
async fn node_routing_to(fake: &MockServer) -> TestNode {
    TestNode::start_with(|config| {
        config.lookup_access = LookupAccess::Public;
        for domain in ["b.test", "evil.test"] {
            let peer: StaticPeer = format!("{domain}={}", fake.uri()).parse().unwrap();
            config.federation.peers.push(peer);
        }
        config.trust.deny = vec![Entry::new(DomainPattern::parse("evil.test").unwrap())];
    })
    .await
}

/// One request through the node's router, in process; returns status and JSON body.
async fn oneshot(node: &TestNode, uri: &str) -> (StatusCode, Value) {
    let router = http::router(node.server.state().clone());
    // What serving with connect info puts on every request (axum's `MockConnectInfo` only
    // feeds the `ConnectInfo` extractor, not the rate limiter's key, which reads the
    // extension itself).
    let mut request = Request::get(uri).body(Body::empty()).unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

fn problem_type(body: &Value) -> Option<ProblemType> {
    serde_json::from_value::<Problem>(body.clone())
        .unwrap()
        .problem_type()
}

/// A remote node's signed answer about `user`, with a presence record.
fn answer_about(user: &User, about: &Address) -> Value {
    let presence = user.signed_presence(600);
    serde_json::to_value(LookupResponse {
        address: about.clone(),
        public_key: user.key.public(),
        presence: Some(presence),
        rotations: Vec::new(),
        source: Source::Local,
        ttl: 600,
    })
    .unwrap()
}

async fn fake_answering(user: &User, about: &Address) -> MockServer {
    let fake = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/v1/federation/lookup/{}",
            user.address.to_string().replace('@', "%40")
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer_about(user, about)))
        .mount(&fake)
        .await;
    fake
}

#[tokio::test]
async fn a_refused_domain_is_403_in_every_mode_and_the_remote_sees_nothing() {
    let fake = MockServer::start().await;
    let node = node_routing_to(&fake).await;
    for query in ["", "?mode=cache-only", "?mode=refresh"] {
        let (status, body) = oneshot(&node, &format!("/v1/lookup/mallory@evil.test{query}")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(problem_type(&body), Some(ProblemType::RefusedByPolicy));
    }
    let address = Address::parse("mallory@evil.test").unwrap();
    let refused = node
        .server
        .state()
        .directory
        .lookup(&address, LookupMode::Refresh)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, LookupError::Refused { .. }),
        "{refused:?}"
    );
    assert!(fake.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_remote_answer_is_verified_then_served_from_the_cache() {
    let bob = User::at("bob", "b.test");
    let fake = fake_answering(&bob, &bob.address).await;
    let node = node_routing_to(&fake).await;
    let uri = format!("/v1/lookup/{}", bob.address);

    let (status, first) = oneshot(&node, &uri).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["source"], "remote");
    assert_eq!(first["public_key"], bob.key.public().to_string());
    let (status, second) = oneshot(&node, &uri).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["source"], "cache");
    assert_eq!(second["presence"], first["presence"]);
    assert_eq!(fake.received_requests().await.unwrap().len(), 1);

    // The directory gives the same answer, and `mode=refresh` asks the remote again.
    let answer = node
        .server
        .state()
        .directory
        .lookup(&bob.address, LookupMode::Refresh)
        .await
        .unwrap();
    let Answer::Remote(resolved) = answer else {
        panic!("a remote user answered as local: {answer:?}");
    };
    assert_eq!(resolved.response.source, Source::Remote);
    assert_eq!(fake.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_remote_answer_about_another_address_is_502_and_never_cached() {
    let bob = User::at("bob", "b.test");
    let mallory = Address::parse("mallory@b.test").unwrap();
    let fake = fake_answering(&bob, &mallory).await;
    let node = node_routing_to(&fake).await;
    let (status, body) = oneshot(&node, &format!("/v1/lookup/{}", bob.address)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(problem_type(&body), Some(ProblemType::BadRemoteAnswer));
    let (status, body) = oneshot(
        &node,
        &format!("/v1/lookup/{}?mode=cache-only", bob.address),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(problem_type(&body), Some(ProblemType::NotCached));
    assert_eq!(node.server.state().federation.cached_answers().await, 0);
}

#[tokio::test]
async fn the_edge_answers_local_users_and_bad_input_with_problems() {
    let fake = MockServer::start().await;
    let node = node_routing_to(&fake).await;
    let alice = User::new("alice");
    alice.register(&node).await;
    alice.publish(&node, 600).await;

    let (status, body) =
        oneshot(&node, &format!("/v1/lookup/{}?mode=refresh", alice.address)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["source"], "local");
    let answer: LookupResponse = serde_json::from_value(body).unwrap();
    pd_proto::verify_lookup_answer(&alice.address, answer).unwrap();

    for (uri, status, kind) in [
        (
            "/v1/lookup/nobody@localhost",
            StatusCode::NOT_FOUND,
            ProblemType::UnknownUser,
        ),
        (
            "/v1/lookup/not-an-address",
            StatusCode::BAD_REQUEST,
            ProblemType::InvalidAddress,
        ),
        (
            "/v1/lookup/bob@b.test?mode=later",
            StatusCode::BAD_REQUEST,
            ProblemType::InvalidRequest,
        ),
    ] {
        let (actual, body) = oneshot(&node, uri).await;
        assert_eq!(actual, status, "{uri}: {body}");
        assert_eq!(problem_type(&body), Some(kind), "{uri}: {body}");
    }
    // Neither the local lookup (in any mode) nor the refused input reached the remote.
    assert!(fake.received_requests().await.unwrap().is_empty());
}
