//! Trust lists on every path between real nodes (issue 4): an allowlist node reaches its
//! community and not an outsider, an outsider is refused inbound, a deny added at runtime
//! takes effect for cached answers, and the `trust` subcommands of the binary.

use std::process::Command;

use pd_federation::trust::{Entry, Mode};
use pd_proto::ProblemType;
use reqwest::StatusCode;
use serde_json::Value;

use crate::federation::{admin_url, found, lookup_mode, network, requests_to, user_with_presence};
use crate::util::{assert_problem, pd_server};

fn entry(domain: &str) -> Entry {
    Entry::new(pd_federation::trust::DomainPattern::parse(domain).unwrap())
}

#[tokio::test]
async fn an_allowlist_node_reaches_its_community_but_not_an_outsider() {
    let nodes = network(&["a.test", "b.test", "c.test"], |domain, c| {
        if domain == "a.test" {
            c.trust.mode = Some(Mode::Allowlist);
            c.trust.allow = vec![entry("b.test")];
        }
    })
    .await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    user_with_presence(b, "bob", "b.test").await;
    user_with_presence(c, "carol", "c.test").await;
    assert_eq!(found(a, "bob@b.test", None).await["source"], "remote");

    let resp = a.lookup("carol@c.test", None).await;
    let problem = assert_problem(resp, 403, ProblemType::RefusedByPolicy).await;
    assert!(problem.detail.contains("c.test"), "{}", problem.detail);
    for mode in ["cache-only", "refresh"] {
        let resp = lookup_mode(a, "carol@c.test", Some(mode)).await;
        assert_problem(resp, 403, ProblemType::RefusedByPolicy).await;
    }
    // Not a single request reached the outsider: no lookup, no discovery, no key fetch.
    let text = c.get("/metrics").await.text().await.unwrap();
    assert!(!text.contains("/v1/federation/lookup"), "{text}");
    assert_eq!(requests_to(c, "/.well-known/pd").await, 0);
    let metrics = a.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("refused_lookups_total{reason=\"not_in_allowlist\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_outsider_is_refused_inbound_before_its_keys_are_fetched() {
    let nodes = network(&["a.test", "b.test", "c.test"], |domain, c| {
        if domain == "b.test" {
            c.trust.mode = Some(Mode::Allowlist);
            c.trust.allow = vec![entry("a.test")];
        }
    })
    .await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    user_with_presence(b, "bob", "b.test").await;
    // The community member is answered.
    assert_eq!(found(a, "bob@b.test", None).await["source"], "remote");
    // The outsider asks and is refused; its own node reports remote-refused.
    let resp = c.lookup("bob@b.test", None).await;
    let problem = assert_problem(resp, 403, ProblemType::RemoteRefused).await;
    assert!(problem.detail.contains("b.test"), "{}", problem.detail);
    // B never fetched the outsider's keys (a.test's were fetched once).
    assert_eq!(requests_to(c, "/.well-known/pd").await, 0);
    assert_eq!(requests_to(a, "/.well-known/pd").await, 1);
    let metrics = b.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("refused_inbound_total{reason=\"not_in_allowlist\"} 1"),
        "{metrics}"
    );
    // No relaying: A trusts C and B trusts A, but a correctly signed request from C asking
    // A about B's user is refused, never forwarded.
    let c_key = pd_proto::SecretKey::from_text(
        std::fs::read_to_string(c.dir.path().join("server.key"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let target = "/v1/federation/lookup/bob%40b.test";
    let authorization = pd_federation::node_auth::sign_request(
        &c_key,
        &pd_proto::Host::parse("c.test").unwrap(),
        &pd_proto::Host::parse("a.test").unwrap(),
        "GET",
        target,
        b"",
    );
    let resp = a
        .client
        .get(format!("{}{target}", a.url))
        .header("authorization", authorization.to_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_problem(resp, 400, ProblemType::WrongDomain).await;
    // B saw A's lookup and C's refused one; A forwarded nothing.
    assert_eq!(requests_to(b, "/v1/federation/lookup/{address}").await, 2);
    // The same request without a signature is not authenticated at all.
    let resp = a.get(target).await;
    assert_problem(resp, 401, ProblemType::InvalidNodeSignature).await;
}

#[tokio::test]
async fn a_deny_added_at_runtime_takes_effect_for_cached_answers() {
    let policy_dir = tempfile::tempdir().unwrap();
    let trust_file = policy_dir.path().join("trust.toml");
    std::fs::write(&trust_file, "mode = \"open\"\n").unwrap();
    let file = trust_file.clone();
    let nodes = network(&["a.test", "b.test"], move |domain, c| {
        if domain == "a.test" {
            c.trust.file = Some(file.clone());
        }
    })
    .await;
    let (a, b) = (&nodes[0], &nodes[1]);
    user_with_presence(b, "bob", "b.test").await;
    assert_eq!(found(a, "bob@b.test", None).await["source"], "remote");
    assert_eq!(found(a, "bob@b.test", None).await["source"], "cache");

    // A bad file is refused with a clear message; the old policy stays.
    std::fs::write(&trust_file, "mode = \"sometimes\"\n").unwrap();
    let client = reqwest::Client::new();
    let admin = admin_url(a);
    let resp = client
        .post(format!("{admin}/admin/trust/reload"))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(resp, 400, ProblemType::InvalidRequest).await;
    assert!(problem.detail.contains("trust.toml"), "{}", problem.detail);
    assert!(a.server.reload_trust().await.is_err());
    assert_eq!(found(a, "bob@b.test", None).await["source"], "cache");

    // The deny is put in force by the reload SIGHUP performs.
    std::fs::write(
        &trust_file,
        "deny = [{ domain = \"b.test\", reason = \"private: spam wave\" }]\n",
    )
    .unwrap();
    let diff = a.server.reload_trust().await.unwrap();
    assert_eq!(diff.added.len(), 1);
    for mode in [None, Some("cache-only"), Some("refresh")] {
        let resp = lookup_mode(a, "bob@b.test", mode).await;
        let problem = assert_problem(resp, 403, ProblemType::RefusedByPolicy).await;
        assert!(!problem.detail.contains("spam"), "{}", problem.detail);
    }
    // The cached answer was dropped, not merely hidden.
    assert_eq!(a.server.state().federation.cached_answers().await, 0);

    // The admin surface explains and exports the policy in force.
    let explained: Value = client
        .get(format!("{admin}/admin/trust/explain/B.test."))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(explained["allowed"], false);
    assert!(
        explained["explanation"]
            .as_str()
            .unwrap()
            .starts_with("refused: b.test"),
        "{explained}"
    );
    let text = client
        .get(format!("{admin}/admin/trust/export?format=text&kind=deny"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.lines().any(|l| l.trim() == "b.test"), "{text}");
    let resp = client
        .get(format!("{admin}/admin/trust/export?format=csv&kind=deny"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("b.test"));
    let resp = client
        .get(format!("{admin}/admin/trust/export?format=xml"))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 400, ProblemType::InvalidRequest).await;

    // Lifting the deny (through the admin call) lets lookups through again.
    std::fs::write(&trust_file, "mode = \"open\"\n").unwrap();
    let resp = client
        .post(format!("{admin}/admin/trust/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(found(a, "bob@b.test", None).await["source"], "remote");
}

fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let file = dir.join("pd.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// `pd-server trust explain DOMAIN --config FILE`.
fn explain(file: &std::path::Path, domain: &str) -> std::process::Output {
    pd_server()
        .args(["trust", "explain", domain, "--config"])
        .arg(file)
        .output()
        .unwrap()
}

/// A successful `trust explain`: its verdict line and its stderr.
fn explain_ok(file: &std::path::Path, domain: &str) -> (String, String) {
    let out = explain(file, domain);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).unwrap().trim_end().to_owned(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const POLICY: &str = r#"domain = "home.example"
[trust]
mode = "allowlist"
allow = ["blackmesa.us", "*.aperture.example"]
deny = ["xen.example", { domain = "spam.example", reason = "spam wave", expires = "2999-01-01T00:00:00Z" }]
"#;

#[test]
fn trust_explain_prints_the_verdict_and_the_deciding_entry() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), POLICY);
    for (domain, expected) in [
        (
            "BlackMesa.us.",
            "allowed: blackmesa.us (allow entry \"blackmesa.us\" in local list)",
        ),
        (
            "lab.aperture.example",
            "allowed: lab.aperture.example (allow entry \"*.aperture.example\" in local list)",
        ),
        (
            "spam.example",
            "refused: spam.example (deny entry \"spam.example\" in local list: spam wave)",
        ),
        (
            "elsewhere.example",
            "refused: elsewhere.example (allowlist mode, no allow entry matches)",
        ),
        (
            "home.example",
            "allowed: home.example (this node's own domain)",
        ),
    ] {
        assert_eq!(explain_ok(&file, domain).0, expected);
    }
    let out = explain(&file, "not a domain");
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
}

#[tokio::test]
async fn trust_explain_considers_the_kept_copies_of_subscribed_lists() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let list = "https://community.example/allow.txt";
    let file = write_config(
        dir.path(),
        &format!(
            "domain = \"home.example\"\ndata_dir = {data:?}\n[trust]\nmode = \"allowlist\"\nsubscriptions = [{{ url = \"{list}\", kind = \"allow\" }}]\n"
        ),
    );
    let explain = |domain: &str| explain_ok(&file, domain);
    // No copy yet: the list is named and not considered.
    let (stdout, stderr) = explain("lambda.example");
    assert_eq!(
        stdout,
        "refused: lambda.example (allowlist mode, no allow entry matches)"
    );
    assert!(
        stderr.contains(&format!("subscribed list {list} has no kept copy")),
        "{stderr}"
    );
    assert!(
        !data.join("pd.sqlite3").exists(),
        "explain must not create a store"
    );

    std::fs::create_dir_all(&data).unwrap();
    let store = pd_server::store::Store::open(&data.join("pd.sqlite3")).unwrap();
    store
        .save_trust_list(list, b"lambda.example\n".to_vec(), 1_790_000_000)
        .await
        .unwrap();
    store.close().await.unwrap();
    let (stdout, stderr) = explain("lambda.example");
    assert_eq!(
        stdout,
        format!(
            "allowed: lambda.example (allow entry \"lambda.example\" in subscribed list {list})"
        )
    );
    assert!(!stderr.contains("no kept copy"), "{stderr}");
}

#[test]
fn trust_export_and_import_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), POLICY);
    let out = pd_server()
        .args([
            "trust", "export", "--format", "text", "--kind", "deny", "--config",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().any(|l| l.trim() == "xen.example"), "{text}");
    let out = pd_server()
        .args(["trust", "export", "--format", "csv", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(csv.contains("spam.example"), "{csv}");
    // Regression (issue 12): the private reason never reaches the shared list.
    assert!(!csv.contains("spam wave"), "{csv}");
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.ends_with(",suspend,false,false,,false")),
        "{csv}"
    );
    let list = dir.path().join("blocks.csv");
    std::fs::write(&list, &csv).unwrap();
    let out = pd_server()
        .args(["trust", "import"])
        .arg(&list)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snippet = String::from_utf8(out.stdout).unwrap();
    // Each entry keeps where it came from, so the snippet nests its tables under `trust`.
    assert!(snippet.starts_with("[[trust.deny]]\n"), "{snippet}");
    assert!(snippet.contains("added_by = \"import from "), "{snippet}");
    assert!(
        snippet.contains("xen.example") && snippet.contains("spam.example"),
        "{snippet}"
    );
    // The snippet is a valid configuration.
    let imported = write_config(dir.path(), &format!("domain = \"x.example\"\n{snippet}"));
    let out = pd_server()
        .args(["check-config", "--config"])
        .arg(&imported)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{snippet}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_warns_about_an_empty_allowlist_and_takes_peers() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), "[trust]\nmode = \"allowlist\"\n");
    let out = pd_server()
        .args([
            "check-config",
            "--peer",
            "b.example=http://127.0.0.1:9",
            "--config",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.lines().any(|l| l.starts_with("warning: ")),
        "{stderr}"
    );
    let out = pd_server()
        .args(["check-config", "--peer", "b.example", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn the_example_configuration_with_federation_and_trust_is_valid() {
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config.example.toml");
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

/// The real binary reloads its trust policy on SIGHUP; a bad file leaves the old one.
#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_the_trust_policy_of_the_running_binary() {
    let dir = tempfile::tempdir().unwrap();
    let port = |_| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (http, admin) = (port(0), port(1));
    let trust_file = dir.path().join("trust.toml");
    std::fs::write(&trust_file, "mode = \"open\"\n").unwrap();
    let file = write_config(
        dir.path(),
        &format!(
            "domain = \"a.test\"\nlisten = \"127.0.0.1:{http}\"\nadmin_listen = \"127.0.0.1:{admin}\"\ndata_dir = \"data\"\n[trust]\nfile = \"trust.toml\"\n"
        ),
    );
    let mut child = pd_server()
        .current_dir(dir.path())
        .args(["run", "--config"])
        .arg(&file)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let explain = async |client: &reqwest::Client| -> Option<Value> {
        let resp = client
            .get(format!(
                "http://127.0.0.1:{admin}/admin/trust/explain/b.test"
            ))
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    };
    let mut verdict = None;
    for _ in 0..100 {
        verdict = explain(&client).await;
        if verdict.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(verdict.unwrap()["allowed"], true);

    let hup = |pid: u32| {
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    std::fs::write(&trust_file, "deny = [\"b.test\"]\n").unwrap();
    hup(child.id());
    let mut allowed = Value::Bool(true);
    for _ in 0..100 {
        allowed = explain(&client).await.unwrap()["allowed"].clone();
        if allowed == false {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(allowed, false);

    std::fs::write(&trust_file, "mode = \"sometimes\"\n").unwrap();
    hup(child.id());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(explain(&client).await.unwrap()["allowed"], false);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the node must keep running"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn the_allowlist_is_published_only_when_opted_in() {
    let node = crate::util::TestNode::start().await;
    let resp = node.get("/.well-known/pd-allowlist.txt").await;
    assert_problem(resp, 404, ProblemType::NotFound).await;
    let node = crate::util::TestNode::start_with(|c| {
        c.publish_allowlist = true;
        c.trust.mode = Some(Mode::Allowlist);
        c.trust.allow = vec![entry("blackmesa.us"), entry("*.aperture.example")];
        c.trust.deny = vec![entry("xen.example")];
    })
    .await;
    let resp = node.get("/.well-known/pd-allowlist.txt").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    let parsed = pd_federation::trust::lists::parse(text.as_bytes()).unwrap();
    let domains: Vec<String> = parsed
        .entries
        .iter()
        .map(|e| e.pattern.to_string())
        .collect();
    assert_eq!(domains, ["blackmesa.us", "*.aperture.example"], "{text}");
}

#[tokio::test]
async fn the_admin_surface_reports_subscription_state() {
    // The guarded client refuses a loopback list without sending anything; the failure is
    // what the admin surface reports.
    let nodes = network(&["a.test"], |_, c| {
        c.trust.subscriptions = vec![
            toml::from_str::<pd_federation::trust::SubscriptionConfig>(
                "url = \"https://127.0.0.1:1/allow.txt\"\nkind = \"allow\"\n",
            )
            .unwrap(),
        ];
    })
    .await;
    let client = reqwest::Client::new();
    let url = format!("{}/admin/trust/subscriptions", admin_url(&nodes[0]));
    let mut listed = Value::Null;
    for _ in 0..100 {
        listed = client.get(&url).send().await.unwrap().json().await.unwrap();
        if !listed["subscriptions"][0]["last_error"].is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let sub = &listed["subscriptions"][0];
    assert_eq!(sub["url"], "https://127.0.0.1:1/allow.txt", "{listed}");
    assert_eq!(sub["kind"], "allow");
    assert!(sub["last_error"].is_string(), "{listed}");
    assert!(sub["last_success"].is_null());
}

#[tokio::test]
async fn a_subscribed_list_kept_in_the_store_is_in_force_before_its_server_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = pd_server::Config::for_tests(dir.path());
    config.trust.mode = Some(Mode::Allowlist);
    // The guarded client refuses this loopback list: its server is "down" for the node.
    let list = "https://127.0.0.1:1/allow.txt";
    config.trust.subscriptions = vec![
        toml::from_str::<pd_federation::trust::SubscriptionConfig>(&format!(
            "url = \"{list}\"\nkind = \"allow\"\n"
        ))
        .unwrap(),
    ];
    // The copy an earlier run of the node fetched and kept.
    let store = pd_server::store::Store::open(&config.db_path()).unwrap();
    store
        .save_trust_list(list, b"lambda.example\n".to_vec(), 1_790_000_000)
        .await
        .unwrap();
    store.close().await.unwrap();

    let server = pd_server::Server::bind(config).await.unwrap();
    let federation = &server.state().federation;
    let now = std::time::SystemTime::now();
    let policy = federation.trust.current();
    assert!(policy.allows(&"lambda.example".parse().unwrap(), now));
    assert!(!policy.allows(&"xen.example".parse().unwrap(), now));
    let status = federation.subscriptions();
    let s = &status[&list.parse::<url::Url>().unwrap()];
    assert_eq!(s.entries, 1);
    assert_eq!(
        s.last_success,
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_790_000_000))
    );
    server.shutdown().await.unwrap();
}
