//! The compose project under test: builds the binaries and images once, writes the
//! configuration and the test CA, starts the project, runs commands in its containers,
//! disturbs its nodes (stop, kill, restart, network disconnect), and tears it all down
//! (`down -v` and the images) when dropped, whatever happened.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::pki;

const TARGET: &str = "x86_64-unknown-linux-gnu";

/// The node services and their domains.
pub(crate) const NODES: [(&str, &str); 3] = [("a", "a.test"), ("b", "b.test"), ("c", "c.test")];

/// The client services: one per node on that node's network and `clients`, and dana,
/// behind NAT: on b's network only.
pub(crate) const CLIENTS: [&str; 4] = ["alice", "bob", "carol", "dana"];

/// How long a node may take to become healthy.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);

/// The outcome of one command in a container.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    /// What was run, for messages.
    pub(crate) what: String,
    /// The exit code.
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    /// Wall-clock time, including `docker exec` itself.
    pub(crate) elapsed: Duration,
}

impl Run {
    /// Panics with the command's output unless it exited 0.
    pub(crate) fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "{self}");
        self
    }

    /// Panics unless it exited with `code`.
    pub(crate) fn code(self, code: i32) -> Self {
        assert_eq!(self.code, Some(code), "{self}");
        self
    }

    /// The JSON it printed (after checking that it exited 0).
    pub(crate) fn json(self) -> Value {
        let run = self.ok();
        serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("no JSON on stdout ({e}): {run}"))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited {:?} after {:.1}s\nstdout: {}\nstderr: {}",
            self.what,
            self.code,
            self.elapsed.as_secs_f64(),
            self.stdout.trim(),
            self.stderr.trim()
        )
    }
}

/// The running compose project.
pub(crate) struct Cluster {
    compose: Vec<String>,
    project: String,
    dir: tempfile::TempDir,
    images: Vec<String>,
    ids: HashMap<String, String>,
    /// Whether the shared users (alice, bob, carol) are registered.
    pub(crate) users_ready: bool,
}

