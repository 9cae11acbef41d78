//! The operator's status pages (issue 17), rendered in process through the admin router
//! against a real node whose peers are wiremock remotes in every state: healthy, failing,
//! backing off, refusing this node, refused by this node's trust policy, and one that
//! answers with hostile text. Also the forms (the JSON surface's operations), their
//! protection against cross-site requests, the access rules and the explain form against
//! `pd-server trust explain`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use pd_server::config::{Config, Overrides};
use serde_json::Value;
use tower::ServiceExt as _;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::federation::{admin_url, lookup_mode};
use crate::util::{TestNode, User, assert_problem};

/// The hostile text a remote sends back, which ends up in the peer's last error.
pub(crate) const HOSTILE_LOCATION: &str =
    "https://evil.example/<script>alert(\"pwned\")</script>\"><img src=x onerror=alert(1)>";

/// A private reason with markup, as a subscribed list could carry it.
pub(crate) const HOSTILE_REASON: &str = "<script>document.title='pwned'</script><b>spam</b> wave";

/// A node `home.test` with peers in every state, and the remotes behind them.
pub(crate) struct Fixture {
    pub(crate) node: TestNode,
    pub(crate) config_path: PathBuf,
    pub(crate) config_text: String,
    _remotes: Vec<MockServer>,
}

impl Fixture {
    /// Rewrites the configuration with `extra_deny` added to the deny entries.
    pub(crate) fn write_config(&self, extra_deny: &str) {
        let text = self.config_text.replace("# EXTRA DENY", extra_deny);
        std::fs::write(&self.config_path, text).unwrap();
    }
}

