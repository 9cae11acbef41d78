//! Tests of node request signing and inbound verification with real keys and a wiremock
//! origin node publishing its server keys.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::config::FederationConfig;
use crate::guard::GuardedClient;
use crate::trust::test_trust;

const PATH: &str = "/v1/federation/lookup/alice%40b.example";

fn host(s: &str) -> Host {
    Host::parse(s).unwrap()
}

fn origin_key() -> SecretKey {
    SecretKey::from_seed(&[11; 32])
}

/// A wiremock node for `a.example` publishing `origin_key`, and a verifier for `b.example`
/// whose discovery reaches that node for every domain.
async fn setup() -> (MockServer, InboundVerifier) {
    let server = MockServer::start().await;
    let key = origin_key();
    Mock::given(method("GET"))
        .and(path("/.well-known/pd"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "domain": "a.example",
            "api_version": "v1",
            "server_keys": [{
                "key_id": server_key_id(&key.public()),
                "public_key": key.public().to_string(),
                "valid_until": now_secs() + 3600,
            }],
            "lookup_access": "users",
            "registration": "open",
        })))
        .mount(&server)
        .await;
    let client_config = FederationConfig {
        peers: vec![format!("mock.test={}", server.uri()).parse().unwrap()],
        ..FederationConfig::default()
    };
    let client = Arc::new(GuardedClient::new(&client_config).unwrap());
    let discovery = Arc::new(Discovery::with_direct_base(
        client,
        &FederationConfig::default(),
        test_trust(""),
        server.uri().parse().unwrap(),
    ));
    (
        server,
        InboundVerifier::new(discovery, Duration::from_secs(300)),
    )
}

fn headers_with(value: HeaderValue) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, value);
    headers
}

fn signed_headers(path_and_query: &str, body: &[u8], ts: u64) -> HeaderMap {
    headers_with(sign_request_at(
        &origin_key(),
        &host("a.example"),
        &host("b.example"),
        "GET",
        path_and_query,
        body,
        ts,
    ))
}

#[tokio::test]
async fn a_signed_request_authenticates_its_origin() {
    let (_server, verifier) = setup().await;
    let headers = signed_headers(PATH, b"", now_secs());
    let origin = verifier
        .verify("GET", PATH, &headers, b"", &host("b.example"))
        .await
        .unwrap();
    assert_eq!(origin, host("a.example"));
}

#[tokio::test]
async fn signer_produces_the_header_the_verifier_accepts() {
    let (_server, verifier) = setup().await;
    let signer = NodeSigner::new(origin_key(), host("a.example"));
    let headers = headers_with(signer.sign(&host("b.example"), "POST", "/v1/x?y=1", b"{}"));
    let origin = verifier
        .verify("POST", "/v1/x?y=1", &headers, b"{}", &host("b.example"))
        .await
        .unwrap();
    assert_eq!(origin, host("a.example"));
    assert!(format!("{signer:?}").contains("a.example"));
}

#[tokio::test]
async fn tampering_with_any_signed_part_fails() {
    let (_server, verifier) = setup().await;
    let now = now_secs();
    let headers = signed_headers(PATH, b"body", now);
    for (m, p, body) in [
        ("POST", PATH, &b"body"[..]),
        ("GET", "/v1/federation/lookup/bob%40b.example", &b"body"[..]),
        ("GET", PATH, &b"other"[..]),
    ] {
        let err = verifier
            .verify_at(m, p, &headers, body, &host("b.example"), now)
            .await
            .unwrap_err();
        assert_eq!(err, NodeAuthError::BadSignature, "{m} {p}");
        assert_eq!(
            err.problem_type(),
            pd_proto::ProblemType::InvalidNodeSignature
        );
    }
    // A signature by another key under the published key id.
    let forged = headers_with(sign_request_at(
        &SecretKey::from_seed(&[12; 32]),
        &host("a.example"),
        &host("b.example"),
        "GET",
        PATH,
        b"",
        now,
    ));
    let text = forged[AUTHORIZATION].to_str().unwrap().replace(
        &server_key_id(&SecretKey::from_seed(&[12; 32]).public()),
        &server_key_id(&origin_key().public()),
    );
    let forged = headers_with(HeaderValue::from_str(&text).unwrap());
    let err = verifier
        .verify_at("GET", PATH, &forged, b"", &host("b.example"), now)
        .await
        .unwrap_err();
    assert_eq!(err, NodeAuthError::BadSignature);
}

