//! Two replicas of one domain over one PostgreSQL database: a shared server key, sessions
//! valid on both, writes visible on the other replica within `cache.shared_ttl`, races
//! decided in the database, a database outage answered with 503, and `pd-server migrate`
//! from the embedded store.

use std::time::Duration;

use clap::Parser as _;
use pd_proto::ProblemType;
use pd_server::config::{Config, LookupAccess};
use reqwest::StatusCode;

use crate::pg::{self, TestDb};
use crate::util::{TestNode, User, assert_problem};

/// The replicas' `cache.shared_ttl` in these tests.
const TTL: Duration = Duration::from_millis(400);

async fn replica(db: &TestDb, adjust: impl FnOnce(&mut Config)) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path());
    config.store = Some(db.spec());
    config.cache.shared_ttl = TTL;
    adjust(&mut config);
    TestNode::bind(config, dir).await
}

/// Two replicas started at the same moment (so their migrations race too).
async fn pair(db: &TestDb) -> (TestNode, TestNode) {
    tokio::join!(replica(db, |_| {}), replica(db, |_| {}))
}

/// The ids of the server keys a node publishes, current first (their `valid_until` moves
/// with the clock, so it is left out).
async fn server_keys(node: &TestNode) -> Vec<String> {
    let doc: serde_json::Value = node.get("/.well-known/pd").await.json().await.unwrap();
    doc["server_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Checks that a change acknowledged just before the call shows once `TTL` has passed:
/// `check` is asked once, right after it, and must hold.
async fn after_ttl<F, Fut>(what: &str, check: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    tokio::time::sleep(TTL + Duration::from_millis(20)).await;
    assert!(
        check().await,
        "{what}: not visible after cache.shared_ttl ({TTL:?})"
    );
}

#[tokio::test]
async fn replicas_share_the_key_sessions_and_writes() {
    let Some(db) = pg::database("replicas::replicas_share_the_key_sessions_and_writes").await
    else {
        return;
    };
    let (a, b) = pair(&db).await;
    let keys = server_keys(&a).await;
    assert_eq!(keys, server_keys(&b).await, "one server key for the domain");
    assert_eq!(keys.len(), 1);

    let alice = User::new("alice");
    let bob = User::new("bob");
    alice.register(&a).await;
    bob.register(&b).await;
    // A session opened on one replica is valid on the other.
    let token = alice.login(&a).await;
    let resp = b.lookup("bob@localhost", Some(&token)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // B caches alice without a presence record; A stores one.
    let before = b.lookup_json(&bob, "alice@localhost").await;
    assert_eq!(before["presence"], serde_json::Value::Null);
    let signed = alice.publish(&a, 3600).await;
    let expected = serde_json::to_value(&signed).unwrap();
    let token_b = bob.login(&b).await;
    after_ttl(
        "a presence record published on the other replica",
        || async {
            let resp = b.lookup("alice@localhost", Some(&token_b)).await;
            let found: serde_json::Value = resp.json().await.unwrap();
            found["presence"] == expected
        },
    )
    .await;
    // A rotation on A ends alice's sessions on B as well.
    let new_key = pd_proto::SecretKey::generate();
    let resp = a
        .post(&alice.path("/rotate"), &alice.rotation(&new_key))
        .await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "{}",
        resp.text().await.unwrap()
    );
    after_ttl("the end of a session after a rotation", || async {
        b.lookup("bob@localhost", Some(&token)).await.status() == StatusCode::UNAUTHORIZED
    })
    .await;
    // Signed operations read the store: B refuses the old key at once.
    let resp = b
        .put(&alice.path("/presence"), &alice.signed_presence(60))
        .await;
    assert_problem(resp, 400, ProblemType::InvalidSignature).await;
}

#[tokio::test]
async fn concurrent_presence_writes_across_replicas_keep_the_highest_seq() {
    let Some(db) =
        pg::database("replicas::concurrent_presence_writes_across_replicas_keep_the_highest_seq")
            .await
    else {
        return;
    };
    let (a, b) = pair(&db).await;
    let alice = User::new("alice");
    alice.register(&a).await;
    // Signed in increasing order, sent all at once, alternating replicas, newest first.
    let records: Vec<_> = (0..30).map(|_| alice.signed_presence(3600)).collect();
    let highest = records.last().unwrap().clone();
    let sends = records.iter().enumerate().rev().map(|(i, signed)| {
        let node = if i % 2 == 0 { &a } else { &b };
        let path = alice.path("/presence");
        async move { node.put(&path, signed).await.status() }
    });
    let statuses = futures::future::join_all(sends).await;
    assert_eq!(
        statuses[0],
        StatusCode::OK,
        "the highest sequence number wins"
    );
    for status in &statuses {
        assert!(
            *status == StatusCode::OK || *status == StatusCode::CONFLICT,
            "{status}"
        );
    }
    let expected = serde_json::to_value(&highest).unwrap();
    let viewer = User::new("viewer");
    viewer.register(&b).await;
    for node in [&a, &b] {
        let token = viewer.login(node).await;
        after_ttl("the highest presence record", || async {
            let resp = node.lookup("alice@localhost", Some(&token)).await;
            let found: serde_json::Value = resp.json().await.unwrap();
            found["presence"] == expected
        })
        .await;
    }
}

#[tokio::test]
async fn registrations_across_replicas_race_to_one_winner() {
    let Some(db) = pg::database("replicas::registrations_across_replicas_race_to_one_winner").await
    else {
        return;
    };
    let (a, b) = pair(&db).await;
    let contenders: Vec<User> = (0..12).map(|_| User::new("bob")).collect();
    let sends = contenders.iter().enumerate().map(|(i, user)| {
        let node = if i % 2 == 0 { &a } else { &b };
        async move { node.post("/v1/accounts", &user.registration()).await }
    });
    let mut winners = Vec::new();
    for (i, resp) in futures::future::join_all(sends)
        .await
        .into_iter()
        .enumerate()
    {
        if resp.status() == StatusCode::CREATED {
            winners.push(i);
        } else {
            assert_problem(resp, 409, ProblemType::NameTaken).await;
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let winner = &contenders[winners[0]];
    for node in [&a, &b] {
        let found = node.lookup_json(winner, "bob@localhost").await;
        assert_eq!(found["public_key"], winner.key.public().to_string());
    }
}

#[tokio::test]
async fn a_database_outage_is_answered_with_503() {
    let Some(db) = pg::database("replicas::a_database_outage_is_answered_with_503").await else {
        return;
    };
    let node = replica(&db, |c| c.lookup_access = LookupAccess::Public).await;
    let alice = User::new("alice");
    alice.register(&node).await;
    db.drop_now().await;
    let resp = node.lookup("ghost@localhost", None).await;
    assert!(resp.headers().contains_key("retry-after"));
    assert_problem(resp, 503, ProblemType::Unavailable).await;
    let resp = node
        .post("/v1/accounts", &User::new("carol").registration())
        .await;
    assert_problem(resp, 503, ProblemType::Unavailable).await;
    let resp = node.get("/healthz").await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn migrate_moves_an_embedded_node_into_postgres_with_its_key() {
    let Some(db) =
        pg::database("replicas::migrate_moves_an_embedded_node_into_postgres_with_its_key").await
    else {
        return;
    };
    // A node on the embedded store, with a user, a presence record and its server key.
    let old = TestNode::start().await;
    let alice = User::new("alice");
    alice.register(&old).await;
    let signed = alice.publish(&old, 3600).await;
    let old_keys = server_keys(&old).await;
    let data_dir = old.dir.path().to_owned();
    let TestNode { server, dir, .. } = old;
    server.shutdown().await.unwrap();

    let db_file = data_dir.join("pd.sqlite3");
    let migrate_from = |from: &std::path::Path, to: &str| {
        // Without --config or --data-dir, as in issue 12: the key is found next to the
        // database file.
        pd_server::cli::Cli::try_parse_from([
            "pd-server",
            "migrate",
            "--from",
            from.to_str().unwrap(),
            "--to",
            to,
        ])
        .unwrap()
    };
    let migrate = |to: String| migrate_from(&db_file, &to);

    // A copy of the database without its server key is refused before anything is
    // copied: the domain would lose its identity.
    let bare = tempfile::tempdir().unwrap();
    let bare_file = bare.path().join("pd.sqlite3");
    std::fs::copy(&db_file, &bare_file).unwrap();
    let refused = pd_server::cli::run(migrate_from(&bare_file, &db.url)).await;
    let refused = format!("{:#}", refused.unwrap_err());
    assert!(refused.contains("no server key found"), "{refused}");
    let store = db.store().await;
    assert!(store.read_server_keys().await.unwrap().is_none());
    assert!(store.account("alice").await.unwrap().is_none());
    store.close().await.unwrap();

    pd_server::cli::run(migrate(db.url.clone())).await.unwrap();
    // Once only: the target now holds accounts.
    let again = pd_server::cli::run(migrate(db.url.clone())).await;
    assert!(format!("{:#}", again.unwrap_err()).contains("already holds 1 accounts"));

    let new = replica(&db, |_| {}).await;
    assert_eq!(
        server_keys(&new).await,
        old_keys,
        "the domain keeps its key"
    );
    let found = new.lookup_json(&alice, "alice@localhost").await;
    assert_eq!(found["presence"], serde_json::to_value(&signed).unwrap());
    drop(dir);
}

#[tokio::test]
async fn server_key_rotation_on_the_shared_store_reaches_every_replica() {
    let Some(db) =
        pg::database("replicas::server_key_rotation_on_the_shared_store_reaches_every_replica")
            .await
    else {
        return;
    };
    let first = replica(&db, |_| {}).await;
    let old_id = server_keys(&first).await[0].clone();
    let rotate = pd_server::cli::Cli::try_parse_from([
        "pd-server",
        "--store",
        &db.url,
        "server-key",
        "rotate",
    ])
    .unwrap();
    pd_server::cli::run(rotate).await.unwrap();
    // Replicas started after the rotation sign with the new key and still publish the old.
    let (a, b) = pair(&db).await;
    let keys = server_keys(&a).await;
    assert_eq!(keys, server_keys(&b).await);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_ne!(keys[0], old_id);
    assert_eq!(keys[1], old_id);
    let show = pd_server::cli::Cli::try_parse_from([
        "pd-server",
        "--store",
        &db.url,
        "server-key",
        "show",
    ])
    .unwrap();
    pd_server::cli::run(show).await.unwrap();
}

/// A `pd-server run` process over `store`, killed (SIGKILL) on drop.
struct Process {
    child: std::process::Child,
    url: String,
}

impl Process {
    fn start(store: &str, data_dir: &std::path::Path) -> Self {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pd-server"))
            .args(["--listen", "127.0.0.1:0", "--store", store, "--data-dir"])
            .arg(data_dir)
            .arg("run")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the log to the end, so the node never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(rest) = line.split("listen.addr=").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("pd-server reported its address");
        Self {
            child,
            url: format!("http://{addr}"),
        }
    }

    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9_of_a_replica() {
    let Some(db) = pg::database("replicas::acknowledged_writes_survive_kill_9_of_a_replica").await
    else {
        return;
    };
    let client = reqwest::Client::new();
    let alice = User::new("alice");
    let dir = tempfile::tempdir().unwrap();
    let first = Process::start(&db.url, &dir.path().join("a"));
    let resp = client
        .post(format!("{}/v1/accounts", first.url))
        .json(&alice.registration())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let signed = alice.signed_presence(3600);
    let resp = client
        .put(format!("{}{}", first.url, alice.path("/presence")))
        .json(&signed)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Killed the instant after answering; another replica has the writes.
    first.kill_9();
    let second = Process::start(&db.url, &dir.path().join("b"));
    let resp = client
        .post(format!("{}/v1/sessions", second.url))
        .json(&alice.login_request())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let login: pd_proto::wire::LoginResponse = resp.json().await.unwrap();
    let found: serde_json::Value = client
        .get(format!("{}/v1/lookup/alice@localhost", second.url))
        .bearer_auth(login.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["presence"], serde_json::to_value(&signed).unwrap());
}

/// `db`'s URL with its host and port replaced by `addr` (a proxy in front of it).
fn url_through(db: &TestDb, addr: std::net::SocketAddr) -> String {
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_host(Some(&addr.ip().to_string())).unwrap();
    url.set_port(Some(addr.port())).unwrap();
    url.to_string()
}

fn db_addr(db: &TestDb) -> std::net::SocketAddr {
    use std::net::ToSocketAddrs as _;
    let url = url::Url::parse(&db.url).unwrap();
    (url.host_str().unwrap(), url.port().unwrap_or(5432))
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap()
}

/// Regression (issue 12): a hung database (its processes stopped: here a proxy that stops
/// forwarding) no longer stalls requests for the whole request deadline. Writes, uncached
/// lookups and `/healthz` answer within the store timeout: 503 `unavailable` with
/// `Retry-After`, and `/healthz` its Health body. When the database answers again, so does
/// the node.
#[tokio::test]
async fn a_hung_database_is_answered_with_503_within_the_store_timeout() {
    let Some(db) =
        pg::database("replicas::a_hung_database_is_answered_with_503_within_the_store_timeout")
            .await
    else {
        return;
    };
    let proxy = crate::proxy::HangingProxy::start(db_addr(&db)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path());
    config.store = Some(url_through(&db, proxy.addr()).parse().unwrap());
    config.lookup_access = LookupAccess::Public;
    config.limits.store_timeout = Duration::from_secs(1);
    let node = TestNode::bind(config, dir).await;
    User::new("alice").register(&node).await;

    proxy.hang();
    let bound = Duration::from_millis(2500);
    let started = std::time::Instant::now();
    let resp = node
        .post("/v1/accounts", &User::new("carol").registration())
        .await;
    assert!(started.elapsed() < bound, "{:?}", started.elapsed());
    assert!(resp.headers().contains_key("retry-after"));
    assert_problem(resp, 503, ProblemType::Unavailable).await;

    let started = std::time::Instant::now();
    let resp = node.lookup("dave@localhost", None).await;
    assert!(started.elapsed() < bound, "{:?}", started.elapsed());
    assert!(resp.headers().contains_key("retry-after"));
    assert_problem(resp, 503, ProblemType::Unavailable).await;

    let started = std::time::Instant::now();
    let resp = node.get("/healthz").await;
    assert!(started.elapsed() < bound, "{:?}", started.elapsed());
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let health: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(health["status"], "unavailable");
    assert_eq!(health["store"], "error");

    proxy.resume();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let resp = node.get("/healthz").await;
        if resp.status() == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    User::new("carol").register(&node).await;
}

/// Regression (issue 12): `pd-server server-key rotate` while three replicas run. Each
/// replica publishes the new key within `server_key_reload` and signs with it once every
/// replica publishes it; a peer that cached the old key set fetches it again at the first
/// request signed with the new key. No lookup fails at any moment, and nothing restarts.
#[tokio::test]
async fn a_key_rotation_reaches_running_replicas_without_a_failed_request() {
    let Some(db) =
        pg::database("replicas::a_key_rotation_reaches_running_replicas_without_a_failed_request")
            .await
    else {
        return;
    };
    let reload = Duration::from_millis(200);
    // The peer p.test reaches r.test at the first replica, whose port is picked first.
    let first_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let peer = TestNode::start_with(|c| {
        c.domain = pd_proto::Host::parse("p.test").unwrap();
        c.federation.peers = vec![
            format!("r.test=http://127.0.0.1:{first_port}")
                .parse()
                .unwrap(),
        ];
    })
    .await;
    let bob = User::at("bob", "p.test");
    bob.register(&peer).await;
    bob.publish(&peer, 3600).await;
    let replica_of_r = |port: u16| {
        let peer_url = peer.url.clone();
        replica(&db, move |c| {
            c.domain = pd_proto::Host::parse("r.test").unwrap();
            c.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            c.lookup_access = LookupAccess::Public;
            c.server_key_reload = reload;
            c.federation.peers = vec![format!("p.test={peer_url}").parse().unwrap()];
        })
    };
    let r1 = replica_of_r(first_port).await;
    let (r2, r3) = tokio::join!(replica_of_r(0), replica_of_r(0));
    let replicas = [&r1, &r2, &r3];
    // Lookups through every replica, each signed by it and verified by the peer.
    let failures = || async {
        let mut failed = Vec::new();
        for r in replicas {
            let resp = r
                .client
                .get(format!("{}/v1/lookup/bob@p.test?mode=refresh", r.url))
                .send()
                .await
                .unwrap();
            if resp.status() != StatusCode::OK {
                failed.push(format!("{} {}", r.url, resp.text().await.unwrap()));
            }
        }
        failed
    };
    assert_eq!(failures().await, Vec::<String>::new());
    let old_id = server_keys(&r1).await[0].clone();

    let rotate = pd_server::cli::Cli::try_parse_from([
        "pd-server",
        "--store",
        &db.url,
        "server-key",
        "rotate",
    ])
    .unwrap();
    pd_server::cli::run(rotate).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut failed = Vec::new();
    let mut lookups = 0;
    loop {
        failed.extend(failures().await);
        lookups += replicas.len();
        let switched = replicas
            .iter()
            .all(|r| r.server.state().server_keys.signing_id() != old_id);
        if switched || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        failed,
        Vec::<String>::new(),
        "{} of {lookups} lookups failed during the rotation",
        failed.len()
    );
    for r in replicas {
        let keys = server_keys(r).await;
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert_ne!(keys[0], old_id);
        assert_eq!(keys[1], old_id);
        assert_eq!(r.server.state().server_keys.signing_id(), keys[0]);
    }
    assert_eq!(failures().await, Vec::<String>::new());
}
