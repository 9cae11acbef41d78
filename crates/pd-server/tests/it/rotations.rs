//! Key-rotation proofs in lookup answers: kept with every accepted rotation, served oldest
//! first, gone with the account, passed on by federation, and refused when forged.

use pd_proto::rotation::link_known_key;
use pd_proto::wire::{LookupResponse, RotationProof};
use pd_proto::{ProblemType, PublicKey, Rotation, SecretKey, Signed};
use pd_server::config::Config;
use reqwest::StatusCode;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::federation::{found, lookup_mode, network};
use crate::util::{TestNode, User, addr, assert_problem, seq};

/// Rotates `user`'s key to a new one at `node`; returns the key it replaced.
async fn rotate(node: &TestNode, user: &mut User) -> PublicKey {
    let new_key = SecretKey::generate();
    let resp = node
        .post(&user.path("/rotate"), &user.rotation(&new_key))
        .await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "{}",
        resp.text().await.unwrap()
    );
    std::mem::replace(&mut user.key, new_key).public()
}

fn proofs(answer: &serde_json::Value) -> Vec<RotationProof> {
    serde_json::from_value(answer["rotations"].clone()).unwrap()
}

#[tokio::test]
async fn lookups_carry_the_rotations_from_the_first_key_to_the_current_one() {
    let node = TestNode::start().await;
    let mut alice = User::new("alice");
    let bob = User::new("bob");
    alice.register(&node).await;
    bob.register(&node).await;
    let first = alice.key.public();
    let before = node.lookup_json(&bob, "alice@localhost").await;
    assert!(before.get("rotations").is_none(), "{before}");

    assert_eq!(rotate(&node, &mut alice).await, first);
    let second = alice.key.public();
    assert_eq!(rotate(&node, &mut alice).await, second);
    let current = alice.key.public();

    let answer = node.lookup_json(&bob, "alice@localhost").await;
    let chain = proofs(&answer);
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[0].old_key, first, "oldest first");
    assert_eq!(chain[1].old_key, second);
    let parsed: LookupResponse = serde_json::from_value(answer).unwrap();
    assert_eq!(parsed.public_key, current);
    assert_eq!(
        link_known_key(&alice.address, &first, &chain, &current),
        Ok(2)
    );
    assert_eq!(
        link_known_key(&alice.address, &second, &chain, &current),
        Ok(1)
    );
    assert!(link_known_key(&alice.address, &bob.key.public(), &chain, &current).is_err());

    // The proofs survive a restart (they were committed with the key change).
    let TestNode { server, dir, .. } = node;
    server.shutdown().await.unwrap();
    let node = TestNode::bind(Config::for_tests(dir.path()), dir).await;
    let again = node.lookup_json(&bob, "alice@localhost").await;
    assert_eq!(proofs(&again), chain);
}

#[tokio::test]
async fn a_deleted_and_registered_again_name_starts_a_fresh_chain() {
    let node = TestNode::start().await;
    let mut alice = User::new("alice");
    let bob = User::new("bob");
    alice.register(&node).await;
    bob.register(&node).await;
    rotate(&node, &mut alice).await;
    let resp = node.post(&alice.path("/delete"), &alice.deletion()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    let again = User::new("alice");
    again.register(&node).await;
    let answer = node.lookup_json(&bob, "alice@localhost").await;
    assert_eq!(answer["public_key"], again.key.public().to_string());
    assert!(answer.get("rotations").is_none(), "{answer}");
}

#[tokio::test]
async fn remote_answers_pass_the_rotations_on() {
    let nodes = network(&["a.test", "b.test"], |_, _| {}).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut bob = User::at("bob", "b.test");
    bob.register(b).await;
    let first = bob.key.public();
    rotate(b, &mut bob).await;
    rotate(b, &mut bob).await;

    let remote = found(a, "bob@b.test", None).await;
    assert_eq!(remote["source"], "remote");
    let chain = proofs(&remote);
    assert_eq!(
        link_known_key(&bob.address, &first, &chain, &bob.key.public()),
        Ok(2)
    );
    let cached = found(a, "bob@b.test", None).await;
    assert_eq!(cached["source"], "cache");
    assert_eq!(proofs(&cached), chain);
}

/// A node `a.test` whose route to `b.test` is `remote`.
async fn node_routing_to(remote: &MockServer) -> TestNode {
    TestNode::start_with(|c| {
        c.domain = pd_proto::Host::parse("a.test").unwrap();
        c.lookup_access = pd_server::config::LookupAccess::Public;
        c.federation
            .peers
            .push(format!("b.test={}", remote.uri()).parse().unwrap());
    })
    .await
}

#[tokio::test]
async fn a_remote_answer_with_a_forged_rotation_chain_is_refused() {
    let bob = addr("bob@b.test");
    let genuine = SecretKey::generate();
    let impostor = SecretKey::generate();
    // The impostor claims a rotation from Bob's genuine key to its own, but can only sign
    // it with its own key.
    let rotation = Signed::sign(
        &impostor,
        &Rotation {
            address: bob.clone(),
            new_key: impostor.public(),
            seq: seq(),
        },
    );
    let forged = RotationProof::new(
        genuine.public(),
        rotation.clone(),
        rotation.countersign(&impostor, &bob),
    );
    let answer = serde_json::json!({
        "address": "bob@b.test",
        "public_key": impostor.public(),
        "presence": null,
        "rotations": [forged],
        "source": "local",
        "ttl": 60,
    });
    let remote = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/federation/lookup/bob%40b.test"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .mount(&remote)
        .await;
    let node = node_routing_to(&remote).await;

    let resp = lookup_mode(&node, "bob@b.test", None).await;
    let problem = assert_problem(resp, 502, ProblemType::BadRemoteAnswer).await;
    assert!(problem.detail.contains("rotation"), "{}", problem.detail);
    // Nothing was cached.
    let resp = lookup_mode(&node, "bob@b.test", Some("cache-only")).await;
    assert_problem(resp, 404, ProblemType::NotCached).await;
}
