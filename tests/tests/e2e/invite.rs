//! A node with `registration = "invite"`: `pd-server invite create` makes single-use
//! tokens that `chat register --invite` spends.

use pd_e2e::{Node, NodeOptions};

use super::home;

#[test]
fn registration_by_invite_is_single_use() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "registration = \"invite\"\n").unwrap();
    let options = NodeOptions {
        config: Some(config),
        ..NodeOptions::default()
    };
    let node = Node::start_with(&dir.path().join("data"), "localhost", options)
        .expect("failed to start pd-server");

    let alice = home();
    let out = alice.run(&["register", "alice@localhost", "--server", &node.url()]);
    assert_eq!(out.code, 5, "{out:#?}");
    assert!(out.stderr.contains("invite"), "{out:#?}");

    let invite = node.create_invite().expect("no invite");
    alice
        .run(&[
            "register",
            "alice@localhost",
            "--server",
            &node.url(),
            "--invite",
            &invite,
        ])
        .success();

    let bob = home();
    let out = bob.run(&[
        "register",
        "bob@localhost",
        "--server",
        &node.url(),
        "--invite",
        &invite,
    ]);
    assert_eq!(out.code, 5, "the invite was accepted twice: {out:#?}");
}
