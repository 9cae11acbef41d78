//! The scenarios, each run against the shared cluster by the harness in `main.rs`. Each one
//! leaves the cluster as it found it (the harness heals it anyway after a failure).
//!
//! `chat` exit codes used here (README): 0 success, 3 unknown user, 4 home server
//! unreachable, 6 the user's home node unreachable, 8 refused by federation policy.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::{Cluster, Run, domain_of};

/// A lookup that cannot be answered from a cache (no such user, never asked before) must
/// fail within this time when the user's node is down: the outbound deadline of the test
/// configuration (`request_timeout = "3s"`) plus `docker exec` itself.
const COLD_LOOKUP_BOUND: Duration = Duration::from_secs(5);

/// The shared users: (client container, name, address, endpoint).
const USERS: [(&str, &str, &str, &str); 3] = [
    ("alice", "alice", "alice@a.test", "tcp://198.51.100.1:7001"),
    ("bob", "bob", "bob@b.test", "tcp://198.51.100.2:7002"),
    ("carol", "carol", "carol@c.test", "tcp://198.51.100.3:7003"),
];

/// The node a client's users live on.
fn home_of(client: &str) -> &'static str {
    match client {
        "alice" => "a",
        "bob" | "dana" => "b",
        _ => "c",
    }
}

/// Registers `user` (home `/home/pd/USER` in `client`) at its node and publishes a presence
/// record with `endpoint`; returns the key fingerprint.
fn register(cluster: &Cluster, client: &str, user: &str, address: &str, endpoint: &str) -> String {
    let domain = domain_of(home_of(client));
    let server = format!("https://{domain}:8080");
    cluster
        .chat(
            client,
            user,
            &[
                "--ca-file",
                "/etc/pd/tls/ca.crt",
                "register",
                address,
                "--server",
                &server,
            ],
        )
        .ok();
    cluster
        .chat(
            client,
            user,
            &["publish", "--endpoint", endpoint, "--ttl", "1h"],
        )
        .ok();
    fingerprint(cluster, client, user)
}

fn fingerprint(cluster: &Cluster, client: &str, user: &str) -> String {
    cluster.chat(client, user, &["whoami", "--json"]).json()["fingerprint"]
        .as_str()
        .expect("whoami prints a fingerprint")
        .to_owned()
}

/// Registers alice@a.test, bob@b.test and carol@c.test once (each publishes a presence
/// record for an hour).
fn users(cluster: &mut Cluster) {
    if cluster.users_ready {
        return;
    }
    for (client, user, address, endpoint) in USERS {
        register(cluster, client, user, address, endpoint);
    }
    cluster.users_ready = true;
}

/// `chat lookup ADDRESS --json [extra]` by `user` in `client`.
fn lookup(cluster: &Cluster, client: &str, address: &str, extra: &[&str]) -> Run {
    let mut args = vec!["lookup", address, "--json"];
    args.extend_from_slice(extra);
    cluster.chat(client, client, &args)
}

fn source(answer: &Value) -> &str {
    answer["source"].as_str().unwrap_or("?")
}

/// A lookup answer as text, to search for an endpoint in.
fn text(answer: &Value) -> String {
    answer.to_string()
}

/// Looks `address` up with `--refresh` until the answer comes from its home node; a
/// connection the asking node pooled before the other node restarted may fail once
/// (exit 6), and then the peer is in backoff for a moment. While it is, `chat` answers
/// from the contact it stored (exit 0, source `stored`): that is not the home node's
/// answer either, so the lookup is repeated.
fn refreshed(cluster: &Cluster, client: &str, address: &str) -> Value {
    eventually(Duration::from_secs(20), "a fresh answer", || {
        let run = lookup(cluster, client, address, &["--refresh"]);
        match run.code {
            Some(0) => Some(run.json()).filter(|answer| source(answer) != "stored"),
            Some(6) => None,
            _ => panic!("unexpected failure: {run}"),
        }
    })
}

/// Repeats `attempt` every 300 ms until it returns `Some`, for at most `limit`.
fn eventually<T>(limit: Duration, what: &str, mut attempt: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = attempt() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The peer entry `domain` in a node's `GET /admin/peers`.
fn peer(cluster: &Cluster, node: &str, domain: &str) -> Value {
    let peers = cluster.admin_peers(node);
    peers["peers"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["domain"] == domain))
        .cloned()
        .unwrap_or_else(|| panic!("{domain} is not among the peers of {node}: {peers}"))
}

