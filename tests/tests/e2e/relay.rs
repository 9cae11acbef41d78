//! The relay of a home node (`federation-spec.md` section 13) with the real binaries: a
//! listener whose direct endpoint cannot be reached talks through its home node's relay,
//! several conversations share one slot, a restarted node cuts the relayed conversations
//! and the listener takes its slot again, limits are refused cleanly, and hostile relays
//! (one that flips a byte, one that answers in the listener's place) cannot read, alter or
//! impersonate.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use chat::peer::cert::IdentityCert;
use chat::peer::session;
use pd_e2e::{ChatHome, ChatProcess, Node, NodeOptions};
use pd_proto::{Address, SecretKey};

use super::{home, pair, user};

/// A port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `chat listen` publishing an endpoint nobody can reach (as behind NAT), plus its home
/// node's relay; returns once it holds its slot.
fn listen_behind_nat(home: &ChatHome, extra: &[&str]) -> ChatProcess {
    let unreachable = format!("127.0.0.1:{}", closed_port());
    let mut args = vec![
        "listen",
        "--bind",
        "127.0.0.1:0",
        "--advertise",
        unreachable.as_str(),
    ];
    args.extend_from_slice(extra);
    let process = ChatProcess::start(home, &args).expect("failed to start chat listen");
    process.wait_stderr("; published");
    process.wait_stderr("holding a relay slot on the relay of 127.0.0.1");
    process
}

fn connect_via_relay(home: &ChatHome, address: &str) -> ChatProcess {
    let process =
        ChatProcess::start(home, &["connect", address]).expect("failed to start chat connect");
    process.wait_stderr(&format!(
        "connected to {address} via the relay of 127.0.0.1"
    ));
    process
}

fn relay_endpoint(node: &Node) -> String {
    format!("relay+http://{}/", node.addr())
}

fn metric(node: &Node, name: &str) -> f64 {
    let text = reqwest::blocking_get(&format!("{}/metrics", node.url()));
    text.lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

mod reqwest {
    //! Plain blocking HTTP for the checks of answers (no client library needed).
    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;

    /// The status line and the whole answer to `GET url` (plain HTTP), with `headers`.
    pub(super) fn get(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let rest = url.strip_prefix("http://").unwrap();
        let (authority, path) = rest.split_at(rest.find('/').unwrap());
        let mut stream = TcpStream::connect(authority).unwrap();
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, answer)
    }

    pub(super) fn blocking_get(url: &str) -> String {
        get(url, &[]).1
    }
}

#[test]
fn a_listener_behind_nat_is_reached_through_its_home_relay_both_ways() {
    let nodes = pair();
    let alice = user("alice@a.test", &nodes.a);
    let bob = user("bob@b.test", &nodes.b);
    let mut listener = listen_behind_nat(&bob, &[]);

    let lookup = alice
        .run(&["lookup", "bob@b.test", "--json"])
        .success()
        .json();
    let endpoints = super::endpoints(&lookup);
    assert_eq!(endpoints.len(), 2, "{lookup}");
    assert!(endpoints[0].starts_with("tcp://127.0.0.1:"), "{lookup}");
    assert_eq!(endpoints[1], relay_endpoint(&nodes.b), "{lookup}");

    let mut talker = connect_via_relay(&alice, "bob@b.test");
    talker.send_line("hello bob, through the relay").unwrap();
    listener.wait_stdout("alice@a.test: hello bob, through the relay\n");
    let status = listener.wait_stderr("alice@a.test connected from the relay of 127.0.0.1");
    assert!(status.contains(&alice.fingerprint()), "{status}");
    listener.send_line("hello alice").unwrap();
    talker.wait_stdout("bob@b.test: hello alice\n");
    assert!(metric(&nodes.b, "pd_relay_slots") >= 1.0);
    assert!(metric(&nodes.b, "pd_relay_conversations") >= 1.0);
    let out = talker.wait();
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stdout, "bob@b.test: hello alice\n");
    listener.wait_stderr("alice@a.test left");
    assert!(metric(&nodes.b, "pd_relay_bytes_total") > 1000.0);

    // A plain pipe through the relay: delivered, clean exit at the end of the input.
    let out = alice.run_with_input(&["connect", "bob@b.test"], "piped\n");
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr
            .contains("connected to bob@b.test via the relay of 127.0.0.1"),
        "{out:#?}"
    );
    listener.wait_stdout("alice@a.test: piped\n");
}

