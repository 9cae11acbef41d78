//! Group conversations (issue 18) with the real binaries on two federated nodes: three and
//! then four people in one conversation through pipes, `/invite`, `/members`, `/leave`, a
//! member killed with SIGKILL, a hostile forwarding member (a real account speaking the
//! real TLS channel) that alters, replays, reorders and forges lines, an invitation naming
//! a key its home node does not vouch for, and the 16-member limit.

use chat::peer::cert::IdentityCert;
use chat::peer::frame::Frame;
use chat::peer::session;
use futures::{SinkExt as _, StreamExt as _};
use pd_e2e::{ChatProcess, ChatTerminal};
use pd_proto::group::{ChangeKind, GroupChange, GroupId, GroupLine, Member};
use pd_proto::{SecretKey, Signed};
use tokio::io::AsyncWriteExt as _;

use super::{addr, endpoint, key_of, listen, pair, start_node, user};

/// How often `needle` occurs in `text`.
fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

#[test]
fn three_then_four_people_talk_in_one_conversation_through_pipes() {
    let nodes = pair();
    let alice = user("alice@a.test", &nodes.a);
    let carol = user("carol@a.test", &nodes.a);
    let bob = user("bob@b.test", &nodes.b);
    let dave = user("dave@b.test", &nodes.b);
    // Bob and Dave allow Alice, so they join her groups at once; Carol types /join.
    let mut bob_l = listen(&bob, &["--allow", "alice@a.test"]);
    let mut carol_l = listen(&carol, &[]);
    let mut dave_l = listen(&dave, &["--allow", "alice@a.test"]);

    let mut hub = ChatProcess::start(&alice, &["connect", "bob@b.test", "carol@a.test"]).unwrap();
    bob_l.wait_stderr("* alice@a.test invites you to a conversation with carol@a.test\n");
    bob_l.wait_stderr("* joined #");
    carol_l.wait_stderr("* alice@a.test invites you to a conversation with bob@b.test\n");
    let status = carol_l.wait_stderr("type /join");
    // Carol checked Bob's key through her own home node, and remembers it as for two people.
    assert!(
        status.contains(&format!(
            "first contact with bob@b.test: remembering its key {}",
            bob.fingerprint()
        )),
        "{status}"
    );
    carol_l.send_line("/join").unwrap();
    hub.wait_stderr("bob@b.test joined");
    hub.wait_stderr("carol@a.test joined");

    hub.send_line("hello both").unwrap();
    bob_l.wait_stdout("alice@a.test: hello both\n");
    carol_l.wait_stdout("alice@a.test: hello both\n");
    bob_l.send_line("bob here").unwrap();
    carol_l.wait_stdout("bob@b.test: bob here\n");
    hub.wait_stdout("bob@b.test: bob here\n");
    carol_l.send_line("carol here").unwrap();
    bob_l.wait_stdout("carol@a.test: carol here\n");
    hub.wait_stdout("carol@a.test: carol here\n");

    // A fourth, invited from inside the conversation: the others are told and check its key.
    hub.send_line("/invite dave@b.test").unwrap();
    dave_l.wait_stderr(
        "* alice@a.test invites you to a conversation with bob@b.test, carol@a.test\n",
    );
    hub.wait_stderr("dave@b.test joined");
    bob_l.wait_stderr("alice@a.test added dave@b.test to #");
    carol_l.wait_stderr("alice@a.test added dave@b.test to #");
    dave_l.send_line("dave here").unwrap();
    hub.wait_stdout("dave@b.test: dave here\n");
    bob_l.wait_stdout("dave@b.test: dave here\n");
    carol_l.wait_stdout("dave@b.test: dave here\n");
    hub.send_line("/members").unwrap();
    let members = hub.wait_stderr("4 members of #");
    assert!(
        members.contains(&format!("bob@b.test ({})", bob.fingerprint())),
        "{members}"
    );
    assert!(
        members.contains(&format!("dave@b.test ({})", dave.fingerprint())),
        "{members}"
    );
    dave_l.send_line("/members").unwrap();
    let members = dave_l.wait_stderr("4 members of #");
    assert!(
        members.contains(&format!("carol@a.test ({})", carol.fingerprint())),
        "{members}"
    );

    // Carol leaves; the others continue.
    carol_l.send_line("/leave").unwrap();
    hub.wait_stderr("carol@a.test left #");
    bob_l.wait_stderr("carol@a.test left #");
    dave_l.wait_stderr("carol@a.test left #");

    // Dave is killed: reported and dropped; the others continue.
    dave_l.signal("KILL").unwrap();
    hub.wait_stderr("dropped dave@b.test");
    bob_l.wait_stderr("dave@b.test was dropped from #");
    bob_l.send_line("still here").unwrap();
    hub.wait_stdout("bob@b.test: still here\n");

    // Every line reached each other member exactly once, attributed to its author.
    let (bob_out, carol_out, hub_out) = (bob_l.stdout(), carol_l.stdout(), hub.stdout());
    assert_eq!(
        count(&bob_out, "alice@a.test: hello both\n"),
        1,
        "{bob_out}"
    );
    assert_eq!(
        count(&bob_out, "carol@a.test: carol here\n"),
        1,
        "{bob_out}"
    );
    assert_eq!(count(&bob_out, "dave@b.test: dave here\n"), 1, "{bob_out}");
    assert_eq!(count(&bob_out, "bob here"), 0, "{bob_out}");
    assert_eq!(
        count(&carol_out, "bob@b.test: bob here\n"),
        1,
        "{carol_out}"
    );
    assert_eq!(count(&carol_out, "carol here"), 0, "{carol_out}");
    assert_eq!(
        hub_out,
        "bob@b.test: bob here\ncarol@a.test: carol here\ndave@b.test: dave here\n\
         bob@b.test: still here\n"
    );

    // Alice leaves: the group ends for Bob, whose link to it she was.
    hub.close_input();
    let out = hub.wait();
    assert_eq!(out.code, 0, "{out:#?}");
    bob_l.wait_stderr("ended for you: alice@a.test was your link to it");
    assert!(
        !bob_l.stderr().contains("refused a post"),
        "{}",
        bob_l.stderr()
    );
}

