//! End-to-end test helpers: locating and running the real `pd-server` and `chat` binaries.
//!
//! [`Node`] runs `pd-server` on `127.0.0.1:0` with its own data directory, learns the bound
//! address from the node's start-up log line, waits for `/healthz`, and kills the process
//! when dropped, whatever the test's outcome. [`ChatHome`] runs `chat` in its own temporary
//! home, [`ChatProcess`] a long-running one through pipes and [`ChatTerminal`] one in a
//! pseudo-terminal. They need the binaries in the target directory next to the test
//! executable; they are built once with `cargo build` when missing. `cargo test --workspace` builds them
//! anyway (their packages have integration tests); after changing the server or the client,
//! `cargo test -p pd-e2e` alone would run the previous build unless `PD_E2E_BUILD=1` is set,
//! which runs `cargo build` first.
//!
//! Why not `env!("CARGO_BIN_EXE_pd-server")`: Cargo sets those variables only for the
//! binaries of the test's own package, and these are other packages' binaries (depending
//! on a binary, Cargo's artifact dependencies, is unstable). The `pd-server` package's own
//! tests do use `CARGO_BIN_EXE_pd-server`.

#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

pub mod crash;
mod terminal;

pub use terminal::ChatTerminal;

/// Set this variable to build the binaries before the tests even when they exist.
pub const ENV_BUILD: &str = "PD_E2E_BUILD";

/// How long a node may take to start and answer `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Paths of the real binaries under test.
#[derive(Debug)]
pub struct Binaries {
    /// The node, `pd-server`.
    pub pd_server: PathBuf,
    /// The client, `chat`.
    pub chat: PathBuf,
}

/// The binaries, located (and built if missing) once per test process.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| match locate_binaries() {
        Ok(binaries) => binaries,
        Err(e) => panic!("cannot find the pd-server and chat binaries: {e:#}"),
    })
}

fn locate_binaries() -> anyhow::Result<Binaries> {
    // A test executable lives in target/<profile>/deps, a harness binary (`pd-crash`) in
    // target/<profile>; the binaries under test in target/<profile>.
    let exe = std::env::current_exe().context("failed to find the test executable")?;
    let dir = exe
        .parent()
        .map(|dir| match dir.file_name() {
            Some(name) if name == "deps" => dir.parent().unwrap_or(dir),
            _ => dir,
        })
        .context("the test executable has no target directory")?;
    let binaries = Binaries {
        pd_server: dir.join(format!("pd-server{}", std::env::consts::EXE_SUFFIX)),
        chat: dir.join(format!("chat{}", std::env::consts::EXE_SUFFIX)),
    };
    let force = std::env::var_os(ENV_BUILD).is_some();
    if force || !binaries.pd_server.exists() || !binaries.chat.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "pd-server", "-p", "chat", "--bins"]);
        if dir.file_name().is_some_and(|name| name == "release") {
            build.arg("--release");
        }
        let status = build
            .status()
            .context("failed to run cargo build for the binaries")?;
        if !status.success() {
            bail!("cargo build -p pd-server -p chat --bins failed: {status}");
        }
    }
    for path in [&binaries.pd_server, &binaries.chat] {
        if !path.exists() {
            bail!("{} does not exist after building", path.display());
        }
    }
    Ok(binaries)
}

/// A running `pd-server` process, killed and reaped on drop.
#[derive(Debug)]
pub struct Node {
    child: Option<Child>,
    log_reader: Option<JoinHandle<()>>,
    log: Arc<Mutex<String>>,
    addr: SocketAddr,
    data_dir: PathBuf,
    domain: String,
    options: NodeOptions,
}

/// Optional settings of a node under test.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<Tls>,
    /// A configuration file (`--config`); the command-line flags still set the domain,
    /// listen address and data directory.
    pub config: Option<PathBuf>,
    /// Static routes to other nodes (`--peer DOMAIN=URL`).
    pub peers: Vec<(String, String)>,
    /// Run the node on these CPUs only (`taskset -c`, a list such as `1` or `0-1`) from its
    /// start, so that it sizes its runtime for them, as a node started that way does.
    pub cpus: Option<String>,
}

