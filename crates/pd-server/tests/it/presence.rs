//! Publishing and withdrawing presence records, and everything that must be refused.

use std::time::Duration;

use pd_proto::records::Endpoint;
use pd_proto::signed::{Purpose, signing_bytes};
use pd_proto::wire::PublishResponse;
use pd_proto::{
    MAX_PRESENCE_TTL_SECS, Presence, ProblemType, PublicKey, SecretKey, Signed, Withdrawal,
};
use reqwest::StatusCode;

use crate::util::{TestNode, User, assert_problem, now_secs, seq};

/// The raw JSON text of the `presence` member of a lookup answer.
async fn raw_presence(node: &TestNode, viewer: &User, address: &str) -> String {
    let token = viewer.login(node).await;
    let text = node
        .lookup(address, Some(&token))
        .await
        .text()
        .await
        .unwrap();
    let start = text.find("\"presence\":").unwrap() + "\"presence\":".len();
    let end = text.find(",\"source\"").unwrap();
    text[start..end].to_owned()
}

#[tokio::test]
async fn a_published_record_is_served_byte_for_byte_and_verifies() {
    let node = TestNode::start().await;
    let alice = User::new("alice");
    let bob = User::new("bob");
    alice.register(&node).await;
    bob.register(&node).await;
    let signed = alice.signed_presence(3600);
    let resp = node.put(&alice.path("/presence"), &signed).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let published: PublishResponse = resp.json().await.unwrap();
    let record = signed.decode_unverified().unwrap();
    assert_eq!(published.seq, record.seq);
    assert_eq!(published.expires_at, record.expires_at);

    let raw = raw_presence(&node, &bob, "alice@localhost").await;
    assert_eq!(raw, serde_json::to_string(&signed).unwrap());
    let served: Signed<Presence> = serde_json::from_str(&raw).unwrap();
    assert_eq!(served.payload(), signed.payload());
    let found = node.lookup_json(&bob, "alice@localhost").await;
    let key: PublicKey = found["public_key"].as_str().unwrap().parse().unwrap();
    let verified = served.verify(&key, &alice.address).unwrap();
    assert_eq!(verified.endpoints[0].as_str(), "tcp://203.0.113.5:7000");
    let ttl = found["ttl"].as_u64().unwrap();
    assert!((3590..=3600).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn replayed_and_older_records_are_refused() {
    let node = TestNode::start().await;
    let alice = User::new("alice");
    alice.register(&node).await;
    let older = alice.signed_presence(600);
    let current = alice.publish(&node, 3600).await;
    let resp = node.put(&alice.path("/presence"), &current).await;
    assert_problem(resp, 409, ProblemType::Replayed).await;
    let resp = node.put(&alice.path("/presence"), &older).await;
    assert_problem(resp, 409, ProblemType::Replayed).await;
    let raw = raw_presence(&node, &alice, "alice@localhost").await;
    assert_eq!(raw, serde_json::to_string(&current).unwrap());
}

#[tokio::test]
async fn records_with_bad_dates_are_refused() {
    let node = TestNode::start().await;
    let alice = User::new("alice");
    alice.register(&node).await;
    let current = alice.publish(&node, 3600).await;
    let future = Presence {
        seq: seq() + 600_000_000,
        ..alice.presence(3600)
    };
    let too_long = alice.presence(MAX_PRESENCE_TTL_SECS + 3600);
    let expired = Presence {
        expires_at: now_secs() - 1,
        ..alice.presence(0)
    };
    for record in [future, too_long, expired] {
        let resp = node
            .put(&alice.path("/presence"), &Signed::sign(&alice.key, &record))
            .await;
        assert_problem(resp, 400, ProblemType::InvalidRecord).await;
    }
    let raw = raw_presence(&node, &alice, "alice@localhost").await;
    assert_eq!(raw, serde_json::to_string(&current).unwrap());
}

#[tokio::test]
async fn signatures_for_another_address_purpose_or_key_are_refused() {
    let node = TestNode::start().await;
    let alice = User::new("alice");
    let bob = User::new("bob");
    alice.register(&node).await;
    bob.register(&node).await;
    // Bob's own valid record, sent to Alice's path.
    let resp = node
        .put(&alice.path("/presence"), &bob.signed_presence(600))
        .await;
    assert_problem(resp, 400, ProblemType::InvalidSignature).await;
    // Alice's record signed for another purpose.
    let payload = serde_json::to_vec(&alice.presence(600)).unwrap();
    let sig = alice
        .key
        .sign(&signing_bytes(Purpose::Withdraw, &alice.address, &payload));
    let wrong_purpose = Signed::<Presence>::from_parts(payload.clone(), sig);
    let resp = node.put(&alice.path("/presence"), &wrong_purpose).await;
    assert_problem(resp, 400, ProblemType::InvalidSignature).await;
    // Signed by another key.
    let sig =
        SecretKey::generate().sign(&signing_bytes(Purpose::Presence, &alice.address, &payload));
    let other_key = Signed::<Presence>::from_parts(payload.clone(), sig);
    let resp = node.put(&alice.path("/presence"), &other_key).await;
    assert_problem(resp, 400, ProblemType::InvalidSignature).await;
    // A tampered payload under a valid signature.
    let good = alice.signed_presence(600);
    let mut tampered_payload = good.payload().to_vec();
    let pos = tampered_payload.iter().position(|b| *b == b'5').unwrap();
    tampered_payload[pos] = b'6';
    let tampered = Signed::<Presence>::from_parts(tampered_payload, *good.signature());
    let resp = node.put(&alice.path("/presence"), &tampered).await;
    assert_problem(resp, 400, ProblemType::InvalidSignature).await;

    let found = node.lookup_json(&bob, "alice@localhost").await;
    assert_eq!(found["presence"], serde_json::Value::Null);
}

#[tokio::test]
async fn malformed_envelopes_are_invalid_requests() {
    let node = TestNode::start().await;
    let alice = User::new("alice");
    alice.register(&node).await;
    for body in [
        serde_json::json!({"payload": "!!not base64!!", "signature": "AAAA"}),
        serde_json::json!({"payload": "e30", "signature": "AAAA"}),
        serde_json::json!({"payload": "e30"}),
        serde_json::json!([1, 2, 3]),
    ] {
        let resp = node.put(&alice.path("/presence"), &body).await;
        assert_problem(resp, 400, ProblemType::InvalidRequest).await;
    }
    // A well-formed envelope whose payload is not a presence record.
    let sig = alice.key.sign(b"whatever");
    let junk = Signed::<Presence>::from_parts(b"{}".to_vec(), sig);
    let resp = node.put(&alice.path("/presence"), &junk).await;
    assert_problem(resp, 400, ProblemType::InvalidRequest).await;
}

#[tokio::test]
async fn publishing_for_an_unknown_user_is_404() {
    let node = TestNode::start().await;
    let ghost = User::new("ghost");
    let resp = node
        .put(&ghost.path("/presence"), &ghost.signed_presence(600))
        .await;
    assert_problem(resp, 404, ProblemType::UnknownUser).await;
}

#[tokio::test]
async fn withdrawal_takes_the_user_offline_once() {
    let node = TestNode::start().await;
    let alice = User::new("alice");
    alice.register(&node).await;
    alice.publish(&node, 3600).await;
    let withdrawal = alice.withdrawal();
    let resp = node
        .post(&alice.path("/presence/withdraw"), &withdrawal)
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let found = node.lookup_json(&alice, "alice@localhost").await;
    assert_eq!(found["presence"], serde_json::Value::Null);
    let resp = node
        .post(&alice.path("/presence/withdraw"), &withdrawal)
        .await;
    assert_problem(resp, 409, ProblemType::Replayed).await;
    // A stale withdrawal (signed long ago) is refused even with a fresh-looking seq order.
    let stale = Signed::sign(
        &alice.key,
        &Withdrawal {
            address: alice.address.clone(),
            seq: seq() - 600_000_000,
        },
    );
    let resp = node.post(&alice.path("/presence/withdraw"), &stale).await;
    assert_problem(resp, 400, ProblemType::StaleRequest).await;
}

#[tokio::test]
async fn expired_records_are_never_served() {
    let node = TestNode::start().await;
    let alice = User::new("alice");
    alice.register(&node).await;
    let token = alice.login(&node).await;
    let record = Presence {
        address: alice.address.clone(),
        endpoints: vec![Endpoint::parse("tcp://203.0.113.5:7000").unwrap()],
        seq: seq(),
        expires_at: now_secs() + 2,
    };
    let resp = node
        .put(&alice.path("/presence"), &Signed::sign(&alice.key, &record))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let found: serde_json::Value = node
        .lookup("alice@localhost", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert!(found["presence"].is_object());
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let found: serde_json::Value = node
        .lookup("alice@localhost", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["presence"], serde_json::Value::Null);
    assert_eq!(found["ttl"], 60);
    // And the purge removes the row itself.
    assert_eq!(
        node.server.state().registry.purge_expired().await.unwrap(),
        1
    );
}

#[tokio::test]
async fn oversize_bodies_and_wrong_content_types_change_nothing() {
    let node = TestNode::start().await;
    let alice = User::new("alice");
    alice.register(&node).await;
    let current = alice.publish(&node, 3600).await;
    let huge = "x".repeat(64 * 1024);
    let resp = node
        .client
        .put(format!("{}{}", node.url, alice.path("/presence")))
        .header("content-type", "application/json")
        .body(format!("{{\"payload\":\"{huge}\",\"signature\":\"x\"}}"))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 413, ProblemType::PayloadTooLarge).await;
    let next = alice.signed_presence(600);
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let resp = node
            .client
            .put(format!("{}{}", node.url, alice.path("/presence")))
            .header("content-type", content_type)
            .body(serde_json::to_vec(&next).unwrap())
            .send()
            .await
            .unwrap();
        assert_problem(resp, 415, ProblemType::UnsupportedMediaType).await;
    }
    let resp = node
        .client
        .put(format!("{}{}", node.url, alice.path("/presence")))
        .body(serde_json::to_vec(&next).unwrap())
        .send()
        .await
        .unwrap();
    assert_problem(resp, 415, ProblemType::UnsupportedMediaType).await;
    let raw = raw_presence(&node, &alice, "alice@localhost").await;
    assert_eq!(raw, serde_json::to_string(&current).unwrap());
}

#[tokio::test]
async fn concurrent_publishes_with_one_seq_store_exactly_one() {
    let node = std::sync::Arc::new(TestNode::start().await);
    let alice = std::sync::Arc::new(User::new("alice"));
    alice.register(&node).await;
    let shared_seq = seq();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8u64 {
        let node = std::sync::Arc::clone(&node);
        let alice = std::sync::Arc::clone(&alice);
        tasks.spawn(async move {
            let record = Presence {
                seq: shared_seq,
                expires_at: now_secs() + 600 + i,
                ..alice.presence(600)
            };
            let resp = node
                .put(&alice.path("/presence"), &Signed::sign(&alice.key, &record))
                .await;
            resp.status()
        });
    }
    let statuses = tasks.join_all().await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let conflicts = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((ok, conflicts), (1, 7), "{statuses:?}");
}

#[tokio::test]
async fn slow_requests_time_out_with_a_problem() {
    use futures::StreamExt as _;
    let node = TestNode::start_with(|c| {
        c.limits.request_timeout = Duration::from_millis(300);
        c.limits.store_timeout = Duration::from_millis(200);
    })
    .await;
    let alice = User::new("alice");
    alice.register(&node).await;
    let chunks = futures::stream::iter([false, true]).then(|slow| async move {
        if slow {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{"))
    });
    let resp = node
        .client
        .put(format!("{}{}", node.url, alice.path("/presence")))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().contains_key("retry-after"));
    assert_problem(resp, 503, ProblemType::Timeout).await;
}
