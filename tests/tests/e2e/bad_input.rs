//! What `chat` does with bad input and failures: one `error: ...` line on stderr and the
//! documented exit code.

use super::{home, start_node};

fn assert_one_error_line(stderr: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr: {stderr:?}");
    assert!(lines[0].starts_with("error: "), "stderr: {stderr:?}");
}

#[test]
fn a_malformed_address_exits_2_with_one_line() {
    let (node, _data) = start_node();
    let alice = home();
    alice.register("alice@localhost", &node);
    for bad in [
        "bob",
        "bob@@localhost",
        "b ob@localhost",
        "bob@local_host",
        "@localhost",
    ] {
        let out = alice.run(&["lookup", bad]);
        assert_eq!(out.code, 2, "{bad}: {out:#?}");
        assert_one_error_line(&out.stderr);
        assert!(out.stdout.is_empty());
    }
    let out = home().run(&["register", "no-at-sign", "--server", &node.url()]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert_one_error_line(&out.stderr);
}

#[test]
fn a_bad_command_line_exits_2_with_one_line() {
    let alice = home();
    for args in [
        &["lookup"][..],
        &["frobnicate"],
        &["publish"],
        &["delete-account"],
    ] {
        let out = alice.run(args);
        assert_eq!(out.code, 2, "{args:?}: {out:#?}");
        assert_one_error_line(&out.stderr);
    }
}

#[test]
fn an_unknown_user_exits_3() {
    let (node, _data) = start_node();
    let alice = home();
    alice.register("alice@localhost", &node);
    let out = alice.run(&["lookup", "nobody@localhost"]);
    assert_eq!(out.code, 3, "{out:#?}");
    assert_one_error_line(&out.stderr);
    assert!(out.stderr.contains("unknown user"), "{out:#?}");
}

#[test]
fn a_home_server_that_is_down_exits_4() {
    let (mut node, _data) = start_node();
    let alice = home();
    alice.register("alice@localhost", &node);
    node.kill();
    for args in [
        &["lookup", "bob@localhost"][..],
        &["publish", "--endpoint", "tcp://192.0.2.40:7000"],
    ] {
        let out = alice.run(args);
        assert_eq!(out.code, 4, "{args:?}: {out:#?}");
        assert_one_error_line(&out.stderr);
    }
}

#[test]
fn the_home_server_refusing_exits_5() {
    let (node, _data) = start_node();
    let alice = home();
    alice.register("alice@localhost", &node);
    // The name is taken.
    let out = home().run(&["register", "alice@localhost", "--server", &node.url()]);
    assert_eq!(out.code, 5, "{out:#?}");
    assert_one_error_line(&out.stderr);
    // Another domain than the node's.
    let out = home().run(&["register", "carol@elsewhere.test", "--server", &node.url()]);
    assert_eq!(out.code, 5, "{out:#?}");
    assert_one_error_line(&out.stderr);
}

#[test]
fn the_identity_key_and_session_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let (node, _data) = start_node();
    let alice = home();
    alice.register("alice@localhost", &node);
    alice.run(&["lookup", "alice@localhost"]).success();
    for file in ["identity.key", "session.json"] {
        let mode = std::fs::metadata(alice.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
}
