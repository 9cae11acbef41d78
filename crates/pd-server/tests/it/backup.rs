//! `pd-server backup DIR`: a snapshot of a running node's data directory that a node
//! started on it serves from, with the same accounts, records and server key.

use std::process::Command;

use pd_server::config::Config;

use crate::util::{TestNode, User};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_running_node_restores_accounts_records_and_keys() {
    let node = TestNode::start().await;
    let alice = User::new("alice");
    alice.register(&node).await;
    let presence = alice.publish(&node, 600).await;
    let key_before = node.get("/.well-known/pd").await.text().await.unwrap();

    let dest = tempfile::tempdir().unwrap();
    let copy = dest.path().join("backup");
    let config = node.server.state().config.as_ref().clone();
    let written = pd_server::backup::backup(&config, &copy).unwrap();
    assert!(written.server_key);
    assert!(written.database_bytes > 0);
    // A second backup into the same, now non-empty, directory is refused.
    assert!(pd_server::backup::backup(&config, &copy).is_err());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(copy.join("server.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let mut restored = Config::for_tests(&copy);
    restored.domain = config.domain.clone();
    let restored = TestNode::bind(restored, dest).await;
    let answer = restored.lookup_json(&alice, "alice@localhost").await;
    assert_eq!(
        answer["presence"],
        serde_json::to_value(&presence).unwrap(),
        "{answer}"
    );
    let key_after = restored.get("/.well-known/pd").await.text().await.unwrap();
    let keys = |doc: &str| {
        let v: serde_json::Value = serde_json::from_str(doc).unwrap();
        v["server_keys"][0]["key_id"].clone()
    };
    assert_eq!(keys(&key_before), keys(&key_after));
    drop(node);
}

#[test]
fn the_binary_refuses_a_data_directory_without_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pd-server"))
        .args(["backup"])
        .arg(dir.path().join("copy"))
        .arg("--data-dir")
        .arg(dir.path().join("nothing"))
        .env_remove("PD_CONFIG")
        .env_remove("PD_DATA_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("there is no database"), "{stderr}");
}