#[test]
fn an_invite_turns_a_two_person_conversation_into_a_group() {
    let nodes = pair();
    let alice = user("alice@a.test", &nodes.a);
    let carol = user("carol@a.test", &nodes.a);
    let bob = user("bob@b.test", &nodes.b);
    let mut bob_l = listen(&bob, &["--allow", "alice@a.test"]);
    let mut carol_l = listen(&carol, &["--allow", "alice@a.test"]);

    let mut talker = ChatProcess::start(&alice, &["connect", "bob@b.test"]).unwrap();
    talker.wait_stderr("connected to bob@b.test");
    talker.send_line("just us").unwrap();
    bob_l.wait_stdout("alice@a.test: just us\n");
    talker.send_line("/invite carol@a.test").unwrap();
    talker.wait_stderr("the conversation with bob@b.test is now the group #");
    bob_l.wait_stderr("* alice@a.test invites you to a conversation with carol@a.test\n");
    carol_l.wait_stderr("* alice@a.test invites you to a conversation with bob@b.test\n");
    talker.wait_stderr("bob@b.test joined");
    talker.wait_stderr("carol@a.test joined");
    carol_l.send_line("hello bob").unwrap();
    bob_l.wait_stdout("carol@a.test: hello bob\n");
    talker.wait_stdout("carol@a.test: hello bob\n");
    bob_l.send_line("hello carol").unwrap();
    carol_l.wait_stdout("bob@b.test: hello carol\n");
    talker.send_line("all three").unwrap();
    bob_l.wait_stdout("alice@a.test: all three\n");
    carol_l.wait_stdout("alice@a.test: all three\n");
    let out = talker.wait();
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(
        out.stdout,
        "carol@a.test: hello bob\nbob@b.test: hello carol\n"
    );
}

#[test]
fn a_group_whose_last_other_member_vanished_ends_as_a_broken_conversation() {
    let nodes = pair();
    let alice = user("alice@a.test", &nodes.a);
    let carol = user("carol@a.test", &nodes.a);
    let bob = user("bob@b.test", &nodes.b);
    let bob_l = listen(&bob, &["--allow", "alice@a.test"]);
    let mut carol_l = listen(&carol, &["--allow", "alice@a.test"]);
    let hub = ChatProcess::start(&alice, &["connect", "bob@b.test", "carol@a.test"]).unwrap();
    hub.wait_stderr("bob@b.test joined");
    hub.wait_stderr("carol@a.test joined");

    // Carol leaves cleanly, Bob vanishes: Alice's conversation broke (exit 15), as a
    // two-person one does when its peer vanishes.
    carol_l.send_line("/leave").unwrap();
    hub.wait_stderr("carol@a.test left #");
    bob_l.signal("KILL").unwrap();
    hub.wait_stderr("nobody else is left in #");
    let out = hub.wait();
    assert_eq!(out.code, 15, "{out:#?}");
    assert!(out.stderr.contains("nobody else is left in #"), "{out:#?}");
}