/// A remote whose federation endpoint answers every lookup with `response`.
async fn remote(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

/// A remote that answers lookups of `bob@domain` with a valid signed answer.
async fn healthy_remote(domain: &str) -> MockServer {
    let bob = User::at("bob", domain);
    let answer = serde_json::json!({
        "address": format!("bob@{domain}"),
        "public_key": bob.key.public(),
        "presence": bob.signed_presence(600),
        "source": "local",
        "ttl": 600,
    });
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/federation/lookup/bob%40{domain}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .mount(&server)
        .await;
    server
}

/// Starts the fixture: remotes, the node (from a configuration file, so the trust policy
/// can be reloaded), and traffic that puts every peer in its state.
pub(crate) async fn fixture() -> Fixture {
    let healthy = healthy_remote("healthy.test").await;
    let denied = healthy_remote("denied.test").await;
    let failing = remote(ResponseTemplate::new(500)).await;
    let backing = remote(ResponseTemplate::new(503)).await;
    let strict = remote(ResponseTemplate::new(403)).await;
    let long_tail = "A".repeat(3000);
    let hostile = remote(ResponseTemplate::new(302).insert_header(
        "location",
        format!("{HOSTILE_LOCATION}{long_tail}").as_str(),
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut routes = String::new();
    for (domain, server) in [
        ("healthy.test", &healthy),
        ("denied.test", &denied),
        ("failing.test", &failing),
        ("backing.test", &backing),
        ("strict.test", &strict),
        ("hostile.test", &hostile),
    ] {
        routes.push_str(&format!(
            "[[federation.peers]]\ndomain = \"{domain}\"\nurl = \"{}\"\n",
            server.uri()
        ));
    }
    let long_reason = format!("{HOSTILE_REASON} {}", "x".repeat(600));
    let config_text = format!(
        r#"domain = "home.test"
listen = "127.0.0.1:0"
data_dir = "{data}"
lookup_access = "public"
admin_listen = "127.0.0.1:0"

[rate_limit]
writes_per_second = 10000
burst = 10000

[trust]
deny = [
  {{ domain = "spam.example", reason = "{long_reason}" }},
  {{ domain = "old.example", added_by = "import from blocks.csv", added_at = "2026-01-02T03:04:05Z" }},
  # EXTRA DENY
]
# A list that cannot be fetched: the guarded client refuses an IP literal.
subscriptions = [{{ url = "https://127.0.0.1:9/deny.txt", kind = "deny" }}]

[federation.backoff]
initial = "60ms"
factor = 1000.0
jitter = 0.0

{routes}"#,
        data = dir.path().display(),
    );
    let config_path = dir.path().join("pd.toml");
    std::fs::write(&config_path, &config_text).unwrap();
    let config = Config::load(Some(&config_path), Overrides::default()).unwrap();
    let node = TestNode::bind(config, dir).await;

    // A local user, looked up twice; a local miss (an unknown-user problem).
    let alice = User::at("alice", "home.test");
    alice.register(&node).await;
    alice.publish(&node, 600).await;
    for _ in 0..2 {
        assert_eq!(node.lookup("alice@home.test", None).await.status(), 200);
    }
    assert_eq!(node.lookup("nobody@home.test", None).await.status(), 404);
    // Healthy: fetched, then cached. Denied: fetched while still allowed.
    for address in ["bob@healthy.test", "bob@healthy.test", "bob@denied.test"] {
        let resp = lookup_mode(&node, address, None).await;
        assert_eq!(
            resp.status(),
            200,
            "{address}: {}",
            resp.text().await.unwrap()
        );
    }
    // Failing, backing off and hostile fail once; the strict node refuses this node.
    for (address, status) in [
        ("bob@failing.test", 504),
        ("bob@backing.test", 504),
        ("bob@hostile.test", 502),
        ("bob@strict.test", 403),
    ] {
        let resp = lookup_mode(&node, address, None).await;
        assert_eq!(
            resp.status(),
            status,
            "{address}: {}",
            resp.text().await.unwrap()
        );
    }
    // Once the first backoff ran out, the backing-off node fails again: now it waits a
    // minute (60 ms × 1000), while the failing node may be tried at once.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        lookup_mode(&node, "bob@backing.test", None).await.status(),
        504
    );
    // A domain the policy denies: refused without traffic.
    assert_eq!(
        lookup_mode(&node, "bob@spam.example", None).await.status(),
        403
    );

    let fixture = Fixture {
        node,
        config_path,
        config_text,
        _remotes: vec![healthy, denied, failing, backing, strict, hostile],
    };
    // Now the policy denies denied.test.
    fixture.write_config(r#"{ domain = "denied.test", reason = "went rogue" },"#);
    let diff = fixture.node.server.reload_trust().await.unwrap();
    assert_eq!(diff.added.len(), 1);
    fixture
}

/// One request to an admin router, as from 127.0.0.1.
pub(crate) async fn request(
    admin: &axum::Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(uri);
    req = req.header(header::HOST, "127.0.0.1:9091");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(Body::from(body.to_owned())).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let resp = admin.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 4 << 20)
        .await
        .unwrap();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn page(admin: &axum::Router, uri: &str) -> String {
    let (status, headers, body) = request(admin, Method::GET, uri, &[], "").await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "text/html; charset=utf-8",
        "{uri}"
    );
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert!(
        headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    assert!(body.starts_with("<!DOCTYPE html>"), "{body}");
    body
}

/// Undoes askama's HTML escaping, to compare text.
pub(crate) fn unescape(s: &str) -> String {
    s.replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#38;", "&")
}

/// The text between `start` and the next `end` after it.
pub(crate) fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let from = html
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not in {html}"))
        + start.len();
    let len = html[from..].find(end).unwrap();
    &html[from..from + len]
}

fn csrf_of(html: &str) -> String {
    between(html, r#"name="csrf" value=""#, "\"").to_owned()
}

#[tokio::test]
async fn the_pages_show_peers_in_every_state_trust_and_traffic() {
    let f = fixture().await;
    let admin = pd_server::admin::router(f.node.server.state().clone());

    let overview = page(&admin, "/").await;
    assert!(
        overview.contains("<strong>home.test</strong>"),
        "{overview}"
    );
    assert!(overview.contains(env!("CARGO_PKG_VERSION")));
    assert!(overview.contains(r#"<span class="pill ok" id="store-health">healthy</span>"#));
    assert!(overview.contains("SQLite"));
    assert!(
        overview.contains(r#"<span id="users-registered">1</span>"#),
        "{overview}"
    );
    assert!(overview.contains(r#"<span id="users-online">1</span>"#));
    assert!(
        overview.contains(r#"<span id="peer-count">6</span>"#),
        "{overview}"
    );
    // Lookups of the last hour by class: 3 local (2 found, 1 unknown), 6 remote (two
    // fetches that answered, four that failed or were refused remotely... counted once
    // each), 1 cached, 1 refused.
    let row =
        |class: &str| between(&overview, &format!(r#"<tr id="rate-{class}">"#), "</tr>").to_owned();
    assert!(
        row("local").contains(r#"data-label="last hour">3<"#),
        "{}",
        row("local")
    );
    assert!(
        row("cached").contains(r#"data-label="last hour">1<"#),
        "{}",
        row("cached")
    );
    assert!(
        row("refused").contains(r#"data-label="last hour">1<"#),
        "{}",
        row("refused")
    );
    assert!(
        row("remote").contains(r#"data-label="last hour">7<"#),
        "{}",
        row("remote")
    );
    // One cached answer of eight lookups of other nodes' users that were not refused.
    assert!(
        overview.contains(r#"<span id="hit-ratio">12 %</span>"#),
        "{overview}"
    );
    assert!(overview.contains("<svg viewBox=\"0 0 720 190\""));
    assert!(overview.contains(r#"<rect class="bar local""#));
    assert!(overview.contains(r#"<rect class="bar cached""#));
    assert!(
        overview.contains("<polyline class=\"ratio\"")
            || overview.contains("<circle class=\"ratio-dot\"")
    );
    // Errors by problem type: the unknown user, the policy refusal, the remote failures.
    for slug in [
        "unknown-user",
        "refused-by-policy",
        "remote-unreachable",
        "bad-remote-answer",
        "remote-refused",
    ] {
        assert!(
            overview.contains(&format!(r#"<tr id="problem-{slug}">"#)),
            "{slug}: {overview}"
        );
    }
    // The server key.
    let key = f.node.server.state().server_keys.current_id();
    assert!(
        overview.contains(&format!("<code>{key}</code>")),
        "{overview}"
    );
    assert!(overview.contains("current"));

    let peers = page(&admin, "/peers").await;
    for (domain, state) in [
        ("healthy.test", "healthy"),
        ("failing.test", "failing"),
        ("backing.test", "backing_off"),
        ("strict.test", "refuses_us"),
        ("denied.test", "refused_by_trust"),
    ] {
        assert!(
            peers.contains(&format!(r#"data-domain="{domain}" data-state="{state}""#)),
            "{domain} {state}: {peers}"
        );
    }
    let row =
        |domain: &str| between(&peers, &format!(r#"data-domain="{domain}""#), "</tr>").to_owned();
    let backing = row("backing.test");
    assert!(backing.contains("2 failures in a row"), "{backing}");
    assert!(backing.contains("backing.test answered 503"), "{backing}");
    assert!(
        backing.contains("in 59 s") || backing.contains("in 1 min"),
        "{backing}"
    );
    let healthy = row("healthy.test");
    assert!(healthy.contains(" ago</time>"), "{healthy}");
    assert!(healthy.contains(" ms"), "latency: {healthy}");
    assert!(
        healthy.contains("allowed: healthy.test (open mode, no deny entry matches)"),
        "{healthy}"
    );
    let denied = row("denied.test");
    assert!(
        unescape(&denied).contains(
            r#"refused: denied.test (deny entry "denied.test" in local list: went rogue)"#
        ),
        "{denied}"
    );
    let failing = row("failing.test");
    assert!(failing.contains("failing.test answered 500"), "{failing}");
    assert!(
        failing.contains("<span class=\"muted\">now</span>"),
        "{failing}"
    );
    // Every tracked peer has both buttons, each a form with the token.
    assert_eq!(peers.matches(r#"action="/peers/retry""#).count(), 6);
    assert_eq!(peers.matches(r#"action="/peers/flush""#).count(), 7);
    assert_eq!(
        peers
            .matches(&format!(r#"value="{}""#, csrf_of(&peers)))
            .count(),
        6 * 2 + 1
    );
    // The static routes.
    assert!(peers.contains("Static routes"));
    assert_eq!(peers.matches("<code>http://127.0.0.1:").count(), 6);

    let trust = page(&admin, "/trust").await;
    assert!(trust.contains(r#"<p class="big" id="trust-mode">open</p>"#));
    let entry = |pattern: &str| {
        between(
            &trust,
            &format!(r#"<span class="pattern">{pattern}</span>"#),
            "</tr>",
        )
        .to_owned()
    };
    assert!(entry("spam.example").contains(r#"data-label="From">config"#));
    assert!(entry("denied.test").contains("went rogue"));
    let imported = entry("old.example");
    assert!(
        imported.contains(r#"data-label="From">import <span class="wrap muted">blocks.csv</span>"#),
        "{imported}"
    );
    // The audit log records the reload that denied denied.test.
    let audit = between(&trust, r#"<ol class="audit">"#, "</ol>");
    assert!(
        audit.contains(r#"<span class="cause">reload</span>"#),
        "{audit}"
    );
    assert!(
        audit.contains(r#"<li class="added">added deny denied.test</li>"#),
        "{audit}"
    );
    // The subscription, with the error of its first fetch.
    let state = f.node.server.state();
    for _ in 0..100 {
        if state
            .federation
            .subscriptions()
            .values()
            .any(|s| s.last_attempt.is_some())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let trust = page(&admin, "/trust").await;
    let list = between(&trust, "<code>https://127.0.0.1:9/deny.txt</code>", "</tr>");
    assert!(list.contains(r#"data-label="Kind">deny<"#), "{list}");
    assert!(
        list.contains(r#"data-label="Entries" class="num">0<"#),
        "{list}"
    );
    assert!(
        list.contains("IP-literal hosts are only contacted when configured as a static peer"),
        "{list}"
    );
    assert!(
        list.contains(r#"data-label="Last success"><span class="muted">never</span>"#),
        "{list}"
    );
}

#[tokio::test]
async fn hostile_values_from_the_network_are_inert() {
    let f = fixture().await;
    let admin = pd_server::admin::router(f.node.server.state().clone());
    for uri in ["/", "/peers", "/trust", "/trust?domain=spam.example"] {
        let html = page(&admin, uri).await;
        // The only script is the listener's own file; no markup from a value survives.
        assert!(!html.contains("<script>"), "{uri}: {html}");
        assert!(!html.contains("<img"), "{uri}");
        assert!(!html.contains("<b>spam</b>"), "{uri}");
        assert!(!html.contains("onerror=alert(1)>"), "{uri}");
        assert_eq!(
            html.matches("<script").count(),
            usize::from(uri == "/" || uri == "/peers"),
            "{uri}"
        );
    }
    let peers = page(&admin, "/peers").await;
    let hostile = between(&peers, r#"data-domain="hostile.test""#, "</tr>");
    // The remote's text is there, escaped, in full.
    assert!(hostile.contains("&#60;script&#62;alert("), "{hostile}");
    assert!(
        hostile.contains("&#34;&#62;&#60;img src=x onerror=alert(1)&#62;"),
        "{hostile}"
    );
    assert!(
        hostile.contains(&"A".repeat(3000)),
        "the long text is kept whole"
    );
    let trust = page(&admin, "/trust?domain=spam.example").await;
    assert!(trust.contains("&#60;script&#62;document.title=&#39;pwned&#39;&#60;/script&#62;&#60;b&#62;spam&#60;/b&#62; wave"), "{trust}");
    // The explain form echoes what was typed, escaped, and refuses it.
    let (status, _, html) = request(
        &admin,
        Method::GET,
        "/trust?domain=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        &[],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(
        html.contains(r#"value="&#34;&#62;&#60;script&#62;alert(1)&#60;/script&#62;""#),
        "{html}"
    );
    assert!(html.contains("is not a valid domain"), "{html}");
    let long = "a".repeat(5000);
    let (status, _, html) = request(
        &admin,
        Method::GET,
        &format!("/trust?domain={long}"),
        &[],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.len() < 30_000 + long.len() * 2,
        "the echo stays bounded"
    );
}

#[tokio::test]
async fn the_forms_do_what_the_json_surface_does_and_refuse_cross_site_posts() {
    let f = fixture().await;
    let admin = pd_server::admin::router(f.node.server.state().clone());
    let peers = page(&admin, "/peers").await;
    let csrf = csrf_of(&peers);
    let form = [("content-type", "application/x-www-form-urlencoded")];

    // Retry: the backoff is gone, as after POST /admin/peers/backing.test/retry.
    let (status, headers, _) = request(
        &admin,
        Method::POST,
        "/peers/retry",
        &[
            form[0],
            ("origin", "http://127.0.0.1:9091"),
            ("sec-fetch-site", "same-origin"),
        ],
        &format!("csrf={csrf}&domain=backing.test"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = headers[header::LOCATION].to_str().unwrap().to_owned();
    assert!(location.starts_with("/peers?notice="), "{location}");
    let after = page(&admin, &location).await;
    assert!(
        after.contains(
            "The backoff of backing.test is cleared: the next lookup contacts it at once."
        ),
        "{after}"
    );
    assert!(
        after.contains(r#"data-domain="backing.test" data-state="healthy""#),
        "{after}"
    );
    // The notice is shown once.
    assert!(!page(&admin, &location).await.contains("is cleared"));
    let json: Value = reqwest::get(format!("{}/admin/peers", admin_url(&f.node)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let backing = json["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["domain"] == "backing.test")
        .unwrap();
    assert_eq!(backing["state"], "healthy", "{json}");
    assert_eq!(backing["failures"], 0);

    // Flush: the cached answer of healthy.test goes, so the next lookup asks the node.
    let (status, headers, _) = request(
        &admin,
        Method::POST,
        "/peers/flush",
        &form,
        &format!("csrf={csrf}&domain=Healthy.Test"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let after = page(&admin, headers[header::LOCATION].to_str().unwrap()).await;
    assert!(
        after.contains("Flushed 1 cached lookup of healthy.test, and its route and server keys."),
        "{after}"
    );
    let again: Value = lookup_mode(&f.node, "bob@healthy.test", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["source"], "remote");

    // Errors come back as notices: an untracked peer, a bad domain.
    for (body, text) in [
        (
            format!("csrf={csrf}&domain=never.test"),
            "never.test is not a tracked peer",
        ),
        (
            format!("csrf={csrf}&domain=bad%20domain"),
            "is not a valid domain",
        ),
    ] {
        let (status, headers, _) =
            request(&admin, Method::POST, "/peers/retry", &form, &body).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let after = page(&admin, headers[header::LOCATION].to_str().unwrap()).await;
        assert!(
            after.contains(r#"<p class="notice error" role="status">"#),
            "{after}"
        );
        assert!(after.contains(text), "{after}");
    }

    // Reload: the page's button reads the file again, like SIGHUP.
    f.write_config(r#""later.example","#);
    let (status, headers, _) = request(
        &admin,
        Method::POST,
        "/trust/reload",
        &form,
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let trust = page(&admin, headers[header::LOCATION].to_str().unwrap()).await;
    assert!(
        trust.contains("The trust policy was read again and is in force: 1 added, 1 removed"),
        "{trust}"
    );
    assert!(trust.contains(r#"<span class="pattern">later.example</span>"#));
    // A file that does not parse is refused, and the policy stays.
    std::fs::write(
        &f.config_path,
        "domain = \"home.test\"\n[trust]\nmode = \"sometimes\"\n",
    )
    .unwrap();
    let (_, headers, _) = request(
        &admin,
        Method::POST,
        "/trust/reload",
        &form,
        &format!("csrf={csrf}"),
    )
    .await;
    let trust = page(&admin, headers[header::LOCATION].to_str().unwrap()).await;
    assert!(
        trust.contains("the trust policy was not reloaded"),
        "{trust}"
    );
    assert!(trust.contains(r#"<span class="pattern">later.example</span>"#));

    // Without the form token, or from another site, nothing happens.
    let before = f.node.server.state().federation.peers();
    for (headers, body, status) in [
        (
            vec![form[0]],
            "domain=failing.test".to_owned(),
            StatusCode::FORBIDDEN,
        ),
        (
            vec![form[0]],
            "csrf=0000&domain=failing.test".to_owned(),
            StatusCode::FORBIDDEN,
        ),
        (
            vec![form[0], ("sec-fetch-site", "cross-site")],
            format!("csrf={csrf}&domain=failing.test"),
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![form[0], ("origin", "https://evil.example")],
            format!("csrf={csrf}&domain=failing.test"),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (got, _, body) = request(&admin, Method::POST, "/peers/retry", &headers, &body).await;
        assert_eq!(got, status, "{headers:?}: {body}");
    }
    // The JSON surface refuses cross-site requests too; scripts without those headers pass.
    let (status, _, body) = request(
        &admin,
        Method::POST,
        "/admin/peers/failing.test/retry",
        &[("sec-fetch-site", "cross-site")],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("cross-site request refused"), "{body}");
    let after = f.node.server.state().federation.peers();
    let failures = |peers: &[pd_federation::backoff::PeerStatus]| {
        peers
            .iter()
            .find(|p| p.host.to_string() == "failing.test")
            .unwrap()
            .failures
    };
    assert_eq!(failures(&before), failures(&after));
    assert!(failures(&after) > 0);
    let (status, _, _) = request(
        &admin,
        Method::POST,
        "/admin/peers/failing.test/retry",
        &[],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_explain_form_answers_what_the_cli_answers() {
    let f = fixture().await;
    let admin = pd_server::admin::router(f.node.server.state().clone());
    for domain in [
        "denied.test",
        "spam.example",
        "sub.spam.example",
        "healthy.test",
        "home.test",
        "old.example",
    ] {
        let html = page(&admin, &format!("/trust?domain={domain}")).await;
        let line = unescape(between(&html, r#"<code id="explain-line">"#, "</code>"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pd-server"))
            .args(["trust", "explain", domain, "--config"])
            .arg(&f.config_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            line,
            String::from_utf8(out.stdout).unwrap().trim_end(),
            "{domain}"
        );
        let refused = domain != "healthy.test" && domain != "home.test";
        assert!(
            html.contains(if refused {
                r#"<div class="verdict refused" id="verdict">"#
            } else {
                r#"<div class="verdict allowed" id="verdict">"#
            }),
            "{domain}: {html}"
        );
    }
    let html = page(&admin, "/trust?domain=denied.test").await;
    assert!(
        unescape(&html)
            .contains("Decided by: deny entry \u{201c}denied.test\u{201d} in the local list"),
        "{html}"
    );
    assert!(html.contains("Reason (private): went rogue"));
    // The JSON explain is the same line.
    let json: Value = reqwest::get(format!(
        "{}/admin/trust/explain/denied.test",
        admin_url(&f.node)
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        json["explanation"],
        r#"refused: denied.test (deny entry "denied.test" in local list: went rogue)"#
    );
}

#[tokio::test]
async fn without_a_token_only_loopback_names_are_answered() {
    let node =
        TestNode::start_with(|c| c.admin_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0))))
            .await;
    let admin = pd_server::admin::router(node.server.state().clone());
    // A page reached under another name (DNS rebinding) is refused.
    let mut req = Request::builder()
        .uri("/")
        .header(header::HOST, "rebind.evil.example:9091")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let resp = admin.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // Over the real listener, under its address and as localhost.
    let addr = node.server.admin_addr().unwrap();
    for url in [
        format!("http://{addr}/"),
        format!("http://localhost:{}/peers", addr.port()),
    ] {
        let resp = reqwest::get(&url).await.unwrap();
        assert_eq!(resp.status(), 200, "{url}");
        assert!(resp.text().await.unwrap().contains("PD node"));
    }
    // Unknown paths: a page for browsers, a problem for scripts.
    let client = reqwest::Client::new();
    let resp = client
        .get(format!("http://{addr}/nowhere"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("There is no admin page here.")
    );
    let resp = client
        .get(format!("http://{addr}/nowhere"))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404, pd_proto::ProblemType::NotFound).await;
    // The stylesheet and the script are served with their types.
    let css = client
        .get(format!("http://{addr}/style.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert!(
        css.text()
            .await
            .unwrap()
            .contains("prefers-color-scheme: dark")
    );
    let js = client
        .get(format!("http://{addr}/refresh.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    node.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn with_a_token_every_request_needs_it() {
    const TOKEN: &str = "s3cr3t-admin-token-0123456789abcdef";
    let node = TestNode::start_with(|c| {
        c.admin_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        c.admin.remote = true;
        c.admin.token = Some(pd_server::config::Secret::new(TOKEN));
    })
    .await;
    let base = format!("http://{}", node.server.admin_addr().unwrap());
    let client = reqwest::Client::new();
    for path in ["/", "/peers", "/admin/peers"] {
        let resp = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        let challenges: Vec<&str> = resp
            .headers()
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            challenges,
            [
                "Basic realm=\"pd-server admin\", charset=\"UTF-8\"",
                "Bearer realm=\"pd-server admin\""
            ]
        );
        let wrong = client
            .get(format!("{base}{path}"))
            .bearer_auth("s3cr3t-admin-token-0123456789abcdeX")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
        let bearer = client
            .get(format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(bearer.status(), 200, "{path}");
        let basic = client
            .get(format!("{base}{path}"))
            .basic_auth("operator", Some(TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), 200, "{path}");
    }
    // With the token, the name in Host does not matter (a proxy may pass its own).
    let resp = client
        .get(format!("{base}/"))
        .header("host", "admin.example.org")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    node.server.shutdown().await.unwrap();

    // With the node's own certificate, remote admin access is served over HTTPS.
    let certs = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let node = TestNode::start_with(|c| {
        c.tls = Some(pd_server::config::TlsConfig { cert, key });
        c.admin_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        c.admin.remote = true;
        c.admin.token = Some(pd_server::config::Secret::new(TOKEN));
    })
    .await;
    let port = node.server.admin_addr().unwrap().port();
    let https = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], port)))
        .build()
        .unwrap();
    let resp = https
        .get(format!("https://localhost:{port}/peers"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("<h1>Peers</h1>"));
    let plain = client
        .get(format!("http://127.0.0.1:{port}/peers"))
        .bearer_auth(TOKEN)
        .send()
        .await;
    assert!(
        plain.is_err() || plain.unwrap().status() != 200,
        "no plain HTTP"
    );
    node.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_relay_page_says_what_the_relay_holds_and_never_content() {
    let f = fixture().await;
    let admin = pd_server::admin::router(f.node.server.state().clone());
    let html = page(&admin, "/relay").await;
    assert!(html.contains("<h1>Relay</h1>"), "{html}");
    assert!(html.contains(r#"aria-current="page">Relay</a>"#), "{html}");
    assert!(html.contains(r#"id="no-slots""#), "{html}");
    assert!(html.contains(r#"id="no-conversations""#), "{html}");
    assert!(
        html.contains("at most 2 slot(s) and 16 conversation(s) per user"),
        "{html}"
    );
    // The other pages link to it.
    let overview = page(&admin, "/").await;
    assert!(
        overview.contains(r#"<a href="/relay">Relay</a>"#),
        "{overview}"
    );
    let (status, _, json) = request(&admin, Method::GET, "/admin/relay", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["enabled"], true);
    assert_eq!(json["slots"], serde_json::json!([]));
    assert_eq!(json["conversations"], serde_json::json!([]));
}
