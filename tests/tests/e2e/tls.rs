//! `chat` against a node serving HTTPS with a private CA: trusted with `--ca-file` (saved by
//! `register`), refused without it.

use pd_e2e::{Node, Tls};

use super::home;

fn self_signed(dir: &std::path::Path) -> Tls {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let tls = Tls {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&tls.cert, certified.cert.pem()).unwrap();
    std::fs::write(&tls.key, certified.key_pair.serialize_pem()).unwrap();
    tls
}

#[test]
fn https_with_a_private_ca_works_with_ca_file_and_fails_without() {
    let dir = tempfile::tempdir().unwrap();
    let tls = self_signed(dir.path());
    let node = Node::start_tls(&dir.path().join("data"), "localhost", tls.clone())
        .expect("failed to start pd-server with TLS");
    assert!(node.url().starts_with("https://"));
    let ca = tls.cert.to_str().unwrap();

    let alice = home();
    let out = alice
        .run(&[
            "register",
            "alice@localhost",
            "--server",
            &node.url(),
            "--ca-file",
            ca,
        ])
        .success();
    assert!(out.stderr.is_empty(), "no warning for https: {out:#?}");
    let bob = home();
    let bob_fp = bob.fingerprint_after(&[
        "register",
        "bob@localhost",
        "--server",
        &node.url(),
        "--ca-file",
        ca,
    ]);
    // The CA file was saved with the account: later commands trust the node without it.
    bob.run(&["publish", "--endpoint", "tcp://192.0.2.50:7000"])
        .success();
    let json = alice
        .run(&["lookup", "bob@localhost", "--json"])
        .success()
        .json();
    assert_eq!(json["fingerprint"], bob_fp.as_str());

    // Without the CA the node's certificate is not trusted: the home server is unreachable.
    let carol = home();
    let out = carol.run(&["register", "carol@localhost", "--server", &node.url()]);
    assert_eq!(out.code, 4, "{out:#?}");
    assert!(out.stderr.contains("TLS"), "{out:#?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");
}
