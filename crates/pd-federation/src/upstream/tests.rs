//! Tests of the upstream lookup against wiremock remote nodes: the happy path with a
//! checked request signature, and every kind of wrong, refused or failed answer.

use std::time::Duration;

use pd_proto::node_auth::NodeAuthorization;
use pd_proto::{Host, Presence, SecretKey, Signed};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::config::FederationConfig;
use crate::guard::GuardedClient;
use crate::trust::test_trust;

const ASKED: &str = "alice@b.example";

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

fn host(s: &str) -> Host {
    Host::parse(s).unwrap()
}

fn our_key() -> SecretKey {
    SecretKey::from_seed(&[21; 32])
}

fn user_key() -> SecretKey {
    SecretKey::from_seed(&[22; 32])
}

/// An upstream for node `a.example` whose route to `b.example` is the mock server.
fn upstream_to(uri: &str) -> Upstream {
    let config = FederationConfig {
        peers: vec![format!("b.example={uri}").parse().unwrap()],
        request_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(1),
        ..FederationConfig::default()
    };
    let client = Arc::new(GuardedClient::new(&config).unwrap());
    let discovery = Arc::new(Discovery::new(client, &config, test_trust("")));
    Upstream::new(discovery, NodeSigner::new(our_key(), host("a.example")))
}

fn presence_for(address: &str, key: &SecretKey, lifetime: u64) -> Signed<Presence> {
    let now = pd_proto::now_micros();
    Signed::sign(
        key,
        &Presence {
            address: addr(address),
            endpoints: Vec::new(),
            seq: now - 1_000_000,
            expires_at: now / 1_000_000 + lifetime,
        },
    )
}

fn answer(address: &str, presence: Option<Signed<Presence>>, ttl: u64) -> serde_json::Value {
    serde_json::to_value(LookupResponse {
        address: addr(address),
        public_key: user_key().public(),
        presence,
        rotations: Vec::new(),
        source: Source::Local,
        ttl,
    })
    .unwrap()
}

async fn remote_answering(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/federation/lookup/alice%40b.example"))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

fn problem(kind: ProblemType) -> ResponseTemplate {
    ResponseTemplate::new(kind.status()).set_body_raw(
        serde_json::to_vec(&kind.with_detail("x")).unwrap(),
        pd_proto::problem::PROBLEM_CONTENT_TYPE,
    )
}

#[test]
fn lookup_path_percent_encodes_the_address() {
    assert_eq!(
        Upstream::lookup_path(&addr("alice@b.example:8443")),
        "/v1/federation/lookup/alice%40b.example%3A8443"
    );
    assert_eq!(
        Upstream::lookup_path(&addr("bob@[::1]")),
        "/v1/federation/lookup/bob%40%5B%3A%3A1%5D"
    );
}

#[tokio::test]
async fn verified_answer_is_returned_with_a_signed_request() {
    let presence = presence_for(ASKED, &user_key(), 600);
    let server = remote_answering(ResponseTemplate::new(200).set_body_json(answer(
        ASKED,
        Some(presence),
        3600,
    )))
    .await;
    let upstream = upstream_to(&server.uri());
    let response = upstream.fetch(&addr(ASKED)).await.unwrap().into_response();
    assert_eq!(response.address, addr(ASKED));
    assert_eq!(response.public_key, user_key().public());
    assert!(response.presence.is_some());
    assert_eq!(response.source, Source::Remote);
    assert!(
        response.ttl <= 600,
        "ttl bounded by the record: {}",
        response.ttl
    );

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    let header = request
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap();
    let auth = NodeAuthorization::parse(header).unwrap();
    assert_eq!(auth.origin, host("a.example"));
    assert_eq!(auth.destination, host("b.example"));
    let path_and_query = request.url.path();
    assert_eq!(path_and_query, "/v1/federation/lookup/alice%40b.example");
    our_key()
        .public()
        .verify(
            &auth.signing_bytes("GET", path_and_query, b""),
            &auth.signature,
        )
        .unwrap();
}

#[tokio::test]
async fn answer_without_presence_is_accepted() {
    let server =
        remote_answering(ResponseTemplate::new(200).set_body_json(answer(ASKED, None, 60))).await;
    let response = upstream_to(&server.uri())
        .fetch_lookup(&addr(ASKED))
        .await
        .unwrap();
    assert!(response.presence().is_none());
}

#[tokio::test]
async fn answers_about_another_name_or_domain_are_dropped() {
    for other in ["bob@b.example", "alice@c.example", "alice@b.example:8443"] {
        let presence = presence_for(other, &user_key(), 600);
        let server = remote_answering(ResponseTemplate::new(200).set_body_json(answer(
            other,
            Some(presence),
            60,
        )))
        .await;
        let err = upstream_to(&server.uri())
            .fetch_lookup(&addr(ASKED))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ResolveError::BadAnswer(_)),
            "{other}: {err:?}"
        );
    }
}