/// A certificate and key for a node to serve HTTPS with; the certificate is also the CA its
/// clients trust (self-signed, for `localhost`).
#[derive(Debug, Clone)]
pub struct Tls {
    /// PEM certificate (chain).
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl Node {
    /// Starts a node for `domain` on `127.0.0.1:0` with `data_dir`, and waits until it is
    /// healthy.
    pub fn start(data_dir: &Path, domain: &str) -> anyhow::Result<Self> {
        Self::start_at(data_dir, domain, "127.0.0.1:0".parse()?)
    }

    /// Starts a node listening on `listen` (used to restart a node on the port its users'
    /// homes already name), and waits until it is healthy.
    pub fn start_at(data_dir: &Path, domain: &str, listen: SocketAddr) -> anyhow::Result<Self> {
        Self::spawn(data_dir, domain, listen, NodeOptions::default())
    }

    /// Starts a node serving HTTPS with `tls` on `127.0.0.1:0`, and waits until it is
    /// healthy. Its [`Node::url`] is `https://localhost:<port>`.
    pub fn start_tls(data_dir: &Path, domain: &str, tls: Tls) -> anyhow::Result<Self> {
        let options = NodeOptions {
            tls: Some(tls),
            ..NodeOptions::default()
        };
        Self::start_with(data_dir, domain, options)
    }

    /// Starts a node with `options` on `127.0.0.1:0`, and waits until it is healthy.
    pub fn start_with(data_dir: &Path, domain: &str, options: NodeOptions) -> anyhow::Result<Self> {
        Self::spawn(data_dir, domain, "127.0.0.1:0".parse()?, options)
    }

    /// Starts a node with `options` listening on `listen` (for nodes that must name each
    /// other's ports before they start), and waits until it is healthy.
    pub fn start_with_at(
        data_dir: &Path,
        domain: &str,
        listen: SocketAddr,
        options: NodeOptions,
    ) -> anyhow::Result<Self> {
        Self::spawn(data_dir, domain, listen, options)
    }

    /// The process id of the running node (`None` once it was killed or stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(
        data_dir: &Path,
        domain: &str,
        listen: SocketAddr,
        options: NodeOptions,
    ) -> anyhow::Result<Self> {
        let mut command = match &options.cpus {
            // taskset runs the node in its own process (exec), so the child is the node.
            Some(cpus) => {
                let mut taskset = Command::new("taskset");
                taskset.arg("-c").arg(cpus).arg(&binaries().pd_server);
                taskset
            }
            None => Command::new(&binaries().pd_server),
        };
        if let Some(config) = &options.config {
            command.arg("--config").arg(config);
        }
        for (domain, url) in &options.peers {
            command.arg("--peer").arg(format!("{domain}={url}"));
        }
        if let Some(tls) = &options.tls {
            command
                .arg("--tls-cert")
                .arg(&tls.cert)
                .arg("--tls-key")
                .arg(&tls.key);
        }
        let mut child = command
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--domain")
            .arg(domain)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("failed to start pd-server")?;
        let stderr = child.stderr.take().context("pd-server has no stderr")?;
        let log = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let log_reader = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || read_log(stderr, &log, &addr_tx))
        };
        let mut node = Self {
            child: Some(child),
            log_reader: Some(log_reader),
            log,
            addr: listen,
            data_dir: data_dir.to_owned(),
            domain: domain.to_owned(),
            options,
        };
        node.addr = match addr_rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => bail!(
                "pd-server did not report its listening address; its log:\n{}",
                node.log()
            ),
        };
        node.wait_healthy()?;
        Ok(node)
    }

    /// The address the node listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's base URL: `http://127.0.0.1:<port>`, or `https://localhost:<port>` when it
    /// serves HTTPS (its certificate names `localhost`).
    pub fn url(&self) -> String {
        match self.options.tls {
            Some(_) => format!("https://localhost:{}", self.addr.port()),
            None => format!("http://{}", self.addr),
        }
    }

    /// The domain the node serves.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The node's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Runs `pd-server invite create` on this node's data directory and returns the token.
    pub fn create_invite(&self) -> anyhow::Result<String> {
        let output = Command::new(&binaries().pd_server)
            .args(["invite", "create", "--data-dir"])
            .arg(&self.data_dir)
            .output()
            .context("failed to run pd-server invite create")?;
        if !output.status.success() {
            bail!(
                "pd-server invite create failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let token = String::from_utf8(output.stdout)?.trim().to_owned();
        if token.is_empty() {
            bail!("pd-server invite create printed no token");
        }
        Ok(token)
    }

    /// Everything the node logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Kills the node at once (SIGKILL), as a crash or power loss would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.join_log_reader();
    }

    /// Stops the node gracefully (SIGTERM) and waits for it to exit; kills it if it takes
    /// too long. Returns whether it exited successfully on its own.
    pub fn stop(&mut self) -> anyhow::Result<bool> {
        let Some(mut child) = self.child.take() else {
            return Ok(false);
        };
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .context("failed to run kill -TERM")?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        let clean = loop {
            if let Some(status) = child.try_wait()? {
                break sent.success() && status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        self.join_log_reader();
        Ok(clean)
    }

    /// Starts the node again on the same address and data directory.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            self.stop()?;
        }
        let fresh = Self::spawn(
            &self.data_dir,
            &self.domain,
            self.addr,
            self.options.clone(),
        )?;
        *self = fresh;
        Ok(())
    }

    fn wait_healthy(&self) -> anyhow::Result<()> {
        let client = pd_client::PdClient::new(
            self.url().parse()?,
            &pd_client::ClientOptions::default()
                .with_ca_file(self.options.tls.as_ref().map(|tls| tls.cert.clone()))
                .with_timeouts(Duration::from_secs(1), Duration::from_secs(2)),
        )?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match runtime.block_on(client.health()) {
                Ok(health) if health.status == "ok" => return Ok(()),
                Ok(health) if Instant::now() > deadline => {
                    bail!("node is not healthy: {health:?}")
                }
                Err(e) if Instant::now() > deadline => {
                    bail!(
                        "node did not answer /healthz: {e}; its log:\n{}",
                        self.log()
                    )
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn join_log_reader(&mut self) {
        if let Some(reader) = self.log_reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads the node's log until it closes, and sends the listening address once it shows up.
fn read_log(
    stderr: std::process::ChildStderr,
    log: &Mutex<String>,
    addr_tx: &std::sync::mpsc::Sender<SocketAddr>,
) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if let Some(addr) = listen_addr(&line) {
            let _ = addr_tx.send(addr);
        }
        if let Ok(mut log) = log.lock() {
            log.push_str(&line);
            log.push('\n');
        }
    }
}

/// Two federated nodes for `domain_a` and `domain_b` on loopback, each with a static route
/// to the other (plain HTTP, allowed for configured peers). The ports are picked before
/// either node starts, since each must name the other's.
pub fn federated_pair(a: (&Path, &str), b: (&Path, &str)) -> anyhow::Result<(Node, Node)> {
    let free_port = || -> anyhow::Result<SocketAddr> {
        let socket = std::net::TcpListener::bind("127.0.0.1:0")?;
        Ok(socket.local_addr()?)
    };
    let (addr_a, addr_b) = (free_port()?, free_port()?);
    let options = |peer: &str, addr: SocketAddr| NodeOptions {
        peers: vec![(peer.to_owned(), format!("http://{addr}"))],
        ..NodeOptions::default()
    };
    let node_a = Node::spawn(a.0, a.1, addr_a, options(b.1, addr_b))?;
    let node_b = Node::spawn(b.0, b.1, addr_b, options(a.1, addr_a))?;
    Ok((node_a, node_b))
}

/// A long-running `chat` process (`listen` or `connect`) with its input held open by the
/// test and its output collected; killed on drop.
#[derive(Debug)]
pub struct ChatProcess {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

/// How long [`ChatProcess`] waits for expected output.
pub const CHAT_WAIT: Duration = Duration::from_secs(30);

impl ChatProcess {
    /// Starts `chat --home HOME args...` with piped input and output.
    pub fn start(home: &ChatHome, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_input(home, args, Stdio::piped())
    }

    /// Starts `chat --home HOME args...` with `stdin` as its input (e.g. `Stdio::null()`)
    /// and piped output.
    pub fn start_with_input(home: &ChatHome, args: &[&str], stdin: Stdio) -> anyhow::Result<Self> {
        let mut child = Command::new(&binaries().chat)
            .arg("--home")
            .arg(home.path())
            .args(args)
            .env_remove("CHAT_HOME")
            .env_remove("CHAT_LOG")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("failed to start chat")?;
        let stdin = child.stdin.take();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            let sink = Arc::clone(&stdout);
            readers.push(std::thread::spawn(move || collect(out, &sink)));
        }
        if let Some(err) = child.stderr.take() {
            let sink = Arc::clone(&stderr);
            readers.push(std::thread::spawn(move || collect(err, &sink)));
        }
        Ok(Self {
            child,
            stdin,
            stdout,
            stderr,
            readers,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// What the process printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Types one line.
    pub fn send_line(&mut self, line: &str) -> anyhow::Result<()> {
        use std::io::Write as _;
        let stdin = self.stdin.as_mut().context("the input is closed")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Closes the input (end of input).
    pub fn close_input(&mut self) {
        self.stdin = None;
    }

    /// Sends a signal by name (`INT`, `TERM`, `KILL`).
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        kill(self.pid(), name)
    }

    /// Waits until stdout contains `needle`; panics with both streams otherwise.
    pub fn wait_stdout(&self, needle: &str) -> String {
        self.wait_for(needle, true)
    }

    /// Waits until stderr contains `needle`; panics with both streams otherwise.
    pub fn wait_stderr(&self, needle: &str) -> String {
        self.wait_for(needle, false)
    }

    fn wait_for(&self, needle: &str, stdout: bool) -> String {
        let deadline = Instant::now() + CHAT_WAIT;
        loop {
            let text = if stdout { self.stdout() } else { self.stderr() };
            if text.contains(needle) {
                return text;
            }
            if Instant::now() > deadline {
                panic!(
                    "chat did not print {needle:?} on {} in {CHAT_WAIT:?}\nstdout:\n{}\nstderr:\n{}",
                    if stdout { "stdout" } else { "stderr" },
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The endpoint `chat listen` reported listening on (`... on 127.0.0.1:PORT; ...`).
    pub fn listening_port(&self) -> u16 {
        let text = self.wait_stderr("; published");
        text.split(" on ")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .and_then(|addr| addr.parse::<SocketAddr>().ok())
            .map(|addr| addr.port())
            .unwrap_or_else(|| panic!("no listening address in {text:?}"))
    }

    /// Waits for the process to exit *with its input still open* (as when a pipe's writer
    /// is still there): returns its exit code, everything it printed, and how long it took;
    /// panics (after killing it) if it did not exit within `within`.
    pub fn wait_with_input_open(mut self, within: Duration) -> (ChatOutput, Duration) {
        let started = Instant::now();
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status.code().unwrap_or(-1),
                Ok(None) if started.elapsed() > within => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "chat did not exit within {within:?} (input open)\nstdout:\n{}\nstderr:\n{}",
                        self.stdout(),
                        self.stderr()
                    );
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => panic!("failed to wait for chat: {e}"),
            }
        };
        let took = started.elapsed();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let output = ChatOutput {
            code: status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        };
        (output, took)
    }

    /// Waits for the process to exit (killing it after `CHAT_WAIT`) and returns its exit
    /// code with everything it printed.
    pub fn wait(mut self) -> ChatOutput {
        self.close_input();
        let deadline = Instant::now() + CHAT_WAIT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status.code().unwrap_or(-1),
                Ok(None) if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "chat did not exit in {CHAT_WAIT:?}\nstdout:\n{}\nstderr:\n{}",
                        self.stdout(),
                        self.stderr()
                    );
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(25)),
                Err(e) => panic!("failed to wait for chat: {e}"),
            }
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        ChatOutput {
            code: status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for ChatProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends the signal `name` (`INT`, `TERM`, `KILL`) to the process `pid`.
pub fn kill(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .context("failed to run kill")?;
    if !status.success() {
        bail!("kill -{name} {pid} failed: {status}");
    }
    Ok(())
}

fn collect(mut source: impl std::io::Read, sink: &Mutex<String>) {
    let mut buf = [0_u8; 4096];
    loop {
        match source.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Ok(mut text) = sink.lock() {
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        }
    }
}

/// The address in the node's start-up line (`... node started listen.addr=127.0.0.1:1234`,
/// text or JSON log format).
pub fn listen_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split("listen.addr").nth(1)?;
    let value = rest.trim_start_matches(['=', '"', ':', ' ']);
    let end = value
        .find(|c: char| c.is_whitespace() || c == '"' || c == ',')
        .unwrap_or(value.len());
    value[..end].parse().ok()
}

/// What a `chat` run produced.
#[derive(Debug)]
pub struct ChatOutput {
    /// The exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl ChatOutput {
    /// Panics with both streams unless the command succeeded.
    pub fn success(self) -> Self {
        assert_eq!(self.code, 0, "chat failed: {self:#?}");
        self
    }

    /// Parses standard output as JSON.
    pub fn json(&self) -> serde_json::Value {
        match serde_json::from_str(&self.stdout) {
            Ok(value) => value,
            Err(e) => panic!("chat printed no JSON ({e}): {self:#?}"),
        }
    }
}

/// One user's `chat` home in a temporary directory.
#[derive(Debug)]
pub struct ChatHome {
    dir: tempfile::TempDir,
}

impl ChatHome {
    /// A new, empty home.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            dir: tempfile::tempdir().context("failed to create a chat home")?,
        })
    }

    /// The home directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `chat --home <this home> args...` with `input` on stdin.
    pub fn run_with_input(&self, args: &[&str], input: &str) -> ChatOutput {
        use std::io::Write as _;
        let mut child = match Command::new(&binaries().chat)
            .arg("--home")
            .arg(self.dir.path())
            .args(args)
            .env_remove("CHAT_HOME")
            .env_remove("CHAT_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => panic!("failed to run chat: {e}"),
        };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input.as_bytes());
        }
        match child.wait_with_output() {
            Ok(output) => ChatOutput {
                code: output.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            },
            Err(e) => panic!("failed to run chat: {e}"),
        }
    }

    /// Runs `chat --home <this home> args...`.
    pub fn run(&self, args: &[&str]) -> ChatOutput {
        let output = Command::new(&binaries().chat)
            .arg("--home")
            .arg(self.dir.path())
            .args(args)
            .env_remove("CHAT_HOME")
            .env_remove("CHAT_LOG")
            .stdin(Stdio::null())
            .output();
        match output {
            Ok(output) => ChatOutput {
                code: output.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            },
            Err(e) => panic!("failed to run chat: {e}"),
        }
    }

    /// Registers `address` at `node` and returns the new key's fingerprint.
    pub fn register(&self, address: &str, node: &Node) -> String {
        self.fingerprint_after(&["register", address, "--server", &node.url()])
    }

    /// Runs `args`, which must succeed, and returns the fingerprint `whoami` reports after.
    pub fn fingerprint_after(&self, args: &[&str]) -> String {
        self.run(args).success();
        self.fingerprint()
    }

    /// The fingerprint `chat whoami --json` reports.
    pub fn fingerprint(&self) -> String {
        let whoami = self.run(&["whoami", "--json"]).success().json();
        whoami["fingerprint"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("whoami printed no fingerprint: {whoami}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listen_address_is_found_in_text_and_json_logs() {
        let text = "2026-01-01T00:00:00Z  INFO pd_server::server: node started listen.addr=127.0.0.1:4321 domain=localhost tls=false";
        assert_eq!(listen_addr(text), Some("127.0.0.1:4321".parse().unwrap()));
        let json = r#"{"fields":{"message":"node started","listen.addr":"127.0.0.1:99"}}"#;
        assert_eq!(listen_addr(json), Some("127.0.0.1:99".parse().unwrap()));
        assert_eq!(listen_addr("node stopped"), None);
    }
}
