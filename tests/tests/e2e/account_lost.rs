//! Regression of issue 12: a user whose account the home node lost (its data restored from
//! an older backup) is told so plainly, in those words, and gets the account back with
//! `chat register --again`, with the same key.

use std::process::Command;

use pd_e2e::binaries;

use super::{home, start_node};

/// Replaces the files of `data_dir` with those of `backup`.
fn restore(data_dir: &std::path::Path, backup: &std::path::Path) {
    for entry in std::fs::read_dir(data_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
    for entry in std::fs::read_dir(backup).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, data_dir.join(path.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn an_account_the_node_lost_is_named_and_registered_again_with_the_same_key() {
    let (mut node, data) = start_node();
    let bob = home();
    let alice = home();
    bob.register("bob@localhost", &node);
    // The backup predates alice's account.
    let backup = tempfile::tempdir().unwrap();
    let copy = backup.path().join("copy");
    let out = Command::new(&binaries().pd_server)
        .arg("backup")
        .arg(&copy)
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fingerprint = alice.register("alice@localhost", &node);
    alice.run(&["lookup", "bob@localhost"]).success();

    node.stop().unwrap();
    restore(data.path(), &copy);
    node.restart().unwrap();

    // Every command about alice's own account says what happened and what to do.
    let lost = alice.run(&["lookup", "bob@localhost"]);
    assert_eq!(lost.code, 16, "{lost:#?}");
    let message = lost.stderr.trim();
    assert!(
        message.contains("no longer knows your account alice@localhost"),
        "{message}"
    );
    assert!(message.contains("chat register --again"), "{message}");
    assert!(!message.contains("unknown user"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
    let publish = alice.run(&["publish", "--endpoint", "tcp://192.0.2.4:7000"]);
    assert_eq!(publish.code, 16, "{publish:#?}");

    // A plain `register` says the home already holds the account, and points at --again.
    let plain = alice.run(&["register", "alice@localhost", "--server", &node.url()]);
    assert_ne!(plain.code, 0);
    assert!(plain.stderr.contains("--again"), "{plain:#?}");

    // `register --again` brings the account back with the same key.
    let again = alice.run(&["register", "--again"]).success();
    assert!(again.stdout.contains("registered again"), "{again:#?}");
    assert_eq!(alice.fingerprint(), fingerprint);
    alice.run(&["lookup", "bob@localhost"]).success();
    let found = bob
        .run(&["lookup", "alice@localhost", "--json"])
        .success()
        .json();
    assert_eq!(found["fingerprint"], fingerprint.as_str());

    // Once more: nothing to do.
    let noop = alice.run(&["register", "--again"]).success();
    assert!(noop.stdout.contains("nothing to do"), "{noop:#?}");
}