#[tokio::test]
async fn presence_for_another_address_inside_a_matching_answer_is_dropped() {
    let presence = presence_for("bob@b.example", &user_key(), 600);
    let server = remote_answering(ResponseTemplate::new(200).set_body_json(answer(
        ASKED,
        Some(presence),
        60,
    )))
    .await;
    let err = upstream_to(&server.uri())
        .fetch_lookup(&addr(ASKED))
        .await
        .unwrap_err();
    assert!(matches!(err, ResolveError::BadAnswer(_)), "{err:?}");
}

#[tokio::test]
async fn bad_presence_signature_is_dropped() {
    let presence = presence_for(ASKED, &SecretKey::from_seed(&[99; 32]), 600);
    let server = remote_answering(ResponseTemplate::new(200).set_body_json(answer(
        ASKED,
        Some(presence),
        60,
    )))
    .await;
    let err = upstream_to(&server.uri())
        .fetch_lookup(&addr(ASKED))
        .await
        .unwrap_err();
    assert!(matches!(err, ResolveError::BadAnswer(_)), "{err:?}");
}

/// A proof of `ASKED` rotating from `old` to `new`, `n` seconds ago.
fn rotation_proof(old: &SecretKey, new: &SecretKey, n: u64) -> pd_proto::RotationProof {
    let rotation = Signed::sign(
        old,
        &pd_proto::Rotation {
            address: addr(ASKED),
            new_key: new.public(),
            seq: pd_proto::now_micros() - n * 1_000_000,
        },
    );
    let countersignature = rotation.countersign(new, &addr(ASKED));
    pd_proto::RotationProof::new(old.public(), rotation, countersignature)
}

fn answer_with_rotations(rotations: &[pd_proto::RotationProof]) -> serde_json::Value {
    let mut value = answer(ASKED, Some(presence_for(ASKED, &user_key(), 600)), 60);
    value["rotations"] = serde_json::to_value(rotations).unwrap();
    value
}

#[tokio::test]
async fn a_rotation_chain_ending_at_the_answers_key_is_passed_on() {
    let (k1, k2) = (
        SecretKey::from_seed(&[31; 32]),
        SecretKey::from_seed(&[32; 32]),
    );
    let chain = vec![
        rotation_proof(&k1, &k2, 20),
        rotation_proof(&k2, &user_key(), 10),
    ];
    let server =
        remote_answering(ResponseTemplate::new(200).set_body_json(answer_with_rotations(&chain)))
            .await;
    let response = upstream_to(&server.uri())
        .fetch_lookup(&addr(ASKED))
        .await
        .unwrap();
    assert_eq!(response.rotations(), chain);
}

#[tokio::test]
async fn forged_or_broken_rotation_chains_are_dropped() {
    let (k1, k2) = (
        SecretKey::from_seed(&[31; 32]),
        SecretKey::from_seed(&[32; 32]),
    );
    let impostor = SecretKey::from_seed(&[33; 32]);
    // Signed by the impostor, claiming to start from k1.
    let mut forged = rotation_proof(&impostor, &user_key(), 10);
    forged.old_key = k1.public();
    let cases = [
        ("forged", vec![forged]),
        // Genuine, but it ends at k2, not at the answer's key.
        ("wrong end", vec![rotation_proof(&k1, &k2, 10)]),
        (
            "out of order",
            vec![
                rotation_proof(&k2, &user_key(), 10),
                rotation_proof(&k1, &k2, 20),
            ],
        ),
    ];
    for (what, chain) in cases {
        let server = remote_answering(
            ResponseTemplate::new(200).set_body_json(answer_with_rotations(&chain)),
        )
        .await;
        let err = upstream_to(&server.uri())
            .fetch_lookup(&addr(ASKED))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ResolveError::BadAnswer(why) if why.contains("rotation")),
            "{what}: {err:?}"
        );
    }
}

#[tokio::test]
async fn problems_map_to_distinct_errors() {
    let cases = [
        (problem(ProblemType::UnknownUser), "unknown"),
        (problem(ProblemType::RemoteRefused), "refused"),
        (problem(ProblemType::RefusedByPolicy), "refused"),
        (problem(ProblemType::NotFound), "bad"),
        (problem(ProblemType::InvalidNodeSignature), "bad"),
        (ResponseTemplate::new(500), "unreachable"),
        (ResponseTemplate::new(503), "unreachable"),
        (
            ResponseTemplate::new(200).set_body_raw("{\"address\":", "application/json"),
            "bad",
        ),
        (
            ResponseTemplate::new(200).set_body_raw("<html>", "text/html"),
            "bad",
        ),
        (
            ResponseTemplate::new(302).insert_header("location", "http://10.0.0.1/"),
            "bad",
        ),
    ];
    for (response, expected) in cases {
        let server = remote_answering(response).await;
        let err = upstream_to(&server.uri())
            .fetch_lookup(&addr(ASKED))
            .await
            .unwrap_err();
        let kind = match err {
            ResolveError::UnknownUser => "unknown",
            ResolveError::RemoteRefused => "refused",
            ResolveError::Unreachable(_) => "unreachable",
            ResolveError::BadAnswer(_) => "bad",
            _ => "other",
        };
        assert_eq!(kind, expected, "{err:?}");
    }
}

