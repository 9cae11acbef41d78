//! The status pages in a real browser: headless Chromium (Debian's `chromium`, driven
//! through `chromedriver` from `chromium-driver` over WebDriver) loads every page of a
//! real node with peers in every state, checks what a person sees, submits the explain
//! form and a retry button, checks the phone layout and dark mode, and saves screenshots
//! under `target/screenshots/`.
//!
//! Without the browser the test is skipped with a line on stderr, except with `CI=true`,
//! where a missing browser fails it (`.ci/run` installs both packages).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::admin_pages::{HOSTILE_LOCATION, fixture};

/// The longest the whole browser test may take.
const DEADLINE: Duration = Duration::from_secs(180);

/// A running chromedriver, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_program(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// The browser and its driver, or `None` (the test is then skipped, or fails on CI).
fn browser() -> Option<(PathBuf, PathBuf)> {
    let chromium = find_program(&["/usr/lib/chromium/chromium", "/usr/bin/chromium"]);
    let driver = find_program(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(
                !ci,
                "headless Chromium is required on CI: apt-get install chromium chromium-driver"
            );
            eprintln!(
                "skipping the admin pages browser test: Debian's chromium and chromium-driver are not installed"
            );
            None
        }
    }
}

async fn start_driver(path: &Path) -> Driver {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let status = format!("{}/status", driver.url);
    for _ in 0..200 {
        if let Ok(resp) = reqwest::get(&status).await
            && let Ok(body) = resp.json::<Value>().await
            && body["value"]["ready"] == true
        {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not become ready at {status}");
}

async fn session(driver: &Driver, chromium: &Path, extra: &[&str]) -> Client {
    let mut args = vec![
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--window-size=1280,1000",
    ];
    args.extend_from_slice(extra);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": chromium, "args": args }),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("no browser session: {e}"))
}

fn screenshots_dir() -> PathBuf {
    // The build's target directory: CARGO_TARGET_DIR, or `target/` of the workspace.
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Saves a screenshot of the whole page (the window is grown to the page's height).
async fn screenshot(c: &Client, name: &str, width: u32) {
    let height = c
        .execute("return document.documentElement.scrollHeight;", vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap_or(1000) as u32;
    c.set_window_size(width, height.clamp(400, 6000))
        .await
        .unwrap();
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let path = screenshots_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn script(c: &Client, js: &str) -> Value {
    c.execute(js, vec![]).await.unwrap()
}

#[tokio::test]
async fn every_page_works_in_headless_chromium() {
    let Some((chromium, driver_path)) = browser() else {
        return;
    };
    tokio::time::timeout(DEADLINE, async {
        let f = fixture().await;
        let base = format!("http://{}", f.node.server.admin_addr().unwrap());
        let driver = start_driver(&driver_path).await;
        let c = session(&driver, &chromium, &[]).await;

        // Overview.
        c.goto(&format!("{base}/")).await.unwrap();
        assert_eq!(text(&c, "h1").await, "Overview");
        assert_eq!(text(&c, "header .brand strong").await, "home.test");
        assert_eq!(text(&c, "#store-health").await, "healthy");
        assert_eq!(text(&c, "#users-registered").await, "1");
        assert_eq!(text(&c, "#users-online").await, "1");
        assert_eq!(text(&c, "#peer-count").await, "6");
        let ratio = text(&c, "#hit-ratio").await;
        assert!(ratio.ends_with('%'), "{ratio}");
        assert!(text(&c, "#problem-unknown-user").await.contains("unknown-user"));
        // The stylesheet applied (the content security policy lets it through), the
        // chart is drawn, and the refresh script loaded.
        assert_eq!(
            script(&c, "return getComputedStyle(document.body).backgroundColor;").await,
            "rgb(246, 247, 249)"
        );
        let bars = script(&c, "return document.querySelectorAll('svg rect.bar').length;").await;
        assert!(bars.as_u64().unwrap() >= 3, "{bars}");
        let width = script(
            &c,
            "return document.querySelector('svg rect.bar.local').getBoundingClientRect().width;",
        )
        .await;
        assert!(width.as_f64().unwrap() > 2.0, "bars are visible: {width}");
        screenshot(&c, "overview", 1280).await;

        // Peers: every state, and the hostile remote's text shown as text.
        c.set_window_size(1280, 1000).await.unwrap();
        c.goto(&format!("{base}/peers")).await.unwrap();
        for (domain, label) in [
            ("healthy.test", "healthy"),
            ("failing.test", "failing"),
            ("backing.test", "backing off"),
            ("strict.test", "refuses this node"),
            ("denied.test", "refused by trust"),
        ] {
            let state = text(&c, &format!("tr[data-domain='{domain}'] .pill")).await;
            assert_eq!(state, label, "{domain}");
        }
        let hostile = text(&c, "tr[data-domain='hostile.test']").await;
        // The start of the remote's text shows literally (the rest is folded away).
        assert!(
            hostile.contains("https://evil.example/<script>alert("),
            "the remote's text shows literally: {hostile}"
        );
        assert!(HOSTILE_LOCATION.starts_with("https://evil.example/<script>alert("));
        assert_eq!(
            script(&c, "return document.querySelectorAll('img').length;").await,
            0,
            "no markup from a remote was created"
        );
        assert_eq!(script(&c, "return document.title;").await, "Peers · home.test · pd-server");
        screenshot(&c, "peers", 1280).await;

        // The retry button clears the backoff and says so.
        c.set_window_size(1280, 1000).await.unwrap();
        c.find(Locator::Css(
            "tr[data-domain='backing.test'] form[action='/peers/retry'] button",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
        let notice = c
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(".notice.ok"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(
            notice,
            "The backoff of backing.test is cleared: the next lookup contacts it at once."
        );
        assert_eq!(c.current_url().await.unwrap().path(), "/peers");
        assert_eq!(
            text(&c, "tr[data-domain='backing.test'] .pill").await,
            "healthy"
        );

        // Trust: the explain form.
        c.goto(&format!("{base}/trust")).await.unwrap();
        assert_eq!(text(&c, "#trust-mode").await, "open");
        let input = c.find(Locator::Id("explain-domain")).await.unwrap();
        input.send_keys("Denied.Test").await.unwrap();
        c.find(Locator::Css("form.explain button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let verdict = c
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Id("verdict"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(verdict.starts_with("denied.test: refused"), "{verdict}");
        assert_eq!(
            text(&c, "#explain-line").await,
            "refused: denied.test (deny entry \"denied.test\" in local list: went rogue)"
        );
        let entries = text(&c, "table.entries").await;
        assert!(entries.contains("<script>document.title='pwned'</script>"), "{entries}");
        assert_eq!(script(&c, "return document.title;").await, "Trust · home.test · pd-server");
        screenshot(&c, "trust", 1280).await;

        // Relay: no slot held, no conversation relayed.
        c.set_window_size(1280, 1000).await.unwrap();
        c.goto(&format!("{base}/relay")).await.unwrap();
        assert_eq!(text(&c, "h1").await, "Relay");
        assert!(text(&c, "#no-slots").await.starts_with("No slot held"));
        assert!(text(&c, "#no-conversations").await.starts_with("No conversation"));
        assert_eq!(script(&c, "return document.title;").await, "Relay · home.test · pd-server");
        screenshot(&c, "relay", 1280).await;

        // A phone: the tables turn into cards, nothing needs sideways scrolling.
        c.set_window_size(390, 844).await.unwrap();
        for (path, name) in [
            ("/", "overview-phone"),
            ("/peers", "peers-phone"),
            ("/relay", "relay-phone"),
        ] {
            c.goto(&format!("{base}{path}")).await.unwrap();
            let overflow = script(
                &c,
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            )
            .await;
            assert!(overflow.as_i64().unwrap() <= 0, "{path} scrolls sideways by {overflow}");
            screenshot(&c, name, 390).await;
            c.set_window_size(390, 844).await.unwrap();
        }
        c.close().await.unwrap();

        // Dark mode follows the system setting.
        let dark = session(&driver, &chromium, &["--force-dark-mode"]).await;
        dark.goto(&format!("{base}/")).await.unwrap();
        assert_eq!(
            script(&dark, "return matchMedia('(prefers-color-scheme: dark)').matches;").await,
            true
        );
        assert_eq!(
            script(&dark, "return getComputedStyle(document.body).backgroundColor;").await,
            "rgb(18, 21, 27)"
        );
        screenshot(&dark, "overview-dark", 1280).await;
        dark.close().await.unwrap();
        f.node.server.shutdown().await.unwrap();
    })
    .await
    .expect("the browser test took longer than its deadline");
}