#[test]
fn a_listener_in_several_conversations_labels_group_lines_and_switches_with_to() {
    let nodes = pair();
    let alice = user("alice@a.test", &nodes.a);
    let carol = user("carol@a.test", &nodes.a);
    let bob = user("bob@b.test", &nodes.b);
    let dave = user("dave@b.test", &nodes.b);
    let mut bob_l = listen(
        &bob,
        &["--allow", "alice@a.test", "--allow", "carol@a.test"],
    );
    let mut dave_l = listen(&dave, &["--allow", "alice@a.test"]);

    // Carol talks with Bob alone; then Alice starts a group with Bob and Dave.
    let mut with_carol = ChatProcess::start(&carol, &["connect", "bob@b.test"]).unwrap();
    bob_l.wait_stderr("talking to carol@a.test");
    let hub = ChatProcess::start(&alice, &["connect", "bob@b.test", "dave@b.test"]).unwrap();
    let status = hub.wait_stderr("; waiting for them to join");
    let label = status
        .split("to the conversation ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned();
    assert_eq!(label.len(), 7, "{label}");
    hub.wait_stderr("bob@b.test joined");
    hub.wait_stderr("dave@b.test joined");

    // Bob holds two conversations: group lines carry the label, two-person lines do not;
    // Dave holds one, so his lines have no label.
    dave_l.send_line("hi all").unwrap();
    bob_l.wait_stdout(&format!("{label} dave@b.test: hi all\n"));
    hub.wait_stdout("dave@b.test: hi all\n");
    with_carol.send_line("just for bob").unwrap();
    bob_l.wait_stdout("carol@a.test: just for bob\n");
    assert!(!bob_l.stdout().contains(&format!("{label} carol")));

    // Joining made the group Bob's current conversation; /to switches back to Carol.
    bob_l.send_line("/list").unwrap();
    bob_l.wait_stderr(&format!(
        "conversations: carol@a.test, {label} with alice@a.test, dave@b.test (current)"
    ));
    bob_l.send_line("to the group").unwrap();
    dave_l.wait_stdout("bob@b.test: to the group\n");
    hub.wait_stdout("bob@b.test: to the group\n");
    bob_l.send_line("/to carol@a.test").unwrap();
    bob_l.send_line("to carol").unwrap();
    with_carol.wait_stdout("bob@b.test: to carol\n");
    assert!(!dave_l.stdout().contains("to carol"));
    assert!(!with_carol.stdout().contains("to the group"));

    // The forwarding member vanishes: the group ends for the others, who are told; Bob's
    // conversation with Carol goes on.
    hub.signal("KILL").unwrap();
    bob_l.wait_stderr(&format!(
        "{label} ended for you: alice@a.test was your link to it (alice@a.test disconnected"
    ));
    dave_l.wait_stderr(&format!(
        "{label} ended for you: alice@a.test was your link to it"
    ));
    bob_l.send_line("carol, still there?").unwrap();
    with_carol.wait_stdout("bob@b.test: carol, still there?\n");
}

#[test]
fn at_a_terminal_the_prompt_names_the_group_and_its_size() {
    let (node, _data) = start_node();
    let alice = user("alice@localhost", &node);
    let bob = user("bob@localhost", &node);
    let carol = user("carol@localhost", &node);
    let carol_l = listen(&carol, &["--allow", "alice@localhost"]);
    let mut term = ChatTerminal::start(
        &bob,
        &[
            "listen",
            "--bind",
            "127.0.0.1:0",
            "--allow",
            "alice@localhost",
        ],
    )
    .unwrap();
    term.wait_prompt("no conversation");

    let mut hub =
        ChatProcess::start(&alice, &["connect", "bob@localhost", "carol@localhost"]).unwrap();
    let status = hub.wait_stderr("; waiting for them to join");
    let label = status
        .split("to the conversation ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned();
    term.wait_prompt(&format!("{label} (3 members)"));
    term.wait_screen("* alice@localhost invites you to a conversation with carol@localhost");
    hub.wait_stderr("carol@localhost joined");
    hub.send_line("hello bob").unwrap();
    term.wait_screen("alice@localhost: hello bob");
    term.type_line("hello all").unwrap();
    hub.wait_stdout("bob@localhost: hello all\n");
    term.type_line("/members").unwrap();
    term.wait_screen(&format!("* 3 members of {label}"));
    term.ctrl_c().unwrap();
    let (code, _) = term.wait_exit(std::time::Duration::from_secs(6)).unwrap();
    assert_eq!(code, 0, "{}", term.screen());
    hub.wait_stderr("bob@localhost left #");
    carol_l.wait_stderr("bob@localhost left #");
    assert!(
        !carol_l.stderr().contains("dropped"),
        "{}",
        carol_l.stderr()
    );
}

#[test]
fn a_hostile_forwarding_member_cannot_alter_replay_reorder_or_forge_lines_nor_vouch_for_a_key() {
    let nodes = pair();
    let mallory = user("mallory@a.test", &nodes.a);
    let carol = user("carol@a.test", &nodes.a);
    let bob = user("bob@b.test", &nodes.b);
    let _dave = user("dave@b.test", &nodes.b);
    let mut bob_l = listen(&bob, &[]);
    let mut carol_l = listen(&carol, &[]);
    let (bob_port, carol_port) = (bob_l.listening_port(), carol_l.listening_port());
    let mallory_key = key_of(&mallory);
    let identity = IdentityCert::new(&mallory_key, &addr("mallory@a.test")).unwrap();
    let (bob_key, carol_key) = (key_of(&bob).public(), key_of(&carol).public());
    let member = |address: &str, key| Member {
        address: addr(address),
        key,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    rt.block_on(async {
        let (mut to_bob, _) = session::connect(
            &addr("bob@b.test"),
            bob_key,
            &[endpoint(bob_port)],
            &identity,
        )
        .await
        .unwrap();
        let (mut to_carol, _) = session::connect(
            &addr("carol@a.test"),
            carol_key,
            &[endpoint(carol_port)],
            &identity,
        )
        .await
        .unwrap();

        // An invitation naming Carol with a key her home node does not vouch for.
        let group = GroupId::random();
        let lying = vec![
            member("mallory@a.test", mallory_key.public()),
            member("bob@b.test", bob_key),
            member("carol@a.test", mallory_key.public()),
        ];
        to_bob
            .send(Frame::GroupInvite {
                group: group.clone(),
                members: lying,
            })
            .await
            .unwrap();
        match to_bob.next().await {
            Some(Ok(Frame::GroupDecline { reason, .. })) => {
                assert!(reason.contains("carol@a.test"), "{reason}");
            }
            other => panic!("expected a decline, got {other:?}"),
        }
        let refusal = bob_l.wait_stderr("refused the invitation of mallory@a.test");
        assert!(
            refusal.contains("is not the key your home node vouches for"),
            "{refusal}"
        );

        // The honest invitation, joined by both.
        let group = GroupId::random();
        let members = vec![
            member("mallory@a.test", mallory_key.public()),
            member("bob@b.test", bob_key),
            member("carol@a.test", carol_key),
        ];
        for channel in [&mut to_bob, &mut to_carol] {
            channel
                .send(Frame::GroupInvite {
                    group: group.clone(),
                    members: members.clone(),
                })
                .await
                .unwrap();
        }
        bob_l.wait_stderr("type /join");
        carol_l.wait_stderr("type /join");
        bob_l.send_line("/join").unwrap();
        carol_l.send_line("/join").unwrap();
        for channel in [&mut to_bob, &mut to_carol] {
            assert!(matches!(
                channel.next().await,
                Some(Ok(Frame::GroupJoin { .. }))
            ));
        }

        // Carol says two lines; Mallory receives them signed by Carol.
        carol_l.send_line("pay bob 10").unwrap();
        carol_l.send_line("second").unwrap();
        let mut posts = Vec::new();
        while posts.len() < 2 {
            match to_carol.next().await {
                Some(Ok(Frame::GroupLine { post })) => posts.push(post),
                Some(Ok(Frame::Ping)) => {}
                other => panic!("expected Carol's lines, got {other:?}"),
            }
        }
        let (first, second) = (posts[0].clone(), posts[1].clone());

        // Altered: the text changed under Carol's signature.
        let altered = String::from_utf8(first.payload().to_vec())
            .unwrap()
            .replace("pay bob 10", "pay bob 99");
        let altered = Signed::<GroupLine>::from_parts(altered.into_bytes(), *first.signature());
        to_bob
            .send(Frame::GroupLine { post: altered })
            .await
            .unwrap();
        bob_l.wait_stderr("forwarded by mallory@a.test: its signature does not verify");
        // Forged: a line in Carol's name signed by Mallory.
        let forged = Signed::sign(
            &mallory_key,
            &GroupLine {
                group: group.clone(),
                author: addr("carol@a.test"),
                counter: 7,
                time: pd_proto::now_micros(),
                text: "forged".into(),
            },
        );
        to_bob
            .send(Frame::GroupLine { post: forged })
            .await
            .unwrap();
        // Reordered: the second line first; then the first is out of order.
        to_bob
            .send(Frame::GroupLine {
                post: second.clone(),
            })
            .await
            .unwrap();
        bob_l.wait_stdout("carol@a.test: second\n");
        to_bob
            .send(Frame::GroupLine {
                post: first.clone(),
            })
            .await
            .unwrap();
        // Replayed: the second line again.
        to_bob
            .send(Frame::GroupLine { post: second })
            .await
            .unwrap();
        bob_l.wait_stderr("replayed or out of order (counter 2, already saw 2)");
        bob_l.wait_stderr("replayed or out of order (counter 1, already saw 2)");
        let stderr = bob_l.stderr();
        assert_eq!(
            count(&stderr, "its signature does not verify"),
            2,
            "{stderr}"
        );
        // Of everything forwarded, only Carol's genuine line was printed, once.
        assert_eq!(bob_l.stdout(), "carol@a.test: second\n");

        // Mallory announces Dave with a key of her own: Bob's home node vouches for
        // another, so Dave's "lines" (signed with that key) are refused.
        let added = Signed::sign(
            &mallory_key,
            &GroupChange {
                group: group.clone(),
                author: addr("mallory@a.test"),
                counter: 1,
                time: pd_proto::now_micros(),
                change: ChangeKind::Added,
                member: addr("dave@b.test"),
                key: Some(mallory_key.public()),
            },
        );
        to_bob
            .send(Frame::GroupMember { post: added })
            .await
            .unwrap();
        bob_l.wait_stderr("cannot check the new member dave@b.test: the key given for dave@b.test");
        let as_dave = Signed::sign(
            &mallory_key,
            &GroupLine {
                group: group.clone(),
                author: addr("dave@b.test"),
                counter: 1,
                time: pd_proto::now_micros(),
                text: "I am dave".into(),
            },
        );
        to_bob
            .send(Frame::GroupLine { post: as_dave })
            .await
            .unwrap();
        bob_l.wait_stderr("dave@b.test is not a member whose key was checked");
        assert_eq!(bob_l.stdout(), "carol@a.test: second\n");
        let _ = to_carol.send(Frame::bye(None)).await;

        // An invitation of 17 members is outside the protocol's limits: Bob ends the
        // conversation with a protocol error and joins nothing.
        let mut crowd = members.clone();
        crowd.extend((0..14u8).map(|i| Member {
            address: addr(&format!("extra{i}@a.test")),
            key: SecretKey::from_seed(&[i + 10; 32]).public(),
        }));
        assert_eq!(crowd.len(), 17);
        let raw = serde_json::json!({
            "type": "group-invite",
            "group": GroupId::random(),
            "members": crowd,
        });
        let body = serde_json::to_vec(&raw).unwrap();
        let stream = to_bob.get_mut();
        stream
            .write_all(&u32::try_from(body.len()).unwrap().to_be_bytes())
            .await
            .unwrap();
        stream.write_all(&body).await.unwrap();
        stream.flush().await.unwrap();
        match to_bob.next().await {
            Some(Ok(Frame::Bye {
                reason: Some(reason),
            })) => {
                assert!(reason.contains("at most 16"), "{reason}");
            }
            other => panic!("expected a goodbye naming the limit, got {other:?}"),
        }
        bob_l.wait_stderr("a group holds at most 16");
    });
}

#[test]
fn a_conversation_holds_at_most_sixteen_members() {
    let nodes = pair();
    let alice = user("alice@a.test", &nodes.a);
    let addresses: Vec<String> = (0..16).map(|i| format!("u{i}@b.test")).collect();
    let mut args = vec!["connect"];
    args.extend(addresses.iter().map(String::as_str));
    let out = alice.run(&args);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(
        out.stderr
            .contains("a conversation holds at most 16 members, you included: 16 addresses given"),
        "{out:#?}"
    );
    assert_eq!(out.stdout, "");
}
