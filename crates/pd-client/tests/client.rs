//! The client against misbehaving and well-behaved fake nodes (wiremock): error mapping,
//! undecodable answers, answers that fail verification and transport failures.

use std::time::Duration;

use pd_client::{
    ClientError, ClientOptions, LookupAnswerError, LookupMode, PdClient, TransportKind, VerifyError,
};
use pd_proto::wire::{
    AccountInfo, LookupResponse, RegisterRequest, RotationProof, Source, WhoamiResponse,
};
use pd_proto::{
    Address, Endpoint, Presence, ProblemType, Registration, Rotation, RotationError, SecretKey,
    Signed, SignedError,
};
use url::Url;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ALICE: &str = "alice@pd.test";

fn alice() -> Address {
    Address::parse(ALICE).unwrap()
}

fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32])
}

fn client(server: &MockServer) -> PdClient {
    PdClient::new(
        Url::parse(&server.uri()).unwrap(),
        &ClientOptions::default(),
    )
    .unwrap()
}

fn presence_for(address: &Address) -> Presence {
    let now = pd_proto::now_micros();
    Presence {
        address: address.clone(),
        endpoints: vec![Endpoint::parse("tcp://192.0.2.7:7000").unwrap()],
        seq: now,
        expires_at: now / 1_000_000 + 3600,
    }
}

fn lookup_answer(
    address: &Address,
    key: &SecretKey,
    presence: Option<Signed<Presence>>,
) -> serde_json::Value {
    serde_json::to_value(LookupResponse {
        address: address.clone(),
        public_key: key.public(),
        presence,
        rotations: Vec::new(),
        source: Source::Local,
        ttl: 60,
    })
    .unwrap()
}