#[tokio::test]
async fn wrong_destination_is_refused() {
    let (server, verifier) = setup().await;
    let headers = signed_headers(PATH, b"", now_secs());
    let err = verifier
        .verify("GET", PATH, &headers, b"", &host("c.example"))
        .await
        .unwrap_err();
    assert_eq!(err, NodeAuthError::WrongDestination("b.example".into()));
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn stale_and_future_timestamps_are_refused() {
    let (server, verifier) = setup().await;
    let now = now_secs();
    for ts in [now - 301, now + 301, 0] {
        let headers = signed_headers(PATH, b"", ts);
        let err = verifier
            .verify_at("GET", PATH, &headers, b"", &host("b.example"), now)
            .await
            .unwrap_err();
        assert_eq!(err, NodeAuthError::Stale);
    }
    let headers = signed_headers(PATH, b"", now - 299);
    verifier
        .verify_at("GET", PATH, &headers, b"", &host("b.example"), now)
        .await
        .unwrap();
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn missing_malformed_and_duplicate_headers_are_refused() {
    let (_server, verifier) = setup().await;
    let b = host("b.example");
    let err = verifier
        .verify("GET", PATH, &HeaderMap::new(), b"", &b)
        .await
        .unwrap_err();
    assert_eq!(err, NodeAuthError::Missing);
    let mut bearer = HeaderMap::new();
    bearer.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
    assert_eq!(
        verifier
            .verify("GET", PATH, &bearer, b"", &b)
            .await
            .unwrap_err(),
        NodeAuthError::Missing
    );
    let garbage = headers_with(HeaderValue::from_static("PD-Node origin=\"a.example"));
    assert!(matches!(
        verifier
            .verify("GET", PATH, &garbage, b"", &b)
            .await
            .unwrap_err(),
        NodeAuthError::Malformed(_)
    ));
    let mut twice = signed_headers(PATH, b"", now_secs());
    let again = twice.get(AUTHORIZATION).unwrap().clone();
    twice.append(AUTHORIZATION, again);
    assert!(matches!(
        verifier
            .verify("GET", PATH, &twice, b"", &b)
            .await
            .unwrap_err(),
        NodeAuthError::Malformed(_)
    ));
}

#[tokio::test]
async fn unknown_key_id_is_refused() {
    let (_server, verifier) = setup().await;
    let other = SecretKey::from_seed(&[13; 32]);
    let headers = headers_with(sign_request(
        &other,
        &host("a.example"),
        &host("b.example"),
        "GET",
        PATH,
        b"",
    ));
    let err = verifier
        .verify("GET", PATH, &headers, b"", &host("b.example"))
        .await
        .unwrap_err();
    assert!(matches!(err, NodeAuthError::UnknownKey { .. }), "{err:?}");
    assert_eq!(
        err.problem_type(),
        pd_proto::ProblemType::InvalidNodeSignature
    );
}

#[tokio::test]
async fn policy_refuses_before_any_key_fetch() {
    let (server, verifier) = setup().await;
    let asked = Arc::new(AtomicUsize::new(0));
    let seen = asked.clone();
    let verifier = verifier.with_policy(Arc::new(move |origin: &Host| {
        seen.fetch_add(1, Ordering::SeqCst);
        origin.to_string() != "a.example"
    }));
    let headers = signed_headers(PATH, b"", now_secs());
    let err = verifier
        .verify("GET", PATH, &headers, b"", &host("b.example"))
        .await
        .unwrap_err();
    assert_eq!(err, NodeAuthError::Refused("a.example".into()));
    assert_eq!(err.problem_type(), pd_proto::ProblemType::RefusedByPolicy);
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn unreachable_origin_keys_are_a_gateway_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let client_config = FederationConfig {
        peers: vec![format!("mock.test={}", server.uri()).parse().unwrap()],
        ..FederationConfig::default()
    };
    let client = Arc::new(GuardedClient::new(&client_config).unwrap());
    let discovery = Arc::new(Discovery::with_direct_base(
        client,
        &FederationConfig::default(),
        test_trust(""),
        server.uri().parse().unwrap(),
    ));
    let verifier = InboundVerifier::new(discovery, Duration::from_secs(300));
    let headers = signed_headers(PATH, b"", now_secs());
    let err = verifier
        .verify("GET", PATH, &headers, b"", &host("b.example"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, NodeAuthError::KeyFetch { timeout: true, .. }),
        "{err:?}"
    );
    assert_eq!(err.problem_type(), pd_proto::ProblemType::RemoteUnreachable);
}

/// Regression (issue 12): an inbound request claiming origin good.test, whose
/// `/.well-known/pd` delegates to denied.test, is refused before denied.test is contacted
/// when the trust policy allows only good.test; no key from denied.test is accepted.
#[tokio::test]
async fn an_origin_delegating_to_a_refused_host_is_refused_before_its_keys_are_fetched() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/pd"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"base_url": "https://denied.test/"})),
        )
        .mount(&server)
        .await;
    let client_config = FederationConfig {
        peers: vec![format!("mock.test={}", server.uri()).parse().unwrap()],
        ..FederationConfig::default()
    };
    let client = Arc::new(GuardedClient::new(&client_config).unwrap());
    let trust = test_trust("[trust]\nmode = \"allowlist\"\nallow = [\"good.test\"]");
    let discovery = Arc::new(Discovery::with_direct_base(
        client,
        &FederationConfig::default(),
        trust.clone(),
        server.uri().parse().unwrap(),
    ));
    let verifier = InboundVerifier::new(discovery, Duration::from_secs(300))
        .with_policy(Arc::new(move |origin: &Host| trust.allows(origin)));
    let headers = headers_with(sign_request_at(
        &origin_key(),
        &host("good.test"),
        &host("b.example"),
        "GET",
        PATH,
        b"",
        now_secs(),
    ));
    let err = verifier
        .verify("GET", PATH, &headers, b"", &host("b.example"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        NodeAuthError::DelegationRefused {
            origin: "good.test".into(),
            target: "denied.test".into(),
        }
    );
    assert_eq!(err.problem_type(), pd_proto::ProblemType::RefusedByPolicy);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}
