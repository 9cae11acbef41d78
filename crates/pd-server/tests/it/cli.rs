//! The `pd-server` binary's subcommands: check-config and invite create.

use pd_server::config::{Config, RegistrationPolicy};
use reqwest::StatusCode;

use crate::util::{TestNode, User, pd_server};

#[test]
fn check_config_accepts_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pd.toml");
    std::fs::write(
        &file,
        "domain = \"chat.example\"\nregistration = \"invite\"\n",
    )
    .unwrap();
    let out = pd_server()
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_refuses_a_bad_file_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    for (text, needle) in [
        (
            "domain = \"chat.example\"\nsession_ttl = \"forever\"\n",
            "session_ttl",
        ),
        ("[rate_limit]\nburst = 0\n", "rate_limit.burst"),
        ("colour = \"blue\"\n", "colour"),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, text).unwrap();
        let out = pd_server()
            .args(["check-config", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
    }
    let out = pd_server()
        .args(["check-config", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("failed to read")
    );
}

#[tokio::test]
async fn invite_create_prints_a_token_the_node_accepts_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = pd_server()
        .args(["invite", "create", "--expires", "1h", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.len(), 43, "{token:?}");

    let mut config = Config::for_tests(dir.path());
    config.registration = RegistrationPolicy::Invite;
    let node = TestNode::bind(config, dir).await;
    let mut req = User::new("bob").registration();
    req.invite = Some(token.clone());
    assert_eq!(
        node.post("/v1/accounts", &req).await.status(),
        StatusCode::CREATED
    );
    let mut req = User::new("carol").registration();
    req.invite = Some(token);
    assert_eq!(
        node.post("/v1/accounts", &req).await.status(),
        StatusCode::FORBIDDEN
    );
}

#[test]
fn trust_import_prints_entries_that_paste_into_a_configuration_with_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("blocks.txt");
    std::fs::write(&list, "spam.example\n*.bad.example # bulk\n").unwrap();
    let out = pd_server()
        .args(["trust", "import", "--kind", "deny"])
        .arg(&list)
        .env_remove("PD_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snippet = String::from_utf8(out.stdout).unwrap();
    assert!(snippet.contains("[[trust.deny]]"), "{snippet}");
    assert!(
        snippet.contains("added_by = \"import from blocks.txt\""),
        "{snippet}"
    );
    let file = dir.path().join("pd.toml");
    std::fs::write(&file, format!("domain = \"chat.example\"\n{snippet}")).unwrap();
    let config = Config::from_file(&file).unwrap();
    assert_eq!(config.trust.deny.len(), 2);
    let explain = pd_server()
        .args(["trust", "explain", "x.bad.example", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(explain.stdout).unwrap().trim(),
        "refused: x.bad.example (deny entry \"*.bad.example\" in local list)"
    );
}
