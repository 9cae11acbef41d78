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
    let migrate = |to: String| {
        pd_server::cli::Cli::try_parse_from([
            "pd-server",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "migrate",
            "--from",
            db_file.to_str().unwrap(),
            "--to",
            &to,
        ])
        .unwrap()
    };
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