#[test]
fn one_slot_carries_several_conversations_at_once_and_relay_only_hides_the_address() {
    let nodes = pair();
    let bob = user("bob@b.test", &nodes.b);
    let callers: Vec<(String, ChatHome)> = ["alice@a.test", "carol@a.test", "dave@b.test"]
        .iter()
        .map(|a| {
            let node = if a.ends_with("b.test") {
                &nodes.b
            } else {
                &nodes.a
            };
            ((*a).to_owned(), user(a, node))
        })
        .collect();
    let mut listener =
        ChatProcess::start(&bob, &["listen", "--bind", "127.0.0.1:0", "--relay-only"])
            .expect("failed to start chat listen");
    listener.wait_stderr("holding a relay slot on the relay of 127.0.0.1");
    let lookup = callers[0]
        .1
        .run(&["lookup", "bob@b.test", "--json"])
        .success()
        .json();
    assert_eq!(
        super::endpoints(&lookup),
        [relay_endpoint(&nodes.b)],
        "no direct endpoint, so no IP address of bob's: {lookup}"
    );

    let mut talkers: Vec<ChatProcess> = callers
        .iter()
        .map(|(_, home)| connect_via_relay(home, "bob@b.test"))
        .collect();
    for ((address, _), talker) in callers.iter().zip(&mut talkers) {
        talker.send_line(&format!("from {address}")).unwrap();
        listener.wait_stdout(&format!("{address}: from {address}\n"));
    }
    assert_eq!(metric(&nodes.b, "pd_relay_slots"), 1.0);
    assert_eq!(metric(&nodes.b, "pd_relay_conversations"), 3.0);
    for (address, _) in &callers {
        listener.send_line(&format!("/to {address}")).unwrap();
        listener.send_line(&format!("for {address}")).unwrap();
    }
    for ((address, _), talker) in callers.iter().zip(&talkers) {
        talker.wait_stdout(&format!("bob@b.test: for {address}\n"));
    }
    for ((address, _), talker) in callers.iter().zip(&talkers) {
        for (other, _) in &callers {
            if other != address {
                assert!(!talker.stdout().contains(&format!("for {other}")));
            }
        }
    }
}

#[test]
fn a_restarted_home_node_cuts_relayed_conversations_and_the_slot_comes_back() {
    let mut nodes = pair();
    let alice = user("alice@a.test", &nodes.a);
    let bob = user("bob@b.test", &nodes.b);
    let listener = listen_behind_nat(&bob, &[]);
    let mut talker = connect_via_relay(&alice, "bob@b.test");
    talker.send_line("before").unwrap();
    listener.wait_stdout("alice@a.test: before\n");

    nodes.b.restart().expect("failed to restart node b");

    let (out, _) = talker.wait_with_input_open(Duration::from_secs(30));
    assert_eq!(out.code, 15, "the lost conversation is exit 15: {out:#?}");
    assert!(out.stderr.contains("bob@b.test disconnected"), "{out:#?}");
    listener.wait_stderr("alice@a.test disconnected");
    listener.wait_stderr("lost the relay slot on the relay of 127.0.0.1");
    listener.wait_stderr("re-established the relay slot on the relay of 127.0.0.1");

    let out = alice.run_with_input(&["connect", "bob@b.test"], "after\n");
    assert_eq!(out.code, 0, "{out:#?}");
    listener.wait_stdout("alice@a.test: after\n");
    assert!(!listener.stdout().contains("alice@a.test: after\nalice"));
}

fn node_with_config(dir: &Path, config: &str) -> Node {
    let file = dir.join("node.toml");
    std::fs::write(&file, config).unwrap();
    Node::start_with(
        &dir.join("data"),
        "localhost",
        NodeOptions {
            config: Some(file),
            ..NodeOptions::default()
        },
    )
    .expect("failed to start pd-server")
}