/// Scenario 1: users on different nodes register and look each other up through their
/// home nodes, over HTTPS with the test CA, and the answers carry the right keys.
pub(crate) fn cross_node_lookups(cluster: &mut Cluster) {
    users(cluster);
    let bob_fp = fingerprint(cluster, "bob", "bob");
    let alice_fp = fingerprint(cluster, "alice", "alice");

    let first = refreshed(cluster, "alice", "bob@b.test");
    assert_eq!(first["address"], "bob@b.test");
    assert_eq!(source(&first), "remote", "{first}");
    assert!(text(&first).contains("tcp://198.51.100.2:7002"), "{first}");
    let again = lookup(cluster, "alice", "bob@b.test", &[]).json();
    assert_eq!(source(&again), "cache", "{again}");
    let shown = cluster
        .chat("alice", "alice", &["lookup", "bob@b.test"])
        .ok();
    assert!(shown.stdout.contains(&bob_fp), "{shown}");

    let back = refreshed(cluster, "bob", "alice@a.test");
    assert_eq!(source(&back), "remote", "{back}");
    let shown = cluster.chat("bob", "bob", &["lookup", "alice@a.test"]).ok();
    assert!(shown.stdout.contains(&alice_fp), "{shown}");

    // A user of the open node finds users of her own node.
    let local = lookup(cluster, "carol", "carol@c.test", &[]).json();
    assert_eq!(source(&local), "local", "{local}");

    // An unknown user at a reachable node is a clean "unknown user".
    lookup(cluster, "alice", "nobody@b.test", &[]).code(3);

    chat_exchange(cluster);
}

/// The peer-to-peer part of scenario 1: ben@b.test (in bob's container) listens on the
/// `clients` network and publishes that endpoint; ann@a.test (in alice's container) looks
/// him up through her node, connects to him directly, container to container, and they
/// exchange a line each way. (Users of their own, so that the listener's presence records
/// do not touch the shared users' records.)
fn chat_exchange(cluster: &Cluster) {
    let talk = Duration::from_secs(20);
    register(
        cluster,
        "alice",
        "ann",
        "ann@a.test",
        "tcp://198.51.100.4:7004",
    );
    register(
        cluster,
        "bob",
        "ben",
        "ben@b.test",
        "tcp://198.51.100.5:7005",
    );
    let advertise = format!("{}:7000", cluster.ip("bob", "clients"));
    let mut listener = cluster.spawn_chat(
        "bob",
        "ben",
        &[
            "listen",
            "--bind",
            "0.0.0.0:7000",
            "--advertise",
            &advertise,
        ],
    );
    listener.wait_for("; published", true, talk);

    let mut talker = cluster.spawn_chat("alice", "ann", &["connect", "ben@b.test"]);
    talker.wait_for("connected to ben@b.test", true, talk);
    talker.send_line("hello ben, from a.test");
    listener.wait_for("ann@a.test: hello ben, from a.test\n", false, talk);
    listener.wait_for("ann@a.test connected from", true, talk);
    listener.send_line("hello ann, from b.test");
    talker.wait_for("ben@b.test: hello ann, from b.test\n", false, talk);
    assert_eq!(talker.finish(talk), Some(0), "{:?}", talker.output());
    listener.wait_for("ann@a.test left", true, talk);
    listener.send_line("/quit");
    assert_eq!(listener.finish(talk), Some(0), "{:?}", listener.output());
}

