//! Registration, invites, key rotation and deletion.

use data_encoding::BASE64URL_NOPAD;
use pd_proto::signed::{Purpose, signing_bytes};
use pd_proto::wire::{AccountInfo, RegisterRequest};
use pd_proto::{ProblemType, Registration, SecretKey, Signature, Signed};
use pd_server::config::RegistrationPolicy;
use pd_server::registry::create_invite;
use reqwest::StatusCode;

use crate::util::{TestNode, User, addr, assert_problem, seq};

#[tokio::test]
async fn registration_creates_an_account_that_lookups_find() {
    let node = TestNode::start().await;
    let alice = User::new("alice");
    let info = alice.register(&node).await;
    assert_eq!(info.address, alice.address);
    assert_eq!(info.public_key, alice.key.public());
    assert_eq!(info.fingerprint, alice.key.public().fingerprint());
    let found = node.lookup_json(&alice, "alice@localhost").await;
    assert_eq!(found["address"], "alice@localhost");
    assert_eq!(found["public_key"], alice.key.public().to_string());
    assert_eq!(found["presence"], serde_json::Value::Null);
    assert_eq!(found["source"], "local");
    assert_eq!(found["ttl"], 60);
}

#[tokio::test]
async fn a_taken_name_is_refused_whatever_its_case() {
    let node = TestNode::start().await;
    let alice = User::new("alice");
    alice.register(&node).await;
    let mut impostor = User::new("alice");
    let resp = node.post("/v1/accounts", &impostor.registration()).await;
    assert_problem(resp, 409, ProblemType::NameTaken).await;
    impostor.address = addr("ALICE@LocalHost");
    let resp = node.post("/v1/accounts", &impostor.registration()).await;
    assert_problem(resp, 409, ProblemType::NameTaken).await;
    let found = node.lookup_json(&alice, "alice@localhost").await;
    assert_eq!(found["public_key"], alice.key.public().to_string());
}

#[tokio::test]
async fn registration_for_another_domain_is_refused() {
    let node = TestNode::start().await;
    let mut eve = User::new("eve");
    eve.address = addr("eve@other.example");
    let resp = node.post("/v1/accounts", &eve.registration()).await;
    assert_problem(resp, 400, ProblemType::WrongDomain).await;
}

fn registration_with(user: &User, seq: u64) -> RegisterRequest {
    RegisterRequest {
        registration: Signed::sign(
            &user.key,
            &Registration {
                address: user.address.clone(),
                public_key: user.key.public(),
                seq,
            },
        ),
        invite: None,
    }
}

#[tokio::test]
async fn stale_and_future_registrations_are_refused() {
    let node = TestNode::start().await;
    let bob = User::new("bob");
    for bad_seq in [seq() - 600_000_000, seq() + 600_000_000] {
        let resp = node
            .post("/v1/accounts", &registration_with(&bob, bad_seq))
            .await;
        assert_problem(resp, 400, ProblemType::StaleRequest).await;
    }
    let alice = User::new("alice");
    alice.register(&node).await;
    node.assert_unknown(&alice, "bob@localhost").await;
}

#[tokio::test]
async fn bad_signatures_on_registrations_are_refused() {
    let node = TestNode::start().await;
    let bob = User::new("bob");
    let reg = Registration {
        address: bob.address.clone(),
        public_key: bob.key.public(),
        seq: seq(),
    };
    let payload = serde_json::to_vec(&reg).unwrap();
    // Signed by another key than the one registered (no proof of possession).
    let other = SecretKey::generate();
    let forged = other.sign(&signing_bytes(Purpose::Register, &bob.address, &payload));
    // Signed by the right key, but for another purpose.
    let wrong_purpose = bob
        .key
        .sign(&signing_bytes(Purpose::Login, &bob.address, &payload));
    for signature in [forged, wrong_purpose, Signature::from_bytes(&[0; 64])] {
        let req = RegisterRequest {
            registration: Signed::from_parts(payload.clone(), signature),
            invite: None,
        };
        let resp = node.post("/v1/accounts", &req).await;
        assert_problem(resp, 400, ProblemType::InvalidSignature).await;
    }
    let alice = User::new("alice");
    alice.register(&node).await;
    node.assert_unknown(&alice, "bob@localhost").await;
}