impl Cluster {
    /// Builds everything and starts the project; `None` when Docker with Compose is not
    /// available and `CI` is not `true` (with `CI=true` that is a failure).
    pub(crate) fn start() -> Option<Self> {
        let Some(compose) = compose_command() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "Docker with Compose is required for the federation tests when CI=true"
            );
            return None;
        };
        let started = Instant::now();
        let bins = build_static_binaries();
        eprintln!(
            "compose: static binaries built ({:.0}s)",
            started.elapsed().as_secs_f64()
        );
        let project = format!("pdfed{}", std::process::id());
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cluster = Self {
            compose,
            images: vec![
                format!("pd-server-test:{project}"),
                format!("pd-chat-test:{project}"),
                format!("pd-client-test:{project}"),
            ],
            project,
            dir,
            ids: HashMap::new(),
            users_ready: false,
        };
        cluster.build_images(&bins);
        cluster.write_context();
        cluster.up();
        eprintln!(
            "compose: project {} up and healthy ({:.0}s)",
            cluster.project,
            started.elapsed().as_secs_f64()
        );
        Some(cluster)
    }

    fn build_images(&self, bins: &Path) {
        let root = workspace_root();
        let status = Command::new(root.join("deploy/build-images.sh"))
            .env("BIN_DIR", bins)
            .env("PD_IMAGE", &self.images[0])
            .env("CHAT_IMAGE", &self.images[1])
            .status()
            .expect("failed to run deploy/build-images.sh");
        assert!(status.success(), "deploy/build-images.sh failed");
        let context = tempfile::tempdir().expect("tempdir");
        std::fs::copy(
            root.join("tests/fixtures/compose/Dockerfile.client"),
            context.path().join("Dockerfile"),
        )
        .expect("copy Dockerfile.client");
        std::fs::copy(bins.join("pd-e2e-hold"), context.path().join("pd-e2e-hold"))
            .expect("copy pd-e2e-hold");
        let out = Command::new("docker")
            .args(["build", "-q", "--build-arg"])
            .arg(format!("CHAT_IMAGE={}", self.images[1]))
            .args(["-t", &self.images[2], "."])
            .current_dir(context.path())
            .output()
            .expect("failed to run docker build");
        assert!(
            out.status.success(),
            "docker build of the client image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The compose file, the node configurations and the test CA, in the project directory.
    fn write_context(&self) {
        let src = workspace_root().join("tests/fixtures/compose");
        let dir = self.dir.path();
        std::fs::copy(
            src.join("docker-compose.yml"),
            dir.join("docker-compose.yml"),
        )
        .expect("copy docker-compose.yml");
        let config = dir.join("config");
        let tls = dir.join("tls");
        for sub in [&config, &tls] {
            std::fs::create_dir(sub).expect("mkdir");
            set_mode(sub, 0o755);
        }
        for entry in std::fs::read_dir(src.join("config")).expect("read config dir") {
            let entry = entry.expect("config entry");
            let to = config.join(entry.file_name());
            std::fs::copy(entry.path(), &to).expect("copy config");
            set_mode(&to, 0o644);
        }
        let hosts: Vec<&str> = NODES.iter().map(|(_, domain)| *domain).collect();
        pki::write(&tls, &hosts);
    }

    fn up(&mut self) {
        self.compose(&["up", "-d"]);
        for service in NODES.iter().map(|(s, _)| *s).chain(CLIENTS) {
            let out = self.compose(&["ps", "-q", service]);
            let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            assert!(!id.is_empty(), "no container for {service}");
            self.ids.insert(service.to_owned(), id);
        }
        for (node, _) in NODES {
            self.wait_healthy(node);
        }
    }

    fn compose_command(&self) -> Command {
        let mut c = Command::new(&self.compose[0]);
        c.args(&self.compose[1..])
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(self.dir.path().join("docker-compose.yml"))
            .env("PD_IMAGE", &self.images[0])
            .env("CLIENT_IMAGE", &self.images[2])
            .current_dir(self.dir.path());
        c
    }

    /// Runs a compose command, which must succeed.
    fn compose(&self, args: &[&str]) -> Output {
        let out = self
            .compose_command()
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

    /// The container id of a service.
    pub(crate) fn id(&self, service: &str) -> &str {
        self.ids
            .get(service)
            .unwrap_or_else(|| panic!("no service {service}"))
    }

    /// Runs `docker ARGS`, which must succeed.
    pub(crate) fn docker(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .args(args)
            .output()
            .expect("failed to run docker");
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs a command in a service's container.
    pub(crate) fn exec(&self, service: &str, command: &[&str]) -> Run {
        let started = Instant::now();
        let out = Command::new("docker")
            .arg("exec")
            .arg(self.id(service))
            .args(command)
            .output()
            .expect("failed to run docker exec");
        Run {
            what: format!("{service}: {}", command.join(" ")),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: started.elapsed(),
        }
    }

    /// Runs `chat` in a client container, with the home of `user`.
    pub(crate) fn chat(&self, client: &str, user: &str, args: &[&str]) -> Run {
        let home = format!("/home/pd/{user}");
        let mut command = vec!["/usr/local/bin/chat", "--home", &home];
        command.extend_from_slice(args);
        let mut run = self.exec(client, &command);
        run.what = format!("{client}: chat ({user}) {}", args.join(" "));
        run
    }

    /// Starts `chat` in a client container with its input, output and errors piped, for
    /// conversations (`chat listen`, `chat connect`).
    pub(crate) fn spawn_chat(&self, client: &str, user: &str, args: &[&str]) -> Interactive {
        let home = format!("/home/pd/{user}");
        let child = Command::new("docker")
            .args([
                "exec",
                "-i",
                self.id(client),
                "/usr/local/bin/chat",
                "--home",
                &home,
            ])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("failed to run docker exec");
        Interactive::new(format!("{client}: chat ({user}) {}", args.join(" ")), child)
    }

    /// The address of a container on one of the project's networks (`clients`, ...).
    pub(crate) fn ip(&self, service: &str, network: &str) -> String {
        let format = format!(
            "{{{{(index .NetworkSettings.Networks \"{}_{network}\").IPAddress}}}}",
            self.project
        );
        self.docker(&["inspect", "-f", &format, self.id(service)])
    }

    /// Runs `pd-server` in a node's container (with the node's configuration).
    pub(crate) fn pd_server(&self, node: &str, args: &[&str]) -> Run {
        let mut command = vec!["/usr/local/bin/pd-server"];
        command.extend_from_slice(args);
        self.exec(node, &command)
    }

    /// `GET /admin/peers` of a node's admin surface (loopback inside its container).
    pub(crate) fn admin_peers(&self, node: &str) -> Value {
        self.pd_server(
            node,
            &["healthcheck", "--url", "http://127.0.0.1:9091/admin/peers"],
        )
        .json()
    }

    /// The health status Docker reports for a container (`healthy`, `starting`, ...).
    fn health(&self, service: &str) -> String {
        let out = Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{.State.Status}}/{{.State.Health.Status}}",
            ])
            .arg(self.id(service))
            .output()
            .expect("failed to run docker inspect");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Waits until Docker reports the node healthy (its image's health check passed).
    pub(crate) fn wait_healthy(&self, node: &str) {
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        loop {
            let health = self.health(node);
            if health == "running/healthy" {
                return;
            }
            if Instant::now() > deadline {
                self.print_logs();
                panic!("node {node} did not become healthy: {health}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// When a container last started (to show that it was not restarted).
    pub(crate) fn started_at(&self, service: &str) -> String {
        self.docker(&["inspect", "-f", "{{.State.StartedAt}}", self.id(service)])
    }

    /// `docker stop` (SIGTERM, graceful).
    pub(crate) fn stop(&self, node: &str) {
        self.docker(&["stop", "-t", "10", self.id(node)]);
    }

    /// `docker kill` (SIGKILL).
    pub(crate) fn kill(&self, node: &str) {
        self.docker(&["kill", "-s", "KILL", self.id(node)]);
    }

    /// `docker start`, then waits until healthy.
    pub(crate) fn start_node(&self, node: &str) {
        self.docker(&["start", self.id(node)]);
        self.wait_healthy(node);
    }

    /// `docker restart` (SIGTERM, then start), then waits until healthy.
    pub(crate) fn restart(&self, node: &str) {
        self.docker(&["restart", "-t", "10", self.id(node)]);
        self.wait_healthy(node);
    }

    /// The federation network's name.
    fn fed_network(&self) -> String {
        format!("{}_fed", self.project)
    }

    /// Cuts a node off the federation network (its users still reach it).
    pub(crate) fn disconnect(&self, node: &str) {
        self.docker(&["network", "disconnect", &self.fed_network(), self.id(node)]);
    }

    /// Puts a node back on the federation network, under its domain.
    pub(crate) fn connect(&self, node: &str) {
        let domain = domain_of(node);
        self.docker(&[
            "network",
            "connect",
            "--alias",
            domain,
            &self.fed_network(),
            self.id(node),
        ]);
    }

    /// Brings every node back to running, healthy and on the federation network, after a
    /// scenario that may have failed half-way.
    pub(crate) fn heal(&self) {
        for (node, _) in NODES {
            let networks = self.docker(&[
                "inspect",
                "-f",
                "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}",
                self.id(node),
            ]);
            if !networks.split_whitespace().any(|n| n == self.fed_network()) {
                self.connect(node);
            }
            if !self.health(node).starts_with("running/") {
                self.docker(&["start", self.id(node)]);
            }
        }
        for (node, _) in NODES {
            self.wait_healthy(node);
        }
    }

    /// Prints the last log lines of every container, to stderr.
    pub(crate) fn print_logs(&self) {
        if let Ok(out) = self
            .compose_command()
            .args(["logs", "--no-color", "--tail=300"])
            .output()
        {
            eprintln!(
                "----- container logs -----\n{}{}\n----- end of container logs -----",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::env::var_os("PD_COMPOSE_KEEP").is_some() {
            eprintln!(
                "compose: PD_COMPOSE_KEEP is set; project {} left running in {}",
                self.project,
                self.dir.path().display()
            );
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
            let _ = dir.keep();
            return;
        }
        let _ = self
            .compose_command()
            .args(["down", "-v", "--remove-orphans", "-t", "5"])
            .output();
        for image in &self.images {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }
}

/// The domain a node service serves.
pub(crate) fn domain_of(node: &str) -> &'static str {
    NODES
        .iter()
        .find(|(service, _)| *service == node)
        .map(|(_, domain)| *domain)
        .unwrap_or_else(|| panic!("no node {node}"))
}

fn set_mode(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

/// `docker compose` or `docker-compose`, when Docker and one of them work.
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

/// Builds statically linked `pd-server`, `chat` and `pd-e2e-hold` once, and returns the
/// directory holding them. A debug build (dependencies at opt-level 1) is quick to build
/// and fast enough for these tests.
fn build_static_binaries() -> PathBuf {
    let root = workspace_root();
    let status = Command::new(env!("CARGO"))
        .args(["build", "--target", TARGET])
        .args(["-p", "pd-server", "--bin", "pd-server"])
        .args(["-p", "chat", "--bin", "chat"])
        .args(["-p", "pd-e2e", "--bin", "pd-e2e-hold"])
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

/// A process in a container that the test talks to through pipes (`docker exec -i`).
/// Killed when dropped (the `docker exec` client; the process in the container ends with
/// its input or with the project).
pub(crate) struct Interactive {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Interactive {
    fn new(what: String, mut child: Child) -> Self {
        let collect = |mut pipe: Box<dyn Read + Send>| {
            let text = Arc::new(Mutex::new(String::new()));
            let sink = Arc::clone(&text);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let chunk = String::from_utf8_lossy(&buf[..n]).into_owned();
                    sink.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_str(&chunk);
                }
            });
            text
        };
        let stdout = collect(Box::new(child.stdout.take().expect("piped stdout")));
        let stderr = collect(Box::new(child.stderr.take().expect("piped stderr")));
        Self {
            what,
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
        }
    }

    /// What was printed so far on (stdout, stderr).
    pub(crate) fn output(&self) -> (String, String) {
        let read = |t: &Arc<Mutex<String>>| t.lock().unwrap_or_else(|e| e.into_inner()).clone();
        (read(&self.stdout), read(&self.stderr))
    }

    /// Waits until stdout (or stderr, with `on_stderr`) contains `needle`.
    pub(crate) fn wait_for(&self, needle: &str, on_stderr: bool, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let (stdout, stderr) = self.output();
            let text = if on_stderr { &stderr } else { &stdout };
            if text.contains(needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {needle:?} within {limit:?}\nstdout: {stdout}\nstderr: {stderr}",
                self.what
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends one line of input.
    pub(crate) fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("input still open");
        writeln!(stdin, "{line}").expect("write to the process");
        stdin.flush().expect("flush the process's input");
    }

    /// Closes the input and waits (at most `limit`) for the exit code.
    pub(crate) fn finish(&mut self, limit: Duration) -> Option<i32> {
        drop(self.stdin.take());
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the process") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {limit:?}: {:?}",
                self.what,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Interactive {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