/// Scenario 2: the community (a.test, b.test) federates; the open outsider c.test is
/// refused in both directions, with the documented messages and exit code 8; and
/// `pd-server doctor` inside the containers agrees.
pub(crate) fn trust(cluster: &mut Cluster) {
    users(cluster);
    refreshed(cluster, "alice", "bob@b.test");
    refreshed(cluster, "bob", "alice@a.test");

    // Outbound refusals: the community's nodes do not federate with c.test.
    for (client, target) in [("alice", "carol@c.test"), ("bob", "carol@c.test")] {
        let refused = lookup(cluster, client, target, &[]).code(8);
        assert!(
            refused
                .stderr
                .contains("your home server does not federate with c.test"),
            "{refused}"
        );
    }
    // Inbound refusals: c.test is open, but the community refuses its requests.
    for (target, domain) in [("alice@a.test", "a.test"), ("bob@b.test", "b.test")] {
        let refused = lookup(cluster, "carol", target, &[]).code(8);
        assert!(
            refused.stderr.contains(&format!(
                "{domain} does not accept lookups from your server"
            )),
            "{refused}"
        );
    }

    // doctor, run inside the node containers with their own configuration.
    let fine = cluster.pd_server("a", &["doctor", "b.test"]).ok();
    assert!(fine.stdout.contains("all 6 checks passed"), "{fine}");
    let refused = cluster
        .pd_server("a", &["doctor", "c.test", "--json"])
        .code(1);
    let report: Value = serde_json::from_str(&refused.stdout).expect("doctor JSON");
    assert_eq!(report["steps"][1]["step"], "trust", "{report}");
    assert_eq!(report["steps"][1]["status"], "fail", "{report}");
    let outsider = cluster
        .pd_server("c", &["doctor", "a.test", "--json"])
        .code(1);
    let report: Value = serde_json::from_str(&outsider.stdout).expect("doctor JSON");
    let signed = &report["steps"][5];
    assert_eq!(signed["step"], "signed-request", "{report}");
    assert_eq!(signed["status"], "fail", "{report}");
    assert!(
        signed["hint"]
            .as_str()
            .unwrap_or("")
            .contains("allow c.test"),
        "{report}"
    );
    for step in 0..5 {
        assert_eq!(report["steps"][step]["status"], "pass", "{report}");
    }
}

/// What scenarios 3 and 4 check while b.test is out of reach of a.test, and after it is
/// back: cached answers served stale, cold lookups failing fast, backoff in the peer state,
/// and recovery without restarting a.test.
fn out_of_reach(cluster: &Cluster, cut: impl FnOnce(), heal: impl FnOnce()) {
    let a_started = cluster.started_at("a");
    // alice@a.test has bob@b.test in her node's cache; bob@b.test has alice@a.test.
    refreshed(cluster, "alice", "bob@b.test");
    refreshed(cluster, "bob", "alice@a.test");

    cut();

    // Cached answers are served: fresh at first, then stale once they expire (max_ttl 3s).
    let stale = eventually(Duration::from_secs(15), "a stale answer", || {
        let answer = lookup(cluster, "alice", "bob@b.test", &[]).json();
        assert_eq!(answer["address"], "bob@b.test");
        assert!(
            text(&answer).contains("tcp://198.51.100.2:7002"),
            "{answer}"
        );
        (source(&answer) == "stale").then_some(answer)
    });
    assert!(stale["ttl"].as_u64().unwrap_or(0) <= 5, "{stale}");

    // A cold lookup fails fast with "unreachable" (exit 6), and so does the next one.
    let cold = lookup(cluster, "alice", "ghost@b.test", &[]).code(6);
    assert!(cold.elapsed < COLD_LOOKUP_BOUND, "{cold}");
    let again = lookup(cluster, "alice", "ghost2@b.test", &[]).code(6);
    assert!(again.elapsed < COLD_LOOKUP_BOUND, "{again}");

    // The admin surface shows a.test backing off from b.test, with the error. (The backoff
    // lasts at most 3s here; a failed lookup right before the look starts a new one.)
    let state = eventually(Duration::from_secs(15), "b.test backing off", || {
        lookup(cluster, "alice", "ghost3@b.test", &[]).code(6);
        let state = peer(cluster, "a", "b.test");
        (state["state"] == "backing_off").then_some(state)
    });
    assert!(state["failures"].as_u64().unwrap_or(0) >= 1, "{state}");
    assert!(state["retry_in_secs"].is_u64(), "{state}");
    assert!(state["last_error"].is_string(), "{state}");

    heal();

    // Lookups reach b.test again once the backoff (at most 3s) ends; a.test was never
    // restarted.
    let back = refreshed(cluster, "alice", "bob@b.test");
    assert_eq!(source(&back), "remote", "{back}");
    assert!(text(&back).contains("tcp://198.51.100.2:7002"), "{back}");
    let state = peer(cluster, "a", "b.test");
    assert_eq!(state["state"], "healthy", "{state}");
    assert_eq!(cluster.started_at("a"), a_started, "a.test was restarted");
    refreshed(cluster, "bob", "alice@a.test");
}

