//! Server key rotation: `pd-server server-key rotate|show` on a data dir, then a node
//! started on it publishing the new and the retired key, signing with the new one, and a
//! request signed with the retired key still verifying at another node.

use std::path::Path;

use pd_proto::node_auth::server_key_id;
use pd_proto::wire::WellKnown;
use pd_proto::{Host, SecretKey};
use pd_server::Server;
use pd_server::config::Config;
use pd_server::server_keys::{self, CURRENT_KEY_VALIDITY, RETIRED_DIR};
use reqwest::StatusCode;

use crate::federation::{network, user_with_presence};
use crate::util::{TestNode, now_secs, pd_server};

fn read_key(dir: &Path) -> SecretKey {
    SecretKey::from_text(
        std::fs::read_to_string(dir.join("server.key"))
            .unwrap()
            .trim(),
    )
    .unwrap()
}

fn retired_files(dir: &Path) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(dir.join(RETIRED_DIR)) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Runs `pd-server server-key <sub> --data-dir <dir>` and returns its stdout.
fn server_key_cmd(sub: &str, dir: &Path) -> String {
    let out = pd_server()
        .args(["server-key", sub, "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Sends a federation lookup of `bob@b.test` to `b`, signed as a.test with `key`.
async fn signed_lookup(b: &TestNode, key: &SecretKey) -> reqwest::Response {
    let target = "/v1/federation/lookup/bob%40b.test";
    let authorization = pd_federation::node_auth::sign_request(
        key,
        &Host::parse("a.test").unwrap(),
        &Host::parse("b.test").unwrap(),
        "GET",
        target,
        b"",
    );
    b.client
        .get(format!("{}{target}", b.url))
        .header("authorization", authorization.to_str().unwrap())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_rotated_key_is_published_with_the_retired_one_which_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    // A node's first start creates the key that will be retired.
    let first = Server::spawn_for_tests(dir.path()).await.unwrap();
    let old_id = first.state().server_keys.current_id();
    first.shutdown().await.unwrap();
    let old = read_key(dir.path());
    assert_eq!(server_key_id(&old.public()), old_id);
    assert!(
        server_key_cmd("show", dir.path())
            .starts_with(&format!("{old_id} {}", old.public().fingerprint()))
    );

    let before = now_secs();
    let new_id = server_key_cmd("rotate", dir.path()).trim().to_owned();
    let after = now_secs();
    let new = read_key(dir.path());
    assert_eq!(server_key_id(&new.public()), new_id);
    assert_ne!(new_id, old_id);
    let retired = retired_files(dir.path());
    assert_eq!(retired.len(), 1, "{retired:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for path in [dir.path().join("server.key"), retired[0].clone()] {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        }
    }
    let shown = server_key_cmd("show", dir.path());
    let mut lines = shown.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!("{new_id} {}", new.public().fingerprint())
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with(&format!("retired {old_id} "))
    );

    // a.test runs on the rotated data dir; b.test receives its signed requests.
    let data_dir = dir.path().to_owned();
    let nodes = network(&["a.test", "b.test"], |domain, config| {
        if domain == "a.test" {
            config.data_dir = data_dir.clone();
        }
    })
    .await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let max_age = a.server.state().config.federation.max_request_age.as_secs();
    assert_eq!(a.server.state().server_keys.current_id(), new_id);

    let wk: WellKnown = a.get("/.well-known/pd").await.json().await.unwrap();
    let now = now_secs();
    assert_eq!(wk.server_keys.len(), 2, "{:?}", wk.server_keys);
    let current = &wk.server_keys[0];
    assert_eq!(current.key_id, new_id);
    assert_eq!(current.public_key, new.public());
    let validity = CURRENT_KEY_VALIDITY.as_secs();
    assert!((now - 5 + validity..=now + validity).contains(&current.valid_until));
    let old_published = &wk.server_keys[1];
    assert_eq!(old_published.key_id, old_id);
    assert_eq!(old_published.public_key, old.public());
    assert!(
        (before + max_age..=after + max_age).contains(&old_published.valid_until),
        "{} not within [{}, {}]",
        old_published.valid_until,
        before + max_age,
        after + max_age
    );

    user_with_presence(b, "bob", "b.test").await;
    // The node's own forwarded lookup is signed with the new key and accepted.
    let resp = a
        .client
        .get(format!("{}/v1/lookup/bob%40b.test", a.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "{}",
        resp.text().await.unwrap()
    );
    // A request signed with the retired key just before the rotation still verifies.
    let resp = signed_lookup(b, &old).await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "{}",
        resp.text().await.unwrap()
    );
    let resp = signed_lookup(b, &new).await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "{}",
        resp.text().await.unwrap()
    );
    // A key a.test never published does not.
    let resp = signed_lookup(b, &SecretKey::generate()).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn retired_keys_past_their_validity_are_dropped_at_start() {
    let dir = tempfile::tempdir().unwrap();
    // An initialised data directory: a database besides the keys.
    pd_server::store::Store::open(&dir.path().join("pd.sqlite3"))
        .unwrap()
        .close()
        .await
        .unwrap();
    let now = now_secs();
    server_keys::rotate(dir.path(), now - 3600).unwrap();
    let expired = server_keys::rotate(dir.path(), now - 3600).unwrap();
    let valid = server_keys::rotate(dir.path(), now).unwrap();
    let expired_id = expired.retired.unwrap().key_id();
    let valid_id = valid.retired.unwrap().key_id();
    assert_eq!(retired_files(dir.path()).len(), 2);

    let node = TestNode::bind(Config::for_tests(dir.path()), dir).await;
    let wk: WellKnown = node.get("/.well-known/pd").await.json().await.unwrap();
    let ids: Vec<&str> = wk.server_keys.iter().map(|k| k.key_id.as_str()).collect();
    assert_eq!(ids, [valid.new_key_id.as_str(), valid_id.as_str()]);
    assert!(!ids.contains(&expired_id.as_str()));
    let files = retired_files(node.dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
}
