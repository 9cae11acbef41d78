//! The README's walkthroughs, run as written (issue 13): every fenced `sh` block of the
//! sections titled `Walkthrough: …` (except the Docker one, which the compose tests cover)
//! runs in a scratch directory with the freshly built `pd-server` and `chat` first on
//! `PATH`, and every `text` block after one is compared with what the block's last command
//! printed, with what varies (fingerprints, times, ports) masked on both sides. So the
//! README cannot drift from the binaries.
//!
//! Conventions, marked in the README by an HTML comment on the line before a block:
//! - `<!-- readme-test: setup … -->`: not run (building and `PATH`, which the test provides);
//! - `<!-- readme-test: background … -->`: each command keeps running (a node "in its own
//!   terminal"); the test starts it in the background and waits for its `--listen` port.
//!
//! Every other command must exit 0. The ports the README names (8080 to 8089 on 127.0.0.1)
//! are replaced by free ones, so the test never collides with anything on the machine.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pd_e2e::binaries;

/// How long a background node may take to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Run,
    Background,
    Setup,
}

/// A fenced block of a walkthrough.
#[derive(Debug)]
enum Block {
    /// Shell commands, each a logical line (continuations joined).
    Shell {
        kind: Kind,
        commands: Vec<String>,
        line: usize,
    },
    /// Example output of the previous shell block's last command.
    Output { text: String, line: usize },
}

/// The blocks of every walkthrough section, with the section's title.
fn walkthroughs(readme: &str) -> Vec<(String, Vec<Block>)> {
    let mut sections: Vec<(String, Vec<Block>)> = Vec::new();
    let mut in_walkthrough = false;
    let mut marker: Option<Kind> = None;
    let mut lines = readme.lines().enumerate();
    while let Some((number, line)) = lines.next() {
        if let Some(title) = line.strip_prefix("## ") {
            in_walkthrough = title.starts_with("Walkthrough:") && !title.contains("Docker");
            if in_walkthrough {
                sections.push((title.to_owned(), Vec::new()));
            }
            continue;
        }
        if !in_walkthrough {
            continue;
        }
        if let Some(rest) = line.trim().strip_prefix("<!-- readme-test:") {
            let word = rest.split_whitespace().next().unwrap_or_default();
            marker = Some(match word {
                "setup" => Kind::Setup,
                "background" => Kind::Background,
                other => panic!(
                    "README line {}: unknown readme-test marker {other:?}",
                    number + 1
                ),
            });
            continue;
        }
        let Some(lang) = line.strip_prefix("```") else {
            if !line.trim().is_empty() {
                marker = None;
            }
            continue;
        };
        let mut body = Vec::new();
        for (_, inner) in lines.by_ref() {
            if inner.starts_with("```") {
                break;
            }
            body.push(inner);
        }
        let block = match lang.trim() {
            "sh" => Block::Shell {
                kind: marker.take().unwrap_or(Kind::Run),
                commands: commands(&body),
                line: number + 1,
            },
            "text" => Block::Output {
                text: body.join("\n"),
                line: number + 1,
            },
            _ => continue,
        };
        if let Some((_, blocks)) = sections.last_mut() {
            blocks.push(block);
        }
    }
    sections
}

/// The logical command lines of a shell block: continuations joined, blank lines and
/// whole-line comments left out (trailing comments are the shell's business).
fn commands(body: &[&str]) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in body {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head.trim_end());
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    assert!(current.is_empty(), "a shell block ends in a continuation");
    commands
}

/// Replaces a fingerprint (six groups of four), an RFC 3339 time, and the port after
/// `127.0.0.1:` in each word by a placeholder; words are compared with single spaces.
fn mask(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| {
            line.split_whitespace()
                .map(mask_word)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|line| !line.is_empty())
        .collect()
}