/// Scenario 3: node loss. b.test is stopped and started again.
pub(crate) fn node_loss(cluster: &mut Cluster) {
    users(cluster);
    let cluster = &*cluster;
    out_of_reach(cluster, || cluster.stop("b"), || cluster.start_node("b"));
}

/// Scenario 4: partition. b.test is disconnected from the federation network (its users
/// still reach it) and connected again.
pub(crate) fn partition(cluster: &mut Cluster) {
    users(cluster);
    let cluster = &*cluster;
    out_of_reach(
        cluster,
        || {
            cluster.disconnect("b");
            // From the cut-off side: bob still reaches his node, which serves him its
            // cached answer about alice@a.test.
            let answer = eventually(Duration::from_secs(15), "b.test serving stale", || {
                let answer = lookup(cluster, "bob", "alice@a.test", &[]).json();
                (source(&answer) == "stale").then_some(answer)
            });
            assert_eq!(answer["address"], "alice@a.test");
        },
        || cluster.connect("b"),
    );
}

/// Scenario 5: durability. Registrations, presence records and a withdrawal acknowledged
/// right before a SIGKILL of the node are all there after it restarts.
pub(crate) fn durability(cluster: &mut Cluster) {
    users(cluster);
    let mut expected = Vec::new();
    for i in 1..=4 {
        let user = format!("dur{i}");
        let address = format!("dur{i}@b.test");
        let endpoint = format!("tcp://198.51.100.{}:7100", 10 + i);
        let fp = register(cluster, "bob", &user, &address, &endpoint);
        expected.push((user, address, endpoint, fp));
    }
    cluster.chat("bob", "dur4", &["withdraw"]).ok();
    cluster.kill("b");
    cluster.start_node("b");

    for (i, (_, address, endpoint, fp)) in expected.iter().enumerate() {
        let answer = refreshed(cluster, "alice", address);
        assert_eq!(answer["address"], address.as_str());
        let shown = cluster
            .chat("alice", "alice", &["lookup", address, "--cache-only"])
            .ok();
        assert!(shown.stdout.contains(fp.as_str()), "{shown}");
        if i == 3 {
            assert!(answer["presence"].is_null(), "withdrawal lost: {answer}");
        } else {
            assert!(
                text(&answer).contains(endpoint.as_str()),
                "presence lost: {answer}"
            );
        }
    }
    // The users themselves still have their accounts (and get new sessions).
    let local = cluster
        .chat("bob", "dur1", &["lookup", "dur2@b.test", "--json"])
        .json();
    assert_eq!(source(&local), "local", "{local}");
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// One lookup made during the rolling restart.
#[derive(Debug)]
struct Observed {
    client: &'static str,
    started: Instant,
    ended: Instant,
    run: Run,
}

/// Scenario 6: rolling restart of every node in turn while alice and bob keep looking each
/// other up. A lookup may only fail while the asker's own home node is down (exit 4); the
/// other side's downtime is covered by cached and stale answers.
pub(crate) fn rolling_restart(cluster: &mut Cluster) {
    users(cluster);
    let cluster = &*cluster;
    refreshed(cluster, "alice", "bob@b.test");
    refreshed(cluster, "bob", "alice@a.test");

    let t0 = Instant::now();
    let done = AtomicBool::new(false);
    let observed = Mutex::new(Vec::new());
    let mut windows = Vec::new();
    std::thread::scope(|scope| {
        for (client, target) in [("alice", "bob@b.test"), ("bob", "alice@a.test")] {
            let (done, observed) = (&done, &observed);
            scope.spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let run = lookup(cluster, client, target, &[]);
                    let ended = Instant::now();
                    observed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Observed {
                            client,
                            started,
                            ended,
                            run,
                        });
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
        // The lookup threads stop when this scope ends, also when it ends in a panic.
        let _stop = StopOnDrop(&done);
        // As an operator would: the next node restarts only once the previous one is
        // healthy and both clients have been answered since (a restarted node starts with
        // an empty cache, and only what it has cached can cover the next node's downtime).
        let settled = |since: Instant| {
            eventually(Duration::from_secs(30), "lookups to succeed again", || {
                let seen = observed.lock().unwrap_or_else(|e| e.into_inner());
                ["alice", "bob"]
                    .iter()
                    .all(|client| {
                        seen.iter().any(|o| {
                            o.client == *client && o.started > since && o.run.code == Some(0)
                        })
                    })
                    .then_some(())
            });
        };
        settled(Instant::now());
        for node in ["a", "b", "c"] {
            let begin = Instant::now();
            cluster.restart(node);
            let end = Instant::now();
            windows.push((node, begin, end));
            settled(end);
        }
    });

    let observed = observed.into_inner().unwrap_or_else(|e| e.into_inner());
    let margin = Duration::from_millis(500);
    let during = |o: &Observed, node: &str| {
        windows.iter().any(|(n, begin, end)| {
            *n == node && o.ended + margin >= *begin && o.started <= *end + margin
        })
    };
    let mut errors = Vec::new();
    for o in &observed {
        let home = home_of(o.client);
        match o.run.code {
            Some(0) => {}
            Some(4) if during(o, home) => {}
            _ => errors.push(format!(
                "at {:.1}s-{:.1}s: {}",
                (o.started - t0).as_secs_f64(),
                (o.ended - t0).as_secs_f64(),
                o.run
            )),
        }
    }
    let restarts: Vec<String> = windows
        .iter()
        .map(|(n, b, e)| {
            format!(
                "{n} {:.1}s-{:.1}s",
                (*b - t0).as_secs_f64(),
                (*e - t0).as_secs_f64()
            )
        })
        .collect();
    assert!(
        errors.is_empty(),
        "{} of {} lookups failed where a stale answer could have answered (restarts: {}):\n{}",
        errors.len(),
        observed.len(),
        restarts.join(", "),
        errors.join("\n")
    );
    // Each side was actually asked while the other side's node was down.
    for (client, other) in [("alice", "b"), ("bob", "a")] {
        let covered = observed
            .iter()
            .filter(|o| o.client == client && o.run.code == Some(0) && during(o, other))
            .count();
        assert!(covered > 0, "no lookup by {client} while {other} restarted");
    }
    eprintln!(
        "  {} lookups during the rolling restart, restarts took {}",
        observed.len(),
        windows
            .iter()
            .map(|(n, b, e)| format!("{n} {:.1}s", (*e - *b).as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// Scenario 7: dan@b.test runs `chat listen` in dana's container, behind NAT: it reaches
/// only its home node b.test, and no other container reaches it. Its presence record
/// holds an endpoint nobody can reach and b.test's relay endpoint; amy@a.test, in alice's
/// container, connects through the relay, container to container, with the end-to-end
/// TLS channel and both key checks, and they exchange a line each way.
pub(crate) fn relay_behind_nat(cluster: &mut Cluster) {
    let talk = Duration::from_secs(20);
    register(
        cluster,
        "alice",
        "amy",
        "amy@a.test",
        "tcp://198.51.100.6:7006",
    );
    register(
        cluster,
        "dana",
        "dan",
        "dan@b.test",
        "tcp://198.51.100.7:7007",
    );
    let mut listener = cluster.spawn_chat("dana", "dan", &["listen", "--bind", "0.0.0.0:7000"]);
    listener.wait_for("; published", true, talk);
    listener.wait_for("holding a relay slot on the relay of b.test", true, talk);
    let answer = cluster
        .chat("alice", "amy", &["lookup", "dan@b.test", "--json"])
        .json();
    let endpoints: Vec<&str> = answer["endpoints"]
        .as_array()
        .map(|list| list.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        endpoints.contains(&"relay+https://b.test:8080/"),
        "{answer}"
    );
    let dana_ip = cluster.ip("dana", "home-b");
    assert!(
        endpoints.iter().any(|e| e.contains(&dana_ip)),
        "the direct endpoint is dana's own address, which alice cannot reach: {answer}"
    );

    let mut talker = cluster.spawn_chat("alice", "amy", &["connect", "dan@b.test"]);
    talker.wait_for(
        "connected to dan@b.test via the relay of b.test",
        true,
        talk,
    );
    talker.send_line("hello dan, through your home node");
    listener.wait_for(
        "amy@a.test: hello dan, through your home node\n",
        false,
        talk,
    );
    listener.wait_for("amy@a.test connected from the relay of b.test", true, talk);
    listener.send_line("hello amy, from behind NAT");
    talker.wait_for("dan@b.test: hello amy, from behind NAT\n", false, talk);
    assert_eq!(talker.finish(talk), Some(0), "{:?}", talker.output());
    listener.wait_for("amy@a.test left", true, talk);
    listener.send_line("/quit");
    assert_eq!(listener.finish(talk), Some(0), "{:?}", listener.output());
}