#[test]
fn relay_limits_and_bad_requests_are_refused_with_problems() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_config(
        dir.path(),
        "admin_listen = \"127.0.0.1:0\"\n[relay]\nmax_conversations_per_user = 1\nmax_slots_per_user = 1\n",
    );
    let alice = user("alice@localhost", &node);
    let carol = user("carol@localhost", &node);
    let bob = user("bob@localhost", &node);
    let listener = listen_behind_nat(&bob, &[]);
    let mut talker = connect_via_relay(&alice, "bob@localhost");
    talker.send_line("xyzzy plugh").unwrap();
    listener.wait_stdout("alice@localhost: xyzzy plugh\n");

    // A second relayed conversation for bob is over his limit: carol is told why.
    let out = carol.run_with_input(&["connect", "bob@localhost"], "two\n");
    assert_eq!(out.code, 11, "{out:#?}");
    assert!(
        out.stderr
            .contains("bob@localhost already has 1 relayed conversation(s) open"),
        "{out:#?}"
    );
    // A second slot for bob is over his limit too (his listener holds one).
    let second = ChatProcess::start(&bob, &["listen", "--bind", "127.0.0.1:0", "--relay-only"])
        .expect("failed to start chat listen");
    second.wait_stderr("could not take a slot on the relay of 127.0.0.1");
    second.wait_stderr("bob@localhost already holds 1 relay slot(s), the most allowed");
    drop(second);

    let base = node.url();
    // Not an upgrade.
    let (status, answer) = reqwest::get(&format!("{base}/v1/relay/bob@localhost"), &[]);
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("invalid-request"), "{answer}");
    let upgrade = [("Connection", "Upgrade"), ("Upgrade", "pd-relay/1")];
    // A slot without the account's session token.
    let (status, answer) = reqwest::get(&format!("{base}/v1/relay/bob@localhost/slot"), &upgrade);
    assert_eq!(status, 401, "{answer}");
    assert!(answer.contains("unauthenticated"), "{answer}");
    // Nobody listens for carol; nobody is dan.
    let (status, answer) = reqwest::get(&format!("{base}/v1/relay/carol@localhost"), &upgrade);
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer.contains("carol@localhost is not listening through this relay"),
        "{answer}"
    );
    let (status, answer) = reqwest::get(&format!("{base}/v1/relay/dan@localhost"), &upgrade);
    assert_eq!(status, 404, "{answer}");
    assert!(answer.contains("unknown-user"), "{answer}");
    // Another domain's user is not this relay's.
    let (status, answer) = reqwest::get(&format!("{base}/v1/relay/bob@b.test"), &upgrade);
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("wrong-domain"), "{answer}");
    // A made-up conversation id.
    let (status, answer) = reqwest::get(
        &format!("{base}/v1/relay/bob@localhost/accept/{}", "0".repeat(32)),
        &upgrade,
    );
    assert_eq!(status, 401, "{answer}");
    assert!(
        metric(
            &node,
            "pd_relay_refusals_total{reason=\"user_conversations\"}"
        ) >= 1.0
    );

    // The admin page lists the slot and the conversation: addresses and bytes, no content.
    let log = node.log();
    let admin = log
        .split("admin.addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the node names its admin address")
        .to_owned();
    let page = reqwest::blocking_get(&format!("http://{admin}/relay"));
    assert!(page.contains("<h1>Relay</h1>"), "{page}");
    assert_eq!(page.matches(r#"<tr class="slot">"#).count(), 1, "{page}");
    assert_eq!(
        page.matches(r#"<tr class="conversation">"#).count(),
        1,
        "{page}"
    );
    assert!(page.contains("bob@localhost"), "{page}");
    assert!(!page.contains("xyzzy"), "never the content: {page}");
    let json = reqwest::blocking_get(&format!("http://{admin}/admin/relay"));
    assert!(json.contains(r#""address":"bob@localhost""#), "{json}");

    // The first conversation was not disturbed.
    talker.send_line("still here").unwrap();
    listener.wait_stdout("alice@localhost: still here\n");
}

#[test]
fn a_node_without_relay_says_so_and_its_users_publish_no_relay_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_config(
        dir.path(),
        "[relay]\nenabled = false\nconnects_per_second = 1\nconnect_burst = 2\n",
    );
    let bob = user("bob@localhost", &node);
    let well_known = reqwest::blocking_get(&format!("{}/.well-known/pd", node.url()));
    assert!(well_known.contains("\"relay\":false"), "{well_known}");

    let out = bob.run(&["listen", "--bind", "127.0.0.1:0", "--relay-only"]);
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr.contains(
            "--relay-only needs a relay on the home node, but the home node does not offer a relay"
        ),
        "{out:#?}"
    );
    let listener = ChatProcess::start(&bob, &["listen", "--bind", "127.0.0.1:0"]).unwrap();
    listener.wait_stderr("publishing no relay endpoint: the home node does not offer a relay");
    listener.wait_stderr("; published");
    let lookup = bob
        .run(&["lookup", "bob@localhost", "--json"])
        .success()
        .json();
    let endpoints = super::endpoints(&lookup);
    assert!(
        endpoints.iter().all(|e| e.starts_with("tcp://")),
        "{lookup}"
    );
    let upgrade = [("Connection", "Upgrade"), ("Upgrade", "pd-relay/1")];
    let (status, answer) =
        reqwest::get(&format!("{}/v1/relay/bob@localhost", node.url()), &upgrade);
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer.contains("this node does not offer a relay"),
        "{answer}"
    );
    // Relay requests are rate limited per client address (a burst of 2 here).
    let statuses: Vec<u16> = (0..3)
        .map(|_| reqwest::get(&format!("{}/v1/relay/bob@localhost", node.url()), &upgrade).0)
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[test]
fn the_relay_works_over_the_nodes_https_too() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let tls = pd_e2e::Tls {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    std::fs::write(&tls.cert, certified.cert.pem()).unwrap();
    std::fs::write(&tls.key, certified.key_pair.serialize_pem()).unwrap();
    let node = Node::start_tls(&dir.path().join("data"), "localhost", tls.clone())
        .expect("failed to start pd-server with TLS");
    let ca = tls.cert.to_str().unwrap();
    let register = |address: &str| {
        let home = home();
        home.run(&[
            "register",
            address,
            "--server",
            &node.url(),
            "--ca-file",
            ca,
        ])
        .success();
        home
    };
    let alice = register("alice@localhost");
    let bob = register("bob@localhost");
    let mut listener =
        ChatProcess::start(&bob, &["listen", "--bind", "127.0.0.1:0", "--relay-only"]).unwrap();
    listener.wait_stderr("holding a relay slot on the relay of localhost");
    let lookup = alice
        .run(&["lookup", "bob@localhost", "--json"])
        .success()
        .json();
    assert_eq!(
        super::endpoints(&lookup),
        [format!("relay+https://localhost:{}/", node.addr().port())],
        "{lookup}"
    );
    let mut talker =
        ChatProcess::start(&alice, &["connect", "bob@localhost"]).expect("failed to connect");
    talker.wait_stderr("connected to bob@localhost via the relay of localhost");
    talker.send_line("over https").unwrap();
    listener.wait_stdout("alice@localhost: over https\n");
    listener.send_line("and back").unwrap();
    talker.wait_stdout("bob@localhost: and back\n");
    let out = talker.wait();
    assert_eq!(out.code, 0, "{out:#?}");
}

/// A relay in front of `upstream` that passes everything through, except that on each
/// relayed conversation (a `GET /v1/relay/{address}` answered 101) it flips one byte of the
/// first encrypted TLS record coming from the listener. Runs on its own threads.
fn tampering_proxy(upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { break };
            thread::spawn(move || proxy_one(client, upstream));
        }
    });
    addr
}

fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    head
}

fn proxy_one(mut client: TcpStream, upstream: SocketAddr) {
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    let request = read_head(&mut client);
    let line = String::from_utf8_lossy(&request)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
    let relayed = path.starts_with("/v1/relay/") && path.matches('/').count() == 3;
    if server.write_all(&request).is_err() {
        return;
    }
    let (mut client_in, mut server_out) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    thread::spawn(move || {
        let _ = std::io::copy(&mut client_in, &mut server_out);
        let _ = server_out.shutdown(std::net::Shutdown::Write);
    });
    let answer = read_head(&mut server);
    if client.write_all(&answer).is_err() {
        return;
    }
    if relayed && answer.starts_with(b"HTTP/1.1 101") {
        // TLS records from the listener: flip the last byte of the first encrypted one.
        let mut flipped = false;
        loop {
            let mut header = [0u8; 5];
            if server.read_exact(&mut header).is_err() {
                break;
            }
            let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            let mut body = vec![0u8; len];
            if server.read_exact(&mut body).is_err() {
                break;
            }
            if header[0] == 23 && !flipped && len > 0 {
                body[len - 1] ^= 0x01;
                flipped = true;
            }
            if client.write_all(&header).is_err() || client.write_all(&body).is_err() {
                break;
            }
        }
    } else {
        let _ = std::io::copy(&mut server, &mut client);
    }
    let _ = client.shutdown(std::net::Shutdown::Write);
}

