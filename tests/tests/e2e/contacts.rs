//! Contacts (issue 11): the last verified lookup answers a home keeps, used by `connect`,
//! `listen` and `lookup` while the home node is down, listed and forgotten with
//! `chat contacts`.

use std::time::Duration;

use pd_e2e::ChatProcess;

use super::{start_node, user};

#[test]
fn with_the_home_node_down_stored_answers_keep_conversations_going() {
    let (mut node, _data) = start_node();
    let alice = user("alice@localhost", &node);
    let bob = user("bob@localhost", &node);
    let carol = user("carol@localhost", &node);
    let dave = user("dave@localhost", &node);
    let bob_fp = bob.fingerprint();

    // A short-lived record, so that it has expired by the time the node is gone.
    let mut listener =
        ChatProcess::start(&bob, &["listen", "--bind", "127.0.0.1:0", "--ttl", "2s"]).unwrap();
    listener.wait_stderr("; published");
    let out = alice.run_with_input(&["connect", "bob@localhost"], "hello\n");
    assert_eq!(out.code, 0, "{out:#?}");
    listener.wait_stdout("alice@localhost: hello\n");
    listener.wait_stderr("alice@localhost left");
    // Carol only looked Bob up; Dave never did.
    carol.run(&["lookup", "bob@localhost"]).success();

    let contacts = alice.run(&["contacts"]).success().stdout;
    let row = contacts
        .lines()
        .find(|l| l.starts_with("bob@localhost"))
        .unwrap_or_else(|| panic!("no row for bob: {contacts}"));
    assert!(row.contains(&bob_fp), "{contacts}");
    assert!(contacts.starts_with("ADDRESS"), "{contacts}");
    let listed = alice.run(&["contacts", "--json"]).success().json();
    assert_eq!(listed[0]["address"], "bob@localhost", "{listed}");
    assert!(listed[0]["last_talked"].is_u64(), "{listed}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(alice.path().join("contacts"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    node.kill();
    std::thread::sleep(Duration::from_millis(2_100));

    // Lookup: the stored answer, marked, with a warning.
    let out = alice.run(&["lookup", "bob@localhost"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("source:      stored"), "{out:#?}");
    assert!(out.stdout.contains(&bob_fp), "{out:#?}");
    assert!(
        out.stderr
            .starts_with("warning: home node unreachable: showing the answer stored"),
        "{out:#?}"
    );
    let json = alice
        .run(&["lookup", "bob@localhost", "--json"])
        .success()
        .json();
    assert_eq!(json["source"], "stored", "{json}");
    assert_eq!(json["fingerprint"], bob_fp.as_str(), "{json}");
    assert!(json["stored_at"].is_u64(), "{json}");

    // Connect: the stored record (expired by now) still leads to Bob, whose listener accepts
    // Alice by the key it stored for her.
    let out = alice.run_with_input(&["connect", "bob@localhost"], "while the node is down\n");
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr
            .contains("* home node unreachable: using the record of bob@localhost stored"),
        "{out:#?}"
    );
    assert!(
        out.stderr.contains("its presence record expired"),
        "{out:#?}"
    );
    listener.wait_stdout("alice@localhost: while the node is down\n");
    listener.wait_stderr("could not check alice@localhost with the home node");

    // Carol has Bob's record but Bob has none of hers: refused, with the reason.
    let out = carol.run_with_input(&["connect", "bob@localhost"], "hi\n");
    assert_eq!(out.code, 14, "{out:#?}");
    assert!(out.stderr.contains("no record of it is stored"), "{out:#?}");
    listener.wait_stderr("refused carol@localhost");
    assert!(
        !listener.stdout().contains("carol"),
        "{}",
        listener.stdout()
    );

    // Nothing stored: the home node's error, as before.
    let out = dave.run(&["connect", "bob@localhost"]);
    assert_eq!(out.code, 4, "{out:#?}");
    assert!(
        out.stderr
            .starts_with("error: cannot reach the home server")
    );

    // Forgetting the contact takes the fallback away.
    let out = alice
        .run(&["contacts", "remove", "bob@localhost"])
        .success();
    assert!(out.stdout.contains("forgot"), "{out:#?}");
    assert_eq!(alice.run(&["lookup", "bob@localhost"]).code, 4);
    let out = alice.run(&["contacts", "remove", "bob@localhost"]);
    assert_eq!(out.code, 1, "{out:#?}");

    // Leaving cannot withdraw the record at an unreachable node: said, with its code.
    listener.send_line("/quit").unwrap();
    let (out, _) = listener.wait_with_input_open(Duration::from_secs(6));
    assert_eq!(out.code, 4, "{out:#?}");
    assert!(
        out.stderr
            .contains("could not withdraw the presence record"),
        "{out:#?}"
    );
}