#[tokio::test]
async fn slow_and_dead_nodes_are_unreachable() {
    let server = remote_answering(
        ResponseTemplate::new(200)
            .set_body_json(answer(ASKED, None, 60))
            .set_delay(Duration::from_secs(5)),
    )
    .await;
    let err = upstream_to(&server.uri())
        .fetch_lookup(&addr(ASKED))
        .await
        .unwrap_err();
    assert!(matches!(err, ResolveError::Unreachable(_)), "{err:?}");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = upstream_to(&uri)
        .fetch_lookup(&addr(ASKED))
        .await
        .unwrap_err();
    assert!(matches!(err, ResolveError::Unreachable(_)), "{err:?}");
}

#[tokio::test]
async fn ip_literal_domain_without_static_route_has_no_node() {
    let upstream = upstream_to("http://127.0.0.1:9");
    let err = upstream
        .fetch_lookup(&addr("alice@127.0.0.1"))
        .await
        .unwrap_err();
    assert_eq!(err, ResolveError::NoNode);
}

#[tokio::test]
async fn expired_presence_is_dropped_not_refused() {
    let now = pd_proto::now_micros();
    let expired = Signed::sign(
        &user_key(),
        &Presence {
            address: addr(ASKED),
            endpoints: Vec::new(),
            seq: now - 120_000_000,
            expires_at: now / 1_000_000 - 60,
        },
    );
    let server = remote_answering(ResponseTemplate::new(200).set_body_json(answer(
        ASKED,
        Some(expired),
        60,
    )))
    .await;
    let response = upstream_to(&server.uri())
        .fetch_lookup(&addr(ASKED))
        .await
        .unwrap();
    assert!(response.presence().is_none());
}

#[tokio::test]
async fn the_receiving_node_authenticates_the_signed_lookup() {
    // Node a.example publishes its server key; node b.example answers the lookup.
    let origin = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/pd"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "domain": "a.example",
            "api_version": "v1",
            "server_keys": [{
                "key_id": pd_proto::node_auth::server_key_id(&our_key().public()),
                "public_key": our_key().public().to_string(),
                "valid_until": pd_proto::now_micros() / 1_000_000 + 3600,
            }],
            "lookup_access": "users",
            "registration": "open",
        })))
        .mount(&origin)
        .await;
    let remote =
        remote_answering(ResponseTemplate::new(200).set_body_json(answer(ASKED, None, 60))).await;
    upstream_to(&remote.uri())
        .fetch_lookup(&addr(ASKED))
        .await
        .unwrap();
    let request = remote.received_requests().await.unwrap().remove(0);

    // b.example's side: reach a.example's node and verify the request as received.
    let config = FederationConfig {
        peers: vec![format!("a.example={}", origin.uri()).parse().unwrap()],
        ..FederationConfig::default()
    };
    let discovery = Arc::new(Discovery::new(
        Arc::new(GuardedClient::new(&config).unwrap()),
        &config,
        test_trust(""),
    ));
    let verifier = crate::node_auth::InboundVerifier::new(discovery, Duration::from_secs(300));
    let authenticated = verifier
        .verify(
            request.method.as_str(),
            request.url.path(),
            &request.headers,
            &request.body,
            &host("b.example"),
        )
        .await
        .unwrap();
    assert_eq!(authenticated, host("a.example"));
}

#[tokio::test]
async fn a_delegation_target_the_policy_refuses_is_never_contacted() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/pd"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"base_url": "https://pd.evil.example/"})),
        )
        .mount(&server)
        .await;
    let config = FederationConfig {
        peers: vec![format!("mock.test={}", server.uri()).parse().unwrap()],
        request_timeout: Duration::from_secs(2),
        ..FederationConfig::default()
    };
    let client = Arc::new(GuardedClient::new(&config).unwrap());
    let discovery = Arc::new(Discovery::with_direct_base(
        client,
        &FederationConfig::default(),
        test_trust("[trust]\ndeny = [\"evil.example\"]"),
        server.uri().parse().unwrap(),
    ));
    let upstream = Upstream::new(discovery, NodeSigner::new(our_key(), host("a.example")));
    let err = upstream
        .fetch_lookup(&addr("bob@b.example"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ResolveError::DelegationRefused("pd.evil.example".into())
    );
    // Only the delegation document was fetched.
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}
