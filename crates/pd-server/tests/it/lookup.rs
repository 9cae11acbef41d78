//! Lookups: who may look up, malformed addresses, unknown users, other domains, sessions.

use pd_proto::signed::{Purpose, signing_bytes};
use pd_proto::{Login, ProblemType, SecretKey, Signed};
use pd_server::config::LookupAccess;
use reqwest::StatusCode;

use crate::util::{TestNode, User, assert_problem, seq};

#[tokio::test]
async fn lookups_need_a_session_token_by_default() {
    let node = TestNode::start().await;
    let alice = User::new("alice");
    alice.register(&node).await;
    let resp = node.lookup("alice@localhost", None).await;
    assert_eq!(resp.headers().get("www-authenticate").unwrap(), "Bearer");
    assert_problem(resp, 401, ProblemType::Unauthenticated).await;
    let resp = node.lookup("alice@localhost", Some("made-up-token")).await;
    assert_problem(resp, 401, ProblemType::Unauthenticated).await;
    let resp = node
        .client
        .get(format!("{}/v1/lookup/alice@localhost", node.url))
        .header("authorization", "Basic YWxpY2U6eA==")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 401, ProblemType::Unauthenticated).await;
    let token = alice.login(&node).await;
    assert_eq!(
        node.lookup("alice@localhost", Some(&token)).await.status(),
        StatusCode::OK
    );
    // A token works for many lookups.
    assert_eq!(
        node.lookup("alice@localhost", Some(&token)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn public_lookups_need_no_token() {
    let node = TestNode::start_with(|c| c.lookup_access = LookupAccess::Public).await;
    let alice = User::new("alice");
    alice.register(&node).await;
    let signed = alice.publish(&node, 600).await;
    let resp = node.lookup("alice@localhost", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/json"
    );
    let found: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        found["presence"]["payload"],
        serde_json::to_value(&signed).unwrap()["payload"]
    );
    let resp = node.lookup("nobody@localhost", None).await;
    assert_problem(resp, 404, ProblemType::UnknownUser).await;
}

#[tokio::test]
async fn addresses_in_paths_are_normalised() {
    let node = TestNode::start_with(|c| c.lookup_access = LookupAccess::Public).await;
    User::new("alice").register(&node).await;
    for form in ["Alice@LOCALHOST", "alice%40localhost", "alice@localhost."] {
        let resp = node.lookup(form, None).await;
        assert_eq!(resp.status(), StatusCode::OK, "{form}");
        let found: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(found["address"], "alice@localhost");
    }
}

#[tokio::test]
async fn malformed_addresses_are_400() {
    let node = TestNode::start().await;
    for bad in [
        "no-at-sign",
        "a@b@localhost",
        "@localhost",
        "alice@",
        "al%20ice@localhost",
        "alice@bad_host",
        "alice@localhost:99999",
        "alice@-localhost",
        "%FF%FE@localhost",
        "alice%2Fx@localhost",
    ] {
        let resp = node.lookup(bad, None).await;
        assert_problem(resp, 400, ProblemType::InvalidAddress).await;
    }
    let long = format!("{}@localhost", "a".repeat(65));
    let resp = node.lookup(&long, None).await;
    assert_problem(resp, 400, ProblemType::InvalidAddress).await;
    // The same applies to account paths.
    let resp = node
        .put(
            "/v1/accounts/not-an-address/presence",
            &serde_json::json!({}),
        )
        .await;
    assert_problem(resp, 400, ProblemType::InvalidAddress).await;
}

#[tokio::test]
async fn other_domains_refused_by_policy_get_403_without_network() {
    // Allowlist mode with an empty allowlist: federate with no one.
    let node = TestNode::start_with(|c| {
        c.trust.mode = Some(pd_federation::trust::Mode::Allowlist);
    })
    .await;
    let alice = User::new("alice");
    alice.register(&node).await;
    let token = alice.login(&node).await;
    let resp = node.lookup("bob@other.example", Some(&token)).await;
    let problem = assert_problem(resp, 403, ProblemType::RefusedByPolicy).await;
    assert!(
        problem.detail.contains("other.example"),
        "{}",
        problem.detail
    );
    let resp = node
        .lookup("bob@other.example?mode=sideways", Some(&token))
        .await;
    assert_problem(resp, 400, ProblemType::InvalidRequest).await;
}

#[tokio::test]
async fn logins_are_checked_like_every_signed_operation() {
    let node = TestNode::start().await;
    let alice = User::new("alice");
    alice.register(&node).await;
    let login = alice.login_request();
    assert_eq!(
        node.post("/v1/sessions", &login).await.status(),
        StatusCode::OK
    );
    let resp = node.post("/v1/sessions", &login).await;
    assert_problem(resp, 409, ProblemType::Replayed).await;

    let ghost = User::new("ghost");
    let resp = node.post("/v1/sessions", &ghost.login_request()).await;
    assert_problem(resp, 404, ProblemType::UnknownUser).await;

    let record = Login {
        address: alice.address.clone(),
        seq: seq(),
    };
    let payload = serde_json::to_vec(&record).unwrap();
    let sig = alice
        .key
        .sign(&signing_bytes(Purpose::Delete, &alice.address, &payload));
    let resp = node
        .post("/v1/sessions", &Signed::<Login>::from_parts(payload, sig))
        .await;
    assert_problem(resp, 400, ProblemType::InvalidSignature).await;
    let forged = Signed::sign(&SecretKey::generate(), &record);
    let resp = node.post("/v1/sessions", &forged).await;
    assert_problem(resp, 400, ProblemType::InvalidSignature).await;
    let stale = Signed::sign(
        &alice.key,
        &Login {
            address: alice.address.clone(),
            seq: seq() - 600_000_000,
        },
    );
    let resp = node.post("/v1/sessions", &stale).await;
    assert_problem(resp, 400, ProblemType::StaleRequest).await;
    let login: pd_proto::wire::LoginResponse = node
        .post("/v1/sessions", &alice.login_request())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(login.expires_in, 3600);
    assert_eq!(login.token.len(), 43);
}
