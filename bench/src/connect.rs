//! `chat connect` timing: from spawning `chat connect bob@b.test` (its first message already
//! waiting on its input) to that message printed by bob's `chat listen`, with two federated
//! `pd-server` processes on loopback (the lookup goes through alice's home node, which asks
//! bob's; then TCP, TLS and the identity checks of both sides). Cold: new nodes and new chat
//! homes, so every cache is empty; warm: the next connections of the same pair.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use pd_e2e::{ChatHome, binaries, federated_pair};

/// How long one step may take before the run gives up.
const WAIT: Duration = Duration::from_secs(30);

/// Time from process start to the first delivered message, cold and warm.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnectResult {
    pub(crate) cold_ms: Vec<f64>,
    pub(crate) warm_ms: Vec<f64>,
}

/// A chat process whose output lines arrive, time-stamped, on channels; killed on drop.
struct Chat {
    child: Child,
    stdout: mpsc::Receiver<(Instant, String)>,
    stderr: mpsc::Receiver<String>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Chat {
    fn start(home: &ChatHome, args: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new(&binaries().chat)
            .arg("--home")
            .arg(home.path())
            .args(args)
            .env_remove("CHAT_HOME")
            .env_remove("CHAT_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("failed to start chat")?;
        let (out_tx, stdout) = mpsc::channel();
        let (err_tx, stderr) = mpsc::channel();
        let out = child.stdout.take().context("chat has no stdout")?;
        let err = child.stderr.take().context("chat has no stderr")?;
        // The readers end when the process's output closes; dropping `Chat` kills it and
        // joins them.
        let mut readers = Vec::new();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if out_tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        }));
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if err_tx.send(line).is_err() {
                    break;
                }
            }
        }));
        Ok(Self {
            child,
            stdout,
            stderr,
            readers,
        })
    }

    fn send_line(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.child.stdin.as_mut().context("chat has no stdin")?;
        writeln!(stdin, "{line}").context("failed to write to chat")?;
        stdin.flush().context("failed to write to chat")
    }

    fn wait_stderr(&self, needle: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(()),
                Ok(_) => {}
                Err(_) => bail!("chat did not print {needle:?} on stderr"),
            }
        }
    }

    /// The time the line containing `needle` appeared on stdout.
    fn wait_stdout(&self, needle: &str) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok((at, line)) if line.contains(needle) => return Ok(at),
                Ok(_) => {}
                Err(_) => bail!("chat did not print {needle:?} on stdout"),
            }
        }
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

/// One `chat connect` from `alice` to bob, with its first message; the milliseconds from
/// spawning it to the listener printing the message.
fn once(alice: &ChatHome, listener: &Chat, n: usize) -> anyhow::Result<f64> {
    let message = format!("first message {n}");
    let started = Instant::now();
    let mut talker = Chat::start(alice, &["connect", "bob@b.test"])?;
    talker.send_line(&message)?;
    let delivered = listener.wait_stdout(&message)?;
    drop(talker);
    Ok(delivered.duration_since(started).as_secs_f64() * 1e3)
}

/// Runs `cold` cold samples (new nodes and homes each) with `warm` warm connections after
/// each.
pub(crate) fn section(cold: usize, warm: usize) -> anyhow::Result<ConnectResult> {
    let mut result = ConnectResult::default();
    for i in 0..cold {
        let dirs = (
            tempfile::tempdir_in(crate::publish::bench_tmp_dir())?,
            tempfile::tempdir_in(crate::publish::bench_tmp_dir())?,
        );
        let (a, b) = federated_pair((dirs.0.path(), "a.test"), (dirs.1.path(), "b.test"))?;
        let alice = ChatHome::new()?;
        alice.register("alice@a.test", &a);
        let bob = ChatHome::new()?;
        bob.register("bob@b.test", &b);
        let listener = Chat::start(&bob, &["listen", "--bind", "127.0.0.1:0"])?;
        listener.wait_stderr("; published")?;
        let ms = once(&alice, &listener, 0)?;
        println!("  sample {:>2} cold {ms:>8.1} ms", i + 1);
        result.cold_ms.push(ms);
        for n in 1..=warm {
            let ms = once(&alice, &listener, n)?;
            println!("  sample {:>2} warm {ms:>8.1} ms", i + 1);
            result.warm_ms.push(ms);
        }
    }
    Ok(result)
}
