//! Regressions of issue 12 about the data directory: a node whose data directory holds its
//! server key but lost its database refuses to start (`pd-server init` starts over on
//! purpose), a database the node cannot write refuses to start instead of answering 500,
//! and `pd-server migrate` never drops the domain's server key.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser as _;
use pd_proto::node_auth::server_key_id;
use pd_server::Server;
use pd_server::config::Config;
use pd_server::server_keys;

use crate::util::{TestNode, User};

fn cli(args: &[&str]) -> pd_server::cli::Cli {
    let mut all = vec!["pd-server"];
    all.extend_from_slice(args);
    pd_server::cli::Cli::try_parse_from(all).unwrap()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A node that registered alice and was stopped; returns its data directory and key id.
async fn stopped_node_with_alice() -> (tempfile::TempDir, String) {
    let node = TestNode::start().await;
    User::new("alice").register(&node).await;
    let key_id = node.server.state().server_keys.current_id();
    let TestNode { server, dir, .. } = node;
    server.shutdown().await.unwrap();
    (dir, key_id)
}

async fn bind_error(dir: &Path) -> String {
    let err = Server::bind(Config::for_tests(dir)).await.unwrap_err();
    format!("{err:#}")
}

#[tokio::test]
async fn an_emptied_or_removed_database_is_refused_until_init() {
    let (dir, key_id) = stopped_node_with_alice().await;
    let db = dir.path().join("pd.sqlite3");

    // `: > pd.sqlite3`
    std::fs::write(&db, b"").unwrap();
    let err = bind_error(dir.path()).await;
    assert!(err.contains("refusing to start"), "{err}");
    assert!(err.contains("is empty"), "{err}");
    assert!(err.contains("pd-server init"), "{err}");
    assert_eq!(
        std::fs::metadata(&db).unwrap().len(),
        0,
        "nothing was created"
    );

    // `rm pd.sqlite3`
    std::fs::remove_file(&db).unwrap();
    let err = bind_error(dir.path()).await;
    assert!(err.contains("is missing"), "{err}");
    assert!(!db.exists(), "nothing was created");

    // The binary says so in one line and exits 1.
    let out = Command::new(env!("CARGO_BIN_EXE_pd-server"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .arg("run")
        .env_remove("PD_CONFIG")
        .env_remove("PD_STORE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let error_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 1, "{stderr}");
    assert!(error_lines[0].contains("database"), "{stderr}");

    // `pd-server init` creates an empty database on purpose and keeps the key.
    pd_server::cli::run(cli(&["--data-dir", path_str(dir.path()), "init"]))
        .await
        .unwrap();
    let node = TestNode::bind(Config::for_tests(dir.path()), dir).await;
    assert_eq!(node.server.state().server_keys.current_id(), key_id);
    // The old name is free again: the operator chose to start over.
    User::new("alice").register(&node).await;
}

#[tokio::test]
async fn a_first_start_in_an_empty_directory_still_just_works() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("new");
    let node = TestNode::bind(Config::for_tests(&data), dir).await;
    User::new("alice").register(&node).await;
    assert!(data.join("pd.sqlite3").exists());
    assert!(data.join("server.key").exists());
}

/// A copy of the `pd-server` binary that any user can run (the build directory may sit in
/// a home directory others cannot enter).
fn runnable_binary(dir: &Path) -> PathBuf {
    let copy = dir.join("pd-server");
    std::fs::copy(env!("CARGO_BIN_EXE_pd-server"), &copy).unwrap();
    copy
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn a_database_the_node_cannot_write_is_refused_at_start() {
    use std::os::unix::process::CommandExt as _;

    let (dir, _) = stopped_node_with_alice().await;
    let bin_dir = tempfile::tempdir().unwrap();
    set_mode(bin_dir.path(), 0o755);
    let binary = runnable_binary(bin_dir.path());
    // The data files belong to someone else: the node runs as `nobody` when the tests run
    // as root (root writes anything), or the files are made read-only for this user.
    let is_root = std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt as _;
        m.uid() == 0
    });
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        set_mode(&entry.unwrap().path(), 0o444);
    }
    set_mode(dir.path(), 0o555);
    let mut command = Command::new(&binary);
    command
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .arg("run")
        .env_remove("PD_CONFIG")
        .env_remove("PD_STORE");
    if is_root {
        command.uid(65534).gid(65534);
    }
    let out = command.output().unwrap();
    set_mode(dir.path(), 0o755);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("read-only"), "{stderr}");
    assert!(!stderr.contains("node started"), "{stderr}");
}

#[tokio::test]
async fn migrate_refuses_to_drop_the_server_key_and_asks_for_the_database_file() {
    let (dir, key_id) = stopped_node_with_alice().await;
    let target = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let to_db = target.path().join("pd.sqlite3");
    let from_db = dir.path().join("pd.sqlite3");

    // `--from DIR` names a directory: the database file is asked for.
    let err = pd_server::cli::run(cli(&[
        "--data-dir",
        path_str(elsewhere.path()),
        "migrate",
        "--from",
        path_str(dir.path()),
        "--to",
        path_str(&to_db),
    ]))
    .await
    .unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("is a directory; name the database file"),
        "{err}"
    );
    assert!(err.contains("pd.sqlite3"), "{err}");
    assert!(!to_db.exists());

    // The key is found next to the database file even when --data-dir names another
    // directory, and it travels with the data.
    pd_server::cli::run(cli(&[
        "--data-dir",
        path_str(elsewhere.path()),
        "migrate",
        "--from",
        path_str(&from_db),
        "--to",
        path_str(&to_db),
    ]))
    .await
    .unwrap();
    let moved = server_keys::read_current(target.path()).unwrap().unwrap();
    assert_eq!(server_key_id(&moved.public()), key_id);

    // A database file without its key anywhere: refused, nothing copied.
    let bare = tempfile::tempdir().unwrap();
    let bare_db = bare.path().join("pd.sqlite3");
    std::fs::copy(&from_db, &bare_db).unwrap();
    let third = tempfile::tempdir().unwrap();
    let third_db = third.path().join("pd.sqlite3");
    let migrate_bare = |extra: &'static [&'static str]| {
        let mut args = vec![
            "--data-dir",
            path_str(elsewhere.path()),
            "migrate",
            "--from",
            path_str(&bare_db),
            "--to",
            path_str(&third_db),
        ];
        args.extend_from_slice(extra);
        cli(&args)
    };
    let err = format!(
        "{:#}",
        pd_server::cli::run(migrate_bare(&[])).await.unwrap_err()
    );
    assert!(err.contains("no server key found"), "{err}");
    assert!(err.contains("--new-server-key"), "{err}");
    let copied = pd_server::store::Store::open(&third_db).unwrap();
    assert!(copied.account("alice").await.unwrap().is_none());
    copied.close().await.unwrap();
    assert!(server_keys::read_current(third.path()).unwrap().is_none());

    // With --new-server-key the operator accepts a new identity.
    pd_server::cli::run(migrate_bare(&["--new-server-key"]))
        .await
        .unwrap();
    let copied = pd_server::store::Store::open(&third_db).unwrap();
    assert!(copied.account("alice").await.unwrap().is_some());
    copied.close().await.unwrap();
}