#[tokio::test]
async fn weak_keys_are_refused() {
    let node = TestNode::start().await;
    // The identity point: a small-order key under which signatures can be forged.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let payload = format!(
        r#"{{"address":"weak@localhost","public_key":"{}","seq":{}}}"#,
        BASE64URL_NOPAD.encode(&identity),
        seq()
    );
    let body = serde_json::json!({
        "registration": {
            "payload": BASE64URL_NOPAD.encode(payload.as_bytes()),
            "signature": Signature::from_bytes(&[0; 64]).to_string(),
        }
    });
    let resp = node.post("/v1/accounts", &body).await;
    assert_problem(resp, 400, ProblemType::InvalidKey).await;
}

#[tokio::test]
async fn closed_registration_refuses_everyone() {
    let node = TestNode::start_with(|c| c.registration = RegistrationPolicy::Closed).await;
    let bob = User::new("bob");
    let resp = node.post("/v1/accounts", &bob.registration()).await;
    assert_problem(resp, 403, ProblemType::RegistrationClosed).await;
    let well_known: serde_json::Value = node.get("/.well-known/pd").await.json().await.unwrap();
    assert_eq!(well_known["registration"], "closed");
}

#[tokio::test]
async fn invites_are_required_and_single_use() {
    let node = TestNode::start_with(|c| c.registration = RegistrationPolicy::Invite).await;
    let bob = User::new("bob");
    let resp = node.post("/v1/accounts", &bob.registration()).await;
    assert_problem(resp, 403, ProblemType::InviteRequired).await;
    let mut req = bob.registration();
    req.invite = Some("not-a-real-invite".into());
    let resp = node.post("/v1/accounts", &req).await;
    assert_problem(resp, 403, ProblemType::InviteRequired).await;

    let store = node.server.state().registry.store();
    let token = create_invite(store, std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    let mut req = bob.registration();
    req.invite = Some(token.clone());
    let resp = node.post("/v1/accounts", &req).await;
    assert_eq!(resp.status(), StatusCode::CREATED);

    let carol = User::new("carol");
    let mut req = carol.registration();
    req.invite = Some(token);
    let resp = node.post("/v1/accounts", &req).await;
    assert_problem(resp, 403, ProblemType::InviteRequired).await;
    node.assert_unknown(&bob, "carol@localhost").await;
}

#[tokio::test]
async fn a_used_invite_survives_a_taken_name() {
    let node = TestNode::start_with(|c| c.registration = RegistrationPolicy::Invite).await;
    let store = node.server.state().registry.store();
    let first = create_invite(store, std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    let second = create_invite(store, std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    let bob = User::new("bob");
    let mut req = bob.registration();
    req.invite = Some(first);
    assert_eq!(
        node.post("/v1/accounts", &req).await.status(),
        StatusCode::CREATED
    );
    let mut req = User::new("bob").registration();
    req.invite = Some(second.clone());
    let resp = node.post("/v1/accounts", &req).await;
    assert_problem(resp, 409, ProblemType::NameTaken).await;
    let mut req = User::new("carol").registration();
    req.invite = Some(second);
    assert_eq!(
        node.post("/v1/accounts", &req).await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn rotation_replaces_the_key_and_ends_old_sessions() {
    let node = TestNode::start().await;
    let mut alice = User::new("alice");
    alice.register(&node).await;
    alice.publish(&node, 3600).await;
    let old_token = alice.login(&node).await;
    let new_key = SecretKey::generate();

    let resp = node
        .post(&alice.path("/rotate"), &alice.rotation(&new_key))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let info: AccountInfo = resp.json().await.unwrap();
    assert_eq!(info.public_key, new_key.public());

    // The old key no longer works.
    let resp = node
        .put(&alice.path("/presence"), &alice.signed_presence(60))
        .await;
    assert_problem(resp, 400, ProblemType::InvalidSignature).await;
    let resp = node.post("/v1/sessions", &alice.login_request()).await;
    assert_problem(resp, 400, ProblemType::InvalidSignature).await;
    // Nor do sessions opened with it.
    let resp = node.lookup("alice@localhost", Some(&old_token)).await;
    assert_problem(resp, 401, ProblemType::Unauthenticated).await;

    alice.key = new_key;
    let found = node.lookup_json(&alice, "alice@localhost").await;
    assert_eq!(found["public_key"], alice.key.public().to_string());
    // The presence record signed by the old key went with it.
    assert_eq!(found["presence"], serde_json::Value::Null);
    alice.publish(&node, 60).await;
}

#[tokio::test]
async fn rotation_needs_the_new_keys_countersignature() {
    let node = TestNode::start().await;
    let alice = User::new("alice");
    alice.register(&node).await;
    let new_key = SecretKey::generate();
    let mut req = alice.rotation(&new_key);
    req.new_key_signature = req
        .rotation
        .countersign(&SecretKey::generate(), &alice.address);
    let resp = node.post(&alice.path("/rotate"), &req).await;
    assert_problem(resp, 400, ProblemType::InvalidSignature).await;
    // Rotation signed by a stranger instead of the current key.
    let stranger = User {
        key: SecretKey::generate(),
        address: alice.address.clone(),
    };
    let resp = node
        .post(&alice.path("/rotate"), &stranger.rotation(&new_key))
        .await;
    assert_problem(resp, 400, ProblemType::InvalidSignature).await;
    let found = node.lookup_json(&alice, "alice@localhost").await;
    assert_eq!(found["public_key"], alice.key.public().to_string());
}

#[tokio::test]
async fn a_replayed_rotation_is_refused() {
    let node = TestNode::start().await;
    let alice = User::new("alice");
    alice.register(&node).await;
    let new_key = SecretKey::generate();
    let req = alice.rotation(&new_key);
    assert_eq!(
        node.post(&alice.path("/rotate"), &req).await.status(),
        StatusCode::OK
    );
    // The same request again no longer verifies: the key it was signed with is gone.
    let resp = node.post(&alice.path("/rotate"), &req).await;
    assert_problem(resp, 400, ProblemType::InvalidSignature).await;
}

#[tokio::test]
async fn deletion_removes_the_account_and_its_sessions() {
    let node = TestNode::start().await;
    let alice = User::new("alice");
    let bob = User::new("bob");
    alice.register(&node).await;
    bob.register(&node).await;
    alice.publish(&node, 3600).await;
    let alice_token = alice.login(&node).await;

    // Signed by someone else: refused, nothing changes.
    let stranger = User {
        key: SecretKey::generate(),
        address: alice.address.clone(),
    };
    let resp = node
        .post(&alice.path("/delete"), &stranger.deletion())
        .await;
    assert_problem(resp, 400, ProblemType::InvalidSignature).await;
    let found = node.lookup_json(&bob, "alice@localhost").await;
    assert!(found["presence"].is_object());

    let deletion = alice.deletion();
    let resp = node.post(&alice.path("/delete"), &deletion).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    node.assert_unknown(&bob, "alice@localhost").await;
    let resp = node.lookup("bob@localhost", Some(&alice_token)).await;
    assert_problem(resp, 401, ProblemType::Unauthenticated).await;
    let resp = node.post(&alice.path("/delete"), &deletion).await;
    assert_problem(resp, 404, ProblemType::UnknownUser).await;

    // The name is free again.
    User::new("alice").register(&node).await;
}