async fn serve_lookup(server: &MockServer, body: serde_json::Value) {
    Mock::given(method("GET"))
        .and(path(format!("/v1/lookup/{ALICE}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

#[tokio::test]
async fn lookup_verifies_and_decodes_the_presence_record() {
    let server = MockServer::start().await;
    let presence = presence_for(&alice());
    let signed = Signed::sign(&key(1), &presence);
    Mock::given(method("GET"))
        .and(path(format!("/v1/lookup/{ALICE}")))
        .and(header("authorization", "Bearer tok-123"))
        .and(query_param("mode", "cache-only"))
        .respond_with(ResponseTemplate::new(200).set_body_json(lookup_answer(
            &alice(),
            &key(1),
            Some(signed),
        )))
        .expect(1)
        .mount(&server)
        .await;

    let found = client(&server)
        .lookup(&alice(), Some("tok-123"), Some(LookupMode::CacheOnly))
        .await
        .unwrap();
    assert_eq!(found.presence(), Some(&presence));
    assert!(found.is_online(pd_proto::now_micros() / 1_000_000));
    assert_eq!(found.response().public_key, key(1).public());
}

#[tokio::test]
async fn lookup_without_presence_is_offline() {
    let server = MockServer::start().await;
    serve_lookup(&server, lookup_answer(&alice(), &key(1), None)).await;
    let found = client(&server).lookup(&alice(), None, None).await.unwrap();
    assert_eq!(found.presence(), None);
    assert!(!found.is_online(0));
}

#[tokio::test]
async fn problem_answers_are_mapped_to_their_type() {
    let server = MockServer::start().await;
    let problem = ProblemType::UnknownUser.with_detail("no user alice@pd.test");
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(404)
                .insert_header("content-type", "application/problem+json")
                .set_body_json(&problem),
        )
        .mount(&server)
        .await;
    let err = client(&server)
        .lookup(&alice(), None, None)
        .await
        .unwrap_err();
    let got = err.problem().expect("a problem");
    assert_eq!(got, &problem);
    assert_eq!(got.problem_type(), Some(ProblemType::UnknownUser));
    assert!(err.to_string().contains("no user alice@pd.test"), "{err}");
}

#[tokio::test]
async fn non_problem_error_answers_become_a_synthetic_problem_with_the_status() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(502)
                .insert_header("content-type", "text/html")
                .set_body_string("<html>Bad Gateway</html>"),
        )
        .mount(&server)
        .await;
    let err = client(&server).health().await.unwrap_err();
    let problem = err.problem().expect("a problem");
    assert_eq!(problem.status, 502);
    assert_eq!(problem.kind, "about:blank");
    assert_eq!(problem.problem_type(), None);
}

#[tokio::test]
async fn garbage_json_is_a_decode_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/json")
                .set_body_string("{\"address\": not json"),
        )
        .mount(&server)
        .await;
    let err = client(&server)
        .lookup(&alice(), None, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");
    let err = client(&server).well_known().await.unwrap_err();
    assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn oversized_answers_are_refused() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string("x".repeat(pd_client::MAX_RESPONSE_BYTES + 1)),
        )
        .mount(&server)
        .await;
    let err = client(&server).health().await.unwrap_err();
    assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn an_answer_about_another_address_is_refused() {
    let server = MockServer::start().await;
    let mallory = Address::parse("mallory@pd.test").unwrap();
    let signed = Signed::sign(&key(1), &presence_for(&mallory));
    serve_lookup(&server, lookup_answer(&mallory, &key(1), Some(signed))).await;
    let err = client(&server)
        .lookup(&alice(), None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Verification {
                reason: VerifyError::Lookup(LookupAnswerError::AddressMismatch { .. }),
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_presence_record_for_another_address_is_refused() {
    let server = MockServer::start().await;
    let mallory = Address::parse("mallory@pd.test").unwrap();
    let signed = Signed::sign(&key(1), &presence_for(&mallory));
    serve_lookup(&server, lookup_answer(&alice(), &key(1), Some(signed))).await;
    let err = client(&server)
        .lookup(&alice(), None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Verification {
                reason: VerifyError::Lookup(LookupAnswerError::Signature(
                    SignedError::AddressMismatch { .. }
                )),
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_presence_record_signed_by_another_key_is_refused() {
    let server = MockServer::start().await;
    let signed = Signed::sign(&key(2), &presence_for(&alice()));
    serve_lookup(&server, lookup_answer(&alice(), &key(1), Some(signed))).await;
    let err = client(&server)
        .lookup(&alice(), None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Verification {
                reason: VerifyError::Lookup(LookupAnswerError::Signature(SignedError::Signature(
                    _
                ))),
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_tampered_presence_payload_is_refused() {
    let server = MockServer::start().await;
    let signed = Signed::sign(&key(1), &presence_for(&alice()));
    let mut payload = signed.payload().to_vec();
    let at = payload.iter().position(|b| *b == b'7').unwrap();
    payload[at] = b'8';
    let tampered = Signed::from_parts(payload, *signed.signature());
    serve_lookup(&server, lookup_answer(&alice(), &key(1), Some(tampered))).await;
    let err = client(&server)
        .lookup(&alice(), None, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Verification { .. }), "{err:?}");
}

/// A proof of alice rotating from `old` to `new`, `ago` seconds ago.
fn rotation(old: &SecretKey, new: &SecretKey, ago: u64) -> RotationProof {
    let rotation = Signed::sign(
        old,
        &Rotation {
            address: alice(),
            new_key: new.public(),
            seq: pd_proto::now_micros() - ago * 1_000_000,
        },
    );
    let countersignature = rotation.countersign(new, &alice());
    RotationProof::new(old.public(), rotation, countersignature)
}

fn answer_with_rotations(current: &SecretKey, rotations: &[RotationProof]) -> serde_json::Value {
    let signed = Signed::sign(current, &presence_for(&alice()));
    let mut answer = lookup_answer(&alice(), current, Some(signed));
    answer["rotations"] = serde_json::to_value(rotations).unwrap();
    answer
}

#[tokio::test]
async fn lookup_verifies_the_rotation_chain_and_links_known_keys() {
    let server = MockServer::start().await;
    let chain = [
        rotation(&key(1), &key(2), 20),
        rotation(&key(2), &key(3), 10),
    ];
    serve_lookup(&server, answer_with_rotations(&key(3), &chain)).await;
    let found = client(&server).lookup(&alice(), None, None).await.unwrap();
    assert_eq!(found.rotations(), &chain);
    assert_eq!(found.public_key(), &key(3).public());
    assert_eq!(found.rotated_from(&key(1).public()), Ok(2));
    assert_eq!(found.rotated_from(&key(2).public()), Ok(1));
    assert_eq!(found.rotated_from(&key(3).public()), Ok(0));
    assert_eq!(
        found.rotated_from(&key(4).public()),
        Err(RotationError::Unlinked)
    );
}

#[tokio::test]
async fn a_forged_rotation_chain_is_refused() {
    // The impostor (key 9) claims a rotation from alice's key 1 that it signed itself.
    let mut forged = rotation(&key(9), &key(9 + 1), 10);
    forged.old_key = key(1).public();
    let broken = [rotation(&key(1), &key(2), 10)];
    for (what, answer) in [
        ("forged", answer_with_rotations(&key(10), &[forged])),
        (
            "not ending at the key",
            answer_with_rotations(&key(3), &broken),
        ),
    ] {
        let server = MockServer::start().await;
        serve_lookup(&server, answer).await;
        let err = client(&server)
            .lookup(&alice(), None, None)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Verification {
                    reason: VerifyError::Lookup(LookupAnswerError::Rotation(_)),
                    ..
                }
            ),
            "{what}: {err:?}"
        );
    }
}

#[tokio::test]
async fn whoami_returns_the_reflexive_address() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/whoami"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"ip": "203.0.113.5", "port": 51234})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let me = client(&server).whoami().await.unwrap();
    assert_eq!(
        me,
        WhoamiResponse {
            ip: "203.0.113.5".parse().unwrap(),
            port: Some(51234),
        }
    );

    // Behind a proxy the node knows no port.
    let proxied = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/whoami"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"ip": "2001:db8::7"})),
        )
        .mount(&proxied)
        .await;
    let me = client(&proxied).whoami().await.unwrap();
    assert_eq!(
        (me.ip.to_string(), me.port),
        ("2001:db8::7".to_owned(), None)
    );
}

#[tokio::test]
async fn register_sends_the_request_and_checks_the_answer() {
    let server = MockServer::start().await;
    let sk = key(3);
    let registration = Registration {
        address: alice(),
        public_key: sk.public(),
        seq: pd_proto::now_micros(),
    };
    let request = RegisterRequest {
        registration: Signed::sign(&sk, &registration),
        invite: Some("inv".to_owned()),
    };
    let info = AccountInfo {
        address: alice(),
        public_key: sk.public(),
        fingerprint: sk.public().fingerprint(),
    };
    Mock::given(method("POST"))
        .and(path("/v1/accounts"))
        .and(header("content-type", "application/json"))
        .and(body_json(&request))
        .respond_with(ResponseTemplate::new(201).set_body_json(&info))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(client(&server).register(&request).await.unwrap(), info);
}

#[tokio::test]
async fn a_registration_answer_naming_another_key_is_refused() {
    let server = MockServer::start().await;
    let sk = key(3);
    let request = RegisterRequest {
        registration: Signed::sign(
            &sk,
            &Registration {
                address: alice(),
                public_key: sk.public(),
                seq: pd_proto::now_micros(),
            },
        ),
        invite: None,
    };
    let other = key(4).public();
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(AccountInfo {
            address: alice(),
            public_key: other,
            fingerprint: other.fingerprint(),
        }))
        .mount(&server)
        .await;
    let err = client(&server).register(&request).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Verification {
                reason: VerifyError::KeyMismatch { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn withdraw_expects_success_without_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/accounts/{ALICE}/presence/withdraw")))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let withdrawal = Signed::sign(
        &key(1),
        &pd_proto::Withdrawal {
            address: alice(),
            seq: 1,
        },
    );
    client(&server)
        .withdraw(&alice(), &withdrawal)
        .await
        .unwrap();
}

#[tokio::test]
async fn connection_refused_is_a_connect_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = PdClient::new(
        Url::parse(&format!("http://{addr}")).unwrap(),
        &ClientOptions::default(),
    )
    .unwrap();
    let err = client.health().await.unwrap_err();
    assert_eq!(
        err.transport_kind(),
        Some(TransportKind::Connect),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_slow_answer_is_a_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let client = PdClient::new(
        Url::parse(&server.uri()).unwrap(),
        &ClientOptions::default()
            .with_timeouts(Duration::from_millis(200), Duration::from_millis(300)),
    )
    .unwrap();
    let err = client.health().await.unwrap_err();
    assert_eq!(
        err.transport_kind(),
        Some(TransportKind::Timeout),
        "{err:?}"
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(301).insert_header("location", "http://192.0.2.1/healthz"),
        )
        .mount(&server)
        .await;
    let err = client(&server).health().await.unwrap_err();
    assert_eq!(err.problem().map(|p| p.status), Some(301), "{err:?}");
}

#[test]
fn an_unreadable_or_empty_ca_file_is_a_setup_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    for file in [dir.path().join("missing.pem"), empty] {
        let err = PdClient::new(
            Url::parse("https://pd.test").unwrap(),
            &ClientOptions::default().with_ca_file(Some(file)),
        )
        .unwrap_err();
        assert!(matches!(err, ClientError::Setup(_)), "{err:?}");
    }
}
