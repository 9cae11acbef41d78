//! Multi-node federation in docker compose: three real nodes, built from this workspace as
//! static binaries on an empty image, on their own private network.
//!
//! The scenario: users register at their home nodes, look each other up across nodes through
//! static peer routes, hit the trust lists in both directions, and survive a `kill -9` of a
//! node. Without Docker the test is skipped locally but fails when `CI=true`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

const TARGET: &str = "x86_64-unknown-linux-gnu";

/// The compose project; `down -v` runs on drop, whatever happened.
struct Compose {
    cmd: Vec<String>,
    project: String,
    dir: PathBuf,
    image: String,
}

impl Compose {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.cmd[0]);
        c.args(&self.cmd[1..])
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(self.dir.join("docker-compose.yml"))
            .env("PD_IMAGE", &self.image)
            .current_dir(&self.dir);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self
            .command()
            .args(args)
            .output()
            .expect("failed to run docker compose");
        assert!(
            out.status.success(),
            "compose {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs `chat` inside a node's container with the given home.
    fn chat(&self, node: &str, home: &str, args: &[&str]) -> Output {
        let mut c = self.command();
        c.args(["exec", "-T", node, "/usr/local/bin/chat", "--home", home]);
        c.args(args);
        c.output().expect("failed to run compose exec")
    }

    fn host_port(&self, node: &str) -> u16 {
        let out = self.run(&["port", node, "8080"]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no published port for {node}: {text:?}"))
    }

    fn wait_healthy(&self, node: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let port = self.host_port(node);
            let url = format!("http://127.0.0.1:{port}/healthz");
            if probe::blocking_get(&url).unwrap_or(false) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {node} did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if std::env::var_os("PD_COMPOSE_KEEP").is_none() {
            let _ = self
                .command()
                .args(["down", "-v", "--remove-orphans", "-t", "5"])
                .output();
            let _ = Command::new("docker")
                .args(["rmi", "-f", &self.image])
                .output();
        }
    }
}

mod probe {
    //! A tiny blocking health probe over a plain TCP socket (the test avoids a second HTTP
    //! stack just to poll `/healthz`).
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    pub(super) fn blocking_get(url: &str) -> std::io::Result<bool> {
        let rest = url.trim_start_matches("http://");
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut stream = TcpStream::connect(authority)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(
            stream,
            "GET /{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
        )?;
        let mut buf = String::new();
        stream.read_to_string(&mut buf)?;
        Ok(buf.starts_with("HTTP/1.1 200"))
    }
}

fn compose_command() -> Option<Vec<String>> {
    let works = |args: &[&str]| {
        Command::new(args[0])
            .args(&args[1..])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !works(&["docker", "info"]) {
        return None;
    }
    if works(&["docker", "compose", "version"]) {
        Some(vec!["docker".into(), "compose".into()])
    } else if works(&["docker-compose", "version"]) {
        Some(vec!["docker-compose".into()])
    } else {
        None
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Builds statically linked `pd-server` and `chat` and returns the directory holding them.
fn build_static_binaries() -> PathBuf {
    let root = workspace_root();
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--target",
            TARGET,
            "-p",
            "pd-server",
            "-p",
            "chat",
            "--bins",
        ])
        .env("RUSTFLAGS", "-C target-feature=+crt-static -C debuginfo=0")
        .current_dir(&root)
        .status()
        .expect("failed to run cargo build");
    assert!(status.success(), "static build failed");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target_dir.join(TARGET).join("debug")
}

fn start() -> Option<Compose> {
    let Some(cmd) = compose_command() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Docker with Compose is required for the federation tests when CI=true"
        );
        eprintln!("skipping compose federation test: docker or compose not available");
        return None;
    };
    let bins = build_static_binaries();
    let ctx = tempfile::tempdir().expect("tempdir");
    let src = workspace_root().join("tests/compose");
    for f in ["Dockerfile", "docker-compose.yml"] {
        std::fs::copy(src.join(f), ctx.path().join(f)).expect("copy compose file");
    }
    std::fs::create_dir(ctx.path().join("config")).expect("mkdir config");
    for entry in std::fs::read_dir(src.join("config")).expect("read config dir") {
        let entry = entry.expect("config entry");
        std::fs::copy(
            entry.path(),
            ctx.path().join("config").join(entry.file_name()),
        )
        .expect("copy config");
    }
    for bin in ["pd-server", "chat"] {
        std::fs::copy(bins.join(bin), ctx.path().join(bin)).expect("copy binary");
    }
    let ca = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if ca.exists() {
        std::fs::copy(ca, ctx.path().join("ca-certificates.crt")).expect("copy CA bundle");
    } else {
        std::fs::write(ctx.path().join("ca-certificates.crt"), b"").expect("write CA bundle");
    }
    let project = format!("pdfed{}", std::process::id());
    let image = format!("pd-compose-test:{project}");
    let status = Command::new("docker")
        .args(["build", "-q", "-t", &image, "."])
        .current_dir(ctx.path())
        .status()
        .expect("failed to run docker build");
    assert!(status.success(), "docker build failed");
    let compose = Compose {
        cmd,
        project,
        dir: ctx.keep(),
        image,
    };
    compose.run(&["up", "-d"]);
    for node in ["a", "b", "c"] {
        compose.wait_healthy(node);
    }
    Some(compose)
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "chat failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "chat printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn ok(out: Output) {
    assert!(
        out.status.success(),
        "chat failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn three_nodes_federate_through_static_routes_and_trust_lists() {
    let Some(fed) = start() else { return };

    ok(fed.chat(
        "a",
        "/data/alice",
        &["register", "alice@a.test", "--server", "http://a.test:8080"],
    ));
    ok(fed.chat(
        "b",
        "/data/bob",
        &["register", "bob@b.test", "--server", "http://b.test:8080"],
    ));
    ok(fed.chat(
        "c",
        "/data/carol",
        &["register", "carol@c.test", "--server", "http://c.test:8080"],
    ));
    ok(fed.chat(
        "b",
        "/data/bob",
        &[
            "publish",
            "--endpoint",
            "tcp://198.51.100.7:7000",
            "--ttl",
            "1h",
        ],
    ));
    let bob_fp = json(&fed.chat("b", "/data/bob", &["whoami", "--json"]))["fingerprint"].clone();

    // alice@a.test finds bob@b.test through her home node, which forwards to b.test.
    let first = json(&fed.chat("a", "/data/alice", &["lookup", "bob@b.test", "--json"]));
    assert_eq!(first["address"], "bob@b.test");
    assert_eq!(first["source"], "remote");
    let again = json(&fed.chat("a", "/data/alice", &["lookup", "bob@b.test", "--json"]));
    assert_eq!(again["source"], "cache");
    let shown = fed.chat("a", "/data/alice", &["lookup", "bob@b.test"]);
    ok(shown.clone());
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains(bob_fp.as_str().unwrap_or("?")), "{text}");
    assert!(text.contains("tcp://198.51.100.7:7000"), "{text}");

    // a.test federates only with b.test: its users cannot reach c.test ...
    let refused = fed.chat("a", "/data/alice", &["lookup", "carol@c.test"]);
    assert_eq!(
        refused.status.code(),
        Some(8),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // ... and a.test refuses lookups coming from c.test.
    let inbound = fed.chat("c", "/data/carol", &["lookup", "alice@a.test"]);
    assert_eq!(
        inbound.status.code(),
        Some(8),
        "{}",
        String::from_utf8_lossy(&inbound.stderr)
    );
    // c.test is open and b.test answers it.
    let open = json(&fed.chat("c", "/data/carol", &["lookup", "bob@b.test", "--json"]));
    assert_eq!(open["address"], "bob@b.test");

    // An unknown user at a reachable node is a clean "unknown user".
    let unknown = fed.chat("a", "/data/alice", &["lookup", "nobody@b.test"]);
    assert_eq!(
        unknown.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );

    // kill -9 b.test: a.test still answers from its cache, at once.
    fed.run(&["kill", "-s", "SIGKILL", "b"]);
    let cached = json(&fed.chat("a", "/data/alice", &["lookup", "bob@b.test", "--json"]));
    assert_eq!(cached["address"], "bob@b.test");
    // A forced refresh cannot reach b.test and says so.
    let down = fed.chat("a", "/data/alice", &["lookup", "bob@b.test", "--refresh"]);
    assert!(
        matches!(down.status.code(), Some(6) | Some(0)),
        "refresh with b.test down: {:?} {}",
        down.status.code(),
        String::from_utf8_lossy(&down.stderr)
    );

    // b.test comes back with bob's account and presence intact.
    fed.run(&["start", "b"]);
    fed.wait_healthy("b");
    // a.test backs off from b.test after the failed refresh: lookups answer at once with a
    // clear error until the backoff ends, then reach b.test again.
    let deadline = Instant::now() + Duration::from_secs(60);
    let back = loop {
        let out = fed.chat(
            "a",
            "/data/alice",
            &["lookup", "bob@b.test", "--refresh", "--json"],
        );
        if out.status.success() || Instant::now() > deadline {
            break json(&out);
        }
        assert_eq!(
            out.status.code(),
            Some(6),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(back["source"], "remote");
    assert!(back["presence"].is_object(), "presence lost: {back}");
}
