//! Two users on one node: register, publish, look each other up, rotate a key, withdraw and
//! delete, all through the `chat` binary.

use pd_proto::wire::LookupResponse;

use super::{endpoints, home, start_node};

#[test]
fn two_users_register_publish_and_find_each_other() {
    let (node, _data) = start_node();
    let alice = home();
    let bob = home();
    let alice_fp = alice.register("alice@localhost", &node);
    let bob_fp = bob.register("Bob@LocalHost", &node);
    assert_ne!(alice_fp, bob_fp);

    bob.run(&[
        "publish",
        "--endpoint",
        "tcp://192.0.2.10:7000",
        "--endpoint",
        "tls://bob.example:7443",
        "--ttl",
        "10m",
    ])
    .success();

    let found = alice.run(&["lookup", "bob@localhost", "--json"]).success();
    let json = found.json();
    assert_eq!(json["address"], "bob@localhost");
    assert_eq!(json["fingerprint"], bob_fp.as_str());
    assert_eq!(json["online"], true);
    assert_eq!(
        endpoints(&json),
        ["tcp://192.0.2.10:7000", "tls://bob.example:7443"]
    );
    // The signed record is included, and verifies on its own.
    let response: LookupResponse = serde_json::from_value(json).unwrap();
    let bob_address = pd_proto::Address::parse("bob@localhost").unwrap();
    let verified = pd_proto::verify_lookup_answer(&bob_address, response.clone()).unwrap();
    let presence = verified.presence().expect("a presence record");
    assert_eq!(presence.endpoints.len(), 2);
    assert_eq!(response.public_key.fingerprint(), bob_fp);

    let text = alice.run(&["lookup", "bob@localhost"]).success().stdout;
    assert!(text.contains(&bob_fp), "{text}");
    assert!(text.contains("online until"), "{text}");
    assert!(text.contains("tcp://192.0.2.10:7000"), "{text}");

    // Alice has published nothing: bob sees her key, offline.
    let back = bob
        .run(&["lookup", "alice@localhost", "--json"])
        .success()
        .json();
    assert_eq!(back["fingerprint"], alice_fp.as_str());
    assert_eq!(back["online"], false);
    assert!(endpoints(&back).is_empty());
    let text = bob.run(&["lookup", "alice@localhost"]).success().stdout;
    assert!(text.contains("offline"), "{text}");
}

#[test]
fn a_rotated_key_is_what_others_find_next() {
    let (node, _data) = start_node();
    let alice = home();
    let bob = home();
    alice.register("alice@localhost", &node);
    let old_fp = bob.register("bob@localhost", &node);
    bob.run(&["publish", "--endpoint", "tcp://192.0.2.11:7000"])
        .success();
    let before = alice
        .run(&["lookup", "bob@localhost", "--json"])
        .success()
        .json();
    assert_eq!(before["fingerprint"], old_fp.as_str());

    let rotated = bob.run(&["rotate-key"]).success();
    let new_fp = bob.fingerprint();
    assert_ne!(new_fp, old_fp);
    assert!(rotated.stdout.contains(&new_fp), "{rotated:#?}");
    assert!(!bob.path().join("identity.key.old").exists());
    assert!(!bob.path().join("identity.key.new").exists());

    let after = alice
        .run(&["lookup", "bob@localhost", "--json"])
        .success()
        .json();
    assert_eq!(after["fingerprint"], new_fp.as_str());

    // Bob keeps working with the new key: publish, and look alice up (a new login).
    bob.run(&["publish", "--endpoint", "tcp://192.0.2.12:7000"])
        .success();
    bob.run(&["lookup", "alice@localhost"]).success();
    let latest = alice
        .run(&["lookup", "bob@localhost", "--json"])
        .success()
        .json();
    assert_eq!(endpoints(&latest), ["tcp://192.0.2.12:7000"]);
    assert_eq!(latest["fingerprint"], new_fp.as_str());
}

#[test]
fn withdraw_and_delete_are_seen_by_others() {
    let (node, _data) = start_node();
    let alice = home();
    let bob = home();
    alice.register("alice@localhost", &node);
    bob.register("bob@localhost", &node);
    bob.run(&["publish", "--endpoint", "tcp://192.0.2.13:7000"])
        .success();
    bob.run(&["withdraw"]).success();
    let json = alice
        .run(&["lookup", "bob@localhost", "--json"])
        .success()
        .json();
    assert_eq!(json["online"], false);

    bob.run(&["delete-account", "--yes"]).success();
    let gone = alice.run(&["lookup", "bob@localhost"]);
    assert_eq!(gone.code, 3, "{gone:#?}");
    // The name is free again, and bob's home can register anew.
    bob.register("bob@localhost", &node);
}