fn mask_word(word: &str) -> String {
    let bare = word.trim_matches(|c: char| matches!(c, '(' | ')' | ',' | ';'));
    let groups: Vec<&str> = bare.split('-').collect();
    if groups.len() == 6
        && groups
            .iter()
            .all(|g| g.len() == 4 && g.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        return word.replace(bare, "<fingerprint>");
    }
    let b = bare.as_bytes();
    if b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
    {
        return word.replace(bare, "<time>");
    }
    let mut out = String::new();
    let mut rest = word;
    while let Some(at) = rest.find("127.0.0.1:") {
        let (head, tail) = rest.split_at(at + "127.0.0.1:".len());
        out.push_str(head);
        let digits = tail.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 {
            out.push_str("<port>");
        }
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

/// Background processes, killed when the test ends, whatever its outcome.
struct Background(Vec<(String, Child, PathBuf)>);

impl Drop for Background {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("its address")
        .port()
}

fn shell(command: &str, dir: &Path, path: &str) -> Command {
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env("PATH", path)
        .env("HOME", dir)
        .env_remove("CHAT_HOME")
        .env_remove("CHAT_LOG")
        .env_remove("PD_CONFIG")
        .env_remove("PD_DOMAIN")
        .env_remove("PD_LISTEN")
        .env_remove("PD_DATA_DIR")
        .env_remove("PD_STORE")
        .env("RUST_LOG", "info");
    shell
}

fn wait_for_port(addr: SocketAddr, background: &mut Background) {
    let deadline = Instant::now() + LISTEN_TIMEOUT;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
            return;
        }
        let (command, child, log) = background.0.last_mut().expect("a background process");
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "`{command}` exited ({status}) before listening on {addr}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "`{command}` did not listen on {addr} within {LISTEN_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_readme_walkthroughs_run_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("read README.md");
    let sections = walkthroughs(&readme);
    let titles: Vec<&str> = sections.iter().map(|(t, _)| t.as_str()).collect();
    assert!(
        titles.len() >= 2,
        "the README's walkthroughs were not found: {titles:?}"
    );

    let scratch = tempfile::tempdir().expect("a scratch directory");
    let dir = scratch.path();
    let bin = binaries()
        .pd_server
        .parent()
        .expect("the binaries' directory")
        .to_owned();
    assert_eq!(Some(bin.as_path()), binaries().chat.parent());
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // The README's ports, each replaced by a free one.
    let mut ports: BTreeMap<String, String> = BTreeMap::new();
    let mut substitute = |command: &str| {
        let mut out = command.to_owned();
        for readme_port in 8080..8090 {
            let from = format!("127.0.0.1:{readme_port}");
            if out.contains(&from) {
                let to = ports
                    .entry(from.clone())
                    .or_insert_with(|| format!("127.0.0.1:{}", free_port()))
                    .clone();
                out = out.replace(&from, &to);
            }
        }
        out
    };

    let mut background = Background(Vec::new());
    let mut checked_outputs = 0;
    let mut ran = 0;
    for (title, blocks) in &sections {
        let mut last_stdout: Option<(String, String)> = None;
        for block in blocks {
            match block {
                Block::Shell {
                    kind: Kind::Setup, ..
                } => last_stdout = None,
                Block::Shell {
                    kind: Kind::Background,
                    commands,
                    line,
                } => {
                    for command in commands {
                        let command = substitute(command);
                        let listen = command
                            .split_whitespace()
                            .skip_while(|w| *w != "--listen")
                            .nth(1)
                            .and_then(|a| a.parse::<SocketAddr>().ok())
                            .unwrap_or_else(|| {
                                panic!("README line {line}: a background command names no --listen address: {command}")
                            });
                        let log = dir.join(format!("background-{}.log", background.0.len()));
                        let log_file = std::fs::File::create(&log).expect("a log file");
                        let child = shell(&format!("exec {command}"), dir, &path)
                            .stdin(Stdio::null())
                            .stdout(log_file.try_clone().expect("the log file"))
                            .stderr(log_file)
                            .spawn()
                            .expect("start a background command");
                        background.0.push((command.clone(), child, log));
                        wait_for_port(listen, &mut background);
                        ran += 1;
                    }
                    last_stdout = None;
                }
                Block::Shell {
                    kind: Kind::Run,
                    commands,
                    line,
                } => {
                    for command in commands {
                        let command = substitute(command);
                        let output = shell(&command, dir, &path)
                            .stdin(Stdio::null())
                            .output()
                            .expect("run a README command");
                        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
                        let stderr = String::from_utf8_lossy(&output.stderr);
                        assert!(
                            output.status.success(),
                            "{title}, README line {line}: `{command}` failed ({}):\n{stdout}{stderr}",
                            output.status
                        );
                        last_stdout = Some((command, stdout));
                        ran += 1;
                    }
                }
                Block::Output { text, line } => {
                    let (command, stdout) = last_stdout.as_ref().unwrap_or_else(|| {
                        panic!("{title}, README line {line}: example output after no command")
                    });
                    assert_eq!(
                        mask(stdout),
                        mask(text),
                        "{title}, README line {line}: `{command}` printed\n{stdout}\nbut the README shows\n{text}"
                    );
                    checked_outputs += 1;
                }
            }
        }
    }
    assert!(
        ran >= 10 && checked_outputs >= 3,
        "too little of the README ran: {ran} commands, {checked_outputs} outputs"
    );
}

#[test]
fn masking_keeps_what_does_not_vary() {
    assert_eq!(
        mask("  fingerprint: jigf-r5zv-onuc-d2ni-ffmx-ngcx\n"),
        ["fingerprint: <fingerprint>"]
    );
    assert_eq!(
        mask("status:  online until 2026-11-25T11:05:12Z"),
        ["status: online until <time>"]
    );
    assert_eq!(
        mask("server: http://127.0.0.1:40123/"),
        ["server: http://127.0.0.1:<port>/"]
    );
    assert_ne!(mask("source: local"), mask("source: remote"));
    assert_eq!(
        commands(&["# a comment", "a \\", "    b", "", "c # trailing"]),
        ["a b", "c # trailing"]
    );
}
