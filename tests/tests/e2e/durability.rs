//! The node keeps what it acknowledged: across a graceful restart, and across `kill -9`
//! right after a write.

use super::{endpoints, home, start_node};

#[test]
fn data_survives_a_restart() {
    let (mut node, _data) = start_node();
    let alice = home();
    let bob = home();
    alice.register("alice@localhost", &node);
    let bob_fp = bob.register("bob@localhost", &node);
    bob.run(&["publish", "--endpoint", "tcp://192.0.2.20:7000"])
        .success();
    alice.run(&["lookup", "bob@localhost"]).success();

    assert!(
        node.stop().expect("stop failed"),
        "the node did not exit cleanly on SIGTERM; its log:\n{}",
        node.log()
    );
    node.restart().expect("restart failed");

    // Alice's cached session token may not survive the restart; chat logs in again.
    let json = alice
        .run(&["lookup", "bob@localhost", "--json"])
        .success()
        .json();
    assert_eq!(json["fingerprint"], bob_fp.as_str());
    assert_eq!(endpoints(&json), ["tcp://192.0.2.20:7000"]);
    // Both accounts still work for signed operations.
    bob.run(&["publish", "--endpoint", "tcp://192.0.2.21:7000"])
        .success();
    bob.run(&["lookup", "alice@localhost"]).success();
}

#[test]
fn an_acknowledged_publish_survives_kill_9() {
    let (mut node, _data) = start_node();
    let alice = home();
    let bob = home();
    alice.register("alice@localhost", &node);
    let bob_fp = bob.register("bob@localhost", &node);

    bob.run(&["publish", "--endpoint", "tcp://192.0.2.30:7000"])
        .success();
    // chat exited 0: the node acknowledged the write. Kill the node at once.
    node.kill();
    node.restart().expect("restart failed");

    let json = alice
        .run(&["lookup", "bob@localhost", "--json"])
        .success()
        .json();
    assert_eq!(json["fingerprint"], bob_fp.as_str());
    assert_eq!(json["online"], true);
    assert_eq!(endpoints(&json), ["tcp://192.0.2.30:7000"]);
}

#[test]
fn an_acknowledged_registration_and_rotation_survive_kill_9() {
    let (mut node, _data) = start_node();
    let alice = home();
    let bob = home();
    alice.register("alice@localhost", &node);
    bob.register("bob@localhost", &node);
    bob.run(&["rotate-key"]).success();
    let new_fp = bob.fingerprint();
    node.kill();
    node.restart().expect("restart failed");

    let json = alice
        .run(&["lookup", "bob@localhost", "--json"])
        .success()
        .json();
    assert_eq!(json["fingerprint"], new_fp.as_str());
    // The rotated key is the one the node accepts.
    bob.run(&["publish", "--endpoint", "tcp://192.0.2.31:7000"])
        .success();
}