#[test]
fn a_relay_that_flips_a_byte_breaks_the_channel_on_both_sides_and_nothing_is_delivered() {
    let nodes = pair();
    let alice = user("alice@a.test", &nodes.a);
    let bob = user("bob@b.test", &nodes.b);
    let listener = listen_behind_nat(&bob, &["--relay-only"]);
    let proxy = tampering_proxy(nodes.b.addr());
    // Bob's record now names the tampering relay (in front of his real one).
    bob.run(&["publish", "--endpoint", &format!("relay+http://{proxy}/")])
        .success();

    let out = alice.run_with_input(&["connect", "bob@b.test"], "secret\n");
    assert_eq!(out.code, 11, "{out:#?}");
    assert!(out.stderr.contains("the relay of 127.0.0.1"), "{out:#?}");
    assert!(!out.stderr.contains("connected to bob@b.test"), "{out:#?}");
    listener.wait_stderr("incoming connection from the relay of 127.0.0.1 failed");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(listener.stdout(), "", "nothing may be delivered");
    assert_eq!(out.stdout, "", "nothing may be delivered");
}

#[test]
fn a_relay_answering_in_the_listeners_place_fails_the_identity_check() {
    let nodes = pair();
    let alice = user("alice@a.test", &nodes.a);
    let bob = user("bob@b.test", &nodes.b);
    // The fake relay answers the upgrade, then presents its own key for bob's address.
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_addr = fake.local_addr().unwrap();
    let bob_address = Address::parse("bob@b.test").unwrap();
    let impostor = IdentityCert::new(&SecretKey::generate(), &bob_address).unwrap();
    let acceptor = session::acceptor(&impostor).unwrap();
    let served = thread::spawn(move || {
        let (mut stream, _) = fake.accept().unwrap();
        let head = read_head(&mut stream);
        assert!(
            head.starts_with(b"GET /v1/relay/bob@b.test HTTP/1.1"),
            "{head:?}"
        );
        stream
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: pd-relay/1\r\n\r\n")
            .unwrap();
        stream.set_nonblocking(true).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let stream = tokio::net::TcpStream::from_std(stream).unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            session::handshake(stream, acceptor, deadline).await.is_ok()
        })
    });
    bob.run(&[
        "publish",
        "--endpoint",
        &format!("relay+http://{fake_addr}/"),
    ])
    .success();

    let started = Instant::now();
    let out = alice.run_with_input(&["connect", "bob@b.test"], "secret\n");
    assert_eq!(out.code, 12, "{out:#?}");
    assert!(out.stderr.contains("possible impersonation"), "{out:#?}");
    assert!(out.stderr.contains(&bob.fingerprint()), "{out:#?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        !served.join().unwrap(),
        "the handshake with the impostor must fail"
    );
}

/// A group (spec 12.6) runs over the same channels, so a member behind NAT takes part
/// through its home node's relay like anyone else.
#[test]
fn a_group_member_behind_nat_takes_part_through_the_relay() {
    let nodes = pair();
    let alice = user("alice@a.test", &nodes.a);
    let bob = user("bob@b.test", &nodes.b);
    let carol = user("carol@a.test", &nodes.a);
    let mut bob_l = listen_behind_nat(&bob, &["--allow", "alice@a.test"]);
    let mut carol_l = super::listen(&carol, &["--allow", "alice@a.test"]);

    let hub = ChatProcess::start(&alice, &["connect", "bob@b.test", "carol@a.test"]).unwrap();
    hub.wait_stderr("connected to bob@b.test via the relay of 127.0.0.1");
    hub.wait_stderr("bob@b.test joined");
    hub.wait_stderr("carol@a.test joined");
    bob_l.send_line("hi from behind the NAT").unwrap();
    carol_l.wait_stdout("bob@b.test: hi from behind the NAT\n");
    hub.wait_stdout("bob@b.test: hi from behind the NAT\n");
    carol_l.send_line("hi bob").unwrap();
    bob_l.wait_stdout("carol@a.test: hi bob\n");
    let out = hub.wait();
    assert_eq!(out.code, 0, "{out:#?}");
}
